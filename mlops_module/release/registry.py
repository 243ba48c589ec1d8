"""The MLflow model registry of a stand: the few calls the gate and the promoter make, done right.

MLflow 3 facts this relies on: an alias is unique per registered model (one version per stand
alias); a missing alias raises INVALID_PARAMETER_VALUE, not "not found"; aliases can't be searched,
only resolved; there is no compare-and-set, so callers serialise and read back.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Any, Protocol, cast

from mlops_module import names
from mlops_module.errors import MlopsError
from mlops_module.names import RUN_TAG_AIRFLOW_RUN, RUN_TAG_JOB, RUN_TAG_MODEL, RUN_TAG_STAND


class RegistryClient(Protocol):
    """The part of ``mlflow.MlflowClient`` the toolkit uses: what a fake must provide, what mypy checks.
    MLflow's entities (ModelVersion, Run, Experiment) stay ``Any``: MLflow ships no type information."""

    def get_model_version(self, name: str, version: str) -> Any: ...
    def get_model_version_by_alias(self, name: str, alias: str) -> Any: ...
    def get_model_version_download_uri(self, name: str, version: str) -> str: ...
    def search_model_versions(self, filter_string: str | None = None) -> Any: ...
    def set_model_version_tag(self, name: str, version: str, key: str, value: Any) -> None: ...
    def update_model_version(self, name: str, version: str, description: str | None = None) -> Any: ...
    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None: ...
    def get_registered_model(self, name: str) -> Any: ...
    def create_registered_model(self, name: str) -> Any: ...
    def create_model_version(self, name: str, source: str, run_id: str | None = None,
                             tags: dict[str, Any] | None = None) -> Any: ...
    def get_run(self, run_id: str) -> Any: ...
    def search_runs(self, experiment_ids: list[str], filter_string: str = "", *args: Any, **kwargs: Any) -> Any: ...
    def create_run(self, experiment_id: str, start_time: int | None = None, tags: dict[str, Any] | None = None,
                   run_name: str | None = None) -> Any: ...
    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None: ...
    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any: ...
    def log_dict(self, run_id: str, dictionary: dict[str, Any], artifact_file: str) -> None: ...
    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None: ...
    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None: ...
    def list_artifacts(self, run_id: str, path: str | None = None) -> Any: ...
    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str: ...
    def get_experiment_by_name(self, name: str) -> Any: ...
    def create_experiment(self, name: str, artifact_location: str | None = None,
                          tags: dict[str, Any] | None = None) -> str: ...

class RegistryError(MlopsError):
    """The registry could not answer, or its state doesn't allow the operation."""


class RegistryUnavailable(RegistryError):
    """The stand's MLflow server could not be reached or failed (not: it answered that something is absent)."""


