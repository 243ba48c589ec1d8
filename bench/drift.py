"""Drift job: the toolkit's Spark-native counts and scores vs Evidently's DataDriftPreset, same data.

Synthetic data (numpy, seeded): a reference and a current window of N rows × 20 float64 features of
mixed distributions; the current window has a known shift in a few features. Both are written to
parquet (row groups of 128Ki rows, so Spark can split a file over its cores).

- ours, monitoring job: ``spark.read.parquet(current)`` + ``drift.current_counts`` + ``drift.compare``
  (the reference profile is stored at training time); ours, training time: ``drift.reference_profile``
  on the reference parquet. A local SparkSession (``local[*]``, UI off); its start is reported but not
  timed in the job (every Spark job pays it once). A warm-up run, then medians; each timed run follows
  an untimed 10k-row run on every core (Spark stops Python workers idle for 60 s, as ours are while
  Evidently runs).
  Each round also runs the job once in a fresh process (session start excluded) to show the cold
  first-job cost.
- Evidently 0.7.23 (needs pandas<3: a venv of its own under ~/.cache/mlops-bench) in a subprocess:
  ``Report([DataDriftPreset()]).run(current, reference)`` on the two parquet files read with pandas.
  It keeps no reference state: it recomputes from both raw frames every run. Timed with and without
  the reading; the ratio uses compute only (the conservative choice: ours includes reading).
- The two sides alternate round by round (the load average is printed: this machine is shared).
  ``--scale`` also times our job alone at 1M, 3M and 10M rows (same reference profile) and prints
  seconds per million rows. ``--pieces`` times the job's parts, both count methods (``arrow``, the default,
  and ``bucketizer``, the fallback without pyarrow) and a few Spark settings, interleaved.
Goal: ours >= 50x faster than Evidently at 1M x 20; time linear in rows.

``--wide`` (issue 18) runs this instead: 100k rows x 500 features (8 in 10 numeric float32 of five
families, some with nulls; 1 in 10 categorical of 8 values; 1 in 10 of 1,000 uniform or 10,000 Zipf
values), 30 of them shifted (every 25th feature, numeric, and every 50th low-cardinality categorical,
reversed); ours (profile, monitoring job) interleaved with Evidently's DataDriftPreset given the same
columns as numerical/categorical, the flagged features of both sides printed and checked against the
shifted ones; then ours alone at 1M x 1,000 (``--wide-large``): the reference profile and the
monitoring job with peak driver memory (the JVM's heap pools, reset before each job, and its peak
RSS; in local mode the tasks run in that JVM too). The driver's heap stays at Spark's default.
Goals: >= 100x Evidently at 100k x 500; the monitoring job at 1M x 1,000 under 3 minutes on 2 cores.

    python bench/drift.py [--rows 1000000] [--rounds 3] [--evidently-rows N] [--scale] [--pieces]
    python bench/drift.py --wide [--rounds 2] [--wide-large 1000000x1000] [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVIDENTLY = "0.7.23"
EVIDENTLY_VENV = Path.home() / ".cache" / "mlops-bench" / f"evidently-{EVIDENTLY}"
FEATURES = 20
ROW_GROUP = 128 * 1024
CHUNK = 1_000_000
SHIFTED = {"f00": "normal, mean +0.5 sd", "f06": "lognormal, mu +0.3 (0.6 sd of the log)", "f12": "gamma, shape 2 -> 3",
           "f18": "uniform, [0, 1) -> [0.15, 1.15)"}
KS_THRESHOLD = 0.1  # for the per-feature KS verdict printed beside the PSI one (the toolkit's default is PSI 0.2)

EVIDENTLY_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
t1 = time.perf_counter()
ref = pd.read_parquet(sys.argv[1])
cur = pd.read_parquet(sys.argv[2])
t2 = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
t3 = time.perf_counter()
columns, count = {}, None
for m in snapshot.dict()["metrics"]:
    config = m["config"]
    if config["type"].endswith("DriftedColumnsCount"):
        count = m["value"]["count"]
    elif config["type"].endswith("ValueDrift"):
        columns[config["column"]] = [m["value"], config["method"], config["threshold"]]
print(json.dumps({"import": t1 - t0, "read": t2 - t1, "compute": t3 - t2, "drifted": count, "columns": columns}))
"""


# --- data ------------------------------------------------------------------------------------


def generate(rng: Any, rows: int, shifted: bool) -> dict[str, Any]:
    """One chunk: 20 float64 columns, five families of distributions, four shifted when asked."""
    cols: dict[str, Any] = {}
    for i in range(FEATURES):
        name = f"f{i:02d}"
        shift = shifted and name in SHIFTED
        family = i % 5
        if family == 0:  # normal
            sd = 1.0 + i / 10
            cols[name] = rng.normal(10.0 * i + (0.5 * sd if shift else 0.0), sd, rows)
        elif family == 1:  # lognormal
            cols[name] = rng.lognormal(1.3 if shift else 1.0, 0.5, rows)
        elif family == 2:  # gamma
            cols[name] = rng.gamma(3.0 if shift else 2.0, 2.0, rows)
        elif family == 3:  # uniform
            cols[name] = rng.uniform(0.15 if shift else 0.0, 1.15 if shift else 1.0, rows)
        else:  # exponential with a few large values
            cols[name] = rng.exponential(1.0 + i / 20, rows)
    return cols


