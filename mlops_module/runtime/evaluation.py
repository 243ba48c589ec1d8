"""Candidate against champion on the same rows: metrics, paired bootstrap differences, the evaluation record.

What a stand's evaluate job (the built-in ``_mlops/evaluate.py`` or a data scientist's
``quality_gate.script``) calls after scoring both versions on the same rows of its window::

    candidate = runtime.candidate_version(job)             # --model-version, else what this run's train registered
    champion = runtime.champion_version(job, candidate)    # the stand's alias holder, None if none (or the same)
    ...                                                     # score both on the same rows: y, ours, theirs
    comparison = runtime.compare(y, ours, theirs, ["roc_auc", "log_loss"])
    runtime.log_evaluation(job, candidate, comparison, len(y), champion_version=champion, script="src/eval.py")

The record lands on the candidate's training run in the stand's registry as
``evaluation/<stand>.json`` (and as ``evaluation.<stand>.*`` run metrics), where the stand's quality
gate reads it.

The metrics are plain numpy (equal to scikit-learn's: ``roc_auc_score`` with tied scores,
``log_loss`` with its clipping, ``accuracy_score`` of probabilities thresholded at 0.5,
``mean_squared_error`` rooted, ``mean_absolute_error``). The bootstrap is paired: each replicate
draws one set of row indices (with replacement) and both models are scored on it, so the interval is
that of the difference itself, not of two independent estimates. Replicates are batched: the draws
become a count matrix (replicates x rows); the mean-type metrics are one matrix product with the
per-row losses, the AUC one pass over each model's rows sorted once (integer counts, exact).

Imported from the code package: standard library only at import (numpy inside the functions).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_module import names

if TYPE_CHECKING:
    from mlops_module.runtime import JobContext

EPSILON = 2.220446049250313e-16  # float64's machine epsilon: scikit-learn clips log_loss's probabilities to it
THRESHOLD = 0.5  # accuracy: probabilities at or above it count as the positive class (as the monitoring job)
BATCH_CELLS = 500_000  # replicates x rows drawn at once: a few 4 MB arrays, cache-sized (faster than bigger batches)


# --- metrics (numpy) -------------------------------------------------------------------------


def _arrays(y_true: Any, scores: Any) -> tuple[Any, Any]:
    import numpy as np

    y = np.asarray(y_true, dtype="float64").ravel()
    s = np.asarray(scores, dtype="float64").ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    return y, s


def _labels(scores: Any) -> Any:
    """Scores as 0/1 predictions: as they are when they already are labels, else thresholded at 0.5."""
    import numpy as np

    if np.all((scores == 0.0) | (scores == 1.0)):
        return scores
    return (scores >= THRESHOLD).astype("float64")


def _row_losses(metric: str, y: Any, s: Any) -> Any:
    """Per-row terms whose mean is the metric (``rmse``: the squared errors, rooted afterwards)."""
    import numpy as np

    if metric == "accuracy":
        return (_labels(s) == (y >= THRESHOLD)).astype("float64")
    if metric == "log_loss":  # scikit-learn clips each class's probability to [eps, 1 - eps]
        p1 = np.clip(s, EPSILON, 1 - EPSILON)
        p0 = np.clip(1 - s, EPSILON, 1 - EPSILON)
        return -(y * np.log(p1) + (1 - y) * np.log(p0))
    if metric == "rmse":
        return (s - y) ** 2
    if metric == "mae":
        return np.abs(s - y)
    raise KeyError(metric)


def _mean_metric(metric: str) -> Callable[[Any, Any], float]:
    def value(y_true: Any, scores: Any) -> float:
        y, s = _arrays(y_true, scores)
        if not y.size:
            return math.nan
        mean = float(_row_losses(metric, y, s).mean())
        return math.sqrt(mean) if metric == "rmse" else mean

    value.__name__ = metric
    value.__doc__ = f"{metric} of ``scores`` against ``y_true`` (NaN without rows)."
    return value


def _auc_ranking(y: Any, s: Any) -> tuple[Any, Any, Any, Any]:
    """What the AUC of any resample of these rows needs, computed once: the positive rows, the negative rows
    in score order, and for each positive how many of those negatives score below it (``lo``) and at or below
    it (``hi``): the U statistic of a resample weighting row ``i`` by ``c[i]`` is
    ``sum over positives of c[i] * (N(< s_i) + N(<= s_i)) / 2``, ties counted half as in scikit-learn."""
    import numpy as np

    positive = y >= THRESHOLD
    pos_rows = np.flatnonzero(positive)
    neg_rows = np.flatnonzero(~positive)
    neg_order = neg_rows[np.argsort(s[neg_rows], kind="stable")]
    ranked = s[neg_order]
    return (pos_rows, neg_order, np.searchsorted(ranked, s[pos_rows], side="left"),
            np.searchsorted(ranked, s[pos_rows], side="right"))


def _auc_twice_u(counts: Any, ranking: tuple[Any, Any, Any, Any], drawn_positives: Any = None) -> Any:
    """Twice the Mann-Whitney U of each row of ``counts`` (replicates x rows: how often each row was drawn),
    in integers, so exact: one prefix sum over the negatives per replicate, never a sort."""
    import numpy as np

    pos_rows, neg_order, lo, hi = ranking
    below = np.zeros((counts.shape[0], neg_order.size + 1), dtype=counts.dtype)
    np.cumsum(np.take(counts, neg_order, axis=1), axis=1, out=below[:, 1:])  # drawn negatives up to each rank
    if drawn_positives is None:
        drawn_positives = np.take(counts, pos_rows, axis=1)
    return np.einsum("ij,ij->i", drawn_positives, np.take(below, lo, axis=1) + np.take(below, hi, axis=1))


def roc_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve, rank-based with tied scores counted half (scikit-learn's ``roc_auc_score``
    for binary labels); NaN when the labels hold one class only (scikit-learn raises)."""
    import numpy as np

    y, s = _arrays(y_true, scores)
    ranking = _auc_ranking(y, s)
    p = int(ranking[0].size)
    q = int(y.size) - p
    if not p or not q:
        return math.nan
    twice_u = int(_auc_twice_u(np.ones((1, y.size), dtype="int64"), ranking)[0])
    return twice_u / (2.0 * p * q)


