"""Environment archive build and upload, against venv-pack and `aws s3 cp`, in one run.

1. One environment (default: scikit-learn, pandas, pyarrow, mlflow-skinny) installed with uv into a
   real venv. venv-pack packs it (its default settings), and `mlops_module.building.environment.pack` packs the
   same directory (leaving out what never runs in a job): time and size of each, ratio.
1b. Each archive handed to a real Spark job with `--archives ...#environment` (local-cluster mode: an
   executor process of its own that fetches and unpacks the archive as Kubernetes executors do, with
   Spark's own unpacking), timed from the job's submission until the environment's Python has started
   and imported scikit-learn, pandas and pyarrow; the two archives alternate, medians.
2. The whole `mlops package` build for that requirements file (uv install from a warm cache + pack).
3. Upload of our archive to an S3-compatible server on loopback (moto, its own process): the
   toolkit's boto3 managed transfer vs `aws s3 cp` (awscli in a venv of its own), same file.
4. Re-running `mlops package` with unchanged requirements: time and bytes uploaded.

    python bench/package.py [--requirements FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REQUIREMENTS = "scikit-learn==1.7.2\npandas==2.3.3\npyarrow==22.0.0\nmlflow-skinny==3.6.0\n"


STANDS = """\
order: [s3]
stands:
  s3:
    backend: kubernetes
    airflow: {{dags: /tmp/dags}}
    kubernetes: {{namespace: ml, service_account: spark, conn_id: k8s, startup_timeout_seconds: 600}}
    storage: {{uri: "s3://bench/models", endpoint_url: "{endpoint}"}}
    mlflow: {{tracking_uri: "http://127.0.0.1:1"}}
    spark: {{image: "apache/spark:3.5.5-python3", version: 3.5.5, python_versions: ["3.10", "3.11", "3.12"],
             time_to_live_seconds: 60}}
    deploy: {{trigger: none, approval: auto}}
"""


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def moto_server(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


FIRST_IMPORT_JOB = """
import json, sys, time
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
sc = spark.sparkContext
deadline = time.time() + 120
while sc._jsc.sc().getExecutorMemoryStatus().size() < 2 and time.time() < deadline:  # the executor is up
    time.sleep(0.05)

def first_import(_):
    import os, time as clock
    started = clock.time()
    import sklearn.linear_model, pandas, pyarrow.parquet  # what a job imports first
    yield {"started": started, "imported": clock.time(), "python": os.path.realpath("environment")}

submitted = time.time()  # the first task makes the executor fetch and unpack the archive
row = sc.parallelize([0], 1).mapPartitions(first_import).collect()[0]
row["submitted"] = submitted
with open(sys.argv[1], "w") as out:
    json.dump(row, out)
