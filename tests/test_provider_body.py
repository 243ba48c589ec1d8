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
from test_stand_manifest import MODES, RESTRICTED_CONTAINER, RESTRICTED_POD, stands_file

from mlops_module import names
from mlops_module.building.render import render_bundle, write_bundle
from mlops_module.spec.config import check
from mlops_module.spec.stands import load_stands

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


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example on mdp with keys from a Secret and MLflow credentials, rendered and loaded by a DagBag."""
    root = tmp_path_factory.mktemp("provider")
    defaults = copy.deepcopy(MODES["secret"]["stands"])
    defaults["kubernetes"] = {"image_pull_secrets": ["regcred"]}
    stands = stands_file(root, defaults, {"mdp": {"storage": {"endpoint_url": "http://minio:9000",
                                                              "path_style_access": True}}})
    (cfg,) = check(EXAMPLE, load_stands(stands), "mdp")
    out = write_bundle(render_bundle(cfg), root / "dags" / "mdp")
    loaded = dagbag(out)
    assert loaded.import_errors == {}
    return {"bag": loaded, "cfg": cfg, "out": out}


@pytest.mark.parametrize("job", names.JOBS)
def test_the_body_the_provider_posts_is_what_the_crd_accepts(bag: dict[str, Any], job: str) -> None:
    cfg = bag["cfg"]
    dag = bag["bag"].dags[names.dag_id(cfg.name, "mdp", job)]
    task = copy.deepcopy(dag.get_task(names.SPARK_TASK[job]))
    context = run_context(dag)
    context["ti"] = types.SimpleNamespace(dag_id=dag.dag_id, task_id=task.task_id, map_index=-1, try_number=1)
    task.render_template_fields(context, jinja_env=dag.get_template_env())  # Airflow's Jinja, as at run time
    ours = yaml.safe_load(task.application_file)

    body, server = posted_body(task, context)

    # where it goes: the stand's namespace, the CRD's group and version
    post_url = next(url for method, url, _ in server.requests if method == "POST")
    assert post_url == f"{SERVER}/apis/sparkoperator.k8s.io/v1beta2/namespaces/ml-mdp/sparkapplications"
    # the provider renames the application: our name, "-" and 8 random characters, 63 at most
    app = names.app_name(cfg.name, "mdp", job)
    assert re.fullmatch(re.escape(app) + r"-[a-z0-9]{8}", body["metadata"]["name"])
    assert body["metadata"]["namespace"] == "ml-mdp" and len(body["metadata"]["name"]) <= 63

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
    for role in ("driver", "executor"):
        assert spec[role]["labels"] == {**mine[role]["labels"], **reattach}
        added = {"name": "SPARK_APPLICATION_NAME", "value": body["metadata"]["name"]}
        assert spec[role]["env"] == [*mine[role].get("env", []), added]
        assert spec[role]["podSecurityContext"] == RESTRICTED_POD
        assert spec[role]["securityContext"] == RESTRICTED_CONTAINER
        rest = {k: v for k, v in spec[role].items() if k not in ("labels", "env")}
        assert rest == {k: v for k, v in mine[role].items() if k not in ("labels", "env")}
    assert spec["driver"]["env"][:-1] == MODES["secret"]["driver_env"]
    assert spec["executor"]["env"][:-1] == MODES["secret"]["executor_env"]
    assert {k: v for k, v in spec.items() if k not in ("labels", "driver", "executor")} == {
        k: v for k, v in mine.items() if k not in ("driver", "executor")}
    assert spec["sparkConf"][names.S3A_ENDPOINT] == "http://minio:9000"
    assert spec["sparkConf"][names.S3A_PATH_STYLE] == "true"
    assert spec["imagePullSecrets"] == ["regcred"] and spec["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert "{{" not in json.dumps(body)  # every run-time expression was rendered
    assert body["metadata"]["labels"] == ours["metadata"]["labels"]


def test_reattach_lookup_and_names_only_read_the_cluster(bag: dict[str, Any]) -> None:
    """Before posting, the operator only lists driver pods by its labels (the RBAC side needs pods list)."""
    cfg = bag["cfg"]
    dag = bag["bag"].dags[names.dag_id(cfg.name, "mdp", "train")]
    task = copy.deepcopy(dag.get_task("train"))
    context = run_context(dag)
    context["ti"] = types.SimpleNamespace(dag_id=dag.dag_id, task_id="train", map_index=-1, try_number=2)
    task.render_template_fields(context, jinja_env=dag.get_template_env())
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


def test_the_fake_server_sees_what_a_wrong_manifest_would_post(bag: dict[str, Any], tmp_path: Path) -> None:
    """The check can fail: a manifest with a misspelt field reaches the wire as it is and is reported."""
    cfg = bag["cfg"]
    dag = bag["bag"].dags[names.dag_id(cfg.name, "mdp", "inference")]
    task = copy.deepcopy(dag.get_task("infer"))
    context = run_context(dag)
    context["ti"] = types.SimpleNamespace(dag_id=dag.dag_id, task_id="infer", map_index=-1, try_number=1)
    task.render_template_fields(context, jinja_env=dag.get_template_env())
    manifest = yaml.safe_load(task.application_file)
    manifest["spec"]["driver"]["securityContex"] = manifest["spec"]["driver"].pop("securityContext")
    task.application_file = yaml.safe_dump(manifest)
    body, _ = posted_body(task, context)
    errors = crd_errors(body)
    assert any("securityContex" in e for e in errors) and len(errors) == 2, errors
