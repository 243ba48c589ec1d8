"""The churn example's training job, run by spark-submit in local mode against a real MLflow server,
then gated with the example's own thresholds."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EXAMPLE_CONFIGS, example_with_data, resolve

from mlops_module.release import registry
from mlops_module.release.gate import run_gate

pytestmark = pytest.mark.slow
EXAMPLE = EXAMPLE_CONFIGS[0].parent


def test_train_job_registers_a_model_that_passes_the_gate(tmp_path: Path, mlflow_server: str) -> None:

    # The example under a name of its own: other tests promote "churn-classifier" on this server.
    config, storage = example_with_data(EXAMPLE, tmp_path, "churn-example-test", 20000, seed=3)
    run_id = "manual__2025-04-30T00:00:00+00:00"
    args = ["--job", "train", "--model", "churn-example-test", "--stand", "local", "--run-id", run_id,
            "--data-interval-start", "2025-04-23T00:00:00+00:00", "--data-interval-end", "2025-04-30T00:00:00+00:00",
            "--data-window-days", "90", "--reason", "", "--tracking-uri", mlflow_server,
            "--storage-uri", f"file://{storage}", "--", "--max-iter", "50"]
    bin_dir = Path(sys.executable).parent
    environ = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SPARK_LOCAL_IP": "127.0.0.1",
                            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    run = subprocess.run([str(bin_dir / "spark-submit"), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
                          str(config.parent / "src" / "train.py"), *args], cwd=tmp_path, env=environ,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "registered churn-example-test version" in run.stdout

    mlflow = registry.client(mlflow_server)
    version = registry.version_of_run(mlflow, "churn-example-test",
                                      registry.run_of_airflow_run(mlflow, "churn-example-test", "local", run_id))
    cfg = resolve(config, "local")
    cfg = dataclasses.replace(cfg, stand=dataclasses.replace(cfg.stand, mlflow_tracking_uri=mlflow_server))
    result = run_gate(cfg, version, mlflow)
    assert result.passed, result.summary()
    rows = mlflow.get_run(mlflow.get_model_version("churn-example-test", version).run_id).data.metrics["rows"]
    assert 0 < rows < 20000  # the 90-day window, not all 120 days
