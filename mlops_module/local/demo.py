"""``mlops demo``: the whole lifecycle of the bundled example on this machine, with the real tools.

One directory holds everything (``--dir``, default ``$MLOPS_HOME/demo``): a copy of the example repo,
a stands file whose stands ``local → mdp → int → lt → prom`` are all local (spark-submit in local mode,
storage in directories), an MLflow server's SQLite database and artifacts, an Airflow home (SQLite)
with the rendered DAGs, and one log with every tool's output. The story, in Airflow and MLflow:

1. data: deterministic synthetic churn events (the example's ``src/data.py``) in each stand's storage;
2. validate, package (environment archive + code package to local's storage), render every stand;
3. the local stand's train DAG runs under Airflow (``dag.test``): spark-submit trains, the gate
   passes, the promote task moves the ``local`` alias and pushes the archives to mdp;
4. mdp, int, lt and prom each gate and promote the same version, as their deploy jobs would;
5. a planted candidate (the config changed to train on ``tenure`` alone) runs through the train
   DAG: its gate fails, it is tagged ``failed``, no alias moves;
6. the prom inference DAG scores a day with the version under ``prom``;
7. the data shifts (a week of drifted customers) and the prom monitoring DAG runs on it;
8. a summary: aliases per stand, gate verdicts, inference, monitoring; how to open the MLflow UI.

Re-running continues from the directory's state (new versions are gated against the champions);
``--clean`` starts over.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mlops_module import names
from mlops_module.errors import MlopsError
from mlops_module.kinds import Log
from mlops_module.local.airflow_runner import log_tail
from mlops_module.local.services import MlflowServer, java_environment, mlflow_server_command
from mlops_module.names import mlops_home

if TYPE_CHECKING:
    from mlops_module.release.registry import RegistryClient
    from mlops_module.spec.config import ModelConfig

MARKER = ".mlops-demo"
CHAIN = ("local", "mdp", "int", "lt", "prom")
TRAIN_STAND = CHAIN[0]  # where the train DAG runs; every later stand gates and promotes what it pushed
UTC = datetime.timezone.utc
DATA_START = datetime.datetime(2025, 1, 1, tzinfo=UTC)
CLEAN_DAYS = 127  # 2025-01-01 .. 2025-05-08
TRAIN_INTERVAL = (datetime.datetime(2025, 4, 24, tzinfo=UTC), datetime.datetime(2025, 5, 1, tzinfo=UTC))
INFERENCE_INTERVAL = (datetime.datetime(2025, 5, 1, tzinfo=UTC), datetime.datetime(2025, 5, 2, tzinfo=UTC))
DRIFT_INTERVAL = (datetime.datetime(2025, 5, 8, tzinfo=UTC), datetime.datetime(2025, 5, 15, tzinfo=UTC))
PLANTED_ARGS = ("--features", "tenure")
MIN_ROWS_PER_DAY = 50
TRAIN, INFER, MONITOR = (names.SPARK_TASK[job] for job in ("train", "inference", "monitoring"))
PROMOTED = {TRAIN: "success", names.TASK_GATE: "success", names.TASK_PROMOTE: "success"}  # Airflow task states
REJECTED = {TRAIN: "success", names.TASK_GATE: "failed", names.TASK_PROMOTE: "upstream_failed"}
MONITORED = {MONITOR: "success", names.TASK_DECIDE: "success"}
UI_PORT = 5500


class DemoError(MlopsError):
    """A demo step failed; the message names the step and where its full log is."""


def default_dir() -> Path:
    return mlops_home() / "demo"


@dataclass(frozen=True)
class Layout:
    """Where the demo keeps each thing; all under one root."""

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
    def mlflow(self) -> Path:
        return self.root / "mlflow"

    @property
    def airflow(self) -> Path:
        return self.root / "airflow"

    @property
    def dags(self) -> Path:
        return self.airflow / "dags"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def log(self) -> Path:
        return self.root / "demo.log"

    def storage(self, stand: str) -> Path:
        return self.root / "storage" / stand


@dataclass
class DemoResult:
    """What the demo left behind, read back from MLflow at the end."""

    root: str
    model: str
    aliases: dict[str, str]
    versions: dict[str, dict[str, str]]
    inference: dict[str, Any] = field(default_factory=dict)
    monitoring: dict[str, Any] = field(default_factory=dict)
    planted_version: str | None = None
    retrain: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    log: str = ""
    ui_command: str = ""
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


def _remove_old_layout(layout: Layout) -> None:
    """Bundles an earlier version of the demo wrote to ``<dags>/<stand>/``: their DAG ids are the ones
    deployed now under ``<dags>/<model>/<stand>/``, and Airflow refuses a DAG id defined twice."""
    for stand in CHAIN:
        old = layout.dags / stand
        if (old / names.BUNDLE_INDEX).is_file():
            shutil.rmtree(old)


def copy_example(layout: Layout) -> None:
    """A fresh copy of the example each run: the demo edits it (the planted candidate), and builds it for the
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


