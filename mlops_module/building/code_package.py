"""The code package: the model's scripts, config and requirements, the built-in jobs and the runtime, as files
and as one deterministic ``code.zip``; and the manifest beside it (which file is the config, which commit)."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path
from typing import Any

from mlops_module import names
from mlops_module.building.artifacts import Artifacts
from mlops_module.building.source import COMMIT_ID
from mlops_module.spec.config import ModelConfig
from mlops_module.storage import Storage, sha256_file


def build_code_zip(files: list[tuple[str, Path]], out: Path) -> tuple[int, str]:
    """A deterministic zip of the code package (what ``--py-files`` puts on the Python path)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel, path in files:
            info = zipfile.ZipInfo(rel, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o644 | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return out.stat().st_size, sha256_file(out)



PACKAGE_FILE = names.PACKAGE_FILE

def write_manifest(cfg: ModelConfig, commit: str | None, art: Artifacts, store: Storage, tmp: Path,
                    counter: Any = None) -> None:
    """Metadata beside the package's files, outside its key: which file is the config, and the commit."""
    manifest = tmp / PACKAGE_FILE
    config = cfg.source.resolve()
    root = cfg.repo_root.resolve() if cfg.repo_root is not None else config.parent
    manifest.write_text(json.dumps({"config": config.relative_to(root).as_posix() if config.is_relative_to(root)
                                    else config.name, "git_commit": commit}), encoding="utf-8")
    store.upload(manifest, f"{art.code_prefix}/{PACKAGE_FILE}", sha256_file(manifest), counter)


def package_manifest(store: Storage, code_prefix: str) -> dict[str, Any]:
    """What ``mlops package`` recorded beside a code package (empty for packages built before it did)."""
    try:
        recorded = json.loads(store.read_bytes(f"{code_prefix}/{PACKAGE_FILE}") or b"{}")
    except ValueError:
        return {}
    return recorded if isinstance(recorded, dict) else {}


def read_source_commit(store: Storage, code_prefix: str) -> str | None:
    """The commit a code package was built from, when ``mlops package`` knew it."""
    commit = str(package_manifest(store, code_prefix).get("git_commit") or "")
    return commit if COMMIT_ID.fullmatch(commit) else None
