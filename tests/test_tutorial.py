"""docs/tutorial.md, executed: its ``sh`` blocks run in order in one bash, with the built-in stands and
a fresh MLOPS_HOME, exactly as a newcomer would type them; each ``text`` block must appear in the
output of the block before it; then MLflow's registry is read back. So the tutorial cannot rot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import ROOT

from mlops_module.local.airflow_runner import airflow_environment
from mlops_module.local.services import MlflowServer, free_port
from mlops_module.release import registry

pytestmark = pytest.mark.slow

TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"(?P<skip><!-- tutorial-test: skip \([^)]+\) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```", re.S | re.M)
EXITS = re.compile(r"^(?P<command>.*?)\s+# exits (?P<status>\d+)\b.*$")


@dataclass
class Step:
    script: str
    expected: list[str] = field(default_factory=list)


def tutorial_steps(text: str) -> tuple[list[Step], int]:
    """The shell blocks to run, each with the output lines expected of it; and how many were skipped."""
    steps: list[Step] = []
    skipped = 0
    for block in BLOCK.finditer(text):
        if block["lang"] == "sh":
            if block["skip"]:
                skipped += 1
                continue
            steps.append(Step(block["body"]))
        elif block["lang"] == "text":
            assert steps, "a text block before any command"
            steps[-1].expected += [line for line in block["body"].splitlines() if line.strip()]
    return steps, skipped


def shell_line(line: str) -> str:
    """A line as run under ``set -e``; ``cmd  # exits N`` must exit with N, not stop the tutorial."""
    found = EXITS.match(line)
    if not found:
        return line
    command, status = found["command"], found["status"]
    return (f"set +e; {command}; rc=$?; set -e; "
            f"[ \"$rc\" -eq {status} ] || {{ echo 'expected exit {status}, got '$rc': {command}'; exit 97; }}")


def pattern(expected: str) -> re.Pattern[str]:
    """An expected output line; ``…`` stands for anything that varies."""
    return re.compile(".*".join(re.escape(part) for part in expected.split("…")))


def test_tutorial_blocks_are_parsed_as_meant() -> None:
    steps, skipped = tutorial_steps(TUTORIAL.read_text(encoding="utf-8"))
    assert skipped == 1  # only the installation, which the test session has done
    assert any("mlops run --stand local --job train" in s.script for s in steps)
    assert all(s.expected for s in steps if "mlops run" in s.script)
    assert shell_line("mlops run   # exits 1: why").startswith("set +e; mlops run; rc=$?")
    assert pattern("run … success in … s").fullmatch("run manual__x success in 62 s")
    assert not pattern("alias local -> version 1").fullmatch("alias local -> version 2")


@dataclass
class Ran:
    """The tutorial's run: where it kept its state, what each step printed, the shell it ran in."""

    home: Path
    repo: Path
    env: dict[str, str]
    steps: list[Step]
    outputs: list[list[str]]
    alias: str | None  # the registry right after the tutorial (later tests here train more)
    tags: dict[str, dict[str, str]]
    descriptions: dict[str, str]  # each version's story (release/story.py)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    tmp_path = tmp_path_factory.mktemp("tutorial")
    steps, _ = tutorial_steps(TUTORIAL.read_text(encoding="utf-8"))
    home, work, outputs = tmp_path / "home", tmp_path / "work", tmp_path / "out"
    work.mkdir()
    outputs.mkdir()
    script = ["set -euo pipefail"]
    for i, step in enumerate(steps):
        body = "\n".join(shell_line(line) for line in step.script.splitlines())
        script.append(f"{{\n{body}\n}} > {outputs}/{i}.txt 2>&1")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "MLOPS_"))}  # a newcomer's shell: nothing of this session's
    env |= {"MLOPS_HOME": str(home), "MLOPS_LOCAL_MLFLOW_PORT": str(free_port()),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"}  # the activated venv
    try:
        done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True, text=True,
                              timeout=1500)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the tutorial did not finish in 25 min; outputs in {outputs}") from exc
    last = max((int(p.stem) for p in outputs.glob("*.txt")), default=-1)
    tail = (outputs / f"{last}.txt").read_text()[-4000:] if last >= 0 else ""
    assert done.returncode == 0, f"step {last} failed:\n{steps[last].script if last >= 0 else ''}\n{tail}{done.stderr}"
    printed = [(outputs / f"{i}.txt").read_text().splitlines() for i in range(len(steps))]
    with MlflowServer(home / "local" / "mlflow") as server:
        mlflow = registry.client(server.uri)
        alias = registry.alias_version(mlflow, "churn-score", "local")
        tags = {v: registry.version_tags(mlflow, "churn-score", v) for v in ("1", "2")}
        descriptions = {v: str(registry.model_version(mlflow, "churn-score", v).description) for v in ("1", "2")}
    return Ran(home, work / "churn-score", env, steps, printed, alias, tags, descriptions)


