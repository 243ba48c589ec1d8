"""What a stand adds to every SparkApplication it runs: S3A access, credentials from Secrets, pod security,
scheduling and event logs, computed from the resolved stand as plain data (render.py quotes it).

Which manifest field carries each setting, read against spark-operator v2.5.2 (``submission.go``,
``sparkpod_defaulter.go``):

- S3A settings go into ``sparkConf`` as ``spark.hadoop.fs.s3a.*``, not into ``hadoopConf``: the operator
  turns ``hadoopConf`` into those same ``spark.hadoop.`` properties, so the effect is the same, and one map
  keeps one place where the model's ``spark.conf`` meets the stand's (a model may not set these keys), which
  the local stand's spark-submit reads too.
- ``nodeSelector`` and ``imagePullSecrets`` are spec-level fields: the operator passes them to spark-submit
  (``spark.kubernetes.node.selector.*``, ``spark.kubernetes.container.image.pullSecrets``), so they work
  without its mutating webhook, for driver and executors alike.
- ``env`` (``valueFrom.secretKeyRef``), ``securityContext`` and ``podSecurityContext`` of driver and
  executor are applied by the operator's mutating webhook (the Helm chart's default, ``webhook.enable: true``):
  a cluster without it silently drops them. ``env`` rather than ``envFrom``: each variable names the Secret
  key it reads, so a Secret's other keys never reach the job; ``envSecretKeyRefs`` would avoid the webhook
  but is deprecated in the CRD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlops_module import names
from mlops_module.building.artifacts import TARGET_PLATFORM
from mlops_module.spec.stands import SecretEnv, Stand, spark_uri

# Hadoop 3.3.x (Spark 3.5's) S3A with the AWS SDK v1 bundle. Its default chain has no web-identity provider,
# so IRSA-style credentials need it named; mode secret names the environment provider so that missing keys
# fail loudly instead of falling back to the node's instance profile.
S3A_PROVIDERS = {
    "web_identity": "com.amazonaws.auth.WebIdentityTokenCredentialsProvider",
    "secret": "com.amazonaws.auth.EnvironmentVariableCredentialsProvider",
}
# Kubernetes' name for the CPU architecture of a wheel platform tag's machine
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def node_arch(platform: str = TARGET_PLATFORM) -> str:
    """The ``kubernetes.io/arch`` of the nodes an environment archive built for ``platform`` runs on."""
    return _ARCH[platform.split("-", 1)[0]]


@dataclass(frozen=True)
class StandManifest:
    """The stand's part of a manifest. ``spark_conf`` goes under the model's own ``spark.conf``."""

    spark_conf: dict[str, str]
    driver_env: list[dict[str, Any]] = field(default_factory=list)
    executor_env: list[dict[str, Any]] = field(default_factory=list)
    pod_security_context: dict[str, Any] | None = None
    security_context: dict[str, Any] | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    image_pull_secrets: list[str] = field(default_factory=list)


def _env(variables: tuple[SecretEnv, ...]) -> list[dict[str, Any]]:
    return [{"name": v.env, "valueFrom": {"secretKeyRef": {"name": v.secret, "key": v.key}}} for v in variables]


def s3a_conf(stand: Stand) -> dict[str, str]:
    """Spark's S3A settings for the stand's s3:// storage (none for file:// storage)."""
    if not stand.storage_uri.startswith("s3://"):
        return {}
    conf = {names.S3A_PATH_STYLE: str(stand.s3_path_style_access).lower()}
    if stand.storage_endpoint_url:
        endpoint = stand.storage_endpoint_url.rstrip("/")
        conf[names.S3A_ENDPOINT] = endpoint
        conf[names.S3A_SSL] = str(endpoint.startswith("https://")).lower()
    if stand.s3_credentials in S3A_PROVIDERS:
        conf[names.S3A_CREDENTIALS_PROVIDER] = S3A_PROVIDERS[stand.s3_credentials]
    return conf


def event_log_conf(stand: Stand) -> dict[str, str]:
    conf = {names.EVENT_LOG_ENABLED: str(stand.event_log_enabled).lower()}
    if stand.event_log_dir:
        conf[names.EVENT_LOG_DIR] = spark_uri(stand.event_log_dir)
    return conf


def restricted_contexts(stand: Stand) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(podSecurityContext, securityContext) meeting the "restricted" Pod Security level, or (None, None).

    Pod-level: non-root as the image's numeric uid/gid, the runtime's default seccomp profile (covering any
    container a platform adds); container-level: what only a container can say (no privilege escalation,
    every capability dropped).
    """
    sec = stand.pod_security
    if sec is None:
        return None, None
    pod = {"runAsNonRoot": True, "runAsUser": sec.run_as_user, "runAsGroup": sec.run_as_group,
           "seccompProfile": {"type": "RuntimeDefault"}}
    container = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}
    return pod, container


def stand_manifest(stand: Stand) -> StandManifest:
    """Everything the stand puts into its SparkApplications; pod fields on Kubernetes stands only."""
    conf = s3a_conf(stand) | event_log_conf(stand)
    if stand.backend != "kubernetes":
        return StandManifest(conf)
    s3_env = _env(stand.s3_secret_env) if stand.storage_uri.startswith("s3://") else []
    pod, container = restricted_contexts(stand)
    return StandManifest(
        spark_conf=conf,
        driver_env=s3_env + _env(stand.mlflow_secret_env),
        executor_env=s3_env,
        pod_security_context=pod,
        security_context=container,
        node_selector={names.ARCH_LABEL: node_arch(), **dict(stand.node_selector)},
        image_pull_secrets=list(stand.image_pull_secrets),
    )
