"""`mlops doctor`: a healthy stand passes; a broken one names each broken part.

Real services where the session has them (moto's S3 server, a real MLflow server); small local HTTP servers
where a test needs an answer no real service here gives (an MLflow 2 `/version`, a server that does not proxy
artifacts, an Airflow api-server, a Kubernetes API server with or without the CRD and the permissions).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_module import cli
from mlops_module.local.services import free_port
from mlops_module.platform.doctor import AIRFLOW_PERMISSIONS, Report, doctor
from mlops_module.spec.stands import load_stands

Answer = tuple[int, Any]  # status and a body (dict/list: JSON, str: text)
Route = Callable[[str, str, Any], Answer | None]  # method, path, parsed JSON body -> answer, None: 404


class FakeServer:
    """A loopback HTTP server answering from a route function; it records every request it gets."""

    def __init__(self, route: Route) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                path = self.path.split("?")[0].rstrip("/") or "/"
                server.requests.append((self.command, self.path, body))
                status, payload = route(self.command, path, body) or (404, {"kind": "Status", "code": 404})
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def fake_mlflow(version: str, artifacts_status: int = 200, default_location: str = "mlflow-artifacts:/0") -> Route:
    def route(method: str, path: str, body: Any) -> Answer | None:
        if path == "/version":
            return 200, version
        if path == "/api/2.0/mlflow-artifacts/artifacts":
            return (200, {}) if artifacts_status == 200 else (artifacts_status, "Endpoint disabled")
        if path == "/api/2.0/mlflow/experiments/get":
            return 200, {"experiment": {"experiment_id": "0", "name": "Default", "artifact_location": default_location}}
        return None
    return route


def fake_airflow(version: str = "3.1.3", scheduler: str = "healthy") -> Route:
    def route(method: str, path: str, body: Any) -> Answer | None:
        if path == "/api/v2/version":
            return 200, {"version": version, "git_version": None}
        if path == "/api/v2/monitor/health":
            return 200, {"metadatabase": {"status": "healthy"},
                         "scheduler": {"status": scheduler, "latest_scheduler_heartbeat": None},
                         "triggerer": {"status": None, "latest_triggerer_heartbeat": None},
                         "dag_processor": {"status": "healthy", "latest_dag_processor_heartbeat": None}}
        return None
    return route


IDENTITY = "system:serviceaccount:airflow:airflow-worker"


def fake_kubernetes(*, crd: bool = True, service_account: bool = True, denied: frozenset[tuple[str, str]] = frozenset(),
                    forbidden: frozenset[str] = frozenset()) -> Route:
    """What a Kubernetes API server answers to the doctor's requests; ``denied``: (resource[/sub], verb) refused
    by access reviews; ``forbidden``: paths answered 403."""
    def route(method: str, path: str, body: Any) -> Answer | None:
        if path in forbidden:
            return 403, {"kind": "Status", "code": 403, "reason": "Forbidden"}
        if path == "/version":
            return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.2", "gitCommit": "x", "gitTreeState": "clean",
                         "buildDate": "2024-10-22T00:00:00Z", "goVersion": "go1.22", "compiler": "gc",
                         "platform": "linux/amd64"}
        if path == "/apis/authentication.k8s.io/v1/selfsubjectreviews":
            return 201, {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                         "status": {"userInfo": {"username": IDENTITY}}}
        if path == "/apis":
            groups = [{"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}]}]
            if crd:
                groups.append({"name": "sparkoperator.k8s.io", "versions": [
                    {"groupVersion": "sparkoperator.k8s.io/v1beta2", "version": "v1beta2"}]})
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        if path == "/apis/sparkoperator.k8s.io/v1beta2" and crd:
            return 200, {"kind": "APIResourceList", "groupVersion": "sparkoperator.k8s.io/v1beta2", "resources": [
                {"name": name, "singularName": "sparkapplication" if "/" not in name else "", "namespaced": True,
                 "kind": "SparkApplication", "verbs": ["create", "get", "list", "watch", "delete"]}
                for name in ("sparkapplications", "sparkapplications/status")]}
        if path == "/api/v1/namespaces/ml-mdp":
            return 200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "ml-mdp"}}
        if path == "/api/v1/namespaces/ml-mdp/serviceaccounts/spark-mdp" and service_account:
            return 200, {"kind": "ServiceAccount", "apiVersion": "v1",
                         "metadata": {"name": "spark-mdp", "namespace": "ml-mdp"}}
        if path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" and method == "POST":
            attributes = body["spec"]["resourceAttributes"]
            what = "/".join(filter(None, (attributes["resource"], attributes.get("subresource"))))
            allowed = attributes.get("namespace") == "ml-mdp" and (what, attributes["verb"]) not in denied
            return 201, {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                         "spec": body["spec"], "status": {"allowed": allowed}}
        return None
    return route


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stand",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "stand", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def closed_port() -> int:
    return free_port()  # bound, then released: nothing listens there


def write_stands(tmp_path: Path, *, storage: str, endpoint: str, mlflow: str, dags: str,
                 api_url: str | None = None, backend: str = "kubernetes") -> Path:
    airflow: dict[str, str] = {"dags": dags}
    if api_url:
        airflow["api_url"] = api_url
    stand = {
        "backend": backend,
        "airflow": airflow,
        "kubernetes": {"namespace": "ml-mdp", "service_account": "spark-mdp", "conn_id": "kubernetes_default",
                       "startup_timeout_seconds": 600},
        "storage": {"uri": storage, "endpoint_url": endpoint},
        "mlflow": {"tracking_uri": mlflow},
        "spark": {"image": "mlops/spark-py:3.5.5", "version": "3.5.5", "python_versions": ["3.11"],
                  "time_to_live_seconds": 600},
        "deploy": {"trigger": "none", "approval": "auto"},
    }
    path = tmp_path / "stands.yaml"
    path.write_text(yaml.safe_dump({"order": ["mdp"], "stands": {"mdp": stand}}))
    return path


@pytest.fixture()
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No KUBECONFIG, no ~/.kube/config, not in a pod."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture()
def bucket(s3: Any) -> str:
    name = f"doctor-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture()
def servers() -> Iterator[Callable[[Route], FakeServer]]:
    started: list[FakeServer] = []

    def start(route: Route) -> FakeServer:
        started.append(FakeServer(route).__enter__())
        return started[-1]

    yield start
    for server in started:
        server.__exit__()


def run(stands_file: Path, **kwargs: Any) -> tuple[Report, dict[str, Any]]:
    seen: list[str] = []
    report = doctor(load_stands(stands_file).get("mdp"), on_check=lambda check: seen.append(check.name), **kwargs)
    assert seen == [c.name for c in report.checks]  # each check reported as it completed, in order
    return report, {c.name: c for c in report.checks}


# one permission line per resource the Airflow Role names (platform.rbac), in its order
K8S_CHECKS = ["kubernetes api", "spark crd", "namespace", "service account",
              *dict.fromkeys(f"permission {r}/{s}" if s else f"permission {r}" for _, r, s, _ in AIRFLOW_PERMISSIONS)]


def test_a_healthy_stand_passes(tmp_path: Path, bucket: str, s3: Any, s3_server: str, mlflow_server: str,
                                servers: Callable[[Route], FakeServer], monkeypatch: pytest.MonkeyPatch) -> None:
    airflow, cluster = servers(fake_airflow()), servers(fake_kubernetes())
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, cluster.url)))
    dags = tmp_path / "dags"
    stands = write_stands(tmp_path, storage=f"s3://{bucket}/models", endpoint=s3_server, mlflow=mlflow_server,
                          dags=str(dags), api_url=airflow.url)
    report, checks = run(stands)
    assert [c.name for c in report.checks] == ["storage", "mlflow", "mlflow artifacts", "dags", "airflow api",
                                                *K8S_CHECKS]
    assert {name: c.status for name, c in checks.items()} == dict.fromkeys(checks, "ok"), report.checks
    assert report.ok
    assert checks["mlflow"].detail.startswith("MLflow 3.")
    assert checks["mlflow artifacts"].detail == "artifacts proxied by the server (mlflow-artifacts:)"
    assert "3.1.3" in checks["airflow api"].detail
    assert IDENTITY in checks["kubernetes api"].detail and IDENTITY in checks["permission pods"].detail
    # the probes are gone: nothing left in the bucket, nor in the DAG folder (not even the probes' directory)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert list(dags.iterdir()) == []
    # every permission asked once, in the stand's namespace, as the API server's own access review
    reviews = [body["spec"]["resourceAttributes"] for method, path, body in cluster.requests
               if path.endswith("/selfsubjectaccessreviews")]
    asked = {(a.get("group", ""), a["resource"], a.get("subresource") or "", a["verb"]) for a in reviews}
    assert asked == set(AIRFLOW_PERMISSIONS) and len(reviews) == len(AIRFLOW_PERMISSIONS)
    assert {a["namespace"] for a in reviews} == {"ml-mdp"}


def test_a_broken_stand_names_each_broken_part(tmp_path: Path, s3: Any, s3_server: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Bucket missing, MLflow down, the Kubernetes API server unreachable: each named, the rest not checked."""
    api_port, mlflow_port = closed_port(), closed_port()
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, f"https://127.0.0.1:{api_port}")))
    stands = write_stands(tmp_path, storage="s3://no-such-bucket-here/models", endpoint=s3_server,
                          mlflow=f"http://127.0.0.1:{mlflow_port}", dags=str(tmp_path / "dags"))
    started = time.monotonic()
    report, checks = run(stands)
    assert time.monotonic() - started < 30  # nothing waits out retries
    assert not report.ok
    assert checks["storage"].status == "FAILED"
    assert "NoSuchBucket" in checks["storage"].detail and "bucket does not exist" in checks["storage"].detail
    assert checks["mlflow"].status == "FAILED"
    assert f"nothing answers at http://127.0.0.1:{mlflow_port}" in checks["mlflow"].detail
    assert "Connection refused" in checks["mlflow"].detail
    assert checks["mlflow artifacts"].status == "not checked"
    assert checks["dags"].status == "ok"  # what works is still said to work
    assert checks["airflow api"].status == "not checked" and "airflow.api_url" in checks["airflow api"].detail
    assert checks["kubernetes api"].status == "FAILED"
    assert f"cannot reach the API server at https://127.0.0.1:{api_port}" in checks["kubernetes api"].detail
    for name in K8S_CHECKS[1:]:
        assert checks[name].status == "not checked", name
        assert "API server did not answer" in checks[name].detail
    assert report.summary() == "stand mdp: 1 ok, 3 FAILED, 10 not checked"


