"""The MLflow model registry of a stand: the few calls the gate and the promoter make, done right.

MLflow 3 facts this relies on: an alias is unique per registered model (one version per stand
alias); a missing alias raises INVALID_PARAMETER_VALUE, not "not found"; aliases can't be searched,
only resolved; there is no compare-and-set, so callers serialise and read back.
"""

from __future__ import annotations

from typing import Any

from .errors import MlopsError

# Tags the training runtime puts on its MLflow run, so the gate finds the run of an Airflow run.
RUN_TAG_MODEL = "mlops.model"
RUN_TAG_STAND = "mlops.stand"
RUN_TAG_AIRFLOW_RUN = "mlops.airflow_run_id"
RUN_TAG_JOB = "mlops.job"
# What the monitoring DAG's decide task decided, on the monitoring job's run.
RUN_TAG_DECISION = "mlops.decision"
RUN_TAG_DECISION_REASON = "mlops.decision.reason"
# The champion's scores on the candidate's evaluation data, and which version they belong to.
CHAMPION_PREFIX = "champion."
CHAMPION_VERSION_TAG = "champion.version"


class RegistryError(MlopsError):
    """The registry could not answer, or its state doesn't allow the operation."""


def client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def alias_version(mlflow: Any, model: str, alias: str) -> str | None:
    """The version under ``alias``, or None when the alias (or the model) doesn't exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.get_model_version_by_alias(model, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            return None
        raise RegistryError(f"cannot read alias {alias!r} of {model}: {exc.message}") from exc


def version_of_run(mlflow: Any, model: str, run_id: str) -> str:
    """The version the training run registered (never "the highest version number")."""
    found = mlflow.search_model_versions(f"name = '{model}' AND run_id = '{run_id}'")
    if not found:
        raise RegistryError(f"run {run_id} registered no version of {model}")
    if len(found) > 1:
        versions = ", ".join(sorted(str(v.version) for v in found))
        raise RegistryError(f"run {run_id} registered several versions of {model} ({versions}); name one")
    return str(found[0].version)


def run_of_airflow_run(mlflow: Any, model: str, stand: str, airflow_run_id: str, job: str = "train") -> str:
    """The MLflow run the ``job`` of one Airflow run logged (tagged by the runtime).

    The job is part of the match: DAGs on the same schedule get the same run id (``scheduled__<time>``),
    so the train, inference and monitoring runs of one moment share it.
    """
    if "'" in airflow_run_id:
        raise RegistryError(f"Airflow run id {airflow_run_id!r} contains a quote; Airflow's run ids don't")
    experiment = mlflow.get_experiment_by_name(model)  # the runtime logs into the model's experiment
    runs = [] if experiment is None else mlflow.search_runs(
        [experiment.experiment_id],
        filter_string=(f"tags.`{RUN_TAG_MODEL}` = '{model}' AND tags.`{RUN_TAG_STAND}` = '{stand}' "
                       f"AND tags.`{RUN_TAG_AIRFLOW_RUN}` = '{airflow_run_id}' AND tags.`{RUN_TAG_JOB}` = '{job}' "
                       "AND attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"],
        max_results=10,
    )
    if not runs:
        raise RegistryError(f"no finished MLflow run of {model}'s {job} job on stand {stand} is tagged with Airflow "
                            f"run {airflow_run_id!r}; did the {job} job log one (runtime.mlflow_run)?")
    return str(runs[0].info.run_id)  # a task retry may have logged several: the newest finished one


def model_version(mlflow: Any, model: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.get_model_version(model, str(version))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryError(f"{model} has no version {version} in the registry") from exc
        raise RegistryError(f"cannot read {model} version {version}: {exc.message}") from exc


def version_tags(mlflow: Any, model: str, version: str) -> dict[str, str]:
    return dict(model_version(mlflow, model, version).tags)


def set_tags(mlflow: Any, model: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        mlflow.set_model_version_tag(model, version, key, value[:5000])
