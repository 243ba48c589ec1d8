"""Data drift: a reference profile at training time, the current window binned against it, the scores.

Spark only counts; everything after the counts is small, pure Python (tested without Spark):

- **reference profile** (``reference_profile``): per numeric feature, quantile edges of the training
  data (``FINE_BINS`` percentile edges; the deciles are a subset of them), with ``-inf``/``+inf``
  outer edges and the counts per bin; per categorical feature the category counts (the ``TOP_K``
  most frequent, the rest as "other"); null counts; the row count. One ``approxQuantile`` over all
  numeric columns, then one aggregation. A small JSON artifact beside the model.
- **current counts** (``bin_counts``): every feature of the window binned with the reference's edges
  in one multi-column ``Bucketizer`` and one aggregation: never a Spark job per column.
- **scores**: PSI over the deciles (empty bins floored at ``EPSILON``), the two-sample KS statistic
  from the percentile bins (within one bin's mass of the exact value), Jensen-Shannon distance (base
  2) for categoricals, whose unseen categories count as "other".

Imported by the built-in monitoring job from the code package: standard library only at import.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PROFILE_VERSION = 1
BINS = 10  # PSI's bins: the reference's deciles
FINE_BINS = 100  # KS from percentile bins
TOP_K = 50
EPSILON = 1e-4
OTHER = "__other__"
MISSING = "__missing__"
RELATIVE_ERROR = 1e-3
PERFORMANCE_METRICS = ("roc_auc", "accuracy", "log_loss", "rmse", "mae")  # what the built-in job measures


# --- scores (pure) ---------------------------------------------------------------------------


def shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [c / total for c in counts] if total else [0.0 for _ in counts]


def psi(reference: Sequence[float], current: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index over aligned bin counts: sum((a - e) * ln(a / e)), shares floored."""
    e = [max(s, epsilon) for s in shares(reference)]
    a = [max(s, epsilon) for s in shares(current)]
    return float(sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e, strict=True)))


