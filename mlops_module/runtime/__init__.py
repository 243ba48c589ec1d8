"""What a data scientist's job script imports, so it stays short and the same everywhere.

Every Spark job the toolkit renders gets the same standard arguments (see docs/rendering.md), then
``--`` and the script's own. A script does::

    from mlops_module import runtime

    job = runtime.context()                  # parses sys.argv
    spark = runtime.spark_session(job)
    with runtime.mlflow_run(job):            # tagged with model, stand, job and the Airflow run
        ...                                  # read job.window_start .. job.data_interval_end, train
        version = runtime.log_model(job, model, metrics={"roc_auc": auc})

A stand's evaluate job scores the candidate and the champion on the same rows and records the
paired comparison on the candidate's run (see :mod:`mlops_module.runtime.evaluation`)::

    candidate = runtime.candidate_version(job)
    champion = runtime.champion_version(job, candidate)
    comparison = runtime.compare(y, candidate_scores, champion_scores, ["roc_auc"])
    runtime.log_evaluation(job, candidate, comparison, len(y), champion_version=champion, script="src/eval.py")

The same under spark-submit on this machine and in a SparkApplication on Kubernetes. The code
package carries this folder (and the leaf modules it imports: names, kinds) in ``code.zip``, so jobs
import it without the toolkit being installed in their environment; it needs only the standard library to import, and
pyspark and mlflow when the functions that use them are called.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mlops_module import names
from mlops_module.names import (
    CHAMPION_PREFIX,
    CHAMPION_VERSION_TAG,
    PROFILE_ARTIFACT,
    RUN_TAG_AIRFLOW_RUN,
    RUN_TAG_JOB,
    RUN_TAG_MODEL,
    RUN_TAG_STAND,
    TRAINING_DATA_ARTIFACT,
)
from mlops_module.names import (
    DRIFT_ARTIFACT as DRIFT_ARTIFACT,  # re-exported: job scripts read the artifact names here
)
from mlops_module.names import RETRAIN_REASON_TAG as RUN_TAG_REASON
from mlops_module.runtime.evaluation import METRICS as METRICS  # re-exported: runtime.compare(...) and the rest
from mlops_module.runtime.evaluation import Comparison as Comparison
from mlops_module.runtime.evaluation import Difference as Difference
from mlops_module.runtime.evaluation import applicable as applicable
from mlops_module.runtime.evaluation import candidate_version as candidate_version
from mlops_module.runtime.evaluation import champion_version as champion_version
from mlops_module.runtime.evaluation import compare as compare
from mlops_module.runtime.evaluation import log_evaluation as log_evaluation

MAX_REASON = 5000  # MLflow caps tag values (8000 characters on runs, 5000 on model versions)


@dataclass(frozen=True)
class JobContext:
    """The standard arguments of one job run, parsed and typed."""

    job: str
    model: str
    stand: str
    run_id: str
    data_interval_start: datetime.datetime
    data_interval_end: datetime.datetime
    window_days: int | None
    reason: str
    tracking_uri: str
    storage_uri: str
    args: tuple[str, ...] = field(default_factory=tuple)
    # --model-version: the version an acceptance run checks (evaluate, smoke, load); None: the stand's alias
    model_version: str | None = None

    @property
    def window_start(self) -> datetime.datetime:
        """Start of the data to read: ``data_window.days`` before the interval's end, else the interval's start."""
        if self.window_days is not None:
            return self.data_interval_end - datetime.timedelta(days=self.window_days)
        return self.data_interval_start


class JobArgumentError(ValueError):
    """The job was started without the standard arguments (not by a rendered DAG or `mlops` itself)."""


def _timestamp(text: str, name: str) -> datetime.datetime:
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise JobArgumentError(f"--{name}: {text!r} is not an ISO 8601 timestamp") from exc
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="job", add_help=False, exit_on_error=False)
    for name in ("job", "model", "stand", "run-id", "data-interval-start", "data-interval-end", "tracking-uri",
                 "storage-uri"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--data-window-days", type=int)
    parser.add_argument("--reason", default="")
    parser.add_argument("--model-version", default="")
    return parser


def context(argv: Sequence[str] | None = None) -> JobContext:
    """Parse the standard arguments (``sys.argv[1:]`` by default); the script's own follow ``--``."""
    import sys

    items = list(sys.argv[1:] if argv is None else argv)
    standard, own = (items[: items.index("--")], items[items.index("--") + 1:]) if "--" in items else (items, [])
    try:
        ns, unknown = _parser().parse_known_args(standard)
    except argparse.ArgumentError as exc:
        raise JobArgumentError(str(exc)) from exc
    except SystemExit as exc:  # argparse on a missing required argument, before 3.12's exit_on_error
        raise JobArgumentError("missing standard job arguments (--job, --model, --stand, --run-id, ...)") from exc
    if unknown:
        raise JobArgumentError(f"unknown arguments before '--': {' '.join(unknown)}")
    start = _timestamp(ns.data_interval_start, "data-interval-start")
    end = _timestamp(ns.data_interval_end, "data-interval-end")
    if end < start:
        raise JobArgumentError(f"the data interval ends ({end}) before it starts ({start})")
    return JobContext(ns.job, ns.model, ns.stand, ns.run_id, start, end, ns.data_window_days, ns.reason,
                      ns.tracking_uri, ns.storage_uri, tuple(own), ns.model_version or None)


