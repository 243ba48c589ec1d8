"""The per-stand Kubernetes objects: valid against the Kubernetes API schemas, and the Airflow Role grants every
call the provider's SparkKubernetesOperator makes (and nothing it never makes).

The calls are not listed by hand: the operator runs its real execute / cleanup / on_kill code with the real
kubernetes client classes, whose transport (``ApiClient.call_api``) is replaced by a fake cluster that records
each request (HTTP method and path) and answers like a cluster running one Spark driver. Each request is mapped
to its RBAC (group, resource, subresource, verb) the way the API server does (request-info rules).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from mlops_module import names
from mlops_module.cli import main
from mlops_module.errors import UsageError
from mlops_module.platform.objects import stand_objects
from mlops_module.platform.rbac import AIRFLOW_PERMISSIONS, SPARK_DRIVER_PERMISSIONS, Permission
from mlops_module.spec.stands import load_stands

K8S_VERSION = "1.33"  # a schema version kubernetes-validate 1.37 carries; RBAC v1 is the same since 1.8

MANIFEST = """\
apiVersion: sparkoperator.k8s.io/v1beta2
kind: SparkApplication
metadata:
  name: churn-mdp-train
  namespace: ml-mdp
spec:
  type: Python
  mode: cluster
  image: mlops/spark-py:3.5.5
  sparkVersion: 3.5.5
  mainApplicationFile: s3a://mlops-mdp/models/code/train.py
  restartPolicy: {type: Never}
  driver: {cores: 1, memory: 1g, serviceAccount: spark-mdp}
  executor: {cores: 1, instances: 1, memory: 1g}
"""

Call = tuple[str, str, "str | None", str]  # api group, resource, subresource, verb


def rbac_call(method: str, path: str, path_params: dict[str, Any], query: list[tuple[str, Any]]) -> Call:
    """What the API server's authorizer checks for one request (k8s.io/apiserver request-info rules)."""
    filled = re.sub(r"\{(\w+)\}", lambda m: str(path_params[m.group(1)]) if m.group(1) != "name" else "{name}",
                    path)
    parts = filled.strip("/").split("/")
    if parts[0] == "api":  # /api/v1/...: the core group
        group, rest = "", parts[2:]
    else:  # /apis/<group>/<version>/...
        group, rest = parts[1], parts[3:]
    assert rest[0] == "namespaces" and len(rest) >= 3, f"not a namespaced request: {method} {path}"
    resource, named, sub = rest[2], len(rest) > 3, rest[4] if len(rest) > 4 else None
    watch = any(k == "watch" and v for k, v in query)
    verb = {
        "GET": "get" if named else ("watch" if watch else "list"),
        "POST": "create", "PUT": "update", "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }[method]
    return group, resource, sub, verb


@dataclass
class FakeCluster:
    """Answers the requests of one SparkKubernetesOperator task like a cluster whose driver runs and ends."""

    driver_exists: bool = False  # a driver pod of this task is there already (the worker restarted: reattach)
    app_state: str = "RUNNING"  # what sparkapplications/status says
    driver_exit: int = 0
    calls: list[Call] = field(default_factory=list)
    pod_reads: int = 0
    log_read: bool = False
    driver_labels: dict[str, str] = field(default_factory=dict)

    def driver(self, name: str = "churn-mdp-train-abcd1234-driver") -> Any:
        from kubernetes.client import models as k8s

        now = dt.datetime.now(dt.timezone.utc)
        if self.log_read:  # the log was streamed to its end: the driver has exited
            phase = "Succeeded" if self.driver_exit == 0 else "Failed"
            state = k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(
                exit_code=self.driver_exit, finished_at=now, reason="Completed" if phase == "Succeeded" else "Error"))
        elif self.pod_reads <= 1:  # scheduled, not started: the operator watches its events meanwhile
            phase, state = "Pending", k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(
                reason="ContainerCreating"))
        else:
            phase, state = "Running", k8s.V1ContainerState(running=k8s.V1ContainerStateRunning(started_at=now))
        return k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name, namespace="ml-mdp", labels=dict(self.driver_labels),
                                      creation_timestamp=now),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="spark-kubernetes-driver")]),
            status=k8s.V1PodStatus(
                phase=phase,
                conditions=[k8s.V1PodCondition(type="PodScheduled", status="True")],
                container_statuses=[k8s.V1ContainerStatus(
                    name="spark-kubernetes-driver", image="mlops/spark-py:3.5.5", image_id="", ready=True,
                    restart_count=0, state=state)]),
        )

    def answer(self, method: str, path: str, params: dict[str, Any], query: list[tuple[str, Any]],
               body: Any) -> Any:
        from kubernetes.client import models as k8s

        call = rbac_call(method, path, params, query)
        self.calls.append(call)
        _group, resource, sub, verb = call
        if (resource, sub, verb) == ("sparkapplications", None, "create"):
            self.driver_labels = body["spec"]["driver"].get("labels") or {}
            self.driver_exists = True
            return body
        if (resource, sub) == ("sparkapplications", "status"):
            return {"status": {"applicationState": {"state": self.app_state}}}
        if (resource, verb) == ("sparkapplications", "delete"):
            return {}
        if (resource, sub, verb) == ("pods", None, "list"):
            return k8s.V1PodList(items=[self.driver()] if self.driver_exists else [])
        if (resource, sub, verb) == ("pods", None, "get"):
            self.pod_reads += 1
            return self.driver(params["name"])
        if (resource, sub, verb) == ("pods", None, "patch"):
            return self.driver(params["name"])
        if (resource, sub) == ("pods", "log"):
            self.log_read = True
            return SimpleNamespace(stream=lambda amt=None, decode_content=True: iter(
                [b"2026-01-01T00:00:00.000000000Z driver says hello\n"]))
        if (resource, verb) == ("events", "list"):
            return k8s.CoreV1EventList(items=[], metadata=k8s.V1ListMeta())
        raise AssertionError(f"the fake cluster has no answer for {method} {path} ({call})")


