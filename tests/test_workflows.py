"""The CLI and the generated DAGs' tasks reach gate and promote through the one workflow: on a real MLflow
server and the stand's real storage they find the candidate the same way and record the same things.

The only stand-in is Airflow's task context (the run id and the task instance a running task is handed);
whole DAG runs under Airflow are in test_dag_runs.py."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
from helpers import MINIMAL, stands_for_tests, upload_stub_artifacts, write_repo

from mlops_module import dag_tasks, names, workflows
from mlops_module.building.render import render_bundle, write_bundle
from mlops_module.cli import main
from mlops_module.release import registry
from mlops_module.storage import storage_of

pytestmark = pytest.mark.slow


def trained(mlflow: Any, model: str, airflow_run_id: str, auc: float, champion: str | None = None) -> str:
    """What the train job of one Airflow run leaves in MLflow (runtime.mlflow_run + log_model)."""
    experiment = mlflow.get_experiment_by_name(model)
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(model)
    tags = {names.RUN_TAG_MODEL: model, names.RUN_TAG_STAND: "local", names.RUN_TAG_JOB: "train",
            names.RUN_TAG_AIRFLOW_RUN: airflow_run_id} | ({names.CHAMPION_VERSION_TAG: champion} if champion else {})
    run = mlflow.create_run(experiment_id, tags=tags)
    mlflow.log_metric(run.info.run_id, "roc_auc", auc)
    mlflow.log_text(run.info.run_id, "flavor: test\n", "model/MLmodel")
    mlflow.set_terminated(run.info.run_id)
    if not mlflow.search_registered_models(f"name = '{model}'"):
        mlflow.create_registered_model(model)
    return str(mlflow.create_model_version(model, f"{run.info.artifact_uri}/model", run.info.run_id).version)


def in_task(monkeypatch: pytest.MonkeyPatch, run_id: str, gate: dict[str, str] | None = None) -> None:
    """Airflow's context as a running task of the train DAG sees it."""
    import airflow.sdk

    pushed: dict[str, object] = {}
    ti = types.SimpleNamespace(xcom_pull=lambda task_ids: {names.TASK_GATE: gate}[task_ids],
                               xcom_push=lambda key, value: pushed.__setitem__(key, value))
    dag = types.SimpleNamespace(dag_id=f"{run_id}__train")  # the train DAG's, not a stand's acceptance DAG
    context = {"run_id": run_id, "ti": ti, "dag": dag, "dag_run": types.SimpleNamespace(conf={})}
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: context)