def test_mlflow_2_server_is_named(tmp_path: Path, bucket: str, s3_server: str, no_cluster: None,
                                  servers: Callable[[Route], FakeServer]) -> None:
    mlflow = servers(fake_mlflow("2.17.0"))
    stands = write_stands(tmp_path, storage=f"s3://{bucket}/models", endpoint=s3_server, mlflow=mlflow.url,
                          dags=str(tmp_path / "dags"))
    report, checks = run(stands)
    assert checks["mlflow"].status == "FAILED"
    assert f"{mlflow.url} runs MLflow 2.17.0" in checks["mlflow"].detail
    assert "MLflow 3 server" in checks["mlflow"].detail
    assert checks["mlflow artifacts"].status == "not checked"
    assert checks["storage"].status == "ok" and not report.ok


def test_mlflow_without_artifact_proxying_is_named(tmp_path: Path, bucket: str, s3_server: str, no_cluster: None,
                                                   servers: Callable[[Route], FakeServer]) -> None:
    mlflow = servers(fake_mlflow("3.5.0", artifacts_status=503))
    stands = write_stands(tmp_path, storage=f"s3://{bucket}/models", endpoint=s3_server, mlflow=mlflow.url,
                          dags=str(tmp_path / "dags"))
    _, checks = run(stands)
    assert checks["mlflow"].status == "ok"
    assert checks["mlflow artifacts"].status == "FAILED"
    assert "--no-serve-artifacts" in checks["mlflow artifacts"].detail
    # read-only: the only artifact request was a listing
    assert [(m, p.split("?")[0]) for m, p, _ in mlflow.requests] == [
        ("GET", "/version"), ("GET", "/api/2.0/mlflow-artifacts/artifacts")]


