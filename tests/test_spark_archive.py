"""A real PySpark job runs its Python workers from the environment archive, as on Kubernetes.

``local-cluster`` mode starts a separate executor process with its own working directory, where
Spark unpacks ``--archives ...#environment``, just as executors on Kubernetes do; the workers
start ``./environment/bin/python`` relative to it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from helpers import PYTHON, PYTHON_HOME, example_with_data

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


def _spark_home(tmp_path: Path) -> Path:
    """local-cluster workers work in $SPARK_HOME/work: a SPARK_HOME of links keeps that out of pyspark's
    installed package and inside this test's directory."""
    import pyspark

    spark_home = tmp_path / "spark-home"
    spark_home.mkdir()
    for entry in Path(pyspark.__file__).parent.iterdir():
        if entry.name != "work":
            (spark_home / entry.name).symlink_to(entry)
    return spark_home


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
    spark_home = _spark_home(tmp_path)
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


_IMPORT = re.compile(rb"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import[ \t]+([\w, ()]+)|import[ \t]+([\w.]+))", re.M)


def _imports_of_left_out_test_suites(env: Path) -> list[tuple[str, str]]:
    """Import statements in what the archive keeps that name a test suite it leaves out (``pkg.tests``,
    ``from . import tests``), but for pytest's conftest.py files and maintainers' scripts (scipy's
    ``_precompute``), which no job runs."""
    from mlops_module.building.environment import members

    found = []
    for rel in members(env):
        if not rel.endswith(".py") or rel.endswith("/conftest.py") or "/_precompute/" in rel:
            continue
        for match in _IMPORT.finditer((env / rel).read_bytes()):
            module, names = (match[1] or match[3] or b"").decode(), (match[2] or b"").decode()
            relative = module.startswith(".") and re.search(r"\btests?\b", f"{module} {names}")
            if relative or {"tests", "test"} & set(module.split(".")[1:]):
                found.append((rel, module))
    return found


IMPORT_JOB = '''
import json, sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()

def import_all(_):
    import importlib, os, sys
    files = {m: getattr(importlib.import_module(m), "__file__", None) or "" for m in MODULES}
    yield {"cwd": os.getcwd(), "prefix": sys.prefix, "files": files}

MODULES = sys.argv[2:]
rows = spark.sparkContext.parallelize([0], 1).mapPartitions(import_all).collect()
with open(sys.argv[1], "w") as out:
    json.dump(rows, out)
spark.stop()
'''


def test_the_example_runs_from_its_lean_archive_as_spark_unpacks_it(tmp_path: Path, mlflow_server: str) -> None:
    """The churn example's environment, built and packed as `mlops package` does (what never runs left out,
    shared libraries stripped, duplicates linked, bytecode in), unpacked by Spark itself (`--archives`, an executor of its own): every requirement's
    top-level module imports from it, and the example's train job runs from it, driver and workers."""
    from helpers import EXAMPLE_CONFIGS, elf_sections, resolve

    from mlops_module.building.artifacts import code_files
    from mlops_module.building.code_package import build_code_zip
    from mlops_module.building.environment import top_level_modules

    example = EXAMPLE_CONFIGS[0].parent
    spec = EnvSpec((example / "requirements.txt").read_bytes(), "requirements.txt", PYTHON, PYTHON_HOME)
    env = build_environment(spec, tmp_path / "build" / "environment")
    site = env / "lib" / f"python{PYTHON}" / "site-packages"
    modules = top_level_modules(site, spec.requirements, PYTHON)
    assert {"sklearn", "pandas", "pyarrow", "mlflow", "numpy", "scipy"} <= set(modules)
    assert _imports_of_left_out_test_suites(env) == []
    numpy_core = next(site.glob("numpy/_core/_multiarray_umath.*.so"))
    assert ".symtab" not in elf_sections(numpy_core)  # stripped; the imports and the train job below load it
    archive = tmp_path / "env.tar.gz"
    pack(env, archive)
    shutil.rmtree(tmp_path / "build")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        linked = [m.name for m in tar.getmembers() if m.issym() and ".so" in m.name]
    assert any("/pyarrow/libarrow_python.so" in n for n in linked), linked  # its aliases ship once
    assert not [n for n in names if "/tests/" in n or n.endswith((".h", ".pyi", ".pyx"))]
    assert f"lib/python{PYTHON}/site-packages/numpy/testing/__init__.py" in names  # libraries import it

    bin_dir = Path(sys.executable).parent
    spark_home = _spark_home(tmp_path)
    environ = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SPARK_HOME": str(spark_home),
                            "SPARK_LOCAL_IP": "127.0.0.1"}
    for variable in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONDONTWRITEBYTECODE"):
        environ.pop(variable, None)
    job, result_file = tmp_path / "import_all.py", tmp_path / "imports.json"
    job.write_text(IMPORT_JOB)
    run = subprocess.run([str(bin_dir / "spark-submit"), "--master", "local-cluster[1,1,1024]",
                          "--archives", f"{archive}#environment",
                          "--conf", "spark.pyspark.python=./environment/bin/python",
                          "--conf", f"spark.pyspark.driver.python={sys.executable}",
                          "--conf", "spark.ui.enabled=false", str(job), str(result_file), *modules],
                         cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (row,) = json.loads(result_file.read_text())
    unpacked = Path(row["cwd"]) / "environment"  # where Spark's executor unpacked the archive
    assert unpacked.resolve().is_relative_to(spark_home / "work") and Path(row["prefix"]) == unpacked
    assert sorted(row["files"]) == modules
    outside = {m: f for m, f in row["files"].items() if f and not Path(f).is_relative_to(unpacked / "lib")}
    assert not outside, outside
    compiled_before = len(list(unpacked.rglob("*.pyc")))

    # The train job, driver and Python workers on the environment Spark unpacked, the code from code.zip
    # (--py-files), as the rendered manifest ships it.
    config, storage = example_with_data(example, tmp_path, "churn-archive-test", 4000, seed=5)
    code_zip = tmp_path / "code.zip"
    build_code_zip(code_files(resolve(config, "local")), code_zip)
    python = str(unpacked / "bin" / "python")
    args = ["--job", "train", "--model", "churn-archive-test", "--stand", "local", "--run-id", "manual__archive",
            "--data-interval-start", "2025-04-23T00:00:00+00:00", "--data-interval-end", "2025-04-30T00:00:00+00:00",
            "--data-window-days", "90", "--reason", "", "--tracking-uri", mlflow_server,
            "--storage-uri", f"file://{storage}", "--", "--max-iter", "50"]
    train = subprocess.run([str(bin_dir / "spark-submit"), "--master", "local[1]", "--py-files", str(code_zip),
                            "--conf", f"spark.pyspark.python={python}", "--conf", f"spark.pyspark.driver.python={python}",
                            "--conf", "spark.ui.enabled=false", str(config.parent / "src" / "train.py"), *args],
                           cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "registered churn-archive-test version" in train.stdout
    assert len(list(unpacked.rglob("*.pyc"))) == compiled_before  # nothing compiled: the archive carried it
