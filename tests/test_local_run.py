"""mlops run's refusals and checks, without running a DAG (the tutorial test runs them for real)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import EXAMPLE_CONFIGS, MINIMAL, ROOT, resolve, write_repo

from mlops_module.building.render import render_bundle, write_bundle
from mlops_module.cli import main
from mlops_module.local.run import (
    RunError,
    RunResult,
    deployed_folder,
    one_run_at_a_time,
    stop_group,
    summary_lines,
    tracking_server,
)


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_run_refuses_kubernetes_stands(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(EXAMPLE_CONFIGS[0]), "--stand", "mdp"]) == 1
    err = capsys.readouterr().err
    assert "mdp is a kubernetes stand: its Airflow runs churn-classifier__mdp__train" in err


def test_run_says_what_to_deploy_first(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(EXAMPLE_CONFIGS[0])]) == 1
    err = capsys.readouterr().err
    assert "nothing of churn-classifier is deployed on local" in err
    assert "`mlops package --stand local` and `mlops deploy --stand local` first" in err
    assert not (home / "local" / "airflow").exists()  # nothing set up for a run that cannot happen


def test_run_refuses_a_disabled_job_and_bad_conf(home: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = write_repo(tmp_path / "repo", {**MINIMAL, "inference": {"script": "src/inference.py", "enabled": False},
                                            "monitoring": {"enabled": False}})
    assert main(["run", str(config), "--job", "inference"]) == 1
    assert "churn has no inference job on local (inference.enabled is false)" in capsys.readouterr().err
    assert main(["run", str(config), "--conf", "no-equals-sign"]) == 2
    assert "--conf 'no-equals-sign': expected KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(config), "--job", "deploy"])
    assert exit_.value.code == 2


def test_deployed_folder_warns_when_the_config_changed_since(home: Path, tmp_path: Path) -> None:
    config = write_repo(tmp_path / "repo", MINIMAL)
    cfg = resolve(config, "local")
    folder = Path(cfg.stand.dags) / cfg.name / "local"
    write_bundle(render_bundle(cfg), folder)
    said: list[str] = []
    assert deployed_folder(cfg, said.append) == folder and said == []
    changed = write_repo(tmp_path / "repo", {**MINIMAL, "train": {"script": "src/train.py", "schedule": "@weekly"}})
    assert deployed_folder(resolve(changed, "local"), said.append) == folder
    assert len(said) == 1 and "differ from what the config renders now" in said[0]


def test_one_run_at_a_time_per_stand(tmp_path: Path) -> None:
    with one_run_at_a_time(tmp_path / "local"):
        with pytest.raises(RunError, match=r"another `mlops run` is running on this stand \(pid \d+\)"), \
                one_run_at_a_time(tmp_path / "local"):
            pass
        with one_run_at_a_time(tmp_path / "other"):  # another stand: its own Airflow database
            pass
    with one_run_at_a_time(tmp_path / "local"):  # released
        pass


@pytest.mark.slow
def test_tracking_server_uses_a_running_one_and_refuses_a_remote_one_that_is_down(mlflow_server: str,
                                                                                  tmp_path: Path) -> None:
    with tracking_server(mlflow_server, tmp_path / "unused", print) as ui:
        assert ui is None
    assert not (tmp_path / "unused").exists()
    with pytest.raises(RunError, match="does not answer; start it"), \
            tracking_server("http://mlflow.example.invalid:5000", tmp_path / "unused", print):
        pass


def test_summary_names_the_version_the_gate_and_the_log_of_a_failed_run() -> None:
    run = RunResult("m__local__train", "manual__1", "failed", {"train": "success", "quality_gate": "failed"},
                    "/logs/run.log", 61.0, version="2", gate="failed",
                    gate_summary="failed: roc_auc: 0.8 is below the minimum 0.99", alias={"local": "1"})
    assert summary_lines(run) == [
        "m__local__train: run manual__1 failed in 61 s",
        "  train            success",
        "  quality_gate     failed",
        "model version 2: gate failed: roc_auc: 0.8 is below the minimum 0.99",
        "alias local -> version 1",
        "log: /logs/run.log",
    ]


def test_stop_group_stops_the_child_and_what_it_started() -> None:
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print(p.pid, flush=True); time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    stop_group(child, grace=10)
    assert child.returncode is not None
    deadline = time.monotonic() + 10  # the grandchild is reparented, then reaped: wait for that, bounded
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_run_needs_the_dags_in_a_directory(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    builtin = (ROOT / "mlops_module" / "data" / "stands.yaml").read_text()
    stands = tmp_path / "stands.yaml"
    stands.write_text(builtin.replace("dags: ${MLOPS_HOME}/local/airflow/dags", "dags: s3://laptop-airflow/dags"))
    assert main(["run", str(EXAMPLE_CONFIGS[0]), "--stands", str(stands)]) == 1
    assert "local's DAGs live in s3://laptop-airflow/dags" in capsys.readouterr().err
