"""The gate's rules, as a pure function."""

from __future__ import annotations

import pytest

from mlops_module.release.gate import evaluate
from mlops_module.spec.config import MetricThreshold

AUC = MetricThreshold("roc_auc", 0.75, None, 0.01)
LOSS = MetricThreshold("log_loss", None, 0.6, None)
RMSE = MetricThreshold("rmse", None, 3.0, 0.1)


def test_passes_thresholds_without_a_champion() -> None:
    result = evaluate((AUC, LOSS), {"roc_auc": 0.8, "log_loss": 0.5})
    assert result.passed and result.champion_version is None
    assert result.summary() == "passed 2 check(s) (no champion)"


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        ({"roc_auc": 0.7, "log_loss": 0.5}, "roc_auc: 0.7 is below the minimum 0.75"),
        ({"roc_auc": 0.8, "log_loss": 0.61}, "log_loss: 0.61 is above the maximum 0.6"),
        ({"log_loss": 0.5}, "roc_auc: not logged by the training run"),
        ({"roc_auc": float("nan"), "log_loss": 0.5}, "roc_auc: not logged by the training run (or not a finite"),
    ],
)
def test_fails_with_a_reason(metrics: dict[str, float], reason: str) -> None:
    result = evaluate((AUC, LOSS), metrics)
    assert not result.passed
    assert reason in result.summary()


def test_min_improvement_over_the_champion_on_the_same_data() -> None:
    better = evaluate((AUC,), {"roc_auc": 0.82, "champion.roc_auc": 0.80}, champion_version="3", scored_champion="3")
    assert better.passed
    stale = evaluate((AUC,), {"roc_auc": 0.82, "champion.roc_auc": 0.80}, champion_version="4", scored_champion="3")
    assert not stale.passed and "the champion is version 4 now" in stale.summary()
    not_enough = evaluate((AUC,), {"roc_auc": 0.805, "champion.roc_auc": 0.80}, champion_version="3",
                          scored_champion="3")
    assert not not_enough.passed
    assert "less than the required 0.01" in not_enough.summary()
    unknown = evaluate((AUC,), {"roc_auc": 0.9}, champion_version="3")
    assert not unknown.passed and "champion.roc_auc" in unknown.summary()


def test_error_metrics_improve_downwards() -> None:
    assert evaluate((RMSE,), {"rmse": 2.0, "champion.rmse": 2.2}, champion_version="1", scored_champion="1").passed
    worse = evaluate((RMSE,), {"rmse": 2.15, "champion.rmse": 2.2}, champion_version="1", scored_champion="1")
    assert not worse.passed and "by 0.05" in worse.summary()


def test_result_is_plain_data() -> None:
    result = evaluate((AUC, LOSS), {"roc_auc": 0.7})
    data = result.as_dict()
    assert data["verdict"] == "failed"
    assert [c["name"] for c in data["checks"]] == ["roc_auc", "log_loss"]
    assert [c["passed"] for c in data["checks"]] == [False, False]
