"""mlops init: the scaffold validates, renders and trains on the local stand without an edit (real
Airflow dag.test, spark-submit in local mode, the test MLflow server), and editors get the schema."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, dagbag, stands_for_tests

from mlops_module import names
from mlops_module.cli import main
from mlops_module.release import registry
from mlops_module.spec.schema import config_schema

pytestmark = pytest.mark.slow


def test_init_refuses_bad_names_and_non_empty_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "Fraud_Score", "--dir", str(tmp_path)]) == 2
    assert "lowercase letters" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["init", "taken", "--dir", str(tmp_path)]) == 1
    assert "not empty" in capsys.readouterr().err and (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_scaffold_validates_renders_and_trains_on_the_local_stand(tmp_path: Path, mlflow_server: str,
                                                                    airflow_db: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["init", "fraud-score", "--dir", str(tmp_path), "--owner", "risk-team"]) == 0
    repo = tmp_path / "fraud-score"
    config = repo / "model.yaml"
    # Editors: the modeline points at the schema written beside it, the one `mlops schema` prints.
    assert config.read_text().splitlines()[0] == "# yaml-language-server: $schema=.mlops/model-config.schema.json"
    assert json.loads((repo / ".mlops" / "model-config.schema.json").read_text()) == config_schema()
    hook = yaml.safe_load((repo / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"][0]
    assert hook["entry"] == "mlops validate" and re.search(hook["files"], "model.yaml")
    # This repository's hook for model repositories: the same command.
    (published,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert published["id"] == "mlops-validate" and published["entry"] == "mlops validate"

    # The model's own tests pass as scaffolded.
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=repo,
                           capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout[-2000:]

    monkeypatch.setenv("MLOPS_STANDS", str(stands_for_tests(tmp_path, mlflow_server)))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))  # its own unpacked-environment cache
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # spark-submit
    monkeypatch.chdir(repo)  # the scaffold's commands run from the repository, config by default
    assert main(["validate"]) == 0
    assert main(["render", "--stand", "local", "--out", "build/local"]) == 0
    assert main(["package", "--stand", "local", "--quiet"]) == 0
    assert main(["deploy", "--stand", "local"]) == 0

    from airflow.dag_processing.dagbag import sync_bag_to_db

    bag = dagbag(tmp_path / "dags" / "fraud-score" / "local")
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    dag = bag.dags[names.dag_id("fraud-score", "local", "train")]
    run = dag.test(run_conf={})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"}, states
    mlflow = registry.client(mlflow_server)
    version = registry.alias_version(mlflow, "fraud-score", "local")
    assert version is not None
    tags = registry.version_tags(mlflow, "fraud-score", version)
    assert tags.get("quality_gate.local") == "success", tags
