"""Evaluation on a stand: the metrics (equal to scikit-learn's), the paired seeded bootstrap, the runtime's
acceptance arguments, and the built-in evaluate job against a real MLflow server with Spark in local mode."""

from __future__ import annotations

import datetime
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from mlops_module import names, runtime
from mlops_module.runtime import evaluation
from mlops_module.runtime.evaluation import METRICS, compare

STANDARD = ["--job", "evaluate", "--model", "churn", "--stand", "mdp", "--run-id", "accept__int-v3",
            "--data-interval-start", "2025-03-03T03:00:00+00:00", "--data-interval-end", "2025-03-10T03:00:00+00:00",
            "--tracking-uri", "http://127.0.0.1:1", "--storage-uri", "s3://b/models"]


def _sklearn(metric: str, y: Any, s: Any) -> float:
    return float({"roc_auc": lambda: skm.roc_auc_score(y, s), "log_loss": lambda: skm.log_loss(y, s, labels=[0, 1]),
                  "accuracy": lambda: skm.accuracy_score(y, (s >= 0.5).astype(int)),
                  "rmse": lambda: math.sqrt(skm.mean_squared_error(y, s)),
                  "mae": lambda: skm.mean_absolute_error(y, s)}[metric]())


def _scores(n: int, seed: int, strength: float, noise: float = 0.25) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    return y, np.clip(0.3 + strength * (y - 0.3) + rng.normal(0, noise, n), 0, 1)


# --- metrics -------------------------------------------------------------------------------------------


def test_the_metrics_are_the_performance_metrics() -> None:
    assert tuple(METRICS) == names.PERFORMANCE_METRICS
    assert {m: better for m, (_, better) in METRICS.items()} == {
        "roc_auc": True, "accuracy": True, "log_loss": False, "rmse": False, "mae": False}
    assert runtime.compare is compare and runtime.METRICS is METRICS  # scripts call them through the runtime


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_scikit_learns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 3000)
    p = rng.random(3000)
    tied = np.round(p, 1)  # few distinct scores: most of them tied, across both classes
    edges = p.copy()
    edges[:20], edges[20:40] = 0.0, 1.0  # log_loss clips these as scikit-learn does
    for s in (p, tied, edges):
        for metric, (fn, _) in METRICS.items():
            assert fn(y, s) == pytest.approx(_sklearn(metric, y, s), rel=1e-12, abs=1e-12), metric
    labels = rng.integers(0, 2, 3000)  # hard 0/1 predictions are taken as they are
    assert METRICS["accuracy"][0](y, labels) == pytest.approx(skm.accuracy_score(y, labels))
    target = rng.normal(10, 3, 3000)  # a regression
    guess = target + rng.normal(0, 1, 3000)
    assert METRICS["rmse"][0](target, guess) == pytest.approx(math.sqrt(skm.mean_squared_error(target, guess)))
    assert METRICS["mae"][0](target, guess) == pytest.approx(skm.mean_absolute_error(target, guess))


def test_metrics_without_a_value_are_nan_and_none_in_json() -> None:
    assert math.isnan(METRICS["roc_auc"][0]([1, 1, 1], [0.2, 0.5, 0.9]))  # one class: no AUC (scikit-learn raises)
    assert math.isnan(METRICS["mae"][0]([], []))
    result = compare([1, 1, 1, 1], [0.2, 0.5, 0.9, 0.4], [0.1, 0.2, 0.3, 0.4], ["roc_auc", "mae"], samples=20)
    as_json = json.loads(json.dumps(result.as_dict(), allow_nan=False))
    assert as_json["metrics"]["roc_auc"] is None and as_json["differences"]["roc_auc"] == {
        "value": None, "low": None, "high": None}
    assert as_json["metrics"]["mae"] == pytest.approx(0.5)


