"""Services failing under the CLI (issue 17): MLflow or S3 down or hung is exit 1 naming the service, the server
and the call, within a minute; history survives bad records and can't be forged through a reason."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_promotion
from helpers import MINIMAL, write_repo
from proxy import FaultProxy

from mlops_module import names
from mlops_module.release import registry
from mlops_module.release.history import history, printable, record
from mlops_module.storage import FileStorage

pytestmark = pytest.mark.slow
jenkins, world = test_promotion.jenkins, test_promotion.world  # the fixtures, by the names the tests ask for

STANDS = """\
order: [mdp]
defaults:
  backend: kubernetes
  airflow: {{dags: /tmp/dags}}
  kubernetes: {{conn_id: k8s, startup_timeout_seconds: 600, namespace: ml, service_account: spark}}
  spark: {{image: "mlops/spark-py:3.5.5", version: 3.5.5, python_versions: ["3.11"], time_to_live_seconds: 60}}
stands:
  mdp:
    mlflow: {{tracking_uri: "{mlflow}"}}
    storage: {{uri: "{storage}"{endpoint}}}
    deploy: {{trigger: none, approval: auto}}
"""


def repo(tmp_path: Path, mlflow: str, storage: str, endpoint: str | None = None) -> tuple[Path, Path]:
    stands = tmp_path / "stands.yaml"
    stands.write_text(STANDS.format(mlflow=mlflow, storage=storage,
                                    endpoint=f', endpoint_url: "{endpoint}"' if endpoint else ""))
    return write_repo(tmp_path / "repo", MINIMAL), stands


def mlops(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, with MLflow's retry settings as a user has them (unset): the bound under
    test is the toolkit's default, not the test session's. ``timeout``: past it the test fails."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST_")}
    return subprocess.run([sys.executable, "-m", "mlops_module", *args], capture_output=True, text=True,
                          env=clean | (env or {}), timeout=timeout)


@pytest.fixture()
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers: a hung MLflow."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def closed_port() -> str:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_mlflow_down_is_exit_1_naming_server_and_call_within_a_minute(tmp_path: Path) -> None:
    uri = closed_port()
    config, stands = repo(tmp_path, uri, f"file://{tmp_path}/store")
    done = mlops("rollback", str(config), "--stand", "mdp", "--stands", str(stands))
    assert done.returncode == 1, done.stderr
    assert f"MLflow at {uri} failed in get_model_version_by_alias: connection refused" in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def test_mlflow_hung_fails_with_the_bound_named(tmp_path: Path, silent_server: str) -> None:
    config, stands = repo(tmp_path, silent_server, f"file://{tmp_path}/store")
    # A user's setting wins over the default (15 s per request), which keeps this test short.
    done = mlops("rollback", str(config), "--stand", "mdp", "--stands", str(stands),
                 env={"MLFLOW_HTTP_REQUEST_TIMEOUT": "2"})
    assert done.returncode == 1, done.stderr
    assert f"MLflow at {silent_server} failed in get_model_version_by_alias: no answer (timed out)" in done.stderr
    assert "retries: 2, timeout: 2 s per request" in done.stderr


def test_client_bounds_mlflow_retries_unless_the_user_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in registry.BOUNDED_RETRIES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    registry.client("http://127.0.0.1:1")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "15"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"


def test_mlflow_answers_pass_through_unchanged(mlflow_server: str) -> None:
    """A registry that answers "no such version" is not unavailable: callers still see MLflow's own answer."""
    client = registry.client(mlflow_server)
    with pytest.raises(registry.RegistryError, match="has no version 7") as caught:
        registry.model_version(client, "no-such-model", "7")
    assert not isinstance(caught.value, registry.RegistryUnavailable)
    assert registry.alias_version(client, "no-such-model", "mdp") is None


def test_s3_down_is_exit_1_naming_the_bucket(tmp_path: Path, s3: Any, s3_server: str) -> None:
    s3.create_bucket(Bucket="faults-s3-down")
    with FaultProxy(s3_server) as proxy:
        config, stands = repo(tmp_path, closed_port(), "s3://faults-s3-down/models", proxy.url)
        proxy.mode = "cut"
        done = mlops("history", str(config), "--stand", "mdp", "--stands", str(stands))
    assert done.returncode == 1, done.stderr
    assert "s3://faults-s3-down/models" in done.stderr and "internal error" not in done.stderr


