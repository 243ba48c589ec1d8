"""Airflow on one machine, without a scheduler: SQLite in a home of its own, DAGs run by ``dag.test()``.

``mlops demo`` uses it in its own process; ``mlops run`` starts this module as a child process
(``python -m mlops_module.local.airflow_runner``) so that the caller's Airflow settings, or a test session's,
are never mixed with the local stand's. Airflow is imported only after its environment is set.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_module.errors import MlopsError


class LocalAirflowError(MlopsError):
    """Airflow could not be set up, or the DAGs don't load; the message says where the log is."""


def log_tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def airflow_environment(home: Path, dags: Path) -> dict[str, str]:
    """The variables that point Airflow at ``home`` (config, SQLite database) and the DAG folder."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }


class LocalAirflow:
    """Airflow with its home in ``home`` and its DAG folder at ``dags``, set for this whole process."""

    def __init__(self, home: Path, dags: Path, log: Path) -> None:
        self.home = home
        self.log = log
        if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(home):
            raise LocalAirflowError("Airflow is already imported in this process with another AIRFLOW_HOME; "
                                    "run this as its own process")
        home.mkdir(parents=True, exist_ok=True)
        os.environ.update(airflow_environment(home, dags))

    def ensure_database(self) -> None:
        """Create or upgrade the database (a child process: safe from any thread). `airflow db migrate` costs
        seconds even when there is nothing to do, so it runs once per database and Airflow version."""
        from importlib.metadata import version

        stamp, marker = f"apache-airflow {version('apache-airflow')}", self.home / ".mlops-migrated"
        if (self.home / "airflow.db").is_file() and marker.is_file() and marker.read_text() == stamp:
            return
        done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise LocalAirflowError(f"`airflow db migrate` failed (exit {done.returncode}); see {self.log}")
        marker.write_text(stamp)

    def migrate(self, fail_queued: bool = True) -> None:
        """Create or upgrade the database; mark runs an interrupted earlier session left as failed.

        No scheduler runs here: a run left ``running`` would hold the "training in flight" guard forever.
        Queued runs are a trigger's work waiting for its scheduler: kept unless ``fail_queued``.
        """
        self.ensure_database()
        from airflow.dag_processing.bundles.manager import DagBundlesManager

        DagBundlesManager().sync_bundles_to_db()  # type: ignore[no-untyped-call]  # the dag processor's job; dag.test() needs the bundle row
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import update

        states = ["queued", "running"] if fail_queued else ["running"]
        with create_session() as session:
            stale: Any = session.execute(update(DagRun).where(DagRun.state.in_(states)).values(state="failed"))
            if stale.rowcount:
                print(f"marked {stale.rowcount} run(s) an interrupted earlier session left behind as failed",
                      flush=True)

    def run(self, folder: Path, dag_id: str, run_conf: dict[str, str],
            dates: dict[str, Any] | None = None) -> tuple[str, str, dict[str, str]]:
        """Parse ``folder`` as the scheduler would, then run one DAG: its run id, state and task states.

        ``dates`` (``logical_date``, ``run_after``) go to dag.test as given; an explicit
        ``logical_date=None`` is a run without one, as a manual trigger makes.
        """
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

        bag = DagBag(dag_folder=str(folder))
        if bag.import_errors:
            raise LocalAirflowError(f"the DAGs in {folder} don't load: {bag.import_errors}")
        if dag_id not in bag.dags:
            raise LocalAirflowError(f"{folder} has no DAG {dag_id} (it has: {', '.join(sorted(bag.dags)) or 'none'})")
        sync_bag_to_db(bag, "dags-folder", None)
        dag_run = bag.dags[dag_id].test(run_conf=run_conf, **(dates or {}))
        instances = sorted(dag_run.get_task_instances(), key=lambda ti: (ti.start_date is None, ti.start_date or 0))
        return str(dag_run.run_id), str(dag_run.state), {ti.task_id: str(ti.state) for ti in instances}

    def queued_run(self, dag_id: str, run_id: str | None = None) -> QueuedRun | None:
        """A run a trigger queued (the oldest, or the one named), waiting for a scheduler that isn't here."""
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        query = select(DagRun).where(DagRun.dag_id == dag_id, DagRun.state == "queued")
        if run_id is not None:
            query = query.where(DagRun.run_id == run_id)
        with create_session() as session:
            found = session.scalars(query.order_by(DagRun.run_after)).first()
            if found is None:
                return None
            return QueuedRun(str(found.run_id), found.logical_date, found.run_after, dict(found.conf or {}))

    def run_queued(self, folder: Path, dag_id: str, queued: QueuedRun,
                   run_conf: dict[str, str] | None = None) -> tuple[str, str, dict[str, str]]:
        """Run what the scheduler would have: the queued run's dates and conf (``run_conf`` on top).

        dag.test starts a new DAG run and deletes the run of the same logical date; but the queued row is
        the trigger's record (the monitoring DAG's cooldown looks its run id up), so it is kept: its logical
        date moved aside (NULL) for the new run, its state set to the new run's when that ends. A trigger
        without a logical date runs at the time it was queued, from which Airflow infers a manual run's
        data interval anyway (an explicit None would make dag.test delete another run without one).
        """
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import update

        row = (DagRun.dag_id == dag_id) & (DagRun.run_id == queued.run_id)
        with create_session() as session:
            session.execute(update(DagRun).where(row).values(logical_date=None, state="running"))
        dates = {"logical_date": queued.logical_date or queued.run_after, "run_after": queued.run_after}
        result = self.run(folder, dag_id, {**queued.conf, **(run_conf or {})}, dates)
        with create_session() as session:
            session.execute(update(DagRun).where(row).values(state=result[1]))
        return result


    def queue(self, folder: Path, dag_id: str, run_id: str, run_conf: dict[str, Any]) -> str:
        """Queue a run of ``dag_id`` for this Airflow's scheduler (here: the next ``mlops run`` of that DAG), as
        the REST API's POST .../dagRuns does on a Kubernetes stand: "created", or "exists" when a run with that
        id is there already (the same push deployed twice starts one run)."""
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from airflow.utils.types import DagRunTriggeredByType
        from sqlalchemy import select

        bag = DagBag(dag_folder=str(folder))
        if dag_id not in bag.dags:
            raise LocalAirflowError(f"{folder} has no DAG {dag_id} (it has: {', '.join(sorted(bag.dags)) or 'none'}"
                                    f"{'; import errors: ' + str(bag.import_errors) if bag.import_errors else ''})")
        sync_bag_to_db(bag, "dags-folder", None)
        with create_session() as session:
            found = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).first()
            if found is not None:
                if dict(found.conf or {}) != run_conf:  # another push under the same id: say so
                    raise LocalAirflowError(f"run {run_id} of {dag_id} exists already with another conf "
                                            f"({json.dumps(found.conf)}, not {json.dumps(run_conf)})")
                return "exists"
        trigger_dag(dag_id=dag_id, run_id=run_id, conf=run_conf, logical_date=None,
                    triggered_by=DagRunTriggeredByType.REST_API, replace_microseconds=False)
        return "created"