def test_which_metrics_apply() -> None:
    y, s = _scores(200, 0, 0.4)
    assert evaluation.applicable(y, s) == names.PERFORMANCE_METRICS
    assert evaluation.applicable(y, s, s * 3) == ("roc_auc", "rmse", "mae")  # not probabilities
    assert evaluation.applicable(np.zeros(10), s[:10]) == ("accuracy", "log_loss", "rmse", "mae")  # one class
    assert evaluation.applicable(y * 2.5, s) == ("rmse", "mae")  # a regression


# --- the bootstrap -------------------------------------------------------------------------------------


def test_the_vectorised_bootstrap_is_the_naive_paired_one() -> None:
    """Replicate by replicate: the same rows drawn for both models (numpy's stream, row after row), each
    metric by scikit-learn, replicates with one class skipped for roc_auc; the same percentiles."""
    rng = np.random.default_rng(5)
    n, samples, seed = 40, 60, 11
    y = np.zeros(n, dtype=int)
    y[:2] = 1  # two positives: about one replicate in eight draws neither
    ours, theirs = np.round(rng.random(n), 1), rng.random(n)  # ties, and rows drawn twice tie with themselves
    result = compare(y, ours, theirs, list(METRICS), samples=samples, seed=seed, confidence=0.9)
    draw = np.random.default_rng(seed)
    naive: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(samples):
        rows = draw.integers(0, n, size=n)
        for m in METRICS:
            if m == "roc_auc" and len(set(y[rows])) < 2:
                continue
            naive[m].append(_sklearn(m, y[rows], ours[rows]) - _sklearn(m, y[rows], theirs[rows]))
    assert 0 < len(naive["roc_auc"]) < samples  # the test does exercise the skipping
    for m in METRICS:
        low, high = np.percentile(naive[m], [5, 95])
        d = result.differences[m]
        assert (d.low, d.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12)), m
        assert d.value == pytest.approx(_sklearn(m, y, ours) - _sklearn(m, y, theirs), abs=1e-12)
        assert result.replicates[m] == len(naive[m])


def test_the_bootstrap_is_seeded_and_its_interval_holds_the_difference() -> None:
    y, ours = _scores(5000, 1, 0.45)
    _, theirs = _scores(5000, 1, 0.35, noise=0.27)
    first = compare(y, ours, theirs, seed=3, samples=300)
    again = compare(y, ours, theirs, seed=3, samples=300)
    other = compare(y, ours, theirs, seed=4, samples=300)
    assert first == again
    assert other.differences["roc_auc"] != first.differences["roc_auc"]
    for m, d in first.differences.items():
        assert d.low <= d.value <= d.high, m
    assert first.as_dict()["differences"]["roc_auc"]["low"] == first.differences["roc_auc"].low
    assert (first.rows, first.samples, first.seed, first.confidence) == (5000, 300, 3, 0.95)


def test_identical_models_differ_by_exactly_nothing() -> None:
    """Paired: each replicate scores both models on the same rows, so the same scores give 0 every time."""
    y, s = _scores(3000, 2, 0.4)
    result = compare(y, s, s.copy(), samples=200)
    for m, d in result.differences.items():
        assert (d.value, d.low, d.high) == (0.0, 0.0, 0.0), m


def test_a_clearly_better_candidate_is_better_throughout_the_interval() -> None:
    y, ours = _scores(4000, 3, 0.5, noise=0.2)
    rng = np.random.default_rng(9)
    theirs = np.clip(ours + rng.normal(0, 0.25, y.size), 0, 1)  # the same model, blurred
    result = compare(y, ours, theirs, samples=300)
    assert result.differences["roc_auc"].low > 0 and result.differences["accuracy"].low > 0
    assert result.differences["log_loss"].high < 0 and result.differences["rmse"].high < 0  # lower is better


def test_without_a_champion_there_is_nothing_to_difference() -> None:
    y, s = _scores(500, 4, 0.4)
    result = compare(y, s, metrics="roc_auc")
    assert set(result.metrics) == {"roc_auc"} and result.champion == {} and result.differences == {}
    with pytest.raises(ValueError, match="unknown metric f1"):
        compare(y, s, s, ["roc_auc", "f1"])