def test_mlflow_whose_default_experiment_bypasses_the_proxy_is_noted(
        tmp_path: Path, bucket: str, s3_server: str, no_cluster: None, servers: Callable[[Route], FakeServer]) -> None:
    mlflow = servers(fake_mlflow("3.5.0", default_location="s3://mlflow-artifacts-bucket/0"))
    stands = write_stands(tmp_path, storage=f"s3://{bucket}/models", endpoint=s3_server, mlflow=mlflow.url,
                          dags=str(tmp_path / "dags"))
    _, checks = run(stands)
    assert checks["mlflow artifacts"].status == "ok"
    assert "Default experiment keeps artifacts at s3://mlflow-artifacts-bucket/0" in checks["mlflow artifacts"].detail
    assert all(method == "GET" for method, _, _ in mlflow.requests)  # nothing written to MLflow


def test_no_cluster_configuration_is_not_checked(tmp_path: Path, bucket: str, s3_server: str, mlflow_server: str,
                                                 no_cluster: None) -> None:
    stands = write_stands(tmp_path, storage=f"s3://{bucket}/models", endpoint=s3_server, mlflow=mlflow_server,
                          dags=f"s3://{bucket}/dags")
    report, checks = run(stands)
    for name in K8S_CHECKS:
        assert (checks[name].status, checks[name].detail) == (
            "not checked", "no cluster configuration (KUBECONFIG / in-cluster)"), name
    assert checks["dags"].status == "ok" and checks["dags"].detail.startswith(f"s3://{bucket}/dags writable")
    assert report.ok  # not checked is no failure


