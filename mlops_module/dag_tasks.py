"""Python callables of the generated DAGs. DAG files import this inside tasks, never at parse time."""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)


def _pushed(context: Any, model: str, stand: str) -> bool:
    """Whether this is the stand's acceptance DAG (a pushed version) rather than its train DAG."""
    from mlops_module import names

    return bool(context["dag"].dag_id == names.dag_id(model, stand, names.ACCEPT))


def _conf(context: Any) -> dict[str, Any]:
    return dict(getattr(context.get("dag_run"), "conf", None) or {})


def quality_gate(model: str, stand: str, bundle: str, notify: dict[str, Any] | None = None) -> dict[str, str]:
    """Gate the candidate on the stand's evidence, record the result; fail the task if it fails (and say so on the
    channels ``notify``, the DAG file's settings, names). The candidate: in the acceptance DAG the pushed version
    (the run's conf), else the version this run's train job registered.

    Returns the version and verdict as one XCom (the template's task declares ``multiple_outputs=False``)."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_module import workflows

    context = get_current_context()
    cfg = workflows.resolve_bundle(bundle, stand).cfg
    pushed = _pushed(context, model, stand)
    version = _conf(context).get("version") if pushed else None
    if pushed and not version:
        raise AirflowFailException(f"an acceptance run of {model} on {stand} needs the pushed version in its conf "
                                   "(`version`: the deploy job passes it)")
    version, result = workflows.gate(cfg, version=version, airflow_run_id=context["run_id"], pushed=pushed,
                                     log=log.info)
    if not result.passed:
        from mlops_module import notifications

        notifications.gate_failed(context, notify, model=model, stand=stand, version=version, result=result,
                                  pushed=pushed, story=workflows.version_story(cfg, version) if notify else None)
        raise AirflowFailException(f"{model} version {version} failed the quality gate on {stand}: {result.summary()}")
    return {"version": version, "verdict": result.verdict}


def promote(model: str, stand: str, bundle: str, notify: dict[str, Any] | None = None) -> bool:
    """Promote the version the gate passed: tags, alias, push to the next stand. True when the stand's alias
    holds it now (False: a retrain held for approval); the inference run's conf goes to XCom ``inference_conf``.
    A version left waiting for a person (held here, or pushed to a stand that wants a manual approval) is
    announced on the channels ``notify`` names."""
    from airflow.sdk import get_current_context

    from mlops_module import names, workflows

    context = get_current_context()
    gate = context["ti"].xcom_pull(task_ids=names.TASK_GATE)
    conf = _conf(context)
    resolved = workflows.resolve_bundle(bundle, stand)
    from mlops_module.release.promotion import PUSHED, RETRAINED, TRAINED

    if _pushed(context, model, stand):
        path, source = PUSHED, conf.get("source_stand")
        reason = str(conf.get("reason") or f"accepted on {stand} (Airflow run {context['run_id']})")
    else:
        path, source = (RETRAINED if resolved.cfg.accepts else TRAINED), None
        reason = str(conf.get("reason") or f"quality gate passed (Airflow run {context['run_id']})")
    report = workflows.promote(resolved, gate["version"], workflows.bundle_artifact_keys(bundle), reason=reason,
                               log=log.info, path=path, source=source)
    log.info("promotion: %s", json.dumps(report.as_dict()))
    _announce_waiting(context, notify, report,
                      story=workflows.version_story(resolved.cfg, gate["version"]) if notify else None)
    context["ti"].xcom_push(key="inference_conf", value=workflows.inference_conf(resolved.cfg))
    return report.holds_alias


def check_interval(model: str, stand: str, bundle: str) -> None:
    """Before a scheduled job: skip the run when its interval ended before the DAG was first deployed (the
    scheduler catching up on a DAG just unpaused); the reason goes to the task's log."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowSkipException

    from mlops_module import workflows

    context = get_current_context()
    dag_run = context.get("dag_run")
    run_type = str(getattr(getattr(dag_run, "run_type", None), "value", getattr(dag_run, "run_type", "")) or "")
    reason = workflows.stale_interval(workflows.first_deployed(bundle), run_type, context.get("data_interval_end"))
    if reason:
        log.warning("%s on %s: %s", model, stand, reason)
        raise AirflowSkipException(reason)


