"""Drift scores against independent computations (numpy PSI, scipy's two-sample KS), and the Spark
profile and counts on synthetic data with a known shift."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ks_2samp

from mlops_module.runtime import drift


def _numpy_psi(ref: np.ndarray, cur: np.ndarray, edges: np.ndarray, eps: float = 1e-4) -> float:
    e = np.maximum(np.histogram(ref, edges)[0] / len(ref), eps)
    a = np.maximum(np.histogram(cur, edges)[0] / len(cur), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def test_psi_matches_a_direct_numpy_computation() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 1, 50_000), rng.normal(0.5, 1.2, 20_000)
    inner = np.quantile(ref, np.linspace(0.1, 0.9, 9))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    ours = drift.psi(np.histogram(ref, edges)[0].tolist(), np.histogram(cur, edges)[0].tolist())
    assert ours == pytest.approx(_numpy_psi(ref, cur, edges), rel=1e-9)
    assert ours > 0.2  # a half-sigma shift and a wider spread: well past "watch" (0.1)


def test_psi_floors_empty_bins_instead_of_dividing_by_zero() -> None:
    assert math.isfinite(drift.psi([10, 10, 0], [0, 10, 10]))


def test_ks_from_percentile_bins_is_within_the_binning_error_of_scipy() -> None:
    rng = np.random.default_rng(2)
    for shift in (0.0, 0.1, 0.5):
        ref, cur = rng.gamma(2.0, 10.0, 40_000), rng.gamma(2.0, 10.0, 15_000) + shift * 10
        edges = np.concatenate([[-np.inf], np.quantile(ref, np.linspace(0.01, 0.99, 99)), [np.inf]])
        ours = drift.ks_statistic(np.histogram(ref, edges)[0].tolist(), np.histogram(cur, edges)[0].tolist())
        exact = ks_2samp(ref, cur).statistic
        assert ours <= exact + 1e-12  # binning can only hide gaps
        assert exact - ours <= 0.011 + 0.01  # one percentile bin's mass, plus sampling slack
    assert drift.ks_statistic([1, 2, 3], [1, 2, 3]) == 0.0


def test_js_distance_base_2_matches_scipy() -> None:
    from scipy.spatial.distance import jensenshannon

    p, q = [30, 50, 20, 0], [10, 40, 30, 20]
    assert drift.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-9)
    assert drift.js_distance(p, p) == 0.0
    assert drift.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_coarse_counts_sum_the_fine_bins_inside_each_decile() -> None:
    fine = [-math.inf, 1, 2, 3, 4, math.inf]
    coarse = [-math.inf, 2, 4, math.inf]
    assert drift.coarse_counts(fine, coarse, [1, 2, 3, 4, 5]) == [3, 7, 5]


def test_edges_deduplicate_ties() -> None:
    assert drift.edges_from_quantiles([1.0, 1.0, 2.0, float("nan")]) == [-math.inf, 1.0, 2.0, math.inf]


@pytest.mark.slow
def test_spark_profile_and_counts_detect_the_known_shift_only(monkeypatch, tmp_path, s3) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd
    from pyspark.sql import SparkSession

    rng = np.random.default_rng(3)
    n = 20_000

    def frame(shift: float, plan_p: list[float]) -> pd.DataFrame:
        data = pd.DataFrame({"tenure": rng.gamma(2.0, 12.0, n) + shift * 12, "charges": rng.normal(70, 20, n),
                             "plan": rng.choice(["basic", "standard", "premium"], n, p=plan_p)})
        data.loc[:99, "charges"] = np.nan  # missing values are counted, not binned
        return data

    ref, same, moved = frame(0, [0.3, 0.45, 0.25]), frame(0, [0.3, 0.45, 0.25]), frame(1.0, [0.6, 0.3, 0.1])
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # the workers' Python: this one, with pyarrow and numpy
    builder = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):  # the workers' S3 credentials
        builder = builder.config(f"spark.executorEnv.{name}", os.environ[name])
    spark = builder.getOrCreate()
    try:
        for method in ("arrow", "bucketizer"):
            _check_profile_and_scores(spark, ref, same, moved, n, method)
        _check_a_wide_frame_counts_as_numpy(spark, tmp_path, s3)
        _check_the_two_count_methods_agree(spark, monkeypatch)
    finally:
        spark.stop()


def _check_profile_and_scores(spark, ref, same, moved, n, method) -> None:  # type: ignore[no-untyped-def]
    profile = drift.reference_profile(spark.createDataFrame(ref), method=method)
    assert profile["rows"] == n and set(profile["numeric"]) == {"tenure", "charges"}
    assert profile["numeric"]["charges"]["missing"] == 100
    assert len(profile["numeric"]["tenure"]["coarse_edges"]) == 11  # ten deciles
    assert sum(profile["numeric"]["tenure"]["counts"]) == n
    assert profile["categorical"]["plan"]["counts"].keys() == {"basic", "standard", "premium"}

    def scores(data):  # type: ignore[no-untyped-def]
        counts = drift.current_counts(spark.createDataFrame(data), profile, method=method)
        return {s.name: s for s in drift.compare(profile, counts, "psi", 0.2)}

    calm, shifted = scores(same), scores(moved)
    assert not any(s.drifted for s in calm.values()), calm
    assert shifted["tenure"].drifted and shifted["plan"].drifted and not shifted["charges"].drifted
    assert shifted["tenure"].ks == pytest.approx(ks_2samp(ref.tenure, moved.tenure).statistic, abs=0.02)
    assert shifted["charges"].current_missing == pytest.approx(100 / n)
    psi_direct = _numpy_psi(ref.tenure.to_numpy(), moved.tenure.to_numpy(),
                            np.array(profile["numeric"]["tenure"]["coarse_edges"]))
    assert shifted["tenure"].psi == pytest.approx(psi_direct, rel=1e-3)

    # The numeric-only and categorical-only paths, true nulls, an all-null column, names Spark would parse.
    odd = [(a, None, c) for a, c in zip([1.0, 2.0, None, 4.0] * 50, ["x", None, "y", "x"] * 50, strict=True)]
    frame = spark.createDataFrame(odd, "`a.b` double, `all null` double, `c``d` string")
    numeric_only = drift.reference_profile(frame.select(drift.column("a.b"), drift.column("all null")),
                                           method=method)
    assert numeric_only["numeric"]["a.b"]["missing"] == 50 and sum(numeric_only["numeric"]["a.b"]["counts"]) == 150
    assert numeric_only["numeric"]["all null"]["missing"] == 200 and numeric_only["categorical"] == {}
    categorical_only = drift.reference_profile(frame.select(drift.column("c`d")), method=method)
    assert categorical_only["categorical"]["c`d"] == {"counts": {"x": 100, "y": 50}, "other": 0, "missing": 50}
    assert categorical_only["rows"] == 200
    nulls = spark.createDataFrame([(None, None)] * 20, "`a.b` double, `all null` double")
    (a_b, all_null) = drift.compare(numeric_only, drift.current_counts(nulls, numeric_only, method=method),
                                    "jensenshannon", 0.2)
    assert a_b.drifted and a_b.current_missing == 1.0  # from a quarter missing to all missing: drift
    assert not all_null.drifted  # missing before, missing now
    assert drift.profile_from_json(json.loads(json.dumps(drift.profile_to_json(numeric_only)))) == numeric_only


def _check_the_two_count_methods_agree(spark, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Values on the edges, infinities, NaN and nulls, integers, decimals, booleans as categories, many
    partitions: the numpy-over-Arrow counts equal the Bucketizer's and numpy's own histogram."""
    from decimal import Decimal

    edges = [-math.inf, -1.0, 0.0, 0.5, 2.0, math.inf]
    specials = [-math.inf, -1.0, 0.0, 0.5, 2.0, math.inf, float("nan"), None, -1e-300, 1.9999999, -0.0]
    values = [specials[i % len(specials)] for i in range(997)]
    rows = [(v, i % 7 - 3 if i % 11 else None, Decimal(i % 5) / 2, i % 3 == 0, ["a", "b", None, "é"][i % 4])
            for i, v in enumerate(values)]
    frame = spark.createDataFrame(rows, "x double, n int, d decimal(6, 2), flag boolean, s string").repartition(5)
    numeric = {"x": edges, "n": edges, "d": edges}
    arrow = drift.bin_counts(frame, numeric, ["flag", "s"], method="arrow")
    assert arrow == drift.bin_counts(frame, numeric, ["flag", "s"], method="bucketizer")
    finite = np.array([np.nan if v is None else v for v in values], dtype="float64")
    # numpy's histogram closes the last bin; Bucketizer-style [lo, hi) bins: +inf falls in the last one.
    expected = [int(((finite >= lo) & (finite < hi)).sum()) for lo, hi in itertools.pairwise(edges)]
    expected[-1] += int((finite == math.inf).sum())
    assert arrow["numeric"]["x"] == {"counts": expected, "missing": int(np.isnan(finite).sum())}
    assert arrow["rows"] == 997 and arrow["numeric"]["n"]["missing"] == sum(1 for i in range(997) if i % 11 == 0)
    assert arrow["categorical"]["flag"]["counts"] == {"false": 664, "true": 333}
    assert arrow["categorical"]["s"] == {"counts": {"a": 250, "b": 249, "é": 249}, "other": 0, "missing": 249}
    assert drift.bin_counts(frame.limit(0), numeric, ["s"], method="arrow")["rows"] == 0
    assert drift.bin_counts(frame, {}, [], method="arrow")["rows"] == 997
    with pytest.raises(ValueError, match="choose one of"):
        drift.count_method("numpy")
    with pytest.raises(ValueError, match="strictly increasing"):
        drift.bin_counts(frame, {"x": [-math.inf, 1.0, 1.0, math.inf]}, [])
    # Workers whose Python lacks pyarrow (the image's bare interpreter): "auto" falls back, "arrow" says why.
    import tempfile
    import venv
    from pathlib import Path

    bare = Path(tempfile.mkdtemp(prefix="mlops-bare-python-"))  # this Python, no packages: any machine has one
    venv.EnvBuilder(with_pip=False, symlinks=True).create(bare)
    monkeypatch.setattr(spark.sparkContext, "pythonExec", str(bare / "bin" / "python"))
    try:
        assert drift.bin_counts(frame, numeric, ["flag", "s"]) == arrow
        with pytest.raises(Exception, match=r"No module named '(pyarrow|distutils)'"):  # 3.12+: distutils first
            drift.bin_counts(frame, numeric, ["s"], method="arrow")
    finally:
        shutil.rmtree(bare, ignore_errors=True)


