"""The environment archive: installed with uv for the image's Python and platform, packed deterministically,
and verified by unpacking it elsewhere.

The interpreter: a venv's ``bin/python`` points at the interpreter it was made with, outside the
venv. We don't ship an interpreter; we build *for the image's*. The environment is installed with
uv for the target Python version and platform (wheels only, so nothing is compiled against the
build machine) into ``lib/python3.X/site-packages``, and the archive's ``bin/python`` is a symlink
to ``<python_home>/python3.X``, the stand's image interpreter (``spark.python_home``, default
``/usr/bin``), with a ``pyvenv.cfg`` beside ``bin/``. Started as ``./environment/bin/python``,
that interpreter finds the ``pyvenv.cfg`` and uses the archive's site-packages: a real venv,
relocatable by construction.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_module import names
from mlops_module.building.artifacts import REQUIREMENTS_COPY, EnvSpec, PackagingError
from mlops_module.building.libraries import duplicate_links, kept, strip_libraries
from mlops_module.building.unpack import UnpackLimits, extract
from mlops_module.kinds import Log
from mlops_module.storage import sha256_file

FIXED_MTIME = 1577836800  # 2020-01-01: archives don't depend on when they were built
# gzip level 5 through zlib-ng, compressed in parallel blocks: smaller than venv-pack's zlib level 4
# output and faster (bench/package.py). The bytes depend on the number of compression threads, so
# it is fixed, not taken from the machine: builders with different core counts agree.
COMPRESS_LEVEL = 5
PACK_THREADS = 2

_INCLUDE = re.compile(r"^\s*(-r|-c|-e|--requirement|--constraint|--editable)\b")


def check_requirements(spec: EnvSpec) -> None:
    """Refuse what would make the archive depend on more than the bytes its key covers."""
    for number, line in enumerate(spec.requirements.decode("utf-8", "replace").splitlines(), 1):
        if _INCLUDE.match(line):
            raise PackagingError(
                f"{spec.requirements_name}:{number}: {line.strip()!r}: includes and editable installs are not "
                "supported in an environment file; list (or pip-compile) every requirement in it")


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def build_environment(spec: EnvSpec, dest: Path, log: Log | None = None) -> Path:
    """Install the requirements for the target Python and platform into a venv layout at ``dest``."""
    check_requirements(spec)
    site = dest / "lib" / f"python{spec.python_version}" / "site-packages"
    site.mkdir(parents=True)
    requirements = dest.parent / f"{dest.name}.requirements.txt"
    requirements.write_bytes(spec.requirements)
    command = [
        _uv(), "pip", "install", "--quiet", "--no-config",
        "--target", str(site), "--python-version", spec.python_version, "--python-platform", spec.platform,
        "--no-build", "--link-mode", "copy", "-r", str(requirements),
    ]
    if log:
        log(f"installing {spec.requirements_name} for Python {spec.python_version} on {spec.platform}")
    result = subprocess.run(command, capture_output=True, text=True)
    requirements.unlink()
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise PackagingError(f"installing {spec.requirements_name} failed (wheels only, for Python "
                             f"{spec.python_version} on {spec.platform}):\n{detail}")
    bin_dir = dest / "bin"
    unpinned = _unpinned(site, spec)
    if unpinned and log:
        log(f"warning: {spec.requirements_name} does not pin {', '.join(unpinned)}: the archive for this key is the "
            "first one built; for reproducible builds, compile a complete lock (uv pip compile ... "
            f"--python-version {spec.python_version} --python-platform {spec.platform})")
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts of a --target install: unused by jobs
    (site / ".lock").unlink(missing_ok=True)  # uv's lock file for the target directory
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(spec.interpreter)
    (bin_dir / "python3").symlink_to("python")
    (bin_dir / f"python{spec.python_version}").symlink_to("python")
    (dest / REQUIREMENTS_COPY).write_bytes(spec.requirements)  # what --verify imports
    compiler = _compiler(spec)
    strip_libraries(site, compiler, spec.keep, log)
    compiled = compile_bytecode(dest, spec.python_version, compiler, spec.keep)
    if not compiled and log:
        log(f"warning: no Python {spec.python_version} on this machine to compile the environment's bytecode "
            f"with ({spec.interpreter}, python{spec.python_version} on PATH): the archive ships none, and every job "
            "compiles what it imports")
    (dest / "pyvenv.cfg").write_text(
        f"home = {spec.python_home}\ninclude-system-site-packages = false\nversion = {spec.python_version}\n"
        f"mlops-env-key = {spec.key}\n" + (f"{BYTECODE_MARK} = {cache_tag(spec.python_version)}\n" if compiled else ""))
    return dest


BYTECODE_MARK = "mlops-bytecode"  # pyvenv.cfg: the archive ships hash-based bytecode for this cache tag


def cache_tag(python_version: str) -> str:
    """CPython's bytecode tag for a version: ``3.11`` -> ``cpython-311``."""
    return "cpython-" + python_version.replace(".", "")