def test_a_hundred_thousand_rows_a_thousand_replicates() -> None:
    """Sanity at the size the brief names (seconds, batched; not a timed assertion)."""
    y, ours = _scores(100_000, 5, 0.4)
    theirs = np.round(ours, 2)  # many ties
    result = compare(y, ours, theirs, ["roc_auc", "log_loss"], samples=1000)
    assert result.replicates == {"roc_auc": 1000, "log_loss": 1000}
    d = result.differences["roc_auc"]
    assert d.low <= d.value <= d.high and d.high - d.low < 0.01


# --- the runtime: --model-version, load_model, challenger, write_predictions ---------------------------


def test_model_version_argument() -> None:
    assert runtime.context([*STANDARD, "--model-version", "7", "--", "--seed", "1"]).model_version == "7"
    assert runtime.context([*STANDARD, "--model-version", ""]).model_version is None
    job = runtime.context(STANDARD)
    assert job.model_version is None and job.args == ()
    positional = runtime.JobContext(*[getattr(job, f) for f in ("job", "model", "stand", "run_id",
                                                                "data_interval_start", "data_interval_end",
                                                                "window_days", "reason", "tracking_uri",
                                                                "storage_uri")])
    assert positional.model_version is None  # existing constructions keep working


@pytest.fixture()
def fake_mlflow(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """MLflow without a server: the alias resolves to version 3, loading returns the URI."""
    import mlflow
    import mlflow.pyfunc

    asked: list[str] = []

    class Client:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def get_model_version_by_alias(self, model: str, alias: str) -> Any:
            asked.append(alias)
            return SimpleNamespace(version=3)

        def search_model_versions(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("an acceptance run looks for no challenger")

    monkeypatch.setattr(mlflow, "MlflowClient", Client)
    monkeypatch.setattr(mlflow, "set_tracking_uri", lambda uri: None)
    monkeypatch.setattr(mlflow, "set_registry_uri", lambda uri: None)
    monkeypatch.setattr(mlflow.pyfunc, "load_model", lambda uri: uri)
    return asked


def test_load_model_prefers_the_version_given_then_model_version_then_the_alias(fake_mlflow: list[str]) -> None:
    job = runtime.context(STANDARD)
    assert runtime.load_model(job) == ("models:/churn/3", "3") and fake_mlflow == ["mdp"]
    pushed = runtime.context([*STANDARD, "--model-version", "7"])
    assert runtime.load_model(pushed) == ("models:/churn/7", "7")
    assert runtime.load_model(pushed, version="9") == ("models:/churn/9", "9")
    assert fake_mlflow == ["mdp"]  # the alias was asked once, without --model-version
    assert runtime.challenger(pushed) is None
    assert evaluation.candidate_version(pushed) == "7"
    assert evaluation.champion_version(pushed, "7") == "3"
    assert evaluation.champion_version(pushed, "3") is None  # the candidate holds the alias: nothing to compare


def test_acceptance_inference_writes_apart_from_the_stands_predictions() -> None:
    written: list[str] = []
    frame = SimpleNamespace(write=SimpleNamespace(mode=lambda m: SimpleNamespace(parquet=written.append)))

    def job(name: str, *extra: str) -> runtime.JobContext:
        argv = list(STANDARD)
        argv[argv.index("--job") + 1] = name
        return runtime.context([*argv, *extra])

    stamp = "interval_end=20250310T030000Z"
    assert runtime.write_predictions(job("smoke", "--model-version", "7"), frame) == \
        f"s3a://b/models/acceptance/churn/mdp/smoke/version=7/{stamp}"
    assert runtime.write_predictions(job("load"), frame) == f"s3a://b/models/acceptance/churn/mdp/load/version=alias/{stamp}"
    assert runtime.write_predictions(job("load", "--model-version", "7"), frame, shadow=True) == \
        f"s3a://b/models/acceptance/churn/mdp/load/version=7/shadow/{stamp}"
    assert runtime.write_predictions(job("inference"), frame) == f"s3a://b/models/predictions/churn/mdp/{stamp}"
    assert runtime.write_predictions(job("inference"), frame, shadow=True) == f"s3a://b/models/shadow/churn/mdp/{stamp}"
    assert len(written) == 5


# --- the built-in job, against a real MLflow server ----------------------------------------------------

MODEL = "evaluate-test"
FEATURES = ["x1", "x2", "x3"]
END = datetime.datetime(2025, 1, 21, tzinfo=datetime.timezone.utc)


def _argv(mlflow_server: str, storage: Path, job: str, run_id: str, *extra: str) -> list[str]:
    return ["--job", job, "--model", MODEL, "--stand", "local", "--run-id", run_id,
            "--data-interval-start", "2025-01-20T00:00:00+00:00", "--data-interval-end", END.isoformat(),
            "--data-window-days", "7", "--tracking-uri", mlflow_server, "--storage-uri", f"file://{storage}", *extra]


@pytest.fixture(scope="module")
def registered(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """20 days of data; a champion on one feature under the alias ``local``, a candidate on three registered
    by a train run tagged with the Airflow run the evaluate job runs in."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n = 4000
    x = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.2 * x[:, 0] + 1.0 * x[:, 1] - 0.8 * x[:, 2])))).astype(int)
    ts = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 20 * 86400, n), unit="s")
    data = pd.DataFrame({"customer_id": np.arange(n), "ts": ts, **dict(zip(FEATURES, x.T, strict=True)),
                         "churned": y})
    storage = tmp_path_factory.mktemp("evaluate-storage")
    (storage / "data" / MODEL).mkdir(parents=True)
    data.to_parquet(storage / "data" / MODEL / "events.parquet")
    train = data[data.ts < pd.Timestamp("2025-01-14", tz="UTC")]
    versions = {}
    for role, features, run_id in (("champion", ["x1"], "manual__champion"), ("candidate", FEATURES, "manual__eval")):
        job = runtime.context(_argv(mlflow_server, storage, "train", run_id))
        model = LogisticRegression().fit(train[features], train.churned)
        with runtime.mlflow_run(job):
            versions[role] = (runtime.log_model(job, model, input_example=train[features].head(3)), model, features)
    from mlflow import MlflowClient

    MlflowClient(mlflow_server).set_registered_model_alias(MODEL, "local", versions["champion"][0])
    window = data[(data.ts >= pd.Timestamp("2025-01-14", tz="UTC")) & (data.ts < pd.Timestamp(END))]
    return {"storage": storage, "versions": versions, "window": window}


@pytest.fixture()
def spark(monkeypatch: pytest.MonkeyPatch) -> Any:
    from pyspark.sql import SparkSession

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    session = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    yield session
    session.stop()  # the job stops it too: stopping twice is harmless


@pytest.mark.slow
def test_builtin_evaluate_job_logs_the_comparison_on_the_candidates_run(
        mlflow_server: str, registered: dict[str, Any], spark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    from mlops_module.runtime.jobs import evaluate

    argv = _argv(mlflow_server, registered["storage"], "evaluate", "manual__eval",
                 "--", "--label-column", "churned", "--samples", "400", "--seed", "2")
    assert evaluate.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    candidate, model, features = registered["versions"]["candidate"]
    champion, old, old_features = registered["versions"]["champion"]
    assert f"evaluated {MODEL} version {candidate} against champion version {champion}" in out

    client = MlflowClient(mlflow_server)
    run_id = client.get_model_version(MODEL, candidate).run_id
    record = runtime.read_json_artifact(client, run_id, names.evaluation_artifact("local"))
    assert list(record) == ["stand", "version", "airflow_run_id", "rows", "window", "metrics", "champion_version",
                            "champion_metrics", "differences", "confidence", "samples", "seed", "script", "at"]
    window = registered["window"]
    assert (record["stand"], record["version"], record["airflow_run_id"], record["rows"]) == (
        "local", candidate, "manual__eval", len(window))
    assert record["window"] == ["2025-01-14T00:00:00+00:00", "2025-01-21T00:00:00+00:00"]
    assert (record["champion_version"], record["script"], record["samples"], record["seed"], record["confidence"]) == (
        champion, "builtin", 400, 2, 0.95)
    assert set(record["metrics"]) == set(record["champion_metrics"]) == set(record["differences"]) == set(METRICS)
    ours = model.predict_proba(window[features])[:, 1]
    theirs = old.predict_proba(window[old_features])[:, 1]
    assert record["metrics"]["roc_auc"] == pytest.approx(skm.roc_auc_score(window.churned, ours), abs=1e-12)
    assert record["champion_metrics"]["roc_auc"] == pytest.approx(skm.roc_auc_score(window.churned, theirs), abs=1e-12)
    assert record["metrics"]["log_loss"] == pytest.approx(skm.log_loss(window.churned, ours), abs=1e-12)
    for m, d in record["differences"].items():
        assert set(d) == {"value", "low", "high"} and d["low"] <= d["value"] <= d["high"], m
    assert record["differences"]["roc_auc"]["low"] > 0  # three features beat one
    expected = compare(window.churned, ours, theirs, list(METRICS), samples=400, seed=2).as_dict()
    for m, d in expected["differences"].items():  # the same paired, seeded bootstrap as compare() on these rows
        assert record["differences"][m] == pytest.approx(d), m
    logged = client.get_run(run_id).data.metrics
    assert logged[names.evaluation_metric("local", "roc_auc")] == pytest.approx(record["metrics"]["roc_auc"])
    assert logged[names.evaluation_metric("local", "champion.roc_auc")] == pytest.approx(
        record["champion_metrics"]["roc_auc"])
    assert logged[names.evaluation_metric("local", "diff_low.roc_auc")] == pytest.approx(
        record["differences"]["roc_auc"]["low"])
    assert logged[names.evaluation_metric("local", "diff_high.log_loss")] == pytest.approx(
        record["differences"]["log_loss"]["high"])
    assert logged[names.evaluation_metric("local", "rows")] == len(window)

    # An acceptance run names the version; the champion itself has nothing to be compared with.
    argv = _argv(mlflow_server, registered["storage"], "evaluate", "accept__int-v9", "--model-version", champion,
                 "--", "--label-column", "churned", "--metrics-json", '["roc_auc"]', "--samples", "50")
    assert evaluate.main(argv) == 0, capsys.readouterr().err
    record = runtime.read_json_artifact(client, client.get_model_version(MODEL, champion).run_id,
                                        names.evaluation_artifact("local"))
    assert (record["version"], record["champion_version"], record["champion_metrics"], record["differences"]) == (
        champion, None, {}, {})
    assert list(record["metrics"]) == ["roc_auc"] and record["airflow_run_id"] == "accept__int-v9"


@pytest.mark.slow
def test_builtin_evaluate_job_refuses_unknown_metrics_and_empty_windows(
        mlflow_server: str, registered: dict[str, Any], spark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from mlops_module.runtime.jobs import evaluate

    storage = registered["storage"]
    argv = _argv(mlflow_server, storage, "evaluate", "manual__eval", "--", "--metrics-json", '["roc_auc", "f1"]')
    assert evaluate.main(argv) == 1
    assert "not f1: set quality_gate.script" in capsys.readouterr().err
    argv = _argv(mlflow_server, storage, "evaluate", "manual__eval", "--", "--label-column", "churned")
    argv[argv.index("--data-interval-end") + 1] = "2026-01-01T00:00:00+00:00"
    assert evaluate.main(argv) == 1
    err = capsys.readouterr().err
    assert "no labelled rows in file://" in err and "[2025-12-25T00:00:00+00:00, 2026-01-01T00:00:00+00:00)" in err
    argv = _argv(mlflow_server, storage, "evaluate", "manual__nothing", "--", "--label-column", "churned")
    assert evaluate.main(argv) == 1
    assert "no finished MLflow run of evaluate-test's train job" in capsys.readouterr().err
