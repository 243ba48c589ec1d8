"""The runtime DS scripts import: the job argument contract, and the MLflow run the gate finds."""

from __future__ import annotations

import datetime

import pytest

from mlops_module.release import registry
from mlops_module.runtime import JobArgumentError, JobContext, context, load_model, log_model, mlflow_run

STANDARD = ["--job", "train", "--model", "churn", "--stand", "mdp", "--run-id", "manual__2025-03-10T03:00:00+00:00",
            "--data-interval-start", "2025-03-03T03:00:00+00:00", "--data-interval-end", "2025-03-10T03:00:00+00:00",
            "--data-window-days", "90", "--reason", "drift: plan", "--tracking-uri", "http://127.0.0.1:1",
            "--storage-uri", "s3://b/models", "--"]


def test_standard_arguments_and_the_scripts_own() -> None:
    job = context([*STANDARD, "--max-iter", "50", "--"])
    assert (job.job, job.model, job.stand) == ("train", "churn", "mdp")
    assert job.data_interval_end == datetime.datetime(2025, 3, 10, 3, tzinfo=datetime.timezone.utc)
    assert job.window_start == datetime.datetime(2024, 12, 10, 3, tzinfo=datetime.timezone.utc)  # 90 days back
    assert job.args == ("--max-iter", "50", "--")
    assert job.reason == "drift: plan"


def test_without_a_window_the_interval_is_read() -> None:
    argv = [a for a in STANDARD if a not in ("--data-window-days", "90")]
    job = context(argv)
    assert job.window_start == job.data_interval_start


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--data-interval-end", "yesterday"), "is not an ISO 8601 timestamp"),
        (("--data-interval-end", "2025-01-01T00:00:00+00:00"), "ends"),
    ],
)
def test_bad_arguments_are_clear(change: tuple[str, str], message: str) -> None:
    argv = list(STANDARD)
    argv[argv.index(change[0]) + 1] = change[1]
    with pytest.raises(JobArgumentError, match=message):
        context(argv)


def test_missing_standard_arguments() -> None:
    with pytest.raises(JobArgumentError):
        context(["--", "--max-iter", "5"])


def _job(mlflow_server: str, model: str) -> JobContext:
    argv = list(STANDARD)
    argv[argv.index("--tracking-uri") + 1] = mlflow_server
    argv[argv.index("--model") + 1] = model
    return context(argv)


@pytest.mark.slow
def test_the_gate_finds_what_the_train_job_registered(mlflow_server: str) -> None:
    from sklearn.linear_model import LogisticRegression

    job = _job(mlflow_server, "runtime-test")
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    with mlflow_run(job):
        version = log_model(job, model, metrics={"roc_auc": 0.9})
    client = registry.client(mlflow_server)
    run_id = registry.run_of_airflow_run(client, "runtime-test", "mdp", job.run_id)
    assert registry.version_of_run(client, "runtime-test", run_id) == version
    assert client.get_model_version("runtime-test", version).tags["retrain_reason"] == "drift: plan"
    client.set_registered_model_alias("runtime-test", "mdp", version)
    loaded, loaded_version = load_model(job)
    assert loaded_version == version
    assert list(loaded.predict([[0.0], [3.0]])) == [0, 1]


@pytest.mark.slow
def test_challenger_is_the_newest_version_that_passed_a_gate_but_not_this_stand(mlflow_server: str) -> None:
    from mlops_module.runtime import challenger

    job = _job(mlflow_server, "challenger-test")
    client = registry.client(mlflow_server)
    client.create_registered_model("challenger-test")
    assert challenger(job) is None  # nothing registered yet
    experiment = client.create_experiment("challenger-test")
    runs = [client.create_run(experiment) for _ in range(5)]
    versions = [client.create_model_version("challenger-test", f"{r.info.artifact_uri}/model", r.info.run_id).version
                for r in runs]
    gates = {versions[0]: {"quality_gate.mdp": "success"}, versions[1]: {"quality_gate.local": "success"},
             versions[2]: {"quality_gate.local": "success", "quality_gate.mdp": "failed"},
             versions[3]: {"quality_gate.local": "failed"}, versions[4]: {}}
    for version, tags in gates.items():
        for key, value in tags.items():
            client.set_model_version_tag("challenger-test", version, key, value)
    client.set_registered_model_alias("challenger-test", "mdp", versions[0])
    assert challenger(job) == str(versions[1])  # passed local's gate; v3 failed on mdp, v4 failed, v5 ungated
    client.set_registered_model_alias("challenger-test", "mdp", versions[1])
    assert challenger(job) is None
