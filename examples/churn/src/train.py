"""Training job of the churn example: a scikit-learn pipeline on the job's data window.

Reads ``<storage>/data/<model>/events.parquet`` with Spark, keeps the window the job was given,
trains on 80 %, evaluates on 20 %, scores the stand's champion (if any) on the same 20 %, and logs
and registers the model through the runtime, so the quality gate finds it.
"""

from __future__ import annotations

import argparse
import sys

from mlops_module import runtime

FEATURES = ("tenure", "monthly_charges", "plan")
CATEGORICAL = ("plan",)


def build_model(features: list[str], max_iter: int):  # type: ignore[no-untyped-def]
    """Scaling for numbers, one-hot for the plan, logistic regression on top."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = [f for f in features if f not in CATEGORICAL]
    categories = [f for f in features if f in CATEGORICAL]
    steps = [("numbers", StandardScaler(), numbers)] if numbers else []
    if categories:
        steps.append(("categories", OneHotEncoder(handle_unknown="ignore"), categories))
    return Pipeline([("prepare", ColumnTransformer(steps)), ("classify", LogisticRegression(max_iter=max_iter))])


def main(argv: list[str] | None = None) -> int:
    job = runtime.context(argv)
    own = argparse.ArgumentParser(prog="train.py")
    own.add_argument("--max-iter", type=int, default=100)
    own.add_argument("--features", default=",".join(FEATURES),
                     help="comma-separated subset of " + ", ".join(FEATURES))
    options = own.parse_args(list(job.args))
    features = [f.strip() for f in options.features.split(",") if f.strip()]
    unknown = sorted(set(features) - set(FEATURES))
    if unknown or not features:
        own.error(f"--features: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(FEATURES)}")

    from pyspark.sql import functions as F
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import train_test_split

    spark = runtime.spark_session(job)
    data_uri = runtime.data_path(job, "events.parquet")
    window = (spark.read.parquet(data_uri)
              .where((F.col("ts") >= F.lit(job.window_start)) & (F.col("ts") < F.lit(job.data_interval_end))))
    frame = window.toPandas()
    if len(frame) < 100:
        print(f"only {len(frame)} rows between {job.window_start} and {job.data_interval_end} in {data_uri}",
              file=sys.stderr)
        return 1
    x_train, x_test, y_train, y_test = train_test_split(frame[list(FEATURES)], frame["churned"], test_size=0.2,
                                                        random_state=0, stratify=frame["churned"])
    model = build_model(features, options.max_iter).fit(x_train, y_train)
    scores = model.predict_proba(x_test)[:, 1]
    metrics = {"roc_auc": roc_auc_score(y_test, scores), "log_loss": log_loss(y_test, scores), "rows": len(frame)}
    with runtime.mlflow_run(job):
        runtime.log_training_data(job, data_uri, len(frame), features)
        runtime.log_reference_profile(job, window.select(*FEATURES))  # what monitoring compares scored data with
        try:
            champion, version = runtime.load_model(job, flavor="sklearn")
        except Exception as exc:  # no champion on this stand yet (or it can't be loaded: the gate says so)
            print(f"no champion scored: {exc}", file=sys.stderr)
            champion = None
        theirs = None
        if champion is not None:
            theirs = champion.predict_proba(x_test)[:, 1]
            runtime.log_champion_scores(version, {"roc_auc": roc_auc_score(y_test, theirs),
                                                  "log_loss": log_loss(y_test, theirs)})
        registered = runtime.log_model(job, model, metrics=metrics, input_example=x_test.head(3))  # + signature
        # Both models on the same test rows, with a paired bootstrap interval of the difference: the gate decides
        # "beats the champion" on it, so a retrain that ties the champion doesn't fail on noise.
        comparison = runtime.compare(y_test.to_numpy(), scores, theirs, metrics=("roc_auc", "log_loss"))
        runtime.log_evaluation(job, registered, comparison, rows=len(y_test),
                               champion_version=version if champion is not None else None, script="src/train.py")
    print(f"registered {job.model} version {registered}: roc_auc {metrics['roc_auc']:.3f} "
          f"on {len(frame)} rows, features {', '.join(features)}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
