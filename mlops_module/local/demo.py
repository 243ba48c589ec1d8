"""``mlops demo``: the whole lifecycle of the bundled example on this machine, with the real tools.

One directory holds everything (``--dir``, default ``$MLOPS_HOME/demo``): a copy of the example repo and four
stands ``mdp -> int -> lt -> prom`` set up as a platform would, each its own world: its own MLflow server
(SQLite), its own storage directory, its own DAG folder and Airflow home (spark-submit in local mode stands in
for spark-operator). Only the promoter's push crosses between them. The story, in Airflow and MLflow:

1. data: deterministic synthetic churn events (the example's ``src/data.py``) up to today in each stand's storage;
   the last week's customers have drifted (longer tenure, higher charges, more basic plans);
2. validate, package for mdp, deploy mdp (what the Jenkins pipeline does);
3. mdp's train DAG: spark-submit trains, the gate passes, the promoter moves ``mdp`` and pushes to int, whose
   deploy job (``mlops deploy --package ... --version ...``) publishes int's DAGs and queues its acceptance run;
4. int's acceptance run (evaluate: candidate and champion on int's data), its gate, promotion, push to lt;
5. lt asks for a person: ``mlops approve --stand lt``; then lt's acceptance run (load), its push to prom;
6. prom's acceptance run (smoke), then the inference run prom's promotion started;
7. prom's monitoring DAG finds the drift and triggers a retrain; the retrain passes prom's gate and waits for the
   approval the chain requires on the way to prom;
8. a summary: each stand's alias and the evidence its verdict came from; how to open each stand's MLflow.

Each run starts over (``--clean`` also removes what an earlier demo left).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mlops_module import names
from mlops_module.building.package import ENVIRONMENT
from mlops_module.errors import MlopsError
from mlops_module.kinds import Log
from mlops_module.local.airflow_runner import log_tail
from mlops_module.local.services import MlflowServer, java_environment, mlflow_server_command
from mlops_module.names import mlops_home

if TYPE_CHECKING:
    from mlops_module.release.registry import RegistryClient

MARKER = ".mlops-demo"
CHAIN = ("mdp", "int", "lt", "prom")
TRAIN_STAND = CHAIN[0]  # where the train DAG runs; every later stand accepts what the one before pushed
UTC = datetime.timezone.utc
TODAY = datetime.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DATA_DAYS = 134  # up to today: the acceptance runs' windows end when they start
DRIFT_INTERVAL = (TODAY - datetime.timedelta(days=7), TODAY)  # the last week: its customers have drifted
TRAIN_INTERVAL = (TODAY - datetime.timedelta(days=14), TODAY - datetime.timedelta(days=7))
MIN_ROWS_PER_DAY = 1100  # monitoring decides on one scored day: at least monitoring.drift.min_rows (1000)
TRAIN, INFER, MONITOR = (names.SPARK_TASK[job] for job in ("train", "inference", "monitoring"))
PROMOTED = {TRAIN: "success", names.TASK_GATE: "success", names.TASK_PROMOTE: "success"}  # Airflow task states
MONITORED = {names.TASK_CHECK_INTERVAL: "success", MONITOR: "success", names.TASK_DECIDE: "success"}
INFERRED = {names.TASK_CHECK_INTERVAL: "success", INFER: "success", names.TASK_CHECK_OUTPUT: "success"}
# The demo's platform: what each stand checks before a pushed version takes its alias.
# Each kind of check once (the built-in stands run more: evaluate and smoke everywhere, load too on LT); prom
# evaluates, so the retrain there is compared with prom's champion on prom's own data.
CHECKS = {"int": ["smoke"], "lt": ["load"], "prom": ["evaluate"]}


class DemoError(MlopsError):
    """A demo step failed; the message names the step and where its full log is."""


def default_dir() -> Path:
    return mlops_home() / "demo"


@dataclass(frozen=True)
class Layout:
    """Where the demo keeps each thing; all under one root, one folder per stand where a platform has one."""

    root: Path

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def config(self) -> Path:
        return self.repo / "model.yaml"

    @property
    def stands_file(self) -> Path:
        return self.root / "stands.yaml"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def airflow(self) -> Path:
        """The Airflow home the demo's stands share (each stand's DAGs in a folder of its own)."""
        return self.root / "airflow"

    @property
    def log(self) -> Path:
        return self.root / "demo.log"

    def mlflow(self, stand: str) -> Path:
        return self.root / "mlflow" / stand

    def dags(self, stand: str) -> Path:
        return self.root / "dags" / stand

    def storage(self, stand: str) -> Path:
        return self.root / "storage" / stand


@dataclass
class DemoResult:
    """What the demo left behind, read back from each stand's MLflow at the end."""

    root: str
    model: str
    aliases: dict[str, str | None]
    versions: dict[str, dict[str, dict[str, str]]]  # stand -> version -> tags
    titles: dict[str, dict[str, str]] = field(default_factory=dict)  # stand -> version -> its description's 1st line
    evidence: dict[str, str] = field(default_factory=dict)  # stand -> where its verdict came from
    inference: dict[str, Any] = field(default_factory=dict)
    monitoring: dict[str, Any] = field(default_factory=dict)
    retrain: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    log: str = ""
    ui_commands: dict[str, str] = field(default_factory=dict)
    prom_ui: str = ""
    status_command: str = ""
    history_command: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --- the directory ---------------------------------------------------------------------------