def _api_client(cluster: FakeCluster) -> Any:
    from kubernetes.client import ApiClient

    class Recording(ApiClient):  # type: ignore[misc]
        def call_api(self, resource_path: str, method: str, path_params: Any = None, query_params: Any = None,
                     header_params: Any = None, body: Any = None, *args: Any, **kwargs: Any) -> Any:
            return cluster.answer(method, resource_path, path_params or {}, query_params or [], body)

    return Recording()


def _context() -> dict[str, Any]:
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(dag_id="churn__mdp__train", task_id="train", try_number=1, map_index=-1,
                         xcom_push=lambda key, value: pushed.__setitem__(key, value))
    return {"ti": ti, "task_instance": ti, "run_id": "manual__2026-01-01", "dag": SimpleNamespace()}


def run_operator(cluster: FakeCluster, *, delete_on_termination: bool = True, kill: bool = False,
                 startup_timeout: int = 600) -> set[Call]:
    """Run SparkKubernetesOperator as our DAGs configure it (see building/backends/kubernetes.py) on ``cluster``."""
    from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    op = SparkKubernetesOperator(
        task_id="train", application_file=MANIFEST, namespace="ml-mdp", kubernetes_conn_id="kubernetes_default",
        startup_timeout_seconds=startup_timeout, get_logs=True, reattach_on_restart=True,
        delete_on_termination=delete_on_termination,
        startup_check_interval_seconds=0,  # the fake driver starts at once: no waiting between status checks
    )
    api = _api_client(cluster)
    op.client = CoreV1Api(api_client=api)  # the operator's cached clients, without a kubeconfig or hook
    op.custom_obj_api = CustomObjectsApi(api_client=api)
    op.hook = SimpleNamespace(is_in_cluster=True)  # read from the loaded kubeconfig, no request
    try:
        op.execute(_context())
    except Exception as exc:  # a failing driver or a start timeout fails the task: the calls are what we want
        if "failure" not in str(exc) and "too long" not in str(exc):
            raise
    if kill:
        op.on_kill()
    return set(cluster.calls)


def granted(permissions: tuple[Permission, ...], call: Call) -> bool:
    return any(p.grants(*call) for p in permissions)


def test_the_operator_paths_our_dags_take_make_the_calls_we_expect() -> None:
    """Each path adds its calls: the union is what the Role must grant."""
    fresh = run_operator(FakeCluster())
    assert ("sparkoperator.k8s.io", "sparkapplications", None, "create") in fresh
    assert ("sparkoperator.k8s.io", "sparkapplications", "status", "get") in fresh
    assert ("sparkoperator.k8s.io", "sparkapplications", None, "delete") in fresh  # delete_on_termination
    assert {("", "pods", "log", "get"), ("", "events", None, "list"), ("", "pods", None, "list")} <= fresh

    failed_kept = run_operator(FakeCluster(driver_exit=1), delete_on_termination=False)
    assert ("", "pods", None, "patch") in failed_kept  # a failed driver is labelled already_checked
    assert ("sparkoperator.k8s.io", "sparkapplications", None, "delete") not in failed_kept

    reattached = run_operator(FakeCluster(driver_exists=True))
    assert ("sparkoperator.k8s.io", "sparkapplications", None, "create") not in reattached