def stands_document(layout: Layout, tracking_uri: str, python_home: str) -> dict[str, Any]:
    """The demo's stands file: the built-in chain's stand names, every stand local, one shared registry."""
    return {
        "order": list(CHAIN),
        "defaults": {
            "backend": "local",
            "kubernetes": {"namespace": "default", "service_account": "default", "conn_id": "kubernetes_default",
                           "startup_timeout_seconds": 600},
            "mlflow": {"tracking_uri": tracking_uri},
            "spark": {"image": "apache/spark:3.5.5", "version": "3.5.5", "python_versions": ["3.10", "3.11", "3.12"],
                      "python_home": python_home, "time_to_live_seconds": 0,
                      "conf": {"spark.ui.enabled": "false", "spark.eventLog.enabled": "false"}},
            # Each push runs `mlops deploy --package` for the next stand, as a Jenkins deploy job would.
            "deploy": {"trigger": "command", "approval": "auto"},
            "airflow": {"dags": str(layout.dags)},  # one Airflow: <dags>/<model>/<stand>/ per stand
        },
        "stands": {stand: {"storage": {"uri": f"file://{layout.storage(stand)}"}} for stand in CHAIN},
    }


def write_stands(layout: Layout, tracking_uri: str, python_home: str) -> None:
    import yaml

    header = ("# Written by `mlops demo`: the chain local -> mdp -> int -> lt -> prom, every stand local\n"
              "# (spark-submit on this machine, storage in directories), the demo's MLflow server the one registry.\n"
              "# Use it after the demo: mlops history repo/model.yaml --stands stands.yaml --stand prom\n")
    body = yaml.safe_dump(stands_document(layout, tracking_uri, python_home), sort_keys=False)
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
    """Write ``events.parquet`` into every stand's storage; with ``drifted``, a shifted week is appended."""
    import pandas as pd

    data = _data_module(layout)
    frames = [data.generate(rows_per_day * CLEAN_DAYS, seed=7, start=DATA_START, days=CLEAN_DAYS)]
    if drifted:
        days = (DRIFT_INTERVAL[1] - DRIFT_INTERVAL[0]).days
        frames.append(data.generate(rows_per_day * days, seed=8, drift=1.0, start=DRIFT_INTERVAL[0], days=days))
    frame = pd.concat(frames, ignore_index=True)
    # The outcomes of the drifted week "arrive later": the labels monitoring joins to the scored rows.
    labels = frame[frame.ts >= pd.Timestamp(DRIFT_INTERVAL[0])][["customer_id", "churned"]]
    for stand in CHAIN:
        for target, data in ((layout.storage(stand) / names.data_prefix(model) / "events.parquet", frame),
                             (layout.storage(stand) / names.labels_prefix(model) / "labels.parquet", labels)):
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            data.to_parquet(staging, index=False)
            os.replace(staging, target)
    return len(frame)


