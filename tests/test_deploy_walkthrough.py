"""docs/deploy.md's walk-through "from zero to the first mdp run", run as written.

Every `mlops` command of the section runs, in the order of the page, against moto's S3 server and a real
MLflow server; the one hand-made step (editing the stands file the page has just printed) is done here as
the page says. `make dist` is run by tests/test_packaging_wheel.py. What needs the real platform (docker,
helm, kubectl, aws, airflow) is listed, so a command added to the page is either run here or named.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "deploy.md"
SECTION = "## From zero to the first mdp run"
NEEDS_THE_PLATFORM = {"docker", "helm", "kubectl", "aws", "airflow"}  # not on a test machine


def walkthrough() -> list[str]:
    """The section's shell commands, in order (one per line; comments dropped)."""
    text = PAGE.read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_every_command_of_the_walkthrough_is_run_here_or_needs_the_platform() -> None:
    commands = walkthrough()
    tools = {shlex.split(command)[0] for command in commands}
    assert tools <= {"mlops", "make"} | NEEDS_THE_PLATFORM, tools
    assert [c for c in commands if c.startswith("make")] == ["make dist"]
    assert '"dist"' in (ROOT / "tests" / "test_packaging_wheel.py").read_text()  # where `make dist` runs
    mlops = [shlex.split(c)[1] for c in commands if c.startswith("mlops ")]
    assert mlops == ["platform", "validate", "platform", "doctor", "package", "deploy", "status"]


def edit_stands(path: Path, *, bucket: str, endpoint: str, mlflow: str) -> None:
    """Step 3's edit, as a platform engineer makes it for mdp alone: its bucket on the S3-compatible server
    (endpoint, path-style addressing), its MLflow, its DAG location; the others out of the chain. mdp receives no pushes, so
    it needs no Airflow API URL."""
    doc = yaml.safe_load(path.read_text())
    mdp = doc["stands"]["mdp"]
    mdp["storage"] = {"uri": f"s3://{bucket}/models", "endpoint_url": endpoint, "path_style_access": True}
    mdp["mlflow"] = {"tracking_uri": mlflow}
    mdp["airflow"] = {"dags": f"s3://{bucket}/airflow/dags"}
    doc["order"], doc["standalone"] = ["mdp"], ["local", "int", "lt", "prom"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.slow
def test_the_walkthrough_reaches_a_deployed_mdp(tmp_path: Path, s3: Any, s3_server: str, mlflow_server: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = f"walkthrough-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    shutil.copytree(ROOT / "examples" / "churn", tmp_path / "examples" / "churn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("MLOPS_STANDS", "KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env |= {"HOME": str(tmp_path / "home"), "MLOPS_HOME": str(tmp_path / "mlops-home")}  # no cluster configured
    ran = []
    for command in walkthrough():
        argv = shlex.split(command)
        if argv[0] != "mlops":
            continue
        done = subprocess.run([sys.executable, "-m", "mlops_module", *argv[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        ran.append((argv[1], done))
        if argv[1:3] == ["platform", "stands"]:
            edit_stands(tmp_path / "stands.yaml", bucket=bucket, endpoint=s3_server, mlflow=mlflow_server)
    outputs = dict(ran)
    assert [name for name, _ in ran] == ["platform", "validate", "platform", "doctor", "package", "deploy", "status"]
    # step 4: the objects for kubectl, in the namespace the stands file names
    objects = list(yaml.safe_load_all((tmp_path / "k8s" / "mdp.yaml").read_text()))
    assert {o["kind"] for o in objects} >= {"Namespace", "ServiceAccount", "Role", "RoleBinding"}
    assert objects[0]["metadata"]["name"] == "ml-mdp"
    # step 6: nothing failed; the cluster could not be checked from here, and says why
    assert "FAILED" not in outputs["doctor"].stdout + outputs["doctor"].stderr
    assert "not checked: no cluster configuration" in outputs["doctor"].stdout + outputs["doctor"].stderr
    # step 7: the environment and code in the bucket, the DAGs and manifests at the DAG location
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith("models/envs/") and k.endswith(".tar.gz") for k in keys)
    assert any(k.startswith("models/code/churn-classifier/") for k in keys)
    assert any(k.endswith("churn-classifier__mdp__train.py") and k.startswith("airflow/dags/") for k in keys)
    manifest = next(k for k in keys if k.endswith("manifests/churn-classifier-mdp-train.yaml"))
    spark_conf = yaml.safe_load(s3.get_object(Bucket=bucket, Key=manifest)["Body"].read())["spec"]["sparkConf"]
    assert spark_conf["spark.hadoop.fs.s3a.endpoint"] == s3_server  # Spark reaches the same S3-compatible server
    assert spark_conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    # step 8: the stand has the model, and nothing promoted yet
    assert "mdp" in outputs["status"].stdout
