"""Tools for one machine: the local stand's operator and spark-submit, Airflow without a scheduler
(``mlops run``), a local MLflow server, the demo and the scaffold (``mlops init``).

Kept import-free: generated DAG files import :mod:`mlops_module.local.operator` at parse time."""
