"""Starting runs on a stand's own Airflow: the acceptance run a push asks for, the inference run a promotion starts.

A stand that receives a pushed version accepts it with its acceptance DAG (its checks, its gate, its promotion);
the deploy job that publishes the pushed bundle starts that DAG's run, with the version and where it came from
in the run's conf. How a run is started depends on the stand's backend:

- **kubernetes**: the stand's Airflow 3 REST API (``airflow.api_url`` in the stands file; credentials from the
  environment), ``POST /api/v2/dags/{dag_id}/dagRuns`` (:mod:`.airflow_api`);
- **local**: a queued run in the stand's Airflow database on this machine, the one the next ``mlops run`` of
  that DAG serves, as its scheduler would (``python -m mlops_module.local.airflow_runner --queue-run-id``).

The run id is deterministic (one per pushed version), so a deploy job run twice starts one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlops_module import names
from mlops_module.errors import MlopsError
from mlops_module.kinds import Log
from mlops_module.spec.config import ModelConfig


class AcceptanceError(MlopsError):
    """An acceptance run could not be started; the message says on which stand and what to do."""


def acceptance_conf(version: str, source_stand: str, source_version: str, reason: str = "") -> dict[str, str]:
    return {"version": str(version), "source_stand": source_stand, "source_version": str(source_version),
            "reason": reason or f"pushed from {source_stand} (version {source_version} there)"}


def start_acceptance(cfg: ModelConfig, version: str, source_stand: str, source_version: str, *, reason: str = "",
                     log: Log | None = None) -> str:
    """Start ``cfg``'s stand's acceptance run for ``version`` (as registered on this stand's registry)."""
    if not cfg.accepts:
        raise AcceptanceError(f"{cfg.stand.name} is not a stand versions are pushed to (it heads the chain or stands "
                              "alone): it has no acceptance DAG")
    run_id = names.acceptance_run_id(source_stand, source_version)
    state = start_dag_run(cfg, names.ACCEPT, run_id, acceptance_conf(version, source_stand, source_version, reason),
                          log)
    if log:
        log(f"{cfg.name}: acceptance run {run_id} of version {version} on {cfg.stand.name}: {state}")
    return state


def start_dag_run(cfg: ModelConfig, job: str, run_id: str, conf: dict[str, Any], log: Log | None = None,
                  unpause: bool = True) -> str:
    """Start a run of one of ``cfg``'s DAGs on its stand: "created", or "exists" (that run id ran or waits).
    ``unpause``: the acceptance DAG has no schedule, so unpausing it only lets triggered runs run; a DAG a
    person paused on purpose (inference) stays paused."""
    stand = cfg.stand
    dag_id = names.dag_id(cfg.name, stand.name, job)
    if stand.backend == "local":
        return _queue_locally(cfg, dag_id, run_id, conf)
    from mlops_module.release.airflow_api import credentials_for, trigger_dag_run

    if not stand.api_url:
        raise AcceptanceError(f"stand {stand.name} has no airflow.api_url in the stands file ({dag_id} can't be "
                              "started there); add it, or start the run in its Airflow by hand with conf "
                              f"{json.dumps(conf)}")
    return trigger_dag_run(stand.api_url, dag_id, run_id, conf, credentials=credentials_for(stand.name), log=log,
                           unpause=unpause)


def _queue_locally(cfg: ModelConfig, dag_id: str, run_id: str, conf: dict[str, Any]) -> str:
    """A queued run in the local stand's Airflow (a child process: Airflow's settings are per process)."""
    from mlops_module.release.deploy import target_for

    stand = cfg.stand
    if stand.dags.startswith("s3://"):
        raise AcceptanceError(f"{stand.name}'s DAGs live in {stand.dags}: a local stand's runs are queued from a "
                              "directory on this machine (airflow.dags in the stands file)")
    home = names.local_stand_home(stand.name)
    folder = target_for(stand.dags, cfg.name, stand.name).location
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "queue.log"
    with tempfile.TemporaryDirectory(prefix="mlops-queue-") as tmp, log_path.open("ab") as out:
        result_file = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "mlops_module.local.airflow_runner", "--home", str(stand.local_airflow_home),
                   "--dags", stand.dags, "--folder", folder, "--dag-id", dag_id, "--conf", json.dumps(conf),
                   "--result", str(result_file), "--log", str(log_path), "--queue-run-id", run_id]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CTX_"))}
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0 or not result_file.exists():
            raise AcceptanceError(f"could not queue {dag_id} on {stand.name} (exit {done.returncode}); see {log_path}")
        result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    if "error" in result:
        raise AcceptanceError(f"could not queue {dag_id} on {stand.name}: {result['error']}")
    return str(result["state"])
