"""The Spark image's build-time smoke check, for each Python version the image promises.

``mlops package`` builds an environment archive from ``requirements.txt`` for Python 3.X (linked to the
image's ``/usr/bin/python3.X``, as on a real stand), then ``spark-submit --master local[1] --archives
<archive>#environment --conf spark.pyspark.python=./environment/bin/python smoke_job.py`` imports the
requirements on the driver and in a Python worker. The archive is unpacked into the job's working directory
first, as the driver pod's ``/opt/spark/work-dir`` has it in cluster mode (spark-submit unpacks archives
there only for a Kubernetes driver; in local mode the driver would find no ``./environment``).

Run by ``platform/spark/Dockerfile`` (stage ``smoke``), and anywhere that has ``mlops``, ``spark-submit`` and
``python3.X`` in ``--python-home``:
    python smoke.py --work /tmp/smoke --spark-version 3.5.5 --python 3.10 --python 3.11 [--hadoop 3.3.4]
Standard library only: it runs with whatever Python has the toolkit installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = ("markupsafe", "yaml")  # what requirements.txt provides, as imported
STAND = "smoke"


def stands_file(work: Path, spark_version: str, pythons: list[str], python_home: str) -> dict[str, object]:
    """One local-backend stand whose "machine" is this image: its python3.X and a storage directory in ``work``."""
    return {
        "order": [STAND],
        "stands": {STAND: {
            "backend": "local",
            "airflow": {"dags": str(work / "dags")},
            "storage": {"uri": (work / "storage").as_uri()},
            "mlflow": {"tracking_uri": "http://127.0.0.1:5000"},
            "kubernetes": {"namespace": "default", "service_account": "default", "conn_id": "kubernetes_default",
                           "startup_timeout_seconds": 600},
            "spark": {"image": "unused", "version": spark_version, "python_versions": pythons,
                      "python_home": python_home, "time_to_live_seconds": 60},
            "deploy": {"trigger": "none", "approval": "auto"},
        }},
    }


def model_config(python: str) -> dict[str, object]:
    return {
        "model": {"name": "image-smoke", "owner": "platform", "description": "the Spark image's smoke check"},
        "python": {"version": python, "requirements": "requirements.txt"},
        "train": {"script": "src/smoke_job.py", "schedule": None},
        "inference": {"script": "src/smoke_job.py", "schedule": None},
    }


def write_inputs(work: Path, python: str, spark_version: str, pythons: list[str], python_home: str) -> Path:
    """The model directory ``mlops package`` reads (JSON is YAML: every value quoted as data)."""
    model = work / f"model-{python}"
    (model / "src").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "requirements.txt", model / "requirements.txt")
    shutil.copyfile(HERE / "smoke_job.py", model / "src" / "smoke_job.py")
    (model / "model.yaml").write_text(json.dumps(model_config(python), indent=2) + "\n")
    (work / "stands.yaml").write_text(json.dumps(stands_file(work, spark_version, pythons, python_home), indent=2))
    return model


def package(mlops: str, model: Path, work: Path) -> Path:
    """``mlops package``; returns the environment archive's path."""
    done = subprocess.run([mlops, "package", str(model / "model.yaml"), "--stands", str(work / "stands.yaml"),
                           "--stand", STAND, "--json", "--quiet"], check=True, stdout=subprocess.PIPE, text=True)
    (env,) = [a for a in json.loads(done.stdout)["artifacts"] if a["artifact"] == "environment"]
    uri = env["uri"]
    if not uri.startswith("file://"):
        raise SystemExit(f"smoke: expected a file:// archive, got {uri}")
    return Path(uri[len("file://"):])


def unpack(archive: Path, into: Path) -> None:
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        if hasattr(tarfile, "tar_filter"):  # Python 3.10.12+, 3.11.4+: no links or paths out of ``into``
            tar.extractall(into, filter="tar")
        else:  # pragma: no cover - older patch releases
            tar.extractall(into)


def run_job(spark_submit: str, archive: Path, run_dir: Path, python: str, hadoop: str | None) -> None:
    argv = [spark_submit, "--master", "local[1]", "--archives", f"{archive}#environment",
            "--conf", "spark.pyspark.python=./environment/bin/python",
            "--conf", "spark.ui.enabled=false", "--conf", "spark.log.level=WARN",
            str(HERE / "smoke_job.py"), "--python", python, "--modules", ",".join(MODULES)]
    if hadoop:
        argv += ["--hadoop", hadoop]
    subprocess.run(argv, check=True, cwd=run_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="an empty, writable directory")
    parser.add_argument("--spark-version", required=True)
    parser.add_argument("--python", action="append", required=True, help="a Python version to check (repeat)")
    parser.add_argument("--python-home", default="/usr/bin", help="where python3.X lives (the stands file's "
                        "spark.python_home)")
    parser.add_argument("--hadoop", help="also check the JVM's Hadoop version and s3a:// support")
    parser.add_argument("--mlops", default="mlops")
    parser.add_argument("--spark-submit", default="spark-submit")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    for python in args.python:
        model = write_inputs(work, python, args.spark_version, args.python, args.python_home)
        try:
            archive = package(args.mlops, model, work)
            run_dir = work / f"run-{python}"
            unpack(archive, run_dir / "environment")
            run_job(args.spark_submit, archive, run_dir, python, args.hadoop)
        except subprocess.CalledProcessError as exc:  # its own output (above) says why
            print(f"smoke: failed for Python {python}: {Path(exc.cmd[0]).name} exited {exc.returncode}",
                  file=sys.stderr)
            return 1
    print(f"smoke: passed for Python {', '.join(args.python)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
