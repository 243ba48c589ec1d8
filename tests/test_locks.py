"""Locks that heal (issue 17): kill -9 of a holder, a cut during release, empty or corrupt lock objects, lease
renewal and loss, and `mlops unlock`, against moto's S3 server (and the file store where it differs)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import write_repo
from proxy import FaultProxy

from mlops_module.cli import main
from mlops_module.errors import PromotionError, UsageError
from mlops_module.locking import configured_lease, lock
from mlops_module.release.history import history, promotion_lock
from mlops_module.storage import FileStorage, LockBusy, LockLost, S3Storage, Storage, StorageError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
KEY = "locks/m/promotion.json"  # names.promotion_lock_key("m")

HOLD = """\
import sys
from mlops_module.release.history import promotion_lock
from mlops_module.storage import S3Storage

with promotion_lock(S3Storage(sys.argv[1], sys.argv[2]), "m"):
    print("held", flush=True)
    sys.stdin.read()  # until killed
"""


@pytest.fixture()
def bucket(s3: Any) -> str:
    name = f"locks-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "file":
        return FileStorage(f"file://{tmp_path}/store")
    bucket = request.getfixturevalue("bucket")
    return S3Storage(f"s3://{bucket}/models", request.getfixturevalue("s3_server"))


def one_try_client(endpoint: str) -> Any:
    """A client that gives up at the first failure, so a cut shows at once (not after botocore's retries)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}, connect_timeout=5,
                                                                     read_timeout=5))


def body(**fields: Any) -> bytes:
    now = time.time()
    return json.dumps({"token": "other", "by": "someone", "host": "elsewhere", "pid": 1, "at": now,
                       "renewed": now, "lease": 120, **fields}).encode()


def test_kill_9_of_a_holder_is_taken_over_at_once(bucket: str, s3_server: str) -> None:
    store = S3Storage(f"s3://{bucket}/models", s3_server)
    with subprocess.Popen([sys.executable, "-c", HOLD, store.uri, s3_server], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            held = json.loads(store.read_bytes(KEY) or b"")
            assert (held["pid"], held["host"], held["lease"]) == (holder.pid, socket.gethostname(), 120)
            with pytest.raises(PromotionError) as refused, promotion_lock(store, "m", wait_seconds=0.5, stand="mdp"):
                pass  # pragma: no cover - refused: the holder is alive
            message = str(refused.value)
            assert re.search(rf"held by \S+ \(host {socket.gethostname()}, pid {holder.pid}\) for \d s; stale at "
                             r"\S+ \S+ UTC \(in 11\d s\)", message), message
            assert "`mlops unlock --stand mdp` removes it now" in message
        finally:
            holder.kill()  # kill -9, inside the lock
    logs: list[str] = []
    started = time.monotonic()
    with promotion_lock(store, "m", wait_seconds=2, log=logs.append) as lease:
        assert time.monotonic() - started < 2  # taken over, not waited out
        assert json.loads(store.read_bytes(KEY) or b"")["pid"] == os.getpid()
        lease.check()
    assert store.read_bytes(KEY) is None
    assert any(f"its process {holder.pid} no longer runs on this machine" in line for line in logs), logs


def test_a_cut_during_release_neither_hides_the_error_nor_blocks_the_next_lock(bucket: str, s3_server: str) -> None:
    with FaultProxy(s3_server) as proxy:
        store = S3Storage(f"s3://{bucket}/models", proxy.url, client=one_try_client(proxy.url))
        proxy.cut_when(lambda data: data.startswith(b"DELETE ") and KEY.encode() in data)
        with pytest.raises(RuntimeError, match="the body's own failure") as raised, \
                promotion_lock(store, "m", stand="mdp"):
            raise RuntimeError("the body's own failure")
        (note,) = raised.value.__notes__
        assert f"could not release the lock {store.url(KEY)}" in note and "mlops unlock --stand mdp" in note, note
        assert proxy.mode == "cut"
        proxy.mode = "pass"
        assert store.read_bytes(KEY) is not None  # left behind by the cut
        logs: list[str] = []
        started = time.monotonic()
        with promotion_lock(store, "m", wait_seconds=2, log=logs.append):
            assert time.monotonic() - started < 2
        assert any("this process, which no longer holds it" in line for line in logs), logs
        # A body that succeeded: the failed release is the error, saying what was left and what to do.
        proxy.cut_when(lambda data: data.startswith(b"DELETE ") and KEY.encode() in data)
        with pytest.raises(StorageError, match=r"left behind and becomes stale at .*mlops unlock --stand mdp"), \
                promotion_lock(store, "m", stand="mdp"):
            pass
        proxy.mode = "pass"
        with promotion_lock(store, "m", wait_seconds=2):
            pass
        assert store.read_bytes(KEY) is None


@pytest.mark.parametrize(("raw", "problem"), [
    (b"", "is empty"),
    (b"{not json", "is not a JSON object"),
    (b'{"token": "t", "by": "someone", "at": "yesterday"}', "has no valid timestamp or lease"),
    (b'{"token": "t", "by": "someone", "at": 1e300, "renewed": 1e300, "lease": 60}', "has no valid timestamp"),
])
def test_an_empty_or_corrupt_lock_is_refused_while_fresh_and_taken_over_once_stale(
        store: Storage, raw: bytes, problem: str) -> None:
    store.put_bytes(KEY, raw)
    written = store.modified(KEY)
    assert written is not None
    with pytest.raises(LockBusy) as refused, lock(store, KEY, "busy", wait_seconds=0.3, lease_seconds=60,
                                                   clock=lambda: written + 10):
        pass  # pragma: no cover - refused
    message = str(refused.value)
    for part in (f"the lock object {problem}", "written 10 s ago", "stale at", "(in 50 s)"):
        assert part in message, message
    with lock(store, KEY, "busy", wait_seconds=0.3, lease_seconds=60, clock=lambda: written + 61) as lease:
        assert store.read_bytes(KEY) == lease.body
    assert store.read_bytes(KEY) is None


def test_a_renewed_lease_is_kept_and_a_lost_one_says_so(store: Storage) -> None:
    outcome: list[BaseException] = []

    def wait_for_it() -> None:
        try:
            with lock(store, KEY, "busy", wait_seconds=2.5, lease_seconds=1.5):
                pass  # pragma: no cover - the holder renews: never stale
        except BaseException as exc:
            outcome.append(exc)

    with lock(store, KEY, "busy", lease_seconds=1.5) as lease:
        taken = json.loads(lease.body)["at"]
        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        waiter.join(timeout=20)
        assert isinstance(outcome[0], LockBusy) and "held by" in str(outcome[0])
        lease.check()
        held = json.loads(store.read_bytes(KEY) or b"")
        assert held["token"] == json.loads(lease.body)["token"] and held["renewed"] > taken + 1.5

    with pytest.raises(LockLost, match="taken over and is now held by intruder") as lost, \
            lock(store, KEY, "busy", lease_seconds=0.6) as lease:
        store.put_bytes(KEY, body(by="intruder"))
        deadline = time.monotonic() + 10
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockLost, match=f"lost the lock {store.url(KEY)}"):
            lease.check()
    assert "check the outcome and run again" in str(lost.value)
    assert json.loads(store.read_bytes(KEY) or b"")["by"] == "intruder"  # not removed by the one that lost it


