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
from mlops_module.kinds import ApprovalName, BackendName, RetrainPolicy, S3Credentials, TriggerName
from mlops_module.names import (
    ACCEPTANCE_JOBS,
    ARCH_LABEL,
    CHANNEL_SLACK,
    CHANNEL_SMTP,
    CHANNEL_WEBHOOK,
    EVENT_LOG_DIR,
    EVENT_LOG_ENABLED,
    EVENTS,
    LOCAL_PYTHON_HOME_ENV,
    S3A_CREDENTIALS_PROVIDER,
    S3A_ENDPOINT,
    S3A_PATH_STYLE,
    S3A_SSL,
    SPARK_JOB_KINDS,
    local_python_home,
    local_stand_home,
    mlops_home,
)
from mlops_module.spec.merge import deep_merge
from mlops_module.spec.schema import (
    DNS1035,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    DURATION,
    DURATION_SECONDS,
    EMAIL,
    IMAGE,
    LABEL_KEY,
    LABEL_VALUE,
    PYTHON_VERSION,
    SECRET_KEY,
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


def _secret_name(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": DNS1123_SUBDOMAIN, "maxLength": 253, "description": description}


def _secret_key(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": SECRET_KEY, "maxLength": 253, "description": description}


# Airflow retries of each Spark task where the stands file says nothing. Kubernetes stands retry what a
# cluster breaks now and then (an evicted or preempted driver, a lost node, an image pull hiccup); a local
# stand runs on one machine, where a failure is a bug to see at once. Gate, promote and decide never retry.
DEFAULT_RETRIES: dict[BackendName, dict[str, int]] = {
    "kubernetes": {"train": 2, "inference": 2, "monitoring": 1, "evaluate": 1, "smoke": 1, "load": 1},
    "local": dict.fromkeys(SPARK_JOB_KINDS, 0),
}
DEFAULT_RETRY_DELAY = "5m"
# The official apache/spark images run as user and group spark, uid/gid 185 (a name, so the kubelet can't
# check runAsNonRoot without a number).
SPARK_UID = 185
S3A_CREDENTIAL_KEYS = {"access_key_id_key": "AWS_ACCESS_KEY_ID", "secret_access_key_key": "AWS_SECRET_ACCESS_KEY",
                       "session_token_key": "AWS_SESSION_TOKEN"}
MLFLOW_CREDENTIAL_KEYS = {"username_key": "MLFLOW_TRACKING_USERNAME", "password_key": "MLFLOW_TRACKING_PASSWORD",
                          "token_key": "MLFLOW_TRACKING_TOKEN"}
# Spark properties the stand's structured keys set: a stand's spark.conf may set them instead (stands files
# written before those keys existed keep working, and its value wins), but not both for one stand.
DERIVED_CONF: dict[str, tuple[str, ...]] = {
    S3A_ENDPOINT: ("storage", "endpoint_url"),
    S3A_SSL: ("storage", "endpoint_url"),
    S3A_PATH_STYLE: ("storage", "path_style_access"),
    S3A_CREDENTIALS_PROVIDER: ("storage", "credentials", "mode"),
    EVENT_LOG_ENABLED: ("spark", "event_log", "enabled"),
    EVENT_LOG_DIR: ("spark", "event_log", "dir"),
}


_STAND_PROPS: dict[str, Any] = {
    "backend": {"enum": list(get_args(BackendName)), "description": "Where Spark jobs run."},
    "airflow": _o({"dags": {"type": "string", "pattern": _DAGS, "description": "DAG folder: path or s3:// prefix."},
                   "api_url": {"type": "string", "pattern": r"^https?://\S+$",
                               "description": "The stand's Airflow (its REST API, /api/v2): where the deploy job "
                                              "starts acceptance runs on a Kubernetes stand. Credentials come "
                                              "from the environment (MLOPS_AIRFLOW_<STAND>_TOKEN, ...)."},
                   "home": {"type": "string", "pattern": r"^/[A-Za-z0-9_.\-/]*$",
                            "description": "A local stand's Airflow home (its SQLite database) on this machine; "
                                           "default $MLOPS_HOME/<stand>/airflow."},
                   "retries": _o({kind: _o({"retries": {"type": "integer", "minimum": 0, "maximum": 100},
                                            "retry_delay": {"type": "string", "pattern": DURATION}})
                                  for kind in SPARK_JOB_KINDS},
                                 description="Airflow retries of each Spark task, per job kind: `retries` "
                                             "(default on Kubernetes stands 2 for train and inference, 1 for "
                                             "the others; 0 on local stands) and `retry_delay` (default 5m). "
                                             "The gate, promote and decide tasks never retry.")},
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
            "delete_on_termination": {"type": "boolean",
                                      "description": "Delete the SparkApplication (and its driver pod) when the "
                                                     "task ends; default false: it stays until "
                                                     "spark.time_to_live_seconds, for kubectl logs and describe."},
            "image_pull_secrets": {"type": "array", "uniqueItems": True,
                                   "items": _secret_name("a Secret of type kubernetes.io/dockerconfigjson"),
                                   "description": "Secrets the driver and executor pods pull the image with."},
            "node_selector": {"type": "object", "propertyNames": {"pattern": LABEL_KEY, "maxLength": 317},
                              "additionalProperties": {"type": "string", "pattern": LABEL_VALUE, "maxLength": 63},
                              "description": "Node labels the driver and executors must run on, beside "
                                             "kubernetes.io/arch, which the toolkit sets to the platform "
                                             "environments are built for."},
            "security": _o({"restricted": {"type": "boolean",
                                           "description": "Give driver and executors the securityContext the "
                                                          "'restricted' Pod Security level asks for (default true)."},
                            "run_as_user": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1,
                                            "description": "The image's non-root uid (default 185, apache/spark's)."},
                            "run_as_group": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1,
                                             "description": "Its gid (default 185)."}}),
        },
        ("namespace", "service_account", "conn_id", "startup_timeout_seconds"),
    ),
    "storage": _o(
        {
            "uri": {"type": "string", "pattern": _URI, "description": "s3://bucket/prefix or file:///path"},
            "endpoint_url": {"type": "string", "pattern": r"^https?://[A-Za-z0-9.:\[\]_-]+/?$"},
            "path_style_access": {"type": "boolean",
                                  "description": "Address buckets as endpoint/bucket (MinIO, Ceph) instead of "
                                                 "bucket.endpoint; default false."},
            "credentials": _o(
                {"mode": {"enum": list(get_args(S3Credentials)),
                          "description": "How Spark finds S3 credentials: instance_profile (the AWS default "
                                         "chain; the default), web_identity (a service account's token), "
                                         "secret (keys from a Kubernetes Secret)."},
                 "secret": _secret_name("The Secret holding the keys (mode secret)."),
                 **{key: _secret_key(f"Its key holding {env} (default {env})." if key != "session_token_key" else
                                     f"Its key holding {env}, for temporary keys (none by default).")
                    for key, env in S3A_CREDENTIAL_KEYS.items()}},
                description="S3 credentials of the Spark driver and executors (s3:// storage on Kubernetes).",
            ),
        },
        ("uri",),
    ),
    "mlflow": _o({"tracking_uri": {"type": "string", "pattern": r"^(https?|file|sqlite|databricks)://[^\s\"'{}]+$"},
                  "credentials": _o(
                      {"secret": _secret_name("The Secret holding MLflow's credentials."),
                       **{key: _secret_key(f"Its key that becomes the driver's {env}.")
                          for key, env in MLFLOW_CREDENTIAL_KEYS.items()}},
                      description="MLflow credentials from a Kubernetes Secret into the Spark driver's "
                                  "environment: token_key, or username_key and password_key.")},
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
            "event_log": _o({"enabled": {"type": "boolean", "description": "spark.eventLog.enabled (default false)."},
                             "dir": {"type": "string", "pattern": _URI,
                                     "description": "spark.eventLog.dir: s3://bucket/prefix (as s3a://) or "
                                                    "file:///path; needed when enabled."}},
                            description="Spark event logs, for a history server."),
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
    "notifications": _o(
        {
            CHANNEL_SMTP: _o({"conn_id": {"type": "string", "pattern": _NAME,
                                          "description": "The Airflow connection (type smtp) of the mail server."},
                              "to": {"type": "array", "uniqueItems": True, "items": {"type": "string",
                                                                                      "pattern": EMAIL},
                                     "description": "Who is told on every model of the stand (model.yaml's "
                                                    "notifications.email adds its own)."},
                              "from": {"type": "string", "pattern": EMAIL,
                                       "description": "The sender; default the connection's extra from_email."}},
                             ("conn_id",), "E-mail through Airflow's SmtpNotifier."),
            CHANNEL_SLACK: _o({"conn_id": {"type": "string", "pattern": _NAME,
                                           "description": "The Airflow connection (type slackwebhook) of an "
                                                          "incoming webhook."}},
                              ("conn_id",), "Slack through Airflow's SlackWebhookNotifier."),
            CHANNEL_WEBHOOK: _o({"conn_id": {"type": "string", "pattern": _NAME,
                                             "description": "The Airflow connection (type http): base URL and "
                                                            "credentials."},
                                 "endpoint": {"type": "string", "pattern": r"^[^\s{}]*$",
                                              "description": "The path posted to, below the connection's URL."}},
                                ("conn_id", "endpoint"),
                                "A JSON POST through Airflow's HttpNotifier."),
            "events": {"type": "array", "uniqueItems": True, "items": {"enum": list(EVENTS)},
                       "description": "What is sent (default: every event); model.yaml may narrow it."},
            "links": _o({"airflow": {"type": "string", "pattern": r"^https?://[^\s{}]+$",
                                     "description": "The Airflow UI people open (default airflow.api_url)."},
                         "mlflow": {"type": "string", "pattern": r"^https?://[^\s{}]+$",
                                    "description": "The MLflow UI people open (default mlflow.tracking_uri "
                                                   "when it is http(s))."}},
                        description="Where the links in a message point."),
        },
        description="Who is told what happens to the stand's models (docs/stands.md). No channel: nothing is sent.",
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


def spark_uri(uri: str) -> str:
    """An s3:// URI as Spark's Hadoop filesystems spell it (s3a://); anything else as it is."""
    return "s3a://" + uri[5:] if uri.startswith("s3://") else uri


@dataclass(frozen=True)
class SecretEnv:
    """One key of a Kubernetes Secret that becomes an environment variable of a Spark container."""

    env: str
    secret: str
    key: str


@dataclass(frozen=True)
class PodSecurity:
    """The 'restricted' Pod Security level's settings for driver and executors, as this uid/gid."""

    run_as_user: int = SPARK_UID
    run_as_group: int = SPARK_UID


@dataclass(frozen=True)
class TaskRetries:
    """Airflow's retries of one Spark task."""

    retries: int
    retry_delay_seconds: int


@dataclass(frozen=True)
class SmtpChannel:
    """E-mail: the Airflow connection of the mail server, the stand's recipients, the sender (None: the
    connection's)."""

    conn_id: str
    to: tuple[str, ...] = ()
    sender: str | None = None


@dataclass(frozen=True)
class WebhookChannel:
    """A JSON POST to the Airflow http connection's URL + ``endpoint``."""

    conn_id: str
    endpoint: str


@dataclass(frozen=True)
class StandNotifications:
    """The platform's side of notifications on one stand: channels (none: nothing is sent), events, link bases."""

    smtp: SmtpChannel | None = None
    slack_conn_id: str | None = None
    webhook: WebhookChannel | None = None
    events: tuple[str, ...] = EVENTS
    airflow_url: str | None = None
    mlflow_url: str | None = None


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
    # S3 access of Spark jobs (s3:// storage on Kubernetes): path-style addressing, where credentials come from
    s3_path_style_access: bool = False
    s3_credentials: S3Credentials = "instance_profile"
    s3_secret_env: tuple[SecretEnv, ...] = ()  # mode secret: AWS_* of driver and executors
    mlflow_secret_env: tuple[SecretEnv, ...] = ()  # MLFLOW_TRACKING_* of the driver
    image_pull_secrets: tuple[str, ...] = ()
    node_selector: tuple[tuple[str, str], ...] = ()  # beside kubernetes.io/arch, which the toolkit sets
    pod_security: PodSecurity | None = PodSecurity()  # None: no securityContext rendered
    delete_on_termination: bool = False
    event_log_enabled: bool = False
    event_log_dir: str | None = None
    retries: tuple[tuple[str, TaskRetries], ...] = ()  # per Spark job kind; missing kinds: no retries
    notifications: StandNotifications = StandNotifications()

    def task_retries(self, kind: str) -> TaskRetries:
        """How often Airflow retries the Spark task of job ``kind``, and after how long."""
        return dict(self.retries).get(kind, TaskRetries(0, 0))

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
        return spark_uri(self.storage_uri)


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
        problems += [doc.problem(origin(path), f"stand {name!r}: {message}") for path, message in _cross_checks(merged)]
        if problems:
            continue
        by_name[name] = _stand(name, merged, chain.get(name), before.get(name), manual_before.get(name, False))
        if merged["backend"] == "local" and not merged["storage"]["uri"].startswith("file://"):
            problems.append(doc.problem(("stands", name, "storage", "uri"), "a local stand needs file:// storage"))
    if problems:
        raise ConfigError(problems)
    return Stands(display, tuple(order), by_name, tuple(n for n in standalone if n not in order))


def _cross_checks(d: dict[str, Any]) -> Iterator[tuple[PathT, str]]:
    """What the schema can't say: keys that go together, and Spark properties another key owns."""
    for key in d["spark"].get("conf", {}):
        owner = DERIVED_CONF.get(key)
        if owner is not None and _has(d, owner):
            yield ("spark", "conf", key), f"{key} is also set from {'.'.join(owner)}; keep one of the two"
    if ARCH_LABEL in d["kubernetes"].get("node_selector", {}):
        yield (("kubernetes", "node_selector", ARCH_LABEL),
               f"{ARCH_LABEL} is set by the toolkit, to the architecture environment archives are built for")
    creds = d["storage"].get("credentials", {})
    if creds.get("mode") == "secret" and "secret" not in creds:
        yield ("storage", "credentials"), "mode secret needs `secret`: the name of the Secret holding the keys"
    # a Secret named without a mode is a forgotten `mode: secret` (another stand's mode may leave them unused)
    for key in ("secret", *S3A_CREDENTIAL_KEYS):
        if key in creds and "mode" not in creds:
            yield ("storage", "credentials", key), f"{key} needs mode: secret (the default is instance_profile)"
    mlflow = d["mlflow"].get("credentials")
    if mlflow is not None:
        if "secret" not in mlflow:
            yield ("mlflow", "credentials"), "needs `secret`: the name of the Secret holding MLflow's credentials"
        basic = [k for k in ("username_key", "password_key") if k in mlflow]
        if "token_key" in mlflow and basic:
            yield ("mlflow", "credentials"), "give token_key, or username_key and password_key, not both"
        elif "token_key" not in mlflow and len(basic) != 2:
            yield ("mlflow", "credentials"), "give token_key, or both username_key and password_key"
    log = d["spark"].get("event_log", {})
    if log.get("enabled") and "dir" not in log:
        yield ("spark", "event_log"), "enabled needs `dir`: where the history server reads the logs"


def _has(d: dict[str, Any], path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return False
        d = d[key]
    return True


def _s3_secret_env(creds: dict[str, Any]) -> tuple[SecretEnv, ...]:
    """AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the Secret's keys (named as the variables unless
    said otherwise), and AWS_SESSION_TOKEN when a key is named for it."""
    return tuple(SecretEnv(env, creds["secret"], creds.get(key, env)) for key, env in S3A_CREDENTIAL_KEYS.items()
                 if key in creds or key != "session_token_key")


def _mlflow_secret_env(creds: dict[str, Any]) -> tuple[SecretEnv, ...]:
    """MLFLOW_TRACKING_TOKEN, or _USERNAME and _PASSWORD: the variables whose keys the block names."""
    return tuple(SecretEnv(env, creds["secret"], creds[key]) for key, env in MLFLOW_CREDENTIAL_KEYS.items()
                 if key in creds)


def _retries(backend: BackendName, d: dict[str, Any]) -> tuple[tuple[str, TaskRetries], ...]:
    out = []
    for kind in SPARK_JOB_KINDS:
        given = d.get(kind, {})
        delay = given.get("retry_delay", DEFAULT_RETRY_DELAY)
        out.append((kind, TaskRetries(given.get("retries", DEFAULT_RETRIES[backend][kind]),
                                      int(delay[:-1]) * DURATION_SECONDS[delay[-1]])))
    return tuple(out)


def _stand(name: str, d: dict[str, Any], nxt: str | None, previous: str | None = None,
           manual_on_the_way: bool = False) -> Stand:
    k8s, spark, deploy, acceptance = d["kubernetes"], d["spark"], d["deploy"], d.get("acceptance", {})
    backend = cast("BackendName", d["backend"])  # the schema allows only these values
    creds, mlflow_creds = d["storage"].get("credentials", {}), d["mlflow"].get("credentials")
    mode = cast("S3Credentials", creds.get("mode", "instance_profile"))
    security, log = k8s.get("security", {}), spark.get("event_log", {})
    return Stand(
        name=name,
        backend=backend,
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
        s3_path_style_access=bool(d["storage"].get("path_style_access", False)),
        s3_credentials=mode,
        s3_secret_env=_s3_secret_env(creds) if mode == "secret" else (),
        mlflow_secret_env=_mlflow_secret_env(mlflow_creds) if mlflow_creds else (),
        image_pull_secrets=tuple(k8s.get("image_pull_secrets", [])),
        node_selector=tuple(sorted(k8s.get("node_selector", {}).items())),
        pod_security=PodSecurity(security.get("run_as_user", SPARK_UID), security.get("run_as_group", SPARK_UID))
        if security.get("restricted", True) else None,
        delete_on_termination=bool(k8s.get("delete_on_termination", False)),
        event_log_enabled=bool(log.get("enabled", False)),
        event_log_dir=log["dir"].rstrip("/") if log.get("dir") else None,
        retries=_retries(backend, d["airflow"].get("retries", {})),
        notifications=_notifications(d),
    )


def _notifications(d: dict[str, Any]) -> StandNotifications:
    """The stand's channels; links default to the stand's Airflow and (when a browser can open it) MLflow."""
    n = d.get("notifications", {})
    smtp, webhook, links = n.get(CHANNEL_SMTP), n.get(CHANNEL_WEBHOOK), n.get("links", {})
    tracking = d["mlflow"]["tracking_uri"]
    return StandNotifications(
        smtp=SmtpChannel(smtp["conn_id"], tuple(smtp.get("to", [])), smtp.get("from")) if smtp else None,
        slack_conn_id=n[CHANNEL_SLACK]["conn_id"] if CHANNEL_SLACK in n else None,
        webhook=WebhookChannel(webhook["conn_id"], webhook["endpoint"]) if webhook else None,
        events=tuple(e for e in EVENTS if e in n.get("events", EVENTS)),
        airflow_url=(links.get("airflow") or d["airflow"].get("api_url") or "").rstrip("/") or None,
        mlflow_url=(links.get("mlflow") or (tracking if tracking.startswith(("http://", "https://")) else "")
                    ).rstrip("/") or None,
    )
