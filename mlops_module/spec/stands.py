"""The stands file: which Airflow, namespace, bucket, MLflow and Spark image each stand uses.

It belongs to the platform team, not to model repositories. The built-in file (``data/stands.yaml``)
describes the chain ``mdp → int → lt → prom`` and the standalone ``local`` stand (a sandbox on one
machine: a passing model gets its alias there and goes no further, because a laptop's registry and
directory are no place to push to MDP from); ``--stands FILE`` or ``MLOPS_STANDS`` replaces it.
``defaults`` is deep-merged under every stand, then each stand is validated on its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast, get_args

from mlops_module.errors import ConfigError, Problem
from mlops_module.kinds import ApprovalName, BackendName, RetrainPolicy, TriggerName
from mlops_module.names import (
    ACCEPTANCE_JOBS,
    LOCAL_PYTHON_HOME_ENV,
    local_python_home,
    local_stand_home,
    mlops_home,
)
from mlops_module.spec.merge import deep_merge
from mlops_module.spec.schema import (
    DNS1035,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    IMAGE,
    PYTHON_VERSION,
    SPARK_VERSION,
)
from mlops_module.spec.validation import schema_problems
from mlops_module.spec.yaml_loader import Document, PathT, load_file

BUILTIN_STANDS = Path(__file__).resolve().parents[1] / "data" / "stands.yaml"
STANDS_ENV = "MLOPS_STANDS"

_NAME = r"^[A-Za-z0-9_.-]+$"
_URI = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9_.\-/]*)?|file:///[A-Za-z0-9_.\-/]*)$"
_DAGS = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9_.\-/]*)?|/[A-Za-z0-9_.\-/]*)$"
DEFAULT_AIRFLOW_SERVICE_ACCOUNT = ("airflow-worker", "airflow")  # name, namespace
_HOST = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?(/[A-Za-z0-9._-]+)*$"


def _o(properties: dict[str, Any], required: tuple[str, ...] = (), description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


_STAND_PROPS: dict[str, Any] = {
    "backend": {"enum": list(get_args(BackendName)), "description": "Where Spark jobs run."},
    "airflow": _o({"dags": {"type": "string", "pattern": _DAGS, "description": "DAG folder: path or s3:// prefix."},
                   "api_url": {"type": "string", "pattern": r"^https?://\S+$",
                               "description": "The stand's Airflow (its REST API, /api/v2): where the deploy job "
                                              "starts acceptance runs on a Kubernetes stand. Credentials come "
                                              "from the environment (MLOPS_AIRFLOW_<STAND>_TOKEN, ...)."},
                   "home": {"type": "string", "pattern": r"^/[A-Za-z0-9_.\-/]*$",
                            "description": "A local stand's Airflow home (its SQLite database) on this machine; "
                                           "default $MLOPS_HOME/<stand>/airflow."}},
                  ("dags",)),
    "kubernetes": _o(
        {
            "namespace": {"type": "string", "pattern": DNS1035, "maxLength": 63},
            "service_account": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
            "conn_id": {"type": "string", "pattern": _NAME},
            "startup_timeout_seconds": {"type": "integer", "minimum": 1},
            "airflow_service_account": _o(
                {"name": {"type": "string", "pattern": DNS1123_SUBDOMAIN, "maxLength": 253},
                 "namespace": {"type": "string", "pattern": DNS1123_LABEL, "maxLength": 63}},
                description="The Kubernetes service account the stand's Airflow workers run as: `mlops platform "
                            "render` binds it to the Role that submits and follows SparkApplications in "
                            "`namespace`. Default: airflow-worker in namespace airflow (the official Airflow "
                            "chart's worker account for a release named airflow)."),
        },
        ("namespace", "service_account", "conn_id", "startup_timeout_seconds"),
    ),
    "storage": _o(
        {
            "uri": {"type": "string", "pattern": _URI, "description": "s3://bucket/prefix or file:///path"},
            "endpoint_url": {"type": "string", "pattern": r"^https?://[A-Za-z0-9.:\[\]_-]+/?$"},
        },
        ("uri",),
    ),
    "mlflow": _o({"tracking_uri": {"type": "string", "pattern": r"^(https?|file|sqlite|databricks)://[^\s\"'{}]+$"}},
                 ("tracking_uri",)),
    "spark": _o(
        {
            "image": {"type": "string", "pattern": IMAGE},
            "image_registry": {"type": "string", "pattern": _HOST},
            "version": {"type": "string", "pattern": SPARK_VERSION},
            "python_versions": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": PYTHON_VERSION}},
            "python_home": {"type": "string", "pattern": r"^/[A-Za-z0-9_.\-/]*$",
                            "description": "Directory of the image's python3.X (default /usr/bin)."},
            "time_to_live_seconds": {"type": "integer", "minimum": 0},
            "conf": {"type": "object", "propertyNames": {"pattern": r"^spark\.[A-Za-z0-9_.-]+$"},
                     "additionalProperties": {"type": "string"}},
        },
        ("image", "version", "python_versions", "time_to_live_seconds"),
    ),
    "deploy": _o(
        {
            "trigger": {"enum": list(get_args(TriggerName))},
            "url": {"type": "string", "pattern": r"^https?://\S+$"},
            "approval": {"enum": list(get_args(ApprovalName))},
        },
        ("trigger", "approval"),
    ),
    "acceptance": _o(
        {
            "checks": {"type": "array", "uniqueItems": True, "minItems": 1, "items": {"enum": list(ACCEPTANCE_JOBS)},
                       "description": "What a version pushed here must pass before it takes the stand's alias."},
            "retrained": {"enum": list(get_args(RetrainPolicy)),
                          "description": "A version retrained on this stand (monitoring's trigger) after its gate: "
                                         "`direct` takes the alias, `approval` waits for `mlops approve`. Default: "
                                         "approval when the chain asks for a manual approval on the way here."},
            "start_inference": {"type": "boolean",
                                "description": "Start the inference DAG when the stand's alias moves."},
        },
    ),
}

STAND_SCHEMA: dict[str, Any] = _o(
    _STAND_PROPS, ("backend", "airflow", "kubernetes", "storage", "mlflow", "spark", "deploy")
)

_PARTIAL = {k: {kk: vv for kk, vv in v.items() if kk != "required"} for k, v in _STAND_PROPS.items()}
STANDS_FILE_SCHEMA: dict[str, Any] = _o(
    {
        "order": {"type": "array", "minItems": 1, "uniqueItems": True,
                  "items": {"type": "string", "pattern": DNS1035, "maxLength": 10},
                  "description": "The promotion chain: a passing model is pushed to the next stand."},
        "standalone": {"type": "array", "uniqueItems": True,
                       "items": {"type": "string", "pattern": DNS1035, "maxLength": 10},
                       "description": "Stands outside the chain (sandboxes): a passing model is pushed nowhere."},
        "defaults": _o(_PARTIAL),
        "stands": {"type": "object", "minProperties": 1,
                   "propertyNames": {"pattern": DNS1035, "maxLength": 10},
                   "additionalProperties": _o(_PARTIAL)},
    },
    ("order", "stands"),
)


@dataclass(frozen=True)
class Stand:
    """One stand, fully resolved. ``next`` is the stand a passing model is pushed to, if any."""

    name: str
    backend: BackendName
    dags: str
    namespace: str
    service_account: str
    kubernetes_conn_id: str
    startup_timeout_seconds: int
    storage_uri: str
    storage_endpoint_url: str | None
    mlflow_tracking_uri: str
    spark_image: str
    spark_image_registry: str | None
    spark_version: str
    python_versions: tuple[str, ...]
    python_home: str
    time_to_live_seconds: int
    spark_conf: tuple[tuple[str, str], ...]
    deploy_trigger: TriggerName
    deploy_url: str | None
    approval: ApprovalName
    next: str | None
    previous: str | None = None  # the stand that pushes here (None: head of the chain, or standalone)
    api_url: str | None = None
    acceptance_checks: tuple[str, ...] = ()
    retrained: RetrainPolicy = "direct"
    start_inference: bool = True
    airflow_home: str | None = None
    airflow_service_account: str = DEFAULT_AIRFLOW_SERVICE_ACCOUNT[0]
    airflow_service_account_namespace: str = DEFAULT_AIRFLOW_SERVICE_ACCOUNT[1]

    @property
    def local_airflow_home(self) -> Path:
        """Where a local stand's Airflow keeps its database: what `mlops run` runs DAGs in and a push queues
        acceptance runs in."""
        return Path(self.airflow_home) if self.airflow_home else local_stand_home(self.name) / "airflow"

    @property
    def receives(self) -> bool:
        """Versions reach this stand by a push: it accepts them (its acceptance DAG) before its alias moves."""
        return self.previous is not None

    @property
    def spark_storage_uri(self) -> str:
        """The storage URI as Spark's Hadoop filesystems spell it (s3a://)."""
        return "s3a://" + self.storage_uri[5:] if self.storage_uri.startswith("s3://") else self.storage_uri


