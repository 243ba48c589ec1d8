"""What SparkKubernetesOperator would actually post: the provider's own code path, with only the network faked.

The DAG file is loaded by a real DagBag; Airflow's Jinja renders ``application_file`` with a run's context; the
operator names the application, adds its reattach labels and its env, builds the body with
``CustomObjectLauncher`` and sends it through the kubernetes client. The client's HTTP pool is the one thing
replaced: it records each request and answers as an API server would. The body that reaches the wire is
validated against the released CRD with unknown fields as errors.
"""

from __future__ import annotations

import copy
import json
import re
import types
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from helpers import EXAMPLE_CONFIGS, crd_errors, dagbag, run_context
from test_stand_manifest import K8S_STANDS, MODES, RESTRICTED_CONTAINER, RESTRICTED_POD, stands_file

from mlops_module import names
from mlops_module.building.render import render_bundle, write_bundle
from mlops_module.spec.config import check
from mlops_module.spec.stands import load_stands

pytestmark = pytest.mark.slow  # real DagBags
EXAMPLE = next(p for p in EXAMPLE_CONFIGS if p.parent.name == "churn")
SERVER = "https://kubernetes.test:6443"


class FakeApiServer:
    """Stands in for urllib3's pool: records requests, answers like the API server (no sockets)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []

    def request(self, method: str, url: str, body: str | None = None, fields: Any = None,
                headers: Any = None, **_: Any) -> urllib3.HTTPResponse:
        self.requests.append((method, url, json.loads(body) if body else fields))
        path = url.removeprefix(SERVER)
        if method == "GET" and re.fullmatch(r"/api/v1/namespaces/[^/]+/pods", path):
            answer: dict[str, Any] = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}
        elif method == "POST" and path.endswith("/sparkapplications"):
            answer = copy.deepcopy(json.loads(body or "{}"))
        elif method == "GET" and path.endswith("/status"):
            answer = {"status": {"applicationState": {"state": "RUNNING"}}}
        else:
            raise AssertionError(f"unexpected call {method} {url}")
        return urllib3.HTTPResponse(body=json.dumps(answer).encode(), status=201 if method == "POST" else 200,
                                    headers={"Content-Type": "application/json"}, preload_content=True)


def posted_body(task: Any, context: dict[str, Any]) -> tuple[dict[str, Any], FakeApiServer]:
    """Run the operator's submission path (execute() up to where KubernetesPodOperator follows the driver)."""
    from kubernetes.client import ApiClient, Configuration, CoreV1Api, CustomObjectsApi

    configuration = Configuration(host=SERVER)
    api = ApiClient(configuration)
    server = FakeApiServer()
    api.rest_client.pool_manager = server
    task.client = CoreV1Api(api)  # the hook would build the same clients from the Airflow connection
    task.custom_obj_api = CustomObjectsApi(api)
    task.name = task.create_job_name()  # execute()'s first two steps
    task._setup_spark_configuration(context)
    posts = [body for method, url, body in server.requests if method == "POST"]
    assert len(posts) == 1, server.requests
    return posts[0], server


def render_and_load(root: Path, mode: str) -> dict[str, Any]:
    """The example on every Kubernetes stand with credentials ``mode`` (and MinIO on mdp), loaded by a DagBag."""
    defaults = copy.deepcopy(MODES[mode]["stands"])
    defaults["kubernetes"] = {"image_pull_secrets": ["regcred"]}
    stands = load_stands(stands_file(root, defaults, {"mdp": {"storage": {"endpoint_url": "http://minio:9000",
                                                                          "path_style_access": True}}}))
    cfgs = {}
    for stand in K8S_STANDS:
        (cfgs[stand],) = check(EXAMPLE, stands, stand)
        write_bundle(render_bundle(cfgs[stand]), root / "dags" / stand)
    loaded = dagbag(root / "dags")
    assert loaded.import_errors == {}
    return {"bag": loaded, "cfgs": cfgs, "cfg": cfgs["mdp"]}


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return {mode: render_and_load(tmp_path_factory.mktemp(mode), mode) for mode in MODES}