def ks_statistic(reference: Sequence[float], current: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov D from aligned, ordered bin counts: max gap of the two CDFs."""
    gap = ref_cdf = cur_cdf = 0.0
    for r, c in zip(shares(reference), shares(current), strict=True):
        ref_cdf += r
        cur_cdf += c
        gap = max(gap, abs(ref_cdf - cur_cdf))
    return gap


def js_distance(reference: Sequence[float], current: Sequence[float]) -> float:
    """Jensen-Shannon distance, base 2 (0 = same distribution, 1 = disjoint)."""
    p, q = shares(reference), shares(current)
    if not sum(p) and not sum(q):
        return 0.0
    if not sum(p) or not sum(q):  # one side has nothing at all: as different as can be
        return 1.0

    def kl(x: list[float], m: list[float]) -> float:
        return sum(xi * math.log2(xi / mi) for xi, mi in zip(x, m, strict=True) if xi > 0)

    m = [(pi + qi) / 2 for pi, qi in zip(p, q, strict=True)]
    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))


def coarse_counts(fine_edges: Sequence[float], coarse_edges: Sequence[float], counts: Sequence[float]) -> list[float]:
    """Counts of the coarse bins, summed from the fine bins (every coarse edge is a fine edge)."""
    out = [0.0] * (len(coarse_edges) - 1)
    j = 0
    for i, count in enumerate(counts[: len(fine_edges) - 1]):
        while j < len(out) - 1 and fine_edges[i] >= coarse_edges[j + 1]:
            j += 1
        out[j] += count
    return out


def edges_from_quantiles(quantiles: Iterable[float]) -> list[float]:
    """Bin edges from reference quantiles: deduplicated (ties give fewer bins), with -inf/+inf outside."""
    inner = sorted({float(q) for q in quantiles if q is not None and math.isfinite(float(q))})
    return [-math.inf, *(inner or [0.0]), math.inf]  # no finite value at all: still two bins (Bucketizer needs 3)


# --- the profile -----------------------------------------------------------------------------


def profile_to_json(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The profile as strict JSON: the outer edges become the strings "-inf" and "inf" (JSON has no infinity)."""
    def edges(values: Sequence[float]) -> list[Any]:
        return [("inf" if v > 0 else "-inf") if math.isinf(v) else v for v in values]

    numeric = {name: {**f, "edges": edges(f["edges"]), "coarse_edges": edges(f["coarse_edges"])}
               for name, f in profile["numeric"].items()}
    return {**profile, "numeric": numeric}


def profile_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    numeric = {name: {**f, "edges": [float(v) for v in f["edges"]],
                      "coarse_edges": [float(v) for v in f["coarse_edges"]]} for name, f in data["numeric"].items()}
    return {**data, "numeric": numeric}


@dataclass(frozen=True)
class FeatureScore:
    name: str
    kind: str  # "numeric" or "categorical"
    score: float  # the configured method's value
    psi: float
    ks: float | None
    js: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    labels: tuple[str, ...]
    reference_shares: tuple[float, ...]
    current_shares: tuple[float, ...]
    reference_missing: float
    current_missing: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _label(lo: float, hi: float) -> str:
    def f(x: float) -> str:
        return "-inf" if x == -math.inf else "inf" if x == math.inf else f"{x:.4g}"

    return f"[{f(lo)}, {f(hi)})" if lo != -math.inf else f"(-inf, {f(hi)})"


def compare(profile: Mapping[str, Any], current: Mapping[str, Any], method: str, threshold: float,
            features: Sequence[str] = ()) -> list[FeatureScore]:
    """Score each feature of ``current`` (counts from :func:`bin_counts`) against the reference profile."""
    names = list(features) or [*profile["numeric"], *profile["categorical"]]
    scores = []
    for name in names:
        if name in profile["numeric"]:
            ref = profile["numeric"][name]
            cur = current["numeric"][name]
            ref_coarse = coarse_counts(ref["edges"], ref["coarse_edges"], ref["counts"])
            cur_coarse = coarse_counts(ref["edges"], ref["coarse_edges"], cur["counts"])
            # missing values are a bin of their own: a rising null rate is drift too
            value_psi = psi([*ref_coarse, ref["missing"]], [*cur_coarse, cur["missing"]])
            value_ks = ks_statistic(ref["counts"], cur["counts"])
            value_js = js_distance([*ref_coarse, ref["missing"]], [*cur_coarse, cur["missing"]])
            edges = ref["coarse_edges"]
            labels = tuple(_label(edges[i], edges[i + 1]) for i in range(len(edges) - 1))
            kind, ref_bins, cur_bins = "numeric", ref_coarse, cur_coarse
        elif name in profile["categorical"]:
            ref = profile["categorical"][name]
            cur = current["categorical"][name]
            categories = list(ref["counts"])
            ref_bins = [float(ref["counts"][c]) for c in categories] + [float(ref.get("other", 0))]
            unseen = sum(v for k, v in cur["counts"].items() if k not in ref["counts"])
            cur_bins = [float(cur["counts"].get(c, 0)) for c in categories] + [float(unseen)]
            labels = (*categories, OTHER)
            value_psi = psi([*ref_bins, ref["missing"]], [*cur_bins, cur["missing"]])
            value_ks = None
            value_js = js_distance([*ref_bins, ref["missing"]], [*cur_bins, cur["missing"]])
            kind = "categorical"
        else:
            raise KeyError(f"feature {name!r} is not in the reference profile (it has "
                           f"{', '.join([*profile['numeric'], *profile['categorical']])})")
        score = {"psi": value_psi, "ks": value_ks if value_ks is not None else value_js,
                 "jensenshannon": value_js}[method]
        ref_rows, cur_rows = int(sum(ref_bins) + ref["missing"]), int(sum(cur_bins) + cur["missing"])
        scores.append(FeatureScore(
            name, kind, round(score, 6), round(value_psi, 6), None if value_ks is None else round(value_ks, 6),
            round(value_js, 6), score >= threshold, ref_rows, cur_rows, labels,
            tuple(round(s, 6) for s in shares(ref_bins)), tuple(round(s, 6) for s in shares(cur_bins)),
            round(ref["missing"] / ref_rows, 6) if ref_rows else 0.0,
            round(cur["missing"] / cur_rows, 6) if cur_rows else 0.0))
    return scores


# --- Spark: profile and counts ---------------------------------------------------------------


def column(name: str) -> Any:
    """A column by its exact name, whatever it holds (dots, spaces, backticks): quoted, never parsed."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _is_numeric(data_type: Any) -> bool:
    from pyspark.sql.types import BooleanType, NumericType

    return isinstance(data_type, NumericType) and not isinstance(data_type, BooleanType)


def split_features(df: Any, features: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Numeric and categorical features of a DataFrame (all its columns when none are named)."""
    types = {f.name: f.dataType for f in df.schema.fields}
    missing = [f for f in features if f not in types]
    if missing:
        raise KeyError(f"no column {', '.join(missing)} in the data (it has {', '.join(types)})")
    names = list(features) or list(types)
    return [n for n in names if _is_numeric(types[n])], [n for n in names if not _is_numeric(types[n])]


def bin_counts(df: Any, numeric_edges: Mapping[str, Sequence[float]], categorical: Sequence[str]) -> dict[str, Any]:
    """Counts per bin of every numeric feature (``Bucketizer`` with the given edges, all columns at once)
    and per value of every categorical feature, in one aggregation; nulls and NaN counted as missing."""
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as F

    numeric = list(numeric_edges)
    cols = [F.coalesce(column(n).cast("double"), F.lit(float("nan"))).alias(f"__n{i}") for i, n in enumerate(numeric)]
    cols += [column(c).cast("string").alias(f"__c{i}") for i, c in enumerate(categorical)]
    frame = df.select(*cols) if cols else df.select(F.lit(1).alias("__one"))
    if numeric:
        frame = Bucketizer(splitsArray=[list(numeric_edges[n]) for n in numeric],
                           inputCols=[f"__n{i}" for i in range(len(numeric))],
                           outputCols=[f"__b{i}" for i in range(len(numeric))], handleInvalid="keep").transform(frame)
    # One row per (feature, bin), counted in one aggregation. Numeric-only data gets one long key per
    # value (feature * 2^20 + bin: the cheapest to explode and hash); categories need a string beside it.
    stride = 1 << 20
    if categorical:
        keys = [F.struct((F.col(f"__b{i}") + F.lit(i * stride)).cast("long").alias("k"),
                         F.lit(None).cast("string").alias("v")) for i in range(len(numeric))]
        keys += [F.struct(F.lit(-1 - i).cast("long").alias("k"),
                          F.coalesce(F.col(f"__c{i}"), F.lit(MISSING)).alias("v")) for i in range(len(categorical))]
        grouped = frame.select(F.explode(F.array(*keys)).alias("x")).groupBy("x.k", "x.v").count()
    elif numeric:
        keys = [(F.col(f"__b{i}") + F.lit(i * stride)).cast("long") for i in range(len(numeric))]
        grouped = frame.select(F.explode(F.array(*keys)).alias("k")).groupBy("k").count()
    else:
        grouped = None
    table: dict[tuple[int, str], int] = {}
    rows = frame.count() if grouped is None else None
    for r in grouped.collect() if grouped is not None else []:
        key, value = int(r["k"]), (r["v"] if categorical else None)
        if key >= 0:
            table[(key // stride, str(key % stride))] = int(r["count"])
        else:
            table[(len(numeric) - 1 - key, str(value))] = int(r["count"])
    result: dict[str, Any] = {"numeric": {}, "categorical": {}}
    for i, name in enumerate(numeric):
        n_bins = len(numeric_edges[name]) - 1
        counts = [table.get((i, str(b)), 0) for b in range(n_bins)]
        result["numeric"][name] = {"counts": counts, "missing": table.get((i, str(n_bins)), 0)}
    for i, name in enumerate(categorical):
        values = {v: c for (f, v), c in table.items() if f == len(numeric) + i}
        missing = values.pop(MISSING, 0)
        result["categorical"][name] = {"counts": dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))),
                                       "missing": missing}
    if rows is None:  # every feature counts every row once (a bin, a category or missing)
        feature = next(iter(result["numeric"].values()), None) or next(iter(result["categorical"].values()))
        counted = feature["counts"]
        rows = int(sum(counted if isinstance(counted, list) else counted.values())) + int(feature["missing"])
    result["rows"] = rows
    return result


