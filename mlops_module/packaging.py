"""Content addresses of the environment archive and the code package.

Rendering needs the final URIs before anything is built, so the keys are pure functions of what
determines each artifact. ``mlops package`` (building and uploading) uses the same functions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .config import ModelConfig

TARGET_PLATFORM = "linux-x86_64"
BUILTIN_DIR = "_mlops"  # where the code package carries the toolkit's built-in jobs
_SKIP_DIRS = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


@dataclass(frozen=True)
class Artifacts:
    """Where a stand's Spark jobs find the environment and the code (Spark URIs, s3a:// on S3)."""

    env_key: str
    code_key: str
    env_archive: str
    code_base: str

    def main_file(self, script: str) -> str:
        return f"{self.code_base}/{script}"

    @property
    def code_zip(self) -> str:
        return f"{self.code_base}/code.zip"


def env_archive_key(requirements: bytes, python_version: str, platform: str = TARGET_PLATFORM) -> str:
    digest = hashlib.sha256()
    for part in (b"mlops-env", __version__.encode(), python_version.encode(), platform.encode(), requirements):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:32]


def code_files(cfg: ModelConfig) -> list[tuple[str, Path]]:
    """The model repo files the code package carries: each script's top directory and the config."""
    root = cfg.repo_root
    if root is None:
        return []
    picked: dict[str, Path] = {}
    scripts = [j.script for j in cfg.jobs if j.script] + ([cfg.quality_gate.script] if cfg.quality_gate.script else [])
    for script in scripts:
        top = script.split("/", 1)[0]
        candidate = root / top
        if "/" in script and candidate.is_dir():
            for path in sorted(candidate.rglob("*")):
                rel = path.relative_to(root)
                hidden = any(part.startswith(".") for part in rel.parts)  # .DS_Store, .ipynb_checkpoints
                if path.is_file() and not hidden and not (_SKIP_DIRS & set(rel.parts)) and path.suffix != ".pyc":
                    picked[rel.as_posix()] = path
        elif (root / script).is_file():
            picked[script] = root / script
    config = cfg.source.resolve()
    if config.is_file() and config.is_relative_to(root):
        picked[config.relative_to(root).as_posix()] = config
    return sorted(picked.items())


def code_package_key(files: list[tuple[str, Path]]) -> str:
    digest = hashlib.sha256(b"mlops-code\0")
    for rel, path in files:
        data = path.read_bytes()
        for part in (rel.encode(), data):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()[:32]


def artifacts(cfg: ModelConfig) -> Artifacts:
    requirements = b""
    if cfg.repo_root is not None and (cfg.repo_root / cfg.requirements).is_file():
        requirements = (cfg.repo_root / cfg.requirements).read_bytes()
    env_key = env_archive_key(requirements, cfg.python_version)
    code_key = code_package_key(code_files(cfg))
    base = cfg.stand.spark_storage_uri
    return Artifacts(
        env_key=env_key,
        code_key=code_key,
        env_archive=f"{base}/envs/{env_key}.tar.gz",
        code_base=f"{base}/code/{cfg.name}/{code_key}",
    )