@pytest.fixture(scope="module")
def bag(bags: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Keys from a Secret and MLflow credentials."""
    return bags["secret"]


def spark_tasks(cfg: Any) -> list[tuple[str, str]]:
    """(DAG kind, Spark task id) of every Spark task the stand's DAGs run."""
    kinds = [*(j.kind for j in cfg.jobs), *([names.ACCEPT] if cfg.accepts else [])]
    out = []
    for kind in kinds:
        jobs = [j.kind for j in cfg.acceptance_jobs] if kind == names.ACCEPT else \
            [kind] + (["evaluate"] if kind == "train" and cfg.train_evaluates else [])
        out += [(kind, names.SPARK_TASK[job]) for job in jobs]
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_the_body_the_provider_posts_is_what_the_crd_accepts(bags: dict[str, dict[str, Any]], mode: str) -> None:
    checked = 0
    for stand in K8S_STANDS:
        cfg = bags[mode]["cfgs"][stand]
        for kind, task_id in spark_tasks(cfg):
            dag = bags[mode]["bag"].dags[names.dag_id(cfg.name, stand, kind)]
            conf = {"version": "7", "source_stand": "mdp", "source_version": "3"} if kind == names.ACCEPT else None
            check_posted_body(dag, task_id, stand, mode, conf)
            checked += 1
    assert checked >= len(K8S_STANDS) * 3


def rendered_task(dag: Any, task_id: str, conf: dict[str, Any] | None = None,
                  try_number: int = 1) -> tuple[Any, dict[str, Any]]:
    """A copy of the DAG's task with its fields rendered by Airflow's Jinja as at run time, and its context."""
    task = copy.deepcopy(dag.get_task(task_id))
    context = run_context(dag, conf)
    context["ti"] = types.SimpleNamespace(dag_id=dag.dag_id, task_id=task_id, map_index=-1, try_number=try_number)
    task.render_template_fields(context, jinja_env=dag.get_template_env())
    return task, context


def check_posted_body(dag: Any, task_id: str, stand: str, mode: str, conf: dict[str, Any] | None) -> None:
    task, context = rendered_task(dag, task_id, conf)
    ours = yaml.safe_load(task.application_file)
    namespace = ours["metadata"]["namespace"]

    body, server = posted_body(task, context)

    # where it goes: the stand's namespace, the CRD's group and version
    post_url = next(url for method, url, _ in server.requests if method == "POST")
    assert post_url == f"{SERVER}/apis/sparkoperator.k8s.io/v1beta2/namespaces/{namespace}/sparkapplications"
    # the provider renames the application: our name, "-" and 8 random characters, 63 at most
    assert re.fullmatch(re.escape(ours["metadata"]["name"]) + r"-[a-z0-9]{8}", body["metadata"]["name"])
    assert body["metadata"]["namespace"] == namespace == f"ml-{stand}" and len(body["metadata"]["name"]) <= 63

    # The one field the provider adds that the CRD lacks: spec.labels (its reattach labels). The API server
    # prunes it; the same labels also go on driver and executor, which is where reattaching looks for them.
    errors = crd_errors(body)
    assert errors == ["spec: Additional properties are not allowed ('labels' was unexpected)"], errors
    reattach = body["spec"]["labels"]
    assert reattach["dag_id"] == dag.dag_id and reattach["task_id"] == task.task_id
    assert reattach["spark_kubernetes_operator"] == "True" and reattach["try_number"] == "1"
    pruned = copy.deepcopy(body)
    del pruned["spec"]["labels"]
    assert crd_errors(pruned) == []

    # Everything else is our manifest, with the provider's additions: labels and SPARK_APPLICATION_NAME
    spec, mine = body["spec"], ours["spec"]
    added = {"name": "SPARK_APPLICATION_NAME", "value": body["metadata"]["name"]}
    for role in ("driver", "executor"):
        assert spec[role]["labels"] == {**mine[role]["labels"], **reattach}
        assert spec[role]["env"] == [*MODES[mode][f"{role}_env"], added]
        assert spec[role]["podSecurityContext"] == RESTRICTED_POD
        assert spec[role]["securityContext"] == RESTRICTED_CONTAINER
        rest = {k: v for k, v in spec[role].items() if k not in ("labels", "env")}
        assert rest == {k: v for k, v in mine[role].items() if k not in ("labels", "env")}
    assert {k: v for k, v in spec.items() if k not in ("labels", "driver", "executor")} == {
        k: v for k, v in mine.items() if k not in ("driver", "executor")}
    s3a = {k: v for k, v in spec["sparkConf"].items() if k.startswith("spark.hadoop.")}
    minio = {names.S3A_ENDPOINT: "http://minio:9000", names.S3A_SSL: "false"} if stand == "mdp" else {}
    assert s3a == {names.S3A_PATH_STYLE: "true" if stand == "mdp" else "false", **minio, **MODES[mode]["conf"]}
    assert spec["imagePullSecrets"] == ["regcred"] and spec["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert "{{" not in json.dumps(body)  # every run-time expression was rendered
    assert body["metadata"]["labels"] == ours["metadata"]["labels"]


def test_reattach_lookup_and_names_only_read_the_cluster(bag: dict[str, Any]) -> None:
    """Before posting, the operator only lists driver pods by its labels (the RBAC side needs pods list)."""
    cfg = bag["cfg"]
    dag = bag["bag"].dags[names.dag_id(cfg.name, "mdp", "train")]
    task, context = rendered_task(dag, "train", try_number=2)
    body, server = posted_body(task, context)
    calls = [(method, url.split("?")[0].removeprefix(SERVER)) for method, url, _ in server.requests]
    assert calls == [
        ("GET", "/api/v1/namespaces/ml-mdp/pods"),  # reattach: a driver of this try already running?
        ("GET", "/api/v1/namespaces/ml-mdp/pods"),
        ("POST", "/apis/sparkoperator.k8s.io/v1beta2/namespaces/ml-mdp/sparkapplications"),
        ("GET", f"/apis/sparkoperator.k8s.io/v1beta2/namespaces/ml-mdp/sparkapplications/{body['metadata']['name']}"
                "/status"),
    ]
    assert body["spec"]["driver"]["labels"]["try_number"] == "2"  # a retry is a new application
    assert task.delete_on_termination is False


def test_the_submission_path_is_the_one_execute_takes() -> None:
    """posted_body() runs what SparkKubernetesOperator.execute() runs before it follows the driver pod; if a
    provider upgrade changes that path, this fails and posted_body() must follow it."""
    import inspect

    from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator

    steps = [line.strip() for line in inspect.getsource(SparkKubernetesOperator.execute).splitlines()[1:]
             if line.strip() and not line.strip().startswith(("#", '"""'))]
    assert steps[:2] == ["self.name = self.create_job_name()", "self._setup_spark_configuration(context)"]


def test_the_fake_server_sees_what_a_wrong_manifest_would_post(bag: dict[str, Any]) -> None:
    """The check can fail: a manifest with a misspelt field reaches the wire as it is and is reported."""
    cfg = bag["cfg"]
    dag = bag["bag"].dags[names.dag_id(cfg.name, "mdp", "inference")]
    task, context = rendered_task(dag, "infer")
    manifest = yaml.safe_load(task.application_file)
    manifest["spec"]["driver"]["securityContex"] = manifest["spec"]["driver"].pop("securityContext")
    task.application_file = yaml.safe_dump(manifest)
    body, _ = posted_body(task, context)
    errors = crd_errors(body)
    assert any("securityContex" in e for e in errors) and len(errors) == 2, errors