@dataclass(frozen=True)
class QueuedRun:
    run_id: str
    logical_date: datetime.datetime | None
    run_after: datetime.datetime | None
    conf: dict[str, str]


def report_task_states(stream: Any) -> None:
    """Write ``<task>: <state>`` lines to ``stream`` as tasks start and end (Airflow's listener interface).

    Progress only: when this Airflow's listener interface differs, the run goes on without it.
    """
    try:
        from airflow.listeners import hookimpl
        from airflow.sdk.listener import get_listener_manager
    except ImportError:
        return

    def say(task_instance: Any, state: str) -> None:
        stream.write(f"{task_instance.task_id}: {state}\n")
        stream.flush()

    class Progress:
        @hookimpl
        def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
            say(task_instance, "running")

        @hookimpl
        def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
            say(task_instance, "success")

        @hookimpl
        def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
            say(task_instance, "failed")

    try:
        get_listener_manager().add_listener(Progress())  # type: ignore[no-untyped-call]
    except Exception as exc:  # progress is optional; the run is not
        print(f"no task progress: {exc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """The child process of ``mlops run``: one DAG run; the result as JSON in ``--result``."""
    parser = argparse.ArgumentParser(prog="python -m mlops_module.local.airflow_runner")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--dags", type=Path, required=True, help="the stand's DAG folder")
    parser.add_argument("--folder", type=Path, required=True, help="the model's deployed bundle in it")
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--conf", default="{}", help="run conf as a JSON object")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--progress-fd", type=int, help="where task state lines go")
    parser.add_argument("--queue-run-id", metavar="ID", help="queue a run with this id and --conf, run nothing")
    parser.add_argument("--queued-only", action="store_true", help="run what a trigger queued, or nothing")
    args = parser.parse_args(argv)
    if args.queue_run_id:
        airflow = LocalAirflow(args.home, args.dags, args.log)
        try:
            airflow.ensure_database()  # not migrate(): it would fail the runs an `mlops run` has in flight
            from airflow.dag_processing.bundles.manager import DagBundlesManager

            DagBundlesManager().sync_bundles_to_db()  # type: ignore[no-untyped-call]
            outcome = {"state": airflow.queue(args.folder, args.dag_id, args.queue_run_id, json.loads(args.conf))}
        except MlopsError as exc:
            outcome = {"error": str(exc)}
        args.result.write_text(json.dumps(outcome), encoding="utf-8")
        return 0
    airflow = LocalAirflow(args.home, args.dags, args.log)
    progress = os.fdopen(args.progress_fd, "w", encoding="utf-8") if args.progress_fd is not None else sys.stdout
    report_task_states(progress)
    try:
        airflow.migrate(fail_queued=False)
        queued = airflow.queued_run(args.dag_id)
        run_conf = json.loads(args.conf)
        if queued is None and args.queued_only:
            raise LocalAirflowError(f"no run of {args.dag_id} is queued: a push starts one (the deploy job of the "
                                    "stand that pushed), and a push held for approval waits for `mlops approve`")
        if queued is not None:  # what the scheduler would run next: a trigger's run, with its conf
            progress.write(f"a trigger queued run {queued.run_id}: running it, with its dates and conf\n")
            progress.flush()
            run_id, state, tasks = airflow.run_queued(args.folder, args.dag_id, queued, run_conf)
        else:
            run_id, state, tasks = airflow.run(args.folder, args.dag_id, run_conf)
        result: dict[str, Any] = {"run_id": run_id, "state": state, "tasks": tasks,
                                  "queued_run": queued.run_id if queued else None,
                                  "conf": {**(queued.conf if queued else {}), **run_conf}}
    except MlopsError as exc:
        result = {"error": str(exc)}
    args.result.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