def _compiler(spec: EnvSpec) -> str | None:
    """An interpreter of the target's version on this machine: the image's, this one, or python3.X on PATH."""
    import sys

    if f"{sys.version_info[0]}.{sys.version_info[1]}" == spec.python_version:
        return sys.executable
    for candidate in (spec.interpreter, shutil.which(f"python{spec.python_version}")):
        if candidate and Path(candidate).exists():
            probe = subprocess.run([candidate, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if probe.returncode == 0 and probe.stdout.strip() == spec.python_version:
                return candidate
    return None


def compile_bytecode(env: Path, python_version: str, python: str | None, keep: tuple[str, ...] = ()) -> bool:
    """Compile the environment's modules, once, at build time: otherwise every Python process of every job
    compiles each module it imports (Kubernetes executors unpack a fresh copy each time: seconds per process
    for scikit-learn or pandas). Hash-based bytecode that is never checked against the source (it can't go
    stale: the archive never changes), with paths relative to the environment, so the same input gives the
    same bytes; test suites are skipped unless ``keep`` keeps them (they are left out of the archive).
    False when there is no interpreter of that version (``python`` None) or it failed to start."""
    site = env / "lib" / f"python{python_version}" / "site-packages"
    if python is None or not site.is_dir():
        return False
    skip = [] if keep else ["-x", r"site-packages/[^/]+/(.*/)?tests?/"]
    done = subprocess.run([python, "-I", "-m", "compileall", "-qq", "-j", "0", *skip, "-s", str(env), "-p", "/",
                           "--invalidation-mode", "unchecked-hash", str(site)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    # A module that doesn't compile for this version (a vendored file for another Python) has no bytecode,
    # which is what the job would find anyway; compileall reports it with a non-zero status.
    return any(site.glob(f"*/__pycache__/*.{cache_tag(python_version)}.pyc")) or done.returncode == 0


def pack(env_dir: Path, out: Path, keep: tuple[str, ...] = ()) -> tuple[int, str]:
    """A deterministic tar.gz of ``env_dir``'s contents: sorted, fixed times and owners, without what never
    runs in a job (:func:`never_runs`; ``keep``: patterns below site-packages that stay anyway), a shared
    library whose bytes equal an earlier one's shipped as a link to it (:func:`.libraries.duplicate_links`).

    tar.gz, not zip: zip loses the executable bit and symlinks. The tar stream is written here
    (headers from :mod:`tarfile`, data in large reads) because ``tarfile``'s own copying was the
    slowest part of packing; compression runs in parallel blocks. Returns (size, sha256).
    """
    from zlib_ng import gzip_ng_threaded

    kept = members(env_dir, keep)
    links = duplicate_links(env_dir, kept)
    written = 0
    gz_file = gzip_ng_threaded.open(  # type: ignore[no-untyped-call]
        out, "wb", compresslevel=COMPRESS_LEVEL, threads=PACK_THREADS)
    with gz_file as gz:
        for rel in kept:
            path = env_dir / rel
            info = _tarinfo(path, rel)
            if rel in links:
                info.type, info.linkname, info.size, info.mode = tarfile.SYMTYPE, links[rel], 0, 0o777
            header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
            gz.write(header)
            written += len(header)
            if info.isreg():
                with path.open("rb", buffering=0) as handle:
                    while chunk := handle.read(4 * 1024 * 1024):
                        gz.write(chunk)
                padding = -info.size % tarfile.BLOCKSIZE
                gz.write(b"\0" * padding)
                written += info.size + padding
        end = 2 * tarfile.BLOCKSIZE  # two zero blocks, then zeros up to a whole record, as tar does
        end += -(written + end) % tarfile.RECORDSIZE
        gz.write(b"\0" * end)
    return out.stat().st_size, sha256_file(out)


def parse_requirements(requirements: bytes) -> list[Any]:
    """The requirement lines of a requirements or lock file (options, comments and hashes dropped;
    continued lines joined), as ``packaging`` Requirements."""
    from packaging.requirements import InvalidRequirement, Requirement

    parsed = []
    for line in requirements.decode("utf-8", "replace").replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].split("--hash", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            parsed.append(Requirement(line))
        except InvalidRequirement as exc:
            raise PackagingError(f"cannot read requirement {line!r}: {exc}") from exc
    return parsed


def _unpinned(site: Path, spec: EnvSpec) -> list[str]:
    """Installed distributions the requirements don't pin with ``==``: what a later build may change."""
    from packaging.utils import canonicalize_name

    try:
        requirements = parse_requirements(spec.requirements)
    except PackagingError:  # uv installed it; a line only uv understands is no reason to fail the build
        return []
    pinned = {canonicalize_name(r.name) for r in requirements if any(s.operator in ("==", "===") for s in r.specifier)}
    installed = {canonicalize_name(i.name[: -len(".dist-info")].rsplit("-", 1)[0]) for i in site.glob("*.dist-info")}
    return sorted(installed - pinned)


# What never runs in a job, left out of the archive (issue 18): bytecode for other interpreters than the
# target's (a ``__pycache__`` keeps only ``*.cpython-3XY.pyc`` of the ``lib/python3.X`` it is in), type
# stubs, C/C++/Cython/Fortran sources and headers, static libraries (all for building extensions, not for
# running them), and the test suites packages ship below their top-level package (``numpy/_core/tests``,
# ``sklearn/utils/tests``; ``numpy.testing``, ``pandas._testing`` are modules libraries import: they stay).
# A ``*.dist-info`` folder stays whole: its METADATA, entry points and RECORD serve importlib.metadata, its
# licence files go wherever the code goes.
NEVER_RUN_SUFFIXES = (".pyo", ".pyi", ".h", ".hh", ".hpp", ".pxd", ".pyx", ".pxi", ".c", ".cc", ".cpp",
                      ".f", ".f90", ".a")
TEST_DIRS = frozenset({"tests", "test"})
_PYTHON_DIR = re.compile(r"python(3\.\d+)")


def never_runs(rel: str, keep: tuple[str, ...] = ()) -> bool:
    """Whether ``rel`` (a path in the environment) is left out of the archive: what no job imports or loads,
    unless ``keep`` has a pattern (:func:`.libraries.kept`) for it or a folder above it."""
    parts = rel.split("/")
    if "__pycache__" in parts:  # bytecode: only the target interpreter's, in lib/python3.X/
        python = _PYTHON_DIR.fullmatch(parts[1]) if len(parts) > 2 and parts[0] == "lib" else None
        tag = f".{cache_tag(python.group(1))}.pyc" if python else None
        if not tag or not (parts[-1] == "__pycache__" or parts[-1].endswith(tag)):
            return True
    inner = parts[parts.index("site-packages") + 1:] if "site-packages" in parts else parts
    if inner and inner[0].endswith(".dist-info"):
        return False
    dropped = parts[-1].endswith(NEVER_RUN_SUFFIXES) or not TEST_DIRS.isdisjoint(inner[1:])
    if dropped and keep:
        return not kept("/".join(inner), keep)
    return dropped


def members(root: Path, keep: tuple[str, ...] = ()) -> list[str]:
    """The archive's entries below ``root``, sorted: every file and link but what :func:`never_runs`, the
    folders they are in, and folders that were empty to begin with (a folder emptied by leaving things out
    goes too: ``numpy/_core/include``)."""
    kept: set[str] = set()
    for current, dirs, files in os.walk(root):
        base = Path(current).relative_to(root).as_posix()
        prefix = "" if base == "." else f"{base}/"
        if prefix and not dirs and not files and not base.endswith("__pycache__") and not never_runs(base, keep):
            kept.add(base)
        links = [d for d in dirs if os.path.islink(os.path.join(current, d))]  # listed, never walked into
        dirs[:] = [d for d in dirs if d not in links and (not never_runs(prefix + d) or (keep and d != "__pycache__"))]
        kept.update(prefix + name for name in (*links, *files) if not never_runs(prefix + name, keep))
    for rel in list(kept):
        parent = rel.rpartition("/")[0]
        while parent and parent not in kept:
            kept.add(parent)
            parent = parent.rpartition("/")[0]
    return sorted(kept)


def _tarinfo(path: Path, name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    st = path.lstat()
    info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "", ""
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
    elif stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = st.st_size, 0o755 if st.st_mode & 0o111 else 0o644
    return info



# --- verifying -------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    archive: str
    interpreter: str
    modules: list[str]
    ok: bool
    output: str


def _target_environment(python_version: str) -> dict[str, str]:
    """PEP 508 marker values of the target: the image's CPython on Linux x86_64."""
    return {"python_version": python_version, "python_full_version": f"{python_version}.0", "os_name": "posix",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
            "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def top_level_modules(site: Path, requirements: bytes, python_version: str) -> list[str]:
    """Import names of the top-level requirements, read from the installed distributions' metadata."""
    from packaging.utils import canonicalize_name

    environment = _target_environment(python_version)
    wanted = [canonicalize_name(r.name) for r in parse_requirements(requirements)
              if r.marker is None or r.marker.evaluate(environment)]
    dists: dict[str, Path] = {}
    for info in site.glob("*.dist-info"):
        name = info.name[: -len(".dist-info")].rsplit("-", 1)[0]
        dists[canonicalize_name(name)] = info
    modules: list[str] = []
    for name in wanted:
        if name not in dists:
            raise PackagingError(f"requirement {name!r} is not installed in the environment")
        modules += _dist_modules(dists[name])
    if wanted and not modules:
        raise PackagingError("found no importable module for the requirements; nothing could be checked")
    return sorted(set(modules))


def _dist_modules(info: Path) -> list[str]:
    """Importable top-level names of one installed distribution (top_level.txt, else RECORD)."""
    site = info.parent
    top = info / "top_level.txt"
    if top.is_file():
        candidates = [n.strip() for n in top.read_text().splitlines() if n.strip()]
    else:
        candidates = [line.split(",", 1)[0].split("/", 1)[0] for line in (info / "RECORD").read_text().splitlines()]
    names = set()
    for name in candidates:
        module = name[:-3] if name.endswith(".py") else name.split(".", 1)[0] if name.endswith(".so") else name
        exists = (site / module).is_dir() or (site / f"{module}.py").is_file() or any(site.glob(f"{module}.*.so"))
        if module.isidentifier() and not module.startswith("_") and exists:
            names.add(module)
    return sorted(names)


DEFAULT_VERIFY_TIMEOUT = 300.0  # seconds; importing a real environment's requirements takes a few


def verify_timeout() -> float:
    """``$MLOPS_VERIFY_TIMEOUT`` (seconds) or the default: how long the import check may run."""
    raw = os.environ.get(names.VERIFY_TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_VERIFY_TIMEOUT
    except ValueError:
        value = 0.0
    if not value > 0:
        raise PackagingError(f"${names.VERIFY_TIMEOUT_ENV} must be a positive number of seconds, not {raw!r}")
    return value


def _run_bounded(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str] | None:
    """Run ``command`` in its own process group; None when it outlives ``timeout`` (the whole group is
    killed then, so nothing it started keeps the temporary directory busy)."""
    import signal

    with subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def verify(archive: Path, log: Log | None = None, timeout: float | None = None,
           limits: UnpackLimits | None = None) -> VerifyReport:
    """Unpack into an empty directory elsewhere (:func:`.unpack.extract`: nothing outside it, capped)
    and import every top-level requirement with the archive's own ``./environment/bin/python``,
    isolated from this machine's Python paths, within ``timeout`` seconds (default
    ``$MLOPS_VERIFY_TIMEOUT`` or 300). The temporary directory goes on every exit."""
    timeout = verify_timeout() if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="mlops-verify-") as tmp:
        work = Path(tmp)
        env = work / "environment"
        env.mkdir()
        extract(archive, env, limits)
        if not (env / "bin" / "python").is_symlink():
            raise PackagingError(f"{archive} was not built by mlops package (no bin/python link in it)")
        interpreter = os.readlink(env / "bin" / "python")
        if not Path(interpreter).exists():
            raise PackagingError(
                f"the archive's bin/python links to {interpreter}, which this machine does not have; "
                "verify it where the stand's image Python lives (spark.python_home in the stands file)")
        version = next(env.glob("lib/python3.*")).name[len("python"):]
        site = env / "lib" / f"python{version}" / "site-packages"
        copy = env / REQUIREMENTS_COPY
        if not copy.is_file():
            raise PackagingError(f"{archive} was not built by mlops package (no {REQUIREMENTS_COPY} in it)")
        modules = top_level_modules(site, copy.read_bytes(), version)
        code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n" \
               "print(sys.prefix)\n"
        result = _run_bounded(["./environment/bin/python", "-I", "-c", code, *modules], work, timeout)
        if result is None:
            raise PackagingError(f"verifying {archive}: importing {', '.join(modules)} with {interpreter} did not "
                                 f"finish within {timeout:g} s (a module or .pth file that blocks at import?); "
                                 f"set ${names.VERIFY_TIMEOUT_ENV} for a longer limit")
        output = (result.stdout + result.stderr).strip()
        lines = result.stdout.strip().splitlines()
        # The imports must succeed, and from the unpacked environment, not from this machine's Python.
        ok = result.returncode == 0 and bool(lines) and Path(lines[-1]).resolve() == env.resolve()
        if log:
            log(f"{'ok' if ok else 'FAILED'}: imported {', '.join(modules) or 'nothing'} with {interpreter}")
        return VerifyReport(str(archive), interpreter, modules, ok, output)
