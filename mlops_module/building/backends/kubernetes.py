"""Kubernetes stands: SparkKubernetesOperator submits the manifest and waits for the driver.

No SparkKubernetesSensor afterwards (the operator already waits) and no ``do_xcom_push``
(apache/airflow#39184: the operator hangs waiting for an xcom sidecar the driver never has).
``delete_on_termination`` is the stand's (default False: the application and its driver's log stay until
its ``timeToLiveSeconds``, for ``kubectl logs`` and ``describe``).
"""

from __future__ import annotations

from mlops_module.building.backends import SparkTask
from mlops_module.building.literals import py
from mlops_module.spec.stands import Stand


class KubernetesBackend:
    name = "kubernetes"

    def spark_task(self, stand: Stand, task_id: str, manifest: str) -> SparkTask:
        return SparkTask(
            import_line=(
                "from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator"
            ),
            operator="SparkKubernetesOperator",
            kwargs=(
                ("task_id", py(task_id)),
                ("application_file", py(manifest)),
                ("namespace", py(stand.namespace)),
                ("kubernetes_conn_id", py(stand.kubernetes_conn_id)),
                ("startup_timeout_seconds", py(stand.startup_timeout_seconds)),
                ("get_logs", "True"),
                ("delete_on_termination", py(stand.delete_on_termination)),
                ("reattach_on_restart", "True"),
            ),
        )
