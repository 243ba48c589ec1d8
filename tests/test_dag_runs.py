"""Rendered DAGs run under real Airflow (dag.test on SQLite) on the local stand.

spark-submit is replaced by a recorder on PATH, so the test sees exactly the command Airflow's
run of the manifest produces: data interval from the timetable, or the window from a trigger's conf.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from helpers import EXAMPLE_CONFIGS, dagbag, render, resolve, stands_for_tests

from mlops_module import names
from mlops_module.spec.stands import load_stands

pytestmark = pytest.mark.slow


# The stand-in for the training job: records its command line and, for --job train, does what the
# runtime will do in the train job (an MLflow run tagged with the Airflow run, metrics, a registered
# version), so the gate and the promoter run for real against the MLflow server.
FAKE_SPARK_SUBMIT = """#!{python}
import json, sys
argv = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps(argv) + "\\n")
arg = lambda flag: argv[argv.index(flag) + 1]
import os
if arg("--job") in ("train", "monitoring", "inference"):
    from mlflow import MlflowClient
    c = MlflowClient(arg("--tracking-uri"))
    model = arg("--model")
    exp = c.get_experiment_by_name(model)
    exp_id = exp.experiment_id if exp else c.create_experiment(model)
    def run(job):  # an MLflow run tagged as the runtime tags it
        return c.create_run(exp_id, tags={{"mlops.model": model, "mlops.stand": arg("--stand"),
                                           "mlops.airflow_run_id": arg("--run-id"), "mlops.job": job}}).info.run_id
if arg("--job") == "train":
    run_id = run("train")
    for key, value in {metrics}.items():
        c.log_metric(run_id, key, value)
    c.log_text(run_id, "flavor: test", "model/MLmodel")
    if not c.search_registered_models(f"name = '{{model}}'"):
        c.create_registered_model(model)
    c.create_model_version(model, c.get_run(run_id).info.artifact_uri + "/model", run_id)
    c.set_terminated(run_id)
if arg("--job") == "inference" and os.environ.get("MLOPS_FAKE_ROWS"):  # runtime.write_predictions' row count
    run_id = run("inference")
    c.set_tag(run_id, "mlops.rows_written", os.environ["MLOPS_FAKE_ROWS"])
    c.set_terminated(run_id)
if arg("--job") == "monitoring":  # what the built-in drift job logs: drift.json on a run tagged with the Airflow run
    run_id = run("monitoring")
    c.log_text(run_id, open(os.environ["MLOPS_FAKE_DRIFT"]).read(), "drift.json")
    # Another DAG on the same schedule logs a run with the same Airflow run id: it must not be picked.
    c.set_terminated(run("inference"))
    c.set_terminated(run_id)
