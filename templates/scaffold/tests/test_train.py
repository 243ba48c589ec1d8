"""Fast checks of the training code, without Spark or MLflow (add your own beside them)."""

from train import FEATURES, LABEL, build_model, sample_data


def test_sample_data_has_the_features_and_both_classes() -> None:
    frame = sample_data(500)
    assert list(frame.columns) == [*FEATURES, LABEL]
    assert set(frame[LABEL]) == {0, 1}


def test_the_model_learns_the_sample_data() -> None:
    frame = sample_data(2000)
    model = build_model().fit(frame[list(FEATURES)], frame[LABEL])
    assert model.score(frame[list(FEATURES)], frame[LABEL]) > 0.7