@dataclass(frozen=True)
class Stands:
    source: str
    order: tuple[str, ...]
    by_name: Mapping[str, Stand]
    standalone: tuple[str, ...] = ()

    def get(self, name: str) -> Stand:
        return self.by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        """Every stand: the standalone ones (sandboxes, met first), then the chain in order."""
        return self.standalone + self.order

    def __iter__(self) -> Iterator[Stand]:
        return (self.by_name[n] for n in self.names)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# Variables a stands file may use unset: their defaults depend on this machine, not on the file.
_COMPUTED_DEFAULTS: dict[str, Callable[[], str]] = {
    "MLOPS_HOME": lambda: str(mlops_home()),
    LOCAL_PYTHON_HOME_ENV: local_python_home,
}


def _expand(value: Any, path: PathT, doc: Document, problems: list[Problem]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, path + (k,), doc, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, path + (i,), doc, problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if name in _COMPUTED_DEFAULTS:
            return _COMPUTED_DEFAULTS[name]()
        if default is not None:
            return default
        problems.append(doc.problem(path, f"environment variable {name} is not set"))
        return ""

    return _VAR.sub(sub, value)


def stands_source(explicit: str | Path | None = None) -> Path:
    """Which stands file applies: the flag, then ``MLOPS_STANDS``, then the built-in one."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(STANDS_ENV)
    return Path(env) if env else BUILTIN_STANDS


def load_stands(path: str | Path | None = None) -> Stands:
    source = stands_source(path)
    return _load_stands(str(source.resolve()) if source.exists() else str(source), _env_key())


def _env_key() -> tuple[tuple[str, str], ...]:
    return tuple(sorted(os.environ.items()))


@cache
def _load_stands(source: str, _env: tuple[tuple[str, str], ...]) -> Stands:
    display = "<built-in stands>" if Path(source) == BUILTIN_STANDS.resolve() else source
    doc = load_file(Path(source), display)
    problems: list[Problem] = []
    data = _expand(doc.data, (), doc, problems)
    problems += schema_problems(doc, STANDS_FILE_SCHEMA, data)
    if problems:
        raise ConfigError(problems)
    order: list[str] = data["order"]
    standalone: list[str] = data.get("standalone", [])
    stands = data["stands"]
    for key, names in (("order", order), ("standalone", standalone)):
        for i, name in enumerate(names):
            if name not in stands:
                problems.append(doc.problem((key, i), f"stand {name!r} is listed in {key} but not defined"))
    for i, name in enumerate(standalone):
        if name in order:
            problems.append(doc.problem(("standalone", i), f"stand {name!r} is in both order and standalone"))
    for name in stands:
        if name not in order and name not in standalone:
            problems.append(doc.problem(("stands", name), f"stand {name!r} is in neither order nor standalone"))
    by_name: dict[str, Stand] = {}
    chain = {name: order[i + 1] if i + 1 < len(order) else None for i, name in enumerate(order)}
    before = {name: order[i - 1] if i > 0 else None for i, name in enumerate(order)}
    manual_before: dict[str, bool] = {}  # a manual approval somewhere on the way to this stand
    for i, name in enumerate(order):
        here = deep_merge(data.get("defaults", {}), stands.get(name) or {})
        asked = i > 0 and here.get("deploy", {}).get("approval") == "manual"
        manual_before[name] = asked or (i > 0 and manual_before[order[i - 1]])
    for name in [*standalone, *order]:
        if name not in stands or name in by_name:
            continue
        merged = deep_merge(data.get("defaults", {}), stands[name])
        def origin(path: PathT, stand: str = name) -> PathT:
            return ("stands", stand, *path)

        problems += schema_problems(doc, STAND_SCHEMA, merged, origin, f"stand {name!r}: ")
        if problems:
            continue
        by_name[name] = _stand(name, merged, chain.get(name), before.get(name), manual_before.get(name, False))
        if merged["backend"] == "local" and not merged["storage"]["uri"].startswith("file://"):
            problems.append(doc.problem(("stands", name, "storage", "uri"), "a local stand needs file:// storage"))
    if problems:
        raise ConfigError(problems)
    return Stands(display, tuple(order), by_name, tuple(n for n in standalone if n not in order))


def _stand(name: str, d: dict[str, Any], nxt: str | None, previous: str | None = None,
           manual_on_the_way: bool = False) -> Stand:
    k8s, spark, deploy, acceptance = d["kubernetes"], d["spark"], d["deploy"], d.get("acceptance", {})
    return Stand(
        name=name,
        backend=cast("BackendName", d["backend"]),  # the schema allows only these values
        dags=d["airflow"]["dags"],
        namespace=k8s["namespace"],
        service_account=k8s["service_account"],
        kubernetes_conn_id=k8s["conn_id"],
        startup_timeout_seconds=k8s["startup_timeout_seconds"],
        storage_uri=d["storage"]["uri"].rstrip("/"),
        storage_endpoint_url=d["storage"].get("endpoint_url"),
        mlflow_tracking_uri=d["mlflow"]["tracking_uri"],
        spark_image=spark["image"],
        spark_image_registry=spark.get("image_registry"),
        spark_version=spark["version"],
        python_versions=tuple(spark["python_versions"]),
        python_home=spark.get("python_home", "/usr/bin").rstrip("/") or "/",
        time_to_live_seconds=spark["time_to_live_seconds"],
        spark_conf=tuple(sorted(spark.get("conf", {}).items())),
        deploy_trigger=cast("TriggerName", deploy["trigger"]),
        deploy_url=deploy.get("url"),
        approval=cast("ApprovalName", deploy["approval"]),
        next=nxt,
        previous=previous,
        api_url=d["airflow"].get("api_url"),
        airflow_home=d["airflow"].get("home"),
        acceptance_checks=tuple(acceptance.get("checks", ["evaluate", "smoke"])) if previous else (),
        retrained=cast("RetrainPolicy", acceptance.get("retrained") or ("approval" if manual_on_the_way else "direct")),
        start_inference=bool(acceptance.get("start_inference", True)),
        airflow_service_account=k8s.get("airflow_service_account", {}).get("name", DEFAULT_AIRFLOW_SERVICE_ACCOUNT[0]),
        airflow_service_account_namespace=k8s.get("airflow_service_account", {}).get(
            "namespace", DEFAULT_AIRFLOW_SERVICE_ACCOUNT[1]),
    )
