"""Inference job: scores the data interval's rows with the model under this stand's alias.

Reads ``<stand storage>/data/<model>/`` (the features, a ``ts`` timestamp, an ``id``), scores in
Spark (``mapInPandas``: the model goes to the executors) and writes the result with
``runtime.write_predictions``, where the built-in monitoring job finds it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from mlops_module import runtime

FEATURES = ("f1", "f2", "f3", "f4")


def score_batches(model, version: str, batches: Iterator) -> Iterator:  # type: ignore[no-untyped-def]
    """Add the score and the scoring version to each pandas batch."""
    for batch in batches:
        batch["prediction"] = model.predict_proba(batch[list(FEATURES)])[:, 1] if len(batch) else []
        batch["model_version"] = version
        yield batch


def main(argv: list[str] | None = None) -> int:
    job = runtime.context(argv)
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    spark = runtime.spark_session(job)
    rows = (spark.read.parquet(runtime.data_path(job))
            .where((F.col("ts") >= F.lit(job.data_interval_start)) & (F.col("ts") < F.lit(job.data_interval_end)))
            .drop("label"))
    try:
        model, version = runtime.load_model(job, flavor="sklearn")
    except Exception as exc:
        print(f"no model to score with on {job.stand} ({exc}): promote a version there first", file=sys.stderr)
        return 1
    with runtime.mlflow_run(job):
        schema = StructType([*rows.schema.fields, StructField("prediction", DoubleType()),
                             StructField("model_version", StringType())])
        out = runtime.write_predictions(job, rows.mapInPandas(lambda b: score_batches(model, version, b), schema))
    print(f"scored {job.model} version {version} into {out}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
