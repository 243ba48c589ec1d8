"""Compatibility re-export for DAG files deployed before the stage layout (they import this path).

New renders import :mod:`mlops_module.local.operator`; the next ``mlops deploy`` of a stand replaces
the old files, and until then they keep loading through this module."""

from mlops_module.local.operator import LocalSparkSubmitOperator

__all__ = ["LocalSparkSubmitOperator"]
