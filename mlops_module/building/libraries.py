"""Shared libraries in the environment archive: their symbol tables stripped, their duplicates shipped once.

Why: every executor of every job on Kubernetes unpacks the archive afresh, and the unpacking is mostly
writing bytes (``bench/package.py``); shared libraries are 70 % of them. Wheels ship symbol tables that only
debuggers and linkers read (``strip --strip-unneeded`` keeps the dynamic symbols a loader and ``dlsym`` use),
and ship a library's SONAME aliases as copies (a wheel can't hold a symlink).

Never stripped: auditwheel's grafted libraries (``<package>.libs/``, ``<package>/.libs/``), which patchelf
rewrote and ``strip`` corrupts ("ELF load command address/offset not page-aligned", measured on numpy's
OpenBLAS), and what the model keeps by config (``python.keep``). A library stays stripped only when it is
shown to load (``dlopen`` in a separate process) both before and after stripping; any other is put back as
it was. No ``strip`` on the machine: nothing is stripped, and the build says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

from mlops_module.kinds import Log

STRIP_COMMAND = ("strip", "--strip-unneeded")
ELF_MAGIC = b"\x7fELF"
LINK_MIN_BYTES = 64 * 1024  # duplicates smaller than this are not worth a link
LOAD_TIMEOUT_SECONDS = 300.0
_BATCH = 200  # files per strip command

# Runs in a separate process: loading a library runs its initialisers, and one that crashes (a truncated file
# gives SIGBUS) must not take the build with it. Says "+path" or "-path" for each, as it goes.
_LOADS = """
import ctypes, json, os, sys
for path in json.load(sys.stdin):
    try:
        ctypes.CDLL(path, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
        print("+" + path, flush=True)
    except OSError:
        print("-" + path, flush=True)
"""


def is_shared_library(name: str) -> bool:
    """``libx.so``, ``libx.so.1.2``, ``mod.cpython-311-x86_64-linux-gnu.so``."""
    return name.endswith(".so") or ".so." in name


def _grafted(parts: list[str]) -> bool:
    """Below an auditwheel ``*.libs`` folder: rewritten by patchelf, corrupted by strip."""
    return any(part.endswith(".libs") for part in parts[:-1])


def _kept(inner: str, keep: tuple[str, ...]) -> bool:
    parts = inner.split("/")
    return any(fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1) for pattern in keep)


def strippable(site: Path, keep: tuple[str, ...] = ()) -> list[Path]:
    """The ELF shared libraries below ``site`` that :func:`strip_libraries` strips, sorted."""
    found = []
    for current, dirs, files in os.walk(site):
        dirs.sort()
        for name in sorted(files):
            path = Path(current, name)
            inner = path.relative_to(site).as_posix()
            if not is_shared_library(name) or path.is_symlink() or _grafted(inner.split("/")) or _kept(inner, keep):
                continue
            with path.open("rb") as handle:
                if handle.read(4) != ELF_MAGIC:
                    continue
            found.append(path)
    return found


def loadable(paths: Iterable[Path], python: str) -> set[Path]:
    """Which of ``paths`` ``python`` can ``dlopen`` (lazily, locally). A library that crashes the process
    counts as not loadable and the check goes on after it; if the check itself can't run, none is."""
    remaining = [str(p) for p in paths]
    found: set[Path] = set()
    while remaining:
        try:
            done = subprocess.run([python, "-I", "-c", _LOADS], input=json.dumps(remaining), capture_output=True,
                                  text=True, timeout=LOAD_TIMEOUT_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            return found
        said = [line for line in done.stdout.splitlines() if line[:1] in ("+", "-")]
        found.update(Path(line[1:]) for line in said if line[0] == "+")
        if done.returncode == 0 or (not said and done.returncode > 0):  # finished, or the interpreter can't start
            return found
        remaining = remaining[len(said) + 1:]  # the next one crashed it
    return found


def strip_libraries(site: Path, python: str | None, keep: tuple[str, ...] = (), log: Log | None = None) -> int:
    """Strip the symbol tables of the environment's shared libraries (see the module's docstring), checking
    that each one still loads with ``python``. Returns the bytes saved (0 when nothing could be done)."""
    strip = shutil.which(STRIP_COMMAND[0])
    libraries = strippable(site, keep)
    if not libraries:
        return 0
    if strip is None or python is None:
        if log:
            missing = "strip (binutils)" if strip is None else "an interpreter of the target's version"
            log(f"warning: no {missing} on this machine: the archive's shared libraries keep their symbol tables "
                "(larger, slower to unpack on every executor)")
        return 0
    before = loadable(libraries, python)
    sizes = {p: p.stat().st_size for p in libraries}
    with tempfile.TemporaryDirectory(prefix="mlops-strip-") as tmp:
        originals = {}
        for number, path in enumerate(libraries):
            originals[path] = Path(tmp, str(number))
            shutil.copy2(path, originals[path])
        for start in range(0, len(libraries), _BATCH):  # a file strip refuses stays as it was; checked below
            subprocess.run([strip, *STRIP_COMMAND[1:], *map(str, libraries[start:start + _BATCH])], capture_output=True)
        after = loadable(libraries, python)
        restored = 0
        for path in libraries:  # kept stripped only when shown to load both before and after
            if path not in before or path not in after:
                shutil.copy2(originals[path], path)
                restored += 1
    saved = sum(sizes[p] - p.stat().st_size for p in libraries)
    if log:
        log(f"stripped the symbol tables of {len(libraries) - restored} shared libraries: {saved / 1e6:.1f} MB less"
            + (f" ({restored} put back as they were: not shown to load after stripping)" if restored else ""))
    return saved


def duplicate_links(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """Shared libraries among ``paths`` (relative to ``root``) whose bytes equal an earlier one's: each later
    path -> the relative link to the first (the archive holds it once; the loader follows the link)."""
    by_size: dict[int, list[str]] = {}
    for rel in paths:
        path = root / rel
        if is_shared_library(rel.rpartition("/")[2]) and not path.is_symlink() and path.is_file():
            size = path.stat().st_size
            if size >= LINK_MIN_BYTES:
                by_size.setdefault(size, []).append(rel)
    links: dict[str, str] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        first: dict[str, str] = {}
        for rel in sorted(group):
            digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
            if digest in first:
                links[rel] = os.path.relpath(first[digest], os.path.dirname(rel) or ".")
            else:
                first[digest] = rel
    return links
