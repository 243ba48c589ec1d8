"""The environment archive and the code package: content addresses, deterministic builds, upload.

The interpreter: a venv's ``bin/python`` points at the interpreter it was made with, outside the
venv. We don't ship an interpreter; we build *for the image's*. The environment is installed with
uv for the target Python version and platform (wheels only, so nothing is compiled against the
build machine) into ``lib/python3.X/site-packages``, and the archive's ``bin/python`` is a symlink
to ``<python_home>/python3.X``, the stand's image interpreter (``spark.python_home``, default
``/usr/bin``), with a ``pyvenv.cfg`` beside ``bin/``. Started as ``./environment/bin/python``,
that interpreter finds the ``pyvenv.cfg`` and uses the archive's site-packages: a real venv,
relocatable by construction. The key covers everything that determines the archive, including
``python_home``, so an archive never lands on a stand whose image can't run it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .config import ModelConfig
from .errors import MlopsError
from .storage import sha256_file

TARGET_PLATFORM = "x86_64-manylinux_2_28"
ARCHIVE_FORMAT = "1"  # bump when the archive layout changes
BUILTIN_DIR = "_mlops"  # where the code package carries the toolkit's built-in jobs
BUILTIN_JOBS = Path(__file__).parent / "jobs"
REQUIREMENTS_COPY = "mlops-requirements.txt"
# The part of the toolkit job scripts import (runtime.py and what it imports), shipped in code.zip.
RUNTIME_MODULES = ("__init__.py", "runtime.py", "registry.py", "errors.py", "drift.py")
FIXED_MTIME = 1577836800  # 2020-01-01: archives don't depend on when they were built
# gzip level 5 through zlib-ng, compressed in parallel blocks: smaller than venv-pack's zlib level 4
# output and faster (bench/package.py). The bytes depend on the number of compression threads, so
# it is fixed, not taken from the machine: builders with different core counts agree.
COMPRESS_LEVEL = 5
PACK_THREADS = 2
_SKIP_DIRS = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}

Log = Callable[[str], None]


class PackagingError(MlopsError):
    """Building or checking an artifact failed; the message says what to change."""


@dataclass(frozen=True)
class EnvSpec:
    """Everything that determines an environment archive, and nothing else."""

    requirements: bytes
    requirements_name: str
    python_version: str
    python_home: str
    platform: str = TARGET_PLATFORM

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        parts = (b"mlops-env", __version__.encode(), ARCHIVE_FORMAT.encode(), self.python_version.encode(),
                 self.python_home.encode(), self.platform.encode(), self.requirements)
        for part in parts:
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()[:32]

    @property
    def interpreter(self) -> str:
        return f"{self.python_home.rstrip('/')}/python{self.python_version}"


@dataclass(frozen=True)
class Artifacts:
    """Where a stand's Spark jobs find the environment and the code, as storage keys and Spark URIs."""

    env: EnvSpec
    code_key: str
    spark_base: str
    model: str

    @property
    def env_key(self) -> str:
        return self.env.key

    @property
    def env_object(self) -> str:
        return f"envs/{self.env.key}.tar.gz"

    @property
    def code_prefix(self) -> str:
        return f"code/{self.model}/{self.code_key}"

    @property
    def env_archive(self) -> str:
        return f"{self.spark_base}/{self.env_object}"

    @property
    def code_base(self) -> str:
        return f"{self.spark_base}/{self.code_prefix}"

    def main_file(self, script: str) -> str:
        return f"{self.code_base}/{script}"

    @property
    def code_zip(self) -> str:
        return f"{self.code_base}/code.zip"


def env_spec(cfg: ModelConfig) -> EnvSpec:
    requirements = b""
    if cfg.repo_root is not None and (cfg.repo_root / cfg.requirements).is_file():
        requirements = (cfg.repo_root / cfg.requirements).read_bytes()
    return EnvSpec(requirements, cfg.requirements, cfg.python_version, cfg.stand.python_home)