def prepare(root: Path, clean: bool) -> Layout:
    """Create (or, with ``clean``, empty) the demo directory; never touch a directory that isn't one."""
    root = root.expanduser().absolute()
    if not re.fullmatch(r"/[A-Za-z0-9_.\-/]*", str(root)):
        raise DemoError(f"{root}: the demo directory's path may hold only letters, digits and _ . - / (it becomes "
                        "file:// storage URIs in the demo's stands file); choose another --dir")
    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        raise DemoError(f"{root} exists and is not a demo directory (no {MARKER} in it); choose another --dir")
    if clean and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by `mlops demo`; `mlops demo --clean` removes this directory\n")
    return Layout(root)


def start_over(layout: Layout) -> None:
    """Each demo run tells its story from the start: the stands' registries, storage, DAGs and Airflow homes
    an earlier run left are removed (the log, the marker and the directory stay)."""
    for folder in ("repo", "mlflow", "storage", "dags", "home", "airflow"):
        if (layout.root / folder).exists():
            shutil.rmtree(layout.root / folder)


def copy_example(layout: Layout) -> None:
    """A fresh copy of the example each run, built for the
    Python running the demo (its lock is universal: it installs on every version in names.EXAMPLE_PYTHONS)."""
    if layout.repo.exists():
        shutil.rmtree(layout.repo)
    shutil.copytree(names.bundled_example(), layout.repo,
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc"))
    pin_python(layout.config, names.example_python())


def pin_python(config: Path, version: str) -> None:
    """Set ``python.version`` in a model.yaml, keeping the rest of the file as it is."""
    text = config.read_text(encoding="utf-8")
    block = r'(?m)^(python:\n(?:[ \t]+#.*\n)*[ \t]+version:[ \t]*)"[0-9.]+"'
    pinned, count = re.subn(block, rf'\g<1>"{version}"', text)
    if count != 1:
        raise DemoError(f"{config}: expected one `python:` block starting with a quoted `version:`, to set it "
                        f"to {version}")
    config.write_text(pinned, encoding="utf-8")


def interpreter_home(version: str) -> str:
    """The directory of this machine's ``python<version>``: the local stands' stand-in for the image's.

    The environment archive links ``bin/python`` to ``<python_home>/python<version>``, so this must be
    the real interpreter's directory, not a venv's or a version manager's shim's.
    """
    import subprocess

    candidates = [sys.executable] if f"{sys.version_info[0]}.{sys.version_info[1]}" == version else []
    candidates += [c for c in (shutil.which(f"python{version}"),) if c]
    for candidate in candidates:
        probe = subprocess.run([candidate, "-c", "import os, sys; print(os.path.realpath(sys.executable))"],
                               capture_output=True, text=True)
        real = Path(probe.stdout.strip())
        if probe.returncode == 0 and (real.parent / f"python{version}").exists():
            return str(real.parent)
    raise DemoError(f"the example runs on Python {version} (python.version in its model.yaml) and the local "
                    f"stands run jobs with this machine's python{version}, but none was found: install it")


def stands_document(layout: Layout, tracking_uris: dict[str, str], python_home: str) -> dict[str, Any]:
    """The demo's stands file: the built-in chain's stands, every stand local, each with its own registry,
    storage, DAG folder (and, under MLOPS_HOME, Airflow home); LT asks for a manual approval, as built in."""
    stands: dict[str, Any] = {}
    for stand in CHAIN:
        stands[stand] = {"airflow": {"dags": str(layout.dags(stand)), "home": str(layout.airflow)},
                         "storage": {"uri": f"file://{layout.storage(stand)}"},
                         "mlflow": {"tracking_uri": tracking_uris[stand]}}
        if stand in CHECKS:
            stands[stand]["acceptance"] = {"checks": CHECKS[stand]}
    stands["lt"]["deploy"] = {"approval": "manual"}
    # The example's model.yaml also tunes the built-in `local` sandbox: the demo's file defines it too (unused).
    stands["local"] = {"airflow": {"dags": str(layout.dags("local"))},
                       "storage": {"uri": f"file://{layout.storage('local')}"},
                       "mlflow": {"tracking_uri": tracking_uris[CHAIN[0]]}}
    return {
        "order": list(CHAIN),
        "standalone": ["local"],
        "defaults": {
            "backend": "local",
            "kubernetes": {"namespace": "default", "service_account": "default", "conn_id": "kubernetes_default",
                           "startup_timeout_seconds": 600},
            "spark": {"image": "apache/spark:3.5.5", "version": "3.5.5", "python_versions": ["3.10", "3.11", "3.12"],
                      "python_home": python_home, "time_to_live_seconds": 0,
                      # short jobs on a small machine: the JVM's quick compiler and a simple collector start faster
                      "conf": {"spark.ui.enabled": "false", "spark.eventLog.enabled": "false",
                               "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}},
            # Each push runs `mlops deploy --package ... --version ...` for the next stand, as its Jenkins deploy
            # job would: it publishes the stand's DAGs and queues the stand's acceptance run.
            "deploy": {"trigger": "command", "approval": "auto"},
            # Only prom's new champion scores at once here; the other stands' promoters start nothing.
            "acceptance": {"start_inference": False},
        },
        "stands": stands | {"prom": {**stands["prom"], "acceptance": {"checks": CHECKS["prom"],
                                                                        "start_inference": True}}},
    }


def write_stands(layout: Layout, tracking_uris: dict[str, str], python_home: str) -> None:
    import yaml

    header = ("# Written by `mlops demo`: the chain mdp -> int -> lt -> prom, every stand local (spark-submit on this\n"
              "# machine), each with its own MLflow, storage and DAG folder. After the demo, for instance:\n"
              "#   MLOPS_HOME=<demo>/home mlops status repo/model.yaml --stands stands.yaml\n"
              "# (each stand's MLflow must be running for it: the summary prints how to start them).\n")
    body = yaml.safe_dump(stands_document(layout, tracking_uris, python_home), sort_keys=False)
    layout.stands_file.write_text(header + body, encoding="utf-8")


# --- output ----------------------------------------------------------------------------------


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[tuple[TextIO, TextIO]]:
    """Send everything written to file descriptors 1 and 2 (Airflow, Spark, MLflow, subprocesses) to ``log``;
    yield streams on the original standard output and error, for the demo's own progress lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    consoles = os.fdopen(os.dup(saved[0]), "w", buffering=1), os.fdopen(os.dup(saved[1]), "w", buffering=1)
    with log.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
    try:
        yield consoles
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        for console in consoles:
            console.close()


class Steps:
    """Numbered progress lines with each step's time; a failing step says where the log is."""

    def __init__(self, console: TextIO, total: int, log: Path) -> None:
        self.console, self.total, self.log, self.number = console, total, log, 0

    def say(self, text: str) -> None:
        print(text, file=self.console, flush=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[Log]:
        self.number += 1
        self.say(f"[{self.number:>2}/{self.total}] {title}")
        print(f"\n===== mlops demo step {self.number}: {title} =====", flush=True)  # into the log
        start = time.monotonic()
        try:
            yield lambda detail: self.say(f"        {detail}")
        except Exception:
            self.say(f"        failed after {time.monotonic() - start:.1f} s (full log: {self.log})")
            raise
        self.say(f"        done in {time.monotonic() - start:.1f} s")


# --- steps -----------------------------------------------------------------------------------


def _data_module(layout: Layout) -> Any:
    spec = importlib.util.spec_from_file_location("mlops_demo_data", layout.repo / "src" / "data.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_data(layout: Layout, model: str, rows_per_day: int, drifted: bool) -> int:
    """Write ``events.parquet`` (up to today) into every stand's storage; with ``drifted``, the last week's customers
    have drifted, and their outcomes (labels) have arrived."""
    import pandas as pd

    data = _data_module(layout)
    start = TODAY - datetime.timedelta(days=DATA_DAYS)
    clean_days = DATA_DAYS - (7 if drifted else 0)
    frames = [data.generate(rows_per_day * clean_days, seed=7, start=start, days=clean_days)]
    if drifted:
        frames.append(data.generate(rows_per_day * 7, seed=8, drift=1.0, start=DRIFT_INTERVAL[0], days=7))
    frame = pd.concat(frames, ignore_index=True)
    labels = frame[frame.ts >= pd.Timestamp(DRIFT_INTERVAL[0])][["customer_id", "churned"]]
    for stand in CHAIN:
        for target, table in ((layout.storage(stand) / names.data_prefix(model) / "events.parquet", frame),
                              (layout.storage(stand) / names.labels_prefix(model) / "labels.parquet", labels)):
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            table.to_parquet(staging, index=False)
            os.replace(staging, target)
    return len(frame)


def conf(interval: tuple[datetime.datetime, datetime.datetime], reason: str) -> dict[str, str]:
    return {"data_interval_start": interval[0].isoformat(), "data_interval_end": interval[1].isoformat(),
            "reason": reason}


class Airflow:
    """The demo's Airflow, one home (SQLite) for its four stands' DAG folders, run in this process: each stand's
    scheduler, played by ``dag.test`` on a DAG run, or on the run a trigger (a deploy job, a promotion, monitoring)
    queued there. (A platform gives each stand an Airflow of its own; one here saves a process per run.)"""

    def __init__(self, layout: Layout, model: str) -> None:
        from mlops_module.local.airflow_runner import LocalAirflow

        self.layout, self.model = layout, model
        self.local = LocalAirflow(layout.airflow, layout.root / "dags", layout.log)

    def prepare(self) -> None:
        """The database, and what the first DAG run would otherwise build while the demo waits: the in-process
        execution API that ``dag.test`` runs tasks through (built once per process)."""
        self.local.migrate(fail_queued=True)
        try:
            from airflow.sdk.execution_time.supervisor import in_process_api_server
        except ImportError:  # another Airflow: the first run builds it
            return
        _ = in_process_api_server().app

    def folder(self, stand: str) -> Path:
        return self.layout.dags(stand) / self.model / stand

    def run(self, stand: str, job: str, run_conf: dict[str, str]) -> tuple[str, dict[str, str]]:
        run_id, _, states = self.local.run(self.folder(stand), names.dag_id(self.model, stand, job), run_conf)
        return run_id, states

    def serve(self, stand: str, job: str) -> tuple[str, dict[str, str], dict[str, str]]:
        """The run a trigger queued for ``job`` on ``stand``: its run id, task states and conf."""
        dag_id = names.dag_id(self.model, stand, job)
        queued = self.local.queued_run(dag_id)
        if queued is None:
            raise DemoError(f"no run of {dag_id} is queued: the trigger that queues one did not run "
                            f"(see {self.layout.log})")
        run_id, _, states = self.local.run_queued(self.folder(stand), dag_id, queued)
        return run_id, states, queued.conf


def _expect(states: dict[str, str], expected: dict[str, str], what: str, log: Path) -> None:
    if states != expected:
        raise DemoError(f"{what}: task states {states}, expected {expected}. Last lines of {log}:\n{log_tail(log)}")


# --- the demo --------------------------------------------------------------------------------


def run_demo(root: Path | None = None, *, clean: bool = False, rows_per_day: int = 1200,
             progress_to_stderr: bool = False) -> DemoResult:
    """Run the whole lifecycle; progress goes to standard output (or error), tools' output to the demo's log."""
    if rows_per_day < MIN_ROWS_PER_DAY:
        raise DemoError(f"--rows-per-day must be at least {MIN_ROWS_PER_DAY}: prom's monitoring decides on one scored "
                        "day, and needs monitoring.drift.min_rows (1000) of them")
    os.environ.update(java_environment())  # Spark's Java for every process the demo starts; none: a clear error
    started = time.monotonic()
    layout = prepare(root or default_dir(), clean)
    layout.log.write_text("")
    os.environ.update({
        "MLOPS_HOME": str(layout.home),
        "MLOPS_STANDS": str(layout.stands_file),
        "MLOPS_ACTOR": "mlops-demo",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # spark-submit, mlflow
    })
    os.environ.pop("MLOPS_TEMPLATES", None)
    import signal

    def stop(signum: int, _frame: Any) -> None:  # a terminated demo still stops its MLflow server (finally)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return _run(layout, rows_per_day, progress_to_stderr, started)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(layout: Layout, rows_per_day: int, progress_to_stderr: bool, started: float) -> DemoResult:
    with output_to(layout.log) as (stdout, stderr):
        steps = Steps(stderr if progress_to_stderr else stdout, 13, layout.log)

        steps.say(f"mlops demo: the churn example through mdp -> int -> lt -> prom, four stands on this machine "
                  f"(each its own MLflow, storage, DAG folder and Airflow); state in {layout.root}")
        start_over(layout)
        # the ports the summary's commands serve each registry on again: the stands file names them
        servers = {stand: MlflowServer(layout.mlflow(stand), _port(port)) for stand, port in zip(CHAIN, UI_PORTS,
                                                                                                   strict=True)}
        # While the example is packaged: the first two stands' servers, Airflow's database, the environment's
        # unpacking; the last two stands' servers while mdp trains (their first push comes later)
        background = ThreadPoolExecutor(4)
        starting = background.submit(start_servers, [servers[stand] for stand in CHAIN[:2]], layout.root / "cache")
        try:
            result = _lifecycle(layout, steps, servers, starting, background, rows_per_day)
        finally:
            background.shutdown(wait=True)  # a server still starting is stopped below, not left behind
            for server in servers.values():
                server.stop()
    result.seconds = round(time.monotonic() - started, 1)
    result.log = str(layout.log)
    result.ui_commands = {stand: shlex.join(mlflow_server_command(layout.mlflow(stand), server.port))
                          for stand, server in servers.items()}
    result.prom_ui = f"http://127.0.0.1:{servers['prom'].port}/#/models/{result.model}"
    result.status_command = shlex.join(["env", f"MLOPS_HOME={layout.home}", *_mlops(), "status", str(layout.config),
                                        "--stands", str(layout.stands_file)])
    result.history_command = shlex.join(["env", f"MLOPS_HOME={layout.home}", *_mlops(), "history",
                                         str(layout.config), "--stands", str(layout.stands_file), "--stand", "prom"])
    return result


UI_PORTS = (5501, 5502, 5503, 5504)  # to browse each stand's MLflow after the demo
LATER_NICENESS = 10  # the servers that start while mdp trains take only the CPU its train job leaves


def _port(preferred: int) -> int:
    """``preferred`` when it is free on loopback (then the summary's commands serve the stand there again), else any."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            from mlops_module.local.services import free_port

            return free_port()
    return preferred


def start_servers(servers: list[MlflowServer], cache: Path, niceness: int = 0) -> None:
    """Start MLflow servers, all at once. A new database costs MLflow its schema migrations: when ``cache`` holds
    an empty database of this MLflow version, each server starts from a copy of it; else each makes its own and
    the first one's is kept in ``cache`` for the next servers (and the next demo)."""
    from importlib.metadata import version

    template = cache / f"mlflow-{version('mlflow')}-empty.db"
    if template.is_file():
        for server in servers:
            server.root.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template, server.root / "mlflow.db")
    with ThreadPoolExecutor(max(len(servers), 1)) as pool:
        list(pool.map(lambda server: server.start(niceness), servers))
    if not template.is_file() and servers:
        cache.mkdir(parents=True, exist_ok=True)
        staging = template.with_suffix(f".tmp-{os.getpid()}")
        shutil.copyfile(servers[0].root / "mlflow.db", staging)  # still empty: nothing was logged yet
        os.replace(staging, template)


def warm_environment(uris: list[str]) -> None:
    """Unpack the packaged environment into the local stand's cache now, while the servers start: the first job
    would do it otherwise (the same cache: :func:`mlops_module.local.spark_submit.unpacked_archive`)."""
    from mlops_module.local.spark_submit import local_path, unpacked_archive

    for uri in uris:
        unpacked_archive(Path(local_path(uri)), mlops_home() / "cache" / "environments")


def _mlops() -> list[str]:
    """How to call this toolkit again from any shell: the script beside this interpreter, if installed."""
    script = Path(sys.executable).parent / "mlops"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlops_module"]


def _lifecycle(layout: Layout, steps: Steps, servers: dict[str, MlflowServer], starting: Future[None],
               background: ThreadPoolExecutor, rows_per_day: int) -> DemoResult:
    """The demo's steps. Work nothing waits for yet runs in ``background``, on the CPU the step in front leaves
    idle (most of a step is one process's imports, or one Spark job): each is awaited where it is first needed."""
    from mlops_module import workflows
    from mlops_module.release import registry
    from mlops_module.spec.stands import load_stands

    tracking_uris = {stand: server.uri for stand, server in servers.items()}

    say = print  # into the log
    with steps.step("copy the example, write the stands file, generate data in each stand's storage") as note:
        copy_example(layout)
        from mlops_module.spec.config import load_config

        version = str(load_config(layout.config, check_files=False).base["python"]["version"])
        write_stands(layout, tracking_uris, interpreter_home(version))
        stands = load_stands(layout.stands_file)
        model = workflows.resolve(layout.config, TRAIN_STAND, stands_file=layout.stands_file).cfg.name
        airflow = Airflow(layout, model)
        migrating = background.submit(airflow.prepare)
        rows = write_data(layout, model, rows_per_day, drifted=True)
        note(f"{rows} customer events ({rows_per_day} a day, the last {DATA_DAYS} days; the last week's customers "
             "have drifted and their outcomes arrived) in each stand's storage")

    with steps.step("validate the config on every stand") as note:
        resolved = {cfg.stand.name: cfg for cfg in workflows.resolve_all(layout.config, stands)}
        note(f"valid on {', '.join(resolved)}")

    with steps.step(f"package the environment and code for {TRAIN_STAND} (the Jenkins pipeline)") as note:
        report = workflows.package(resolved[TRAIN_STAND], log=say)
        for shipped in report.artifacts:
            note(f"{shipped.artifact}: {shipped.status} ({shipped.size / 1e6:.1f} MB) {shipped.uri}")
        unpacking = background.submit(warm_environment, [a.uri for a in report.artifacts if a.artifact == ENVIRONMENT])

    def deploy_head() -> None:
        workflows.deploy(workflows.resolve(layout.config, TRAIN_STAND, stands_file=layout.stands_file).cfg, log=say)

    with steps.step(f"deploy {TRAIN_STAND}'s DAGs and manifests (mlops deploy)") as note:
        deploy_head()
        note(f"{layout.dags(TRAIN_STAND)}/{model}/{TRAIN_STAND}/: train, inference and monitoring DAGs; the other "
             "stands get theirs from the push that reaches them (their deploy job: mlops deploy --package)")

    with steps.step(f"{' and '.join(CHAIN[:2])}'s MLflow servers (SQLite), the Airflow database, the environment "
                    "unpacked for the local stand: made meanwhile") as note:
        starting.result()
        migrating.result()
        unpacking.result()
        note(", ".join(f"{stand} {servers[stand].uri}" for stand in CHAIN[:2]) + f"; {' and '.join(CHAIN[2:])}'s "
             "servers start while mdp trains")
        later = background.submit(start_servers, [servers[stand] for stand in CHAIN[2:]], layout.root / "cache",
                                  LATER_NICENESS)

    mdp = registry.client(tracking_uris[TRAIN_STAND])
    with steps.step(f"train on {TRAIN_STAND}: its train DAG (spark-submit, gate, promote, push to int)") as note:
        run_id, states = airflow.run(TRAIN_STAND, "train", conf(TRAIN_INTERVAL, "mlops demo: training"))
        _expect(states, PROMOTED, f"{TRAIN_STAND} train DAG", layout.log)
        trained = workflows.trained_version(resolved[TRAIN_STAND], run_id, mdp)
        summary = registry.gate_summary(mdp, model, trained, TRAIN_STAND) or ""
        note(f"version {trained} passed mdp's gate ({summary}) and holds {TRAIN_STAND}; the push copied it to int, "
             "whose deploy job published int's DAGs and queued its acceptance run")

    versions: dict[str, str] = {TRAIN_STAND: trained}
    evidence: dict[str, str] = {TRAIN_STAND: _evidence_line(mdp, model, TRAIN_STAND, trained)}
    for stand in CHAIN[1:]:
        before = CHAIN[CHAIN.index(stand) - 1]
        if stand == "lt":
            with steps.step(f"lt asks for a person: mlops approve --stand lt --version {versions['int']}") as note:
                event = workflows.approve(layout.config, "lt", versions["int"], stands_file=layout.stands_file,
                                          reason="mlops demo: change ticket DEMO-1", log=say)
                note(f"approved by {event.get('by')}: lt's deploy job ran and queued lt's acceptance run")
        with steps.step(f"{stand}: its acceptance run ({', '.join(CHECKS[stand])}, gate on {stand}'s own evidence, "
                        "promote)") as note:
            if not later.done():  # lt's server takes int's push, prom's lt's
                waited = time.monotonic()
                later.result()
                note(f"waited {time.monotonic() - waited:.1f} s for {' and '.join(CHAIN[2:])}'s MLflow servers")
            later.result()
            run_id, states, run_conf = airflow.serve(stand, names.ACCEPT)
            wanted = {**{names.SPARK_TASK[c]: "success" for c in CHECKS[stand]}, names.TASK_GATE: "success",
                      names.TASK_PROMOTE: "success"}
            if resolved[stand].stand.start_inference:
                wanted[names.TASK_START_INFERENCE] = "success"
            _expect(states, wanted, f"{stand}'s acceptance run", layout.log)
            versions[stand] = str(run_conf["version"])
            here = registry.client(tracking_uris[stand])
            evidence[stand] = _evidence_line(here, model, stand, versions[stand])
            note(f"version {versions[stand]} of {stand}'s registry (version {versions[before]} of {before}'s): "
                 f"{registry.gate_summary(here, model, versions[stand], stand) or ''}")
            note(f"evidence: {evidence[stand]}")

    prom = registry.client(tracking_uris["prom"])
    inference: dict[str, Any] = {}
    with steps.step("prom scores with its new champion: the inference run its promotion started") as note:
        run_id, states, _ = airflow.serve("prom", "inference")
        _expect(states, INFERRED, "prom inference DAG", layout.log)
        inference = _inference(prom, model, run_id)
        note(f"{inference['rows']} customers of {inference['interval'][0][:10]} (the last week's customers have "
             f"drifted: longer tenure, higher charges, more basic plans) scored by version {inference['version']}")

    with steps.step("monitor prom: its monitoring DAG (drift job, decision, trigger)") as note:
        run_id, states = airflow.run("prom", "monitoring", conf(DRIFT_INTERVAL, ""))
        if states.get(MONITOR) != "success" or states.get(names.TASK_DECIDE) != "success":
            _expect(states, MONITORED, "prom monitoring DAG", layout.log)
        monitoring = _monitoring(layout, prom, model, run_id, states)
        for feature in monitoring["features"]:
            note(f"{feature['name']}: PSI {feature['psi']:.3f}, KS {_num(feature['ks'])}, JS {_num(feature['js'])}"
                 f"{'  drifted' if feature['drifted'] else ''}")
        if monitoring["performance"]:
            perf = monitoring["performance"]
            note(f"performance: {perf['metric']} {_num(perf['value'])} on {perf['rows']} labelled rows")
        note(f"decision: {monitoring['decision']}: {monitoring['reason']}")
        if monitoring["report"]:
            note(f"report: {monitoring['report']}")

    retrain: dict[str, Any] = {}
    if states.get(names.TASK_TRIGGER_TRAIN) == "success":
        with steps.step("retrain on prom: the triggered train run (train, prom's gate, the stand's policy)") as note:
            run_id, states, _ = airflow.serve("prom", "train")
            version = workflows.trained_version(resolved["prom"], run_id, prom)
            tags = registry.version_tags(prom, model, version)
            retrain = {"stand": "prom", "version": version, "reason": tags.get(names.RETRAIN_REASON_TAG, ""),
                       "verdict": tags.get(names.gate_tag("prom"), ""),
                       "summary": registry.gate_summary(prom, model, version, "prom") or "",
                       "held": tags.get(names.held_tag("prom")), "states": states}
            note(f"version {version} trained because: {retrain['reason'][:110]}")
            note(f"prom's gate: {retrain['verdict']} ({retrain['summary']})")
            if retrain["held"] == names.AWAITING:
                note(f"held: the chain asks for a person on the way to prom (LT's approval), so a retrain there waits "
                     f"for one too; prom keeps version {registry.alias_version(prom, model, 'prom')}. To let it in: "
                     f"mlops approve --stand prom --version {version}")
    else:
        steps.say(f"[{steps.total:>2}/{steps.total}] no retrain triggered ({monitoring['decision']})")
    aliases = {stand: registry.alias_version(registry.client(tracking_uris[stand]), model, stand) for stand in CHAIN}
    clients = {stand: registry.client(tracking_uris[stand]) for stand in CHAIN}
    return DemoResult(str(layout.root), model, aliases=aliases,
                      versions={stand: _versions(clients[stand], model) for stand in CHAIN},
                      titles={stand: _titles(clients[stand], model) for stand in CHAIN},
                      evidence=evidence, inference=inference, monitoring=monitoring, retrain=retrain)


def _evidence_line(mlflow: RegistryClient, model: str, stand: str, version: str) -> str:
    """Where a stand's verdict came from, in one line: the gate's record of what it decided on."""
    from mlops_module.runtime import read_json_artifact

    run_id = mlflow.get_model_version(model, version).run_id
    gate = read_json_artifact(mlflow, run_id, names.gate_artifact(stand))
    parts = []
    for check in gate["checks"]:
        value = _num(check["value"])
        if check.get("gain_low") is not None:
            value += f" (gain over the champion in [{check['gain_low']:.3f}, {check['gain_high']:.3f}])"
        parts.append(f"{check['name']} {value}")
    return f"{gate['evidence']}: {'; '.join(parts)}"


def _inference(mlflow: RegistryClient, model: str, airflow_run_id: str) -> dict[str, Any]:
    from mlops_module.release import registry

    run = mlflow.get_run(registry.run_of_airflow_run(mlflow, model, "prom", airflow_run_id, job="inference"))
    return {"stand": "prom", "rows": int(run.data.metrics.get("rows_scored", 0)),
            "version": run.data.tags.get(names.RUN_TAG_MODEL_VERSION),
            "predictions": run.data.tags.get(names.RUN_TAG_PREDICTIONS),
            "interval": [run.data.tags.get(names.RUN_TAG_DATA_INTERVAL_START, ""),
                         run.data.tags.get(names.RUN_TAG_DATA_INTERVAL_END, "")]}


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def _monitoring(layout: Layout, mlflow: RegistryClient, model: str, airflow_run_id: str,
                states: dict[str, str]) -> dict[str, Any]:
    """What the monitoring run measured and decided (read through MLflow, as the decide task does), and the
    local path of its HTML report (the demo's artifact store is a directory: open it in a browser)."""
    from mlops_module.monitoring.orchestration import load_result
    from mlops_module.runtime import read_json_artifact

    run_id, measured = load_result(mlflow, model, "prom", airflow_run_id)
    decision = read_json_artifact(mlflow, run_id, names.DECISION_ARTIFACT)
    run = mlflow.get_run(run_id)
    report = next(layout.mlflow("prom").glob(f"artifacts/*/{run_id}/artifacts/report/drift_report.html"), None)
    watched = set(decision.get("drifted") or [])
    features = [{**f, "drifted": f["name"] in watched} for f in measured["features"]]
    return {"stand": "prom", "states": states, "run_id": run_id, "features": features,
            "performance": measured.get("performance"),
            "decision": run.data.tags.get(names.RUN_TAG_DECISION),
            "reason": run.data.tags.get(names.RUN_TAG_DECISION_REASON),
            "report": str(report) if report else None, "interval": [t.isoformat() for t in DRIFT_INTERVAL]}


def _versions(mlflow: RegistryClient, model: str) -> dict[str, dict[str, str]]:
    found = mlflow.search_model_versions(f"name = '{model}'")
    return {str(v.version): dict(v.tags) for v in sorted(found, key=lambda v: int(v.version))}


def _titles(mlflow: RegistryClient, model: str) -> dict[str, str]:
    """Each version's verdict and reason: the first line of its description (release/story.py)."""
    found = mlflow.search_model_versions(f"name = '{model}'")
    return {str(v.version): (v.description or "").split("\n", 1)[0].replace("**", "") for v in found}


def summary_lines(result: DemoResult) -> list[str]:
    """The closing table: each stand's alias and where its verdict came from; then what happened next."""
    lines = ["", f"{'stand':<6} {'alias':<8} verdicts on that stand's own registry (version: verdict)"]
    for stand in CHAIN:
        holder = result.aliases.get(stand)
        verdicts = [f"{v}: {tags[names.gate_tag(stand)]}" for v, tags in result.versions.get(stand, {}).items()
                    if names.gate_tag(stand) in tags]
        lines.append(f"{stand:<6} {holder or '-':<8} {', '.join(verdicts) or '-'}")
    lines.append("where each stand's verdict came from:")
    lines += [f"  {stand}: {line}" for stand, line in result.evidence.items()]
    for stand in CHAIN:
        for version, tags in result.versions.get(stand, {}).items():
            if tags.get(names.gate_tag(stand)) == names.FAILED:
                lines.append(f"  version {version}: {result.titles.get(stand, {}).get(version, 'rejected')}")
    if result.inference:
        i = result.inference
        lines.append(f"inference on prom: {i['rows']} customers scored by version {i['version']} -> {i['predictions']}")
    if result.monitoring:
        m = result.monitoring
        drifted = ", ".join(f"{f['name']} PSI {f['psi']:.2f}" for f in m["features"] if f["drifted"]) or "none"
        lines.append(f"monitoring on prom: drifted {drifted}; decision {m['decision']}")
        if m.get("report"):
            lines.append(f"  drift report: {m['report']}")
    if result.retrain:
        r = result.retrain
        held = " and waits for approval (mlops approve --stand prom)" if r.get("held") == names.AWAITING else ""
        lines.append(f"retrained on prom: version {r['version']}, prom's gate {r['verdict']}{held}")
    lines += ["", "Look at it:"]
    lines += [f"  MLflow of {stand}: {command}" for stand, command in result.ui_commands.items()]
    lines += [f"              then open {result.prom_ui} (prom)",
              f"  status:     {result.status_command}   (with the four MLflow servers above running)",
              f"  history:    {result.history_command}",
              f"  DAGs:       {result.root}/dags/<stand>/{result.model}/<stand>/",
              f"  full log:   {result.log}",
              "",
              f"Demo finished in {int(result.seconds // 60)} min {result.seconds % 60:.0f} s. "
              "Run it again to start over."]
    return lines