def test_malformed_history_records_are_skipped_with_a_warning(tmp_path: Path) -> None:
    config, stands = repo(tmp_path, closed_port(), f"file://{tmp_path}/store")
    store = FileStorage(f"file://{tmp_path}/store")
    model = str(MINIMAL["model"]["name"])
    record(store, model, "mdp", {"action": "promote", "from_version": None, "to_version": "1", "reason": "ok"})
    prefix = names.history_prefix(model, "mdp")
    bad = {"20990101T000000000000Z-aaaaaaaa.json": b"{not json",
           "20990101T000000000001Z-bbbbbbbb.json": json.dumps({"action": "promote", "to_version": "9"}).encode(),
           "20990101T000000000002Z-cccccccc.json": json.dumps({"action": "rollback", "at": "now"}).encode(),
           "20990101T000000000003Z-dddddddd.json": b"[1, 2]"}
    for name, data in bad.items():
        store.put_bytes(prefix + name, data)
    warnings: list[str] = []
    events = history(store, model, "mdp", warn=warnings.append)
    assert [e["to_version"] for e in events] == ["1"]
    assert len(warnings) == 4 and all(prefix in w for w in warnings)
    assert "unreadable JSON" in warnings[0] and "lacks at" in warnings[1] and "lacks to_version" in warnings[2]

    done = mlops("history", str(config), "--stand", "mdp", "--stands", str(stands))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("warning: skipped history record") == 4
    assert "promote  - -> 1" in done.stdout


def test_a_reason_cannot_forge_history_lines(tmp_path: Path) -> None:
    config, stands = repo(tmp_path, closed_port(), f"file://{tmp_path}/store")
    store = FileStorage(f"file://{tmp_path}/store")
    forged = "ok\n2026-12-01T00:00:00+00:00  promote  1 -> 666  by admin  \x1b[32mapproved\x1b[0m"
    record(store, str(MINIMAL["model"]["name"]), "mdp", {"action": "rollback", "from_version": "2", "to_version": "1",
                                         "reason": forged})
    done = mlops("history", str(config), "--stand", "mdp", "--stands", str(stands))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 and "\x1b" not in done.stdout
    assert "ok\\n2026-12-01" in done.stdout and "\\x1b[32m" in done.stdout
    assert printable("plain reason") == "plain reason"


def test_unlock_events_read_as_whose_lock_was_removed() -> None:
    from mlops_module.release.history import event_line

    line = event_line({"action": "unlock", "at": "2026-12-02T03:00:00+00:00", "by": "ops@host",
                       "holder": "ci@agent-3 pid 41", "why": "holder gone", "reason": "INC-7"})
    assert line == "2026-12-02T03:00:00+00:00  unlock   lock of ci@agent-3 pid 41 (holder gone)  by ops@host  INC-7"


CHILD_PROMOTE = """
import sys
from pathlib import Path
from mlops_module.release.promotion import promote
from mlops_module.spec.config import check
from mlops_module.spec.stands import load_stands

stands = load_stands(sys.argv[1])
(cfg,) = check(Path(sys.argv[2]), stands, "mdp")
promote(cfg, sys.argv[3], stands.get("int"), env_object="envs/abc.tar.gz", code_prefix=sys.argv[4])
"""


def test_kill_9_mid_push_then_a_rerun_converges_without_waiting(world: dict[str, Any], s3_server: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A promotion killed (-9) while int's storage hangs under it, inside the lock: the alias has not moved, and the
    same promotion run again takes the dead holder's lock at once (the lease is an hour: no staleness is waited
    for; a wait would end in "another promotion … is in flight" after 60 s) and converges."""
    from test_promotion import Jenkins, candidate, push

    from mlops_module.release.gate import run_gate
    from mlops_module.storage import storage_of

    mlflow, model, cfg = world["mlflow"], world["model"], world["cfg"]["mdp"]
    version = candidate(mlflow, model, {"roc_auc": 0.8, "log_loss": 0.5})
    assert run_gate(cfg, version, mlflow).passed
    monkeypatch.setenv("MLOPS_LOCK_LEASE_SECONDS", "3600")
    with FaultProxy(s3_server) as proxy:
        stands = world["stands_file"].read_text().replace(
            f'{model}-int/models", endpoint_url: "{s3_server}"', f'{model}-int/models", endpoint_url: "{proxy.url}"')
        assert proxy.url in stands
        hung = world["stands_file"].with_name("stands-hung.yaml")
        hung.write_text(stands)
        proxy.fault_when(lambda sent: sent.startswith(b"PUT ") and b"/code.zip" in sent.split(b"\r\n", 1)[0],
                         "stall")
        child = subprocess.Popen([sys.executable, "-c", CHILD_PROMOTE, str(hung), str(world["config"]), version,
                                  f"code/{model}/k1"], stderr=subprocess.PIPE, text=True)
        try:
            reached = proxy.faulted.wait(60)
            assert reached and child.poll() is None, child.stderr.read() if child.poll() is not None else proxy.requests
        finally:
            child.kill()
            child.wait()
    assert registry.alias_version(mlflow, model, "mdp") is None and Jenkins.requests == []
    assert storage_of(world["stands"].get("mdp")).read_bytes(names.promotion_lock_key(model)) is not None  # left

    report = push(world, version)
    assert report.alias_moved and report.trigger == "jenkins 201" and len(Jenkins.requests) == 1
    assert registry.alias_version(mlflow, model, "mdp") == version
    int_store = storage_of(world["stands"].get("int"))
    assert int_store.verify(f"code/{model}/k1/code.zip").sha256 == world["store"].stat(f"code/{model}/k1/code.zip").sha256
