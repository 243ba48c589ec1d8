"""Data drift: a reference profile at training time, the current window binned against it, the scores.

Spark only counts; everything after the counts is small, pure Python (tested without Spark):

- **reference profile** (``reference_profile``): per numeric feature, quantile edges of the training
  data (``FINE_BINS`` percentile edges; the deciles are a subset of them), with ``-inf``/``+inf``
  outer edges and the counts per bin; per categorical feature the category counts (the ``TOP_K``
  most frequent, the rest as "other"); null counts; the row count. One ``approxQuantile`` over all
  numeric columns, then one aggregation. A small JSON artifact beside the model.
- **current counts** (``bin_counts``): every feature of the window binned with the reference's edges
  in one pass: numpy over Arrow batches in each task (or, without pyarrow, a multi-column
  ``Bucketizer`` and one aggregation): never a Spark job per column.
- **scores**: PSI over the deciles (empty bins floored at ``EPSILON``), the two-sample KS statistic
  from the percentile bins (within one bin's mass of the exact value), Jensen-Shannon distance (base
  2) for categoricals, whose unseen categories count as "other".

Imported by the built-in monitoring job from the code package: standard library only at import.
"""

from __future__ import annotations

import itertools
import math
import re
import sys
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
SUMMARY_POINTS = 1000  # per task and numeric feature in the arrow quantiles: rank error <= 2 / SUMMARY_POINTS


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
            unseen = sum(v for k, v in cur["counts"].items() if k not in ref["counts"]) + cur.get("other", 0)
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


COUNT_METHODS = ("auto", "arrow", "bucketizer")


def count_method(method: str = "auto") -> str:
    """``arrow`` (numpy over Arrow batches) when pyarrow and numpy are in the job's environment, else ``bucketizer``."""
    if method not in COUNT_METHODS:
        raise ValueError(f"count method {method!r}: choose one of {', '.join(COUNT_METHODS)}")
    if method != "auto":
        return method
    import importlib.util

    needed = ("pyarrow", "numpy", "pandas")  # PySpark's mapInArrow checks for pandas too
    return "arrow" if all(importlib.util.find_spec(m) is not None for m in needed) else "bucketizer"


# What each row of the partial counts is: ``f`` is the feature's position (numeric first), ``v`` a category.
ROWS, BINS_ROW, VALUE, MISSING_ROW, OTHER_ROW = 0, 1, 2, 3, 4


