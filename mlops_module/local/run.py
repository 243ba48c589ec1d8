"""``mlops run``: run one of a model's deployed DAGs on a local stand, as its scheduler would.

A local stand has no scheduler and, on a laptop, often no MLflow running. This runs the DAG that
``mlops deploy`` published (not a fresh render: what runs is what was deployed) with Airflow in a child
process whose home is under ``$MLOPS_HOME/<stand>/airflow`` (SQLite), and, when nothing answers at the
stand's loopback tracking URI, an MLflow server there for the run's duration, its state under
``$MLOPS_HOME/<stand>/mlflow`` so models and runs outlive it. A run a trigger queued (monitoring's
retrain) is the one the next ``mlops run`` of that DAG picks up, as a scheduler would.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops_module import names
from mlops_module.errors import MlopsError
from mlops_module.kinds import Log
from mlops_module.local.airflow_runner import airflow_environment, log_tail
from mlops_module.local.services import (
    MlflowServer,
    answers,
    java_environment,
    mlflow_server_command,
    stop_process_group,
)
from mlops_module.spec.config import ModelConfig

LOOPBACK = {"127.0.0.1", "localhost"}  # where MlflowServer listens (IPv4 loopback)


class RunError(MlopsError):
    """The DAG could not be run here (wrong stand, nothing deployed, no MLflow); the message says what to do."""


@dataclass
class RunResult:
    """One DAG run: its Airflow state, task states, and for a train run the version it registered."""

    dag_id: str
    run_id: str
    state: str
    tasks: dict[str, str]
    log: str
    seconds: float
    queued_run: str | None = None
    version: str | None = None
    gate: str | None = None
    gate_summary: str | None = None
    alias: dict[str, str | None] = field(default_factory=dict)
    mlflow_ui: str | None = None
    conf_version: str | None = None  # an acceptance run's pushed version

    @property
    def ok(self) -> bool:
        return self.state == "success"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def tracking_server(uri: str, root: Path, log: Log) -> Iterator[str | None]:
    """The stand's MLflow for the duration of a run: the one answering at ``uri``, else one started there.

    Yields the command that serves the same state again (for browsing) when it started one, else None.
    """
    if not uri.startswith("http") or answers(uri):
        yield None
        return
    parsed = urllib.parse.urlsplit(uri)
    if parsed.hostname not in LOOPBACK or parsed.port is None or parsed.path.strip("/"):
        raise RunError(f"the stand's MLflow ({uri}) does not answer; start it, or point the stand's "
                       "mlflow.tracking_uri at http://127.0.0.1:PORT for `mlops run` to start one there")
    log(f"starting MLflow on {uri} (SQLite in {root}) for this run")
    with MlflowServer(root, parsed.port) as server:
        yield shlex.join(mlflow_server_command(server.root, server.port))


@contextlib.contextmanager
def one_run_at_a_time(home: Path) -> Iterator[int]:
    """One ``mlops run`` per local stand: they share Airflow's SQLite database, and each run marks the
    runs it finds ``running`` as left behind by an interrupted one; it also owns the MLflow it starts.

    Yields the lock's file descriptor: the Airflow child inherits it, so the lock lasts as long as the
    run does, even if this process is killed outright."""
    import fcntl

    home.mkdir(parents=True, exist_ok=True)
    with (home / ".mlops-run.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise RunError(f"another `mlops run` is running on this stand ({lock.read().strip() or 'pid unknown'}); "
                           "wait for it to finish") from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        try:
            yield lock.fileno()
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)


def deployed_folder(cfg: ModelConfig, log: Log) -> Path:
    """The deployed bundle's directory; a warning when it differs from what the config renders now."""
    from mlops_module import workflows
    from mlops_module.release.deploy import plan, target_for

    target = target_for(cfg.stand.dags, cfg.name, cfg.stand.name)
    live = target.live()
    if not live and cfg.accepts:
        raise RunError(f"nothing of {cfg.name} is deployed on {cfg.stand.name} ({target.location}) yet: versions "
                       f"reach {cfg.stand.name} by a push from {cfg.stand.previous} (its deploy job deploys them), and "
                       f"a push held for approval waits for `mlops approve --stand {cfg.stand.name}`")
    if not live:
        raise RunError(f"nothing of {cfg.name} is deployed on {cfg.stand.name} ({target.location}): run "
                       f"`mlops package --stand {cfg.stand.name}` and `mlops deploy --stand {cfg.stand.name}` first")
    if plan(workflows.render(cfg), live, target.location).changes:
        log(f"warning: the DAGs deployed on {cfg.stand.name} differ from what the config renders now; running "
            f"the deployed ones (`mlops deploy --stand {cfg.stand.name}` publishes the change)")
    return Path(target.location)


