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


# --- a fair comparison: the paired difference's interval and the tolerance ----------------------------------

NOT_WORSE = MetricThreshold("roc_auc", 0.75, None, 0.0)


def test_a_near_tie_passes_on_its_interval() -> None:
    """The retrain 1e-5 below the champion: its paired gain's interval straddles 0, so it is a tie."""
    metrics = {"roc_auc": 0.84999, "champion.roc_auc": 0.85}
    result = evaluate((NOT_WORSE,), metrics, "3", "3", {"roc_auc": (-0.012, 0.011)}, evidence="the evaluate job")
    assert result.passed
    check = result.checks[0]
    assert (check.gain_low, check.gain_high) == (-0.012, 0.011)
    without = evaluate((NOT_WORSE,), metrics, "3", "3")  # a point comparison flips on the noise
    assert not without.passed


def test_a_clearly_worse_candidate_fails_on_its_interval() -> None:
    result = evaluate((NOT_WORSE,), {"roc_auc": 0.80, "champion.roc_auc": 0.85}, "3", "3",
                      {"roc_auc": (-0.07, -0.03)})
    assert not result.passed
    assert "interval [-0.07, -0.03] wholly below the required 0" in result.summary()


def test_tolerance_widens_what_counts_as_not_worse() -> None:
    tolerant = MetricThreshold("roc_auc", 0.75, None, 0.0, tolerance=0.05)
    assert evaluate((tolerant,), {"roc_auc": 0.80, "champion.roc_auc": 0.85}, "3", "3",
                    {"roc_auc": (-0.07, -0.03)}).passed
    assert evaluate((tolerant,), {"roc_auc": 0.81, "champion.roc_auc": 0.85}, "3", "3").passed  # -0.04 >= -0.05
    failed = evaluate((tolerant,), {"roc_auc": 0.79, "champion.roc_auc": 0.85}, "3", "3")
    assert "less than the required 0 - tolerance 0.05" in failed.summary()


def test_an_error_metrics_interval_is_turned_around() -> None:
    """For log_loss lower is better: candidate - champion of [-0.02, -0.01] is a gain of [0.01, 0.02]."""
    loss = MetricThreshold("log_loss", None, 0.6, 0.005)
    result = evaluate((loss,), {"log_loss": 0.40, "champion.log_loss": 0.415}, "3", "3",
                      {"log_loss": (-0.02, -0.01)})
    assert result.passed and (result.checks[0].gain_low, result.checks[0].gain_high) == (0.01, 0.02)
    worse = evaluate((loss,), {"log_loss": 0.45, "champion.log_loss": 0.40}, "3", "3", {"log_loss": (0.03, 0.07)})
    assert not worse.passed


def test_evidence_of_another_champion_must_be_measured_again() -> None:
    result = evaluate((NOT_WORSE,), {"roc_auc": 0.9, "champion.roc_auc": 0.85}, "4", "3", {"roc_auc": (0.01, 0.09)},
                      evidence="the evaluate job on int")
    assert not result.passed and "evaluate again" in result.summary()


def test_load_thresholds_are_metrics_like_any_other() -> None:
    from mlops_module.spec.config import LoadCheck

    thresholds = LoadCheck(60.0, 100.0).thresholds()
    slow = evaluate(thresholds, {"load.duration_seconds": 75.0, "load.rows_per_second": 50.0},
                    evidence="the evaluate job on lt and its load run")
    assert "load.duration_seconds: 75 is above the maximum 60" in slow.summary()
    assert "load.rows_per_second: 50 is below the minimum 100" in slow.summary()
    unmeasured = evaluate(thresholds, {}, evidence="lt's load run").summary()
    assert "load.duration_seconds: not logged by lt's load run" in unmeasured