def bin_counts(df: Any, numeric_edges: Mapping[str, Sequence[float]], categorical: Sequence[str],
               method: str = "auto", top_k: int | None = None,
               categories: Mapping[str, Sequence[str]] | None = None,
               files: ParquetFiles | None = None) -> dict[str, Any]:
    """Counts per bin of every numeric feature (bins ``[lo, hi)`` of the given edges) and per value of every
    categorical feature, all features in one pass over the data; nulls and NaN counted as missing.

    Wide and high-cardinality data: the partial counts are summed in Spark (one aggregation after the
    pass), so the driver receives one row per numeric feature and at most ``top_k`` + 2 rows per
    categorical one, whatever the number of tasks and of distinct values. ``top_k``: keep each feature's
    most frequent values (ties by value), the rest summed as ``other`` (the reference profile);
    ``categories``: count only these values per feature, the rest as ``other`` (the current window against
    the profile: bounded in the tasks too). Neither: every value (small data only).

    ``arrow``: each task counts its Arrow batches with numpy (``searchsorted`` + ``bincount``; Arrow's
    ``index_in``/``value_counts`` for categories): no per-value JVM work. ``bucketizer``: a multi-column
    Spark ML ``Bucketizer`` and one explode/groupBy, for environments without pyarrow. Both count identically.

    ``files``: the parquet files ``df`` reads (with ``categories`` and the ``arrow`` method): the workers read
    them with pyarrow instead of receiving Spark's rows, several times faster on wide data. Should that fail
    (a worker without S3 access, say), ``auto`` says why and counts ``df`` with Spark instead.
    """
    from pyspark.sql import functions as F

    numeric = list(numeric_edges)
    for name, e in numeric_edges.items():
        if len(e) < 3 or e[0] != -math.inf or e[-1] != math.inf or any(a >= b for a, b in itertools.pairwise(e)):
            raise ValueError(f"edges of {name!r}: strictly increasing, from -inf to +inf, at least two bins")

    def double(name: str) -> Any:  # null -> NaN (missing); + 0.0 turns -0.0 into 0.0, binned alike by both methods
        return F.coalesce(column(name).cast("double") + F.lit(0.0), F.lit(float("nan")))

    if not numeric and not categorical:
        return {"numeric": {}, "categorical": {}, "rows": int(df.count())}

    def frame(arrow: bool) -> Any:  # numpy takes floats and integers as they are (no per-value JVM work)
        cols = [(_as_number(df, n) if arrow else double(n)).alias(f"__n{i}") for i, n in enumerate(numeric)]
        return df.select(*cols, *[column(c).cast("string").alias(f"__c{i}") for i, c in enumerate(categorical)])

    edges = [[float(e) for e in numeric_edges[n]] for n in numeric]
    known = [None if categories is None else sorted({str(v) for v in categories.get(c, ())}) for c in categorical]
    chosen = count_method(method)
    direct = None
    if files is not None and chosen == "arrow" and categories is not None:
        try:
            direct = _direct_counts(df.sparkSession, files, numeric, categorical, edges,
                                    [k or [] for k in known])
        except Exception as exc:
            if method != "auto":
                raise
            print(f"drift: reading the files with pyarrow failed ({type(exc).__name__}: {str(exc)[:300]}); "
                  "counting with Spark's rows instead", file=sys.stderr)
    try:
        if direct is not None:
            numeric_counts, categorical_counts, rows = direct
        elif chosen == "arrow":
            numeric_counts, categorical_counts, rows = _arrow_counts(frame(True), edges, known, top_k)
        else:
            numeric_counts, categorical_counts, rows = _bucketizer_counts(frame(False), edges, known, top_k)
    except Exception as exc:  # the driver has pyarrow and numpy, the Python workers do not
        if method != "auto" or chosen != "arrow" or not _lacking(exc, "counting with Bucketizer"):
            raise
        numeric_counts, categorical_counts, rows = _bucketizer_counts(frame(False), edges, known, top_k)
    result: dict[str, Any] = {"numeric": {}, "categorical": {}, "rows": rows}
    for name, counts in zip(numeric, numeric_counts, strict=True):  # the last slot counts the missing
        result["numeric"][name] = {"counts": counts[:-1], "missing": counts[-1]}
    for name, found in zip(categorical, categorical_counts, strict=True):
        result["categorical"][name] = {
            "counts": dict(sorted(found["counts"].items(), key=lambda kv: (-kv[1], kv[0]))),
            "other": found["other"], "missing": found["missing"]}
    return result


Counts = tuple[list[list[int]], list[dict[str, Any]], int]


def _as_number(df: Any, name: str) -> Any:
    """The column as numpy will read it: floats and integers as they are, anything else (decimals) as double."""
    from pyspark.sql.types import ByteType, DoubleType, FloatType, IntegerType, LongType, ShortType

    plain = (ByteType, ShortType, IntegerType, LongType, FloatType, DoubleType)
    return column(name) if isinstance(df.schema[name].dataType, plain) else column(name).cast("double")


def _lacking(exc: Exception, instead: str) -> bool:
    """Whether ``exc`` says the Python workers lack what numpy over Arrow needs (then says what runs instead).
    On Python 3.12+, PySpark 3.5 imports distutils before pyarrow: setuptools provides it."""
    lacking = re.search(r"No module named '(pyarrow|numpy|pandas|distutils)|(Pandas|PyArrow) >= [0-9.]+ must be "
                        "installed", str(exc))
    if lacking:
        print(f"drift: {instead}: numpy over Arrow needs {lacking.group(1) or lacking.group(2)} on the driver and "
              "the Spark workers", file=sys.stderr)
    return lacking is not None