def plant_candidate(layout: Layout) -> None:
    """The data scientist's change the gate must reject: train on tenure alone."""
    text = layout.config.read_text(encoding="utf-8")
    original = 'args: ["--max-iter", "50"]'
    if text.count(original) != 1:
        raise DemoError(f"{layout.config}: expected one line `{original}` to change for the planted candidate")
    planted = 'args: ["--max-iter", "50", ' + ", ".join(f'"{a}"' for a in PLANTED_ARGS) + "]"
    layout.config.write_text(text.replace(original, planted), encoding="utf-8")


def conf(interval: tuple[datetime.datetime, datetime.datetime], reason: str) -> dict[str, str]:
    return {"data_interval_start": interval[0].isoformat(), "data_interval_end": interval[1].isoformat(),
            "reason": reason}


class Airflow:
    """The demo's Airflow (home and DAGs in the demo directory), running one stand's DAGs by name."""

    def __init__(self, layout: Layout) -> None:
        from mlops_module.local.airflow_runner import LocalAirflow

        self.layout = layout
        self.local = LocalAirflow(layout.airflow, layout.dags, layout.log)

    def migrate(self) -> None:
        self.local.migrate(fail_queued=True)  # the demo runs every queued run it causes itself

    def run(self, model: str, stand: str, job: str, run_conf: dict[str, str]) -> tuple[str, dict[str, str]]:
        run_id, _, states = self.local.run(self.layout.dags / model / stand, names.dag_id(model, stand, job), run_conf)
        return run_id, states

    def run_triggered(self, model: str, stand: str, job: str,
                      trigger_run_id: str) -> tuple[str, dict[str, str], dict[str, str]]:
        """Play the scheduler for the run a trigger queued: its run id, task states and conf."""
        dag_id = names.dag_id(model, stand, job)
        queued = self.local.queued_run(dag_id, trigger_run_id)
        if queued is None:
            raise DemoError(f"the monitoring DAG reported a trigger, but {dag_id} has no queued run {trigger_run_id}")
        run_id, _, states = self.local.run_queued(self.layout.dags / model / stand, dag_id, queued)
        return run_id, states, queued.conf


def _expect(states: dict[str, str], expected: dict[str, str], what: str, log: Path) -> None:
    if states != expected:
        raise DemoError(f"{what}: task states {states}, expected {expected}. Last lines of {log}:\n{log_tail(log)}")


# --- the demo --------------------------------------------------------------------------------


def run_demo(root: Path | None = None, *, clean: bool = False, rows_per_day: int = 500,
             progress_to_stderr: bool = False) -> DemoResult:
    """Run the whole lifecycle; progress goes to standard output (or error), tools' output to the demo's log."""
    if rows_per_day < MIN_ROWS_PER_DAY:
        raise DemoError(f"--rows-per-day must be at least {MIN_ROWS_PER_DAY}: the gate needs a test set")
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

        steps.say(f"mlops demo: the churn example through local -> mdp -> int -> lt -> prom on this machine; "
                  f"state in {layout.root}")
        with steps.step("start MLflow (SQLite backend) on loopback") as note:
            server = MlflowServer(layout.mlflow).start()
            note(f"tracking server {server.uri}")
        try:
            result = _lifecycle(layout, steps, server.uri, rows_per_day)
        finally:
            server.stop()
    result.seconds = round(time.monotonic() - started, 1)
    result.log = str(layout.log)
    result.ui_command = shlex.join(mlflow_server_command(layout.mlflow, UI_PORT))
    result.history_command = shlex.join([*_mlops(), "history", str(layout.config), "--stands",
                                         str(layout.stands_file), "--stand", CHAIN[-1]])
    return result


def _mlops() -> list[str]:
    """How to call this toolkit again from any shell: the script beside this interpreter, if installed."""
    script = Path(sys.executable).parent / "mlops"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlops_module"]


