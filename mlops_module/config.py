"""Loading and validating ``model.yaml``: raw YAML stops here; typed, immutable configs leave.

Validation runs in two passes. First the file itself against the schema (overrides included, with
nothing required). Then, for each stand, the merged view (base deep-merged with ``stands.<name>``)
against the full schema plus the checks a schema can't express: cron expressions, stand-specific
Python versions, Kubernetes name lengths, Spark properties the operator rejects, files that must
exist. Every problem of every stand is reported at once, located in the file where it was written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import names
from .errors import ConfigError, Problem, UsageError
from .merge import deep_merge
from .schema import apply_defaults, config_schema
from .stands import Stand, Stands
from .validation import schema_problems, suggest
from .yaml_loader import Document, PathT, load_file

CRON_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

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


@dataclass(frozen=True)
class MetricThreshold:
    name: str
    min: float | None
    max: float | None
    min_improvement: float | None


@dataclass(frozen=True)
class QualityGate:
    script: str | None
    metrics: tuple[MetricThreshold, ...]


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


@dataclass(frozen=True)
class Retrain:
    on: tuple[str, ...]
    cooldown: str
    cooldown_seconds: int


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

    @property
    def jobs(self) -> tuple[Job, Job, Job]:
        return (self.train, self.inference, self.monitoring)

    @property
    def config_hash(self) -> str:
        payload = json.dumps({"config": json.loads(self.resolved), "stand": asdict(self.stand)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ConfigFile:
    """A schema-valid ``model.yaml``, before any stand is applied."""

    doc: Document
    repo_root: Path | None

    @property
    def base(self) -> dict[str, Any]:
        return {k: v for k, v in self.doc.data.items() if k != "stands"}

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.doc.data.get("stands") or {})


def load_config(path: Path, *, check_files: bool = True) -> ConfigFile:
    """Parse and schema-check the file. Paths in it are relative to its directory (the model repo)."""
    doc = load_file(path)
    problems = schema_problems(doc, config_schema())
    if problems:
        raise ConfigError(problems, doc)
    return ConfigFile(doc, path.resolve().parent if check_files else None)


def check(path: Path, stands: Stands, only: str | None = None, *, check_files: bool = True) -> list[ModelConfig]:
    """Load and validate in one go; schema problems and unknown stand names are reported together."""
    _known_stand(only, stands)
    try:
        cfg = load_config(path, check_files=check_files)
    except ConfigError as exc:
        doc = exc.document
        if doc is None or not isinstance(doc.data, dict) or not isinstance(doc.data.get("stands"), dict):
            raise
        raise ConfigError(exc.problems + _unknown_stands(doc, doc.data["stands"], stands), doc) from None
    return validate(cfg, stands, only)


def _known_stand(name: str | None, stands: Stands) -> None:
    if name is not None and name not in stands.by_name:
        hint = suggest(name, list(stands.order))
        raise UsageError(f"unknown stand {name!r}{hint}; stands: {', '.join(stands.order)}")


def _unknown_stands(doc: Document, overrides: dict[str, Any], stands: Stands) -> list[Problem]:
    return [
        doc.problem(
            ("stands", name),
            f"unknown stand {name!r}{suggest(name, list(stands.order))}; "
            f"the stands file ({stands.source}) defines: {', '.join(stands.order)}",
            at_key=True,
        )
        for name in overrides
        if name not in stands.by_name
    ]


def validate(cfg: ConfigFile, stands: Stands, only: str | None = None) -> list[ModelConfig]:
    """Resolve the config on every stand (or only one); raise with every problem of every stand."""
    _known_stand(only, stands)
    problems: list[Problem] = _unknown_stands(cfg.doc, cfg.overrides, stands)
    resolved: list[ModelConfig] = []
    for stand in stands:
        if only is not None and stand.name != only:
            continue
        try:
            resolved.append(resolve(cfg, stand))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return resolved


def resolve(cfg: ConfigFile, stand: Stand) -> ModelConfig:
    override = cfg.overrides.get(stand.name) or {}
    merged = deep_merge(cfg.base, override)

    def origin(path: PathT) -> PathT:
        return ("stands", stand.name, *path) if _defined_in(override, path) else path

    context = f"on stand {stand.name!r}: " if override else ""
    problems = schema_problems(cfg.doc, config_schema(), merged, origin, context)
    if problems:
        raise ConfigError(problems)
    data = apply_defaults(config_schema(), merged)
    checker = _Checker(cfg, stand, data, origin)
    checker.run()
    if checker.problems:
        raise ConfigError(checker.problems)
    return _build(cfg, stand, data)


def _defined_in(tree: Any, path: PathT) -> bool:
    """Whether ``path`` exists in ``tree`` (an override), to report a problem where it was written."""
    for part in path:
        in_dict = isinstance(tree, dict) and part in tree
        in_list = isinstance(tree, list) and isinstance(part, int) and part < len(tree)
        if not (in_dict or in_list):
            return False
        tree = tree[part]
    return True


class _Checker:
    """The checks a JSON Schema can't express, on one stand's merged view (defaults applied)."""

    def __init__(self, cfg: ConfigFile, stand: Stand, data: dict[str, Any], origin: Any) -> None:
        self.cfg, self.stand, self.data, self.origin = cfg, stand, data, origin
        self.problems: list[Problem] = []

    def add(self, path: PathT, message: str) -> None:
        self.problems.append(self.cfg.doc.problem(self.origin(path), message))

    def run(self) -> None:
        d = self.data
        for job in names.JOBS:
            self.schedule((job, "schedule"), d[job].get("schedule"))
        self.python_version()
        self.name_lengths()
        self.spark_conf()
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
        from croniter import croniter

        fields = value.split()
        if len(fields) != 5 or not croniter.is_valid(value):
            self.add(path, f"{value!r} is not a valid cron expression: expected 5 fields "
                           "(minute hour day-of-month month day-of-week), like '0 3 * * 1', or a preset like @daily")

    def python_version(self) -> None:
        version = self.data["python"]["version"]
        if version not in self.stand.python_versions:
            self.add(("python", "version"),
                     f"Python {version} is not supported on stand {self.stand.name!r}; "
                     f"its Spark images provide: {', '.join(self.stand.python_versions)}")

    def name_lengths(self) -> None:
        model = self.data["model"]["name"]
        for job in names.JOBS:
            app = names.app_name(model, self.stand.name, job)
            if len(app) > names.MAX_APP_NAME:
                room = names.MAX_APP_NAME - (len(app) - len(model))
                self.add(("model", "name"),
                         f"on stand {self.stand.name!r} the {job} SparkApplication would be named {app!r} "
                         f"({len(app)} characters); Airflow appends 9 more and Kubernetes allows 63, "
                         f"so shorten the model name to at most {room} characters")
                return

    def spark_conf(self) -> None:
        for key in self.data["spark"]["conf"]:
            reason = DENIED_SPARK_CONF.get(key)
            if reason is None and key.startswith(DENIED_SPARK_CONF_PREFIXES):
                reason = "the stand sets Kubernetes credentials"
            if reason:
                self.add(("spark", "conf", key), f"{key} may not be set here: {reason}")

    def gate_metrics(self) -> None:
        seen: set[str] = set()
        for i, metric in enumerate(self.data["quality_gate"]["metrics"]):
            if metric["name"] in seen:
                self.add(("quality_gate", "metrics", i, "name"), f"metric {metric['name']!r} is listed twice")
            seen.add(metric["name"])
            if "min" in metric and "max" in metric and metric["min"] > metric["max"]:
                self.add(("quality_gate", "metrics", i), f"min {metric['min']} is above max {metric['max']}")

    def retrain(self) -> None:
        mon = self.data["monitoring"]
        on = mon["retrain"]["on"]
        if "performance" in on and "performance" not in mon:
            self.add(("monitoring", "retrain", "on"),
                     "retraining on 'performance' needs monitoring.performance (metric and min or max)")
        if "schedule" in on and self.data["train"].get("schedule") is None:
            self.add(("monitoring", "retrain", "on"),
                     f"retraining on 'schedule' needs train.schedule, which is null on stand {self.stand.name!r}")

    def files(self) -> None:
        root = self.cfg.repo_root
        if root is None:
            return
        wanted: list[tuple[PathT, str]] = [(("python", "requirements"), self.data["python"]["requirements"])]
        for section in (*names.JOBS, "quality_gate"):
            script = self.data[section].get("script")
            if script:
                wanted.append(((section, "script"), script))
        for path, rel in wanted:
            if not (root / rel).is_file():
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
               window["days"] if window else None)


def _build(cfg: ConfigFile, stand: Stand, d: dict[str, Any]) -> ModelConfig:
    spark, mon = d["spark"], d["monitoring"]
    perf = mon.get("performance")
    cooldown = mon["retrain"]["cooldown"]
    conf = dict(stand.spark_conf)
    conf.update({k: _spark_str(v) for k, v in spark["conf"].items()})
    return ModelConfig(
        name=d["model"]["name"],
        owner=d["model"]["owner"],
        description=d["model"]["description"],
        python_version=d["python"]["version"],
        requirements=d["python"]["requirements"],
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
        quality_gate=QualityGate(
            d["quality_gate"].get("script"),
            tuple(
                MetricThreshold(m["name"], m.get("min"), m.get("max"), m.get("min_improvement"))
                for m in d["quality_gate"]["metrics"]
            ),
        ),
        drift=Drift(
            mon["drift"]["method"],
            mon["drift"]["threshold"],
            mon["drift"]["share"],
            tuple(mon["drift"].get("features", [])),
            mon["drift"]["min_rows"],
        ),
        performance=Performance(perf["metric"], perf.get("min"), perf.get("max")) if perf else None,
        retrain=Retrain(tuple(mon["retrain"]["on"]), cooldown,
                        int(cooldown[:-1]) * DURATION_SECONDS[cooldown[-1]]),
        stand=stand,
        source=Path(cfg.doc.file),
        repo_root=cfg.repo_root,
        resolved=json.dumps(d, sort_keys=True, separators=(",", ":")),
    )
