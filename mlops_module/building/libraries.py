"""Shared libraries in the environment archive: their symbol tables stripped, their duplicates shipped once.

Why: every executor of every job on Kubernetes unpacks the archive afresh, and the unpacking is mostly
writing bytes (``bench/package.py``); shared libraries are 70 % of them. Wheels ship symbol tables that only
debuggers and linkers read (``strip --strip-unneeded`` keeps the dynamic symbols a loader and ``dlsym`` use),
and ship a library's SONAME aliases as copies (a wheel can't hold a symlink).

Never stripped: auditwheel's grafted libraries (``<package>.libs/``, ``<package>/.libs/``), which patchelf
rewrote and ``strip`` corrupts ("ELF load command address/offset not page-aligned", measured on numpy's
OpenBLAS), and what the model keeps by config (``python.keep``). A library stays stripped only when it is
shown to load (``dlopen`` in a separate process) both before and after stripping and got smaller: one that
does not load before is left as built, any other is put back as it was. No ``strip`` on the machine:
nothing is stripped, and the build says so. Extension modules are never linked: two identical ones are two
modules, whose state one file would share.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

from mlops_module.kinds import Log
from mlops_module.storage import sha256_file

STRIP_COMMAND = ("strip", "--strip-unneeded")
ELF_MAGIC = b"\x7fELF"
LINK_MIN_BYTES = 64 * 1024  # duplicates smaller than this are not worth a link
LOAD_TIMEOUT_SECONDS = 300.0
_BATCH = 200  # files per strip command

# Runs in a separate process: loading a library runs its initialisers, and one that crashes (a truncated file
# gives SIGBUS), exits or hangs must not take the build with it. Reports to the file it is given, not to stdout
# (which a library may write to): "ready", then "+N" or "-N" for the N-th path as it goes.
_LOADS = """
import ctypes, json, os, sys
paths = json.load(sys.stdin)
out = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.write(out, b"ready\\n")
for number, path in enumerate(paths):
    try:
        ctypes.CDLL(path, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
        os.write(out, b"+%d\\n" % number)
    except Exception:
        os.write(out, b"-%d\\n" % number)
"""


def is_shared_library(name: str) -> bool:
    """``libx.so``, ``libx.so.1.2``, ``mod.cpython-311-x86_64-linux-gnu.so``."""
    return name.endswith(".so") or ".so." in name


def _grafted(parts: list[str]) -> bool:
    """Below an auditwheel ``*.libs`` folder: rewritten by patchelf, corrupted by strip."""
    return any(part.endswith(".libs") for part in parts[:-1])


def kept(inner: str, keep: tuple[str, ...]) -> bool:
    """Whether a ``python.keep`` pattern (:func:`fnmatch.fnmatchcase`, below site-packages) names ``inner`` (a path
    below site-packages) or a folder above it: what the archive keeps as installed."""
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
            if not is_shared_library(name) or path.is_symlink() or _grafted(inner.split("/")) or kept(inner, keep):
                continue
            with path.open("rb") as handle:
                if handle.read(4) != ELF_MAGIC:
                    continue
            found.append(path)
    return found


def loadable(paths: Iterable[Path], python: str) -> set[Path]:
    """Which of ``paths`` ``python`` can ``dlopen`` (lazily, locally). A library that ends the process (a crash,
    an exit) or hangs counts as not loadable, and the check goes on after it; if the interpreter can't start,
    none is."""
    listed = list(paths)
    found: set[Path] = set()
    start = 0
    with tempfile.TemporaryDirectory(prefix="mlops-loads-") as tmp:
        report = Path(tmp, "loads")
        while start < len(listed):
            report.write_bytes(b"")
            try:
                subprocess.run([python, "-I", "-c", _LOADS, str(report)], text=True, timeout=LOAD_TIMEOUT_SECONDS,
                               input=json.dumps([str(p) for p in listed[start:]]),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                pass  # what it reported counts; the next one hung
            except OSError:
                return found
            lines = report.read_text().split("\n")
            if lines[0] != "ready":
                return found
            results = [line for line in lines[1:] if line]
            found.update(listed[start + int(line[1:])] for line in results if line[0] == "+")
            start += len(results) + 1  # all reported, or the next one ended the process: not loadable
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
    checked = [p for p in libraries if p in before]
    unchecked = len(libraries) - len(checked)
    sizes = {p: p.stat().st_size for p in checked}
    restored = 0
    with tempfile.TemporaryDirectory(prefix="mlops-strip-") as tmp:
        originals = {}
        for number, path in enumerate(checked):
            originals[path] = Path(tmp, str(number))
            shutil.copy2(path, originals[path])
        for start in range(0, len(checked), _BATCH):  # a file strip refuses stays as it was
            subprocess.run([strip, *STRIP_COMMAND[1:], *map(str, checked[start:start + _BATCH])], capture_output=True)
        after = loadable(checked, python) if checked else set()
        for path in checked:  # kept stripped only when shown to load both before and after, and smaller
            if path not in after or path.stat().st_size >= sizes[path]:
                restored += path not in after
                path.unlink()
                shutil.copy2(originals[path], path)
    stripped = [p for p in checked if p.stat().st_size < sizes[p]]
    saved = sum(sizes[p] - p.stat().st_size for p in checked)
    if log:
        log(f"stripped the symbol tables of {len(stripped)} shared libraries: {saved / 1e6:.1f} MB less"
            + (f"; {unchecked} left as built (they don't load on this machine, so stripping them can't be checked)"
               if unchecked else "")
            + (f"; {restored} put back as built (they no longer loaded after stripping)" if restored else ""))
    return saved


def _extension_module(name: str) -> bool:
    """A Python extension module (``x.cpython-311-x86_64-linux-gnu.so``, ``x.abi3.so``, or any ``*.so`` not named
    ``lib*``): two identical ones are two modules, and one file for both would share their state."""
    return not name.startswith("lib") or ".cpython-" in name or ".abi3." in name


def duplicate_links(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """Shared libraries (not extension modules) among ``paths`` (relative to ``root``) whose bytes equal an
    earlier one's: each later path -> the relative link to the first (the archive holds it once; the loader
    follows the link)."""
    by_size: dict[int, list[str]] = {}
    for rel in paths:
        path, name = root / rel, rel.rpartition("/")[2]
        if is_shared_library(name) and not _extension_module(name) and not path.is_symlink() and path.is_file():
            size = path.stat().st_size
            if size >= LINK_MIN_BYTES:
                by_size.setdefault(size, []).append(rel)
    links: dict[str, str] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        first: dict[str, str] = {}
        for rel in sorted(group):
            digest = sha256_file(root / rel)
            if digest in first:
                links[rel] = posixpath.relpath("/" + first[digest], "/" + posixpath.dirname(rel))
            else:
                first[digest] = rel
    return links
