"""The local stand: the same manifest, run by spark-submit in local mode on this machine."""

from __future__ import annotations

from mlops_module.building.backends import SparkTask
from mlops_module.building.literals import py
from mlops_module.spec.stands import Stand


class LocalBackend:
    name = "local"

    def spark_task(self, stand: Stand, task_id: str, manifest: str) -> SparkTask:
        return SparkTask(
            import_line="from mlops_module.local.operator import LocalSparkSubmitOperator",
            operator="LocalSparkSubmitOperator",
            kwargs=(("task_id", py(task_id)), ("application_file", py(manifest))),
        )
