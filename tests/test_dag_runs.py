"""Rendered DAGs run under real Airflow (dag.test on SQLite) on the local stand.

spark-submit is replaced by a recorder on PATH, so the test sees exactly the command Airflow's
run of the manifest produces: data interval from the timetable, or the window from a trigger's conf.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from helpers import EXAMPLE_CONFIGS, dagbag, render, resolve

from mlops_module import names

pytestmark = pytest.mark.slow


@pytest.fixture()
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "spark-submit.jsonl"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "spark-submit"
    script.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _load(tmp_path: Path, job: str):  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import sync_bag_to_db

    config = EXAMPLE_CONFIGS[0]
    cfg = resolve(config, "local")
    bag = dagbag(render(config, "local", tmp_path / "dags"))
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    return cfg, bag.dags[names.dag_id(cfg.name, "local", job)]


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_train_dag_runs_with_the_data_interval(tmp_path: Path, airflow_db: None, recorder: Path) -> None:
    import pendulum

    cfg, dag = _load(tmp_path, "train")
    run = dag.test(logical_date=pendulum.datetime(2025, 3, 10, 3, tz="UTC"))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    # The gate and the promoter are not built yet: they skip (honestly), they do not pass.
    assert states == {"train": "success", "quality_gate": "skipped", "promote": "skipped"}
    (argv,) = [json.loads(line) for line in recorder.read_text().splitlines()]
    assert argv[:2] == ["--master", "local[*]"]
    assert _arg(argv, "--name") == "churn-classifier-local-train"
    assert _arg(argv, "--data-interval-start") == "2025-03-03T03:00:00+00:00"  # cron "0 3 * * 1": a week
    assert _arg(argv, "--data-interval-end") == "2025-03-10T03:00:00+00:00"
    assert _arg(argv, "--data-window-days") == "90"
    assert _arg(argv, "--run-id") == run.run_id
    assert argv[argv.index("--") + 1:] == list(cfg.train.args)
    assert "spark.pyspark.python=./environment/bin/python" in argv


def test_triggered_run_uses_the_window_from_conf(tmp_path: Path, airflow_db: None, recorder: Path) -> None:
    _, dag = _load(tmp_path, "train")
    conf = {"data_interval_start": "2024-01-01T00:00:00+00:00", "data_interval_end": "2024-02-01T00:00:00+00:00",
            "reason": 'drift: "plan" PSI 0.31 {{ not a template }} 😀'}
    dag.test(run_conf=conf)
    (argv,) = [json.loads(line) for line in recorder.read_text().splitlines()]
    assert _arg(argv, "--data-interval-start") == conf["data_interval_start"]
    assert _arg(argv, "--data-interval-end") == conf["data_interval_end"]
    assert _arg(argv, "--reason") == conf["reason"]


def test_monitoring_dag_runs_and_triggers_nothing_yet(tmp_path: Path, airflow_db: None, recorder: Path) -> None:
    _, dag = _load(tmp_path, "monitoring")
    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"monitor": "success", "decide": "skipped", "trigger_train": "skipped"}
    (argv,) = [json.loads(line) for line in recorder.read_text().splitlines()]
    assert _arg(argv, "--job") == "monitoring"
    assert argv[-1] == "--"  # no script arguments configured
    assert argv[argv.index("--deploy-mode") + 6].endswith("/_mlops/monitoring.py") or any(
        a.endswith("/_mlops/monitoring.py") for a in argv)


def test_failing_spark_job_fails_the_task(tmp_path: Path, airflow_db: None, recorder: Path) -> None:
    bin_dir = recorder.parent / "bin"
    (bin_dir / "spark-submit").write_text(f"#!{sys.executable}\nimport sys\nprint('boom')\nsys.exit(3)\n")
    _, dag = _load(tmp_path, "inference")
    run = dag.test()
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"infer": "failed"}
