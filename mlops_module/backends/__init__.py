"""Compatibility only: DAG files rendered before the package was laid out by stage import
``mlops_module.backends.local_operator``. The execution backends live in :mod:`mlops_module.building.backends`;
the local operator in :mod:`mlops_module.local.operator`. Kept import-free (DAG parse time)."""
