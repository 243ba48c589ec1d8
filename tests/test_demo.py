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
from helpers import at_most_one_verdict_per_stand

from mlops_module.local.demo import CHAIN, DRIFT_INTERVAL, MARKER, DemoError, prepare

MODEL = "churn-classifier"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("demo") / "state"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "MLOPS_", "MLFLOW_"))}  # nothing from the test session leaks in
    process = subprocess.Popen([sys.executable, "-m", "mlops_module", "demo", "--dir", str(root), "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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


def _mlflow(root: Path, stand: str) -> Any:
    from mlflow import MlflowClient

    uri = f"sqlite:///{root}/mlflow/{stand}/mlflow.db"  # each stand's own registry, read directly: its server stopped
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _versions(root: Path, stand: str) -> dict[str, Any]:
    return {str(v.version): v for v in _mlflow(root, stand).search_model_versions(f"name = '{MODEL}'")}


def _aliases(root: Path, stand: str) -> dict[str, str]:
    return {k: str(v) for k, v in _mlflow(root, stand).get_registered_model(MODEL).aliases.items()}


@pytest.mark.slow
def test_demo_travels_the_chain_each_stand_deciding_on_its_own_registry(demo: dict[str, Any]) -> None:
    root = demo["root"]
    mdp = _versions(root, "mdp")
    assert sorted(mdp) == ["1"] and _aliases(root, "mdp") == {"mdp": "1"}
    good = mdp["1"].tags
    assert good["quality_gate.mdp"] == "success" and good["pushed.int"]
    assert at_most_one_verdict_per_stand(good) == {}
    assert good["env_archive"].startswith("envs/") and good["code_package"].startswith(f"code/{MODEL}/")

    for before, stand in itertools.pairwise(CHAIN):
        first = _versions(root, stand)["1"].tags  # registered there by the push, then accepted there
        assert _aliases(root, stand)[stand] == "1"
        assert first[f"quality_gate.{stand}"] == "success"
        assert first[f"source.{before}.version"] == "1" and at_most_one_verdict_per_stand(first) == {}
        assert f"quality_gate.{before}" not in first  # the source's verdict travels as evidence, never as a verdict
        story = _versions(root, stand)["1"].description  # the source's verdict is in the story
        assert story.startswith(f"**Champion on {stand} (alias {stand})**: passed the quality gate, pushed from "
                                f"{before} v1")
        assert f"Quality gate on {before}: passed (carried from {before}, v1 there)" in story
    evidence = demo["result"]["evidence"]
    assert evidence["mdp"].startswith("the training job's own comparison on mdp")
    assert evidence["int"].startswith("int's checks (smoke; no evaluate)")
    assert evidence["lt"].startswith("lt's checks (load; no evaluate) and its load run") and \
        "load.duration_seconds" in evidence["lt"]
    assert evidence["prom"].startswith("the evaluate job on prom") and "roc_auc" in evidence["prom"]

    prom = _versions(root, "prom")
    assert sorted(prom) == ["1", "2"]  # pushed along the chain, retrained on drift
    retrained = prom["2"].tags
    assert retrained["retrain_reason"].startswith("drift: 3 of 3 features drifted (")
    story = prom["2"].description  # gated against prom's champion, and why it was trained, in its story
    assert "| champion (v1) |" in story and "retrained for drift: 3 of 3 features drifted (" in story
    if retrained["quality_gate.prom"] == "success":  # it waits for the approval the chain requires
        assert retrained["held.prom"] == "awaiting approval"
    assert _aliases(root, "prom") == {"prom": "1"}

    run = _mlflow(root, "mdp").get_run(mdp["1"].run_id)
    assert run.data.metrics["roc_auc"] >= 0.75
    assert run.data.tags["mlops.job"] == "train" and run.data.tags["mlops.stand"] == "mdp"
    assert int(run.data.tags["mlops.training_data.rows"]) == run.data.metrics["rows"] > 0


@pytest.mark.slow
def test_the_dags_ran_under_airflow_one_folder_per_stand(demo: dict[str, Any]) -> None:
    with sqlite3.connect(demo["root"] / "airflow" / "airflow.db") as db:
        runs = db.execute("SELECT dag_id, run_id, state FROM dag_run ORDER BY id").fetchall()
    by_dag: dict[str, list[tuple[str, str]]] = {}
    for dag_id, run_id, state in runs:
        by_dag.setdefault(dag_id, []).append((run_id, state))
    assert [s for _, s in by_dag[f"{MODEL}__mdp__train"]] == ["success"]
    for before, stand in itertools.pairwise(CHAIN):  # the deploy job's queued run, and the run that served it
        accept = by_dag[f"{MODEL}__{stand}__accept"]
        assert (f"accept__{before}-v1", "success") in accept and all(s == "success" for _, s in accept), stand
    assert ("promoted__" + by_dag[f"{MODEL}__prom__accept"][-1][0], "success") in by_dag[f"{MODEL}__prom__inference"]
    monitoring = by_dag[f"{MODEL}__prom__monitoring"]
    assert [s for _, s in monitoring] == ["success"]
    assert (f"retrain__{monitoring[0][0]}", "success") in by_dag[f"{MODEL}__prom__train"]


@pytest.mark.slow
def test_every_push_deployed_the_next_stands_dags_from_the_pushed_package(demo: dict[str, Any]) -> None:
    root = demo["root"]
    for stand, nxt in itertools.pairwise(CHAIN):
        index = json.loads((root / "dags" / nxt / MODEL / nxt / "mlops-bundle.json").read_text())
        assert index["stand"] == nxt and (root / "storage" / nxt / index["code_prefix"] / "model.yaml").is_file()
        assert f"{MODEL}__{nxt}__accept" in index["dag_ids"]
        pushes = [json.loads(f.read_text()) for f in (root / "storage" / stand / "history" / MODEL / stand)
                  .glob("*.json")]
        assert any(e["action"] == "push" and e["to_stand"] == nxt for e in pushes)


@pytest.mark.slow
def test_inference_scored_the_latest_day_with_the_new_prom_champion(demo: dict[str, Any]) -> None:
    import pandas as pd

    root = demo["root"]
    inference = demo["result"]["inference"]
    predictions = pd.read_parquet(root / "storage" / "prom" / "predictions" / MODEL / "prom")
    events = pd.read_parquet(root / "storage" / "prom" / "data" / MODEL / "events.parquet")
    start, end = (pd.Timestamp(t) for t in inference["interval"])
    assert end - start == pd.Timedelta(days=1) and end == pd.Timestamp(DRIFT_INTERVAL[1])
    expected = events[(events.ts >= start) & (events.ts < end)]
    assert len(predictions) == len(expected) == inference["rows"] > 0
    assert set(predictions.model_version) == {"1"} and inference["version"] == "1"
    assert predictions.churn_probability.between(0, 1).all()
    assert "churned" not in predictions.columns  # labels never reach scoring
    # prom ran on archives pushed along the chain, not on the ones packaged for mdp
    assert (root / "storage" / "prom" / _versions(root, "prom")["1"].tags["env_archive"]).is_file()


@pytest.mark.slow
def test_progress_summary_and_history(demo: dict[str, Any]) -> None:
    root, result = demo["root"], demo["result"]
    assert "[13/13] retrain on prom" in demo["progress"]
    assert "evidence: the evaluate job on prom" in demo["progress"]
    monitoring = result["monitoring"]
    assert monitoring["decision"] == "retrain" and {f["name"] for f in monitoring["features"] if f["drifted"]} == {
        "tenure", "monthly_charges", "plan"}
    report = Path(monitoring["report"])
    assert report.is_file() and "tenure" in report.read_text() and (report.parent / "drift_summary.png").is_file()
    assert result["retrain"]["reason"].startswith("drift:")
    performance = monitoring["performance"]  # labels arrived for the whole scored week
    assert performance["metric"] == "roc_auc" and performance["rows"] == result["inference"]["rows"]  # one day
    assert 0.7 < performance["value"] < 1.0
    assert result["aliases"] == {stand: "1" for stand in CHAIN}
    history = subprocess.run(shlex.split(result["history_command"]), capture_output=True, text=True)
    assert history.returncode == 0, history.stderr
    assert "promote  - -> 1" in history.stdout and "pushed from lt (version 1 there)" in history.stdout
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


@pytest.mark.slow
def test_the_printed_mlflow_command_opens_the_server_the_demo_used(demo: dict[str, Any]) -> None:
    """Each stand's printed command serves its registry on the port its stands file names; prom's, started,
    answers with the model and the alias the demo left."""
    import time
    import urllib.parse

    import yaml
    from mlflow import MlflowClient

    from mlops_module.local.services import answers, stop_process_group

    result = demo["result"]
    stands = yaml.safe_load((demo["root"] / "stands.yaml").read_text())
    for stand in CHAIN:
        argv = shlex.split(result["ui_commands"][stand])
        uri = stands["stands"][stand]["mlflow"]["tracking_uri"]
        assert f"--port {urllib.parse.urlsplit(uri).port}" in shlex.join(argv), (stand, uri, argv)
        assert str(demo["root"] / "mlflow" / stand) in shlex.join(argv)
    uri = stands["stands"]["prom"]["mlflow"]["tracking_uri"]
    assert result["prom_ui"].startswith(uri)
    server = subprocess.Popen(shlex.split(result["ui_commands"]["prom"]), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not answers(uri):  # readiness: the health endpoint, as the demo waits for its servers
            assert server.poll() is None and time.monotonic() < deadline, "the printed command did not serve"
            time.sleep(0.2)
        assert MlflowClient(uri).get_registered_model(MODEL).aliases["prom"] == "1"
    finally:
        stop_process_group(server, signal.SIGTERM, 30)
