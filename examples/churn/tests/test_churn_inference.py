"""Scoring adds a probability and the scoring version to every row, and keeps the rows as they are."""

import pandas as pd
from data import generate
from inference import score_batches
from train import FEATURES, build_model


def test_scores_every_row_with_the_version() -> None:
    frame = generate(3000, seed=2)
    model = build_model(list(FEATURES), max_iter=50).fit(frame[list(FEATURES)], frame.churned)
    batches = [frame.drop(columns="churned").iloc[:1000], frame.drop(columns="churned").iloc[1000:]]
    scored = pd.concat(score_batches(model, "7", iter(batches)))
    assert len(scored) == 3000 and list(scored.ts) == list(frame.ts)
    assert scored.churn_probability.between(0, 1).all()
    assert set(scored.model_version) == {"7"}


def test_an_empty_batch_stays_empty() -> None:
    frame = generate(500, seed=2)
    model = build_model(list(FEATURES), max_iter=50).fit(frame[list(FEATURES)], frame.churned)
    (scored,) = score_batches(model, "7", iter([frame.drop(columns="churned").iloc[:0]]))
    assert scored.empty and {"churn_probability", "model_version"} <= set(scored.columns)
