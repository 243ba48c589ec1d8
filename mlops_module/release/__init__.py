"""Releasing: the registry-backed quality gate, promotion with its lock and history, approval,
rollback, the next stand's deploy trigger, and publishing bundles to a stand's Airflow."""
