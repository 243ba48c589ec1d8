"""Docs that are generated must match what the code does now."""

from __future__ import annotations

import json
from pathlib import Path

from mlops_module.spec.schema import config_schema

ROOT = Path(__file__).resolve().parents[1]


def test_committed_schema_matches_mlops_schema() -> None:
    committed = json.loads((ROOT / "docs" / "model-config.schema.json").read_text())
    assert committed == config_schema(), "run: mlops schema --out docs/model-config.schema.json"


def test_readme_opens_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [line.split("#")[0].strip() for line in lines[:8] if line.startswith("make ")]
    assert commands == ["make demo", "make test"]


def test_config_reference_is_generated_from_the_schema() -> None:
    from mlops_module.spec.schema import config_reference

    committed = (ROOT / "docs" / "config-reference.md").read_text()
    assert committed == config_reference(), "run: mlops schema --markdown > docs/config-reference.md"
    schema = config_schema()
    for section, node in schema["properties"].items():  # every key of the schema has its row
        assert f"| `{section}` |" in committed
        for key in node.get("properties", {}):
            assert f"| `{section}.{key}` |" in committed


def test_relative_links_in_the_docs_resolve() -> None:
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken, checked = [], 0
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # web addresses and anchors on the same page
            checked += 1
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert checked > 40 and broken == []