def run_dag(cfg: ModelConfig, job: str, *, run_conf: dict[str, str] | None = None, stands_file: Path | None = None,
            log: Log = print) -> RunResult:
    """Run the deployed ``job`` DAG of ``cfg`` on its (local) stand; the caller decides what failure means."""
    stand = cfg.stand
    dag_id = names.dag_id(cfg.name, stand.name, job)
    if stand.backend != "local":
        raise RunError(f"{stand.name} is a {stand.backend} stand: its Airflow runs {dag_id} (trigger it there); "
                       "`mlops run` runs DAGs of a local stand on this machine")
    if stand.dags.startswith("s3://"):
        raise RunError(f"{stand.name}'s DAGs live in {stand.dags}: `mlops run` runs them from a directory on this "
                       "machine (airflow.dags in the stands file)")
    if job == names.ACCEPT and not cfg.accepts:
        raise RunError(f"{stand.name} has no acceptance DAG: versions are not pushed to it (it heads the chain or "
                       "stands alone)")
    if job != names.ACCEPT and job not in {j.kind for j in cfg.jobs}:
        raise RunError(f"{cfg.name} has no {job} job on {stand.name} ({job}.enabled is false)")
    folder = deployed_folder(cfg, log)
    home = names.local_stand_home(stand.name)
    logs = home / "runs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_path = logs / f"{dag_id}-{stamp}.log"
    airflow = stand.local_airflow_home
    with one_run_at_a_time(airflow) as lock, tracking_server(stand.mlflow_tracking_uri, home / "mlflow", log) as ui:
        log(f"running {dag_id} (Airflow and task logs: {log_path})")
        queued_only = job == names.ACCEPT and not (run_conf or {}).get("version")  # a push starts acceptance
        result = _run_child(airflow, Path(stand.dags), folder, dag_id, run_conf or {}, stands_file,
                            log_path, log, lock, queued_only)
        run = RunResult(dag_id, result["run_id"], result["state"], result["tasks"], str(log_path),
                        round(time.monotonic() - started, 1), result.get("queued_run"), mlflow_ui=ui,
                        conf_version=(result.get("conf") or {}).get("version"))
        if job in ("train", names.ACCEPT):
            _train_outcome(cfg, run, job)
    return run


def _run_child(home: Path, dags: Path, folder: Path, dag_id: str, run_conf: dict[str, str],
               stands_file: Path | None, log_path: Path, log: Log, lock: int,
               queued_only: bool = False) -> dict[str, Any]:
    env = os.environ | airflow_environment(home, dags) | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # spark-submit, airflow
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
    }
    env |= java_environment(env)  # spark-submit's Java; none at all fails here, before Airflow starts
    if stands_file is not None:  # the DAG's own tasks (gate, promote) read the stands file from here
        env["MLOPS_STANDS"] = str(stands_file.resolve())
    with tempfile.TemporaryDirectory(prefix="mlops-run-") as tmp, log_path.open("ab") as out:
        result_file = Path(tmp) / "result.json"
        read_end, write_end = os.pipe()
        command = [sys.executable, "-m", "mlops_module.local.airflow_runner", "--home", str(home), "--dags", str(dags),
                   "--folder", str(folder), "--dag-id", dag_id, "--conf", json.dumps(run_conf),
                   "--result", str(result_file), "--log", str(log_path), "--progress-fd", str(write_end),
                   *(["--queued-only"] if queued_only else [])]
        try:
            # Its own session: a terminal's Ctrl-C reaches this process, which stops the child's whole group.
            child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     pass_fds=(write_end, lock), start_new_session=True)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        try:
            reader = threading.Thread(target=_relay_progress, args=(read_end, log), daemon=True)
            reader.start()
            returncode = child.wait()
            reader.join(timeout=5)  # a grandchild could hold the pipe open; progress is not worth waiting for
        finally:
            if child.poll() is None:  # interrupted: the run must not go on training behind the caller's back
                stop_group(child)
        if returncode != 0 or not result_file.exists():
            raise RunError(f"Airflow stopped (exit {returncode}) before {dag_id} finished:\n"
                           f"{log_tail(log_path)}\nfull log: {log_path}")
        result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    if "error" in result:
        raise RunError(f"{result['error']}\nfull log: {log_path}")
    return result


def stop_group(child: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """Stop the child and everything it started (spark-submit, Python workers).

    SIGINT first: Airflow's task runner answers SIGTERM by killing the task and going on to the next one,
    while KeyboardInterrupt ends ``dag.test``.
    """
    import signal

    stop_process_group(child, signal.SIGINT, grace)


def _relay_progress(fd: int, log: Log) -> None:
    started = time.monotonic()
    with os.fdopen(fd, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            log(f"  [{time.monotonic() - started:5.0f} s] {line.strip()}")


def _train_outcome(cfg: ModelConfig, run: RunResult, job: str = "train") -> None:
    """The version the train run registered (or the acceptance run was given), the gate's verdict on it and where
    the stand's alias points."""
    from mlops_module import workflows

    # information only: the run has happened, whatever it says
    outcome = workflows.train_outcome(cfg, run.run_id, version=run.conf_version if job == names.ACCEPT else None)
    run.version, run.gate, run.gate_summary = outcome.version, outcome.verdict, outcome.summary
    if outcome.alias_read:
        run.alias = {cfg.stand.name: outcome.alias}


def summary_lines(run: RunResult) -> list[str]:
    """What a person reads after ``mlops run``: the run, each task, the model version's outcome."""
    lines = [f"{run.dag_id}: run {run.run_id} {run.state} in {run.seconds:.0f} s"]
    if run.queued_run:
        lines.append(f"  (the run a trigger had queued: {run.queued_run})")
    lines += [f"  {task:<16} {state}" for task, state in run.tasks.items()]
    if run.version is not None:
        verdict = f"gate {run.gate_summary or run.gate}" if run.gate else "not gated"
        lines.append(f"model version {run.version}: {verdict}")
    for stand, version in run.alias.items():
        lines.append(f"alias {stand} -> version {version}" if version else f"no version holds the {stand} alias yet")
    if not run.ok:
        lines.append(f"log: {run.log}")
    if run.mlflow_ui:
        lines.append(f"browse MLflow: {run.mlflow_ui}")
    return lines