def test_local_stand_has_no_cluster_checks(tmp_path: Path, mlflow_server: str) -> None:
    stands = write_stands(tmp_path, storage=f"file://{tmp_path}/storage", endpoint="http://unused:1",
                          mlflow=mlflow_server, dags=str(tmp_path / "dags"), backend="local")
    report, checks = run(stands)
    assert list(checks) == ["storage", "mlflow", "mlflow artifacts", "dags", "airflow api"]
    assert report.ok
    assert list((tmp_path / "storage").iterdir()) == []


def test_local_stand_without_its_mlflow_running_is_not_a_failure(tmp_path: Path) -> None:
    """`mlops run` starts the local stand's loopback MLflow when nothing answers there."""
    uri = f"http://127.0.0.1:{closed_port()}"
    stands = write_stands(tmp_path, storage=f"file://{tmp_path}/storage", endpoint="http://unused:1",
                          mlflow=uri, dags=str(tmp_path / "dags"), backend="local")
    report, checks = run(stands)
    assert checks["mlflow"].status == "not checked" and "`mlops run` starts MLflow there" in checks["mlflow"].detail
    assert checks["mlflow artifacts"].status == "not checked"
    assert report.ok


def test_cluster_without_crd_service_account_or_permissions(tmp_path: Path, bucket: str, s3_server: str,
                                                            mlflow_server: str, monkeypatch: pytest.MonkeyPatch,
                                                            servers: Callable[[Route], FakeServer]) -> None:
    cluster = servers(fake_kubernetes(crd=False, service_account=False,
                                      denied=frozenset({("pods", "patch"), ("pods", "list"), ("pods/log", "get")}),
                                      forbidden=frozenset({"/api/v1/namespaces/ml-mdp"})))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, cluster.url)))
    stands = write_stands(tmp_path, storage=f"s3://{bucket}/models", endpoint=s3_server, mlflow=mlflow_server,
                          dags=str(tmp_path / "dags"))
    report, checks = run(stands)
    assert not report.ok
    status = {name: checks[name].status for name in K8S_CHECKS}
    assert status == {"kubernetes api": "ok", "spark crd": "FAILED", "namespace": "not checked",
                      "service account": "FAILED",
                      "permission sparkapplications": "ok", "permission sparkapplications/status": "ok",
                      "permission pods": "FAILED", "permission pods/log": "FAILED", "permission events": "ok"}
    assert "no sparkoperator.k8s.io API" in checks["spark crd"].detail
    assert "service account spark-mdp" in checks["service account"].detail
    assert f"{IDENTITY} may not read namespace ml-mdp (HTTP 403" in checks["namespace"].detail
    assert f"{IDENTITY} may not list, patch pods in namespace ml-mdp" in checks["permission pods"].detail
    assert "may not get pods/log" in checks["permission pods/log"].detail


