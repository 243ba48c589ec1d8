"""Python callables of the generated DAGs. DAG files import this inside tasks, never at parse time."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _not_yet(what: str, issue: str, model: str, stand: str) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    message = (f"{what} for {model} on stand {stand} is not implemented in this version of mlops ({issue}): "
               "nothing was checked and nothing was changed; the task is skipped, not passed")
    log.warning(message)
    raise AirflowSkipException(message)


def quality_gate(model: str, stand: str) -> None:
    _not_yet("The quality gate", "gate and promoter work item", model, stand)


def promote(model: str, stand: str) -> None:
    _not_yet("Promotion", "gate and promoter work item", model, stand)


def decide_retrain(model: str, stand: str) -> None:
    _not_yet("The retraining decision", "monitoring work item", model, stand)