def test_the_lease_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_LOCK_LEASE_SECONDS", "30")
    store = FileStorage(f"file://{tmp_path}")
    with lock(store, KEY, "busy") as lease:
        assert json.loads(lease.body)["lease"] == 30
    assert [p.name for p in (tmp_path / "locks" / "m").iterdir()] == [".promotion.json.guard"]  # no temp files
    monkeypatch.setenv("MLOPS_LOCK_LEASE_SECONDS", "soon")
    with pytest.raises(UsageError, match="MLOPS_LOCK_LEASE_SECONDS='soon'"):
        configured_lease()


STANDS = """\
order: [mdp]
defaults:
  backend: kubernetes
  airflow: {{dags: /tmp/dags}}
  kubernetes: {{conn_id: k8s, startup_timeout_seconds: 600, namespace: ml, service_account: spark}}
  spark: {{image: "mlops/spark-py:3.5.5", version: 3.5.5, python_versions: ["3.11"], time_to_live_seconds: 60}}
  mlflow: {{tracking_uri: "http://127.0.0.1:9"}}
stands:
  mdp:
    storage: {{uri: "s3://{bucket}/models", endpoint_url: "{s3}"}}
    deploy: {{trigger: none, approval: auto}}
"""


@pytest.fixture()
def unlock_cli(tmp_path: Path, bucket: str, s3_server: str) -> Iterator[tuple[list[str], Storage]]:
    stands = tmp_path / "stands.yaml"
    stands.write_text(STANDS.format(bucket=bucket, s3=s3_server))
    config = write_repo(tmp_path / "repo", 'model: {name: m, owner: team}\npython: {version: "3.11"}\n'
                                           "train: {script: src/train.py}\ninference: {script: src/inference.py}\n")
    yield ["unlock", str(config), "--stands", str(stands), "--stand", "mdp"], S3Storage(f"s3://{bucket}/models",
                                                                                        s3_server)


def test_mlops_unlock(unlock_cli: tuple[list[str], Storage], capsys: pytest.CaptureFixture[str]) -> None:
    command, store = unlock_cli
    assert main(command) == 0
    assert "no promotion lock of m on mdp" in capsys.readouterr().out

    store.put_bytes(KEY, body())  # alive on another machine: refused without --force
    assert main([*command, "--reason", "INC-1"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"mlops unlock: the promotion lock s3://\S+/models/locks/m/promotion.json is held by someone "
                     r"\(host elsewhere, pid 1\) for \d s; stale at .*--force only when you are sure", err), err
    assert store.read_bytes(KEY) is not None
    assert main([*command, "--force", "--reason", "INC-1"]) == 0
    assert "removed the promotion lock of m on mdp" in capsys.readouterr().out
    assert store.read_bytes(KEY) is None

    store.put_bytes(KEY, body(by="crashed", renewed=time.time() - 600))  # stale: no --force needed
    assert main(command) == 0
    assert "stale since" in capsys.readouterr().out
    store.put_bytes(KEY, b"")  # empty and fresh: refused like a live one, never an internal error
    assert main(command) == 1
    assert "the lock object is empty" in capsys.readouterr().err

    events = [e for e in history(store, "m", "mdp") if e["action"] == "unlock"]
    assert [(e["holder"]["by"], e["why"], e["reason"]) for e in events] == [
        ("someone", "forced (--force)", "INC-1"), ("crashed", events[1]["why"], "mlops unlock")]
    assert events[1]["why"].startswith("stale since")


def test_mlops_unlock_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["unlock", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for part in ("CONFIG", "--stand S", "--force", "--reason R", "--stands FILE", "--json", "MLOPS_LOCK_LEASE_SECONDS",
                 "only when you are sure", "Exit 0 when removed or when there is no lock, 1 when refused"):
        assert part in text, text