def _wide_frame(rng: np.random.Generator, rows: int, shift: float) -> dict[str, list]:  # type: ignore[type-arg]
    """28 numeric columns (nulls, NaN, +-inf, integers) and 12 categorical ones, 4 of them with hundreds
    of distinct values (more than the top-K kept)."""
    data: dict[str, list] = {}  # type: ignore[type-arg]
    for i in range(28):
        values = rng.normal(5 * shift * (i % 3), 1 + i % 4, rows).round(1 if i % 2 else 6)
        values[rng.random(rows) < 0.05] = np.nan
        values[rng.random(rows) < 0.01] = np.inf
        values[rng.random(rows) < 0.01] = -np.inf
        column = [None if j % 17 == i % 17 else float(v) for j, v in enumerate(values)]
        data[f"n{i:02d}"] = [None if v is None or (math.isnan(v) and j % 2) else v for j, v in enumerate(column)]
    for i in range(12):
        distinct = 400 if i < 4 else 6
        codes = np.minimum(rng.zipf(1.3 + shift, rows), distinct) if i < 4 else rng.integers(0, distinct, rows)
        data[f"c{i:02d}"] = [None if j % 13 == i else f"v{c}" for j, c in enumerate(codes)]
    return data


def _numpy_numeric(values: list, edges: list[float]) -> dict[str, object]:  # type: ignore[type-arg]
    x = np.array([np.nan if v is None else v for v in values], dtype="float64")
    counts = [int(((x >= lo) & (x < hi)).sum()) for lo, hi in itertools.pairwise(edges)]
    counts[-1] += int((x == math.inf).sum())  # [lo, hi) bins: +inf falls in the last one
    return {"counts": counts, "missing": int(np.isnan(x).sum())}