def check_output(model: str, stand: str, bundle: str) -> None:
    """After the inference job: a window that scored no rows ends skipped with the reason (failed where the config
    says ``inference.require_data: true``), not as a plain success nobody looks at."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from mlops_module import workflows

    context = get_current_context()
    cfg = workflows.resolve_bundle(bundle, stand).cfg
    rows = workflows.scored_rows(cfg, context["run_id"])
    if rows is None:
        log.warning("%s on %s: the inference run recorded no row count (its script writes without "
                    "runtime.write_predictions): whether the window had data is not checked", model, stand)
        return
    interval = f"{_conf(context).get('data_interval_start') or context.get('data_interval_start')} .. " \
               f"{_conf(context).get('data_interval_end') or context.get('data_interval_end')}"
    problem = workflows.empty_window(cfg, rows, interval)
    if problem is None:
        log.info("%s on %s: the inference run scored %d rows", model, stand, rows)
        return
    log.warning(problem)
    if cfg.inference.require_data:
        raise AirflowFailException(f"{problem} (inference.require_data is true)")
    raise AirflowSkipException(problem)


def _announce_waiting(context: Any, notify: dict[str, Any] | None, report: Any, story: str | None) -> None:
    """Approval waiting: a retrain held on this stand, or a push to a stand that wants a manual approval (``story``:
    the version's, as its MLflow description tells it)."""
    from mlops_module import notifications
    from mlops_module.release.promotion import AWAITING_APPROVAL

    if report.held:
        notifications.approval_waiting(context, notify, model=report.model, stand=report.stand,
                                       version=report.version, where=report.stand,
                                       reason=f"{report.path}: the stand's policy holds a retrained version",
                                       story=story)
    if report.pushed_to and report.trigger == AWAITING_APPROVAL:
        notifications.approval_waiting(context, notify, model=report.model, stand=report.stand,
                                       version=report.version, where=report.pushed_to,
                                       reason=f"pushed to {report.pushed_to}, which wants a manual approval",
                                       story=story)


def decide_retrain(model: str, stand: str, bundle: str, notify: dict[str, Any] | None = None) -> str:
    """Read what the monitoring job measured, decide, record the decision and the report; the branch to take.
    A retrain decided is announced on the channels ``notify`` names.

    Pushes the train DAG's ``conf`` (window and reason) as XCom ``conf`` for the trigger task.
    """
    import datetime

    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from mlops_module import names, workflows
    from mlops_module.monitoring.decision import INSUFFICIENT, RETRAIN
    from mlops_module.monitoring.orchestration import decide_and_record

    context = get_current_context()
    cfg = workflows.resolve_bundle(bundle, stand).cfg
    ti = context["ti"]
    train = names.dag_id(model, stand, "train")
    active = ti.get_dr_count(dag_id=train, states=["queued", "running"])

    def triggered(monitoring_run_id: str) -> bool:  # the trigger's run id is deterministic (see the template)
        return bool(ti.get_dr_count(dag_id=train, run_ids=[names.retrain_run_id(monitoring_run_id)]))

    decision = decide_and_record(cfg, context["run_id"], now=datetime.datetime.now(datetime.timezone.utc),
                                 train_runs_active=active, triggered=triggered, log=log.info)
    ti.xcom_push(key="conf", value=decision.conf())
    if decision.action == INSUFFICIENT:  # recorded, but nothing was decided: not a plain success
        if cfg.monitoring.require_data:
            raise AirflowFailException(f"no decision: {decision.reason} (monitoring.require_data is true)")
        raise AirflowSkipException(f"no decision: {decision.reason}")
    if decision.action == RETRAIN:
        from mlops_module import notifications

        notifications.retrain_decided(context, notify, model=model, stand=stand, reason=decision.reason,
                                      window=f"{decision.window_start} to {decision.window_end}")
    return names.TASK_TRIGGER_TRAIN if decision.action == RETRAIN else names.TASK_NO_ACTION