def missing_path(exc: Exception) -> bool:
    """Spark's "this path does not exist" (nothing written there yet), as opposed to a permission, network or
    format problem: what a job may answer with "nothing to do" rather than fail on."""
    text = str(exc)
    return type(exc).__name__ == "AnalysisException" and ("PATH_NOT_FOUND" in text or "Path does not exist" in text)


def storage_path(job: JobContext, *parts: str) -> str:
    """A path in the stand's storage as Spark reads it (``s3://`` becomes Hadoop's ``s3a://``)."""
    base = job.storage_uri.rstrip("/")
    if base.startswith("s3://"):
        base = "s3a://" + base[len("s3://"):]
    return "/".join([base, *(p.strip("/") for p in parts)])


def data_path(job: JobContext, *parts: str) -> str:
    """The model's input data in the stand's storage (``data/<model>/...``), as Spark reads it."""
    return storage_path(job, names.data_prefix(job.model), *parts)


def record_scoring(version: str, predictions: str, shadow: bool = False) -> None:
    """Tag the active MLflow run with the model version that scored and where its output went
    (``shadow``: a challenger's, beside the champion's)."""
    import mlflow

    if shadow:
        mlflow.set_tags({names.RUN_TAG_SHADOW_VERSION: version, names.RUN_TAG_SHADOW_PREDICTIONS: predictions})
    else:
        mlflow.set_tags({names.RUN_TAG_MODEL_VERSION: version, names.RUN_TAG_PREDICTIONS: predictions})


def spark_session(job: JobContext) -> Any:
    """The job's SparkSession; its name says model, stand and job in the Spark UI and history server."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.appName(f"{job.model}-{job.stand}-{job.job}").getOrCreate()


def run_tags(job: JobContext) -> dict[str, str]:
    accepting = job.job in names.INFERENCE_CHECKS or (job.job == "evaluate" and job.run_id.startswith("accept__"))
    dag = names.ACCEPT if accepting else "train" if job.job == "evaluate" else job.job
    tags = {RUN_TAG_MODEL: job.model, RUN_TAG_STAND: job.stand, RUN_TAG_AIRFLOW_RUN: job.run_id, RUN_TAG_JOB: job.job,
            # the run's "User" in MLflow (a version's "Created by" can't be set): the Airflow run that ran it
            names.RUN_TAG_USER: names.airflow_actor(names.dag_id(job.model, job.stand, dag), job.run_id),
            names.RUN_TAG_DATA_INTERVAL_START: job.data_interval_start.isoformat(),
            names.RUN_TAG_DATA_INTERVAL_END: job.data_interval_end.isoformat(),
            names.RUN_TAG_WINDOW_START: job.window_start.isoformat()}
    if job.reason:
        tags[RUN_TAG_REASON] = job.reason[:MAX_REASON]
    return tags


@contextmanager
def mlflow_run(job: JobContext, experiment: str | None = None) -> Iterator[Any]:
    """An MLflow run in the model's experiment, tagged so the quality gate finds it from the Airflow run."""
    import mlflow

    mlflow.set_tracking_uri(job.tracking_uri)
    mlflow.set_registry_uri(job.tracking_uri)
    mlflow.set_experiment(experiment or job.model)
    with mlflow.start_run(run_name=f"{job.job} {job.run_id}", tags=run_tags(job)) as run:
        yield run


