"""The Kubernetes permissions a stand's identities need, spelt once.

`mlops platform render` turns them into Roles; `mlops doctor` asks the API server (SelfSubjectAccessReview)
whether the Airflow identity holds them. Plain data: importable without Kubernetes or Airflow installed.

AIRFLOW_PERMISSIONS is exactly what the cncf-kubernetes provider's SparkKubernetesOperator calls on the path
our DAGs use (``get_logs=True``, ``reattach_on_restart=True``, not deferrable, no ``do_xcom_push``, either
``delete_on_termination``): ``tests/test_platform_objects.py`` runs the operator against a recording client
and fails when it calls anything these rules don't grant, or when a rule grants what it never calls.
"""

from __future__ import annotations

from dataclasses import dataclass

SPARK_OPERATOR_GROUP = "sparkoperator.k8s.io"
CORE_GROUP = ""  # the core API group (pods, services, ...) is spelt as the empty string in RBAC rules


@dataclass(frozen=True)
class Permission:
    """Verbs on one resource (or one of its subresources) of one API group, in the stand's job namespace."""

    api_group: str
    resource: str
    subresource: str | None
    verbs: tuple[str, ...]
    why: str

    @property
    def rbac_resource(self) -> str:
        """The resource as a Role rule names it: ``pods``, ``pods/log``, ``sparkapplications/status``."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def grants(self, api_group: str, resource: str, subresource: str | None, verb: str) -> bool:
        return (api_group, resource, subresource) == (self.api_group, self.resource, self.subresource) and (
            verb in self.verbs)


AIRFLOW_PERMISSIONS: tuple[Permission, ...] = (
    Permission(SPARK_OPERATOR_GROUP, "sparkapplications", None, ("create", "delete"),
               "submit the job's SparkApplication; delete it after the run (delete_on_termination), on a task "
               "kill, and when its driver never starts within startup_timeout_seconds"),
    Permission(SPARK_OPERATOR_GROUP, "sparkapplications", "status", ("get",),
               "wait until the operator has submitted the application (state past SUBMITTED, or FAILED)"),
    Permission(CORE_GROUP, "pods", None, ("get", "list", "patch"),
               "list: find the driver pod by the task's labels (reattach after a worker restart); get: follow "
               "its phase and container states; patch: label a finished or failed driver already_checked, so a "
               "retry does not reattach to it"),
    Permission(CORE_GROUP, "pods", "log", ("get",),
               "stream the driver's log into the task log (get_logs=True)"),
    Permission(CORE_GROUP, "events", None, ("list",),
               "log the driver pod's events while it starts (log_events_on_startup, on by default)"),
)

# What Spark on Kubernetes needs of the driver's service account: it creates, watches and deletes its executor
# pods, the executors' ConfigMap, on-demand PersistentVolumeClaims and, in client mode, services. The same rules
# the spark-operator Helm chart (v2.x, templates/spark/rbac.yaml) grants its own spark service account.
SPARK_DRIVER_VERBS: tuple[str, ...] = (
    "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
SPARK_DRIVER_PERMISSIONS: tuple[Permission, ...] = (
    Permission(CORE_GROUP, "pods", None, SPARK_DRIVER_VERBS,
               "the driver requests, watches and removes its executor pods"),
    Permission(CORE_GROUP, "configmaps", None, SPARK_DRIVER_VERBS,
               "the executors' Spark configuration, created and removed by the driver"),
    Permission(CORE_GROUP, "services", None, SPARK_DRIVER_VERBS,
               "the driver's service (client mode and the UI), as the spark-operator chart grants"),
    Permission(CORE_GROUP, "persistentvolumeclaims", None, SPARK_DRIVER_VERBS,
               "on-demand volume claims for executors (spark.kubernetes.*.volumes.persistentVolumeClaim)"),
)
