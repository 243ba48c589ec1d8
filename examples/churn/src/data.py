"""Synthetic churn data: deterministic for a seed, realistic enough to train on, with a drift knob.

Customers have a tenure (months), monthly charges and a plan; churn is more likely for short
tenures, high charges and the basic plan. ``drift`` shifts the inputs (longer-tenured, pricier,
more basic plans) the way a changing customer base would.
"""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd

PLANS = ("basic", "standard", "premium")


def generate(rows: int, seed: int = 0, drift: float = 0.0,
             start: datetime.datetime = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
             days: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0 + 2.0 * drift, 12.0, rows).round(1)
    charges = rng.normal(70.0 + 25.0 * drift, 20.0, rows).clip(10, 200).round(2)
    plan_p = np.array([0.3 + 0.3 * drift, 0.45 - 0.15 * drift, 0.25 - 0.15 * drift])
    plan = rng.choice(PLANS, rows, p=plan_p / plan_p.sum())
    logit = (-0.08 * tenure + 0.045 * (charges - 70.0) + np.where(plan == "basic", 1.1, 0.0)
             - np.where(plan == "premium", 0.6, 0.0) + 0.3)
    churned = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    seconds = rng.integers(0, days * 86400, rows)
    ts = pd.to_datetime(start) + pd.to_timedelta(np.sort(seconds), unit="s")
    ids = seed * 1_000_000_000 + np.arange(rows, dtype=np.int64)  # unique across seeds: labels join on it
    return pd.DataFrame({"customer_id": ids, "ts": ts, "tenure": tenure, "monthly_charges": charges, "plan": plan,
                         "churned": churned})