def write_parquet(path: Path, rows: int, seed: int, shifted: bool) -> Path:
    """Writes ``rows`` rows in chunks (10M x 20 float64 is 1.6 GB), row groups of ``ROW_GROUP`` rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, CHUNK):
            table = pa.table(generate(rng, min(CHUNK, rows - start), shifted))
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
    finally:
        if writer:
            writer.close()
    tmp.rename(path)
    return path


# --- Evidently -------------------------------------------------------------------------------


def evidently_python() -> Path:
    """Evidently's own venv (pandas<3), created once and reused while it imports."""
    python = EVIDENTLY_VENV / "bin" / "python"
    check = [str(python), "-c", f"import evidently, pandas; assert evidently.__version__ == '{EVIDENTLY}'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {EVIDENTLY_VENV} (evidently=={EVIDENTLY}, pandas<3, pyarrow) ...", flush=True)
    shutil.rmtree(EVIDENTLY_VENV, ignore_errors=True)
    EVIDENTLY_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "uv"], check=True)
    subprocess.run([str(EVIDENTLY_VENV / "bin" / "uv"), "pip", "install", "--quiet", "--python", str(python),
                    f"evidently=={EVIDENTLY}", "pandas<3", "pyarrow"], check=True)
    subprocess.run(check, check=True)
    return python


def run_evidently(python: Path, script: Path, reference: Path, current: Path) -> dict[str, Any]:
    env = os.environ | {"EVIDENTLY_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    out = subprocess.run([str(python), str(script), str(reference), str(current)], check=True, capture_output=True,
                         text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- ours ------------------------------------------------------------------------------------


def spark_session(shuffle_partitions: int, driver_memory: str | None) -> Any:
    """A local session; ``driver_memory`` None leaves the driver's heap at Spark's default (1 GB)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the Python workers: this one, with pyarrow and numpy
    builder = (SparkSession.builder.master("local[*]").appName("bench-drift")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
               .config("spark.sql.session.timeZone", "UTC"))
    if driver_memory:
        builder = builder.config("spark.driver.memory", driver_memory)
    return builder.getOrCreate()


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def monitoring_job(spark: Any, current: Path, profile: dict[str, Any], files: bool = False) -> Any:
    """What the built-in monitoring job does with the stored profile: read, count, score. ``files``: the
    workers read the parquet files with pyarrow, as the job does since 2026-12-02
    (``runtime.prediction_files``); without: they count Spark's rows (the job before, and the fallback)."""
    from mlops_module.runtime import drift

    df = spark.read.parquet(str(current))
    source = drift.parquet_files(spark, [str(current)]) if files else None
    counts = drift.current_counts(df, profile, method="arrow" if files else "auto", files=source)
    return drift.compare(profile, counts, "psi", 0.2)


def warm_workers(spark: Any, tiny: Path, profile: dict[str, Any]) -> None:
    """The job on a few rows spread over every core: one Python worker per task slot, started."""
    from mlops_module.runtime import drift

    drift.current_counts(spark.read.parquet(str(tiny)).repartition(os.cpu_count() or 2), profile)


def training_profile(spark: Any, reference: Path) -> dict[str, Any]:
    from mlops_module.runtime import drift

    return drift.reference_profile(spark.read.parquet(str(reference)))


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


# --- where our time goes ---------------------------------------------------------------------


def pieces(spark: Any, current: Path, profile: dict[str, Any], rounds: int) -> dict[str, float]:
    """Times the monitoring job's parts, both count methods and a few settings, interleaved round by round."""
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as F

    from mlops_module.runtime import drift

    names = list(profile["numeric"])
    path = str(current)

    def read_only() -> None:  # every column read and summed: the parquet scan alone
        spark.read.parquet(path).agg(*[F.sum(n) for n in names]).collect()

    def bucketize_only() -> None:  # the scan + cast + multi-column Bucketizer, summed instead of counted
        df = spark.read.parquet(path)
        frame = df.select(*[F.coalesce(F.col(n).cast("double"), F.lit(float("nan"))).alias(f"__n{i}")
                            for i, n in enumerate(names)])
        out = Bucketizer(splitsArray=[profile["numeric"][n]["edges"] for n in names],
                         inputCols=[f"__n{i}" for i in range(len(names))],
                         outputCols=[f"__b{i}" for i in range(len(names))], handleInvalid="keep").transform(frame)
        out.agg(*[F.sum(f"__b{i}") for i in range(len(names))]).collect()

    def counts(method: str = "arrow") -> Any:
        return lambda: drift.current_counts(spark.read.parquet(path), profile, method=method)

    expected = counts()()
    assert counts("bucketizer")() == expected, "the two count methods count differently"

    def compare_only() -> None:
        drift.compare(profile, expected, "psi", 0.2)

    def with_conf(key: str, value: str) -> Any:
        def run() -> None:
            old = spark.conf.get(key)
            spark.conf.set(key, value)
            try:
                counts()()
            finally:
                spark.conf.set(key, old)
        return run

    steps = {"parquet scan only (sum of every column)": read_only,
             "current_counts, arrow: scan + numpy over Arrow batches": counts("arrow"),
             "scan + cast + Bucketizer (summed)": bucketize_only,
             "current_counts, bucketizer: + explode/groupBy": counts("bucketizer"),
             "compare (pure Python)": compare_only,
             "arrow, spark.sql.execution.arrow.maxRecordsPerBatch=100000":
                 with_conf("spark.sql.execution.arrow.maxRecordsPerBatch", "100000"),
             "arrow, maxPartitionBytes=32m": with_conf("spark.sql.files.maxPartitionBytes", str(32 << 20)),
             "arrow, spark.sql.adaptive.enabled=false": with_conf("spark.sql.adaptive.enabled", "false")}
    times: dict[str, list[float]] = {label: [] for label in steps}
    for fn in steps.values():
        fn()  # warm-up
    for _ in range(rounds):  # interleaved, so that load from elsewhere hits every variant alike
        for label, fn in steps.items():
            times[label].append(timed(fn)[0])
    partitions = spark.read.parquet(path).rdd.getNumPartitions()
    print(f"\nwhere our time goes ({partitions} input partitions, interleaved, median of {rounds}):")
    for label, values in times.items():
        print(f"  {label:<55} {median(values):6.3f} s  ({fmt(values)})")
    return {label: median(values) for label, values in times.items()}


# --- wide: 100k x 500 against Evidently, then ours alone at 1M x 1,000 --------------------------------------

WIDE_ROW_GROUP = 32 * 1024  # ~100 MB of float32 per row group at 1,000 features: Spark splits the files evenly
LOW, MEDIUM, HIGH = 8, 1_000, 10_000  # categories of the three categorical kinds (HIGH: Zipf 1.8, ~800-2,500 seen)

EVIDENTLY_WIDE_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
t1 = time.perf_counter()
ref = pd.read_parquet(sys.argv[1])
cur = pd.read_parquet(sys.argv[2])
categorical = json.loads(sys.argv[3])
definition = DataDefinition(numerical_columns=[c for c in ref.columns if c not in categorical],
                            categorical_columns=categorical)
t2 = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current_data=Dataset.from_pandas(cur, data_definition=definition),
                                           reference_data=Dataset.from_pandas(ref, data_definition=definition))