def reference_profile(df: Any, features: Sequence[str] = (), fine_bins: int = FINE_BINS, bins: int = BINS,
                      top_k: int = TOP_K) -> dict[str, Any]:
    """The training data's profile: percentile edges and counts per numeric feature, category counts."""
    numeric, categorical = split_features(df, features)
    fine_probs = [i / fine_bins for i in range(1, fine_bins)]
    coarse_probs = [i / bins for i in range(1, bins)]
    probs = sorted({*fine_probs, *coarse_probs})
    # Plain aliases first: approxQuantile parses names (a dot would mean a struct field).
    safe = df.select(*[column(n).cast("double").alias(f"__q{i}") for i, n in enumerate(numeric)])
    quantiles = safe.approxQuantile([f"__q{i}" for i in range(len(numeric))], probs, RELATIVE_ERROR) if numeric else []
    # An all-missing column has no quantiles: one bin around nothing, every row counted as missing.
    quantiles = [q if len(q) == len(probs) else [] for q in quantiles]
    edges = {name: edges_from_quantiles(q) for name, q in zip(numeric, quantiles, strict=True)}
    coarse = {name: edges_from_quantiles(v for p, v in zip(probs, q, strict=False) if p in coarse_probs)
              for name, q in zip(numeric, quantiles, strict=True)}
    counts = bin_counts(df, edges, categorical)
    profile: dict[str, Any] = {"version": PROFILE_VERSION, "rows": counts["rows"], "bins": bins,
                               "fine_bins": fine_bins, "epsilon": EPSILON, "numeric": {}, "categorical": {}}
    for name in numeric:
        profile["numeric"][name] = {"edges": edges[name], "coarse_edges": coarse[name], **counts["numeric"][name]}
    for name in categorical:
        values = counts["categorical"][name]["counts"]
        kept = dict(list(values.items())[:top_k])
        profile["categorical"][name] = {"counts": kept, "other": sum(values.values()) - sum(kept.values()),
                                        "missing": counts["categorical"][name]["missing"]}
    return profile


def current_counts(df: Any, profile: Mapping[str, Any], features: Sequence[str] = ()) -> dict[str, Any]:
    """The window's counts binned with the profile's edges (the features it profiled, or those named)."""
    names = list(features) or [*profile["numeric"], *profile["categorical"]]
    numeric = {n: profile["numeric"][n]["edges"] for n in names if n in profile["numeric"]}
    categorical = [n for n in names if n in profile["categorical"]]
    return bin_counts(df, numeric, categorical)
