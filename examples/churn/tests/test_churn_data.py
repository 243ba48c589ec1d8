"""The synthetic data: deterministic, plausible, and shifted by the drift knob the way the story says."""

import datetime

import pytest
from data import PLANS, generate

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)


def test_same_seed_same_data_other_seed_other_data() -> None:
    assert generate(2000, seed=1).equals(generate(2000, seed=1))
    assert not generate(2000, seed=1).equals(generate(2000, seed=2))


def test_columns_ranges_and_time_span() -> None:
    frame = generate(5000, seed=0, start=START, days=30)
    assert list(frame.columns) == ["customer_id", "ts", "tenure", "monthly_charges", "plan", "churned"]
    assert frame.customer_id.is_unique and not set(frame.customer_id) & set(generate(100, seed=1).customer_id)
    assert frame.ts.is_monotonic_increasing
    assert frame.ts.min() >= START and frame.ts.max() < START + datetime.timedelta(days=30)
    assert frame.tenure.min() >= 0 and frame.monthly_charges.between(10, 200).all()
    assert set(frame.plan) == set(PLANS)
    assert 0.15 < frame.churned.mean() < 0.45  # a churn rate a retail business would recognise


def test_drift_shifts_every_feature() -> None:
    base, drifted = generate(20000, seed=0), generate(20000, seed=0, drift=1.0)
    assert drifted.tenure.mean() > base.tenure.mean() * 1.3
    assert drifted.monthly_charges.mean() == pytest.approx(base.monthly_charges.mean() + 25, abs=2)
    assert (drifted.plan == "basic").mean() > (base.plan == "basic").mean() + 0.15