def _every_call() -> set[Call]:
    return (run_operator(FakeCluster())
            | run_operator(FakeCluster(driver_exit=1), delete_on_termination=False)
            | run_operator(FakeCluster(driver_exists=True), kill=True)
            | run_operator(FakeCluster(app_state="SUBMITTED"), startup_timeout=0))  # never starts: deleted


def test_the_airflow_role_grants_exactly_what_the_operator_calls() -> None:
    calls = _every_call()
    missing = sorted(c for c in calls if not granted(AIRFLOW_PERMISSIONS, c))
    assert not missing, f"the operator calls what the Airflow Role does not grant: {missing}"
    unused = sorted((p.api_group, p.rbac_resource, verb) for p in AIRFLOW_PERMISSIONS for verb in p.verbs
                    if (p.api_group, p.resource, p.subresource, verb) not in calls)
    assert not unused, f"the Airflow Role grants what the operator never calls: {unused}"


def test_rbac_call_follows_the_api_servers_request_info() -> None:
    ns = {"namespace": "n", "name": "x", "group": "sparkoperator.k8s.io", "version": "v1beta2",
          "plural": "sparkapplications"}
    assert rbac_call("GET", "/api/v1/namespaces/{namespace}/pods", ns, []) == ("", "pods", None, "list")
    assert rbac_call("GET", "/api/v1/namespaces/{namespace}/pods", ns, [("watch", True)]) == (
        "", "pods", None, "watch")
    assert rbac_call("GET", "/api/v1/namespaces/{namespace}/pods/{name}/log", ns, []) == ("", "pods", "log", "get")
    assert rbac_call("DELETE", "/apis/{group}/{version}/namespaces/{namespace}/{plural}", ns, []) == (
        "sparkoperator.k8s.io", "sparkapplications", None, "deletecollection")


@pytest.mark.parametrize("stand", ["mdp", "int", "lt", "prom"])
def test_every_kubernetes_stands_objects_validate_against_the_kubernetes_schemas(stand: str) -> None:
    import kubernetes_validate

    objects = stand_objects(load_stands().get(stand))
    assert [o["kind"] for o in objects] == ["Namespace", "ServiceAccount", "Role", "RoleBinding", "Role",
                                            "RoleBinding"]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)  # strict: unknown fields are errors


def test_a_broken_object_fails_validation() -> None:
    """The validation above can fail: a verb list where a string is expected, an unknown field."""
    import kubernetes_validate

    role = stand_objects(load_stands().get("mdp"))[2]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**role, "rules": [{"apiGroups": "", "verbs": ["get"]}]}, K8S_VERSION,
                                     strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**role, "spec": {}}, K8S_VERSION, strict=True)


