"""Training job: reads the job's data window, trains, evaluates, registers the model.

The data: ``<stand storage>/data/<model>/`` (parquet with a ``ts`` timestamp, the features and a
``label`` column). With ``--sample-data`` (the local stand's setting in model.yaml) it trains on
generated rows instead, so the scaffold runs before your data exists. Replace ``FEATURES``,
``read_window`` and ``build_model`` with your own; keep the runtime calls, the gate reads them.
"""

from __future__ import annotations

import argparse
import sys

from mlops_module import runtime

FEATURES = ("f1", "f2", "f3", "f4")
LABEL = "label"


def sample_data(rows: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """Generated rows with the features and a label that depends on them (a placeholder for your data)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=list(FEATURES))
    logit = 1.5 * frame["f1"] - frame["f2"] + 0.5 * frame["f3"]
    frame[LABEL] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def build_model():  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=200))


def main(argv: list[str] | None = None) -> int:
    job = runtime.context(argv)
    own = argparse.ArgumentParser(prog="train.py")
    own.add_argument("--sample-data", action="store_true", help="train on generated rows (no data needed)")
    options = own.parse_args(list(job.args))
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    spark = runtime.spark_session(job)
    if options.sample_data:
        source, frame = "generated sample rows", sample_data(5000)
        window = spark.createDataFrame(frame[list(FEATURES)])
    else:
        from pyspark.sql import functions as F

        source = runtime.data_path(job)
        window = (spark.read.parquet(source)
                  .where((F.col("ts") >= F.lit(job.window_start)) & (F.col("ts") < F.lit(job.data_interval_end))))
        frame = window.select(*FEATURES, LABEL).toPandas()
    if len(frame) < 100:
        print(f"only {len(frame)} rows in {source} between {job.window_start} and {job.data_interval_end}",
              file=sys.stderr)
        return 1
    x_train, x_test, y_train, y_test = train_test_split(frame[list(FEATURES)], frame[LABEL], test_size=0.2,
                                                        random_state=0, stratify=frame[LABEL])
    model = build_model().fit(x_train, y_train)
    metrics = {"roc_auc": roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]), "rows": len(frame)}
    with runtime.mlflow_run(job):
        runtime.log_training_data(job, source, len(frame), list(FEATURES))
        runtime.log_reference_profile(job, window.select(*FEATURES))  # what monitoring compares with
        try:
            champion, version = runtime.load_model(job, flavor="sklearn")
        except Exception as exc:  # no champion on this stand yet
            print(f"no champion scored: {exc}", file=sys.stderr)
            champion = None
        if champion is not None:
            theirs = champion.predict_proba(x_test)[:, 1]
            runtime.log_champion_scores(version, {"roc_auc": roc_auc_score(y_test, theirs)})
        registered = runtime.log_model(job, model, metrics=metrics, input_example=x_test.head(3))
    print(f"registered {job.model} version {registered}: roc_auc {metrics['roc_auc']:.3f} on {len(frame)} rows")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
