"""The command line contract: exit statuses, the error format, --help, --json, and no tracebacks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from helpers import EXAMPLE_CONFIGS, MINIMAL, write_repo

from mlops_module.cli import main

LINE = re.compile(r"^[^:]+:\d+:\d+: \S+: .+$")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops_module", *args], capture_output=True, text=True,
                          cwd=cwd, env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])})


def test_validate_ok_and_invalid_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE_CONFIGS[0])]) == 0
    assert "valid on stands local, mdp, int, lt, prom" in capsys.readouterr().out
    bad = write_repo(tmp_path, {**MINIMAL, "train": {"script": "src/train.py", "shedule": "@daily"}})
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"{re.escape(str(bad))}:\d+:3: train\.shedule: unknown key 'shedule' \(did you mean 'schedule'\?\)",
                        err[0]), err
    assert err[-1] == "1 problem found"


def test_validate_defaults_to_model_yaml_in_the_current_directory(tmp_path: Path) -> None:
    write_repo(tmp_path, MINIMAL)
    result = run("validate", "--stand", "prom", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "model.yaml: valid on stand prom"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    write_repo(tmp_path, MINIMAL)
    assert run("validate", "--stand", "prd", cwd=tmp_path).returncode == 2
    assert "did you mean 'prom'" in run("validate", "--stand", "prd", cwd=tmp_path).stderr
    assert run("render", cwd=tmp_path).returncode == 2  # --stand and --out are required
    assert run("frobnicate").returncode == 2
    assert run().returncode == 2


def test_invalid_input_has_no_traceback(tmp_path: Path) -> None:
    cases = {
        "missing": None,
        "syntax": "model: [\n",
        "python-tag": "model: !!python/object/apply:os.system ['id']\n",
        "not-a-mapping": "- just\n- a list\n",
        "empty": "",
        "binary": b"\x00\xff\xfe",
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        result = run("validate", str(path))
        assert result.returncode == 1, (name, result.stderr)
        assert "Traceback" not in result.stderr, name
        assert LINE.match(result.stderr.splitlines()[0]), (name, result.stderr)


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE_CONFIGS[0]), "--json", "--stand", "mdp"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is True and result["stands"] == ["mdp"]
    bad = write_repo(tmp_path, {**MINIMAL, "python": {"version": 3.11}})
    assert main(["validate", str(bad), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is False
    (problem,) = result["problems"]
    assert (problem["line"], problem["path"]) == (5, "python.version")


def test_render_writes_the_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["render", str(EXAMPLE_CONFIGS[0]), "--stand", "int", "--out", str(out), "--json"]) == 0
    index = json.loads(capsys.readouterr().out)
    assert index["stand"] == "int"
    assert sorted(index["files"]) == sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "mlops-bundle.json")


def test_render_refusal_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["render", str(EXAMPLE_CONFIGS[0]), "--stand", "int", "--out", str(tmp_path)]) == 1
    assert "not written by `mlops render`" in capsys.readouterr().err


def test_schema_is_valid_json_schema_and_validates_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    from mlops_module.spec.yaml_loader import load_file

    for config in EXAMPLE_CONFIGS:  # YAML 1.2 reading, as yaml-language-server does: `on:` is a string
        jsonschema.validate(load_file(config).data, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**MINIMAL, "trian": {}}, schema)


def test_schema_to_file(tmp_path: Path) -> None:
    assert main(["schema", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["title"].startswith("mlops model config")


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("validate", ["CONFIG", "--stand", "--json", "--stands"]),
        ("render", ["CONFIG", "--stand", "--out", "--templates", "--json", "--stands"]),
        ("schema", ["--out"]),
        ("doctor", ["--stand", "--stands", "--timeout", "--json"]),
    ],
)
def test_help_documents_every_option(command: str, options: list[str]) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    for option in options:
        assert option in result.stdout
    assert "exit" in run("--help").stdout.lower()


def test_validate_notes_an_editor_schema_of_another_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_repo(tmp_path, MINIMAL)
    schema = tmp_path / ".mlops" / "model-config.schema.json"
    schema.parent.mkdir()
    assert main(["schema", "--out", str(schema)]) == 0
    assert main(["validate", str(config)]) == 0
    assert "note:" not in capsys.readouterr().err  # in step: nothing to say
    schema.write_text(schema.read_text().replace('"model"', '"model_old"', 1))  # as an older mlops wrote it
    assert main(["validate", str(config)]) == 0  # a note, not a failure
    assert f"Refresh it: mlops schema --out {schema}" in capsys.readouterr().err


def test_promote_refuses_a_git_sha_that_is_no_commit_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_repo(tmp_path, MINIMAL)
    assert main(["promote", str(config), "--stand", "mdp", "--version", "1", "--git-sha", "main; rm -rf /"]) == 2
    assert "is not a commit id" in capsys.readouterr().err
