"""``mlops package``: build what a stand's manifests reference and upload it; skip what the stand already has."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops_module import names
from mlops_module.building.artifacts import Artifacts, PackagingError, artifacts, code_files
from mlops_module.building.code_package import build_code_zip, read_source_commit, write_manifest
from mlops_module.building.environment import build_environment, check_requirements, pack
from mlops_module.building.source import source_commit
from mlops_module.kinds import Log
from mlops_module.spec.config import ModelConfig
from mlops_module.storage import Storage, sha256_file, storage_of

ENVIRONMENT, CODE = "environment", "code"  # the artifacts a package run ships, as its report names them


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


def package(cfg: ModelConfig, storage: Storage | None = None, *, show_progress: bool = False,
            log: Log | None = None, art: Artifacts | None = None) -> PackageReport:
    """Build and upload what the stand's manifests reference; skip what the stand already has.
    ``art``: the config's artifact keys when the caller computed them already (for render too)."""
    store = storage or storage_of(cfg.stand)
    art = art or artifacts(cfg)
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


def _ship_env(art: Artifacts, store: Storage, show: bool, log: Log | None) -> Shipped:
    start = time.perf_counter()
    uri = store.url(art.env_object)
    existing = store.stat(art.env_object)
    if existing is not None and existing.sha256:
        if log:
            log(f"environment {art.env_key}: already in {uri}, nothing built or uploaded")
        return Shipped(ENVIRONMENT, uri, art.env_object, "skipped", existing.size, existing.sha256, 0,
                       time.perf_counter() - start)
    with tempfile.TemporaryDirectory(prefix="mlops-env-") as tmp:
        env_dir = build_environment(art.env, Path(tmp) / "environment", log)
        archive = Path(tmp) / "environment.tar.gz"
        if log:
            log("packing the environment")
        size, digest = pack(env_dir, archive, art.env.keep)
        counter = _Counter(_bar(size, "environment", show))
        store.upload(archive, art.env_object, digest, counter)
        if counter.bar is not None:
            counter.bar.close()
    if log:
        log(f"environment {art.env_key}: uploaded {size} bytes to {uri}")
    return Shipped(ENVIRONMENT, uri, art.env_object, "uploaded", size, digest, counter.bytes,
                   time.perf_counter() - start)


def _ship_code(cfg: ModelConfig, art: Artifacts, store: Storage, show: bool, log: Log | None) -> Shipped:
    start = time.perf_counter()
    marker = f"{art.code_prefix}/{names.CODE_ZIP}"  # uploaded last: its presence means the package is complete
    uri = store.url(art.code_prefix)
    existing = store.stat(marker)
    files = code_files(cfg)
    if existing is not None and existing.sha256:
        if log:
            log(f"code package {art.code_key}: already in {uri}, nothing uploaded")
        commit = source_commit(cfg, files)
        if commit and not read_source_commit(store, art.code_prefix):
            with tempfile.TemporaryDirectory(prefix="mlops-code-") as tmp:  # built from a dirty tree first
                write_manifest(cfg, commit, art, store, Path(tmp))
        return Shipped(CODE, uri, art.code_prefix, "skipped", existing.size, existing.sha256, 0,
                       time.perf_counter() - start)
    counter = _Counter(_bar(sum(p.stat().st_size for _, p in files), "code", show))
    with tempfile.TemporaryDirectory(prefix="mlops-code-") as tmp:
        for rel, path in files:
            store.upload(path, f"{art.code_prefix}/{rel}", sha256_file(path), counter)
        write_manifest(cfg, source_commit(cfg, files), art, store, Path(tmp), counter)
        zip_path = Path(tmp) / names.CODE_ZIP
        size, digest = build_code_zip(files, zip_path)
        store.upload(zip_path, marker, digest, counter)
    if counter.bar is not None:
        counter.bar.close()
    if log:
        log(f"code package {art.code_key}: uploaded {len(files)} files and code.zip to {uri}")
    return Shipped(CODE, uri, art.code_prefix, "uploaded", size, digest, counter.bytes,
                   time.perf_counter() - start)
