"""Rendering: deterministic, atomic, nothing written on invalid input, platform templates honoured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import EXAMPLE_CONFIGS, MINIMAL, crd_errors, render, resolve, write_repo

from mlops_module import names
from mlops_module.building.render import BUNDLE_INDEX, render_bundle, write_bundle
from mlops_module.errors import ConfigError, RenderError


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("stand", ["local", "mdp", "prom"])
def test_rendering_is_deterministic(tmp_path: Path, stand: str) -> None:
    config = EXAMPLE_CONFIGS[0]
    first = tree(render(config, stand, tmp_path / "a"))
    second = tree(render(config, stand, tmp_path / "b"))
    assert first == second
    model = resolve(config, stand).name
    # a stand versions are pushed to (prom) also has the acceptance DAG and its checks' manifests
    dags = [*names.JOBS, *([names.ACCEPT] if stand == "prom" else [])]
    spark = [*names.JOBS, *(["evaluate", "smoke"] if stand == "prom" else [])]
    expected = {BUNDLE_INDEX, "config/model.yaml"} | {names.dag_file(model, stand, j) for j in dags} | {
        names.manifest_file(model, stand, j) for j in spark}
    assert set(first) == expected


def test_bundle_index_describes_the_files(tmp_path: Path) -> None:
    out = render(EXAMPLE_CONFIGS[0], "mdp", tmp_path / "out")
    index = json.loads((out / BUNDLE_INDEX).read_text())
    assert index["stand"] == "mdp"
    assert index["dag_ids"] == [f"churn-classifier__mdp__{j}" for j in names.JOBS]
    assert index["env_archive"].startswith("s3a://mlops-mdp/models/envs/")
    import hashlib

    for rel, digest in index["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest


def test_env_archive_key_follows_requirements(tmp_path: Path) -> None:
    config = write_repo(tmp_path / "repo", MINIMAL)
    before = render_bundle(resolve(config, "mdp"))
    (tmp_path / "repo" / "requirements.txt").write_text("numpy==2.1.0\n")
    after = render_bundle(resolve(config, "mdp"))
    key = names.manifest_file("churn", "mdp", "train")
    assert before.files[key] != after.files[key]
    (tmp_path / "repo" / "src" / "train.py").write_text("print('changed')\n")
    code_changed = render_bundle(resolve(config, "mdp"))
    assert "/code/churn/" in code_changed.files[key]
    assert code_changed.files[key] != after.files[key]


def test_invalid_config_writes_nothing(tmp_path: Path) -> None:
    from mlops_module.cli import main

    config = write_repo(tmp_path / "repo", {**MINIMAL, "train": {"script": "src/train.py", "schedule": "nope"}})
    out = tmp_path / "out"
    assert main(["render", str(config), "--stand", "mdp", "--out", str(out)]) == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no temporary directory left either


def test_rerender_replaces_a_previous_bundle(tmp_path: Path) -> None:
    config = write_repo(tmp_path / "repo", MINIMAL)
    out = render(config, "mdp", tmp_path / "out")
    (out / "stale.py").write_text("# from an older render\n")
    render(config, "mdp", out)
    assert not (out / "stale.py").exists()
    assert (out / BUNDLE_INDEX).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "repo"]


def test_refuses_to_replace_a_directory_it_did_not_write(tmp_path: Path) -> None:
    config = write_repo(tmp_path / "repo", MINIMAL)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(RenderError, match="not written by `mlops render`"):
        render(config, "mdp", precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (render(config, "mdp", empty) / BUNDLE_INDEX).is_file()


def test_failure_while_writing_leaves_the_previous_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_repo(tmp_path / "repo", MINIMAL)
    out = render(config, "mdp", tmp_path / "out")
    before = tree(out)
    bundle = render_bundle(resolve(config, "prom"))
    original = Path.write_text
    calls = {"n": 0}

    def flaky(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", flaky)
    with pytest.raises(RenderError, match="No space left on device; the previous contents are unchanged"):
        write_bundle(bundle, out)
    monkeypatch.undo()
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "repo"]


def test_platform_templates_override_builtin_ones(tmp_path: Path) -> None:
    custom = tmp_path / "templates"
    custom.mkdir()
    (custom / "dag_inference.py.j2").write_text(
        '{% extends "dag_base.py.j2" %}\n{% block imports %}\n# platform: inference DAGs get a marker\n{% endblock %}\n'
    )
    config = write_repo(tmp_path / "repo", MINIMAL)
    bundle = render_bundle(resolve(config, "mdp"), custom)
    assert "# platform: inference DAGs get a marker" in bundle.files[names.dag_file("churn", "mdp", "inference")]
    assert "# platform" not in bundle.files[names.dag_file("churn", "mdp", "train")]


def test_broken_platform_template_is_caught_before_writing(tmp_path: Path) -> None:
    custom = tmp_path / "templates"
    custom.mkdir()
    (custom / "dag_train.py.j2").write_text("this is not python (\n")
    config = write_repo(tmp_path / "repo", MINIMAL)
    with pytest.raises(RenderError, match="invalid Python"):
        render_bundle(resolve(config, "mdp"), custom)
    (custom / "dag_train.py.j2").write_text("{{ no_such_value }}\n")
    with pytest.raises(RenderError, match="no_such_value"):
        render_bundle(resolve(config, "mdp"), custom)


def test_validation_error_message_names_the_file(tmp_path: Path) -> None:
    config = write_repo(tmp_path / "repo", {**MINIMAL, "model": {"name": "x", "owner": "o", "colour": "red"}})
    with pytest.raises(ConfigError) as info:
        resolve(config, "mdp")
    assert str(info.value) == f"{config}:4:3: model.colour: unknown key 'colour'; expected one of: description, name, owner"


def test_rendering_through_a_symlink_writes_into_its_target(tmp_path: Path) -> None:
    config = write_repo(tmp_path / "repo", MINIMAL)
    real = render(config, "mdp", tmp_path / "real")
    link = tmp_path / "dags" / "churn"
    link.parent.mkdir()
    link.symlink_to(real)
    render(config, "prom", link)
    assert link.is_symlink()
    assert json.loads((real / BUNDLE_INDEX).read_text())["stand"] == "prom"
    assert sorted(p.name for p in link.parent.iterdir()) == ["churn"]


@pytest.mark.parametrize("where", ["/proc/mlops-cannot-write-here", "FILE/below-a-file"])
def test_unwritable_output_is_a_clear_error(tmp_path: Path, where: str) -> None:
    from mlops_module.cli import main

    config = write_repo(tmp_path / "repo", MINIMAL)
    out = where.replace("FILE", str(config))
    assert main(["render", str(config), "--stand", "mdp", "--out", out]) == 1


@pytest.mark.parametrize("owner", ["supply@example.com", "Supply chain (EMEA) <supply@example.com>", "-x-", "ü" * 90])
def test_an_owner_is_any_text_labels_get_a_sanitised_form_and_an_annotation_the_whole(tmp_path: Path,
                                                                                     owner: str) -> None:
    import re

    import yaml

    from mlops_module.spec.schema import LABEL_VALUE

    config = write_repo(tmp_path / "repo", {**MINIMAL, "model": {"name": "churn", "owner": owner}})
    bundle = render(config, "mdp", tmp_path / "out")
    manifests = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(bundle.rglob("*.yaml"))
                 if "SparkApplication" in p.read_text(encoding="utf-8")]
    assert manifests
    for manifest in manifests:
        assert crd_errors(manifest) == []
        label = manifest["metadata"]["labels"][names.LABEL_OWNER]
        assert label == "" or (re.fullmatch(LABEL_VALUE, label) and len(label) <= 63), label
        assert manifest["metadata"]["annotations"][names.ANNOTATION_OWNER] == owner
    if owner == "supply@example.com":
        assert label == "supply_example.com"
    dag_files = "".join(p.read_text(encoding="utf-8") for p in bundle.rglob("*.py"))
    assert repr(owner) in dag_files or json.dumps(owner) in dag_files  # the DAG owner, as written