def test_the_objects_bind_the_stands_identities() -> None:
    stand = load_stands().get("prom")
    ns, sa, driver_role, driver_binding, airflow_role, airflow_binding = stand_objects(stand)
    assert ns["metadata"]["name"] == "ml-prom"
    assert sa["metadata"] == {"name": "spark-prom", "namespace": "ml-prom",
                              "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_STAND: "prom"}}
    assert driver_binding["subjects"] == [{"kind": "ServiceAccount", "name": "spark-prom", "namespace": "ml-prom"}]
    assert driver_binding["roleRef"]["name"] == driver_role["metadata"]["name"] == names.SPARK_DRIVER_ROLE
    assert airflow_binding["subjects"] == [{"kind": "ServiceAccount", "name": "airflow-worker",
                                            "namespace": "airflow"}]
    assert airflow_binding["roleRef"]["name"] == airflow_role["metadata"]["name"] == names.AIRFLOW_ROLE
    assert {(r["resources"][0], v) for r in airflow_role["rules"] for v in r["verbs"]} == {
        ("sparkapplications", "create"), ("sparkapplications", "delete"), ("sparkapplications/status", "get"),
        ("pods", "get"), ("pods", "list"), ("pods", "patch"), ("pods/log", "get"), ("events", "list")}
    driver_rules = {r["resources"][0]: set(r["verbs"]) for r in driver_role["rules"]}
    assert {"create", "watch", "delete", "deletecollection"} <= driver_rules["pods"]
    assert set(driver_rules) == {p.resource for p in SPARK_DRIVER_PERMISSIONS}


def test_a_local_stand_has_no_kubernetes_objects() -> None:
    with pytest.raises(UsageError, match="backend 'local'"):
        stand_objects(load_stands().get("local"))


STANDS = """\
order: [dev]
stands:
  dev:
    backend: kubernetes
    airflow: {dags: s3://dev-dags/dags}
    kubernetes:
      namespace: ml-dev
      service_account: spark-dev
      conn_id: kubernetes_default
      startup_timeout_seconds: 60
      airflow_service_account: {name: airflow-worker-dev, namespace: airflow-dev}
    storage: {uri: s3://dev-bucket/models}
    mlflow: {tracking_uri: http://mlflow:5000}
    spark: {image: spark:3.5.5, version: 3.5.5, python_versions: ["3.11"], time_to_live_seconds: 60}
    deploy: {trigger: none, approval: auto}
"""


def test_cli_prints_objects_that_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stands = tmp_path / "stands.yaml"
    stands.write_text(STANDS, encoding="utf-8")
    assert main(["platform", "render", "--stand", "dev", "--stands", str(stands)]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "Role", "RoleBinding", "Role",
                                         "RoleBinding"]
    assert docs[5]["subjects"] == [{"kind": "ServiceAccount", "name": "airflow-worker-dev",
                                    "namespace": "airflow-dev"}]
    assert {d["metadata"].get("namespace") for d in docs[1:]} == {"ml-dev"}


def test_cli_writes_a_file_per_stand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "objects"
    assert main(["platform", "render", "--stand", "mdp", "--out", str(out)]) == 0
    written = out / "mdp.yaml"
    assert str(written) in capsys.readouterr().out
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(written.read_text(encoding="utf-8"))][:2] == [
        "ml-mdp", "spark-mdp"]


def test_cli_refuses_a_local_stand_and_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["platform", "render", "--stand", "local"]) == 2
    err = capsys.readouterr()
    assert err.out == "" and "backend 'local'" in err.err and "no Kubernetes objects" in err.err
    assert main(["platform", "render", "--stand", "mpd"]) == 2
    assert "did you mean 'mdp'" in capsys.readouterr().err


def test_cli_help_names_the_objects(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["platform", "render", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "kubectl apply" in text and "pods/log get" in text and "airflow_service_account" in text


def test_an_invalid_airflow_service_account_is_a_stands_file_error(tmp_path: Path) -> None:
    from mlops_module.errors import ConfigError

    stands = tmp_path / "stands.yaml"
    stands.write_text(STANDS.replace("namespace: airflow-dev", "namespace: Airflow_Dev"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"airflow_service_account\.namespace: 'Airflow_Dev' is not a DNS-1123 label"):
        load_stands(stands)


def test_the_permissions_import_without_kubernetes_or_airflow() -> None:
    """`mlops doctor` and other tools read the rules where neither client is installed."""
    import subprocess
    import sys

    code = ("import sys; sys.modules.update(dict.fromkeys(('kubernetes', 'airflow'))); "
            "from mlops_module.platform.rbac import AIRFLOW_PERMISSIONS as A; print(len(A))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(AIRFLOW_PERMISSIONS))


@pytest.mark.parametrize("stand", ["mdp", "prom"])
def test_the_rendered_manifests_run_where_and_as_whom_the_objects_say(stand: str, tmp_path: Path) -> None:
    """The jobs' namespace and driver/executor service account are the objects this command creates."""
    from helpers import EXAMPLE_CONFIGS, render

    namespace, account = stand_objects(load_stands().get(stand))[:2]
    out = render(EXAMPLE_CONFIGS[0], stand, tmp_path / "out")
    manifests = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted((out / "manifests").glob("*.yaml"))]
    assert manifests
    for app in manifests:
        assert app["metadata"]["namespace"] == namespace["metadata"]["name"] == account["metadata"]["namespace"]
        assert app["spec"]["driver"]["serviceAccount"] == account["metadata"]["name"]


def test_platform_stands_prints_the_built_in_file_and_never_overwrites_one(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from mlops_module.cli import main
    from mlops_module.spec.stands import BUILTIN_STANDS

    assert main(["platform", "stands"]) == 0
    assert capsys.readouterr().out == BUILTIN_STANDS.read_text()  # comments included: where to start from
    out = tmp_path / "stands.yaml"
    assert main(["platform", "stands", "--out", str(out)]) == 0
    assert out.read_text() == BUILTIN_STANDS.read_text()
    out.write_text("someone's stands file\n")
    assert main(["platform", "stands", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == "someone's stands file\n"