def arrow_quantiles(df: Any, numeric: Sequence[str], probs: Sequence[float],
                    points: int = SUMMARY_POINTS) -> list[list[float]]:
    """Quantiles of every numeric column in one pass, numpy over Arrow batches: each batch sorted column-wise
    and cut to ``points`` equally spaced order statistics per column, each task's cuts merged to ``points``
    again, the tasks' summaries merged per column in Spark (one small row per column reaches the driver).
    Rank error at most 2 / ``points`` of the rows (batch cut + task cut), like ``approxQuantile``'s
    relative error but with no per-value JVM work and no per-column summary held on the driver.
    NaN and null are ignored; a column with no value gets no quantiles."""

    n = len(numeric)

    def summarise(batches: Any) -> Any:  # in the Python workers: imports here, nothing from this module
        import numpy as np
        import pyarrow as pa

        def cut(values: Any, weights: Any, total: Any) -> tuple[Any, Any]:  # ``points`` weighted order statistics
            order = np.argsort(values, kind="stable")
            ranks = np.cumsum(weights[order])
            targets = (np.arange(points) + 0.5) * total / points
            picked = np.minimum(np.searchsorted(ranks, targets), len(order) - 1)
            return values[order][picked], np.full(points, total / points)

        kept: list[list[tuple[Any, Any]]] = [[] for _ in range(n)]
        for batch in batches:
            if not batch.num_rows:
                continue
            block = np.column_stack([np.asarray(batch.column(i).to_numpy(zero_copy_only=False), dtype="float64")
                                     for i in range(n)])  # null: NaN
            block.sort(axis=0)  # NaN last
            present = (~np.isnan(block)).sum(axis=0)
            for c in np.flatnonzero(present):
                values = block[: present[c], c]
                if len(values) > points:  # equally spaced order statistics, each standing for len/points rows
                    values = values[((np.arange(points) + 0.5) * len(values) / points).astype("int64")]
                kept[c].append((values, np.full(len(values), present[c] / len(values))))
        f, weights, out = [], [], []
        for i, parts in enumerate(kept):
            if not parts:
                continue
            values, w = np.concatenate([v for v, _ in parts]), np.concatenate([x for _, x in parts])
            total = w.sum()
            if len(values) > points:
                values, w = cut(values, w, total)
            f.append(i)
            weights.append(float(w[0]) if len(w) else 0.0)
            out.append(values.tolist())
        yield pa.RecordBatch.from_arrays([pa.array(f, pa.int32()), pa.array(weights, pa.float64()),
                                          pa.array(out, pa.list_(pa.float64()))], ["f", "w", "p"])

    def merge(key: Any, frame: Any) -> Any:  # per column: the tasks' points, weighted, and the quantiles
        import numpy as np
        import pandas as pd

        values = np.concatenate([np.asarray(p, dtype="float64") for p in frame["p"]])
        weights = np.concatenate([np.full(len(p), w) for p, w in zip(frame["p"], frame["w"], strict=True)])
        order = np.argsort(values, kind="stable")
        ranks = np.cumsum(weights[order])
        picked = np.minimum(np.searchsorted(ranks, np.asarray(probs) * ranks[-1]), len(order) - 1)
        return pd.DataFrame({"f": [int(key[0])], "q": [values[order][picked].tolist()]})

    if not n:
        return []
    frame = df.select(*[_as_number(df, c).alias(f"__q{i}") for i, c in enumerate(numeric)])
    summaries = frame.mapInArrow(summarise, "f int, w double, p array<double>")
    merged = summaries.groupBy("f").applyInPandas(merge, "f int, q array<double>").collect()
    quantiles: list[list[float]] = [[] for _ in numeric]
    for r in merged:
        quantiles[int(r["f"])] = [float(v) for v in r["q"]]
    return quantiles