spark.stop()
"""


def spark_first_import(archive: Path, work: Path) -> dict[str, float]:
    """Seconds from submitting a one-task job until the task's Python (``./environment/bin/python`` of the
    archive Spark unpacked) has imported the job's first modules: Spark's unpacking, Python's start, the imports."""
    import pyspark

    spark_home = work / "spark-home"
    if not spark_home.is_dir():  # local-cluster executors work in $SPARK_HOME/work: keep that out of pyspark
        spark_home.mkdir()
        for entry in Path(pyspark.__file__).parent.iterdir():
            if entry.name != "work":
                (spark_home / entry.name).symlink_to(entry)
    job, result = work / "first_import.py", work / "first_import.json"
    job.write_text(FIRST_IMPORT_JOB)
    result.unlink(missing_ok=True)
    bin_dir = Path(sys.executable).parent
    environ = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SPARK_HOME": str(spark_home),
                            "SPARK_LOCAL_IP": "127.0.0.1"}
    environ.pop("PYSPARK_PYTHON", None)
    command = [str(bin_dir / "spark-submit"), "--master", "local-cluster[1,1,1024]",
               "--archives", f"{archive}#environment", "--conf", "spark.pyspark.python=./environment/bin/python",
               "--conf", f"spark.pyspark.driver.python={sys.executable}", "--conf", "spark.ui.enabled=false",
               str(job), str(result)]
    subprocess.run(command, cwd=work, env=environ, check=True, capture_output=True, timeout=600)
    row = json.loads(result.read_text())
    assert Path(row["python"]).is_relative_to(spark_home / "work"), row  # the executor's own unpacked copy
    shutil.rmtree(spark_home / "work", ignore_errors=True)
    return {"total": row["imported"] - row["submitted"], "until_python": row["started"] - row["submitted"],
            "imports": row["imported"] - row["started"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requirements", type=Path, help="requirements file (default: the issue's four packages)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating pack measurements per side")
    parser.add_argument("--spark-rounds", type=int, default=3, help="alternating Spark unpack measurements per side")
    parser.add_argument("--no-upload", action="store_true", help="stop after packing and Spark's unpacking")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from uv import find_uv_bin

    from mlops_module.building.artifacts import EnvSpec
    from mlops_module.building.environment import build_environment, compile_bytecode, pack
    from mlops_module.building.libraries import strip_libraries
    from mlops_module.storage import S3Storage

    uv = str(find_uv_bin())
    requirements = args.requirements.read_bytes() if args.requirements else DEFAULT_REQUIREMENTS.encode()
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    with tempfile.TemporaryDirectory(prefix="mlops-bench-package-") as tmp:
        work = Path(tmp)
        (work / "requirements.txt").write_bytes(requirements)

        print("installing the environment (uv, copies) ...", flush=True)
        venv = work / "venv"
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        subprocess.run([uv, "pip", "install", "--quiet", "--link-mode", "copy", "--python", str(venv / "bin/python"),
                        "-r", str(work / "requirements.txt"), "venv-pack"], check=True)
        print(f"environment: {du(venv) / 1e6:.0f} MB on disk")

        # Ours packs the environment as `mlops package` builds it: the same venv, its shared libraries stripped of
        # their symbol tables and its bytecode compiled for the target (build steps before packing, timed on their
        # own), what never runs left out, duplicate libraries as links.
        stripped_venv = work / "venv-stripped"
        shutil.copytree(venv, stripped_venv, symlinks=True)
        site = stripped_venv / "lib" / f"python{version}" / "site-packages"
        strip_seconds, stripped = timed(strip_libraries, site, sys.executable)
        print(f"strip the shared libraries (mlops package's build step): {strip_seconds:.2f} s, "
              f"{stripped / 1e6:.1f} MB less on disk")
        compiled = work / "venv-compiled"
        shutil.copytree(stripped_venv, compiled, symlinks=True)
        compile_seconds, _ = timed(compile_bytecode, compiled, version, sys.executable)
        print(f"compile bytecode for the archive (mlops package's build step): {compile_seconds:.2f} s")
        vp_out, ours_out, plain_out = work / "venv-pack.tar.gz", work / "ours.tar.gz", work / "ours-no-bytecode.tar.gz"
        plain_size, _ = pack(stripped_venv, plain_out)
        lean_size, _ = pack(venv, work / "ours-lean-only.tar.gz")
        vp_times, ours_times = [], []
        for _ in range(args.rounds):  # alternating, medians: this machine is noisy
            vp_out.unlink(missing_ok=True)
            seconds, _ = timed(subprocess.run, [str(venv / "bin/venv-pack"), "-p", str(venv), "-o", str(vp_out), "-q"],
                               check=True)
            vp_times.append(seconds)
            seconds, (ours_size, _) = timed(pack, compiled, ours_out)
            ours_times.append(seconds)
        vp_seconds, ours_seconds = statistics.median(vp_times), statistics.median(ours_times)
        vp_size = vp_out.stat().st_size
        print(f"pack    venv-pack: {vp_seconds:6.2f} s  {vp_size / 1e6:7.1f} MB  (median of {args.rounds}: "
              f"{', '.join(f'{t:.2f}' for t in vp_times)})")
        print(f"pack    mlops    : {ours_seconds:6.2f} s  {ours_size / 1e6:7.1f} MB  (median of {args.rounds}: "
              f"{', '.join(f'{t:.2f}' for t in ours_times)})")
        print(f"pack    speed-up {vp_seconds / ours_seconds:.2f}x (goal >= 2), size ratio {ours_size / vp_size:.3f} "
              "(goal <= 0.7)")
        print(f"pack    mlops without bytecode: {plain_size / 1e6:7.1f} MB, size ratio {plain_size / vp_size:.3f}")
        print(f"pack    mlops without bytecode, libraries not stripped (left out only): {lean_size / 1e6:7.1f} MB, "
              f"size ratio {lean_size / vp_size:.3f}")

        print("spark   unpack-to-first-import (spark-submit --archives, local-cluster) ...", flush=True)
        firsts: dict[str, list[dict[str, float]]] = {"venv-pack": [], "mlops": [], "mlops-no-bc": []}
        for _ in range(args.spark_rounds):  # alternating, medians
            for side, archive in (("venv-pack", vp_out), ("mlops", ours_out), ("mlops-no-bc", plain_out)):
                firsts[side].append(spark_first_import(archive, work))
        medians = {side: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for side, rows in firsts.items()}
        for side, rows in firsts.items():
            m, totals = medians[side], ", ".join(f"{r['total']:.2f}" for r in rows)
            print(f"spark   {side:11}: {m['total']:6.2f} s to first import (until Python {m['until_python']:.2f} s + "
                  f"imports {m['imports']:.2f} s; median of {len(rows)}: "
                  f"{totals})")
        print(f"spark   unpack-to-first-import ratio {medians['mlops']['total'] / medians['venv-pack']['total']:.3f} "
              f"(goal <= 0.7; without bytecode {medians['mlops-no-bc']['total'] / medians['venv-pack']['total']:.3f})")

        if args.no_upload:
            shutil.rmtree(work, ignore_errors=True)
            return 0
        spec = EnvSpec(requirements, "requirements.txt", version, "/usr/bin")
        build_seconds, env_dir = timed(build_environment, spec, work / "build" / "environment")
        pack_seconds, (archive_size, archive_sha) = timed(pack, env_dir, work / "env.tar.gz")
        print(f"build   mlops package (uv install, warm cache {build_seconds:.2f} s + pack {pack_seconds:.2f} s) = "
              f"{build_seconds + pack_seconds:.2f} s, {archive_size / 1e6:.1f} MB")

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = moto_server(port)
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        try:
            import boto3

            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
            storage = S3Storage("s3://bench/models", endpoint)
            ours_up, _ = timed(storage.upload, work / "env.tar.gz", "envs/a.tar.gz", archive_sha)

            aws_venv = work / "aws"
            subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(aws_venv)], check=True)
            subprocess.run([uv, "pip", "install", "--quiet", "--python", str(aws_venv / "bin/python"), "awscli"],
                           check=True)
            aws_up, _ = timed(subprocess.run, [str(aws_venv / "bin/aws"), "--endpoint-url", endpoint, "s3", "cp",
                                               "--only-show-errors", str(work / "env.tar.gz"),
                                               "s3://bench/models/envs/b.tar.gz"], check=True)
            print(f"upload  aws s3 cp: {aws_up:6.2f} s")
            print(f"upload  mlops    : {ours_up:6.2f} s  ratio {ours_up / aws_up:.2f} (lower is faster)")

            # The real command, twice, in its own process: the second run must skip everything.
            repo = work / "repo"
            (repo / "src").mkdir(parents=True)
            (repo / "src" / "train.py").write_text("print('train')\n")
            (repo / "src" / "inference.py").write_text("print('inference')\n")
            (repo / "requirements.txt").write_bytes(requirements)
            (repo / "model.yaml").write_text(
                f'model: {{name: bench, owner: bench}}\npython: {{version: "{version}"}}\n'
                "train: {script: src/train.py}\ninference: {script: src/inference.py}\n")
            stands = work / "stands.yaml"
            stands.write_text(STANDS.format(endpoint=endpoint))
            command = [sys.executable, "-m", "mlops_module", "package", str(repo / "model.yaml"), "--stand", "s3",
                       "--stands", str(stands), "--json", "--quiet"]
            env = os.environ | {"PYTHONPATH": str(ROOT)}
            first_seconds, _ = timed(subprocess.run, command, check=True, capture_output=True, env=env)
            rerun, second = timed(subprocess.run, command, check=True, capture_output=True, env=env)
            report = json.loads(second.stdout)
            sent = sum(a["bytes_uploaded"] for a in report["artifacts"])
            statuses = ", ".join(a["status"] for a in report["artifacts"])
            print(f"package first run (build + upload): {first_seconds:.2f} s")
            print(f"re-run  unchanged requirements: {rerun:.2f} s for the whole command, {sent} bytes uploaded "
                  f"({statuses}; goal < 2 s and 0 bytes)")
        finally:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
