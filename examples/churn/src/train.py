"""Training job of the churn example: a scikit-learn pipeline on the job's data window.

Reads ``<storage>/data/<model>/events.parquet`` with Spark, keeps the window the job was given,
trains on 80 %, evaluates on 20 %, scores the stand's champion (if any) on the same 20 %, and logs
and registers the model through the runtime, so the quality gate finds it.
"""

from __future__ import annotations

import argparse
import sys

from mlops_module import runtime


def main(argv: list[str] | None = None) -> int:
    job = runtime.context(argv)
    own = argparse.ArgumentParser(prog="train.py")
    own.add_argument("--max-iter", type=int, default=100)
    options = own.parse_args(list(job.args))

    from pyspark.sql import functions as F
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    spark = runtime.spark_session(job)
    data_uri = job.storage_uri.replace("s3://", "s3a://", 1) + f"/data/{job.model}/events.parquet"
    frame = (spark.read.parquet(data_uri)
             .where((F.col("ts") >= F.lit(job.window_start)) & (F.col("ts") < F.lit(job.data_interval_end)))
             .toPandas())
    if len(frame) < 100:
        print(f"only {len(frame)} rows between {job.window_start} and {job.data_interval_end}", file=sys.stderr)
        return 1
    features = ["tenure", "monthly_charges", "plan"]
    x_train, x_test, y_train, y_test = train_test_split(frame[features], frame["churned"], test_size=0.2,
                                                        random_state=0, stratify=frame["churned"])
    model = Pipeline([
        ("prepare", ColumnTransformer([("numbers", StandardScaler(), ["tenure", "monthly_charges"]),
                                       ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])])),
        ("classify", LogisticRegression(max_iter=options.max_iter)),
    ]).fit(x_train, y_train)
    scores = model.predict_proba(x_test)[:, 1]
    metrics = {"roc_auc": roc_auc_score(y_test, scores), "log_loss": log_loss(y_test, scores), "rows": len(frame)}
    with runtime.mlflow_run(job):
        try:
            champion, version = runtime.load_model(job, flavor="sklearn")
        except Exception:  # no champion on this stand yet
            champion = None
        if champion is not None:
            theirs = champion.predict_proba(x_test)[:, 1]
            runtime.log_champion_scores(version, {"roc_auc": roc_auc_score(y_test, theirs),
                                                  "log_loss": log_loss(y_test, theirs)})
        registered = runtime.log_model(job, model, metrics=metrics)
    print(f"registered {job.model} version {registered}: roc_auc {metrics['roc_auc']:.3f}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
