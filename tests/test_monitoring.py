"""The cooldown's memory: which recorded decisions count as a triggered retrain."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from mlops_module.monitoring.orchestration import decisions_prefix, last_trigger
from mlops_module.storage import FileStorage


def _record(store: FileStorage, key: str, action: str, at: str, run: str) -> None:
    store.put_bytes(f"{decisions_prefix('m', 'prom')}{key}.json",
                    json.dumps({"action": action, "at": at, "airflow_run_id": run}).encode())


def test_the_latest_retrain_whose_train_run_exists_counts(tmp_path: Path) -> None:
    store = FileStorage(f"file://{tmp_path}")
    _record(store, "1", "retrain", "2025-05-10T00:00:00+00:00", "scheduled__a")
    _record(store, "2", "no_action", "2025-05-12T00:00:00+00:00", "scheduled__b")
    _record(store, "3", "retrain", "2025-05-13T00:00:00+00:00", "scheduled__c")  # its trigger failed
    _record(store, "4", "retrain", "2025-05-14T00:00:00+00:00", "scheduled__d")  # this very run, re-run
    store.put_bytes(f"{decisions_prefix('m', 'prom')}5.json", b"not json")
    at = last_trigger(store, "m", "prom", exclude_run="scheduled__d", triggered=lambda run: run != "scheduled__c")
    assert at == datetime.datetime(2025, 5, 10, tzinfo=datetime.timezone.utc)
    assert last_trigger(store, "m", "prom") == datetime.datetime(2025, 5, 14, tzinfo=datetime.timezone.utc)
    assert last_trigger(store, "m", "int") is None