"""


@pytest.fixture()
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: str, request: pytest.FixtureRequest) -> Path:
    metrics = getattr(request, "param", {"roc_auc": 0.8, "log_loss": 0.5})
    log = tmp_path / "spark-submit.jsonl"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "spark-submit"
    script.write_text(FAKE_SPARK_SUBMIT.format(python=sys.executable, log=str(log), metrics=repr(metrics)))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # The promote task pushes from local to mdp for real, into temp directories.
    monkeypatch.setenv("MLOPS_STANDS", str(stands_for_tests(tmp_path, mlflow_server, chain_local=True)))
    # The fake job's empty environment goes under the example's real environment key: keep the local
    # operator's unpacked-environment cache (under MLOPS_HOME) away from the other tests'.
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    return log


def _load(tmp_path: Path, job: str):  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import sync_bag_to_db

    config = EXAMPLE_CONFIGS[0]
    cfg = resolve(config, "local")
    bag = dagbag(render(config, "local", tmp_path / "dags"))
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    return cfg, bag.dags[names.dag_id(cfg.name, "local", job)]


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_train_dag_runs_with_the_data_interval(tmp_path: Path, airflow_db: None, recorder: Path,
                                               mlflow_server: str) -> None:
    import pendulum

    from mlops_module.release import registry

    cfg, dag = _load(tmp_path, "train")
    # What `mlops package` would have put in the local stand's storage (tested on its own elsewhere).
    from mlops_module.building.artifacts import artifacts
    from mlops_module.building.environment import pack
    from mlops_module.storage import sha256_file, storage_of

    art, store = artifacts(cfg), storage_of(cfg.stand)
    (tmp_path / "empty-env" / "bin").mkdir(parents=True)
    pack(tmp_path / "empty-env", tmp_path / "env.tar.gz")  # the fake job needs no packages
    store.upload(tmp_path / "env.tar.gz", art.env_object, sha256_file(tmp_path / "env.tar.gz"))
    stub = tmp_path / "stub"
    stub.write_text("artifact")
    for key in (f"{art.code_prefix}/code.zip", f"{art.code_prefix}/src/train.py"):
        store.upload(stub, key, sha256_file(stub))  # the promoter checks content against it
    run = dag.test(logical_date=pendulum.datetime(2025, 3, 10, 3, tz="UTC"))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    # the alias moved: the promoter started the stand's inference (a queued run of its inference DAG)
    assert states == {"train": "success", "quality_gate": "success", "promote": "success", "start_inference": "success"}
    next_store = storage_of(load_stands().get("mdp"))
    assert next_store.stat(art.env_object) is not None  # pushed to the next stand
    mlflow = registry.client(mlflow_server)
    version = registry.alias_version(mlflow, cfg.name, "local")
    assert version is not None
    tags = registry.version_tags(mlflow, cfg.name, version)
    assert tags["quality_gate.local"] == "success" and tags["config_hash"] == cfg.config_hash
    assert tags["pushed.mdp"] == "none"  # pushed on to the next stand (its trigger: none here)
    argv = json.loads(recorder.read_text().splitlines()[0])
    assert argv[:2] == ["--master", "local[*]"]
    assert _arg(argv, "--name") == "churn-classifier-local-train"
    assert _arg(argv, "--data-interval-start") == "2025-03-03T03:00:00+00:00"  # cron "0 3 * * 1": a week
    assert _arg(argv, "--data-interval-end") == "2025-03-10T03:00:00+00:00"
    assert _arg(argv, "--data-window-days") == "90"
    assert _arg(argv, "--run-id") == run.run_id
    assert argv[argv.index("--") + 1:] == list(cfg.train.args)
    assert "spark.pyspark.python=./environment/bin/python" in argv


def test_triggered_run_uses_the_window_from_conf(tmp_path: Path, airflow_db: None, recorder: Path) -> None:
    _, dag = _load(tmp_path, "train")
    conf = {"data_interval_start": "2024-01-01T00:00:00+00:00", "data_interval_end": "2024-02-01T00:00:00+00:00",
            "reason": 'drift: "plan" PSI 0.31 {{ not a template }} 😀'}
    dag.test(run_conf=conf)
    argv = json.loads(recorder.read_text().splitlines()[0])
    assert _arg(argv, "--data-interval-start") == conf["data_interval_start"]
    assert _arg(argv, "--data-interval-end") == conf["data_interval_end"]
    assert _arg(argv, "--reason") == conf["reason"]


@pytest.mark.parametrize("recorder", [{"roc_auc": 0.6, "log_loss": 0.5}], indirect=True)
def test_train_dag_with_a_bad_model_fails_the_gate(tmp_path: Path, airflow_db: None, recorder: Path,
                                                   mlflow_server: str) -> None:
    from mlops_module.release import registry

    cfg, dag = _load(tmp_path, "train")
    mlflow = registry.client(mlflow_server)
    before = registry.alias_version(mlflow, cfg.name, "local")
    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"train": "success", "quality_gate": "failed", "promote": "upstream_failed",
                      "start_inference": "upstream_failed"}
    assert registry.alias_version(mlflow, cfg.name, "local") == before  # nothing moved


def _drift_result(path: Path, psi: float, rows: int = 5000) -> Path:
    path.write_text(json.dumps({
        "model": "churn-classifier", "stand": "local", "version": "1", "current_rows": rows, "reference_rows": 40000,
        "window": {"start": "2025-05-08T00:00:00+00:00", "end": "2025-05-15T00:00:00+00:00"}, "performance": None,
        "features": [{"name": n, "kind": "numeric", "score": psi, "psi": psi, "ks": psi / 2, "js": psi / 3,
                      "drifted": False, "labels": ["(-inf, 1)", "[1, inf)"], "reference_shares": [0.5, 0.5],
                      "current_shares": [0.5, 0.5], "reference_rows": 40000, "current_rows": rows,
                      "reference_missing": 0.0, "current_missing": 0.0}
                     for n in ("tenure", "monthly_charges", "plan")]}))
    return path


MONITOR_CONF = {"data_interval_start": "2025-05-08T00:00:00+00:00", "data_interval_end": "2025-05-15T00:00:00+00:00"}


def _train_runs(dag_id: str) -> list[tuple[str, str, dict[str, str]]]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return [(r.run_id, str(r.state), dict(r.conf or {}))
                for r in session.scalars(select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id))]


def _set_state(dag_id: str, run_id: str, state: str) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(update(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id).values(state=state))


def _latest_decision(tmp_path: Path) -> dict[str, object]:
    folder = tmp_path / "local" / "monitoring" / "churn-classifier" / "local" / "decisions"
    return json.loads(sorted(folder.iterdir())[-1].read_text())


def test_monitoring_triggers_training_on_drift_then_its_guards_hold(tmp_path: Path, airflow_db: None, recorder: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_FAKE_DRIFT", str(_drift_result(tmp_path / "drift.json", psi=0.4)))
    cfg, dag = _load(tmp_path, "monitoring")
    train_id = names.dag_id(cfg.name, "local", "train")
    before = _train_runs(train_id)

    run = dag.test(run_conf=MONITOR_CONF)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"check_interval": "success", "monitor": "success", "decide": "success",
                      "trigger_train": "success", "no_action": "skipped"}
    (triggered,) = [r for r in _train_runs(train_id) if r not in before]
    assert triggered[0] == f"retrain__{run.run_id}"
    assert triggered[2]["data_interval_start"] == "2025-02-14T00:00:00+00:00"  # data_window.days: 90
    assert triggered[2]["data_interval_end"] == "2025-05-15T00:00:00+00:00"
    assert triggered[2]["reason"].startswith("drift: 3 of 3 features drifted (")
    assert _latest_decision(tmp_path)["action"] == "retrain"

    try:
        _guards_hold(tmp_path, dag, train_id, triggered[0], len(before))
    finally:  # the session's Airflow database is shared: leave no train run in flight for other tests
        _set_state(train_id, triggered[0], "success")


def _guards_hold(tmp_path: Path, dag: object, train_id: str, triggered: str, before: int) -> None:
    import shutil

    # The retrain finished; a second drifted window inside the 3-day cooldown triggers nothing.
    _set_state(train_id, triggered, "success")
    run = dag.test(run_conf=MONITOR_CONF)  # type: ignore[attr-defined]
    assert {ti.task_id: ti.state for ti in run.get_task_instances()}["trigger_train"] == "skipped"
    assert len(_train_runs(train_id)) == before + 1
    assert _latest_decision(tmp_path)["suppressed_by"] == "cooldown"

    # Outside any cooldown, but a train run is in flight: nothing either.
    shutil.rmtree(tmp_path / "local" / "monitoring" / "churn-classifier" / "local" / "decisions")
    _set_state(train_id, triggered, "running")
    run = dag.test(run_conf=MONITOR_CONF)  # type: ignore[attr-defined]
    assert {ti.task_id: ti.state for ti in run.get_task_instances()}["trigger_train"] == "skipped"
    assert len(_train_runs(train_id)) == before + 1
    assert _latest_decision(tmp_path)["suppressed_by"] == "train_in_flight"


def test_monitoring_without_drift_takes_no_action(tmp_path: Path, airflow_db: None, recorder: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_FAKE_DRIFT", str(_drift_result(tmp_path / "drift.json", psi=0.05)))
    _, dag = _load(tmp_path, "monitoring")
    run = dag.test(run_conf=MONITOR_CONF)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"check_interval": "success", "monitor": "success", "decide": "success",
                      "trigger_train": "skipped", "no_action": "success"}
    assert _latest_decision(tmp_path)["action"] == "no_action"
    argv = next(json.loads(line) for line in recorder.read_text().splitlines() if "monitoring" in line)
    assert any(a.endswith("/_mlops/monitoring.py") for a in argv)  # the built-in drift job


def test_failing_spark_job_fails_the_task(tmp_path: Path, airflow_db: None, recorder: Path) -> None:
    bin_dir = recorder.parent / "bin"
    (bin_dir / "spark-submit").write_text(f"#!{sys.executable}\nimport sys\nprint('boom')\nsys.exit(3)\n")
    _, dag = _load(tmp_path, "inference")
    run = dag.test()
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == \
           {"check_interval": "success", "infer": "failed", "check_output": "upstream_failed"}


@pytest.mark.parametrize("require_data", [False, True])
def test_an_inference_run_that_scored_no_rows_is_not_a_success(
        tmp_path: Path, airflow_db: None, recorder: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, require_data: bool) -> None:
    """Documented in docs/tutorial.md: skipped with the reason, or failed with inference.require_data."""
    import logging

    monkeypatch.setenv("MLOPS_FAKE_ROWS", "0")
    _, dag = _load(tmp_path, "inference")
    if require_data:  # the same DAG, its bundle's config saying the data must be there
        copy = Path(dag.fileloc).parent / names.CONFIG_COPY
        assert "\ninference:\n  " in copy.read_text()
        copy.write_text(copy.read_text().replace("\ninference:\n", "\ninference:\n  require_data: true\n", 1))
    caplog.set_level(logging.INFO, logger="mlops_module.dag_tasks")
    run = dag.test(run_conf=MONITOR_CONF)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"check_interval": "success", "infer": "success",
                      "check_output": "failed" if require_data else "skipped"}
    said = caplog.text
    assert "scored 0 rows in the window 2025-05-08T00:00:00+00:00 .. 2025-05-15T00:00:00+00:00" in said
    assert "docs/tutorial.md" in said

    monkeypatch.setenv("MLOPS_FAKE_ROWS", "42")  # with rows, the same run is a plain success
    run = dag.test(run_conf=MONITOR_CONF)
    assert {ti.task_id: ti.state for ti in run.get_task_instances()}["check_output"] == "success"

    monkeypatch.delenv("MLOPS_FAKE_ROWS")  # a script that logs no MLflow run: not checked, and it says so
    caplog.clear()
    run = dag.test(run_conf=MONITOR_CONF)
    assert {ti.task_id: ti.state for ti in run.get_task_instances()}["check_output"] == "success"
    assert "whether the window had data is not checked" in caplog.text


def test_monitoring_with_too_few_rows_to_decide_ends_skipped_with_the_reason(
        tmp_path: Path, airflow_db: None, recorder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_FAKE_DRIFT", str(_drift_result(tmp_path / "drift.json", psi=0.4, rows=0)))
    _, dag = _load(tmp_path, "monitoring")
    run = dag.test(run_conf=MONITOR_CONF)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"check_interval": "success", "monitor": "success", "decide": "skipped",
                      "trigger_train": "skipped", "no_action": "skipped"}
    decision = _latest_decision(tmp_path)  # recorded all the same, with why nothing was decided
    assert decision["action"] == "insufficient_data" and "only 0 rows in the window" in str(decision["reasons"])