def _numpy_categorical(values: list, keep: int | None = None, known: list[str] | None = None) -> dict[str, object]:  # type: ignore[type-arg]
    present = np.array([v for v in values if v is not None])
    found, counts = np.unique(present, return_counts=True)
    ranked = sorted(zip(found.tolist(), counts.tolist(), strict=True), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked[:keep] if known is None else [kv for kv in ranked if kv[0] in known]
    return {"counts": dict(kept), "other": len(present) - sum(n for _, n in kept),
            "missing": len(values) - len(present)}


def _check_a_wide_frame_counts_as_numpy(spark, tmp_path, s3) -> None:  # type: ignore[no-untyped-def]
    """40 columns, nulls, NaN, infinities and categoricals with more values than the top-K: the profile and
    the window's counts equal numpy's, both count methods, the categories bounded by the profile's."""
    rng = np.random.default_rng(18)
    rows = 3000
    reference, current = _wide_frame(rng, rows, 0.0), _wide_frame(rng, rows, 0.4)
    schema = ", ".join(f"{name} {'double' if name[0] == 'n' else 'string'}" for name in reference)

    def frame(data):  # type: ignore[no-untyped-def]
        return spark.createDataFrame(list(zip(*data.values(), strict=True)), schema).repartition(4)

    profiles = {m: drift.reference_profile(frame(reference), top_k=10, method=m) for m in ("arrow", "bucketizer")}
    # The quantiles differ a little (numpy summaries vs Spark's approxQuantile): the counts, on each one's edges, don't.
    assert profiles["arrow"]["categorical"] == profiles["bucketizer"]["categorical"]
    for profile in profiles.values():
        assert profile["rows"] == rows
        for name, values in reference.items():
            if name[0] == "n":
                feature = profile["numeric"][name]
                assert {k: feature[k] for k in ("counts", "missing")} == _numpy_numeric(values, feature["edges"]), name
                assert len(feature["edges"]) > 50  # percentiles, ties merged
            else:
                assert profile["categorical"][name] == _numpy_categorical(values, keep=10), name
    profile = profiles["arrow"]
    assert all(profile["categorical"][f"c{i:02d}"]["other"] > 0 for i in range(4))  # more values than kept
    for method in ("arrow", "bucketizer"):
        counts = drift.current_counts(frame(current), profile, method=method)
        assert counts["rows"] == rows
        for name, values in current.items():
            if name[0] == "n":
                assert counts["numeric"][name] == _numpy_numeric(values, profile["numeric"][name]["edges"]), name
            else:
                known = list(profile["categorical"][name]["counts"])
                assert counts["categorical"][name] == _numpy_categorical(values, known=known), (method, name)
    scores = {s.name: s for s in drift.compare(profile, counts, "psi", 0.2)}
    assert scores["n01"].drifted and not scores["n00"].drifted  # shifted by one sd, and not shifted
    _check_files_count_as_numpy(spark, tmp_path, s3, current, profile)


def _check_files_count_as_numpy(spark, tmp_path, s3, current, profile) -> None:  # type: ignore[no-untyped-def]
    """The window as parquet files the workers read with pyarrow (one row group per task), locally and from
    S3: the same counts as numpy's. Categoricals stored dictionary-encoded and plain, one numeric as float32
    and one as integers with nulls; files of other intervals, Spark's markers and hidden files left out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = len(current["n00"])
    columns = {}
    for name, values in current.items():
        if name[0] == "c":
            column = pa.array(values, pa.string())
            columns[name] = column.dictionary_encode() if int(name[1:]) % 2 else column
        else:
            columns[name] = pa.array(values, pa.float64())
    columns["n00"] = pa.array(current["n00"], pa.float32())  # float32 in the file: the edges compare in float64
    whole = [None if v is None or not math.isfinite(v) else int(v) for v in current["n02"]]
    columns["n02"] = pa.array(whole, pa.int64())
    table = pa.table(columns)
    root = tmp_path / "window"
    inside, outside = root / "interval_end=20261201T000000Z", root / "interval_end=20261130T000000Z"
    for folder in (inside, outside):
        folder.mkdir(parents=True)
    half = rows // 2
    pq.write_table(table.slice(0, half), inside / "part-0.parquet", row_group_size=400)
    pq.write_table(table.slice(half), inside / "part-1.parquet", row_group_size=700)
    pq.write_table(table.slice(0, 10), outside / "part-0.parquet")
    (inside / "_SUCCESS").write_text("")
    (inside / ".part-0.parquet.crc").write_text("not parquet")

    def keep(relative: str) -> bool:
        return relative.startswith("interval_end=20261201")

    expected = {"n00": _numpy_numeric([None if v is None else float(np.float32(v)) for v in current["n00"]],
                                      profile["numeric"]["n00"]["edges"]),
                "n02": _numpy_numeric(whole, profile["numeric"]["n02"]["edges"])}
    for name, values in current.items():
        if name[0] == "n" and name not in expected:
            expected[name] = _numpy_numeric(values, profile["numeric"][name]["edges"])
        elif name[0] == "c":
            expected[name] = _numpy_categorical(values, known=list(profile["categorical"][name]["counts"]))
    schema = ", ".join(f"{name} {'double' if name[0] == 'n' else 'string'}" for name in current)
    empty = spark.createDataFrame([], schema)  # counted from the files, never from this frame
    local = drift.list_parquet(drift.ParquetFiles(()), "file://" + str(root), keep)
    assert [Path(p).name for p in local.paths] == ["part-0.parquet", "part-1.parquet"]
    s3.create_bucket(Bucket="window")
    for path in root.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "window", "scores/" + str(path.relative_to(root)))
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    remote = drift.list_parquet(drift.ParquetFiles((), endpoint, s3_path_style=True, s3_ssl=False),
                                "s3a://window/scores", keep)
    assert remote.paths == ("s3a://window/scores/interval_end=20261201T000000Z/part-0.parquet",
                            "s3a://window/scores/interval_end=20261201T000000Z/part-1.parquet")
    for files in (local, remote):
        counts = drift.current_counts(empty, profile, method="arrow", files=files)
        assert counts["rows"] == rows
        for name, want in expected.items():
            got = counts["numeric"][name] if name[0] == "n" else counts["categorical"][name]
            assert got == want, (files.paths[0], name)
    nothing = drift.list_parquet(local, str(tmp_path / "no such folder"))
    assert nothing.paths == () and drift.current_counts(empty, profile, method="arrow", files=nothing)["rows"] == 0
    # A worker that can't read the files: "auto" says why and counts the frame; "arrow" raises.
    broken = drift.ParquetFiles(("s3a://window/no-such-file.parquet",), endpoint, True, False)
    assert drift.current_counts(empty, profile, files=broken)["rows"] == 0
    with pytest.raises(Exception, match="no-such-file"):
        drift.current_counts(empty, profile, method="arrow", files=broken)