def test_gate_and_promote_from_the_cli_and_from_the_dag_tasks_record_the_same(
        tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    model = f"wf{abs(hash(request.node.name)) % 10**8}"
    stands_file = stands_for_tests(tmp_path, mlflow_server)
    monkeypatch.setenv("MLOPS_STANDS", str(stands_file))  # what a stand's Airflow workers are given
    config = write_repo(tmp_path / "repo", {**MINIMAL, "model": {"name": model, "owner": "risk-team"},
                                            "quality_gate": {"metrics": [{"name": "roc_auc", "min": 0.7}]}})
    cfg = workflows.resolve(config, "local").cfg
    bundle = write_bundle(render_bundle(cfg), tmp_path / "dags" / model / "local")  # what the DAG tasks have
    mlflow = registry.client(mlflow_server)
    keys = workflows.artifact_keys(cfg)
    upload_stub_artifacts(storage_of(cfg.stand), keys.env_object, keys.code_prefix, tmp_path)

    # the CLI: gate the version the Airflow run "scheduled__1" trained, then promote it
    first = trained(mlflow, model, "scheduled__1", 0.8)
    assert main(["gate", str(config), "--stand", "local", "--airflow-run-id", "scheduled__1"]) == 0
    assert main(["promote", str(config), "--stand", "local", "--version", first]) == 0
    # the DAG tasks: the same for the next Airflow run's candidate, scored against the champion
    second = trained(mlflow, model, "scheduled__2", 0.85, champion=first)
    in_task(monkeypatch, "scheduled__2")
    gate = dag_tasks.quality_gate(model, "local", str(bundle))
    assert gate == {"version": second, "verdict": "success"}
    in_task(monkeypatch, "scheduled__2", gate)
    dag_tasks.promote(model, "local", str(bundle))

    assert registry.alias_version(mlflow, model, "local") == second
    tags = {v: registry.version_tags(mlflow, model, v) for v in (first, second)}
    assert set(tags[first]) == set(tags[second])  # the same tags, written by the same code
    assert {k: tags[first][k] for k in (names.gate_tag("local"), names.ENV_ARCHIVE_TAG, names.CODE_PACKAGE_TAG,
                                        names.CONFIG_HASH_TAG)} == \
           {k: tags[second][k] for k in (names.gate_tag("local"), names.ENV_ARCHIVE_TAG, names.CODE_PACKAGE_TAG,
                                         names.CONFIG_HASH_TAG)}  # the repository's keys are the bundle's
    assert (registry.gate_record(mlflow, model, second, "local") or {})["champion_version"] == first
    assert registry.model_version(mlflow, model, second).description.startswith(
        "**Champion on local (alias local)**: passed the quality gate")
    assert tags[second][names.previous_version_tag("local")] == first
    for version in (first, second):
        run_id = mlflow.get_model_version(model, version).run_id
        assert names.gate_artifact("local") in {a.path for a in mlflow.list_artifacts(run_id, "quality_gate")}
    moves = [e for e in workflows.history(cfg) if e["action"] == "promote"]
    assert [(e["from_version"], e["to_version"]) for e in moves] == [(None, first), (first, second)]


def test_dag_tasks_use_the_stand_addresses_the_bundle_was_rendered_with(
        tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """A stands file's ${VAR} may expand differently in the scheduler than where the bundle was rendered (the
    local stand's MLflow port): the gate task still talks to the MLflow and storage the bundle's jobs use."""
    model = f"wa{abs(hash(request.node.name)) % 10**8}"
    host, _, port = mlflow_server.rpartition(":")
    stands_file = stands_for_tests(tmp_path, mlflow_server)
    stands_file.write_text(stands_file.read_text().replace(f"tracking_uri: {mlflow_server}",
                                                           f"tracking_uri: {host}:${{TEST_MLFLOW_PORT}}"))
    monkeypatch.setenv("MLOPS_STANDS", str(stands_file))
    monkeypatch.setenv("TEST_MLFLOW_PORT", port)
    config = write_repo(tmp_path / "repo", {**MINIMAL, "model": {"name": model, "owner": "risk-team"},
                                            "quality_gate": {"metrics": [{"name": "roc_auc", "min": 0.7}]}})
    cfg = workflows.resolve(config, "local").cfg
    assert cfg.stand.mlflow_tracking_uri == mlflow_server
    bundle = write_bundle(render_bundle(cfg), tmp_path / "dags" / model / "local")
    version = trained(registry.client(mlflow_server), model, "scheduled__1", 0.8)

    monkeypatch.setenv("TEST_MLFLOW_PORT", "9")  # the scheduler's environment: nothing answers there
    assert workflows.resolve(config, "local").cfg.stand.mlflow_tracking_uri == f"{host}:9"
    resolved = workflows.resolve_bundle(bundle, "local")
    assert (resolved.cfg.stand.mlflow_tracking_uri, resolved.cfg.stand.storage_uri) == \
           (mlflow_server, cfg.stand.storage_uri)
    in_task(monkeypatch, "scheduled__1")
    assert dag_tasks.quality_gate(model, "local", str(bundle)) == {"version": version, "verdict": "success"}


def test_a_scheduled_run_of_an_interval_that_ended_before_the_first_deployment_is_stale() -> None:
    import datetime

    deployed = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    midnight = deployed.replace(hour=0)
    # unpausing a DAG deployed at noon: the scheduler's catch-up run of the day that ended at midnight is skipped
    reason = workflows.stale_interval(deployed, "scheduled", midnight)
    assert reason is not None and "2026-03-10T00:00:00+00:00 ended before this DAG was first deployed" in reason
    assert "Trigger the DAG by hand" in reason
    assert workflows.stale_interval(deployed, "scheduled", midnight + day) is None  # the first interval after it
    for asked in ("manual", "backfill", "asset_triggered"):  # someone asked for it: it runs
        assert workflows.stale_interval(deployed, asked, midnight - 30 * day) is None
    assert workflows.stale_interval(None, "scheduled", midnight) is None  # rendered, never deployed
