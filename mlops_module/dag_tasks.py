"""Python callables of the generated DAGs. DAG files import this inside tasks, never at parse time."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _config(bundle: str, stand: str) -> Any:
    """The model's config as rendered into the bundle, resolved on this stand (stands file: $MLOPS_STANDS)."""
    from mlops_module.config import check
    from mlops_module.stands import load_stands

    stands = load_stands()
    (cfg,) = check(Path(bundle) / "config" / "model.yaml", stands, stand, check_files=False)
    return cfg, stands


def quality_gate(model: str, stand: str, bundle: str) -> dict[str, str]:
    """Find the version this run's train job registered, gate it, record the result; fail the task if it fails."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_module import registry
    from mlops_module.promotion import run_gate

    context = get_current_context()
    cfg, _ = _config(bundle, stand)
    mlflow = registry.client(cfg.stand.mlflow_tracking_uri)
    run_id = registry.run_of_airflow_run(mlflow, model, stand, context["run_id"])
    version = registry.version_of_run(mlflow, model, run_id)
    result = run_gate(cfg, version, mlflow, log.info)
    if not result.passed:
        raise AirflowFailException(f"{model} version {version} failed the quality gate on {stand}: {result.summary()}")
    return {"version": version, "verdict": result.verdict}


def promote(model: str, stand: str, bundle: str) -> None:
    """Promote the version the gate passed: tags, alias, push to the next stand."""
    from airflow.sdk import get_current_context

    from mlops_module.promotion import promote as promote_version

    context = get_current_context()
    gate = context["ti"].xcom_pull(task_ids="quality_gate")
    cfg, stands = _config(bundle, stand)
    index = json.loads((Path(bundle) / "mlops-bundle.json").read_text())
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    reason = str(conf.get("reason") or f"quality gate passed (Airflow run {context['run_id']})")
    nxt = stands.get(cfg.stand.next) if cfg.stand.next else None
    report = promote_version(cfg, gate["version"], nxt, env_object=index["env_object"],
                             code_prefix=index["code_prefix"], reason=reason, log=log.info)
    log.info("promotion: %s", json.dumps(report.as_dict()))


def decide_retrain(model: str, stand: str, bundle: str) -> str:
    """Read what the monitoring job measured, decide, record the decision and the report; the branch to take.

    Pushes the train DAG's ``conf`` (window and reason) as XCom ``conf`` for the trigger task.
    """
    import datetime

    from airflow.sdk import get_current_context

    from mlops_module import names
    from mlops_module.monitoring import decide_and_record

    context = get_current_context()
    cfg, _ = _config(bundle, stand)
    ti = context["ti"]
    train = names.dag_id(model, stand, "train")
    active = ti.get_dr_count(dag_id=train, states=["queued", "running"])

    def triggered(monitoring_run_id: str) -> bool:  # the trigger's run id is deterministic (see the template)
        return bool(ti.get_dr_count(dag_id=train, run_ids=[f"retrain__{monitoring_run_id}"]))

    decision = decide_and_record(cfg, context["run_id"], now=datetime.datetime.now(datetime.timezone.utc),
                                 train_runs_active=active, triggered=triggered, log=log.info)
    ti.xcom_push(key="conf", value=decision.conf())
    return "trigger_train" if decision.action == "retrain" else "no_action"
