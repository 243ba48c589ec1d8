"""The retraining decision: a pure function, every branch and guard."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from mlops_module.monitoring.decision import INSUFFICIENT, NO_ACTION, RETRAIN, decide

NOW = datetime.datetime(2025, 5, 15, 1, tzinfo=datetime.timezone.utc)


def _result(psi: dict[str, float], rows: int = 5000, performance: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"window": {"start": "2025-05-08T00:00:00+00:00", "end": "2025-05-15T00:00:00+00:00"},
            "current_rows": rows, "performance": performance,
            "features": [{"name": n, "psi": v, "ks": v / 2, "js": v / 3} for n, v in psi.items()]}


def _decide(result: dict[str, Any], **kw: Any) -> Any:
    args: dict[str, Any] = {"method": "psi", "threshold": 0.2, "share": 0.3, "min_rows": 1000, "now": NOW,
                            "retrain_on": ("drift", "performance"), "cooldown_seconds": 3 * 86400,
                            "window_days": 90}
    return decide(result, **(args | kw))


def test_drift_triggers_a_retrain_with_a_window_and_a_reason() -> None:
    d = _decide(_result({"tenure": 0.41, "charges": 0.05, "plan": 0.3}))
    assert d.action == RETRAIN and d.drifted == ("tenure", "plan")
    assert d.conf() == {"data_interval_start": "2025-02-14T00:00:00+00:00",
                        "data_interval_end": "2025-05-15T00:00:00+00:00", "reason": d.reason}
    assert d.reason.startswith("drift: 2 of 3 features drifted (tenure psi 0.41, plan psi 0.3)")


def test_no_drift_no_action() -> None:
    d = _decide(_result({"tenure": 0.05, "charges": 0.01, "plan": 0.19}))
    assert d.action == NO_ACTION and d.drifted == () and d.suppressed_by is None


def test_too_few_rows_decide_nothing() -> None:
    d = _decide(_result({"tenure": 0.9}, rows=999))
    assert d.action == INSUFFICIENT and "at least 1000" in d.reason


def test_share_below_the_threshold() -> None:
    d = _decide(_result({"a": 0.5, "b": 0.0, "c": 0.0, "d": 0.0}))
    assert d.action == NO_ACTION and d.drifted_share == 0.25


def test_only_watched_features_count_and_method_picks_the_score() -> None:
    result = _result({"tenure": 0.5, "noise": 0.5, "plan": 0.0})
    assert _decide(result, watched=("plan",)).action == NO_ACTION
    assert _decide(result, method="ks", threshold=0.25).drifted == ("tenure", "noise")


def test_performance_decay_triggers_when_configured() -> None:
    result = _result({"tenure": 0.0}, performance={"metric": "roc_auc", "value": 0.65, "rows": 4000})
    d = _decide(result, performance={"metric": "roc_auc", "min": 0.7, "max": None})
    assert d.action == RETRAIN and d.performance_decayed and "roc_auc 0.65 below the minimum 0.7" in d.reason
    only_drift = _decide(result, performance={"metric": "roc_auc", "min": 0.7, "max": None}, retrain_on=("drift",))
    assert only_drift.action == NO_ACTION and "does not include performance" in only_drift.reason


def test_drift_ignored_when_retrain_on_excludes_it() -> None:
    assert _decide(_result({"tenure": 0.9}), retrain_on=("performance",)).action == NO_ACTION


@pytest.mark.parametrize(("hours_ago", "action"), [(1, NO_ACTION), (71, NO_ACTION), (73, RETRAIN)])
def test_cooldown(hours_ago: int, action: str) -> None:
    d = _decide(_result({"tenure": 0.9}), last_trigger=NOW - datetime.timedelta(hours=hours_ago))
    assert d.action == action
    if action == NO_ACTION:
        assert d.suppressed_by == "cooldown" and "lasts until" in d.reason


def test_no_trigger_while_training_is_in_flight() -> None:
    d = _decide(_result({"tenure": 0.9}), train_runs_active=1)
    assert d.action == NO_ACTION and d.suppressed_by == "train_in_flight"


def test_without_a_data_window_the_monitoring_window_is_the_training_window() -> None:
    d = _decide(_result({"tenure": 0.9}), window_days=None)
    assert (d.window_start, d.window_end) == ("2025-05-08T00:00:00+00:00", "2025-05-15T00:00:00+00:00")


def test_performance_on_too_few_labels_decides_nothing() -> None:
    result = _result({"tenure": 0.0}, performance={"metric": "roc_auc", "value": 0.1, "rows": 12})
    d = _decide(result, performance={"metric": "roc_auc", "min": 0.7, "max": None})
    assert d.action == NO_ACTION and not d.performance_decayed


def test_a_long_list_of_drifted_features_is_capped_in_the_reason() -> None:
    d = _decide(_result({f"f{i:03}": 0.5 + i / 1000 for i in range(300)}))
    assert d.action == RETRAIN and "and 290 more" in d.reason and len(d.reason) < 1000
    assert len(d.drifted) == 300


def test_no_champion_yet_is_insufficient_data_with_the_reason() -> None:
    result = _result({}, rows=0) | {"note": "no version of m holds the prom alias yet: nothing to compare with"}
    d = _decide(result)
    assert d.action == INSUFFICIENT and d.reason.startswith("no version of m holds the prom alias yet")
