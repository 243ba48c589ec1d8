"""A stand's own checks decide: the model's evaluation script over the metrics its training logged, and LT's
load run over a version that is too slow. Real MLflow servers, storage, Airflow and spark-submit, run by the
platform's commands only (`mlops package`, `mlops deploy`, `mlops run`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chain_helpers import build_chain, train_window

from mlops_module import names
from mlops_module.release import registry

pytestmark = pytest.mark.slow

# The data scientist's quality check: scores the candidate on the window's rows with the labels inverted (say, a
# business rule the training metric doesn't see), so it disagrees with what train logged.
QUALITY_SCRIPT = '''
import sys

from mlops_module import runtime


def main() -> int:
    job = runtime.context()
    spark = runtime.spark_session(job)
    frame = spark.read.parquet(runtime.data_path(job, "events.parquet")).toPandas()
    version = runtime.candidate_version(job)
    model, _ = runtime.load_model(job, flavor="sklearn", version=version)
    scores = model.predict_proba(frame[list(model.feature_names_in_)])[:, 1]
    comparison = runtime.compare(1 - frame["churned"].to_numpy(), scores, metrics=("roc_auc", "log_loss"),
                                 samples=100)
    runtime.log_evaluation(job, version, comparison, rows=len(frame), script="src/quality.py")
    print("quality check:", comparison.as_dict()["metrics"])
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def deploy_head(chain, stand: str = "mdp") -> None:  # type: ignore[no-untyped-def]
    config = str(chain.repo / "model.yaml")
    chain.mlops("package", config, "--stand", stand)
    chain.mlops("deploy", config, "--stand", stand)


def test_the_models_quality_script_decides_over_the_training_metrics(tmp_path: Path) -> None:
    edits = {"quality_gate": {"script": "src/quality.py",
                              "metrics": [{"name": "roc_auc", "min": 0.75}, {"name": "log_loss", "max": 0.6}]}}
    with build_chain(tmp_path, ("mdp",), edits) as chain:
        (chain.repo / "src" / "quality.py").write_text(QUALITY_SCRIPT, encoding="utf-8")
        deploy_head(chain)
        start, end = train_window()
        run = chain.run("mdp", "train", f"data_interval_start={start}", f"data_interval_end={end}", expect=1)
        assert run["tasks"] == {"train": "success", "evaluate": "success", "quality_gate": "failed",
                                "promote": "upstream_failed", "start_inference": "upstream_failed"}
        client = chain.client("mdp")
        mv = client.get_model_version("churn-classifier", run["version"])
        trained = client.get_run(mv.run_id).data.metrics
        assert trained["roc_auc"] > 0.75 and trained["log_loss"] < 0.6  # train's own metrics pass
        summary = registry.gate_summary(client, "churn-classifier", run["version"], "mdp") or ""
        assert "roc_auc" in summary and "below the minimum 0.75" in summary
        assert mv.description.startswith("**Rejected on mdp**: roc_auc ")
        assert chain.alias("mdp") is None


def test_lt_load_check_fails_a_version_that_is_too_slow(tmp_path: Path) -> None:
    edits = {"acceptance": {"load": {"data_window": {"days": 2}, "max_duration_seconds": 2}}}
    overrides = {"lt": {"acceptance": {"checks": ["load"]}, "deploy": {"approval": "auto"}}}
    with build_chain(tmp_path, ("mdp", "lt"), edits, overrides) as chain:
        inference = chain.repo / "src" / "inference.py"
        slow = inference.read_text().replace(
            "    with runtime.mlflow_run(job) as run:\n",
            "    with runtime.mlflow_run(job) as run:\n        import time\n\n"
            "        time.sleep(6 if job.job == 'load' else 0)  # a deliberately slow scorer\n", 1)
        assert slow != inference.read_text()
        inference.write_text(slow)
        deploy_head(chain)
        start, end = train_window()
        trained = chain.run("mdp", "train", f"data_interval_start={start}", f"data_interval_end={end}")
        assert trained["gate"] == names.SUCCESS
        accepted = chain.run("lt", "accept", expect=1)
        assert accepted["tasks"]["load"] == "success" and accepted["tasks"]["quality_gate"] == "failed"
        tags = chain.tags("lt", accepted["conf_version"])
        assert tags[names.gate_tag("lt")] == names.FAILED
        story = chain.description("lt", accepted["conf_version"])
        assert story.startswith("**Rejected on lt**: load.duration_seconds ") and "above the maximum 2" in story.split(
            "\n")[0]
        assert chain.alias("lt") is None