def _keep_top(counted: Any, top_k: int | None, keys: Sequence[str] = (), carried: Sequence[str] = ()) -> Any:
    """Rows ``f, k, v, c`` (+ ``keys``, ``carried``) of summed counts -> each categorical feature's ``top_k``
    values by count (ties by value), the others summed into one ``OTHER_ROW``: in Spark, before anything is
    collected. Other rows pass unchanged (one per group: ``carried`` columns keep their value)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if top_k is None:
        return counted
    rank = F.row_number().over(Window.partitionBy("f", "k").orderBy(F.desc("c"), F.asc("v")))
    over = (F.col("k") == VALUE) & (rank > top_k)
    relabelled = counted.select("f", F.when(over, F.lit(OTHER_ROW)).otherwise(F.col("k")).alias("k"),
                                F.when(over, F.lit(None)).otherwise(F.col("v")).alias("v"), "c", *keys, *carried)
    return relabelled.groupBy("f", "k", "v", *keys).agg(
        F.sum("c").alias("c"), *[F.first(c, ignorenulls=True).alias(c) for c in carried])


def _categorical_result(n_categorical: int) -> list[dict[str, Any]]:
    return [{"counts": {}, "other": 0, "missing": 0} for _ in range(n_categorical)]


def _batch_counter(edges: list[list[float]], known: Sequence[Sequence[str] | None]) -> Any:
    """The task's counting: Arrow batches (numeric columns first, then categorical) -> partial count rows
    ``f, k, v, n``. Made in the driver; the function it returns runs in the Python workers, shipped by value
    (imports inside, nothing from this module), for Spark's Arrow batches and for files read by pyarrow alike."""
    inner = [e[1:-1] for e in edges]  # the outer edges are -inf/+inf: searchsorted needs only the inner ones
    n_numeric = len(edges)

    def count(batches: Any) -> Any:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        def partial(f: Any, k: Any, v: Any, n: Any) -> Any:  # one batch of partial counts
            return pa.RecordBatch.from_arrays([pa.array(f, pa.int32()), pa.array(k, pa.int32()), v,
                                               n if isinstance(n, pa.Array) else pa.array(n, pa.list_(pa.int64()))],
                                              ["f", "k", "v", "n"])

        cuts = [np.asarray(e, dtype="float64") for e in inner]
        totals = [np.zeros(len(c) + 2, dtype="int64") for c in cuts]  # the bins, then missing
        kept = [None if k is None else pa.array(k, pa.string()) for k in known]
        tallies = [None if k is None else np.zeros(len(k) + 2, dtype="int64") for k in known]  # values, other, missing
        found: list[list[Any]] = [[] for _ in known]  # per batch value_counts, where the values are not known
        missing = [0] * len(known)
        rows = 0
        for batch in batches:
            rows += batch.num_rows
            for i, cut in enumerate(cuts):
                values = np.asarray(batch.column(i).to_numpy(zero_copy_only=False), dtype="float64")  # null: NaN
                bins = np.searchsorted(cut, values, side="right")  # v in [cut[b-1], cut[b]) -> b, as Bucketizer
                bins[np.isnan(values)] = len(cut) + 1
                totals[i] += np.bincount(bins, minlength=len(cut) + 2)
            for j, (values_set, tally) in enumerate(zip(kept, tallies, strict=True)):
                col = batch.column(n_numeric + j)
                missing[j] += col.null_count
                if values_set is None or tally is None:
                    found[j].append(pc.value_counts(pc.drop_null(col)))
                    continue
                index = pc.index_in(col, value_set=values_set).fill_null(len(values_set))  # null: unknown or missing
                tally[:-1] += np.bincount(index.to_numpy(zero_copy_only=False), minlength=len(values_set) + 1)
        batches_out = [partial([-1, *range(len(totals))], [ROWS] + [BINS_ROW] * len(totals),
                               pa.nulls(1 + len(totals), pa.string()), [[rows], *(t.tolist() for t in totals)])]
        for j, values_set in enumerate(kept):
            f = n_numeric + j
            tally = tallies[j]
            if tally is not None and values_set is not None:
                tally[-2] -= missing[j]  # index_in gives null to the missing too: they are not "other"
                seen = np.flatnonzero(tally[:-2])
                batches_out.append(partial([f] * len(seen), [VALUE] * len(seen), values_set.take(seen),
                                            [[int(n)] for n in tally[seen]]))
                batches_out.append(partial([f], [OTHER_ROW], pa.nulls(1, pa.string()), [[int(tally[-2])]]))
            elif found[j]:
                table = pa.Table.from_batches([pa.RecordBatch.from_struct_array(s) for s in found[j]])
                summed = table.group_by("values").aggregate([("counts", "sum")])
                counts = summed.column("counts_sum").to_numpy().astype("int64")
                batches_out.append(partial(np.full(len(counts), f, "int32"), np.full(len(counts), VALUE, "int32"),
                                            summed.column("values").combine_chunks().cast(pa.string()),
                                            pa.ListArray.from_arrays(np.arange(len(counts) + 1, dtype="int32"),
                                                                     pa.array(counts, pa.int64()))))
            batches_out.append(partial([f], [MISSING_ROW], pa.nulls(1, pa.string()), [[missing[j]]]))
        yield from pa.Table.from_batches(batches_out).combine_chunks().to_batches()  # a few large batches

    return count