t3 = time.perf_counter()
columns, count = {}, None
for m in snapshot.dict()["metrics"]:
    config = m["config"]
    if config["type"].endswith("DriftedColumnsCount"):
        count = m["value"]["count"]
    elif config["type"].endswith("ValueDrift"):
        columns[config["column"]] = [m["value"], config["method"], config["threshold"]]
print(json.dumps({"import": t1 - t0, "read": t2 - t1, "compute": t3 - t2, "drifted": count, "columns": columns}))
"""


def wide_columns(features: int) -> list[tuple[str, str, bool]]:
    """(name, kind, shifted) per feature: 8 in 10 numeric (five families, 1 in 7 with 2 % nulls), 1 in 10 a
    categorical of ``LOW`` values, 1 in 10 one of ``MEDIUM`` or (1 in 4 of those) ``HIGH`` values.
    Shifted: every 25th feature (numeric) and every 50th low-cardinality categorical."""
    out = []
    for i in range(features):
        kind = ("low" if i % 10 == 8 else ("high" if (i // 10) % 4 == 0 else "medium") if i % 10 == 9
                else f"numeric{i % 5}")
        out.append((f"{'c' if i % 10 >= 8 else 'x'}{i:04d}", kind, i % 25 == 0 or i % 50 == 8))
    return out


def wide_chunk(rng: Any, rows: int, features: int, shifted: bool) -> Any:
    """One chunk of the wide table (float32 numerics, dictionary-encoded categoricals)."""
    import numpy as np
    import pyarrow as pa

    arrays = {}
    for i, (name, kind, moved) in enumerate(wide_columns(features)):
        shift = shifted and moved
        if kind.startswith("numeric"):
            family = int(kind[-1])
            if family == 0:
                values = rng.normal(i + (1.0 if shift else 0.0), 1.0, rows)
            elif family == 1:
                values = rng.lognormal(1.5 if shift else 1.0, 0.5, rows)
            elif family == 2:
                values = rng.gamma(4.0 if shift else 2.0, 2.0, rows)
            elif family == 3:
                values = rng.uniform(0.3 if shift else 0.0, 1.3 if shift else 1.0, rows)
            else:
                values = rng.exponential(2.0 if shift else 1.0, rows)
            mask = rng.random(rows) < 0.02 if i % 7 == 0 else None
            arrays[name] = pa.array(values.astype("float32"), mask=mask)
            continue
        size = {"low": LOW, "medium": MEDIUM, "high": HIGH}[kind]
        if kind == "low":
            p = 0.6 ** np.arange(size)
            p = p[::-1] if shift else p
            codes = rng.choice(size, rows, p=p / p.sum())
        elif kind == "medium":
            codes = rng.integers(0, size, rows)
        else:
            codes = np.minimum(rng.zipf(1.8, rows), size) - 1
        dictionary = pa.array([f"{name}_{k}" for k in range(size)])
        arrays[name] = pa.DictionaryArray.from_arrays(pa.array(codes.astype("int32")), dictionary)
    return pa.table(arrays)


def write_wide(path: Path, rows: int, features: int, seed: int, shifted: bool) -> Path:
    import numpy as np
    import pyarrow.parquet as pq

    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, WIDE_ROW_GROUP):
            table = wide_chunk(rng, min(WIDE_ROW_GROUP, rows - start), features, shifted)
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table, row_group_size=WIDE_ROW_GROUP)
    finally:
        if writer:
            writer.close()
    tmp.rename(path)
    return path


def memory_probe(spark: Any) -> Any:
    """Peak memory of the driver while a block runs: the JVM's heap (the sum of its heap pools' peaks,
    reset first: an upper bound of the true peak; in local mode the executors' tasks share this JVM), the
    JVM process's peak RSS (VmHWM, reset through /proc/PID/clear_refs) and this Python driver's peak RSS
    (getrusage: since the process started, not resettable)."""
    import resource

    jvm = spark.sparkContext._jvm
    pools = [p for p in jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans()
             if p.getType().toString() == "Heap memory"]
    pid = int(jvm.java.lang.ProcessHandle.current().pid())

    def start() -> None:
        for p in pools:
            p.resetPeakUsage()
        with contextlib.suppress(OSError):  # "5" resets VmHWM (Linux)
            Path(f"/proc/{pid}/clear_refs").write_text("5")

    def read() -> dict[str, float]:
        hwm = next((int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM:")), 0)
        old = [p for p in pools if "Old" in str(p.getName())]
        return {"heap_peak_mb": sum(p.getPeakUsage().getUsed() for p in pools) / 2**20,
                "old_gen_peak_mb": sum(p.getPeakUsage().getUsed() for p in old) / 2**20,
                "heap_max_mb": jvm.java.lang.Runtime.getRuntime().maxMemory() / 2**20,
                "jvm_rss_peak_mb": hwm / 1024,
                "python_rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    return start, read


def mem_text(m: dict[str, float]) -> str:
    return (f"JVM heap peak {m['heap_peak_mb']:.0f} MB of {m['heap_max_mb']:.0f} MB max (old generation "
            f"{m['old_gen_peak_mb']:.0f} MB), JVM RSS peak "
            f"{m['jvm_rss_peak_mb']:.0f} MB, Python driver RSS peak {m['python_rss_peak_mb']:.0f} MB")


def wide_verdicts(scores: Any, shifted: set[str], ev_columns: dict[str, Any]) -> bool:
    """Prints which features each side flags; True when both flag exactly the shifted ones."""
    ours = sorted(s.name for s in scores if s.drifted)
    print(f"  ours (PSI >= 0.2): {len(ours)} flagged; the shifted {len(shifted)}: "
          f"{'exactly those' if set(ours) == shifted else 'NOT the same'}")
    if set(ours) != shifted:
        print(f"    ours extra: {sorted(set(ours) - shifted)}, missed: {sorted(shifted - set(ours))}")
    calm = [s for s in scores if s.name not in shifted]
    moved = [s for s in scores if s.name in shifted]
    print(f"    PSI of the shifted: {min(s.psi for s in moved):.3f}-{max(s.psi for s in moved):.3f}; "
          f"of the others: <= {max(s.psi for s in calm):.4f}")
    if not ev_columns:
        return set(ours) == shifted
    theirs = sorted(k for k, v in ev_columns.items() if v[0] >= v[2])
    methods = sorted({v[1] for v in ev_columns.values()})
    print(f"  Evidently ({', '.join(methods)}): {len(theirs)} flagged; "
          f"{'exactly the shifted ones' if set(theirs) == shifted else 'NOT the shifted ones'}")
    if set(theirs) != shifted:
        print(f"    Evidently extra: {sorted(set(theirs) - shifted)}, missed: {sorted(shifted - set(theirs))}")
    same = set(ours) == set(theirs) == shifted
    print(f"  both flag the same shifted features: {'yes' if same else 'NO'}")
    return same


def wide(args: argparse.Namespace, work: Path) -> None:
    """--wide: interleaved with Evidently at --wide-rows x --wide-features, then ours alone at the large size."""
    rows, features = args.wide_rows, args.wide_features
    columns = wide_columns(features)
    shifted = {name for name, _, moved in columns if moved}
    categorical = [name for name, kind, _ in columns if not kind.startswith("numeric")]

    def data(n: int, width: int) -> tuple[Path, Path]:
        ref = write_wide(work / f"wide-reference-{n}x{width}-{args.seed}.parquet", n, width, args.seed, False)
        cur = write_wide(work / f"wide-current-{n}x{width}-{args.seed + 1}.parquet", n, width, args.seed + 1, True)
        return ref, cur

    seconds, (reference, current) = timed(data, rows, features)
    size = (reference.stat().st_size + current.stat().st_size) / 1e6
    print(f"wide data: {rows:,} rows x {features} features ({features - len(categorical)} numeric float32, "
          f"{len(categorical)} categorical: {LOW}, {MEDIUM} or {HIGH} values), {len(shifted)} shifted; "
          f"{size:.0f} MB of parquet ({seconds:.1f} s)", flush=True)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores; other work may run)")
    start_seconds, spark = timed(spark_session, args.shuffle_partitions, None)
    spark.sparkContext.setLogLevel("ERROR")
    start, read = memory_probe(spark)
    print(f"spark: local[{os.cpu_count()}] session start {start_seconds:.2f} s, driver memory at its default "
          f"({read()['heap_max_mb']:.0f} MB max heap)", flush=True)
    warm_profile, profile = timed(training_profile, spark, reference)
    warm_job, scores = timed(monitoring_job, spark, current, profile, True)
    rows_job, row_scores = timed(monitoring_job, spark, current, profile)
    same = [s.as_dict() for s in scores] == [s.as_dict() for s in row_scores]
    print(f"warm-up: reference profile {warm_profile:.2f} s, monitoring job {warm_job:.2f} s (workers read the "
          f"files); counting Spark's rows instead {rows_job:.2f} s, the same scores: {'yes' if same else 'NO'}",
          flush=True)
    python = evidently_python() if args.rounds else None
    job_times: list[float] = []
    profile_times: list[float] = []
    ev_runs: list[dict[str, Any]] = []
    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="evidently-wide-", delete=False) as f:
        f.write(EVIDENTLY_WIDE_SCRIPT)
        script = Path(f.name)
    try:
        for r in range(args.rounds):
            seconds, scores = timed(monitoring_job, spark, current, profile, True)
            job_times.append(seconds)
            profile_times.append(timed(training_profile, spark, reference)[0])
            env = os.environ | {"EVIDENTLY_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
            out = subprocess.run([str(python), str(script), str(reference), str(current), json.dumps(categorical)],
                                 check=True, capture_output=True, text=True, env=env)
            ev_runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}: ours job {seconds:.2f} s, profile {profile_times[-1]:.2f} s; Evidently compute "
                  f"{ev_runs[-1]['compute']:.2f} s (+ read {ev_runs[-1]['read']:.2f} s): "
                  f"{ev_runs[-1]['compute'] / seconds:.0f}x", flush=True)
    finally:
        script.unlink()
    if ev_runs:
        job, prof = median(job_times), median(profile_times)
        compute = median([e["compute"] for e in ev_runs])
        with_read = median([e["compute"] + e["read"] for e in ev_runs])
        ratio = compute / job
        print(f"\nours  monitoring job, {rows:,} x {features}: {job:.2f} s (median of {args.rounds}: "
              f"{fmt(job_times)}); reference profile {prof:.2f} s ({fmt(profile_times)})")
        print(f"Evidently {EVIDENTLY} DataDriftPreset: compute {compute:.2f} s, with reading {with_read:.2f} s "
              f"({fmt([e['compute'] for e in ev_runs])})")
        print(f"speed-up, Evidently compute / our monitoring job: {ratio:.0f}x (goal >= 100: "
              f"{'met' if ratio >= 100 else 'NOT met'}); round by round: "
              f"{fmt([e['compute'] / t for e, t in zip(ev_runs, job_times, strict=True)])}; "
              f"Evidently / (our profile + job): {compute / (prof + job):.0f}x")
        wide_verdicts(scores, shifted, ev_runs[-1]["columns"])
        print(f"| {datetime.date.today()} | {os.cpu_count()} cores | {rows / 1e3:g}k x {features} | {job:.2f} s | "
              f"{prof:.2f} s | "
              f"{compute:.1f} s (with reading {with_read:.1f} s) | **{ratio:.0f}x** | >= 100x |")

    if args.wide_large:
        big_rows, big_features = (int(x) for x in args.wide_large.split("x"))
        big_shifted = {name for name, _, moved in wide_columns(big_features) if moved}
        # One file at a time on disk (3.5 GB each at 1M x 1,000): the reference is removed once profiled.
        seconds, reference = timed(write_wide, work / f"wide-reference-{big_rows}x{big_features}.parquet", big_rows,
                                   big_features, args.seed, False)
        print(f"\nours alone at {big_rows:,} x {big_features}: reference {reference.stat().st_size / 1e9:.1f} GB of "
              f"parquet ({seconds:.0f} s to write); load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
              flush=True)
        start()
        prof_seconds, profile = timed(training_profile, spark, reference)
        prof_memory = read()
        print(f"  reference profile: {prof_seconds:.1f} s; {mem_text(prof_memory)}", flush=True)
        reference.unlink()
        seconds, current = timed(write_wide, work / f"wide-current-{big_rows}x{big_features}.parquet", big_rows,
                                 big_features, args.seed + 1, True)
        print(f"  current window {current.stat().st_size / 1e9:.1f} GB ({seconds:.0f} s to write); load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        results = []
        for attempt in range(args.wide_large_rounds):
            start()
            seconds, scores = timed(monitoring_job, spark, current, profile, True)
            results.append((seconds, read()))
            print(f"  monitoring job {attempt + 1}: {seconds:.1f} s; {mem_text(results[-1][1])}", flush=True)
        wide_verdicts(scores, big_shifted, {})
        best = min(s for s, _ in results)
        print(f"  monitoring job, best of {len(results)}: {best:.1f} s (goal < 180 s on 2 cores, default driver heap: "
              f"{'met' if max(s for s, _ in results) < 180 else 'NOT met'}); profile JSON "
              f"{len(json.dumps(drift_json(profile))) / 1e6:.1f} MB")
    spark.stop()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def drift_json(profile: dict[str, Any]) -> dict[str, Any]:
    from mlops_module.runtime import drift

    return drift.profile_to_json(profile)


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the reference and the current window")
    parser.add_argument("--evidently-rows", type=int, help="rows for the Evidently comparison (default: --rows; "
                        "0 skips Evidently)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements per side")
    parser.add_argument("--scale", action="store_true", help="also time our job alone at --scale-rows")
    parser.add_argument("--scale-rows", default="1000000,3000000,10000000", help="comma-separated row counts")
    parser.add_argument("--pieces", action="store_true", help="also time the parts of our job and alternatives")
    parser.add_argument("--shuffle-partitions", type=int, default=4)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--work", type=Path, help="keep the parquet files here and reuse them (default: a temp dir)")
    parser.add_argument("--wide", action="store_true", help="the wide comparison instead: --wide-rows x "
                        "--wide-features against Evidently, then ours alone at --wide-large")
    parser.add_argument("--wide-rows", type=int, default=100_000)
    parser.add_argument("--wide-features", type=int, default=500)
    parser.add_argument("--wide-large", default="1000000x1000", help="ROWSxFEATURES for ours alone ('' skips it)")
    parser.add_argument("--wide-large-rounds", type=int, default=2, help="monitoring jobs timed at --wide-large")
    parser.add_argument("--cold-job", nargs=2, metavar=("PROFILE", "CURRENT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.cold_job:  # one monitoring job in a fresh process, as the real job runs: prints its times
        start_seconds, spark = timed(spark_session, args.shuffle_partitions, args.driver_memory)
        profile = json.loads(Path(args.cold_job[0]).read_text())
        job_seconds, _ = timed(monitoring_job, spark, Path(args.cold_job[1]), profile)
        spark.stop()
        print(json.dumps({"session": start_seconds, "job": job_seconds}))
        return 0
    evidently_rows = args.rows if args.evidently_rows is None else args.evidently_rows
    if args.wide:
        work = args.work or Path(tempfile.mkdtemp(prefix="mlops-bench-drift-"))
        work.mkdir(parents=True, exist_ok=True)
        try:
            wide(args, work)
        finally:
            if not args.work:
                shutil.rmtree(work, ignore_errors=True)
        return 0

    work = args.work or Path(tempfile.mkdtemp(prefix="mlops-bench-drift-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        def data(rows: int) -> tuple[Path, Path]:
            ref = write_parquet(work / f"reference-{rows}-{args.seed}.parquet", rows, args.seed, shifted=False)
            cur = write_parquet(work / f"current-{rows}-{args.seed + 1}.parquet", rows, args.seed + 1, shifted=True)
            return ref, cur

        seconds, (reference, current) = timed(data, args.rows)
        size = (reference.stat().st_size + current.stat().st_size) / 1e6
        print(f"data: {args.rows:,} rows x {FEATURES} float64 features, reference + current {size:.0f} MB of parquet "
              f"in {work} ({seconds:.1f} s); shifted: {', '.join(f'{k} ({v})' for k, v in SHIFTED.items())}",
              flush=True)
        python = evidently_python() if evidently_rows else None
        if evidently_rows and evidently_rows != args.rows:
            ev_reference, ev_current = data(evidently_rows)
        else:
            ev_reference, ev_current = reference, current

        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores; other work may run)")
        start_seconds, spark = timed(spark_session, args.shuffle_partitions, args.driver_memory)
        first_query, _ = timed(lambda: spark.range(10).count())
        print(f"spark: local[{os.cpu_count()}] session start {start_seconds:.2f} s + first query {first_query:.2f} s "
              "(not in the job times below)", flush=True)
        spark.sparkContext.setLogLevel("ERROR")

        # warm-up: JIT, Python workers, parquet footers; also the stored profile the monitoring job uses
        warm_profile, profile = timed(training_profile, spark, reference)
        warm_job, scores = timed(monitoring_job, spark, current, profile)
        print(f"warm-up: reference profile {warm_profile:.2f} s, monitoring job {warm_job:.2f} s", flush=True)
        profile_file = work / "profile.json"
        profile_file.write_text(json.dumps(profile))  # Infinity for the outer edges: Python's json reads it back
        if ev_reference != reference:
            ev_profile = training_profile(spark, ev_reference)
            monitoring_job(spark, ev_current, ev_profile)
        else:
            ev_profile = profile

        job_times: list[float] = []
        file_times: list[float] = []  # the job as it runs since 2026-12-02: the workers read the files
        cold_runs: list[dict[str, float]] = []
        profile_times: list[float] = []
        ev_job_times: list[float] = []
        ev_runs: list[dict[str, Any]] = []
        with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="evidently-drift-", delete=False) as f:
            f.write(EVIDENTLY_SCRIPT)
            script = Path(f.name)
        try:
            tiny = write_parquet(work / f"current-10000-{args.seed + 1}.parquet", 10_000, args.seed + 1, shifted=True)
            for r in range(args.rounds):  # alternating: the machine is shared and noisy
                # Spark stops Python workers idle for 60 s (they are, while Evidently runs): a 10k-row job
                # on every core starts them again, untimed; the fresh-process run shows a cold start's cost.
                warm_workers(spark, tiny, profile)
                seconds, scores = timed(monitoring_job, spark, current, profile)
                job_times.append(seconds)
                file_times.append(timed(monitoring_job, spark, current, profile, True)[0])
                profile_times.append(timed(training_profile, spark, reference)[0])
                cold = subprocess.run([sys.executable, __file__, "--cold-job", str(profile_file), str(current),
                                       "--shuffle-partitions", str(args.shuffle_partitions),
                                       "--driver-memory", args.driver_memory], check=True, capture_output=True,
                                      text=True)
                cold_runs.append(json.loads(cold.stdout.strip().splitlines()[-1]))
                line = (f"round {r + 1}: ours job {seconds:.2f} s (in a fresh process: {cold_runs[-1]['job']:.2f} s; "
                        f"the workers reading the files: {file_times[-1]:.2f} s), "
                        f"profile {profile_times[-1]:.2f} s")
                if python:
                    if ev_reference != reference:
                        warm_workers(spark, tiny, ev_profile)
                        ev_job_times.append(timed(monitoring_job, spark, ev_current, ev_profile)[0])
                    ev_runs.append(run_evidently(python, script, ev_reference, ev_current))
                    line += (f"; Evidently compute {ev_runs[-1]['compute']:.2f} s (+ read {ev_runs[-1]['read']:.2f} s, "
                             f"import {ev_runs[-1]['import']:.2f} s)")
                print(line, flush=True)
        finally:
            script.unlink()

        job, prof = median(job_times), median(profile_times)
        print(f"\nours  monitoring job (read + current_counts + compare), {args.rows:,} x {FEATURES}: {job:.2f} s "
              f"(median of {args.rounds}: {fmt(job_times)})")
        print(f"ours  monitoring job, the workers reading the files with pyarrow (the job since 2026-12-02): "
              f"{median(file_times):.2f} s (median of {args.rounds}: {fmt(file_times)})")
        cold_job = median([c["job"] for c in cold_runs])
        print(f"ours  monitoring job as the first job of a fresh process (no warm-up; session start "
              f"{median([c['session'] for c in cold_runs]):.2f} s not included): {cold_job:.2f} s "
              f"(median of {args.rounds}: {fmt([c['job'] for c in cold_runs])})")
        print(f"ours  reference profile (training time), {args.rows:,} x {FEATURES}: {prof:.2f} s "
              f"(median of {args.rounds}: {fmt(profile_times)})")

        print("\nour verdicts (PSI >= 0.2 is the toolkit's default; KS shown at >= "
              f"{KS_THRESHOLD}):")
        ev_columns = ev_runs[-1]["columns"] if ev_runs else {}
        for s in scores:
            ev = ev_columns.get(s.name)
            ev_text = f"  Evidently {ev[1]} {ev[0]:.3f} ({'drift' if ev[0] >= ev[2] else 'ok'})" if ev else ""
            print(f"  {s.name} {'SHIFTED' if s.name in SHIFTED else '       '}  PSI {s.psi:7.4f} "
                  f"({'drift' if s.psi >= 0.2 else 'ok   '})  KS {s.ks:6.4f} "
                  f"({'drift' if s.ks >= KS_THRESHOLD else 'ok   '})  JS {s.js:6.4f}{ev_text}")
        ours_psi = sorted(s.name for s in scores if s.psi >= 0.2)
        ours_ks = sorted(s.name for s in scores if (s.ks or 0) >= KS_THRESHOLD)
        print(f"  drifted, ours by PSI: {len(ours_psi)} {ours_psi}; by KS: {len(ours_ks)} {ours_ks}; "
              f"shifted: {sorted(SHIFTED)}")

        if ev_runs:
            compute = median([e["compute"] for e in ev_runs])
            with_read = median([e["compute"] + e["read"] for e in ev_runs])
            ev_job = median(ev_job_times) if ev_job_times else job
            drifted = sorted(k for k, v in ev_columns.items() if v[0] >= v[2])
            print(f"  drifted, Evidently: {ev_runs[-1]['drifted']:.0f} {drifted}")
            ratio = compute / ev_job
            print(f"\nEvidently {EVIDENTLY} DataDriftPreset, {evidently_rows:,} x {FEATURES}: compute {compute:.2f} s, "
                  f"with parquet reading {with_read:.2f} s (median of {len(ev_runs)}: "
                  f"{fmt([e['compute'] for e in ev_runs])})")
            print(f"speed-up, Evidently compute only / our monitoring job: {ratio:.1f}x "
                  f"(goal >= 50: {'met' if ratio >= 50 else 'NOT met'}); with Evidently's reading: "
                  f"{with_read / ev_job:.1f}x; Evidently / (our reference profile + job): "
                  f"{compute / (prof + ev_job):.1f}x")
            print(f"speed-up against the job reading the files: {compute / median(file_times):.1f}x")
            if not ev_job_times:  # same data: the ratio round by round too (both sides saw the same load)
                rounds = [e["compute"] / t for e, t in zip(ev_runs, job_times, strict=True)]
                print(f"speed-up round by round: {fmt(rounds)}; against our job as the first job of a fresh "
                      f"process: {compute / cold_job:.1f}x")
            print(f"| {datetime.date.today()} | {os.cpu_count()} cores | {evidently_rows / 1e6:g}M x {FEATURES} | "
                  f"{ev_job:.2f} s | "
                  f"{prof:.2f} s | {compute:.1f} s (with reading {with_read:.1f} s) | **{ratio:.0f}x** | >= 50x |")

        if args.scale:
            sizes = [int(x) for x in args.scale_rows.split(",")]
            files = {rows: write_parquet(work / f"current-{rows}-{args.seed + 1}.parquet", rows, args.seed + 1,
                                         shifted=True) for rows in [10_000, *sizes]}
            scale_times: dict[int, list[float]] = {rows: [] for rows in files}
            for path in files.values():
                monitoring_job(spark, path, profile)  # warm-up (footers, file listing)
            for _ in range(args.rounds):  # sizes interleaved too
                for rows, path in files.items():
                    scale_times[rows].append(timed(monitoring_job, spark, path, profile)[0])
            fixed = median(scale_times.pop(10_000))
            points = [(rows / 1e6, median(values)) for rows, values in scale_times.items()]
            mean_x = statistics.fmean(x for x, _ in points)
            mean_y = statistics.fmean(y for _, y in points)
            slope = (sum((x - mean_x) * (y - mean_y) for x, y in points)
                     / sum((x - mean_x) ** 2 for x, _ in points)) if len(points) > 1 else mean_y / mean_x
            print(f"\nscale: our monitoring job alone (the {args.rows:,}-row reference profile), sizes interleaved, "
                  f"median of {args.rounds}; fixed cost (10,000 rows) {fixed:.2f} s:")
            lines = []
            for (x, t), values in zip(points, scale_times.values(), strict=True):
                print(f"  {x * 1e6:>12,.0f} rows: {t:6.2f} s, {t / x:.3f} s per million rows  ({fmt(values)})")
                lines.append(f"| {x:g}M | {t:.2f} s | {t / x:.3f} s |")
            print(f"  least-squares fit: {mean_y - slope * mean_x:.2f} s + {slope:.3f} s per million rows")
            print("\n".join(lines))

        if args.pieces:
            parts = pieces(spark, current, profile, max(args.rounds, 5))
            arrow = parts["current_counts, arrow: scan + numpy over Arrow batches"]
            bucketizer = parts["current_counts, bucketizer: + explode/groupBy"]
            print(f"  counts: arrow {arrow:.2f} s vs bucketizer {bucketizer:.2f} s ({bucketizer / arrow:.2f}x)")
        spark.stop()
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
