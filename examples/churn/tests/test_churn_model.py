"""The training pipeline clears the quality gate's bar; a model on tenure alone does not (the demo's
planted candidate); the script's own arguments are checked before any Spark work."""

import pytest
from data import generate
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from train import FEATURES, build_model, main

GATE_MIN_ROC_AUC = 0.75  # model.yaml: quality_gate.metrics roc_auc min


def _auc(features: list[str]) -> float:
    frame = generate(20000, seed=5)
    x_train, x_test, y_train, y_test = train_test_split(frame[list(FEATURES)], frame.churned, test_size=0.2,
                                                        random_state=0, stratify=frame.churned)
    model = build_model(features, max_iter=50).fit(x_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))


def test_all_features_pass_the_gate_minimum() -> None:
    assert _auc(list(FEATURES)) > GATE_MIN_ROC_AUC + 0.03


def test_tenure_alone_does_not() -> None:
    assert _auc(["tenure"]) < GATE_MIN_ROC_AUC


STANDARD = ["--job", "train", "--model", "churn-classifier", "--stand", "local", "--run-id", "manual__1",
            "--data-interval-start", "2025-04-24T00:00:00+00:00", "--data-interval-end", "2025-05-01T00:00:00+00:00",
            "--tracking-uri", "http://127.0.0.1:1", "--storage-uri", "file:///nowhere"]


def test_unknown_feature_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*STANDARD, "--", "--features", "tenure,postcode"])
    assert exit_info.value.code == 2
    assert "unknown postcode" in capsys.readouterr().err