# name -> (function(y_true, scores) -> float, higher is better): exactly names.PERFORMANCE_METRICS
METRICS: dict[str, tuple[Callable[[Any, Any], float], bool]] = {
    "roc_auc": (roc_auc, True),
    "accuracy": (_mean_metric("accuracy"), True),
    "log_loss": (_mean_metric("log_loss"), False),
    "rmse": (_mean_metric("rmse"), False),
    "mae": (_mean_metric("mae"), False),
}


def applicable(y_true: Any, *scores: Any) -> tuple[str, ...]:
    """The metrics that mean something for these labels and scores: with 0/1 labels ``roc_auc`` (when both
    classes are present), ``accuracy`` and ``log_loss`` (when every score is a probability, in [0, 1]),
    ``rmse`` and ``mae``; with other labels (a regression) ``rmse`` and ``mae``."""
    import numpy as np

    y = np.asarray(y_true, dtype="float64").ravel()
    if not y.size or not np.all((y == 0.0) | (y == 1.0)):
        return ("rmse", "mae")
    both = 0 < int(y.sum()) < y.size
    probabilities = all(bool(np.all((np.asarray(s) >= 0) & (np.asarray(s) <= 1))) for s in scores)
    wanted = {"roc_auc": both, "accuracy": probabilities, "log_loss": probabilities, "rmse": True, "mae": True}
    return tuple(m for m in METRICS if wanted[m])