def _arrow_counts(frame: Any, edges: list[list[float]], known: list[list[str] | None], top_k: int | None) -> Counts:
    """Per task: numpy counts over its Arrow batches; the partial tables are summed in Spark, then collected."""
    from pyspark.sql import functions as F

    n_numeric = len(edges)
    partial = frame.mapInArrow(_batch_counter(edges, known), "f int, k int, v string, n array<bigint>")
    # Summed in Spark: the numeric bins element-wise (the first array, plus each of the others), categories by value.
    lists = F.collect_list(F.when(F.col("k") == BINS_ROW, F.col("n")))
    summed = partial.groupBy("f", "k", "v").agg(F.sum(F.col("n")[0]).alias("c"), lists.alias("ns"))
    add = F.aggregate(F.slice("ns", 2, 1 << 30), F.element_at("ns", 1), lambda acc, x: F.zip_with(acc, x, _plus))
    summed = summed.select("f", "k", "v", "c", F.when(F.col("k") == BINS_ROW, add).alias("n"))
    numeric_counts = [[0] * len(e) for e in edges]  # len(e) - 1 bins, then missing
    categorical_counts = _categorical_result(len(known))
    rows = 0
    for r in _keep_top(summed, top_k, carried=["n"]).collect():
        f, k = int(r["f"]), int(r["k"])
        if k == ROWS:
            rows = int(r["c"])
        elif k == BINS_ROW:
            numeric_counts[f] = [int(n) for n in r["n"]]
        else:
            _tally(categorical_counts[f - n_numeric], k, r["v"], int(r["c"]))
    return numeric_counts, categorical_counts, rows


@dataclass(frozen=True)
class ParquetFiles:
    """Parquet files the Python workers read themselves with pyarrow, one row group per task: no JVM row
    conversion, the cheapest way to count a wide window (``docs/performance.md``). ``paths``: local paths,
    ``file:`` or ``s3a://``/``s3://`` URIs. The workers reach S3 at ``s3_endpoint`` (Spark's
    ``fs.s3a.endpoint``; ``None``: AWS) with the credentials the AWS SDK's default chain finds in their
    environment (the stand's ``storage.credentials``: environment variables, web identity or the instance's role)."""

    paths: tuple[str, ...]
    s3_endpoint: str | None = None
    s3_path_style: bool = False
    s3_ssl: bool = True


