"""The wheel carries the templates, the built-in stands file and the demo's example, so an installed
toolkit renders and runs `mlops demo`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_wheel_contains_templates_and_stands(tmp_path: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)], check=True,
                   capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
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