def code_files(cfg: ModelConfig) -> list[tuple[str, Path]]:
    """What the code package carries: each script's top directory, the config and requirements (so the
    package alone renders the same DAGs on the next stand), the built-in jobs, the runtime."""
    picked: dict[str, Path] = {}
    root = cfg.repo_root
    if root is not None:
        # every job's script, enabled on this stand or not: the package must be the same on every stand
        scripts = [j.script for j in (cfg.train, cfg.inference, cfg.monitoring) if j.script]
        scripts += [cfg.quality_gate.script] if cfg.quality_gate.script else []
        for script in scripts:
            top = root / script.split("/", 1)[0]
            if "/" in script and top.is_dir():
                for rel, path in _tree(top, root):
                    picked[rel] = path
            elif (root / script).is_file():
                picked[script] = root / script
        config = cfg.source.resolve()
        if config.is_file() and config.is_relative_to(root):
            picked[config.relative_to(root).as_posix()] = config
        requirements = (root / cfg.requirements).resolve()
        if requirements.is_file() and requirements.is_relative_to(root):  # the package re-renders on its own
            picked[requirements.relative_to(root).as_posix()] = requirements
    for rel, path in _tree(BUILTIN_JOBS, BUILTIN_JOBS):
        if rel != "__init__.py":
            picked[f"{BUILTIN_DIR}/{rel}"] = path
    for name in RUNTIME_MODULES:
        picked[f"mlops_module/{name}"] = Path(__file__).parent / name
    return sorted(picked.items())


