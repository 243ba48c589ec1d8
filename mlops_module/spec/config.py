"""Loading and validating ``model.yaml``: raw YAML stops here; typed, immutable configs leave.

Validation runs in two passes. First the file itself against the schema (overrides included, with
nothing required). Then, for each stand, the merged view (base deep-merged with ``stands.<name>``)
against the full schema plus the checks a schema can't express: cron expressions, stand-specific
Python versions, Kubernetes name lengths, Spark properties the operator rejects, files that must
exist. Every problem of every stand is reported at once, located in the file where it was written.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlops_module import names
from mlops_module.errors import ConfigError, Problem, UsageError
from mlops_module.spec.merge import deep_merge
from mlops_module.spec.schema import DURATION_SECONDS, K8S_CPU, REPO_FILE, apply_defaults, config_schema
from mlops_module.spec.stands import Stand, Stands
from mlops_module.spec.validation import schema_problems, suggest
from mlops_module.spec.yaml_loader import Document, Key, PathT, load_file

# Airflow's presets and the cron expressions they stand for
CRON_PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *",
                "@quarterly": "0 0 1 */3 *", "@yearly": "0 0 1 1 *"}

# Properties spark-operator's admission webhook refuses (sparkconf_validator.go, v2.5.2), and the
# ones this toolkit sets itself. Each maps to what to use instead.
DENIED_SPARK_CONF = {
    "spark.master": "the stand decides where jobs run",
    "spark.kubernetes.driver.master": "the stand decides where jobs run",
    "spark.kubernetes.container.image": "use spark.image",
    "spark.kubernetes.driver.container.image": "use spark.image",
    "spark.kubernetes.executor.container.image": "use spark.image",
    "spark.kubernetes.authenticate.driver.serviceAccountName": "the stand sets the service account",
    "spark.kubernetes.authenticate.executor.serviceAccountName": "the stand sets the service account",
    "spark.kubernetes.namespace": "the stand sets the namespace",
    "spark.kubernetes.driver.pod.name": "the operator names the driver <app>-driver",
    "spark.pyspark.python": "the toolkit points Spark at the packaged environment",
    "spark.pyspark.driver.python": "the toolkit points Spark at the packaged environment",
    "spark.archives": "the toolkit ships the environment archive",
    "spark.submit.pyFiles": "the toolkit ships the code package",
    "spark.app.name": "the toolkit names applications",
    names.S3A_ENDPOINT: "the stands file's storage.endpoint_url sets it",
    names.S3A_SSL: "the stands file's storage.endpoint_url sets it",
    names.S3A_PATH_STYLE: "the stands file's storage.path_style_access sets it",
    names.S3A_CREDENTIALS_PROVIDER: "the stands file's storage.credentials sets it",
}
DENIED_SPARK_CONF_PREFIXES = ("spark.kubernetes.authenticate.",)


@dataclass(frozen=True)
class Resources:
    cores: int
    memory: str
    core_limit: str
    memory_overhead: str | None
    instances: int


@dataclass(frozen=True)
class SparkSettings:
    image: str
    version: str
    driver: Resources
    executor: Resources
    conf: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Job:
    """One Spark job: ``train``, ``inference`` or ``monitoring``. ``script`` None means built-in."""

    kind: str
    script: str | None
    args: tuple[str, ...]
    schedule: str | None
    window_days: int | None
    enabled: bool = True
    # inference, monitoring: an empty window fails the run instead of skipping it (see dag_tasks)
    require_data: bool = False


@dataclass(frozen=True)
class MetricThreshold:
    name: str
    min: float | None
    max: float | None
    min_improvement: float | None
    tolerance: float = 0.0


@dataclass(frozen=True)
class Evaluation:
    """The built-in evaluate job's data and the paired bootstrap's settings."""

    data: str
    label: str
    time_column: str
    window_days: int
    samples: int
    confidence: float
    seed: int


@dataclass(frozen=True)
class QualityGate:
    script: str | None
    metrics: tuple[MetricThreshold, ...]
    args: tuple[str, ...] = ()
    evaluation: Evaluation | None = None


@dataclass(frozen=True)
class LoadCheck:
    """Thresholds of the load run, checked by the gate as the metrics ``load.duration_seconds`` and
    ``load.rows_per_second``."""

    max_duration_seconds: float | None
    min_rows_per_second: float | None

    def thresholds(self) -> tuple[MetricThreshold, ...]:
        found = []
        if self.max_duration_seconds is not None:
            found.append(MetricThreshold(LOAD_DURATION, None, self.max_duration_seconds, None))
        if self.min_rows_per_second is not None:
            found.append(MetricThreshold(LOAD_THROUGHPUT, self.min_rows_per_second, None, None))
        return tuple(found)


LOAD_DURATION, LOAD_THROUGHPUT, LOAD_ROWS = "load.duration_seconds", "load.rows_per_second", "load.rows_scored"


@dataclass(frozen=True)
class Drift:
    method: str
    threshold: float
    share: float
    features: tuple[str, ...]
    min_rows: int


@dataclass(frozen=True)
class Performance:
    metric: str
    min: float | None
    max: float | None
    id: str = "id"
    label: str = "label"
    score: str = "prediction"


@dataclass(frozen=True)
class Retrain:
    on: tuple[str, ...]
    cooldown: str
    cooldown_seconds: int


@dataclass(frozen=True)
class ModelNotifications:
    """The model's additions to its stand's notifications: more recipients, fewer events (None: the stand's)."""

    email: tuple[str, ...] = ()
    events: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ModelConfig:
    """The resolved config of one model on one stand: what rendering, packaging and promotion read."""

    name: str
    owner: str
    description: str
    python_version: str
    requirements: str
    spark: SparkSettings
    train: Job
    inference: Job
    monitoring: Job
    quality_gate: QualityGate
    drift: Drift
    performance: Performance | None
    retrain: Retrain
    stand: Stand
    source: Path
    repo_root: Path | None
    resolved: str  # canonical JSON of the merged config, with defaults: what the hash covers
    evaluate: Job | None = None
    smoke: Job | None = None
    load: Job | None = None
    load_check: LoadCheck = LoadCheck(None, None)
    keep: tuple[str, ...] = ()  # python.keep: what the environment archive keeps although no job runs it
    notify: ModelNotifications = ModelNotifications()

    @property
    def jobs(self) -> tuple[Job, ...]:
        """The jobs this stand runs (each a DAG and a manifest): train, and inference and monitoring unless disabled."""
        return tuple(j for j in (self.train, self.inference, self.monitoring) if j.enabled)

    @property
    def train_evaluates(self) -> bool:
        """The train DAG runs the model's evaluation script after training (its metrics decide the gate)."""
        return self.quality_gate.script is not None

    @property
    def acceptance_jobs(self) -> tuple[Job, ...]:
        """The checks a version pushed to this stand runs, in order (none where versions aren't pushed to)."""
        by_kind = {"evaluate": self.evaluate, "smoke": self.smoke, "load": self.load}
        return tuple(j for kind in self.stand.acceptance_checks if (j := by_kind[kind]) is not None)

    @property
    def spark_jobs(self) -> tuple[Job, ...]:
        """Every Spark job with a manifest on this stand: the DAGs' jobs, then the acceptance checks (and the
        evaluate job the train DAG runs when the model has its own evaluation script)."""
        extra = list(self.acceptance_jobs)
        if self.train_evaluates and self.evaluate is not None and self.evaluate not in extra:
            extra.insert(0, self.evaluate)
        return self.jobs + tuple(extra)

    @property
    def accepts(self) -> bool:
        """Versions are pushed to this stand: it has an acceptance DAG."""
        return self.stand.receives

    @property
    def config_hash(self) -> str:
        payload = json.dumps({"config": json.loads(self.resolved), "stand": asdict(self.stand)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ConfigFile:
    """A parsed ``model.yaml`` and its schema problems, before any stand is applied."""

    doc: Document
    repo_root: Path | None
    problems: tuple[Problem, ...] = ()

    @property
    def base(self) -> dict[str, Any]:
        data = self.doc.data if isinstance(self.doc.data, dict) else {}
        return {k: v for k, v in data.items() if k != "stands"}

    @property
    def overrides(self) -> dict[str, Any]:
        stands = self.doc.data.get("stands") if isinstance(self.doc.data, dict) else None
        return {k: v for k, v in stands.items() if isinstance(v, dict)} if isinstance(stands, dict) else {}


def load_config(path: Path, *, check_files: bool = True) -> ConfigFile:
    """Parse and schema-check the file. Paths in it are relative to its directory (the model repo).

    Schema problems are kept, not raised, so :func:`validate` can report them together with the
    per-stand checks; a file that isn't even YAML raises here.
    """
    doc = load_file(path)
    problems = schema_problems(doc, config_schema())
    return ConfigFile(doc, path.resolve().parent if check_files else None, tuple(problems))


def check(path: Path, stands: Stands, only: str | None = None, *, check_files: bool = True) -> list[ModelConfig]:
    """Load and validate in one go: every problem of the file and of every stand, at once."""
    known_stand(only, stands)
    return validate(load_config(path, check_files=check_files), stands, only)


def known_stand(name: str | None, stands: Stands) -> None:
    """A usage error (with a suggestion) for a stand the stands file doesn't define."""
    if name is not None and name not in stands.by_name:
        hint = suggest(name, list(stands.names))
        raise UsageError(f"unknown stand {name!r}{hint}; stands: {', '.join(stands.names)}")


def _unknown_stands(cfg: ConfigFile, stands: Stands) -> list[Problem]:
    return [
        cfg.doc.problem(
            ("stands", name),
            f"unknown stand {name!r}{suggest(name, list(stands.names))}; "
            f"the stands file ({stands.source}) defines: {', '.join(stands.names)}",
            at_key=True,
        )
        for name in cfg.overrides
        if name not in stands.by_name
    ]


def validate(cfg: ConfigFile, stands: Stands, only: str | None = None) -> list[ModelConfig]:
    """Resolve the config on every stand (or only one); raise with every problem of every stand."""
    known_stand(only, stands)
    problems: list[Problem] = list(cfg.problems) + _unknown_stands(cfg, stands)
    resolved: list[ModelConfig] = []
    if isinstance(cfg.doc.data, dict):
        for stand in stands:
            if only is None or stand.name == only:
                stand_problems, model = _resolve(cfg, stand)
                problems += stand_problems
                if model is not None:
                    resolved.append(model)
    if problems:
        raise ConfigError(_merge_stands(problems), cfg.doc)
    return resolved


def resolve(cfg: ConfigFile, stand: Stand) -> ModelConfig:
    """One stand's resolved config; raises with every problem found on the way."""
    problems, model = _resolve(cfg, stand)
    if problems or model is None:
        raise ConfigError(list(cfg.problems) + problems, cfg.doc)
    return model


_ON_STAND = re.compile(r"stand '([a-z0-9-]+)'")


def _merge_stands(problems: list[Problem]) -> list[Problem]:
    """One line for a problem that several stands share, naming them all."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    first: dict[tuple[Any, ...], Problem] = {}
    for p in problems:
        names = _ON_STAND.findall(p.message)
        key = (p.file, p.line, p.column, p.path, _ON_STAND.sub("stand {}", p.message))
        groups.setdefault(key, [])
        first.setdefault(key, p)
        if len(names) == 1 and names[0] not in groups[key]:
            groups[key].append(names[0])
    out = []
    for key, p in first.items():
        names = groups[key]
        if len(names) > 1:
            listed = ", ".join(repr(n) for n in names)
            p = Problem(p.file, p.line, p.column, p.path, _ON_STAND.sub(f"stands {listed}", p.message, count=1))
        out.append(p)
    return out


def _resolve(cfg: ConfigFile, stand: Stand) -> tuple[list[Problem], ModelConfig | None]:
    override = cfg.overrides.get(stand.name) or {}
    merged = deep_merge(cfg.base, override)

    def origin(path: PathT) -> PathT:
        return ("stands", stand.name, *path) if _defined_in(override, path) else path

    problems: list[Problem] = []
    if not cfg.problems:  # the file's own problems already cover what the merged view would repeat
        context = f"on stand {stand.name!r}: " if override else ""
        problems = schema_problems(cfg.doc, config_schema(), merged, origin, context)
    data = apply_defaults(config_schema(), merged)
    checker = _Checker(cfg, stand, data, origin)
    checker.run()
    problems += checker.problems
    if problems or cfg.problems:
        return problems, None
    return [], _build(cfg, stand, _respell(data, origin, cfg.doc))


def _respell(data: dict[str, Any], origin: Any, doc: Document) -> dict[str, Any]:
    """Numbers in script arguments and Spark properties keep the spelling they were written with.

    ``--learning-rate 1.10`` must not reach the job as ``1.1``, nor ``0x10`` as ``16``.
    """
    out = copy.deepcopy(data)

    def spell(path: PathT, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return doc.raw.get(origin(path), str(value))
        return value

    for job in names.JOBS:
        args = out[job].get("args", [])
        out[job]["args"] = [spell((job, "args", i), v) for i, v in enumerate(args)]
    conf = out["spark"]["conf"]
    out["spark"]["conf"] = {k: spell(("spark", "conf", k), v) for k, v in conf.items()}
    return out


_MISSING = object()


def _lookup(tree: Any, path: PathT) -> Any:
    """The value at ``path`` in plain data, or ``_MISSING``."""
    for part in path:
        in_dict = isinstance(tree, dict) and part in tree
        in_list = isinstance(tree, list) and isinstance(part, int) and part < len(tree)
        if not (in_dict or in_list):
            return _MISSING
        tree = tree[part]
    return tree


def _defined_in(tree: Any, path: PathT) -> bool:
    """Whether an override sets ``path``, to report a problem where it was written."""
    return _lookup(tree, path) is not _MISSING


class _Checker:
    """The checks a JSON Schema can't express, on one stand's merged view (defaults applied).

    They also run when the schema found problems, so every check reads values defensively and
    skips what has the wrong type (the schema already reported that).
    """

    def __init__(self, cfg: ConfigFile, stand: Stand, data: dict[str, Any], origin: Any) -> None:
        self.cfg, self.stand, self.data, self.origin = cfg, stand, data, origin
        self.problems: list[Problem] = []

    def add(self, path: PathT, message: str) -> None:
        self.problems.append(self.cfg.doc.problem(self.origin(path), message))

    def get(self, *path: Key, kind: type | tuple[type, ...] = object) -> Any:
        node = _lookup(self.data, path)
        return node if node is not _MISSING and isinstance(node, kind) else None

    def run(self) -> None:
        for job in names.JOBS:
            self.schedule((job, "schedule"), self.get(job, "schedule", kind=str))
        self.python_version()
        self.name_lengths()
        self.spark_conf()
        for role in ("driver", "executor"):
            self.cpu_limit(role)
        self.gate_metrics()
        self.retrain()
        self.files()

    def schedule(self, path: PathT, value: str | None) -> None:
        if value is None:
            return
        if value.startswith("@"):
            if value not in CRON_PRESETS:
                self.add(path, f"unknown preset {value!r}{suggest(value, list(CRON_PRESETS))}; "
                               f"presets: {', '.join(CRON_PRESETS)}")
            return
        from croniter import CroniterBadDateError, croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            self.add(path, f"{value!r} is not a valid cron expression: expected 5 fields "
                           "(minute hour day-of-month month day-of-week), like '0 3 * * 1', or a preset like @daily")
            return
        try:
            croniter(value, datetime.datetime(2025, 1, 1)).get_next(datetime.datetime)
        except CroniterBadDateError:
            self.add(path, f"{value!r} never fires (no such date)")

    def python_version(self) -> None:
        version = self.get("python", "version", kind=str)
        if version is not None and version not in self.stand.python_versions:
            self.add(("python", "version"),
                     f"Python {version} is not supported on stand {self.stand.name!r}; "
                     f"its Spark images provide: {', '.join(self.stand.python_versions)}")

    def name_lengths(self) -> None:
        model = self.get("model", "name", kind=str)
        if model is None:
            return
        for job in (*names.JOBS, *names.ACCEPTANCE_JOBS):
            app = names.app_name(model, self.stand.name, job)
            if len(app) > names.MAX_APP_NAME:
                room = names.MAX_APP_NAME - (len(app) - len(model))
                self.add(("model", "name"),
                         f"on stand {self.stand.name!r} the {job} SparkApplication would be named {app!r} "
                         f"({len(app)} characters); Airflow appends 9 more and Kubernetes allows 63, "
                         f"so shorten the model name to at most {room} characters")
                return

    def spark_conf(self) -> None:
        for key in self.get("spark", "conf", kind=dict) or {}:
            reason = DENIED_SPARK_CONF.get(key)
            if reason is None and key.startswith(DENIED_SPARK_CONF_PREFIXES):
                reason = "the stand sets Kubernetes credentials"
            if reason:
                self.add(("spark", "conf", key), f"{key} may not be set here: {reason}")

    def cpu_limit(self, role: str) -> None:
        limit, cores = self.get("spark", role, "core_limit", kind=str), self.get("spark", role, "cores", kind=int)
        if limit is None or cores is None or not re.fullmatch(K8S_CPU, limit):
            return
        value = float(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
        if value < cores:
            self.add(("spark", role, "core_limit"),
                     f"{limit!r} is below the {cores} core(s) requested; Kubernetes rejects a pod whose "
                     "CPU request exceeds its limit")

    def gate_metrics(self) -> None:
        seen: set[str] = set()
        for i, metric in enumerate(self.get("quality_gate", "metrics", kind=list) or []):
            if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
                continue
            if metric["name"] in seen:
                self.add(("quality_gate", "metrics", i, "name"), f"metric {metric['name']!r} is listed twice")
            seen.add(metric["name"])
            if self.get("quality_gate", "script") is None and metric["name"] not in names.PERFORMANCE_METRICS \
                    and self.stand.receives and "evaluate" in self.stand.acceptance_checks:
                self.add(("quality_gate", "metrics", i, "name"),
                         f"stand {self.stand.name!r} evaluates every pushed version with the built-in evaluate job, "
                         f"which measures {', '.join(names.PERFORMANCE_METRICS)}; for {metric['name']!r} set "
                         "quality_gate.script to an evaluation of your own")
            low, high = metric.get("min"), metric.get("max")
            if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
                self.add(("quality_gate", "metrics", i), f"min {low} is above max {high}")

    def retrain(self) -> None:
        on = self.get("monitoring", "retrain", "on", kind=list) or []
        if "performance" in on and self.get("monitoring", "performance") is None:
            self.add(("monitoring", "retrain", "on"),
                     "retraining on 'performance' needs monitoring.performance (metric and min or max)")
        if "schedule" in on and self.get("train", "schedule") is None:
            self.add(("monitoring", "retrain", "on"),
                     f"retraining on 'schedule' needs train.schedule, which is null on stand {self.stand.name!r}")
        if (self.get("inference", "enabled") is False and self.get("monitoring", "enabled") is not False
                and self.get("monitoring", "script") is None):
            self.add(("monitoring", "enabled"), "the built-in monitoring job reads what the inference job scored, "
                     "and inference is disabled: disable monitoring too, or set monitoring.script")
        metric = self.get("monitoring", "performance", "metric")
        builtin = self.get("monitoring", "script") is None
        if isinstance(metric, str) and builtin and metric not in names.PERFORMANCE_METRICS:
            self.add(("monitoring", "performance", "metric"),
                     f"the built-in monitoring job measures {', '.join(names.PERFORMANCE_METRICS)}; for {metric!r} set "
                     "monitoring.script to a job of your own")

    def files(self) -> None:
        root = self.cfg.repo_root
        if root is None:
            return
        wanted = [(("python", "requirements"), self.get("python", "requirements", kind=str))]
        wanted += [((section, "script"), self.get(section, "script", kind=str))
                   for section in (*names.JOBS, "quality_gate")]
        for path, rel in wanted:
            if rel and re.fullmatch(REPO_FILE, rel) and not (root / rel).is_file():
                self.add(path, f"file not found: {rel} (paths are relative to {root})")


def _str_args(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(_spark_str(v) for v in values)


def _spark_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _resources(d: dict[str, Any]) -> Resources:
    return Resources(
        cores=d["cores"],
        memory=d["memory"],
        core_limit=d.get("core_limit") or str(d["cores"]),
        memory_overhead=d.get("memory_overhead"),
        instances=d.get("instances", 1),
    )


def _job(kind: str, d: dict[str, Any]) -> Job:
    window = d.get("data_window")
    return Job(kind, d.get("script"), _str_args(d.get("args", [])), d.get("schedule"),
               window["days"] if window else None, bool(d.get("enabled", True)), bool(d.get("require_data", False)))


def _acceptance_jobs(d: dict[str, Any], gate: QualityGate) -> tuple[Job, Job, Job]:
    """evaluate (the model's script or the built-in job), and smoke and load (the inference script)."""
    evaluation, acceptance, inference = gate.evaluation, d["acceptance"], d["inference"]
    assert evaluation is not None
    args = _str_args(inference.get("args", []))
    return (Job("evaluate", gate.script, gate.args, None, evaluation.window_days),
            Job("smoke", inference["script"], args, None, acceptance["smoke"]["data_window"]["days"]),
            Job("load", inference["script"], args, None, acceptance["load"]["data_window"]["days"]))


def _quality_gate(d: dict[str, Any]) -> QualityGate:
    gate, perf = d["quality_gate"], d["monitoring"].get("performance") or {}
    ev, boot = gate["evaluation"], gate["evaluation"]["bootstrap"]
    return QualityGate(
        gate.get("script"),
        tuple(MetricThreshold(m["name"], m.get("min"), m.get("max"), m.get("min_improvement"), m.get("tolerance", 0))
              for m in gate["metrics"]),
        _str_args(gate.get("args", [])),
        Evaluation(ev["data"], ev.get("label") or perf.get("label") or "label", ev["time_column"],
                   ev["data_window"]["days"], boot["samples"], float(boot["confidence"]), boot["seed"]),
    )


def _build(cfg: ConfigFile, stand: Stand, d: dict[str, Any]) -> ModelConfig:
    spark, mon = d["spark"], d["monitoring"]
    perf = mon.get("performance")
    gate = _quality_gate(d)
    evaluate, smoke, load = _acceptance_jobs(d, gate)
    load_cfg = d["acceptance"]["load"]
    cooldown = mon["retrain"]["cooldown"]
    conf = dict(stand.spark_conf)
    conf.update({k: _spark_str(v) for k, v in spark["conf"].items()})
    return ModelConfig(
        name=d["model"]["name"],
        owner=d["model"]["owner"],
        description=d["model"]["description"],
        python_version=d["python"]["version"],
        requirements=d["python"]["requirements"],
        keep=tuple(d["python"]["keep"]),
        spark=SparkSettings(
            image=names.image_for(spark.get("image") or stand.spark_image, stand.spark_image_registry),
            version=spark.get("version") or stand.spark_version,
            driver=_resources(spark["driver"]),
            executor=_resources(spark["executor"]),
            conf=tuple(sorted(conf.items())),
        ),
        train=_job("train", d["train"]),
        inference=_job("inference", d["inference"]),
        monitoring=_job("monitoring", mon),
        quality_gate=gate,
        drift=Drift(
            mon["drift"]["method"],
            mon["drift"]["threshold"],
            mon["drift"]["share"],
            tuple(mon["drift"].get("features", [])),
            mon["drift"]["min_rows"],
        ),
        performance=Performance(perf["metric"], perf.get("min"), perf.get("max"), perf.get("id", "id"),
                                perf.get("label", "label"), perf.get("score", "prediction")) if perf else None,
        retrain=Retrain(tuple(mon["retrain"]["on"]), cooldown,
                        int(cooldown[:-1]) * DURATION_SECONDS[cooldown[-1]]),
        stand=stand,
        source=Path(cfg.doc.file),
        repo_root=cfg.repo_root,
        resolved=json.dumps(d, sort_keys=True, separators=(",", ":")),
        evaluate=evaluate,
        smoke=smoke,
        load=load,
        load_check=LoadCheck(load_cfg.get("max_duration_seconds"), load_cfg.get("min_rows_per_second")),
        notify=ModelNotifications(tuple(d["notifications"]["email"]),
                                  tuple(d["notifications"]["events"]) if "events" in d["notifications"] else None),
    )
