"""`mlops demo` end to end, as a user runs it (its own process), then its final state read back from
MLflow's database, Airflow's database and the stands' storage; and the demo directory's rules."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlops_module.local.demo import CHAIN, DRIFT_INTERVAL, MARKER, DemoError, prepare

MODEL = "churn-classifier"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("demo") / "state"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "MLOPS_", "MLFLOW_"))}  # nothing from the test session leaks in
    process = subprocess.Popen([sys.executable, "-m", "mlops_module", "demo", "--dir", str(root), "--rows-per-day",
                                "200", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)  # the demo stops its MLflow server on SIGTERM
        stdout, stderr = process.communicate(timeout=60)
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    log = (root / "demo.log").read_text(errors="replace")[-4000:] if (root / "demo.log").exists() else ""
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n--- demo.log ---\n{log}"
    return {"root": root, "result": json.loads(done.stdout), "progress": done.stderr}


def _mlflow(root: Path) -> Any:
    from mlflow import MlflowClient

    uri = f"sqlite:///{root}/mlflow/mlflow.db"  # the demo's own registry, read directly: its server has stopped
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.mark.slow
def test_demo_promotes_through_every_stand_and_rejects_the_planted_candidate(demo: dict[str, Any]) -> None:
    mlflow = _mlflow(demo["root"])
    versions = {str(v.version): v for v in mlflow.search_model_versions(f"name = '{MODEL}'")}
    assert sorted(versions) == ["1", "2", "3"]  # trained, planted, retrained on drift
    prom = "3" if versions["3"].tags["quality_gate.prom"] == "success" else "1"
    aliases = {k: str(v) for k, v in mlflow.get_registered_model(MODEL).aliases.items()}
    assert aliases == {s: "1" for s in CHAIN} | {"prom": prom}

    good = versions["1"].tags
    for stand in CHAIN:
        assert good[f"quality_gate.{stand}"] == "success"
        assert good[f"promoted.{stand}.previous_version"] == ""  # the first version on each stand
    for stand, nxt in itertools.pairwise(CHAIN):
        assert good[f"pushed.{nxt}.at"], f"{stand} did not push to {nxt}"
    assert good["env_archive"].startswith("envs/") and good["code_package"].startswith(f"code/{MODEL}/")

    bad = versions["2"].tags
    assert bad["quality_gate"] == "failed" and bad["quality_gate.local"] == "failed"
    assert "below the minimum 0.75" in bad["quality_gate.local.summary"]
    assert bad["quality_gate.local.champion_version"] == "1"  # compared with the champion on the same data
    assert bad["retrain_reason"] == "mlops demo: a candidate trained on tenure alone"
    assert not any(key.startswith(("promoted.", "pushed.")) for key in bad)
    assert demo["result"]["planted_version"] == "2"

    retrained = versions["3"].tags
    assert retrained["retrain_reason"].startswith("drift: 3 of 3 features drifted (")
    assert retrained["quality_gate.prom.champion_version"] == "1"  # gated against prom's champion
    assert "quality_gate.local" not in retrained  # retrained and gated on prom, where the drift was

    run = mlflow.get_run(versions["1"].run_id)
    assert run.data.metrics["roc_auc"] >= 0.75
    assert run.data.tags["mlops.job"] == "train" and run.data.tags["mlops.stand"] == "local"
    assert int(run.data.tags["mlops.training_data.rows"]) == run.data.metrics["rows"] > 0
    bad_run = mlflow.get_run(versions["2"].run_id)
    assert bad_run.data.tags["champion.version"] == "1"
    assert bad_run.data.metrics["champion.roc_auc"] == pytest.approx(run.data.metrics["roc_auc"])


@pytest.mark.slow
def test_the_dags_ran_under_airflow(demo: dict[str, Any]) -> None:
    with sqlite3.connect(demo["root"] / "airflow" / "airflow.db") as db:
        runs = db.execute("SELECT dag_id, state FROM dag_run ORDER BY id").fetchall()
        run_ids = [r for (r,) in db.execute("SELECT run_id FROM dag_run ORDER BY id")]
        tasks = dict(db.execute("SELECT dag_id || '.' || task_id || '.' || run_id, state FROM task_instance"))
    assert runs[:4] == [(f"{MODEL}__local__train", "success"), (f"{MODEL}__local__train", "failed"),
                        (f"{MODEL}__prom__inference", "success"), (f"{MODEL}__prom__monitoring", "success")]
    # The run the monitoring DAG triggered (kept as its record, for the cooldown) and the run that served it,
    # ending alike: no scheduler runs the demo's Airflow, dag.test plays it.
    assert runs[4][0] == runs[5][0] == f"{MODEL}__prom__train" and runs[4][1] == runs[5][1] and len(runs) == 6
    assert run_ids[4] == f"retrain__{run_ids[3]}"
    monitoring = sorted((k.split(".")[1], v) for k, v in tasks.items() if k.startswith(f"{MODEL}__prom__monitoring."))
    assert monitoring == [("decide", "success"), ("monitor", "success"), ("no_action", "skipped"),
                          ("trigger_train", "success")]
    train = sorted((k.split(".")[1], v) for k, v in tasks.items() if k.startswith(f"{MODEL}__local__train."))
    assert train == [("promote", "success"), ("promote", "upstream_failed"), ("quality_gate", "failed"),
                     ("quality_gate", "success"), ("train", "success"), ("train", "success")]


@pytest.mark.slow
def test_every_push_deployed_the_next_stands_dags_from_the_pushed_package(demo: dict[str, Any]) -> None:
    dags = demo["root"] / "airflow" / "dags" / MODEL
    for stand, nxt in itertools.pairwise(CHAIN):
        index = json.loads((dags / nxt / "mlops-bundle.json").read_text())
        assert index["stand"] == nxt and (demo["root"] / "storage" / nxt / index["code_prefix"] / "model.yaml").is_file()
        pushes = [json.loads(f.read_text()) for f in (demo["root"] / "storage" / stand / "history" / MODEL / stand)
                  .glob("*.json")]
        assert any(e["action"] == "push" and e["to_stand"] == nxt and e["trigger"] == "command" for e in pushes)
    assert not list((demo["root"] / "airflow" / "dags").glob("local"))  # no bundle outside <dags>/<model>/


@pytest.mark.slow
def test_inference_scored_the_interval_with_the_prom_version(demo: dict[str, Any]) -> None:
    import pandas as pd

    root = demo["root"]
    inference = demo["result"]["inference"]
    predictions = pd.read_parquet(root / "storage" / "prom" / "predictions" / MODEL / "prom")
    events = pd.read_parquet(root / "storage" / "prom" / "data" / MODEL / "events.parquet")
    start, end = (pd.Timestamp(t) for t in DRIFT_INTERVAL)
    expected = events[(events.ts >= start) & (events.ts < end)]
    assert len(predictions) == len(expected) == inference["rows"] > 0
    assert set(predictions.model_version) == {"1"} and inference["version"] == "1"
    assert predictions.churn_probability.between(0, 1).all()
    assert "churned" not in predictions.columns  # labels never reach scoring
    # prom ran on archives pushed along the chain, not on the ones packaged for local
    assert (root / "storage" / "prom" / _mlflow(root).get_model_version(MODEL, "1").tags["env_archive"]).is_file()


@pytest.mark.slow
def test_progress_summary_and_history(demo: dict[str, Any]) -> None:
    root, result = demo["root"], demo["result"]
    assert "[13/13] retrain on prom" in demo["progress"]
    monitoring = result["monitoring"]
    assert monitoring["decision"] == "retrain" and {f["name"] for f in monitoring["features"] if f["drifted"]} == {
        "tenure", "monthly_charges", "plan"}
    report = Path(monitoring["report"])
    assert report.is_file() and "tenure" in report.read_text() and (report.parent / "drift_summary.png").is_file()
    assert result["retrain"]["reason"].startswith("drift:")
    performance = monitoring["performance"]  # labels arrived for the whole scored week
    assert performance["metric"] == "roc_auc" and performance["rows"] == result["inference"]["rows"]
    assert 0.7 < performance["value"] < 1.0
    prom = "3" if result["versions"]["3"]["quality_gate.prom"] == "success" else "1"
    assert result["aliases"] == {stand: "1" for stand in CHAIN} | {"prom": prom}
    history = subprocess.run(shlex.split(result["history_command"]), capture_output=True, text=True)
    assert history.returncode == 0, history.stderr
    assert "promote  - -> 1" in history.stdout and "mlops demo: deploy job of prom" in history.stdout
    assert Path(result["log"]) == root / "demo.log"


def test_prepare_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not a demo directory"):
        prepare(tmp_path, clean=True)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_clean_starts_over_and_rerun_keeps_state(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    layout = prepare(root, clean=False)
    (layout.root / "state.db").write_text("runs")
    assert (prepare(root, clean=False).root / "state.db").exists()  # a re-run continues
    assert not (prepare(root, clean=True).root / "state.db").exists()
    assert (root / MARKER).exists()


def test_a_path_that_cannot_be_a_storage_uri_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="may hold only"):
        prepare(tmp_path / "my demo", clean=False)
