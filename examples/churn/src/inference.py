"""Inference job of the churn example: scores the data interval's customers with this stand's model.

The rows are those of the job's window (``job.window_start`` .. ``job.data_interval_end``): the data interval,
or for an acceptance run's smoke and load checks, their configured number of days up to the run.

The model is the version under the stand's alias (resolved once, so every row records the version
that scored it). Scoring runs in Spark (``mapInPandas``: the pipeline goes to the executors, rows
never gather on the driver); ``runtime.write_predictions`` puts them in
``<storage>/predictions/<model>/<stand>/interval_end=<end>/``, overwritten on a retry (a re-run never
duplicates rows), where the built-in monitoring job reads the window's scored inputs. With
``--shadow`` a challenger (a newer version that passed its gate, not yet on this stand) scores the
same rows too, into ``shadow/<model>/<stand>/``, apart from the champion's output.
"""

from __future__ import annotations

import argparse
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
    own = argparse.ArgumentParser(prog="inference.py")
    own.add_argument("--shadow", action="store_true",
                     help="also score with a newer version that passed its gate but isn't on this stand yet")
    options = own.parse_args(list(job.args))
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    spark = runtime.spark_session(job)
    data_uri = runtime.data_path(job, "events.parquet")
    customers = (spark.read.parquet(data_uri)
                 .where((F.col("ts") >= F.lit(job.window_start)) & (F.col("ts") < F.lit(job.data_interval_end)))
                 .drop("churned"))  # labels arrive later; scoring never sees them
    try:
        model, version = runtime.load_model(job, flavor="sklearn")
    except Exception as exc:
        print(f"no model to score with: the alias {job.stand!r} of {job.model} resolves to nothing loadable "
              f"({exc}); promote a version on {job.stand} first", file=sys.stderr)
        return 1
    with runtime.mlflow_run(job) as run:
        schema = StructType([*customers.schema.fields, StructField("churn_probability", DoubleType()),
                             StructField("model_version", StringType())])
        scored = customers.mapInPandas(lambda batches: score_batches(model, version, batches), schema)
        out = runtime.write_predictions(job, scored)
        written = spark.read.parquet(out)
        rows = written.count()
        mean = written.agg(F.avg("churn_probability")).first()[0] if rows else None
        runtime.record_scoring(version, out)
        challenger = runtime.challenger(job) if options.shadow else None
        if challenger:  # shadow scoring: the challenger's output kept apart, for comparison before promotion
            other, _ = runtime.load_model(job, flavor="sklearn", version=challenger)
            shadow = runtime.write_predictions(
                job, customers.mapInPandas(lambda batches: score_batches(other, challenger, batches), schema),
                shadow=True)
            runtime.record_scoring(challenger, shadow, shadow=True)
            print(f"shadow: scored the same rows with challenger version {challenger} into {shadow}")
        import mlflow

        mlflow.log_metrics({"rows_scored": rows, **({"mean_churn_probability": mean} if mean is not None else {})})
    print(f"scored {rows} rows with {job.model} version {version} (run {run.info.run_id}) into {out}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
