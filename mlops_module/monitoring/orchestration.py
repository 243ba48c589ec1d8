"""The monitoring DAG's decision step: read the drift result, decide, keep a record, make the report.

The monitoring job (built-in: ``mlops_module/runtime/jobs/monitoring.py``) logs ``drift.json`` to an MLflow run
tagged with the Airflow run. This module finds that run, applies the config's thresholds and the
guards (:mod:`mlops_module.monitoring.decision`), and records the decision twice: on the MLflow run (tags,
``decision.json``, the HTML and PNG report) and in the stand's storage under
``monitoring/<model>/<stand>/decisions/``, which is also where the cooldown looks for the last
triggered retrain (MLflow keeps runs, but a storage listing is one call and survives a registry move).
"""

from __future__ import annotations

import datetime
import json
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlops_module import names
from mlops_module.errors import MlopsError
from mlops_module.kinds import Log
from mlops_module.monitoring.decision import RETRAIN, Decision, decide
from mlops_module.release import registry
from mlops_module.spec.config import ModelConfig
from mlops_module.storage import Storage

DECISION_ARTIFACT = names.DECISION_ARTIFACT  # read by name from here by earlier callers


class MonitoringError(MlopsError):
    """The monitoring job left nothing to decide on."""


decisions_prefix = names.decisions_prefix


def load_result(mlflow: registry.RegistryClient, model: str, stand: str,
                airflow_run_id: str) -> tuple[str, dict[str, Any]]:
    """The monitoring job's run for this Airflow run, and its ``drift.json``."""
    from mlops_module.runtime import read_json_artifact

    run_id = registry.run_of_airflow_run(mlflow, model, stand, airflow_run_id, job="monitoring")
    try:
        return run_id, read_json_artifact(mlflow, run_id, names.DRIFT_ARTIFACT)
    except LookupError as exc:
        raise MonitoringError(f"the monitoring run {run_id} of {model} on {stand} logged no {names.DRIFT_ARTIFACT}; a "
                              "custom monitoring.script must log the same result (see docs/monitoring.md)") from exc


def last_trigger(store: Storage, model: str, stand: str, *, exclude_run: str | None = None,
                 triggered: Callable[[str], bool] | None = None) -> datetime.datetime | None:
    """When the last retrain was triggered on this stand, from the recorded decisions.

    A decision of the current monitoring run (``exclude_run``: a cleared and re-run task) doesn't count,
    nor one whose train run never came to exist (``triggered(airflow_run_id)`` says no: the trigger failed).
    """
    latest = None
    for key in store.list_keys(decisions_prefix(model, stand)):
        raw = store.read_bytes(key)
        try:
            record = json.loads(raw or b"{}")
        except ValueError:
            continue
        if record.get("action") != RETRAIN or not record.get("at") or record.get("airflow_run_id") == exclude_run:
            continue
        at = datetime.datetime.fromisoformat(record["at"])
        if latest is not None and at <= latest:
            continue
        if triggered is not None and not triggered(str(record.get("airflow_run_id"))):
            continue
        latest = at
    return latest


def decide_and_record(cfg: ModelConfig, airflow_run_id: str, *, now: datetime.datetime, train_runs_active: int,
                      triggered: Callable[[str], bool] | None = None, mlflow: registry.RegistryClient | None = None,
                      store: Storage | None = None,
                      log: Log | None = None) -> Decision:
    from mlops_module.storage import storage_of

    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    store = store or storage_of(cfg.stand)
    run_id, result = load_result(mlflow, cfg.name, cfg.stand.name, airflow_run_id)
    drift, retrain = cfg.drift, cfg.retrain
    perf = cfg.performance
    decision = decide(
        result, method=drift.method, threshold=drift.threshold, share=drift.share, min_rows=drift.min_rows,
        watched=drift.features, performance=None if perf is None else
        {"metric": perf.metric, "min": perf.min, "max": perf.max}, retrain_on=retrain.on,
        cooldown_seconds=retrain.cooldown_seconds, window_days=cfg.train.window_days, now=now,
        last_trigger=last_trigger(store, cfg.name, cfg.stand.name, exclude_run=airflow_run_id, triggered=triggered),
        train_runs_active=train_runs_active)
    result = report_result(result, cfg, decision)
    record = {"at": now.isoformat(), "model": cfg.name, "stand": cfg.stand.name, "airflow_run_id": airflow_run_id,
              "mlflow_run_id": run_id, **decision.as_dict()}
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    store.put_bytes(f"{decisions_prefix(cfg.name, cfg.stand.name)}{stamp}-{uuid.uuid4().hex[:8]}.json",
                    json.dumps(record, sort_keys=True).encode())
    mlflow.set_tag(run_id, names.RUN_TAG_DECISION, decision.action)
    mlflow.set_tag(run_id, names.RUN_TAG_DECISION_REASON, decision.reason[:5000])
    mlflow.log_dict(run_id, record, DECISION_ARTIFACT)
    _report(mlflow, run_id, result, log)
    if log:
        log(f"{cfg.name} on {cfg.stand.name}: {decision.action}: {decision.reason}")
    return decision


def report_result(result: Mapping[str, Any], cfg: ModelConfig, decision: Decision) -> dict[str, Any]:
    """What the report shows: the job's result with the config's thresholds and the decision's verdicts
    (the drifted features, the performance's configured bounds and whether it decayed)."""
    drift, perf = cfg.drift, cfg.performance
    verdicts = set(decision.drifted)
    watched = set(drift.features)
    measured = result.get("performance")
    performance = measured
    if isinstance(measured, Mapping):
        performance = {**measured, "decayed": decision.performance_decayed,
                       **({"min": perf.min, "max": perf.max} if perf is not None else {})}
    return {**result, "method": drift.method, "threshold": drift.threshold, "share_threshold": drift.share,
            "min_rows": drift.min_rows,
            "features": [{**f, "drifted": f["name"] in verdicts} for f in result.get("features") or []
                         if not watched or f["name"] in watched],
            "drifted_share": decision.drifted_share, "dataset_drift": decision.dataset_drift,
            "performance": performance,
            "decision": {"action": decision.action, "reasons": list(decision.reasons),
                         "window": {"start": decision.window_start, "end": decision.window_end}
                         if decision.action == RETRAIN else None}}


def _report(mlflow: registry.RegistryClient, run_id: str, result: dict[str, Any], log: Log | None) -> None:
    """The HTML report and PNG summary on the monitoring run; a report failure never blocks the decision."""
    try:
        from mlops_module.monitoring.report import write_report

        with tempfile.TemporaryDirectory(prefix="mlops-report-") as tmp:
            for path in write_report(result, Path(tmp)):
                mlflow.log_artifact(run_id, str(path), "report")
    except Exception as exc:  # reported, not raised: the decision stands without its report
        if log:
            log(f"the drift report could not be made: {type(exc).__name__}: {exc}")
