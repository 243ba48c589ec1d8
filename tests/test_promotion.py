"""Gate, promotion, push, rollback and history on a real MLflow server and an S3-compatible server."""

from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers import at_most_one_verdict_per_stand, upload_stub_artifacts, write_repo

from mlops_module.cli import main
from mlops_module.errors import PromotionError
from mlops_module.release import registry
from mlops_module.release.gate import Evidence, run_gate
from mlops_module.release.history import history
from mlops_module.release.promotion import PUSHED, promote
from mlops_module.release.rollback import rollback
from mlops_module.spec.config import check
from mlops_module.spec.stands import load_stands
from mlops_module.storage import S3Storage, StorageError, sha256_file, storage_of
from mlops_module.workflows import artifact_keys

pytestmark = pytest.mark.slow

STANDS = """\
order: [mdp, int, lt]
defaults:
  backend: kubernetes
  airflow: {{dags: /tmp/dags}}
  kubernetes: {{conn_id: k8s, startup_timeout_seconds: 600, namespace: ml, service_account: spark}}
  spark: {{image: "mlops/spark-py:3.5.5", version: 3.5.5, python_versions: ["3.11"], time_to_live_seconds: 60}}
  mlflow: {{tracking_uri: "{mlflow}"}}
stands:
  mdp:
    storage: {{uri: "s3://{bucket}-mdp/models", endpoint_url: "{s3}"}}
    deploy: {{trigger: none, approval: auto}}
  int:
    storage: {{uri: "s3://{bucket}-int/models", endpoint_url: "{s3}"}}
    deploy: {{trigger: jenkins, url: "{jenkins}/job/deploy/buildWithParameters", approval: auto}}
  lt:
    storage: {{uri: "s3://{bucket}-lt/models", endpoint_url: "{s3}"}}
    deploy: {{trigger: jenkins, url: "{jenkins}/job/deploy/buildWithParameters", approval: manual}}
"""

CONFIG = """\
model: {{name: {model}, owner: team}}
python: {{version: "3.11"}}
train: {{script: src/train.py}}
inference: {{script: src/inference.py}}
quality_gate:
  metrics:
    - {{name: roc_auc, min: 0.75, min_improvement: 0.01}}
    - {{name: log_loss, max: 0.6}}
"""