def _lifecycle(layout: Layout, steps: Steps, tracking_uri: str, rows_per_day: int) -> DemoResult:
    from mlops_module import workflows
    from mlops_module.release import registry
    from mlops_module.spec.stands import load_stands

    with steps.step("copy the example, write the stands file, generate data") as note:
        copy_example(layout)
        _set_aside_decisions(layout)
        from mlops_module.spec.config import load_config

        version = str(load_config(layout.config, check_files=False).base["python"]["version"])
        write_stands(layout, tracking_uri, interpreter_home(version))
        stands = load_stands(layout.stands_file)
        model = workflows.resolve(layout.config, TRAIN_STAND, stands_file=layout.stands_file).cfg.name
        rows = write_data(layout, model, rows_per_day, drifted=False)
        note(f"{rows} customer events ({rows_per_day} a day from {DATA_START.date()}) in each stand's storage")

    with steps.step("validate the config on every stand") as note:
        resolved = {cfg.stand.name: cfg for cfg in workflows.resolve_all(layout.config, stands)}
        note(f"valid on {', '.join(resolved)}")

    with steps.step(f"package the environment and code for {TRAIN_STAND}") as note:
        report = workflows.package(resolved[TRAIN_STAND], log=lambda m: print(m, flush=True))
        for shipped in report.artifacts:
            note(f"{shipped.artifact}: {shipped.status} ({shipped.size / 1e6:.1f} MB) {shipped.uri}")

    def deploy_local() -> None:
        workflows.deploy(workflows.resolve(layout.config, TRAIN_STAND, stands_file=layout.stands_file).cfg,
                         log=lambda m: print(m, flush=True))

    with steps.step(f"deploy {TRAIN_STAND}'s DAGs and manifests (mlops deploy)") as note:
        _remove_old_layout(layout)
        deploy_local()
        note(f"{layout.dags}/{model}/{TRAIN_STAND}/: 3 DAGs and 3 SparkApplication manifests; every later stand "
             "gets its own from the push that reaches it (deploy trigger: mlops deploy --package)")

    airflow = Airflow(layout)
    with steps.step("initialise Airflow's database (SQLite)"):
        airflow.migrate()

    mlflow = registry.client(tracking_uri)
    cfg = resolved[TRAIN_STAND]
    with steps.step(f"train on {TRAIN_STAND}: the train DAG under Airflow (spark-submit, gate, promote)") as note:
        run_id, states = airflow.run(model, TRAIN_STAND, "train", conf(TRAIN_INTERVAL, "mlops demo: training"))
        _expect(states, PROMOTED,
                f"{TRAIN_STAND} train DAG", layout.log)
        champion = registry.alias_version(mlflow, model, TRAIN_STAND)
        assert champion is not None
        note(f"version {champion} passed the gate and holds {TRAIN_STAND}; pushed to {CHAIN[1]} "
             f"(Airflow run {run_id})")

    keys = workflows.artifact_keys(cfg)
    with steps.step(f"promote through {', '.join(CHAIN[1:])} (each stand's gate, then its promotion)") as note:
        for stand in CHAIN[1:]:
            here = resolved[stand]
            _, result = workflows.gate(here, version=champion, mlflow=mlflow, log=lambda m: print(m, flush=True))
            if not result.passed:  # e.g. a re-run: prom's champion is the version retrained there last time
                note(f"{stand}: gate {result.verdict}: {result.summary()}; the chain stops here, {stand} keeps "
                     f"version {registry.alias_version(mlflow, model, stand)}")
                break
            workflows.promote(workflows.Resolved(here, stands), champion, keys, mlflow=mlflow,
                              reason=f"mlops demo: deploy job of {stand}", log=lambda m: print(m, flush=True))
            note(f"{stand}: gate {result.verdict}, alias {stand} -> {champion}")

    with steps.step(f"plant a worse candidate on {TRAIN_STAND}: the config now trains on tenure alone") as note:
        plant_candidate(layout)
        workflows.package(workflows.resolve(layout.config, TRAIN_STAND, stands_file=layout.stands_file).cfg,
                          log=lambda m: print(m, flush=True))
        deploy_local()
        run_id, states = airflow.run(model, TRAIN_STAND, "train",
                                     conf(TRAIN_INTERVAL, "mlops demo: a candidate trained on tenure alone"))
        _expect(states, REJECTED,
                "the planted candidate's train DAG", layout.log)
        planted = workflows.trained_version(cfg, run_id, mlflow)
        summary = registry.version_tags(mlflow, model, planted).get(names.gate_summary_tag(TRAIN_STAND), "")
        note(f"version {planted} rejected: {summary}")
        note(f"{TRAIN_STAND} still holds version {registry.alias_version(mlflow, model, TRAIN_STAND)}")
        copy_example(layout)  # back to the champion's config
        deploy_local()

    with steps.step("shift the data: a week of drifted customers") as note:
        rows = write_data(layout, model, rows_per_day, drifted=True)
        note(f"{rows} events now, {DRIFT_INTERVAL[0].date()} .. {DRIFT_INTERVAL[1].date()} drifted "
             "(longer tenure, higher charges, more basic plans)")

    inference: dict[str, Any] = {}
    with steps.step("score the drifted week on prom: the inference DAG") as note:
        run_id, states = airflow.run(model, "prom", "inference", conf(DRIFT_INTERVAL, ""))
        _expect(states, {INFER: "success"}, "prom inference DAG", layout.log)
        run = mlflow.get_run(registry.run_of_airflow_run(mlflow, model, "prom", run_id, job="inference"))
        inference = {"stand": "prom", "rows": int(run.data.metrics.get("rows_scored", 0)),
                     "version": run.data.tags.get(names.RUN_TAG_MODEL_VERSION),
                     "predictions": run.data.tags.get(names.RUN_TAG_PREDICTIONS),
                     "interval": [t.isoformat() for t in DRIFT_INTERVAL]}
        note(f"{inference['rows']} customers scored by version {inference['version']} into "
             f"{inference['predictions']}")

    with steps.step("monitor prom on that week: the monitoring DAG (drift job, decision, trigger)") as note:
        run_id, states = airflow.run(model, "prom", "monitoring", conf(DRIFT_INTERVAL, ""))
        if states.get(MONITOR) != "success" or states.get(names.TASK_DECIDE) != "success":
            _expect(states, MONITORED, "prom monitoring DAG", layout.log)
        monitoring = _monitoring(layout, mlflow, model, run_id, states)
        for feature in monitoring["features"]:
            note(f"{feature['name']}: PSI {feature['psi']:.3f}, KS {_num(feature['ks'])}, JS {_num(feature['js'])}"
                 f"{'  drifted' if feature['drifted'] else ''}")
        if monitoring["performance"]:
            p = monitoring["performance"]
            note(f"performance: {p['metric']} {_num(p['value'])} on {p['rows']} labelled rows")
        note(f"decision: {monitoring['decision']}: {monitoring['reason']}")
        if monitoring["report"]:
            note(f"report: {monitoring['report']}")

    retrain: dict[str, Any] = {}
    if states.get(names.TASK_TRIGGER_TRAIN) == "success":
        with steps.step("retrain on prom: the triggered train DAG run (train, gate, promote)") as note:
            retrain = _run_triggered(airflow, mlflow, resolved["prom"], run_id, layout)
            note(f"version {retrain['version']} trained because: {retrain['reason']}")
            note(f"gate on prom: {retrain['verdict']} ({retrain['summary']}); prom holds version "
                 f"{registry.alias_version(mlflow, model, 'prom')}")
    else:
        steps.say(f"[{steps.total:>2}/{steps.total}] no retrain triggered ({monitoring['decision']})")
    return DemoResult(str(layout.root), model, aliases=_aliases(mlflow, model), versions=_versions(mlflow, model),
                      inference=inference, monitoring=monitoring, planted_version=planted, retrain=retrain)


