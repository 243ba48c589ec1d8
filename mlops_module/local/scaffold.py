"""``mlops init NAME``: a model repository that validates, renders and trains on the local stand as is.

What it writes (``templates/scaffold/``): ``model.yaml`` whose first line points editors at the JSON
Schema (``.mlops/model-config.schema.json``, written beside it from this version's schema, so
completion matches the toolkit that checks it), ``src/train.py`` and ``src/inference.py`` on the
runtime, tests, the bundled example's locked requirements, a pre-commit config running
``mlops validate``, a README and a ``.gitignore``. Nothing is overwritten: an existing non-empty
directory is refused.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from mlops_module import names
from mlops_module.building.render import builtin_templates, template_env
from mlops_module.errors import MlopsError, UsageError
from mlops_module.kinds import Log
from mlops_module.spec.schema import SCHEMA_FILE, config_schema_text

NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")  # model.name: a DNS-1035 label of at most 40 characters
DOCS = "https://github.com/mlops-module/mlops-module/tree/main/docs"
# Rendered with Jinja (names, owner, Python version); every other file is copied as it is.
RENDERED = {"model.yaml.j2": "model.yaml", "README.md.j2": "README.md"}
RENAMED = {"gitignore": ".gitignore", "pre-commit-config.yaml": ".pre-commit-config.yaml"}


class ScaffoldError(MlopsError):
    """The target directory can't take a new model repository."""


def init(name: str, parent: Path, owner: str = "my-team", log: Log = print) -> Path:
    """Write a new model repository ``parent/name``; returns its path."""
    if not NAME.match(name):
        raise UsageError(f"model name {name!r}: lowercase letters, digits and '-', starting with a letter, "
                         "at most 40 characters (it becomes part of DAG ids and Kubernetes names)")
    root = parent / name
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ScaffoldError(f"{root} exists and is not empty: choose another name or directory")
    source = builtin_templates() / "scaffold"
    example = names.bundled_example()
    # python.version: this machine's Python (the local stand's "image"), which the example's lock covers
    values = {"name": name, "owner": owner, "python": names.example_python(), "docs": DOCS}
    env = template_env()  # a platform template directory (MLOPS_TEMPLATES) may override scaffold/ files too
    files: dict[str, str] = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = path.relative_to(source).as_posix()
        if rel in RENDERED:
            files[RENDERED[rel]] = env.get_template(f"scaffold/{rel}").render(values)
        else:
            files[RENAMED.get(rel, rel)] = path.read_text(encoding="utf-8")
    for lock in ("requirements.in", "requirements.txt"):  # the example's pins: known to build and to work
        files[lock] = (example / lock).read_text(encoding="utf-8")
    files[SCHEMA_FILE] = config_schema_text()
    try:
        for rel, text in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    except OSError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise ScaffoldError(f"cannot write {root}: {exc.strerror or exc}") from exc
    log(f"created {root} ({len(files)} files); next: cd {root} && mlops validate")
    return root