# MLflow's client retries 7 times with a 120 s timeout per request: a dead or hung server takes about four
# minutes to fail, silently. Ours: 15 s per request, 2 retries, backoff 1 s: a refused connection fails in
# about 3 s, a hung server in under a minute. Defaults only: MLflow's own variables, when set, win.
BOUNDED_RETRIES = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "15", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                   "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
UNAVAILABLE_CODES = frozenset({"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                               "ENDPOINT_NOT_FOUND"})


def client(tracking_uri: str) -> RegistryClient:
    """A client of the stand's registry whose transport failures are RegistryUnavailable, naming the server and
    the call (the CLI's exit 1), bounded in time by :data:`BOUNDED_RETRIES`."""
    from mlflow import MlflowClient

    for name, value in BOUNDED_RETRIES.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small record read: noise
    found: RegistryClient = cast(RegistryClient, _Guarded(
        MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri), tracking_uri))
    return found


class _Guarded:
    """``MlflowClient`` with each call's transport failure (connection refused or reset, timeout, 5xx after the
    retries) raised as RegistryUnavailable; MLflow's answers (not found, invalid) pass through unchanged."""

    def __init__(self, inner: Any, uri: str) -> None:
        self._inner, self._uri = inner, uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                problem = unavailable(exc)
                if problem is None:
                    raise
                raise RegistryUnavailable(f"MLflow at {self._uri} failed in {name}: {problem}") from exc

        return call


def unavailable(exc: BaseException) -> str | None:
    """What went wrong, in one line, when ``exc`` is MLflow (or the network to it) failing; None otherwise."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, requests.RequestException):
        return _cause(str(exc))
    if isinstance(exc, MlflowException) and (exc.error_code in UNAVAILABLE_CODES
                                             or str(exc.message).startswith("API request to")):
        return _cause(str(exc.message))
    return None


def _cause(message: str) -> str:
    """``Connection refused`` / ``Read timed out`` rather than urllib3's paragraph, when it can be found."""
    for marker, said in (("Connection refused", "connection refused"), ("Read timed out", "no answer (timed out)"),
                         ("timed out", "no answer (timed out)"), ("Connection reset", "connection reset"),
                         ("RemoteDisconnected", "connection closed by the server"),
                         ("Max retries exceeded", "no answer after retries")):
        if marker in message:
            return said + f" (retries: {os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES')}, timeout: "\
                f"{os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT')} s per request)"
    return message.splitlines()[0][:300] if message else "no details"


def alias_version(mlflow: RegistryClient, model: str, alias: str) -> str | None:
    """The version under ``alias``, or None when the alias (or the model) doesn't exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.get_model_version_by_alias(model, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            return None
        raise RegistryError(f"cannot read alias {alias!r} of {model}: {exc.message}") from exc


def version_of_run(mlflow: RegistryClient, model: str, run_id: str) -> str:
    """The version the training run registered (never "the highest version number")."""
    found = mlflow.search_model_versions(f"name = '{model}' AND run_id = '{run_id}'")
    if not found:
        raise RegistryError(f"run {run_id} registered no version of {model}")
    if len(found) > 1:
        versions = ", ".join(sorted(str(v.version) for v in found))
        raise RegistryError(f"run {run_id} registered several versions of {model} ({versions}); name one")
    return str(found[0].version)


def run_of_airflow_run(mlflow: RegistryClient, model: str, stand: str, airflow_run_id: str, job: str = "train") -> str:
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


def model_version(mlflow: RegistryClient, model: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.get_model_version(model, str(version))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryError(f"{model} has no version {version} in the registry") from exc
        raise RegistryError(f"cannot read {model} version {version}: {exc.message}") from exc


def version_tags(mlflow: RegistryClient, model: str, version: str) -> dict[str, str]:
    return dict(model_version(mlflow, model, version).tags)


def set_tags(mlflow: RegistryClient, model: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        mlflow.set_model_version_tag(model, version, key, value[:5000])


CARRIED_IDENTITY = (names.ENV_ARCHIVE_TAG, names.CODE_PACKAGE_TAG, names.GIT_SHA_TAG, names.CONFIG_HASH_TAG)


def carried_evidence(mlflow: RegistryClient, model: str, version: str, stand: str) -> dict[str, str]:
    """The tags that travel with a pushed version: the trail of earlier stands (their ``source.<stand>.version``)
    and its identity (environment archive, code package, commit, config hash). What the source stands decided
    travels as their gate records (copied under ``source/`` on the new version's run, see :func:`register_copy`)
    and in the new version's description: never as tags that would read as a second verdict. The retrain reason
    travels too."""
    tags = dict(model_version(mlflow, model, version).tags)
    return {k: v for k, v in tags.items() if names.source_version_tag_stand(k)
            or k in CARRIED_IDENTITY or k == names.RETRAIN_REASON_TAG}  # why it was trained: in every story


def gate_summary(mlflow: RegistryClient, model: str, version: str, stand: str) -> str | None:
    """The gate's one-line summary on ``stand`` (from its record on the version's run); None without one."""
    record = gate_record(mlflow, model, version, stand)
    if record is None:
        return None
    return str(record.get("summary") or "") or None


def gate_record(mlflow: RegistryClient, model: str, version: str, stand: str) -> dict[str, Any] | None:
    """What the gate wrote on the version's run when it decided on ``stand`` (``quality_gate/<stand>.json``: the
    verdict, version, stand, when, the checks with the metrics it read); None when there is none (or it is not
    a JSON object). The verdict promotion and rollback trust: a tag is a summary anyone can set. RegistryError
    when it can't be read (so a failing server is not mistaken for a missing record)."""
    import posixpath

    from mlops_module.runtime import read_json_artifact

    run_id = model_version(mlflow, model, version).run_id
    if not run_id:
        return None
    artifact = names.gate_artifact(stand)
    try:
        record = read_json_artifact(mlflow, run_id, artifact)
    except LookupError as exc:  # MLflow says "does not exist" for any failure of a download: ask the listing
        problem = f"cannot read the gate's record {artifact} of {model} version {version} (run {run_id})"
        try:
            listed = {f.path for f in mlflow.list_artifacts(run_id, posixpath.dirname(artifact))}
        except Exception as failed:
            raise RegistryError(f"{problem}: {failed}") from failed
        if artifact not in listed:
            return None
        raise RegistryError(f"{problem}: {exc.__cause__ or exc}") from exc
    except ValueError:  # not JSON: no record the gate wrote
        return None
    return record if isinstance(record, dict) else None