def _set_aside_decisions(layout: Layout) -> None:
    """Each demo run is a story of its own: an earlier run's retrain must not hold this one's cooldown.
    Earlier decisions are kept (renamed), not deleted; their MLflow runs keep them too."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for folder in layout.root.glob("storage/*/monitoring/*/*/decisions"):
        folder.rename(folder.with_name(f"decisions-before-{stamp}"))


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
    report = next(layout.mlflow.glob(f"artifacts/*/{run_id}/artifacts/report/drift_report.html"), None)
    watched = set(decision.get("drifted") or [])
    features = [{**f, "drifted": f["name"] in watched} for f in measured["features"]]
    return {"stand": "prom", "states": states, "run_id": run_id, "features": features,
            "performance": measured.get("performance"),
            "decision": run.data.tags.get(names.RUN_TAG_DECISION),
            "reason": run.data.tags.get(names.RUN_TAG_DECISION_REASON),
            "report": str(report) if report else None, "interval": [t.isoformat() for t in DRIFT_INTERVAL]}


def _run_triggered(airflow: Airflow, mlflow: RegistryClient, cfg: ModelConfig, monitor_run_id: str,
                   layout: Layout) -> dict[str, Any]:
    """Play the scheduler for the run the trigger created: run it (same logical date, same conf) under dag.test."""
    from mlops_module import workflows
    from mlops_module.release import registry

    model, stand = cfg.name, cfg.stand.name
    run_id, states, run_conf = airflow.run_triggered(model, stand, "train", names.retrain_run_id(monitor_run_id))
    if states.get(TRAIN) != "success" or states.get(names.TASK_GATE) not in ("success", "failed"):
        _expect(states, PROMOTED,
                f"{stand} retrain", layout.log)
    version = workflows.trained_version(cfg, run_id, mlflow)
    tags = registry.version_tags(mlflow, model, version)
    return {"stand": stand, "version": version, "reason": tags.get(names.RETRAIN_REASON_TAG, ""),
            "verdict": tags.get(names.gate_tag(stand), ""), "summary": tags.get(names.gate_summary_tag(stand), ""),
            "conf": run_conf, "states": states}


def _aliases(mlflow: RegistryClient, model: str) -> dict[str, str]:
    aliases = mlflow.get_registered_model(model).aliases or {}
    return {stand: str(aliases[stand]) for stand in CHAIN if stand in aliases}


def _versions(mlflow: RegistryClient, model: str) -> dict[str, dict[str, str]]:
    found = mlflow.search_model_versions(f"name = '{model}'")
    return {str(v.version): dict(v.tags) for v in sorted(found, key=lambda v: int(v.version))}


def summary_lines(result: DemoResult) -> list[str]:
    """The closing table: each stand's alias, and each version's verdict there."""
    lines = ["", f"{'stand':<6} {'alias':<12} gate verdicts (version: verdict)"]
    for stand in CHAIN:
        holder = result.aliases.get(stand)
        verdicts = [f"{v}: {tags[names.gate_tag(stand)]}" for v, tags in result.versions.items()
                    if names.gate_tag(stand) in tags]
        lines.append(f"{stand:<6} {stand + ' -> ' + (holder or '-'):<12} {', '.join(verdicts) or '-'}")
    for version, tags in result.versions.items():
        for stand in CHAIN:
            if tags.get(names.gate_tag(stand)) == names.FAILED:
                lines.append(f"  version {version} on {stand}: {tags.get(names.gate_summary_tag(stand), '')}")
    if result.inference:
        i = result.inference
        lines.append(f"inference on {i['stand']}: {i['rows']} customers scored by version {i['version']} "
                     f"-> {i['predictions']}")
    if result.monitoring:
        m = result.monitoring
        drifted = ", ".join(f"{f['name']} PSI {f['psi']:.2f}" for f in m["features"] if f["drifted"]) or "none"
        lines.append(f"monitoring on {m['stand']}: drifted {drifted}; decision {m['decision']}")
        if m.get("report"):
            lines.append(f"  drift report: {m['report']}")
    if result.retrain:
        r = result.retrain
        lines.append(f"retrained on {r['stand']}: version {r['version']}, gate {r['verdict']}; why: {r['reason']}")
    lines += [
        "",
        "Look at it:",
        f"  MLflow UI:  {result.ui_command}",
        f"              then open http://127.0.0.1:{UI_PORT}/#/models/{result.model}",
        f"  history:    {result.history_command}",
        f"  DAGs:       {result.root}/airflow/dags/{result.model}/<stand>/",
        f"  full log:   {result.log}",
        "",
        f"Demo finished in {int(result.seconds // 60)} min {result.seconds % 60:.0f} s. "
        "Run it again to continue, or with --clean to start over.",
    ]
    return lines
