"""The REST client that starts a DAG run, against a real Airflow 3 api-server on loopback.

The server runs in its own process group with its own AIRFLOW_HOME (SQLite), SimpleAuthManager and a
passwords file, so authentication is Airflow's own. Nothing from Airflow is imported into this process:
its settings belong to the test session's home (conftest). Only the api-server runs (no scheduler, no
dag-processor): DAG files are put into the database by ``airflow dags reserialize``, as a dag-processor
would, and triggered runs stay queued.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlops_module.local.services import free_port
from mlops_module.release import airflow_api
from mlops_module.release.airflow_api import AirflowApiError, Credentials, credentials_for, trigger_dag_run

DAG_FILE = """
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG({dag_id!r}, schedule=None):
    EmptyOperator(task_id="noop")
"""
PASSWORD = "pw-" + secrets.token_hex(8)


@dataclass(frozen=True)
class Airflow:
    url: str
    env: dict[str, str]
    dags: Path
    log: Path


def _airflow(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "airflow", *args], env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _finish(process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    if process.wait(timeout=120) != 0:
        raise RuntimeError(f"{what} failed (exit {process.returncode}):\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    root = tmp_path_factory.mktemp("airflow-api")
    dags = root / "dags"
    dags.mkdir()
    (dags / "acceptance.py").write_text(DAG_FILE.format(dag_id="acceptance"))
    passwords = root / "passwords.json"
    passwords.write_text(json.dumps({"alice": PASSWORD, "victor": PASSWORD}))
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "alice:admin,victor:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    })
    log = root / "airflow.log"
    _finish(_airflow(env, log, "db", "migrate"), log, "airflow db migrate")
    port = free_port()
    server = _airflow(env, log, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                      "--apps", "core")
    try:
        # The dag-processor's part, while the server starts: the DAG file serialized into the database.
        _finish(_airflow(env, log, "dags", "reserialize"), log, "airflow dags reserialize")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # readiness: the health endpoint answers and the database is healthy
            try:
                with urllib.request.urlopen(url + "/api/v2/monitor/health", timeout=2) as response:
                    if json.load(response)["metadatabase"]["status"] == "healthy":
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"airflow api-server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Airflow(url, env, dags, log)
    finally:
        _stop(server)


def _token(url: str, user: str = "alice") -> str:
    request = urllib.request.Request(url + "/auth/token", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"username": user, "password": PASSWORD}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["access_token"])


def _get(url: str, path: str) -> dict[str, Any]:
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {_token(url)}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.load(response)
        return result


def _alice(stand: str = "acc-1", password: str = PASSWORD) -> Credentials:
    upper = stand.upper().replace("-", "_")
    return credentials_for(stand, {f"MLOPS_AIRFLOW_{upper}_USERNAME": "alice",
                                   f"MLOPS_AIRFLOW_{upper}_PASSWORD": password})


@pytest.mark.slow
def test_starts_a_run_with_its_conf_unpausing_the_dag_once(airflow: Airflow) -> None:
    assert _get(airflow.url, "/api/v2/dags/acceptance")["is_paused"] is True  # new DAGs are paused at creation
    conf = {"model": "churn", "version": "7", "reason": 'a "quoted" {{ value }} 😀'}
    lines: list[str] = []
    outcome = trigger_dag_run(airflow.url + "/", "acceptance", "acceptance__abc123+1", conf, credentials=_alice(),
                              log=lines.append)
    assert outcome == "created"
    assert any("unpaused" in line for line in lines)
    run = _get(airflow.url, "/api/v2/dags/acceptance/dagRuns/acceptance__abc123%2B1")
    assert run["conf"] == conf and run["state"] == "queued" and run["logical_date"] is None
    assert run["run_type"] == "manual" and run["triggering_user_name"] == "alice"
    assert _get(airflow.url, "/api/v2/dags/acceptance")["is_paused"] is False

    # The same push again, with a bearer token this time: no second run.
    lines.clear()
    again = trigger_dag_run(airflow.url, "acceptance", "acceptance__abc123+1", conf,
                            credentials=Credentials(token=_token(airflow.url)), log=lines.append)
    assert again == "exists"
    assert any("already exists" in line and "queued" in line for line in lines)
    assert not any("unpaused" in line for line in lines)
    runs = _get(airflow.url, "/api/v2/dags/acceptance/dagRuns")
    assert [r["dag_run_id"] for r in runs["dag_runs"]] == ["acceptance__abc123+1"]


@pytest.mark.slow
def test_waits_for_a_dag_the_dag_processor_has_not_parsed_yet(airflow: Airflow) -> None:
    (airflow.dags / "late.py").write_text(DAG_FILE.format(dag_id="late"))
    lines: list[str] = []
    # Parsed while the client polls: reserialize plays the dag-processor picking up a fresh deploy.
    parser = _airflow(airflow.env, airflow.log, "dags", "reserialize")
    try:
        outcome = trigger_dag_run(airflow.url, "late", "late-1", {}, credentials=_alice(), wait_seconds=60,
                                  poll_seconds=0.5, log=lines.append)
    finally:
        _finish(parser, airflow.log, "airflow dags reserialize")
    assert outcome == "created"
    assert any("DAG late is not known yet (HTTP 404)" in line for line in lines)
    assert _get(airflow.url, "/api/v2/dags/late/dagRuns/late-1")["state"] == "queued"


@pytest.mark.slow
def test_unknown_dag_fails_after_the_wait_naming_it_and_the_url(airflow: Airflow) -> None:
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(AirflowApiError) as failure:
        trigger_dag_run(airflow.url, "no_such_dag", "r1", {}, credentials=_alice(), wait_seconds=1.0,
                        poll_seconds=0.25, log=lines.append)
    assert time.monotonic() - started < 10
    message = str(failure.value)
    assert "DAG no_such_dag is not known yet" in message
    assert f"{airflow.url}/api/v2/dags/no_such_dag" in message
    assert len(lines) >= 2 and all("no_such_dag" in line for line in lines)


@pytest.mark.slow
def test_wrong_password_names_the_variables_never_the_secret(airflow: Airflow) -> None:
    with pytest.raises(AirflowApiError) as failure:
        trigger_dag_run(airflow.url, "acceptance", "r-wrong", {}, credentials=_alice("acc-1", "not-it"),
                        wait_seconds=1)
    message = str(failure.value)
    assert "MLOPS_AIRFLOW_ACC_1_USERNAME/MLOPS_AIRFLOW_ACC_1_PASSWORD" in message
    assert "HTTP 401" in message and "Invalid credentials" in message and f"{airflow.url}/auth/token" in message
    assert "not-it" not in message and "not-it" not in repr(_alice("acc-1", "not-it"))


@pytest.mark.slow
def test_a_role_that_may_not_trigger_and_a_missing_or_bad_token_are_refused(airflow: Airflow) -> None:
    viewer = Credentials(token=_token(airflow.url, "victor"), source="MLOPS_AIRFLOW_TOKEN")
    with pytest.raises(AirflowApiError, match=r"Airflow refused to start run r-v of DAG acceptance with the bearer token "
                                              r"from MLOPS_AIRFLOW_TOKEN.*HTTP 403"):
        trigger_dag_run(airflow.url, "acceptance", "r-v", {}, credentials=viewer, unpause=False, wait_seconds=1)
    nothing = credentials_for("acc", {})
    with pytest.raises(AirflowApiError, match=r"no credentials \(none of MLOPS_AIRFLOW_ACC_TOKEN.*HTTP 401: "
                                              r"Not authenticated"):
        trigger_dag_run(airflow.url, "acceptance", "r-n", {}, credentials=nothing, wait_seconds=1)
    with pytest.raises(AirflowApiError, match=r"HTTP 403: Invalid JWT token"):
        trigger_dag_run(airflow.url, "acceptance", "r-b", {}, credentials=Credentials(token="garbage"), wait_seconds=1)


def test_credentials_for_prefers_the_stand_then_the_generic_variables() -> None:
    generic = {"MLOPS_AIRFLOW_TOKEN": "generic-token", "MLOPS_AIRFLOW_USERNAME": "g", "MLOPS_AIRFLOW_PASSWORD": "gp"}
    assert credentials_for("acc-1", generic) == Credentials(token="generic-token", source="MLOPS_AIRFLOW_TOKEN")
    pair = credentials_for("acc-1", {**generic, "MLOPS_AIRFLOW_ACC_1_USERNAME": "u", "MLOPS_AIRFLOW_ACC_1_PASSWORD": "p"})
    assert (pair.token, pair.username, pair.password) == (None, "u", "p")
    assert pair.source == "MLOPS_AIRFLOW_ACC_1_USERNAME/MLOPS_AIRFLOW_ACC_1_PASSWORD"
    token = credentials_for("acc-1", {**generic, "MLOPS_AIRFLOW_ACC_1_TOKEN": "t", "MLOPS_AIRFLOW_ACC_1_USERNAME": "u",
                                      "MLOPS_AIRFLOW_ACC_1_PASSWORD": "p"})
    assert (token.token, token.username, token.source) == ("t", None, "MLOPS_AIRFLOW_ACC_1_TOKEN")
    # An empty variable is unset (CI systems define masked ones empty); another stand's are not looked at.
    unset = credentials_for("acc-1", {"MLOPS_AIRFLOW_ACC_1_TOKEN": "", "MLOPS_AIRFLOW_PROD_TOKEN": "x",
                                      "MLOPS_AIRFLOW_USERNAME": "g", "MLOPS_AIRFLOW_PASSWORD": "gp"})
    assert (unset.username, unset.source) == ("g", "MLOPS_AIRFLOW_USERNAME/MLOPS_AIRFLOW_PASSWORD")
    with pytest.raises(AirflowApiError, match="MLOPS_AIRFLOW_ACC_1_USERNAME is set but MLOPS_AIRFLOW_ACC_1_PASSWORD is not"):
        credentials_for("acc-1", {**generic, "MLOPS_AIRFLOW_ACC_1_USERNAME": "u"})
    assert "generic-token" not in repr(credentials_for("acc-1", generic))
    assert credentials_for("x", {}).source == ("none of MLOPS_AIRFLOW_X_TOKEN, MLOPS_AIRFLOW_X_USERNAME/"
                                               "MLOPS_AIRFLOW_X_PASSWORD, MLOPS_AIRFLOW_TOKEN, "
                                               "MLOPS_AIRFLOW_USERNAME/MLOPS_AIRFLOW_PASSWORD, "
                                               "MLOPS_AIRFLOW_USR/MLOPS_AIRFLOW_PSW is set")
    jenkins = credentials_for("x", {"MLOPS_AIRFLOW_USR": "j", "MLOPS_AIRFLOW_PSW": "jp"})  # the deploy job's binding
    assert (jenkins.username, jenkins.password) == ("j", "jp")


def test_connection_refused_names_the_url_after_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(airflow_api, "RETRY_DELAYS", (0.0, 0.0))
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    lines: list[str] = []
    with pytest.raises(AirflowApiError, match=rf"could not reach Airflow at {url}/api/v2/dags/d \(GET\)"):
        trigger_dag_run(url, "d", "r", {}, credentials=Credentials(token="t"), log=lines.append)
    assert len(lines) == 2 and all("trying again" in line for line in lines)


def test_a_5xx_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy's 503 while the api-server restarts: the request is repeated (a stand-in server, on loopback)."""
    monkeypatch.setattr(airflow_api, "RETRY_DELAYS", (0.0, 0.0))
    answers = [(503, {"detail": "restarting"}), (200, {"is_paused": False}), (200, {"dag_run_id": "r"})]
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(f"{self.command} {self.path}")
            status, body = answers.pop(0)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        lines: list[str] = []
        outcome = trigger_dag_run(f"http://127.0.0.1:{server.server_port}", "d", "r", {}, credentials=Credentials(token="t"),
                                  log=lines.append)
    finally:
        server.shutdown()
        server.server_close()
    assert outcome == "created"
    assert seen == ["GET /api/v2/dags/d", "GET /api/v2/dags/d", "POST /api/v2/dags/d/dagRuns"]
    assert any("HTTP 503: restarting; trying again" in line for line in lines)