def parquet_files(spark: Any, paths: Sequence[str]) -> ParquetFiles:
    """Files as the Spark session reaches them: its S3A endpoint, path style and TLS setting go with them."""
    conf = spark.sparkContext.getConf()
    endpoint = conf.get("spark.hadoop.fs.s3a.endpoint", None) or None
    path_style = (conf.get("spark.hadoop.fs.s3a.path.style.access", "false") or "false").lower() == "true"
    ssl = (conf.get("spark.hadoop.fs.s3a.connection.ssl.enabled", "true") or "true").lower() == "true"
    return ParquetFiles(tuple(paths), endpoint, path_style, ssl)


def _filesystem(files: ParquetFiles, path: str) -> tuple[Any, str]:
    """The pyarrow filesystem for ``path`` and the path within it."""
    from pyarrow import fs

    if path.startswith(("s3a://", "s3://")):
        endpoint, scheme = files.s3_endpoint, "https" if files.s3_ssl else "http"
        if endpoint and "://" in endpoint:
            scheme, endpoint = endpoint.split("://", 1)
        return (fs.S3FileSystem(endpoint_override=endpoint, scheme=scheme,
                                force_virtual_addressing=bool(endpoint) and not files.s3_path_style),
                path.split("://", 1)[1])
    if path.startswith("file:"):  # file:///x, file:/x
        path = "/" + path[len("file:"):].lstrip("/")
    return fs.LocalFileSystem(), path


def list_parquet(files: ParquetFiles, root: str, keep: Any = None) -> ParquetFiles:
    """The parquet files under ``root`` (hidden and ``_``-prefixed names skipped, as Spark does), those whose
    path relative to ``root`` passes ``keep``; ``root`` missing: none."""
    from pyarrow import fs

    filesystem, base = _filesystem(files, root)
    scheme = root.split("://", 1)[0] + "://" if root.startswith(("s3a://", "s3://")) else ""
    try:
        found = filesystem.get_file_info(fs.FileSelector(base.rstrip("/"), recursive=True, allow_not_found=True))
    except FileNotFoundError:
        found = []
    paths = []
    for info in found:
        relative = info.path[len(base.rstrip("/")):].lstrip("/")
        if (info.type == fs.FileType.File and not any(part.startswith(("_", ".")) for part in relative.split("/"))
                and (keep is None or keep(relative))):
            paths.append(scheme + info.path)
    return ParquetFiles(tuple(sorted(paths)), files.s3_endpoint, files.s3_path_style, files.s3_ssl)


def _direct_counts(spark: Any, files: ParquetFiles, numeric: Sequence[str], categorical: Sequence[str],
                   edges: list[list[float]], known: list[list[str]]) -> Counts:
    """Each task reads one row group with pyarrow (only the counted columns) and counts it as the Arrow
    path does; the partial counts (one row per numeric feature, at most the known categories + 2 per
    categorical one) are summed here."""
    import numpy as np
    import pyarrow.parquet as pq

    pieces: list[tuple[str, int]] = []
    for path in files.paths:  # the footers: how many row groups each file has
        filesystem, inside = _filesystem(files, path)
        with filesystem.open_input_file(inside) as handle:
            groups = pq.ParquetFile(handle).metadata.num_row_groups
        pieces.extend((path, g) for g in range(groups))
    wanted = [*numeric, *categorical]
    count = _batch_counter(edges, known)

    def read(items: Any) -> Any:  # in the Python workers: one row group at a time, typed as the counting wants
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        for path, group in items:
            filesystem, inside = _filesystem(files, path)
            with filesystem.open_input_file(inside) as handle:
                table = pq.ParquetFile(handle).read_row_group(group, columns=wanted)
            arrays = []
            for i, name in enumerate(wanted):
                column = table.column(name).combine_chunks()
                if pa.types.is_dictionary(column.type):
                    column = column.dictionary_decode()
                if i < len(numeric):
                    arrays.append(pc.cast(column, pa.float64()))
                else:
                    arrays.append(column if pa.types.is_string(column.type) else pc.cast(column, pa.string()))
            yield pa.RecordBatch.from_arrays(arrays, [f"c{i}" for i in range(len(wanted))])

    def task(items: Any) -> Any:
        return list(count(read(items)))

    numeric_counts = [np.zeros(len(e), dtype="int64") for e in edges]  # len(e) - 1 bins, then missing
    categorical_counts = _categorical_result(len(known))
    rows = 0
    partials = spark.sparkContext.parallelize(pieces, max(1, len(pieces))).mapPartitions(task).collect() \
        if pieces else []
    for batch in partials:
        for f, k, v, n in zip(*(batch.column(c).to_pylist() for c in ("f", "k", "v", "n")), strict=True):
            if k == ROWS:
                rows += int(n[0])
            elif k == BINS_ROW:
                numeric_counts[f] += np.asarray(n, dtype="int64")
            else:
                _tally(categorical_counts[f - len(numeric)], k, v, int(n[0]))
    return [c.tolist() for c in numeric_counts], categorical_counts, rows