class Jenkins(http.server.BaseHTTPRequestHandler):
    """Stands in for Jenkins' buildWithParameters: records each request."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        Jenkins.requests.append({"path": self.path, "params": dict(urllib.parse.parse_qsl(body)),
                                 "auth": self.headers.get("Authorization")})
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def jenkins() -> Any:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jenkins)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture()
def world(tmp_path: Path, s3: Any, s3_server: str, mlflow_server: str, jenkins: str,
          request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    name = "m" + str(abs(hash(request.node.name)) % 10**8)
    for stand in ("mdp", "int", "lt"):
        s3.create_bucket(Bucket=f"{name}-{stand}")
    stands_file = tmp_path / "stands.yaml"
    stands_file.write_text(STANDS.format(mlflow=mlflow_server, bucket=name, s3=s3_server, jenkins=jenkins))
    config = write_repo(tmp_path / "repo", CONFIG.format(model=name))
    stands = load_stands(stands_file)
    cfg = {c.stand.name: c for c in check(config, stands)}
    # What `mlops package` would have uploaded to mdp (tested on its own elsewhere).
    store = storage_of(stands.get("mdp"))
    for key, text in [("envs/abc.tar.gz", "environment"), (f"code/{name}/k1/code.zip", "zip"),
                      (f"code/{name}/k1/src/train.py", "print(1)")]:
        local = tmp_path / "artifact"
        local.write_text(text)
        store.upload(local, key, sha256_file(local))
    monkeypatch.setenv("MLOPS_JENKINS_USER", "ci")
    monkeypatch.setenv("MLOPS_JENKINS_TOKEN", "secret")
    Jenkins.requests.clear()
    return {"model": name, "cfg": cfg, "stands": stands, "stands_file": stands_file, "config": config,
            "mlflow": registry.client(mlflow_server), "store": store}


def candidate(mlflow: Any, model: str, metrics: dict[str, float], champion: str | None = None) -> str:
    """What the train job does: a run with metrics (and the champion's, scored on the same data) and a
    model artifact, registered as a new version."""
    experiment = mlflow.get_experiment_by_name(model)
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(model)
    run = mlflow.create_run(experiment_id, tags={"champion.version": champion} if champion else None)
    for key, value in metrics.items():
        mlflow.log_metric(run.info.run_id, key, value)
    mlflow.log_text(run.info.run_id, "flavor: test\n", "model/MLmodel")
    mlflow.log_dict(run.info.run_id, {"rows": 10, "numeric": {}, "categorical": {}}, "reference_profile.json")
    mlflow.set_terminated(run.info.run_id)
    if not mlflow.search_registered_models(f"name = '{model}'"):
        mlflow.create_registered_model(model)
    return str(mlflow.create_model_version(model, f"{run.info.artifact_uri}/model", run.info.run_id).version)


def push(world: dict[str, Any], version: str, stand: str = "mdp", **kwargs: Any) -> Any:
    cfg = world["cfg"][stand]
    nxt = world["stands"].get(cfg.stand.next) if cfg.stand.next else None
    return promote(cfg, version, nxt, env_object="envs/abc.tar.gz", code_prefix=f"code/{world['model']}/k1",
                   **kwargs)


def test_below_minimum_fails_and_nothing_moves(world: dict[str, Any]) -> None:
    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    version = candidate(mlflow, model, {"roc_auc": 0.70, "log_loss": 0.5})
    result = run_gate(cfg, version, mlflow)
    assert not result.passed
    tags = registry.version_tags(mlflow, model, version)
    assert tags["quality_gate.mdp"] == "failed"
    assert "below the minimum 0.75" in str(registry.gate_summary(mlflow, model, version, "mdp"))
    assert registry.alias_version(mlflow, model, "mdp") is None
    with pytest.raises(PromotionError, match="its quality gate is 'failed'; nothing moves"):
        push(world, version)
    assert registry.alias_version(mlflow, model, "mdp") is None
    run = mlflow.get_run(mlflow.get_model_version(model, version).run_id)
    assert [a.path for a in mlflow.list_artifacts(run.info.run_id, "quality_gate")] == ["quality_gate/mdp.json"]
    assert run.data.tags["quality_gate.mdp"] == "failed"


def test_pass_promote_push_trigger(world: dict[str, Any]) -> None:
    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    version = candidate(mlflow, model, {"roc_auc": 0.80, "log_loss": 0.5})
    assert run_gate(cfg, version, mlflow).passed
    report = push(world, version, reason="first model", git_sha="abc123")
    assert report.alias_moved and registry.alias_version(mlflow, model, "mdp") == version
    tags = registry.version_tags(mlflow, model, version)
    assert tags["quality_gate.mdp"] == "success" and tags["git_sha"] == "abc123"
    assert tags["config_hash"] == cfg.config_hash and tags["env_archive"] == "envs/abc.tar.gz"
    next_store = storage_of(world["stands"].get("int"))
    for key in ("envs/abc.tar.gz", f"code/{model}/k1/code.zip", f"code/{model}/k1/src/train.py"):
        assert next_store.stat(key) == world["store"].stat(key)
    (request,) = Jenkins.requests
    assert request["path"] == "/job/deploy/buildWithParameters"
    assert request["params"] == {"MODEL": model, "STAND": "int", "VERSION": version, "SOURCE_VERSION": version,
                                 "SOURCE_STAND": "mdp",
                                 "ENV_ARCHIVE": "envs/abc.tar.gz", "CODE_PACKAGE": f"code/{model}/k1",
                                 "CONFIG_HASH": cfg.config_hash, "GIT_SHA": "abc123"}
    assert request["auth"] == "Basic Y2k6c2VjcmV0"  # ci:secret from the environment

    # A better candidate beats it; one not better by min_improvement does not.
    better = candidate(mlflow, model, {"roc_auc": 0.83, "champion.roc_auc": 0.80, "log_loss": 0.4}, champion=version)
    assert run_gate(cfg, better, mlflow).passed
    slight = candidate(mlflow, model, {"roc_auc": 0.805, "champion.roc_auc": 0.80, "log_loss": 0.4}, champion=version)
    result = run_gate(cfg, slight, mlflow)
    assert not result.passed and result.champion_version == version
    assert registry.version_tags(mlflow, model, slight)["quality_gate.mdp"] == "failed"
    assert registry.alias_version(mlflow, model, "mdp") == version


def two_promoted(world: dict[str, Any]) -> tuple[str, str]:
    """Two versions gated and promoted on mdp in turn, the second beating the first: what a rollback undoes."""
    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    first = candidate(mlflow, model, {"roc_auc": 0.80, "log_loss": 0.5})
    run_gate(cfg, first, mlflow)
    push(world, first)
    second = candidate(mlflow, model, {"roc_auc": 0.82, "champion.roc_auc": 0.80, "log_loss": 0.5}, champion=first)
    run_gate(cfg, second, mlflow)
    push(world, second)
    return first, second


def test_rerun_changes_nothing_and_rollback(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    first, second = two_promoted(world)
    events = history(world["store"], model, "mdp")
    again = push(world, second)
    assert not again.alias_moved and again.trigger == "jenkins 201"  # what was done then; not called again
    assert history(world["store"], model, "mdp") == events
    assert len(Jenkins.requests) == 2
    assert registry.version_tags(mlflow, model, second)["promoted.mdp.previous_version"] == first

    failed = candidate(mlflow, model, {"roc_auc": 0.5, "log_loss": 0.9})
    run_gate(cfg, failed, mlflow)
    with pytest.raises(PromotionError, match="did not pass its quality gate"):
        rollback(cfg, failed, mlflow=mlflow)
    event = rollback(cfg, mlflow=mlflow, reason="bad predictions")
    assert (event["from_version"], event["to_version"]) == (second, first)
    assert registry.alias_version(mlflow, model, "mdp") == first
    actions = [(e["action"], e.get("from_version"), e.get("to_version")) for e in history(world["store"], model, "mdp")]
    assert actions == [("promote", None, first), ("push", None, None), ("promote", first, second), ("push", None, None),
                       ("rejected", None, failed), ("rollback", second, first)]  # the gate records a rejection too
    assert main(["history", str(world["config"]), "--stand", "mdp", "--stands", str(world["stands_file"])]) == 0
    out = capsys.readouterr().out
    assert f"rollback {second} -> {first}" in out and "bad predictions" in out


def test_racing_promotions_end_with_one_alias_and_both_recorded(world: dict[str, Any]) -> None:
    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    versions = [candidate(mlflow, model, {"roc_auc": 0.8 + i / 100, "log_loss": 0.5}) for i in range(2)]
    for v in versions:
        run_gate(cfg, v, mlflow)
    errors: list[BaseException] = []

    def go(version: str) -> None:
        try:
            push(world, version, mlflow=registry.client(cfg.stand.mlflow_tracking_uri))
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Both were gated with no champion: whichever comes second finds the other holding the alias
    # and is refused (its gate is stale), cleanly and on the record.
    assert len(errors) == 1 and isinstance(errors[0], PromotionError) and "run the gate again" in str(errors[0])
    holder = registry.alias_version(mlflow, model, "mdp")
    assert holder in versions
    events = history(world["store"], model, "mdp")
    assert sorted(e["to_version"] for e in events if e["action"] in ("promote", "refused")) == sorted(versions)
    assert [e["to_version"] for e in events if e["action"] == "promote"] == [holder]


def test_failed_copy_leaves_a_consistent_state_and_rerun_converges(world: dict[str, Any],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    version = candidate(mlflow, model, {"roc_auc": 0.9, "log_loss": 0.2})
    run_gate(cfg, version, mlflow)
    original = S3Storage._copy_within

    def broken(self: S3Storage, key: str, dest: Any, dest_key: str) -> bool:
        if "code.zip" in key:
            raise StorageError("copy failed: connection reset")
        return original(self, key, dest, dest_key)

    monkeypatch.setattr(S3Storage, "_copy_within", broken)
    with pytest.raises(StorageError):
        push(world, version)
    monkeypatch.undo()
    # The copies come before the alias: it never points at a version whose artifacts did not reach int.
    assert registry.alias_version(mlflow, model, "mdp") is None
    tags = registry.version_tags(mlflow, model, version)
    assert "promoted.mdp.at" not in tags and "pushed.int.at" not in tags
    assert Jenkins.requests == [] and history(world["store"], model, "mdp") == []
    report = push(world, version)
    assert report.alias_moved and report.trigger.startswith("jenkins")
    assert registry.alias_version(mlflow, model, "mdp") == version
    assert storage_of(world["stands"].get("int")).stat(f"code/{model}/k1/code.zip") is not None
    assert len(Jenkins.requests) == 1


def test_manual_approval_stops_the_push_before_the_trigger(world: dict[str, Any]) -> None:
    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["int"]
    version = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    run_gate(cfg, version, mlflow)
    report = push(world, version, stand="int", store=storage_of(world["stands"].get("mdp")))
    assert report.pushed_to == "lt" and report.trigger == "awaiting manual approval"
    assert Jenkins.requests == []


def test_approve_calls_the_held_back_trigger_once(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["int"]
    version = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    base = [str(world["config"]), "--stands", str(world["stands_file"])]
    assert main(["approve", *base, "--stand", "lt", "--version", version]) == 1
    assert "was never pushed from int to lt: nothing awaits approval" in capsys.readouterr().err
    run_gate(cfg, version, mlflow)
    push(world, version, stand="int", store=storage_of(world["stands"].get("mdp")))
    assert Jenkins.requests == []
    # A better version replaces it on int before anyone approved: the old one must not reach lt.
    newer = candidate(mlflow, model, {"roc_auc": 0.85, "log_loss": 0.5, "champion.roc_auc": 0.8}, champion=version)
    assert run_gate(cfg, newer, mlflow).passed
    push(world, newer, stand="int", store=storage_of(world["stands"].get("mdp")))
    assert main(["approve", *base, "--stand", "lt", "--version", version]) == 1
    assert f"version {version} no longer holds int (version {newer} does)" in capsys.readouterr().err
    assert Jenkins.requests == []
    version = newer

    assert main(["approve", *base, "--stand", "lt", "--version", version, "--reason", "CHG-42", "--json"]) == 0
    event = json.loads(capsys.readouterr().out)
    assert event["action"] == "approve" and event["reason"] == "CHG-42" and event["trigger"] == "jenkins 201"
    (request,) = Jenkins.requests
    assert request["params"]["STAND"] == "lt"
    assert request["params"]["VERSION"] == request["params"]["SOURCE_VERSION"] == version  # one shared registry
    assert request["params"]["ENV_ARCHIVE"] == "envs/abc.tar.gz" and request["params"]["SOURCE_STAND"] == "int"
    tags = registry.version_tags(mlflow, model, version)
    assert tags["pushed.lt"].startswith("jenkins 201, approved by ")
    # Once: a second approval calls nothing.
    assert main(["approve", *base, "--stand", "lt", "--version", version]) == 1
    assert "is not awaiting approval: its trigger was 'jenkins 201, approved by " in capsys.readouterr().err
    assert len(Jenkins.requests) == 1
    assert main(["history", *base, "--stand", "int"]) == 0
    assert re.search(rf"approve\s+- -> {version}\s+to lt \(jenkins 201\).*CHG-42", capsys.readouterr().out)
    # Nothing pushes to the head of the chain.
    assert main(["approve", *base, "--stand", "mdp", "--version", version]) == 2
    assert "no stand pushes to mdp" in capsys.readouterr().err


def test_cli_gate_exit_codes(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    mlflow, model = world["mlflow"], world["model"]
    good = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    bad = candidate(mlflow, model, {"roc_auc": 0.8})
    base = [str(world["config"]), "--stand", "mdp", "--stands", str(world["stands_file"])]
    capsys.readouterr()  # MLflow prints links to the runs the candidates made
    assert main(["gate", *base, "--version", good, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "success"
    run_id = mlflow.get_model_version(model, bad).run_id
    assert main(["gate", *base, "--run-id", run_id]) == 1
    assert "log_loss: not logged by the training run" in capsys.readouterr().err
    assert main(["promote", *base, "--version", bad]) == 1
    assert "nothing moves" in capsys.readouterr().err
    # Even without a push the alias never points at artifacts the stand lacks: this checkout's aren't uploaded.
    keys = artifact_keys(world["cfg"]["mdp"])
    assert main(["promote", *base, "--version", good, "--no-push"]) == 1
    err = capsys.readouterr().err
    assert f"{keys.env_object} is missing" in err and "nothing moves" in err
    assert registry.alias_version(mlflow, model, "mdp") is None
    upload_stub_artifacts(world["store"], keys.env_object, keys.code_prefix, world["config"].parent)
    assert main(["promote", *base, "--version", good, "--no-push", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["alias_moved"] and report["pushed_to"] is None
    assert registry.alias_version(mlflow, model, "mdp") == good
    assert main(["rollback", *base]) == 1
    assert "has no recorded previous version; name one with --to" in capsys.readouterr().err


def test_next_stand_with_its_own_registry_gets_the_model_registered(world: dict[str, Any],
                                                                   other_mlflow_server: str) -> None:
    mlflow, model = world["mlflow"], world["model"]
    stands_file = world["stands_file"]
    text = stands_file.read_text().replace(
        "  int:\n", f"  int:\n    mlflow: {{tracking_uri: \"{other_mlflow_server}\"}}\n")
    stands_file.write_text(text)
    stands = load_stands(stands_file)
    (cfg,) = check(world["config"], stands, "mdp")
    version = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    run_gate(cfg, version, mlflow)
    for _ in range(2):  # the second run finds it registered already
        promote(cfg, version, stands.get("int"), env_object="envs/abc.tar.gz", code_prefix=f"code/{model}/k1")
    other = registry.client(other_mlflow_server)
    (copied,) = other.search_model_versions(f"name = '{model}'")
    assert copied.tags["source.mdp.version"] == version
    assert [a.path for a in other.list_artifacts(copied.run_id, "model")] == ["model/MLmodel"]
    # monitoring on the next stand reads the training data's profile from the version's run there
    assert "reference_profile.json" in {a.path for a in other.list_artifacts(copied.run_id)}


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_stale_lock_is_taken_over_by_one_waiter_only(world: dict[str, Any], tmp_path: Path, kind: str) -> None:
    from mlops_module.release.history import promotion_lock
    from mlops_module.storage import FileStorage

    store = FileStorage(f"file://{tmp_path}/store") if kind == "file" else world["store"]
    store.put_bytes("locks/x/promotion.json", json.dumps({"token": "dead", "by": "gone", "at": 0}).encode())
    inside, most, lock = [0], [0], threading.Lock()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with promotion_lock(store, "x"):
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                threading.Event().wait(0.3)
                with lock:
                    inside[0] -= 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and most[0] == 1
    assert store.read_bytes("locks/x/promotion.json") is None  # released


def test_gate_verdicts_are_per_stand(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    mlflow, model = world["mlflow"], world["model"]
    version = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    assert run_gate(world["cfg"]["mdp"], version, mlflow).passed
    with pytest.raises(PromotionError, match="its quality gate is 'not run on int'"):
        push(world, version, stand="int", store=world["store"])
    base = [str(world["config"]), "--stands", str(world["stands_file"])]
    capsys.readouterr()
    assert main(["promote", *base, "--stand", "mdp", "--version", "999", "--no-push"]) == 1
    assert "has no version 999" in capsys.readouterr().err


def test_previous_version_is_what_each_move_replaced(world: dict[str, Any]) -> None:
    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    v1 = candidate(mlflow, model, {"roc_auc": 0.80, "log_loss": 0.5})
    run_gate(cfg, v1, mlflow)
    push(world, v1)
    v2 = candidate(mlflow, model, {"roc_auc": 0.85, "champion.roc_auc": 0.80, "log_loss": 0.5}, champion=v1)
    run_gate(cfg, v2, mlflow)
    push(world, v2)
    rollback(cfg, mlflow=mlflow)  # back to v1
    v3 = candidate(mlflow, model, {"roc_auc": 0.86, "champion.roc_auc": 0.80, "log_loss": 0.5}, champion=v1)
    run_gate(cfg, v3, mlflow)
    push(world, v3)
    run_gate(cfg, v2, mlflow)  # v2 again, gated against v3 now: 0.85 vs v3's 0.86 doesn't beat it
    assert registry.version_tags(mlflow, model, v2)["quality_gate.mdp"] == "failed"
    assert registry.version_tags(mlflow, model, v3)["promoted.mdp.previous_version"] == v1
    assert rollback(cfg, mlflow=mlflow)["to_version"] == v1


def test_the_push_sends_the_commit_the_code_package_was_built_from(world: dict[str, Any]) -> None:
    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    source = world["stands_file"].parent / "mlops-package.json"  # as `mlops package` uploads it
    source.write_text(json.dumps({"git_commit": commit}))
    world["store"].upload(source, f"code/{model}/k1/mlops-package.json", sha256_file(source))
    version = candidate(mlflow, model, {"roc_auc": 0.9, "log_loss": 0.2})
    run_gate(cfg, version, mlflow)
    push(world, version)
    (request,) = Jenkins.requests
    assert request["params"]["GIT_SHA"] == commit  # int's deploy job checks out exactly this
    assert registry.version_tags(mlflow, model, version)["git_sha"] == commit
    # The record travels with the package, so the next push (int -> lt) knows it too.
    assert storage_of(world["stands"].get("int")).read_bytes(f"code/{model}/k1/mlops-package.json")


def rest_version(server: str, model: str, version: str) -> dict[str, Any]:
    """A model version as MLflow's REST API answers it (what its UI shows)."""
    query = urllib.parse.urlencode({"name": model, "version": version})
    with urllib.request.urlopen(f"{server}/api/2.0/mlflow/model-versions/get?{query}", timeout=30) as answer:
        found: dict[str, Any] = json.load(answer)["model_version"]
    return found


def rest_tags(found: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in found.get("tags", [])}


def test_each_version_states_its_verdict_first_with_one_verdict_tag_per_stand(
        world: dict[str, Any], mlflow_server: str, other_mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Done-when of issue 19: a passed, a rejected and a pushed version (on int's own server), read through
    MLflow's REST API: the description's first line is the verdict and the reason; one verdict tag per stand."""
    mlflow, model = world["mlflow"], world["model"]
    monkeypatch.setenv("MLOPS_ACTOR", "jenkins:deployer#7")
    stands_file = world["stands_file"]
    stands_file.write_text(stands_file.read_text().replace(
        "  int:\n", f"  int:\n    mlflow: {{tracking_uri: \"{other_mlflow_server}\"}}\n"))
    stands = load_stands(stands_file)
    (mdp,) = check(world["config"], stands, "mdp")
    (int_cfg,) = check(world["config"], stands, "int")
    keys = {"env_object": "envs/abc.tar.gz", "code_prefix": f"code/{model}/k1"}

    rejected = candidate(mlflow, model, {"roc_auc": 0.61, "log_loss": 0.5})
    run_gate(mdp, rejected, mlflow)
    passed = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    run_gate(mdp, passed, mlflow)
    promote(mdp, passed, stands.get("int"), **keys, git_sha="abc123")
    other = registry.client(other_mlflow_server)
    (copy,) = other.search_model_versions(f"name = '{model}'")
    pushed = str(copy.version)
    int_evidence = Evidence({"roc_auc": 0.79, "log_loss": 0.45}, source="the evaluate job on int")
    assert run_gate(int_cfg, pushed, other, evidence=int_evidence).passed
    for _ in range(2):  # a re-run rewrites the same story: nothing appended
        promote(int_cfg, pushed, None, **keys, mlflow=other, store=storage_of(stands.get("int")), path=PUSHED,
                source="mdp")

    seen = {}
    for server, version in ((mlflow_server, rejected), (mlflow_server, passed), (other_mlflow_server, pushed)):
        found = rest_version(server, model, version)
        seen[version if server == mlflow_server else "pushed"] = found["description"]
        assert at_most_one_verdict_per_stand(rest_tags(found)) == {}, rest_tags(found)
    first = {k: v.splitlines()[0] for k, v in seen.items()}
    assert first[rejected] == "**Rejected on mdp**: roc_auc 0.61 is below the minimum 0.75"
    assert first[passed] == "**Champion on mdp (alias mdp)**: passed the quality gate"
    assert first["pushed"] == f"**Champion on int (alias int)**: passed the quality gate, pushed from mdp v{passed}"
    # the rest of the story: each stand's verdict, the metrics against thresholds, where it came from
    story = seen["pushed"]
    assert story.count("#### Verdict per stand") == 1
    assert "- **mdp**: passed the gate there" in story and "- **int**: champion (alias int)" in story
    assert "| roc_auc | 0.79 | ≥ 0.75, gain ≥ 0.01 |" in story  # int's own gate
    assert "Quality gate on mdp: passed (carried from mdp" in story and "| roc_auc | 0.8 |" in story
    assert f"pushed from mdp (v{passed} there) to int" in story and "commit abc123" in story
    assert "registered by jenkins:deployer#7" in story
    assert "pushed there: jenkins 201" in seen[passed]
    # who registered the copy: its run's user (a version's own "Created by" can't be set through MLflow's API)
    assert other.get_run(copy.run_id).data.tags["mlflow.user"] == "jenkins:deployer#7"
    # what the tags no longer say is in the gate's record
    assert registry.gate_summary(mlflow, model, rejected, "mdp") == \
        "failed: roc_auc: 0.61 is below the minimum 0.75"
