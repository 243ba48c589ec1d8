"""The CLI and the generated DAGs' tasks reach each use case through the one workflow, with the same inputs."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
from helpers import MINIMAL, resolve, write_repo

from mlops_module import dag_tasks, workflows
from mlops_module.building.render import render_bundle, write_bundle
from mlops_module.cli import main
from mlops_module.release.gate import GateResult


@pytest.fixture
def repo_and_bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A model repository, and the bundle deployed from it on mdp (what a DAG task has instead of the repo)."""
    config = write_repo(tmp_path / "repo", MINIMAL)
    bundle = write_bundle(render_bundle(resolve(config, "mdp")), tmp_path / "dags" / "churn" / "mdp")
    return config, bundle


@pytest.fixture
def airflow_context(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``get_current_context`` gives a task: its run id, its task instance (XCom), its DAG run."""
    import airflow.sdk

    pulled = {"quality_gate": {"version": "7", "verdict": "success"}}
    ti = types.SimpleNamespace(xcom_pull=lambda task_ids: pulled[task_ids])
    context = {"run_id": "scheduled__2025-05-01", "ti": ti, "dag_run": types.SimpleNamespace(conf={})}
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: context)
    return context


def test_gate_cli_and_dag_task_take_the_same_path(repo_and_bundle: tuple[Path, Path], airflow_context: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config, bundle = repo_and_bundle
    calls: list[tuple[Any, ...]] = []

    def gate(cfg: Any, **kwargs: Any) -> tuple[str, GateResult]:
        calls.append((cfg.name, cfg.stand.name, cfg.config_hash, kwargs.get("version"), kwargs.get("run_id"),
                      kwargs["airflow_run_id"]))
        return "7", GateResult("success", None)

    monkeypatch.setattr(workflows, "gate", gate)
    assert main(["gate", str(config), "--stand", "mdp", "--airflow-run-id", airflow_context["run_id"]]) == 0
    assert dag_tasks.quality_gate("churn", "mdp", str(bundle)) == {"version": "7", "verdict": "success"}
    assert len(calls) == 2 and calls[0] == calls[1]
    assert calls[0][1:] == ("mdp", resolve(config, "mdp").config_hash, None, None, "scheduled__2025-05-01")


def test_promote_cli_and_dag_task_take_the_same_path(repo_and_bundle: tuple[Path, Path],
                                                     airflow_context: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI computes the artifact keys from the repository, the DAG task reads them from the deployed bundle:
    the same keys, the same next stand, the same version."""
    config, bundle = repo_and_bundle
    calls: list[tuple[Any, ...]] = []

    def promote(resolved: workflows.Resolved, version: str, keys: workflows.ArtifactKeys, **kwargs: Any) -> Any:
        calls.append((resolved.cfg.config_hash, resolved.next_stand.name, version, keys, kwargs.get("push", True)))
        return types.SimpleNamespace(as_dict=dict)

    monkeypatch.setattr(workflows, "promote", promote)
    assert main(["promote", str(config), "--stand", "mdp", "--version", "7"]) == 0
    dag_tasks.promote("churn", "mdp", str(bundle))
    assert len(calls) == 2 and calls[0] == calls[1]
    assert calls[0][1:3] == ("int", "7") and calls[0][3].env_object.startswith("envs/")
