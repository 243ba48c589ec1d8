"""Execution backends: how a stand's DAG runs a SparkApplication manifest.

Small siblings behind one interface, one module per execution mode (as astronomer-cosmos does):
``kubernetes`` hands the manifest to spark-operator, ``local`` runs the same manifest with
spark-submit in local mode. The manifest is the same file either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # DAG files import this package's local operator: keep that import light
    from mlops_module.spec.stands import Stand


@dataclass(frozen=True)
class SparkTask:
    """What a DAG file needs to run one Spark job: an import, an operator and its arguments.

    ``kwargs`` values are Python source (literals made by :func:`mlops_module.building.literals.py`).
    """

    import_line: str
    operator: str
    kwargs: tuple[tuple[str, str], ...]


class Backend(Protocol):
    name: str

    def spark_task(self, stand: Stand, task_id: str, manifest: str) -> SparkTask: ...


def backend_for(stand: Stand) -> Backend:
    if stand.backend == "local":
        from mlops_module.building.backends.local import LocalBackend

        return LocalBackend()
    from mlops_module.building.backends.kubernetes import KubernetesBackend

    return KubernetesBackend()
