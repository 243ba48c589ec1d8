"""The Jenkins pipeline cannot drift from the CLI: its stages' commands, read from the Jenkinsfile,
run here in the same order against the bundled example on the local stand; the shared library's
steps hold the same commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PYTHON, ROOT, dagbag

from mlops_module import names
from mlops_module.local.demo import pin_python

pytestmark = pytest.mark.slow

STAGE = re.compile(r"stage\('([^']+)'\)\s*\{\s*(?:when \{[^\n]*\}\s*)?steps\s*\{(.*?)\n\s*\}\s*\n\s*\}", re.S)
SH = re.compile(r"^\s*sh '([^']*)'\s*$", re.M)
MLOPS_STEP = re.compile(r"^\s*mlops '([^']*)'\s*$", re.M)


def stages(path: Path) -> list[tuple[str, list[str]]]:
    """(stage, shell commands) in order; the library's ``mlops 'ARGS'`` step is ``"$MLOPS" ARGS``."""
    found = []
    for name, body in STAGE.findall(path.read_text()):
        commands = [m.group(1) if m.re is SH else f'"$MLOPS" {m.group(1)}'
                    for m in sorted([*SH.finditer(body), *MLOPS_STEP.finditer(body)], key=lambda m: m.start())]
        found.append((name, commands))
    return found


def test_the_library_pipeline_holds_the_jenkinsfiles_stages_and_commands() -> None:
    jenkinsfile = stages(ROOT / "Jenkinsfile")
    assert [name for name, _ in jenkinsfile] == ["Checkout", "Validate", "Model tests", "Package", "Render", "Deploy"]
    assert stages(ROOT / "jenkins" / "vars" / "mlopsPipeline.groovy") == jenkinsfile
    deploy_job = stages(ROOT / "jenkins" / "vars" / "mlopsDeploy.groovy")
    assert [name for name, _ in deploy_job[:2]] == ["Deploy the promoted package", "Checkout"]
    assert deploy_job[2:] == [s for s in jenkinsfile if s[0] in ("Validate", "Render", "Deploy")]
    for source in (ROOT / "Jenkinsfile", ROOT / "jenkins" / "vars" / "mlopsPipeline.groovy"):  # main deploys
        gated = re.findall(r"stage\('([^']+)'\) \{\s*when \{ expression \{", source.read_text())
        assert gated == ["Package", "Render", "Deploy"], source
    step = (ROOT / "jenkins" / "vars" / "mlops.groovy").read_text()
    assert '"\\${MLOPS:-mlops}\\" ${arguments}' in step


def test_jenkinsfile_stages_run_against_the_example_on_the_local_stand(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    shutil.copytree(ROOT / "examples" / "churn", workspace / "model",  # the Checkout stage
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "build", "data"))
    pin_python(workspace / "model" / "model.yaml", PYTHON)  # the local stand's "image" is this machine's Python
    mlops = Path(sys.executable).parent / "mlops"
    assert mlops.is_file(), "the mlops console script is installed beside the test interpreter"
    env = {**os.environ, "STAND": "local", "MODEL_DIR": "model", "MLOPS": str(mlops), "BUNDLE_DIR": "build/bundle",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "MLOPS_ACTOR": "jenkins:test#1"}
    ran = []
    for name, commands in stages(ROOT / "Jenkinsfile"):
        for command in commands:
            result = subprocess.run(["bash", "-ec", command], cwd=workspace, env=env, capture_output=True, text=True)
            assert result.returncode == 0, f"stage {name}: {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            ran.append((name, command.split()[1] if command.startswith('"$MLOPS"') else "pytest"))
    assert ran == [("Validate", "validate"), ("Model tests", "pytest"), ("Package", "package"),
                   ("Render", "render"), ("Deploy", "deploy")]

    deployed = Path(os.environ["MLOPS_HOME"]) / "local" / "airflow" / "dags" / "churn-classifier" / "local"
    bag = dagbag(deployed)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {names.dag_id("churn-classifier", "local", j) for j in names.JOBS}
    reviewed = json.loads((workspace / "build" / "bundle" / "mlops-bundle.json").read_text())
    live = json.loads((deployed / "mlops-bundle.json").read_text())
    assert live.pop(names.BUNDLE_FIRST_DEPLOYED)  # what deploy adds: when the DAGs first went live
    assert reviewed == live  # otherwise what was reviewed is what ships

    # The next-stand deploy job's commands: from the code package a promotion names (no checkout), and
    # from the same checkout; both render what is live already, so both are no-ops.
    deploy_job = stages(ROOT / "jenkins" / "vars" / "mlopsDeploy.groovy")
    code_package = json.loads((deployed / "mlops-bundle.json").read_text())["code_prefix"]
    for name, commands in [deploy_job[0], *deploy_job[2:]]:
        for command in commands:
            result = subprocess.run(["bash", "-ec", command], cwd=workspace, env=env | {"CODE_PACKAGE": code_package},
                                    capture_output=True, text=True)
            assert result.returncode == 0, f"stage {name}: {result.stderr[-3000:]}"
            if name.startswith("Deploy"):
                assert "nothing to do" in result.stdout, f"stage {name}: {result.stdout[-3000:]}"

    # A failing stage stops the pipeline with mlops's own message.
    (workspace / "model" / "model.yaml").write_text(
        (workspace / "model" / "model.yaml").read_text().replace("schedule:", "shedule:", 1))
    validate = dict(stages(ROOT / "Jenkinsfile"))["Validate"][0]
    result = subprocess.run(["bash", "-ec", validate], cwd=workspace, env=env, capture_output=True, text=True)
    assert result.returncode == 1 and "shedule" in result.stderr and "schedule" in result.stderr


def test_the_deploy_job_takes_every_parameter_the_promoter_sends() -> None:
    import inspect

    from mlops_module.release import triggers

    sent = set(re.findall(r'"([A-Z_]+)": ', inspect.getsource(triggers.call_deploy_trigger)))
    declared = set(re.findall(r"string\(name: '([A-Z_]+)'", (ROOT / "jenkins" / "vars" / "mlopsDeploy.groovy").read_text()))
    assert {"MODEL", "STAND", "VERSION", "GIT_SHA"} <= sent
    assert sent <= declared, sent - declared
