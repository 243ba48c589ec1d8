"""The wheel carries the templates, the built-in stands file and the demo's example, so an installed
toolkit renders and runs `mlops demo`. Built by `make dist` (what the platform's images install), which
builds the sdist first and the wheel from it."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (tomli is in the lock for it)
    import tomli as tomllib

pytestmark = pytest.mark.slow


def test_wheel_contains_templates_and_stands(tmp_path: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    # -o install: the virtualenv running this test is the one `make dist` would install first.
    subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "-o", "install", "dist", f"UV={uv}",
                    f"DIST={tmp_path}"], check=True, capture_output=True)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name == f"mlops_module-{version}-py3-none-any.whl"  # the name platform/*/Dockerfile copy
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        assert f"mlops_module-{version}/platform/spark/Dockerfile" in tar.getnames()  # the recipes travel along
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.name for p in (ROOT / "templates").glob("*.j2")}
    assert templates and {f"mlops_module/templates/{t}" for t in templates} <= names
    assert "mlops_module/data/stands.yaml" in names
    assert not any(n.startswith(("tests/", "examples/")) for n in names)
    example = {f"mlops_module/examples/churn/{p.relative_to(ROOT / 'examples' / 'churn')}"
               for p in (ROOT / "examples" / "churn").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert "mlops_module/examples/churn/model.yaml" in example and example <= names
    scaffold = {f"mlops_module/templates/scaffold/{p.relative_to(ROOT / 'templates' / 'scaffold')}"
                for p in (ROOT / "templates" / "scaffold").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert "mlops_module/templates/scaffold/model.yaml.j2" in scaffold and scaffold <= names  # mlops init
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mlops = mlops_module.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
