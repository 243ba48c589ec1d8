"""A real PySpark job runs its Python workers from the environment archive, as on Kubernetes.

``local-cluster`` mode starts a separate executor process with its own working directory, where
Spark unpacks ``--archives ...#environment``, just as executors on Kubernetes do; the workers
start ``./environment/bin/python`` relative to it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PYTHON, PYTHON_HOME

from mlops_module.building.artifacts import EnvSpec
from mlops_module.building.environment import build_environment, pack

pytestmark = pytest.mark.slow

JOB = '''
import json, sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("mlops-archive-test").getOrCreate()

def probe(_):
    import os, sys
    import humanize  # only the archive has it
    yield {"executable": sys.executable, "prefix": sys.prefix, "humanize": humanize.__file__,
           "cwd": os.getcwd(), "real": os.path.realpath(sys.executable), "words": humanize.intcomma(1234567)}

rows = spark.sparkContext.parallelize([0, 1], 2).mapPartitions(probe).collect()
with open(sys.argv[1], "w") as out:
    json.dump(rows, out)
spark.stop()
'''


def test_pyspark_workers_run_from_the_unpacked_archive(tmp_path: Path) -> None:
    assert importlib.util.find_spec("humanize") is None, "the test needs a module only the archive has"
    spec = EnvSpec(b"humanize==4.12.1\n", "requirements.txt", PYTHON, PYTHON_HOME)  # this machine's Python
    assert Path(spec.interpreter).exists(), f"the local 'image' interpreter {spec.interpreter} is missing"
    env = build_environment(spec, tmp_path / "build" / "environment")
    archive = tmp_path / "env.tar.gz"
    pack(env, archive)
    job = tmp_path / "job.py"
    job.write_text(JOB)
    result_file = tmp_path / "result.json"
    bin_dir = Path(sys.executable).parent
    # local-cluster workers work in $SPARK_HOME/work: a SPARK_HOME of links keeps that out of pyspark's
    # installed package and inside this test's directory.
    import pyspark

    spark_home = tmp_path / "spark-home"
    spark_home.mkdir()
    for entry in Path(pyspark.__file__).parent.iterdir():
        if entry.name != "work":
            (spark_home / entry.name).symlink_to(entry)
    environ = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SPARK_HOME": str(spark_home),
                            "SPARK_LOCAL_IP": "127.0.0.1"}
    environ.pop("PYSPARK_PYTHON", None)
    command = [
        str(bin_dir / "spark-submit"), "--master", "local-cluster[1,1,1024]",
        "--archives", f"{archive}#environment",
        "--conf", "spark.pyspark.python=./environment/bin/python",
        "--conf", f"spark.pyspark.driver.python={sys.executable}",
        "--conf", "spark.ui.enabled=false",
        str(job), str(result_file),
    ]
    run = subprocess.run(command, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(result_file.read_text())
    assert len(rows) == 2
    for row in rows:
        environment = Path(row["cwd"]) / "environment"
        assert row["executable"] == str(environment / "bin" / "python")
        assert Path(row["prefix"]) == environment
        assert Path(row["humanize"]).is_relative_to(environment / "lib")
        assert row["real"] == os.path.realpath(spec.interpreter)
        assert row["words"] == "1,234,567"
        assert Path(row["cwd"]).is_relative_to(spark_home / "work")  # the executor's directory, not the driver's


LOCAL_JOB = '''
import json, os, sys
import humanize  # the driver runs the archive's Python too
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()

def probe(_):
    import os, sys
    import humanize
    yield {"executable": sys.executable, "humanize": humanize.__file__, "cwd": os.getcwd()}

rows = spark.sparkContext.parallelize([0], 1).mapPartitions(probe).collect()
rows.append({"executable": sys.executable, "humanize": humanize.__file__, "cwd": os.getcwd(), "driver": True})
with open(sys.argv[1], "w") as out:
    json.dump(rows, out)
spark.stop()
'''


def test_local_stand_runs_driver_and_workers_from_the_archive(tmp_path: Path) -> None:
    """The local stand's way: the same manifest, spark-submit in local mode, archives unpacked in its cwd."""
    from mlops_module.local.spark_submit import prepare_workdir, spark_submit_argv

    spec = EnvSpec(b"humanize==4.12.1\n", "requirements.txt", PYTHON, PYTHON_HOME)
    env = build_environment(spec, tmp_path / "build" / "environment")
    archive = tmp_path / f"{spec.key}.tar.gz"
    pack(env, archive)
    job = tmp_path / "job.py"
    job.write_text(LOCAL_JOB)
    result_file = tmp_path / "result.json"
    app = {"metadata": {"name": "m-local-train"},
           "spec": {"mainApplicationFile": f"file://{job}", "arguments": [str(result_file)],
                    "deps": {"archives": [f"file://{archive}#environment"]},
                    "sparkConf": {"spark.pyspark.python": "./environment/bin/python", "spark.ui.enabled": "false"},
                    "driver": {"cores": 1, "memory": "512m"}, "executor": {"instances": 1, "memory": "512m"}}}
    bin_dir = Path(sys.executable).parent
    workdir = tmp_path / "work"
    workdir.mkdir()
    prepare_workdir(app, workdir, tmp_path / "cache")
    linked = prepare_workdir(app, workdir, tmp_path / "cache")  # unpacked once, reused
    assert linked == [f"file://{archive}#environment"]
    assert len(list((tmp_path / "cache").iterdir())) == 1
    # Compiled once, by the environment's interpreter, into bytecode that is never checked against the source
    # (flags 0b01: hash-based, unchecked), so no job compiles it again, with PYTHONDONTWRITEBYTECODE or not.
    cached = (workdir / "environment").resolve()
    compiled = list(cached.glob(f"lib/python{PYTHON}/site-packages/humanize/__pycache__/__init__.cpython-*.pyc"))
    assert len(compiled) == 1
    assert int.from_bytes(compiled[0].read_bytes()[4:8], "little") == 0b01
    # Another archive under the same name (its storage sidecar says so) is unpacked again, not reused.
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "marker").write_text("old")
    stale = tmp_path / "stale.tar.gz"
    pack(tmp_path / "stale", stale)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    shutil.copy(stale, other_dir / archive.name)
    (other_dir / f"{archive.name}.sha256").write_text("f" * 64 + "\n")
    other_work = tmp_path / "other-work"
    other_work.mkdir()
    other_app = {**app, "spec": {**app["spec"], "deps": {"archives": [f"file://{other_dir / archive.name}#environment"]}}}
    prepare_workdir(other_app, other_work, tmp_path / "cache")
    assert (other_work / "environment" / "marker").read_text() == "old"
    assert not (workdir / "environment" / "marker").exists()  # the first job's environment is untouched
    environ = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SPARK_LOCAL_IP": "127.0.0.1"}
    environ.pop("PYSPARK_PYTHON", None)
    argv = spark_submit_argv(app, str(bin_dir / "spark-submit"), "local[1]", linked)  # as the local operator does
    assert "--archives" not in argv  # Spark doesn't unpack it a second time where nothing looks
    run = subprocess.run(argv, cwd=workdir, env=environ, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(result_file.read_text())
    assert [bool(r.get("driver")) for r in rows] == [False, True]
    for row in rows:
        assert row["executable"].endswith("environment/bin/python")
        assert Path(row["humanize"]).resolve().is_relative_to((tmp_path / "cache").resolve())


def test_two_first_uses_of_an_archive_at_once_share_one_unpacked_copy(tmp_path: Path) -> None:
    """Two tasks starting on a new archive together both get the unpacked copy (the second one's is dropped)."""
    from concurrent.futures import ThreadPoolExecutor

    from mlops_module.local.spark_submit import unpacked_archive

    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "marker").write_text("x")
    archive = tmp_path / "env.tar.gz"
    pack(tmp_path / "env", archive)
    for round_ in range(3):  # the race is at the rename: several rounds on a fresh cache each
        cache = tmp_path / f"cache-{round_}"
        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(unpacked_archive, [archive, archive], [cache, cache])
        assert first == second and (first / "marker").read_text() == "x"
        assert [p.name for p in cache.iterdir()] == [first.name]  # no staging copy left behind