def register_copy(source: RegistryClient, source_uri: str, target: RegistryClient, model: str, version: str,
                  source_stand: str, carried: dict[str, str] | None = None) -> tuple[str, bool]:
    """Register ``version`` of ``source``'s registry on ``target`` (another server): the model's files, the
    run files monitoring reads beside it (reference profile, training data record) and the source stands'
    gate and evaluation records (under ``source/``). The new version is tagged with where it came from and
    with ``carried`` (the evidence the source stand decided on, an audit trail); never with a verdict of its
    own: the receiving stand decides. Idempotent: returns the version already registered from this one, and
    whether it was created now."""
    import mlflow as mlflow_module
    from mlflow.exceptions import MlflowException

    marker = names.source_version_tag(source_stand)
    existing = target.search_model_versions(f"name = '{model}' AND tags.`{marker}` = '{version}'")
    if existing:
        return str(existing[0].version), False
    # MLflow prints run links on stdout; keep stdout for --json.
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp, contextlib.redirect_stdout(sys.stderr):
        local = mlflow_module.artifacts.download_artifacts(
            artifact_uri=source.get_model_version_download_uri(model, version), dst_path=tmp, tracking_uri=source_uri)
        experiment = names.copies_experiment(model)
        exp = target.get_experiment_by_name(experiment)
        experiment_id = exp.experiment_id if exp else target.create_experiment(experiment)
        from mlops_module.release.history import actor

        run = target.create_run(experiment_id, tags={names.RUN_TAG_MODEL: model, names.RUN_TAG_USER: actor(),
                                                     names.RUN_TAG_PROMOTED_FROM: source_stand})
        target.log_artifacts(run.info.run_id, local, names.MODEL_ARTIFACT)
        source_run = source.get_model_version(model, version).run_id
        if source_run:
            present = {f.path for f in source.list_artifacts(source_run)}
            for name in (names.PROFILE_ARTIFACT, names.TRAINING_DATA_ARTIFACT):
                if name in present:
                    target.log_artifact(run.info.run_id, source.download_artifacts(source_run, name, tmp))
            for folder in (names.GATE_FOLDER, names.EVALUATION_FOLDER, names.CARRIED_FOLDER):
                if folder in present:  # the audit trail, every stand's so far, below the copy's source/
                    inside = folder if folder == names.CARRIED_FOLDER else f"{names.CARRIED_FOLDER}/{folder}"
                    target.log_artifacts(run.info.run_id, source.download_artifacts(source_run, folder, tmp), inside)
        target.set_terminated(run.info.run_id)
        with contextlib.suppress(MlflowException):
            target.create_registered_model(model)
        mv = target.create_model_version(model, f"{run.info.artifact_uri}/{names.MODEL_ARTIFACT}", run.info.run_id,
                                         tags={**(carried or {}), marker: version})
    return str(mv.version), True