def log_model(job: JobContext, model: Any, metrics: Mapping[str, float] | None = None, flavor: str = "sklearn",
              **kwargs: Any) -> str:
    """Log metrics and the trained model, register it, and return the version this run registered."""
    import importlib

    import mlflow

    if metrics:
        mlflow.log_metrics(dict(metrics))
    module = importlib.import_module(f"mlflow.{flavor}")
    info = module.log_model(model, name="model", registered_model_name=job.model, **kwargs)
    version = str(info.registered_model_version)
    if job.reason:
        mlflow.MlflowClient(job.tracking_uri).set_model_version_tag(job.model, version, RUN_TAG_REASON,
                                                                    job.reason[:MAX_REASON])
    return version


def log_training_data(job: JobContext, uri: str, rows: int, columns: Sequence[str] = ()) -> dict[str, Any]:
    """Record what the model was trained on (the reference the monitoring job compares with).

    Tags on the run (``mlops.training_data.*``) and an artifact ``training_data.json`` holding the
    data's location, the window actually read and its row count.
    """
    import mlflow

    reference = {"uri": uri, "window_start": job.window_start.isoformat(),
                 "window_end": job.data_interval_end.isoformat(), "rows": int(rows), "columns": list(columns)}
    mlflow.set_tags({names.RUN_TAG_TRAINING_DATA_URI: uri, names.RUN_TAG_TRAINING_DATA_ROWS: str(int(rows)),
                     names.RUN_TAG_TRAINING_DATA_WINDOW: f"{reference['window_start']}/{reference['window_end']}"})
    mlflow.log_dict(reference, TRAINING_DATA_ARTIFACT)
    return reference


def log_reference_profile(job: JobContext, df: Any, features: Sequence[str] = ()) -> dict[str, Any]:
    """Profile the training data (one Spark pass, see :mod:`mlops_module.runtime.drift`) and log it beside the
    model as ``reference_profile.json``: what the monitoring job bins the scored data against."""
    import mlflow

    from mlops_module.runtime.drift import profile_to_json, reference_profile

    profile = reference_profile(df, features)
    mlflow.log_dict(profile_to_json(profile), PROFILE_ARTIFACT)
    return profile


def reference_profile_of(job: JobContext, version: str) -> dict[str, Any]:
    """The reference profile the training run of ``version`` logged."""
    import mlflow

    client = mlflow.MlflowClient(job.tracking_uri)
    run_id = str(client.get_model_version(job.model, version).run_id)
    from mlops_module.runtime.drift import profile_from_json

    try:
        return profile_from_json(read_json_artifact(client, run_id, PROFILE_ARTIFACT))
    except LookupError as exc:
        raise LookupError(f"{job.model} version {version} (run {run_id}) has no {PROFILE_ARTIFACT}: its training "
                          "job did not call runtime.log_reference_profile") from exc


def read_json_artifact(client: Any, run_id: str, name: str) -> dict[str, Any]:
    """A JSON artifact of an MLflow run; LookupError when the run has none by that name."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlops-artifact-") as tmp:
        try:
            path = client.download_artifacts(run_id, name, tmp)
        except Exception as exc:
            raise LookupError(f"run {run_id} has no artifact {name}") from exc
        with open(path, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
    return data


def predictions_path(job: JobContext) -> str:
    """Where this model's inference output lives on the stand: one directory per interval below it."""
    return storage_path(job, names.predictions_prefix(job.model, job.stand))


def _stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def prediction_files(job: JobContext, spark: Any) -> Any:
    """The parquet files :func:`read_predictions` reads (the intervals ending inside the window), for the
    drift counting to read with pyarrow in the workers (``drift.ParquetFiles``); ``None`` when pyarrow is not
    in the environment or the listing fails (said on stderr): the counting then takes Spark's rows."""
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        return None
    from mlops_module.runtime import drift

    low, high = _stamp(job.window_start), _stamp(job.data_interval_end)

    def inside(relative: str) -> bool:
        key, _, value = relative.split("/", 1)[0].partition("=")
        return key == "interval_end" and low < value <= high

    try:
        return drift.list_parquet(drift.parquet_files(spark, ()), predictions_path(job), inside)
    except Exception as exc:
        print(f"monitoring: listing {predictions_path(job)} with pyarrow failed ({type(exc).__name__}: "
              f"{str(exc)[:300]}); counting with Spark's rows instead", file=sys.stderr)
        return None




