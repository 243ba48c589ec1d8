"""Inference job of the churn example: scores the data interval's customers with this stand's model.

The model is the version under the stand's alias (resolved once, so every row records the version
that scored it). Scoring runs in Spark (``mapInPandas``: the pipeline goes to the executors, rows
never gather on the driver); predictions go to ``<storage>/predictions/<model>/<stand>/`` in a
directory per interval, overwritten on a retry, so a re-run never duplicates rows.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from mlops_module import runtime


def score_batches(model, version: str, batches: Iterator) -> Iterator:  # type: ignore[no-untyped-def]
    """Add the churn probability and the scoring version to each pandas batch."""
    features = list(model.feature_names_in_)
    for batch in batches:
        batch["churn_probability"] = model.predict_proba(batch[features])[:, 1] if len(batch) else []
        batch["model_version"] = version
        yield batch


def main(argv: list[str] | None = None) -> int:
    job = runtime.context(argv)
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    spark = runtime.spark_session(job)
    data_uri = runtime.storage_path(job, "data", job.model, "events.parquet")
    customers = (spark.read.parquet(data_uri)
                 .where((F.col("ts") >= F.lit(job.data_interval_start)) & (F.col("ts") < F.lit(job.data_interval_end)))
                 .drop("churned"))  # labels arrive later; scoring never sees them
    with runtime.mlflow_run(job) as run:
        try:
            model, version = runtime.load_model(job, flavor="sklearn")
        except Exception as exc:
            print(f"no model to score with: the alias {job.stand!r} of {job.model} resolves to nothing loadable "
                  f"({exc}); promote a version on {job.stand} first", file=sys.stderr)
            return 1
        schema = StructType([*customers.schema.fields, StructField("churn_probability", DoubleType()),
                             StructField("model_version", StringType())])
        stamp = job.data_interval_end.strftime("%Y%m%dT%H%M%SZ")
        out = runtime.storage_path(job, "predictions", job.model, job.stand, f"interval_end={stamp}")
        customers.mapInPandas(lambda it: score_batches(model, version, it), schema).write.mode("overwrite").parquet(out)
        written = spark.read.parquet(out)
        rows = written.count()
        mean = written.agg(F.avg("churn_probability")).first()[0] if rows else None
        import mlflow

        mlflow.set_tags({"mlops.model_version": version, "mlops.predictions": out})
        mlflow.log_metrics({"rows_scored": rows, **({"mean_churn_probability": mean} if mean is not None else {})})
    print(f"scored {rows} rows with {job.model} version {version} (run {run.info.run_id}) into {out}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