# --- the comparison --------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """Candidate minus champion, and the bootstrap's percentile interval around it."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` measured. Non-finite values (a metric undefined here, an interval without
    replicates) are NaN here and ``None`` in :meth:`as_dict`."""

    metrics: dict[str, float]  # the candidate's
    champion: dict[str, float] = field(default_factory=dict)  # empty without champion scores
    differences: dict[str, Difference] = field(default_factory=dict)
    rows: int = 0
    samples: int = 0
    confidence: float = 0.95
    seed: int = 0
    replicates: dict[str, int] = field(default_factory=dict)  # bootstrap replicates used (roc_auc skips some)

    def as_dict(self) -> dict[str, Any]:
        return {"metrics": {k: finite(v) for k, v in self.metrics.items()},
                "champion_metrics": {k: finite(v) for k, v in self.champion.items()},
                "differences": {k: {"value": finite(d.value), "low": finite(d.low), "high": finite(d.high)}
                                for k, d in self.differences.items()},
                "rows": self.rows, "samples": self.samples, "confidence": self.confidence, "seed": self.seed,
                "replicates": dict(self.replicates)}


def finite(value: float | None) -> float | None:
    """The value as JSON has it: None when missing, NaN or infinite."""
    return float(value) if value is not None and math.isfinite(value) else None


def compare(y_true: Any, candidate_scores: Any, champion_scores: Any = None,
            metrics: Sequence[str] = names.PERFORMANCE_METRICS, *, samples: int = 1000, confidence: float = 0.95,
            seed: int = 0) -> Comparison:
    """The candidate's metrics, the champion's on the same rows (when its scores are given), and for each
    metric the paired difference candidate - champion with a percentile confidence interval.

    The bootstrap draws ``samples`` replicates of the rows with replacement from
    ``numpy.random.default_rng(seed)``; each replicate scores both models on the same drawn rows, so
    the same seed gives the same interval (whatever the batch size: the draws are one stream).
    Replicates whose rows hold one class only have no AUC: they are skipped for ``roc_auc``
    (``replicates`` says how many were used); the other metrics use every replicate. Without champion
    scores there are no differences (and no bootstrap). ``samples=0`` gives the differences without an
    interval (NaN bounds).

    Cost: about ``samples x rows`` counts, drawn ``BATCH_CELLS`` at a time; 1000 replicates of 100k rows
    take seconds for ``roc_auc`` (the rows are sorted once per model, never per replicate).
    """
    import numpy as np

    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {', '.join(unknown)}: the built-in ones are {', '.join(METRICS)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence}: between 0 and 1 (0.95 for a 95 % interval)")
    if samples < 0:
        raise ValueError(f"samples {samples}: 0 or more")
    y, ours = _arrays(y_true, candidate_scores)
    chosen = list(dict.fromkeys(metrics))
    candidate = {m: METRICS[m][0](y, ours) for m in chosen}
    if champion_scores is None:
        return Comparison(candidate, rows=int(y.size), samples=samples, confidence=confidence, seed=seed)
    _, theirs = _arrays(y, champion_scores)
    champion = {m: METRICS[m][0](y, theirs) for m in chosen}
    replicates = _bootstrap(y, ours, theirs, chosen, samples, seed) if samples and y.size else {
        m: np.empty(0) for m in chosen}
    tail = (1 - confidence) / 2 * 100
    differences, used = {}, {}
    for m in chosen:
        values = replicates[m][np.isfinite(replicates[m])]
        low = high = math.nan
        if values.size:
            low, high = (float(v) for v in np.percentile(values, [tail, 100 - tail]))
        differences[m] = Difference(candidate[m] - champion[m], low, high)
        used[m] = int(values.size)
    return Comparison(candidate, champion, differences, int(y.size), samples, confidence, seed, used)


def _bootstrap(y: Any, ours: Any, theirs: Any, metrics: list[str], samples: int, seed: int) -> dict[str, Any]:
    """Candidate - champion for each metric on each replicate (NaN where a replicate has no value)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = y.size
    batch = max(1, min(samples, BATCH_CELLS // n))
    out = {m: np.empty(samples) for m in metrics}
    mean_metrics = [m for m in metrics if m != "roc_auc"]
    # Per-row differences (and, for rmse, both sides): identical models give exactly 0.
    columns: list[Any] = []
    for m in mean_metrics:
        first, second = _row_losses(m, y, ours), _row_losses(m, y, theirs)
        columns += [first - second, first, second] if m == "rmse" else [first - second]
    losses = np.stack(columns, axis=1) if columns else None
    rankings = [_auc_ranking(y, s) for s in (ours, theirs)] if "roc_auc" in metrics else []
    offsets = (np.arange(batch) * n)[:, None]
    done = 0
    while done < samples:
        b = min(batch, samples - done)
        drawn = rng.integers(0, n, size=(b, n))
        drawn += offsets[:b]
        counts = np.bincount(drawn.ravel(), minlength=b * n).reshape(b, n)  # times each row was drawn
        del drawn
        if losses is not None:
            means = (counts @ losses) / n  # one matrix product for every mean-type metric
            j = 0
            for m in mean_metrics:
                if m == "rmse":  # sqrt(a) - sqrt(b) as (a - b) / (sqrt(a) + sqrt(b)): 0 when the rows agree
                    root = np.sqrt(means[:, j + 1]) + np.sqrt(means[:, j + 2])
                    out[m][done:done + b] = np.where(root > 0, means[:, j] / np.where(root > 0, root, 1.0), 0.0)
                    j += 3
                else:
                    out[m][done:done + b] = means[:, j]
                    j += 1
        if rankings:
            drawn_positives = np.take(counts, rankings[0][0], axis=1)  # the same rows for both models
            p = drawn_positives.sum(axis=1)
            q = n - p  # every replicate draws n rows
            ours_u, theirs_u = (_auc_twice_u(counts, r, drawn_positives) for r in rankings)
            with np.errstate(divide="ignore", invalid="ignore"):
                auc = (ours_u - theirs_u) / (2.0 * p * q)
            out["roc_auc"][done:done + b] = np.where((p > 0) & (q > 0), auc, np.nan)
        done += b
    return out


# --- which versions ----------------------------------------------------------------------------


def _client(job: JobContext) -> Any:
    import mlflow

    return mlflow.MlflowClient(job.tracking_uri, registry_uri=job.tracking_uri)


def candidate_version(job: JobContext) -> str:
    """The version to evaluate: ``--model-version`` when given (an acceptance run names the pushed version),
    else the version this Airflow run's train job registered (its MLflow run is tagged with the model, the
    stand, the Airflow run id and job ``train``). LookupError when there is none."""
    if job.model_version:
        return job.model_version
    if "'" in job.run_id:
        raise LookupError(f"Airflow run id {job.run_id!r} contains a quote; Airflow's run ids don't")
    client = _client(job)
    experiment = client.get_experiment_by_name(job.model)  # the runtime logs into the model's experiment
    runs = [] if experiment is None else client.search_runs(
        [experiment.experiment_id],
        filter_string=(f"tags.`{names.RUN_TAG_MODEL}` = '{job.model}' AND tags.`{names.RUN_TAG_STAND}` = "
                       f"'{job.stand}' AND tags.`{names.RUN_TAG_AIRFLOW_RUN}` = '{job.run_id}' AND "
                       f"tags.`{names.RUN_TAG_JOB}` = 'train' AND attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=10)
    if not runs:
        raise LookupError(f"no --model-version given and no finished MLflow run of {job.model}'s train job on "
                          f"stand {job.stand} is tagged with Airflow run {job.run_id!r}: nothing to evaluate")
    run_id = str(runs[0].info.run_id)  # a retried task may have logged several: the newest finished one
    found = client.search_model_versions(f"name = '{job.model}' AND run_id = '{run_id}'")
    if len(found) != 1:
        raise LookupError(f"the train run {run_id} of Airflow run {job.run_id!r} registered "
                          f"{len(found) or 'no'} versions of {job.model}; pass --model-version")
    return str(found[0].version)


def champion_version(job: JobContext, candidate: str | None = None) -> str | None:
    """The version under the stand's alias: what the candidate is compared with. None when no version
    holds the alias yet, or when the candidate itself does (nothing to compare with)."""
    from mlflow.exceptions import MlflowException

    try:
        version = str(_client(job).get_model_version_by_alias(job.model, job.stand).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None  # no such model or alias; anything else (the server unreachable) is raised
        raise
    return None if candidate is not None and version == str(candidate) else version


# --- the record --------------------------------------------------------------------------------


def log_evaluation(job: JobContext, version: str, comparison: Comparison, rows: int, *,
                   champion_version: str | None = None, script: str = "builtin") -> dict[str, Any]:
    """Write the evaluation onto the candidate's training run (the run of model version ``version`` in the
    stand's registry): the artifact ``evaluation/<stand>.json`` the stand's gate reads, and the same values
    as run metrics ``evaluation.<stand>.<metric>``, ``...champion.<metric>``, ``...diff_low.<metric>``,
    ``...diff_high.<metric>`` and ``...rows`` for MLflow's UI. Non-finite values are None in the JSON and
    not logged as metrics. Returns the record."""
    import time

    from mlflow.entities import Metric

    client = _client(job)
    run_id = str(client.get_model_version(job.model, str(version)).run_id)
    summary = comparison.as_dict()
    record: dict[str, Any] = {
        "stand": job.stand,
        "version": str(version),
        "airflow_run_id": job.run_id,
        "rows": int(rows),
        "window": [job.window_start.isoformat(), job.data_interval_end.isoformat()],
        "metrics": summary["metrics"],
        "champion_version": None if champion_version is None else str(champion_version),
        "champion_metrics": summary["champion_metrics"],
        "differences": summary["differences"],
        "confidence": comparison.confidence,
        "samples": comparison.samples,
        "seed": comparison.seed,
        "script": script,
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    client.log_dict(run_id, record, names.evaluation_artifact(job.stand))
    values: dict[str, float | None] = {names.evaluation_metric(job.stand, "rows"): float(rows)}
    for m, v in record["metrics"].items():
        values[names.evaluation_metric(job.stand, m)] = v
    for m, v in record["champion_metrics"].items():
        values[names.evaluation_metric(job.stand, "champion." + m)] = v
    for m, d in record["differences"].items():
        values[names.evaluation_metric(job.stand, "diff_low." + m)] = d["low"]
        values[names.evaluation_metric(job.stand, "diff_high." + m)] = d["high"]
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items() if v is not None])
    return record


__all__ = ["METRICS", "Comparison", "Difference", "applicable", "candidate_version", "champion_version", "compare",
           "finite", "log_evaluation", "roc_auc"]