def test_a_url_that_is_no_airflow_3_fails_at_once() -> None:
    """A 404 for the DAG from something that is no Airflow 3 API (a wrong api_url) is not waited on."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b"not found")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/airflow"
    try:
        with pytest.raises(AirflowApiError, match=rf"{url} does not look like an Airflow 3 api-server: "
                                                  rf"GET {url}/api/v2/version -> HTTP 404: not found"):
            trigger_dag_run(url + "/", "d", "r", {}, credentials=Credentials(token="t"), wait_seconds=300)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_push_starts_the_acceptance_run_of_a_kubernetes_stand(airflow: Airflow, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The deploy job's last step on a Kubernetes stand: the rendered acceptance DAG, parsed by the stand's Airflow,
    gets a run with the pushed version in its conf, through the REST API with the stand's credentials."""
    from helpers import EXAMPLE_CONFIGS, stands_for_tests

    from mlops_module import names, workflows
    from mlops_module.building.render import write_bundle

    stands = stands_for_tests(tmp_path, "http://127.0.0.1:9")
    stands.write_text(stands.read_text().replace("api_url: https://airflow.ml-int.example.com",
                                                 f"api_url: {airflow.url}"))
    cfg = workflows.resolve(EXAMPLE_CONFIGS[0], "int", stands_file=stands).cfg
    write_bundle(workflows.render(cfg), airflow.dags / "churn-int")
    monkeypatch.setenv("MLOPS_AIRFLOW_INT_USERNAME", "alice")
    monkeypatch.setenv("MLOPS_AIRFLOW_INT_PASSWORD", PASSWORD)
    parser = _airflow(airflow.env, airflow.log, "dags", "reserialize")  # the dag-processor finding the new bundle
    lines: list[str] = []
    try:
        state = workflows.start_acceptance(cfg, "7", "mdp", "3", log=lines.append)
    finally:
        _finish(parser, airflow.log, "airflow dags reserialize")
    assert state == "created"
    dag_id = names.dag_id(cfg.name, "int", names.ACCEPT)
    run = _get(airflow.url, f"/api/v2/dags/{dag_id}/dagRuns/{names.acceptance_run_id('mdp', '3')}")
    assert run["conf"] == {"version": "7", "source_stand": "mdp", "source_version": "3",
                           "reason": "pushed from mdp (version 3 there)"}
    assert run["state"] == "queued" and _get(airflow.url, f"/api/v2/dags/{dag_id}")["is_paused"] is False
    tasks = _get(airflow.url, f"/api/v2/dags/{dag_id}/tasks")["tasks"]
    assert [t["task_id"] for t in tasks] == ["evaluate", "promote", "quality_gate", "smoke", "start_inference"]
    assert workflows.start_acceptance(cfg, "7", "mdp", "3") == "exists"  # the deploy job run again