def _tree(top: Path, root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(root)
        hidden = any(part.startswith(".") for part in rel.parts)  # .DS_Store, .ipynb_checkpoints
        if path.is_file() and not hidden and not (_SKIP_DIRS & set(rel.parts)) and path.suffix != ".pyc":
            yield rel.as_posix(), path


def code_package_key(files: list[tuple[str, Path]]) -> str:
    digest = hashlib.sha256(b"mlops-code\0")
    for rel, path in files:
        for part in (rel.encode(), path.read_bytes()):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()[:32]


def artifacts(cfg: ModelConfig) -> Artifacts:
    return Artifacts(env_spec(cfg), code_package_key(code_files(cfg)), cfg.stand.spark_storage_uri, cfg.name)


# --- building --------------------------------------------------------------------------------

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
    (dest / "pyvenv.cfg").write_text(
        f"home = {spec.python_home}\ninclude-system-site-packages = false\nversion = {spec.python_version}\n"
        f"mlops-env-key = {spec.key}\n")
    return dest


def pack(env_dir: Path, out: Path) -> tuple[int, str]:
    """A deterministic tar.gz of ``env_dir``'s contents: sorted, fixed times and owners, no bytecode.

    tar.gz, not zip: zip loses the executable bit and symlinks. The tar stream is written here
    (headers from :mod:`tarfile`, data in large reads) because ``tarfile``'s own copying was the
    slowest part of packing; compression runs in parallel blocks. Returns (size, sha256).
    """
    from zlib_ng import gzip_ng_threaded

    paths = sorted(_walk(env_dir), key=lambda p: p.relative_to(env_dir).as_posix())
    written = 0
    gz_file = gzip_ng_threaded.open(  # type: ignore[no-untyped-call]
        out, "wb", compresslevel=COMPRESS_LEVEL, threads=PACK_THREADS)
    with gz_file as gz:
        for path in paths:
            info = _tarinfo(path, path.relative_to(env_dir).as_posix())
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


def _walk(root: Path) -> Iterator[Path]:
    for current, dirs, files in os.walk(root):
        base = Path(current)
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in dirs:
            yield base / name
        for name in files:
            if not name.endswith(".pyc"):
                yield base / name


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


def build_code_zip(files: list[tuple[str, Path]], out: Path) -> tuple[int, str]:
    """A deterministic zip of the code package (what ``--py-files`` puts on the Python path)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel, path in files:
            info = zipfile.ZipInfo(rel, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o644 | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return out.stat().st_size, sha256_file(out)


# --- shipping --------------------------------------------------------------------------------


@dataclass
class Shipped:
    """One artifact of a ``mlops package`` run, as reported (``--json``)."""

    artifact: str
    uri: str
    key: str
    status: str  # "uploaded" or "skipped"
    size: int = 0
    sha256: str | None = None
    bytes_uploaded: int = 0
    seconds: float = 0.0


@dataclass
class PackageReport:
    model: str
    stand: str
    artifacts: list[Shipped] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "stand": self.stand, "artifacts": [asdict(a) for a in self.artifacts]}


class _Counter:
    """Counts bytes handed to storage, and drives a progress bar when there is one."""

    def __init__(self, bar: Any = None) -> None:
        self.bytes, self.bar = 0, bar

    def __call__(self, n: int) -> None:
        self.bytes += n
        if self.bar is not None:
            self.bar.update(n)


def _bar(total: int, label: str, show: bool) -> Any:
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=False)


def package(cfg: ModelConfig, storage: Any = None, *, show_progress: bool = False,
            log: Log | None = None) -> PackageReport:
    """Build and upload what the stand's manifests reference; skip what the stand already has."""
    from .storage import open_storage

    store = storage or open_storage(cfg.stand.storage_uri, cfg.stand.storage_endpoint_url)
    art = artifacts(cfg)
    check_requirements(art.env)
    if cfg.stand.backend == "local" and not Path(art.env.interpreter).exists():
        raise PackagingError(
            f"python.version is {cfg.python_version}, but this machine (the {cfg.stand.name} stand's image) has no "
            f"{art.env.interpreter}: install Python {cfg.python_version} there, or point the stand's "
            "spark.python_home at the directory that has it (the built-in local stand's: MLOPS_LOCAL_PYTHON_HOME, "
            "default the directory of the Python running mlops)")
    report = PackageReport(cfg.name, cfg.stand.name)
    store.check()  # an unreachable or missing bucket fails here, before minutes of building
    report.artifacts.append(_ship_env(art, store, show_progress, log))
    report.artifacts.append(_ship_code(cfg, art, store, show_progress, log))
    return report


def _ship_env(art: Artifacts, store: Any, show: bool, log: Log | None) -> Shipped:
    start = time.perf_counter()
    uri = store.url(art.env_object)
    existing = store.stat(art.env_object)
    if existing is not None and existing.sha256:
        if log:
            log(f"environment {art.env_key}: already in {uri}, nothing built or uploaded")
        return Shipped("environment", uri, art.env_object, "skipped", existing.size, existing.sha256, 0,
                       time.perf_counter() - start)
    with tempfile.TemporaryDirectory(prefix="mlops-env-") as tmp:
        env_dir = build_environment(art.env, Path(tmp) / "environment", log)
        archive = Path(tmp) / "environment.tar.gz"
        if log:
            log("packing the environment")
        size, digest = pack(env_dir, archive)
        counter = _Counter(_bar(size, "environment", show))
        store.upload(archive, art.env_object, digest, counter)
        if counter.bar is not None:
            counter.bar.close()
    if log:
        log(f"environment {art.env_key}: uploaded {size} bytes to {uri}")
    return Shipped("environment", uri, art.env_object, "uploaded", size, digest, counter.bytes,
                   time.perf_counter() - start)


PACKAGE_FILE = "mlops-package.json"  # in the code package: its config's path, the commit it was built from
COMMIT_ID = re.compile(r"[0-9a-f]{7,40}")


def source_commit(cfg: ModelConfig, files: list[tuple[str, Path]]) -> str | None:
    """The commit that holds exactly the package's repository files, if one can be named: every one of
    them tracked and unchanged at HEAD, HEAD on a remote branch (a deploy job can fetch it), and, under
    Jenkins, HEAD being the ``$GIT_COMMIT`` it checked out. None otherwise: no commit beats a wrong one."""
    root = cfg.repo_root
    if root is None:
        return None
    ours = [str(path.resolve()) for _, path in files if path.resolve().is_relative_to(root.resolve())]

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None

    head = git("rev-parse", "HEAD")
    if head is None or head.returncode != 0 or not ours:
        return None
    commit = head.stdout.strip()
    given = os.environ.get("GIT_COMMIT", "").strip()
    if given and given != commit:
        return None
    checks = (git("ls-files", "--error-unmatch", "--", *ours),  # tracked
              git("diff", "--quiet", "HEAD", "--", *ours),  # unchanged, staged or not
              git("branch", "-r", "--contains", commit))  # pushed
    if any(c is None or c.returncode != 0 for c in checks) or not checks[2].stdout.strip():  # type: ignore[union-attr]
        return None
    return commit if COMMIT_ID.fullmatch(commit) else None


def _write_manifest(cfg: ModelConfig, commit: str | None, art: Artifacts, store: Any, tmp: Path,
                    counter: Any = None) -> None:
    """Metadata beside the package's files, outside its key: which file is the config, and the commit."""
    manifest = tmp / PACKAGE_FILE
    config = cfg.source.resolve()
    root = cfg.repo_root.resolve() if cfg.repo_root is not None else config.parent
    manifest.write_text(json.dumps({"config": config.relative_to(root).as_posix() if config.is_relative_to(root)
                                    else config.name, "git_commit": commit}), encoding="utf-8")
    store.upload(manifest, f"{art.code_prefix}/{PACKAGE_FILE}", sha256_file(manifest), counter)


def package_manifest(store: Any, code_prefix: str) -> dict[str, Any]:
    """What ``mlops package`` recorded beside a code package (empty for packages built before it did)."""
    try:
        recorded = json.loads(store.read_bytes(f"{code_prefix}/{PACKAGE_FILE}") or b"{}")
    except ValueError:
        return {}
    return recorded if isinstance(recorded, dict) else {}


def read_source_commit(store: Any, code_prefix: str) -> str | None:
    """The commit a code package was built from, when ``mlops package`` knew it."""
    commit = str(package_manifest(store, code_prefix).get("git_commit") or "")
    return commit if COMMIT_ID.fullmatch(commit) else None


def _ship_code(cfg: ModelConfig, art: Artifacts, store: Any, show: bool, log: Log | None) -> Shipped:
    start = time.perf_counter()
    marker = f"{art.code_prefix}/code.zip"  # uploaded last: its presence means the package is complete
    uri = store.url(art.code_prefix)
    existing = store.stat(marker)
    files = code_files(cfg)
    if existing is not None and existing.sha256:
        if log:
            log(f"code package {art.code_key}: already in {uri}, nothing uploaded")
        commit = source_commit(cfg, files)
        if commit and not read_source_commit(store, art.code_prefix):
            with tempfile.TemporaryDirectory(prefix="mlops-code-") as tmp:  # built from a dirty tree first
                _write_manifest(cfg, commit, art, store, Path(tmp))
        return Shipped("code", uri, art.code_prefix, "skipped", existing.size, existing.sha256, 0,
                       time.perf_counter() - start)
    counter = _Counter(_bar(sum(p.stat().st_size for _, p in files), "code", show))
    with tempfile.TemporaryDirectory(prefix="mlops-code-") as tmp:
        for rel, path in files:
            store.upload(path, f"{art.code_prefix}/{rel}", sha256_file(path), counter)
        _write_manifest(cfg, source_commit(cfg, files), art, store, Path(tmp), counter)
        zip_path = Path(tmp) / "code.zip"
        size, digest = build_code_zip(files, zip_path)
        store.upload(zip_path, marker, digest, counter)
    if counter.bar is not None:
        counter.bar.close()
    if log:
        log(f"code package {art.code_key}: uploaded {len(files)} files and code.zip to {uri}")
    return Shipped("code", uri, art.code_prefix, "uploaded", size, digest, counter.bytes,
                   time.perf_counter() - start)


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


def verify(archive: Path, log: Log | None = None) -> VerifyReport:
    """Unpack into an empty directory elsewhere and import every top-level requirement with the
    archive's own ``./environment/bin/python``, isolated from this machine's Python paths."""
    with tempfile.TemporaryDirectory(prefix="mlops-verify-") as tmp:
        work = Path(tmp)
        env = work / "environment"
        env.mkdir()
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(env, filter="tar")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise PackagingError(f"{archive} is not a readable tar.gz archive: {exc}") from exc
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
        result = subprocess.run(["./environment/bin/python", "-I", "-c", code, *modules], cwd=work,
                                capture_output=True, text=True)
        output = (result.stdout + result.stderr).strip()
        lines = result.stdout.strip().splitlines()
        # The imports must succeed, and from the unpacked environment, not from this machine's Python.
        ok = result.returncode == 0 and bool(lines) and Path(lines[-1]).resolve() == env.resolve()
        if log:
            log(f"{'ok' if ok else 'FAILED'}: imported {', '.join(modules) or 'nothing'} with {interpreter}")
        return VerifyReport(str(archive), interpreter, modules, ok, output)