def test_permissions_are_a_parameter(tmp_path: Path, bucket: str, s3_server: str, mlflow_server: str,
                                     monkeypatch: pytest.MonkeyPatch, servers: Callable[[Route], FakeServer]) -> None:
    cluster = servers(fake_kubernetes(denied=frozenset({("configmaps", "get")})))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, cluster.url)))
    stands = write_stands(tmp_path, storage=f"s3://{bucket}/models", endpoint=s3_server, mlflow=mlflow_server,
                          dags=str(tmp_path / "dags"))
    _, checks = run(stands, permissions=[("", "configmaps", "", "get"), ("", "configmaps", "", "list")])
    assert [n for n in checks if n.startswith("permission")] == ["permission configmaps"]
    assert checks["permission configmaps"].status == "FAILED"
    assert "may not get configmaps" in checks["permission configmaps"].detail


def test_airflow_api_problems_are_named(tmp_path: Path, bucket: str, s3_server: str, mlflow_server: str,
                                        no_cluster: None, servers: Callable[[Route], FakeServer]) -> None:
    for i, (airflow, expected) in enumerate((
            (servers(fake_airflow(scheduler="unhealthy")), "its scheduler is unhealthy"),
            (servers(fake_airflow(version="2.10.5")), "runs Airflow 2.10.5"),
            (servers(fake_mlflow("3.5.0")), "does not look like an Airflow 3 api-server"))):
        (tmp_path / str(i)).mkdir()  # a stands file of its own: loaded stands files are cached by path
        stands = write_stands(tmp_path / str(i), storage=f"s3://{bucket}/models", endpoint=s3_server, mlflow=mlflow_server,
                              dags=str(tmp_path / "dags"), api_url=airflow.url)
        _, checks = run(stands)
        assert checks["airflow api"].status == "FAILED"
        assert expected in checks["airflow api"].detail


def test_a_dead_endpoint_costs_the_timeout_only(tmp_path: Path, bucket: str, s3_server: str, no_cluster: None) -> None:
    """A server that accepts connections and never answers: the check fails after its timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        stands = write_stands(tmp_path, storage=f"s3://{bucket}/models", endpoint=s3_server, mlflow=url,
                              dags=str(tmp_path / "dags"), api_url=url)
        started = time.monotonic()
        _, checks = run(stands, timeout=0.5)
        took = time.monotonic() - started
    assert checks["mlflow"].status == "FAILED" and "timed out" in checks["mlflow"].detail
    assert checks["airflow api"].status == "FAILED" and "timed out" in checks["airflow api"].detail
    assert took < 15


def test_cli_exit_status_and_json(tmp_path: Path, bucket: str, s3_server: str, mlflow_server: str, no_cluster: None,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    healthy = write_stands(tmp_path, storage=f"s3://{bucket}/models", endpoint=s3_server, mlflow=mlflow_server,
                           dags=str(tmp_path / "dags"))
    assert cli.main(["doctor", "--stand", "mdp", "--stands", str(healthy)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"storage: ok: s3://{bucket}/models writable (a probe written, read back and deleted)"
    assert out[-1] == "stand mdp: 4 ok, 10 not checked"

    assert cli.main(["doctor", "--stand", "mdp", "--stands", str(healthy), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # standard output holds the JSON alone; the lines went to standard error
    assert result["ok"] is True and result["stand"] == "mdp"
    assert [c["status"] for c in result["checks"]] == ["ok"] * 4 + ["not checked"] * 10
    assert "storage: ok" in captured.err

    broken = tmp_path / "broken"
    broken.mkdir()
    stands = write_stands(broken, storage="s3://no-such-bucket-here/models", endpoint=s3_server,
                          mlflow=mlflow_server, dags=str(tmp_path / "dags"))
    assert cli.main(["doctor", "--stand", "mdp", "--stands", str(stands), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False
    assert [c["name"] for c in result["checks"] if c["status"] == "FAILED"] == ["storage"]

    assert cli.main(["doctor", "--stand", "mpd", "--stands", str(stands)]) == 2
    assert "unknown stand 'mpd'" in capsys.readouterr().err
    assert cli.main(["doctor", "--stand", "mdp", "--stands", str(stands), "--timeout", "0"]) == 2
    assert "--timeout must be a positive number" in capsys.readouterr().err