def write_predictions(job: JobContext, df: Any, shadow: bool = False) -> str:
    """Write scored rows to ``predictions/<model>/<stand>/interval_end=<end>/``, replacing what a previous
    try of the same interval wrote (a retry never duplicates rows). Returns the directory.

    ``shadow``: a challenger's output, kept apart under ``shadow/<model>/<stand>/`` (never read as the
    stand's predictions, nor by monitoring), to compare before it is promoted.

    An acceptance check (job ``smoke`` or ``load``: the inference script run on a pushed version) writes
    under ``acceptance/<model>/<stand>/<job>/version=<--model-version, else alias>/`` instead (``.../shadow/``
    below it with ``shadow``): never read by monitoring, never in place of the champion's output.
    """
    if job.job in names.INFERENCE_CHECKS:
        root = "/".join([storage_path(job, names.acceptance_prefix(job.model, job.stand, job.job)),
                         f"version={job.model_version or 'alias'}", *(["shadow"] if shadow else [])])
    else:
        root = storage_path(job, names.shadow_prefix(job.model, job.stand)) if shadow else predictions_path(job)
    out = f"{root}/interval_end={_stamp(job.data_interval_end)}"
    df.write.mode("overwrite").parquet(out)
    if not shadow:
        _record_rows_written(df, out)
    return out


def _record_rows_written(df: Any, out: str) -> None:
    """Tag the active MLflow run with the rows written (a parquet count reads only footers): the inference DAG's
    ``check_output`` task reads it, so a window that scored nothing doesn't end as a plain success."""
    import mlflow

    if mlflow.active_run() is None:
        return
    try:
        mlflow.set_tag(names.RUN_TAG_ROWS_WRITTEN, str(int(df.sparkSession.read.parquet(out).count())))
    except Exception as exc:  # the count is advisory: the predictions are written, the job goes on
        print(f"could not record the rows written to {out} ({type(exc).__name__}: {str(exc)[:200]}); the inference "
              "DAG's check_output task won't know whether the window was empty", file=sys.stderr)


def challenger(job: JobContext) -> str | None:
    """The newest version that passed a quality gate but isn't under this stand's alias yet (and didn't
    fail this stand's gate): what shadow scoring runs beside the champion. None when there is none, and
    always in an acceptance run (``--model-version`` set: it scores that one version, no shadow)."""
    if job.model_version:
        return None
    import mlflow

    client = mlflow.MlflowClient(job.tracking_uri)
    try:
        champion = int(client.get_model_version_by_alias(job.model, job.stand).version)
    except Exception:
        champion = 0
    newer = []
    for v in client.search_model_versions(f"name = '{job.model}'"):
        tags = dict(v.tags or {})
        passed = any(names.is_stand_verdict_tag(k) and value == names.SUCCESS for k, value in tags.items())
        if int(v.version) > champion and passed and tags.get(names.gate_tag(job.stand)) != names.FAILED:
            newer.append(int(v.version))
    return str(max(newer)) if newer else None


def read_predictions(job: JobContext, spark: Any) -> Any:
    """The inference output of the intervals ending inside this job's window (the monitoring job's input)."""
    from pyspark.sql import functions as F

    frame = spark.read.option("basePath", predictions_path(job)).parquet(predictions_path(job))
    return frame.where((F.col("interval_end").cast("string") > _stamp(job.window_start))
                       & (F.col("interval_end").cast("string") <= _stamp(job.data_interval_end)))


def log_champion_scores(version: str, metrics: Mapping[str, float]) -> None:
    """Scores of the stand's champion on this run's evaluation data: what ``min_improvement`` compares."""
    import mlflow

    mlflow.set_tag(CHAMPION_VERSION_TAG, version)
    mlflow.log_metrics({CHAMPION_PREFIX + k: v for k, v in metrics.items()})


def load_model(job: JobContext, flavor: str = "pyfunc", version: str | None = None) -> tuple[Any, str]:
    """The model ``version`` if given, else ``--model-version`` (an acceptance run's), else the version this
    stand's alias points to; and that version (resolved once, so both agree)."""
    import importlib

    import mlflow

    version = version or job.model_version
    if not version:
        version = str(mlflow.MlflowClient(job.tracking_uri).get_model_version_by_alias(job.model, job.stand).version)
    module = importlib.import_module(f"mlflow.{flavor}")
    mlflow.set_tracking_uri(job.tracking_uri)  # artifacts are proxied by the tracking server
    mlflow.set_registry_uri(job.tracking_uri)
    return module.load_model(f"models:/{job.model}/{version}"), version
