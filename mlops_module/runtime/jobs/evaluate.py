"""The built-in evaluate job, run when ``quality_gate.script`` is not set.

Scores the candidate version and the stand's champion (the version under the alias named after the
stand) on the same rows of the stand's data in the job's window, compares them with a paired
bootstrap (:func:`mlops_module.runtime.evaluation.compare`) and writes the result onto the
candidate's training run in the stand's registry (``evaluation/<stand>.json`` and
``evaluation.<stand>.*`` metrics), where the stand's quality gate reads it.

The candidate is ``--model-version`` (an acceptance run names the pushed version), else the version
this Airflow run's train job registered. Each model scores with ``predict_proba(X)[:, 1]`` when it
has the sklearn flavor and a ``predict_proba``, else with its pyfunc ``predict``; its features are the
input columns of its signature, else the sklearn model's ``feature_names_in_``, else every column but
the label and the time.

Scoring happens on the driver: the window's rows (the needed columns only) are collected as pandas,
at most ``--max-rows`` of them (1,000,000 by default; more fails the job with a message rather than
the driver's memory). An evaluation window is meant to be that size: narrow ``data_window`` or write
a ``quality_gate.script`` to score in Spark for more.

Arguments: the standard job arguments, then after ``--``: ``--data`` (path below ``data/<model>/`` of
the stand's storage, parquet; default ``events.parquet``), ``--label-column`` (``label``),
``--time-column`` (``ts``: rows in [window start, interval end) when the column exists),
``--metrics-json`` (a JSON list of metric names; default every built-in metric that applies to the
labels and scores), ``--samples`` (1000), ``--confidence`` (0.95), ``--seed`` (0), ``--max-rows``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from mlops_module import runtime
from mlops_module.runtime import drift

MAX_ROWS = 1_000_000


def scorer(job: runtime.JobContext, version: str) -> tuple[Callable[[Any], Any], list[str] | None]:
    """How version ``version`` scores a pandas frame (one score per row), and the feature columns it
    wants (None: every column but the label and the time)."""
    import mlflow
    import numpy as np

    mlflow.set_tracking_uri(job.tracking_uri)
    mlflow.set_registry_uri(job.tracking_uri)
    # The MLmodel file itself, not get_model_info: a version pushed from another stand's registry names a
    # LoggedModel (model_id) that lives on that other server only.
    info = mlflow.models.Model.load(f"models:/{job.model}/{version}")
    signature = info.signature
    features = (list(signature.inputs.input_names())
                if signature is not None and signature.inputs is not None and signature.inputs.has_input_names()
                else None)
    if "sklearn" in info.flavors:
        model, _ = runtime.load_model(job, "sklearn", version)
        if features is None and hasattr(model, "feature_names_in_"):
            features = [str(f) for f in model.feature_names_in_]
        if hasattr(model, "predict_proba"):
            def probability(frame: Any) -> Any:
                proba = np.asarray(model.predict_proba(frame), dtype="float64")
                if proba.ndim != 2 or proba.shape[1] != 2:
                    raise ValueError(f"version {version}'s predict_proba gives {proba.shape[1:]} columns per row, "
                                     "not two (a binary classifier): evaluate it with a quality_gate.script")
                return proba[:, 1]

            return probability, features
    pyfunc, _ = runtime.load_model(job, "pyfunc", version)

    def predict(frame: Any) -> Any:
        out = np.asarray(pyfunc.predict(frame), dtype="float64")
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 1:
            raise ValueError(f"version {version}'s predict gives {out.shape[1:]} values per row, not one: "
                             "evaluate it with a quality_gate.script")
        return out

    return predict, features


def _options(args: list[str]) -> argparse.Namespace:
    own = argparse.ArgumentParser(prog="mlops-evaluate")
    own.add_argument("--data", default="events.parquet", help="parquet path below data/<model>/ in the stand's storage")
    own.add_argument("--label-column", default="label")
    own.add_argument("--time-column", default="ts", help="keep rows in [window start, interval end) when it exists")
    own.add_argument("--metrics-json", default="", help="JSON list of metrics (default: every built-in that applies)")
    own.add_argument("--samples", type=int, default=1000, help="bootstrap replicates")
    own.add_argument("--confidence", type=float, default=0.95)
    own.add_argument("--seed", type=int, default=0)
    own.add_argument("--max-rows", type=int, default=MAX_ROWS, help="rows collected to the driver at most")
    return own.parse_args(args)


def _metrics(text: str) -> list[str] | str:
    """The requested metric names, or what is wrong with them."""
    if not text:
        return []
    try:
        wanted = json.loads(text)
    except ValueError as exc:
        return f"--metrics-json {text!r} is not JSON: {exc}"
    if not isinstance(wanted, list) or not all(isinstance(m, str) for m in wanted):
        return f"--metrics-json {text!r}: a JSON list of metric names, like [\"roc_auc\"]"
    unknown = [m for m in wanted if m not in runtime.METRICS]
    if unknown:
        return (f"the built-in evaluate job computes {', '.join(runtime.METRICS)}, not {', '.join(unknown)}: "
                "set quality_gate.script to a script of yours that computes them (with runtime.compare and "
                "runtime.log_evaluation)")
    return wanted


def _summary(name: str, record: dict[str, Any]) -> str:
    def f(value: float | None, sign: str = "") -> str:
        return "n/a" if value is None else format(value, f"{sign}.4f")

    text = f"{name} {f(record['metrics'][name])}"
    if name in record["differences"]:
        d = record["differences"][name]
        text += (f" (champion {f(record['champion_metrics'][name])}, difference {f(d['value'], '+')} "
                 f"[{f(d['low'], '+')}, {f(d['high'], '+')}])")
    return text


def main(argv: list[str] | None = None) -> int:
    job = runtime.context(argv)
    options = _options(list(job.args))
    wanted = _metrics(options.metrics_json)
    if isinstance(wanted, str):
        print(wanted, file=sys.stderr)
        return 1
    try:
        candidate = runtime.candidate_version(job)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 1
    champion = runtime.champion_version(job, candidate)
    import numpy as np
    from pyspark.sql import functions as F

    spark = runtime.spark_session(job)
    try:
        path = runtime.data_path(job, options.data)
        window = f"[{job.window_start.isoformat()}, {job.data_interval_end.isoformat()})"
        try:
            data = spark.read.parquet(path)
        except Exception as exc:
            if not runtime.missing_path(exc):
                raise
            print(f"no data at {path}: nothing to evaluate {job.model} version {candidate} on", file=sys.stderr)
            return 1
        label, time = options.label_column, options.time_column
        if label not in data.columns:
            print(f"no label column {label!r} in {path} (it has {', '.join(data.columns)}): pass --label-column",
                  file=sys.stderr)
            return 1
        if time in data.columns:
            data = data.where((drift.column(time) >= F.lit(job.window_start))
                              & (drift.column(time) < F.lit(job.data_interval_end)))
        data = data.where(drift.column(label).isNotNull())
        versions = [candidate, *([champion] if champion else [])]
        scorers = {v: scorer(job, v) for v in versions}
        rest = [c for c in data.columns if c not in (label, time)]
        needed = list(dict.fromkeys(c for _, features in scorers.values() for c in (features or rest)))
        missing = [c for c in needed if c not in data.columns]
        if missing:
            print(f"{path} has no column {', '.join(missing)}, which the models' signatures ask for", file=sys.stderr)
            return 1
        columns = list(dict.fromkeys([*needed, label]))
        frame = data.select(*[drift.column(c) for c in columns]).limit(options.max_rows + 1).toPandas()
        if len(frame) > options.max_rows:
            print(f"more than {options.max_rows} labelled rows in {path} within {window}: the built-in job scores "
                  "on the driver; raise --max-rows (and the driver's memory), narrow data_window, or score in "
                  "Spark with a quality_gate.script", file=sys.stderr)
            return 1
        if frame.empty:
            print(f"no labelled rows in {path} within {window} (column {time!r}): nothing to evaluate "
                  f"{job.model} version {candidate} on", file=sys.stderr)
            return 1
        try:
            y = frame[label].astype("float64").to_numpy()
        except (TypeError, ValueError):
            print(f"label column {label!r} is not numeric ({frame[label].dtype}): the built-in job needs 0/1 labels "
                  "or numbers; set quality_gate.script for others", file=sys.stderr)
            return 1
        scores = {v: np.asarray(score(frame[features or rest]), dtype="float64")
                  for v, (score, features) in scorers.items()}
        ours, theirs = scores[candidate], scores.get(champion) if champion else None
        metrics = wanted or list(runtime.applicable(y, *scores.values()))
        comparison = runtime.compare(y, ours, theirs, metrics, samples=options.samples,
                                     confidence=options.confidence, seed=options.seed)
        record = runtime.log_evaluation(job, candidate, comparison, len(frame), champion_version=champion,
                                        script="builtin")
    finally:
        spark.stop()
    against = f"champion version {champion}" if champion else "no champion"
    print(f"evaluated {job.model} version {candidate} against {against} on {len(frame)} rows of {path} {window}: "
          + "; ".join(_summary(m, record) for m in metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