def _plus(a: Any, b: Any) -> Any:
    return a + b


def _tally(into: dict[str, Any], kind: int, value: Any, n: int) -> None:
    if kind == VALUE:
        into["counts"][str(value)] = into["counts"].get(str(value), 0) + n
    elif kind == OTHER_ROW:
        into["other"] += n
    else:
        into["missing"] += n


def _bucketizer_counts(frame: Any, edges: list[list[float]], known: list[list[str] | None],
                       top_k: int | None) -> Counts:
    """A multi-column ``Bucketizer`` (``handleInvalid="keep"``: NaN -> one bin past the last), then one
    explode + groupBy over (feature, kind, bin or value)."""
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as F

    n_numeric = len(edges)
    if edges:
        frame = Bucketizer(splitsArray=edges, inputCols=[f"__n{i}" for i in range(n_numeric)],
                           outputCols=[f"__b{i}" for i in range(n_numeric)], handleInvalid="keep").transform(frame)
    # One row per (feature, bin) and per (feature, value), counted in one aggregation. Numeric-only data
    # gets one long key per value (feature * 2^20 + bin: the cheapest to explode and hash).
    stride = 1 << 20
    numeric_keys = [(F.col(f"__b{i}") + F.lit(i * stride)).cast("long") for i in range(n_numeric)]
    if known:
        keys = [F.struct(F.lit(i).alias("f"), F.lit(BINS_ROW).alias("k"), k.alias("b"),
                         F.lit(None).cast("string").alias("v")) for i, k in enumerate(numeric_keys)]
        for j, values in enumerate(known):
            value = F.col(f"__c{j}")
            kind = F.when(value.isNull(), F.lit(MISSING_ROW))
            kind = (kind.when(value.isin(*values), F.lit(VALUE)).otherwise(F.lit(OTHER_ROW)) if values is not None
                    else kind.otherwise(F.lit(VALUE)))
            keys.append(F.struct(F.lit(n_numeric + j).alias("f"), kind.alias("k"), F.lit(None).cast("long").alias("b"),
                                 F.when(kind == VALUE, value).alias("v")))
        exploded = frame.select(F.explode(F.array(*keys)).alias("x")).select("x.*")
        counted = _keep_top(exploded.groupBy("f", "k", "b", "v").agg(F.count(F.lit(1)).alias("c")), top_k, ["b"])
    else:
        counted = (frame.select(F.explode(F.array(*numeric_keys)).alias("b")).groupBy("b")
                   .agg(F.count(F.lit(1)).alias("c")).select(F.lit(BINS_ROW).alias("k"), "b", "c"))
    numeric_counts = [[0] * len(e) for e in edges]  # len(e) - 1 bins, then missing
    categorical_counts = _categorical_result(len(known))
    for r in counted.collect():
        k, n = int(r["k"]), int(r["c"])
        if k == BINS_ROW:
            key = int(r["b"])
            numeric_counts[key // stride][key % stride] = n
        else:
            _tally(categorical_counts[int(r["f"]) - n_numeric], k, r["v"], n)
    # Every feature counts every row once (a bin, a category, other or missing).
    if numeric_counts:
        return numeric_counts, categorical_counts, sum(numeric_counts[0])
    first = categorical_counts[0]
    rows = sum(first["counts"].values()) + first["other"] + first["missing"]
    return numeric_counts, categorical_counts, int(rows)


def reference_profile(df: Any, features: Sequence[str] = (), fine_bins: int = FINE_BINS, bins: int = BINS,
                      top_k: int = TOP_K, method: str = "auto") -> dict[str, Any]:
    """The training data's profile: percentile edges and counts per numeric feature, each categorical
    feature's ``top_k`` categories (the rest as ``other``). Two passes whatever the width: the quantiles of
    every numeric column (:func:`arrow_quantiles`; Spark's ``approxQuantile`` with the ``bucketizer`` method),
    then :func:`bin_counts`."""
    numeric, categorical = split_features(df, features)
    fine_probs = [i / fine_bins for i in range(1, fine_bins)]
    coarse_probs = [i / bins for i in range(1, bins)]
    probs = sorted({*fine_probs, *coarse_probs})
    chosen = count_method(method)
    try:
        quantiles = arrow_quantiles(df, numeric, probs) if chosen == "arrow" else []
    except Exception as exc:
        if method != "auto" or not _lacking(exc, "quantiles by approxQuantile"):
            raise
        chosen = "bucketizer"
    if chosen != "arrow" and numeric:
        # Plain aliases first: approxQuantile parses names (a dot would mean a struct field).
        safe = df.select(*[column(n).cast("double").alias(f"__q{i}") for i, n in enumerate(numeric)])
        quantiles = safe.approxQuantile([f"__q{i}" for i in range(len(numeric))], probs, RELATIVE_ERROR)
    # An all-missing column has no quantiles: one bin around nothing, every row counted as missing.
    quantiles = [q if len(q) == len(probs) else [] for q in quantiles]
    edges = {name: edges_from_quantiles(q) for name, q in zip(numeric, quantiles, strict=True)}
    coarse = {name: edges_from_quantiles(v for p, v in zip(probs, q, strict=False) if p in coarse_probs)
              for name, q in zip(numeric, quantiles, strict=True)}
    counts = bin_counts(df, edges, categorical, chosen if method == "auto" else method, top_k=top_k)
    profile: dict[str, Any] = {"version": PROFILE_VERSION, "rows": counts["rows"], "bins": bins,
                               "fine_bins": fine_bins, "epsilon": EPSILON, "numeric": {}, "categorical": {}}
    for name in numeric:
        profile["numeric"][name] = {"edges": edges[name], "coarse_edges": coarse[name], **counts["numeric"][name]}
    for name in categorical:
        profile["categorical"][name] = counts["categorical"][name]
    return profile


def current_counts(df: Any, profile: Mapping[str, Any], features: Sequence[str] = (),
                   method: str = "auto", files: ParquetFiles | None = None) -> dict[str, Any]:
    """The window's counts binned with the profile's edges (the features it profiled, or those named); per
    categorical feature only the profile's categories, the rest as ``other`` (unseen ones are "other" in
    :func:`compare` anyway), so high-cardinality columns stay cheap. ``files``: the parquet files ``df``
    reads, read by the workers with pyarrow (see :func:`bin_counts`)."""
    names = list(features) or [*profile["numeric"], *profile["categorical"]]
    numeric = {n: profile["numeric"][n]["edges"] for n in names if n in profile["numeric"]}
    categorical = [n for n in names if n in profile["categorical"]]
    known = {n: list(profile["categorical"][n]["counts"]) for n in categorical}
    return bin_counts(df, numeric, categorical, method, categories=known, files=files)
