"""Stands the way a platform team sets them up: each its own MLflow server, its own storage, its own DAG folder
and Airflow home, all on this machine (backend local: spark-submit stands in for spark-operator). The tests that
use them run only what the platform runs (the Jenkinsfile's stages, `mlops run` as each stand's scheduler, the
deploy job's command, `mlops approve`), through the `mlops` console script in child processes."""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from helpers import PYTHON, ROOT

from mlops_module import names
from mlops_module.local.demo import pin_python
from mlops_module.local.services import MlflowServer
from mlops_module.release import registry

MODEL = "churn-classifier"
MLOPS = str(Path(sys.executable).parent / "mlops")
TODAY = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
DATA_DAYS = 120


@dataclass
class Chain:
    """Four (or fewer) stands with their servers, and a shell to run the platform's commands in."""

    root: Path
    order: tuple[str, ...]
    mlflow: dict[str, str]
    repo: Path
    stands_file: Path
    env: dict[str, str]
    log: list[str] = field(default_factory=list)

    def storage(self, stand: str) -> Path:
        return self.root / "storage" / stand

    def dags(self, stand: str) -> Path:
        return self.root / "dags" / stand

    def client(self, stand: str) -> registry.RegistryClient:
        return registry.client(self.mlflow[stand])

    def mlops(self, *args: str, expect: int = 0, cwd: Path | None = None) -> str:
        """One `mlops` command as the platform runs it; its output (kept in ``log`` for failure messages)."""
        done = subprocess.run([MLOPS, *args], cwd=cwd or self.root, env=self.env, capture_output=True, text=True,
                              timeout=900)
        self.log.append(f"$ mlops {' '.join(args)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        assert done.returncode == expect, f"mlops {' '.join(args)} exited {done.returncode}:\n{done.stdout[-4000:]}" \
                                          f"\n{done.stderr[-4000:]}"
        return done.stdout

    def run(self, stand: str, job: str, *conf: str, expect: int = 0) -> dict[str, Any]:
        """`mlops run` as the stand's scheduler: serves the run a trigger queued, else a manual one."""
        out = self.mlops("run", str(self.repo / "model.yaml"), "--stand", stand, "--job", job, "--json",
                         *[a for c in conf for a in ("--conf", c)], expect=expect)
        result: dict[str, Any] = json.loads(out)
        return result

    def alias(self, stand: str) -> str | None:
        return registry.alias_version(self.client(stand), MODEL, stand)

    def tags(self, stand: str, version: str) -> dict[str, str]:
        return registry.version_tags(self.client(stand), MODEL, version)

    def description(self, stand: str, version: str) -> str:
        """The version's description on the stand's registry: its story (release/story.py)."""
        return str(registry.model_version(self.client(stand), MODEL, version).description or "")

    def history(self, stand: str) -> list[dict[str, Any]]:
        out = self.mlops("history", str(self.repo / "model.yaml"), "--stand", stand, "--json")
        found: list[dict[str, Any]] = json.loads(out)
        return found


def stands_document(root: Path, order: tuple[str, ...], mlflow: dict[str, str],
                    overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every stand local, each with its own registry, storage and DAG folder; the promoter's deploy trigger is
    the deploy job's command (`mlops deploy --package ... --version ...`), as a Jenkins deploy job runs it."""
    from mlops_module.names import local_python_home

    stands: dict[str, Any] = {}
    for stand in order:
        stands[stand] = {"airflow": {"dags": str(root / "dags" / stand)},
                         "storage": {"uri": f"file://{root / 'storage' / stand}"},
                         "mlflow": {"tracking_uri": mlflow[stand]}}
    if "lt" in stands:
        stands["lt"]["deploy"] = {"approval": "manual"}
        stands["lt"]["acceptance"] = {"checks": ["evaluate", "smoke", "load"]}
    for stand, extra in (overrides or {}).items():
        for key, value in extra.items():
            stands[stand][key] = {**stands[stand].get(key, {}), **value}
    return {
        "order": list(order),
        "defaults": {
            "backend": "local",
            "kubernetes": {"namespace": "default", "service_account": "default", "conn_id": "kubernetes_default",
                           "startup_timeout_seconds": 600},
            "spark": {"image": "apache/spark:3.5.5", "version": "3.5.5", "python_versions": ["3.10", "3.11", "3.12"],
                      "python_home": local_python_home(), "time_to_live_seconds": 0,
                      "conf": {"spark.ui.enabled": "false", "spark.eventLog.enabled": "false"}},
            "deploy": {"trigger": "command", "approval": "auto"},
            "acceptance": {"checks": ["evaluate", "smoke"], "start_inference": True},
        },
        "stands": stands,
    }


def write_stands(chain: Chain, overrides: dict[str, Any] | None = None) -> None:
    chain.stands_file.write_text(yaml.safe_dump(stands_document(chain.root, chain.order, chain.mlflow, overrides),
                                                sort_keys=False), encoding="utf-8")


def copy_example(dest: Path, order: tuple[str, ...], edits: dict[str, Any] | None = None) -> Path:
    """The churn example as a model repository, built for this Python, its per-stand overrides kept for the
    stands of ``order``, with ``edits`` merged into model.yaml (a few bootstrap replicates and a small local
    Spark: the tests check the wiring, not the statistics)."""
    shutil.copytree(ROOT / "examples" / "churn", dest,
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "build", "data"))
    pin_python(dest / "model.yaml", PYTHON)
    config = yaml.safe_load((dest / "model.yaml").read_text())
    retrain = config["monitoring"]["retrain"]
    retrain["on"] = retrain.pop(True)  # YAML 1.1 reads the key `on` as true; the toolkit's loader doesn't
    config["quality_gate"]["evaluation"] = {"bootstrap": {"samples": 200}}
    local = config["stands"]["local"]  # the small Spark the local stand runs with, on every stand here
    config["stands"] = {s: v for s, v in config["stands"].items() if s in order and s != "prom"}
    config["spark"] = {**config["spark"], **local["spark"]}
    for key, value in (edits or {}).items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    (dest / "model.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return dest


def write_data(chain: Chain, stand: str, *, flip_labels: bool = False, rows_per_day: int = 60) -> None:
    """The last 120 days of customer events in a stand's storage (its own copy: each stand has its own data)."""
    spec = importlib.util.spec_from_file_location("chain_data", chain.repo / "src" / "data.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    frame = module.generate(rows_per_day * DATA_DAYS, seed=7, start=TODAY - datetime.timedelta(days=DATA_DAYS),
                            days=DATA_DAYS)
    if flip_labels:  # this stand's customers behave the other way round: every model scores badly here
        frame["churned"] = 1 - frame["churned"]
    target = chain.storage(stand) / names.data_prefix(MODEL) / "events.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(target, index=False)


@contextlib.contextmanager
def build_chain(root: Path, order: tuple[str, ...], edits: dict[str, Any] | None = None,
                overrides: dict[str, Any] | None = None) -> Iterator[Chain]:
    """The stands' MLflow servers (started together), storage with data, the stands file, the model repository."""
    servers = [MlflowServer(root / "mlflow" / stand) for stand in order]
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(MlflowServer.start, servers))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_"))}
        env |= {"MLOPS_HOME": str(root / "home"), "MLOPS_STANDS": str(root / "stands.yaml"),
                "MLOPS_ACTOR": "platform-test", "MODEL_DIR": "repo", "BUNDLE_DIR": "build/bundle", "MLOPS": MLOPS,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        chain = Chain(root, order, {s: srv.uri for s, srv in zip(order, servers, strict=True)},
                      copy_example(root / "repo", order, edits), root / "stands.yaml", env)
        write_stands(chain, overrides)
        for stand in order:
            write_data(chain, stand)
        yield chain
    finally:
        for server in servers:
            server.stop()


def jenkins_stages(chain: Chain, stand: str) -> list[str]:
    """The Jenkinsfile's stages after Checkout (the repository is there already), run for ``stand``."""
    from test_jenkins import stages

    ran = []
    for name, commands in stages(ROOT / "Jenkinsfile"):
        if name == "Checkout":
            continue
        for command in commands:
            done = subprocess.run(["bash", "-ec", command], cwd=chain.root, env=chain.env | {"STAND": stand},
                                  capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"stage {name}: {command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            ran.append(name)
    return ran


def train_window() -> tuple[str, str]:
    return ((TODAY - datetime.timedelta(days=7)).isoformat(), TODAY.isoformat())


def inference_runs(chain: Chain, stand: str) -> list[Any]:
    """The stand's inference runs (MLflow), oldest first."""
    client = chain.client(stand)
    experiment = client.get_experiment_by_name(MODEL)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.`{names.RUN_TAG_JOB}` = 'inference' AND "
                                            f"tags.`{names.RUN_TAG_STAND}` = '{stand}'",
                              order_by=["attributes.start_time ASC"])
    return list(runs)
