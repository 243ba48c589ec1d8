"""The built-in monitoring job, run when ``monitoring.script`` is not set.

Measures data drift of the stand's scored data in the job's window against the reference profile
the champion's training run logged: every profiled feature binned in one Spark pass, PSI, KS and
Jensen-Shannon per feature (:mod:`mlops_module.runtime.drift`). The result goes to an MLflow run tagged
with the Airflow run (``drift.json`` and metrics), where the monitoring DAG's ``decide`` task reads
it; the decision (thresholds, share, minimum rows, guards) is made there, from the config.

Arguments: the standard job arguments, then (rendered from the config) ``--features-json '["a", "b"]'`` and, with
``monitoring.performance``, ``--performance-metric M --id-column C --label-column C --score-column C``:
the metric is computed on the window's scored rows joined with the labels that have arrived in
``labels/<model>/`` of the stand's storage.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from mlops_module import names, runtime
from mlops_module.runtime import drift

PERFORMANCE_METRICS = names.PERFORMANCE_METRICS


def performance(job: runtime.JobContext, spark: Any, current: Any, metric: str, id_column: str, label_column: str,
                score_column: str) -> dict[str, Any] | None:
    """The metric on the window's scored rows that have a label by now (labels/<model>/ in the stand's storage)."""
    from pyspark.sql import functions as F

    if metric not in PERFORMANCE_METRICS:
        print(f"performance: the built-in job computes {', '.join(PERFORMANCE_METRICS)}, not {metric!r}",
              file=sys.stderr)
        return {"metric": metric, "value": None, "rows": 0}
    where = runtime.storage_path(job, names.labels_prefix(job.model))
    try:
        labels = spark.read.parquet(where)
    except Exception as exc:
        if not runtime.missing_path(exc):
            raise
        print(f"performance: no labels under {where} yet", file=sys.stderr)
        return None
    labelled = labels.select(drift.column(id_column).alias("__id"),
                             drift.column(label_column).cast("double").alias("__label")).dropDuplicates(["__id"])
    joined = (current.select(drift.column(id_column).alias("__id"),
                             drift.column(score_column).cast("double").alias("__score"))
              .join(labelled, "__id"))
    y, s = F.col("__label"), F.col("__score")
    p = F.least(F.greatest(s, F.lit(1e-15)), F.lit(1 - 1e-15))
    expression = {"roc_auc": F.lit(None).cast("double"),
                  "accuracy": F.avg(((s >= 0.5).cast("double") == y).cast("double")),
                  "log_loss": F.avg(-(y * F.log(p) + (1 - y) * F.log(1 - p))),
                  "rmse": F.sqrt(F.avg((s - y) * (s - y))),
                  "mae": F.avg(F.abs(s - y))}[metric]
    row = joined.agg(expression.alias("value"), F.count(F.lit(1)).alias("rows"),
                     F.countDistinct(y).alias("classes")).first()
    rows, value = int(row["rows"]), row["value"]
    if metric == "roc_auc":  # undefined with one class (Spark would say 0.0 or 1.0): no value rather than a wrong one
        from pyspark.ml.evaluation import BinaryClassificationEvaluator

        value = BinaryClassificationEvaluator(rawPredictionCol="__score", labelCol="__label",
                                              metricName="areaUnderROC").evaluate(joined) \
            if rows and int(row["classes"]) == 2 else None
    return {"metric": metric, "value": None if value is None else float(value), "rows": rows}


def measure(job: runtime.JobContext, spark: Any, features: list[str]) -> dict[str, Any]:
    """Scores of the window's scored rows against the champion's reference profile."""
    import mlflow
    from mlflow.exceptions import MlflowException

    base = {"model": job.model, "stand": job.stand, "airflow_run_id": job.run_id,
            "window": {"start": job.window_start.isoformat(), "end": job.data_interval_end.isoformat()},
            "method": "psi", "threshold": 0.2, "features": [], "performance": None, "current_rows": 0}
    client = mlflow.MlflowClient(job.tracking_uri)
    try:
        version = str(client.get_model_version_by_alias(job.model, job.stand).version)
    except MlflowException:
        return {**base, "version": None, "reference_rows": 0,
                "note": f"no version of {job.model} holds the {job.stand} alias yet: nothing to compare with"}
    profile = runtime.reference_profile_of(job, version)
    names = features or [*profile["numeric"], *profile["categorical"]]
    try:
        current = runtime.read_predictions(job, spark)
    except Exception as exc:
        if not runtime.missing_path(exc):
            raise
        return {**base, "version": version, "reference_rows": int(profile["rows"]),
                "note": f"nothing scored under {runtime.predictions_path(job)} yet"}
    counts = drift.current_counts(current, profile, names, files=runtime.prediction_files(job, spark))
    scores = drift.compare(profile, counts, "psi", 0.2, names) if counts["rows"] else []
    return {**base, "version": version, "reference_rows": int(profile["rows"]), "current_rows": int(counts["rows"]),
            "features": [s.as_dict() for s in scores]}


def main(argv: list[str] | None = None) -> int:
    job = runtime.context(argv)
    own = argparse.ArgumentParser(prog="mlops-monitoring")
    own.add_argument("--features-json", default="[]", help="JSON list of features to measure (default: all profiled)")
    own.add_argument("--performance-metric", help="measure this metric where labels have arrived")
    own.add_argument("--id-column", default="id")
    own.add_argument("--label-column", default="label")
    own.add_argument("--score-column", default="prediction")
    options = own.parse_args(list(job.args))
    spark = runtime.spark_session(job)
    import mlflow

    with runtime.mlflow_run(job):
        result = measure(job, spark, [str(f) for f in json.loads(options.features_json)])
        if options.performance_metric and result["current_rows"]:
            result["performance"] = performance(job, spark, runtime.read_predictions(job, spark),
                                                options.performance_metric, options.id_column, options.label_column,
                                                options.score_column)
        mlflow.log_dict(result, names.DRIFT_ARTIFACT)
        mlflow.set_tags({names.RUN_TAG_MODEL_VERSION: result["version"],
                         names.RUN_TAG_CURRENT_ROWS: str(result["current_rows"])})
        metrics = {"current_rows": float(result["current_rows"])}
        for f in result["features"]:
            name = re.sub(r"[^A-Za-z0-9_.\-/]", "_", f["name"])  # MLflow's metric name alphabet
            metrics |= {f"drift.{name}.{m}": f[m] for m in ("psi", "ks", "js") if f[m] is not None}
        measured = result["performance"]
        if measured and measured.get("value") is not None:
            metrics[f"performance.{re.sub(r'[^A-Za-z0-9_.-]', '_', measured['metric'])}"] = measured["value"]
        mlflow.log_metrics(metrics)
    print(f"measured drift of {result['current_rows']} rows against version {result['version']}'s training data: "
          + ", ".join(f"{f['name']} PSI {f['psi']:.3g}" for f in result["features"]))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