def test_tutorial_prints_what_it_shows(ran: Ran) -> None:
    for i, step in enumerate(ran.steps):
        for line in step.expected:
            assert any(pattern(line).fullmatch(o.rstrip()) for o in ran.outputs[i]), (
                f"step {i} ({step.script.strip()}) did not print {line!r}:\n" + "\n".join(ran.outputs[i][-60:]))


def test_tutorial_leaves_the_registry_it_describes(ran: Ran) -> None:
    assert ran.alias == "1"
    assert ran.tags["1"]["quality_gate.local"] == "success"
    assert ran.tags["2"]["quality_gate.local"] == "failed"
    assert ran.descriptions["2"].startswith("**Rejected on local**: roc_auc ")
    assert "below the minimum 0.99" in ran.descriptions["2"].splitlines()[0]
    deployed = ran.home / "local" / "airflow" / "dags" / "churn-score" / "local" / "config" / "model.yaml"
    assert "min: 0.7," in deployed.read_text()  # the bar put back, and deployed
    # The local stand is a sandbox: nothing was pushed anywhere.
    assert not (ran.home / "mdp").exists()


def test_run_picks_up_a_queued_run_and_uses_a_running_mlflow(ran: Ran) -> None:
    """What a trigger queued (monitoring's retrain) is what the next `mlops run` runs, with its conf; an
    MLflow already answering at the stand's URI is used, not started again."""
    airflow_env = ran.env | airflow_environment(ran.home / "local" / "airflow", ran.home / "local" / "airflow" / "dags")
    dag_id = "churn-score__local__train"
    trigger = subprocess.run([sys.executable, "-m", "airflow", "dags", "trigger", dag_id, "--run-id", "retrain__test",
                              "--conf", '{"reason": "drift in f1"}'], env=airflow_env, capture_output=True, text=True,
                             timeout=300)
    assert trigger.returncode == 0, trigger.stdout + trigger.stderr
    port = int(ran.env["MLOPS_LOCAL_MLFLOW_PORT"])
    with MlflowServer(ran.home / "local" / "mlflow", port) as server:
        done = subprocess.run(["mlops", "run", "--json"], cwd=ran.repo, env=ran.env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert result["queued_run"] == "retrain__test"  # dag.test runs it under a run id of its own
        assert result["tasks"] == {"train": "success", "quality_gate": "success", "promote": "success",
                                   "start_inference": "success"}  # the alias moved: the promoter started inference
        assert "starting MLflow" not in done.stderr and result["mlflow_ui"] is None
        assert "train: running" in done.stderr  # task progress
        tags = registry.version_tags(registry.client(server.uri), "churn-score", result["version"])
        assert tags["retrain_reason"] == "drift in f1", tags
    listed = subprocess.run([sys.executable, "-m", "airflow", "dags", "list-runs", dag_id, "--output", "json"],
                            env=airflow_env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    runs = {r["run_id"]: r["state"] for r in json.loads(listed.stdout.strip().splitlines()[-1])}  # after warnings
    # The trigger's run is kept, as the run that served it ended: the monitoring DAG's cooldown looks it up.
    assert runs["retrain__test"] == "success" and "queued" not in runs.values(), runs
