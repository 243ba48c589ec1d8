"""Stands file → manifest: S3A access, credentials from Secrets, pod security, scheduling, retries, event logs.

Each Kubernetes stand of a stands file written here, with each credentials mode, renders the example; the
exact sparkConf, env, securityContext and nodeSelector are checked, and every manifest is validated against
the released CRD with unknown fields as errors.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import EXAMPLE_CONFIGS, MINIMAL, ROOT, crd_errors, write_repo

from mlops_module import names
from mlops_module.building.render import render_bundle
from mlops_module.errors import ConfigError
from mlops_module.spec.config import check
from mlops_module.spec.stands import STAND_SCHEMA, load_stands

EXAMPLE = next(p for p in EXAMPLE_CONFIGS if p.parent.name == "churn")
K8S_STANDS = ("mdp", "int", "lt", "prom")
MINIO = "http://minio.storage.svc.cluster.local:9000"
RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 185, "runAsGroup": 185, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}


def secret_env(env: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def stands_file(tmp_path: Path, defaults: dict[str, Any] | None = None,
                per_stand: dict[str, dict[str, Any]] | None = None) -> Path:
    """The built-in stands file with ``defaults`` and per-stand values deep-merged into it."""
    from mlops_module.spec.merge import deep_merge

    data = yaml.safe_load((ROOT / "mlops_module" / "data" / "stands.yaml").read_text())
    data["defaults"] = deep_merge(data["defaults"], defaults or {})
    for stand, extra in (per_stand or {}).items():
        data["stands"][stand] = deep_merge(data["stands"][stand], extra)
    path = tmp_path / "stands.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def manifests(config: Path, stands: Path, stand: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    (cfg,) = check(config, load_stands(stands), stand)
    files = render_bundle(cfg).files
    parsed = {rel: yaml.safe_load(text) for rel, text in files.items() if rel.startswith("manifests/")}
    assert parsed, "no manifests rendered"
    return parsed, files


# What each credentials mode puts into the manifests (the stands file's defaults; mdp also has an endpoint)
MODES: dict[str, dict[str, Any]] = {
    "instance_profile": {
        "stands": {"storage": {"credentials": {"mode": "instance_profile"}}},
        "conf": {},
        "driver_env": [],
        "executor_env": [],
    },
    "web_identity": {
        "stands": {"storage": {"credentials": {"mode": "web_identity"}}},
        "conf": {names.S3A_CREDENTIALS_PROVIDER: "com.amazonaws.auth.WebIdentityTokenCredentialsProvider"},
        "driver_env": [],
        "executor_env": [],
    },
    "secret": {
        "stands": {"storage": {"credentials": {"mode": "secret", "secret": "s3-keys", "access_key_id_key": "access-key",
                                               "secret_access_key_key": "secret.key"}},
                   "mlflow": {"credentials": {"secret": "mlflow-auth", "username_key": "user",
                                              "password_key": "password"}}},
        "conf": {names.S3A_CREDENTIALS_PROVIDER: "com.amazonaws.auth.EnvironmentVariableCredentialsProvider"},
        "driver_env": [secret_env("AWS_ACCESS_KEY_ID", "s3-keys", "access-key"),
                       secret_env("AWS_SECRET_ACCESS_KEY", "s3-keys", "secret.key"),
                       secret_env("MLFLOW_TRACKING_USERNAME", "mlflow-auth", "user"),
                       secret_env("MLFLOW_TRACKING_PASSWORD", "mlflow-auth", "password")],
        "executor_env": [secret_env("AWS_ACCESS_KEY_ID", "s3-keys", "access-key"),
                         secret_env("AWS_SECRET_ACCESS_KEY", "s3-keys", "secret.key")],
    },
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_kubernetes_stand_renders_its_access_and_pod_settings(tmp_path: Path, mode: str) -> None:
    spec = MODES[mode]
    defaults = copy.deepcopy(spec["stands"])
    defaults["kubernetes"] = {"image_pull_secrets": ["regcred"], "node_selector": {"node-pool.example.com/spark": "yes"}}
    stands = stands_file(tmp_path, defaults, {"mdp": {"storage": {"endpoint_url": MINIO + "/", "path_style_access": True}}})
    checked = 0
    for stand in K8S_STANDS:
        parsed, _ = manifests(EXAMPLE, stands, stand)
        for rel, manifest in parsed.items():
            assert crd_errors(manifest) == [], rel
            s = manifest["spec"]
            own = {k: v for k, v in s["sparkConf"].items() if k.startswith(("spark.hadoop.", "spark.eventLog."))}
            endpoint = {names.S3A_ENDPOINT: MINIO, names.S3A_SSL: "false"} if stand == "mdp" else {}
            assert own == {names.S3A_PATH_STYLE: "true" if stand == "mdp" else "false", names.EVENT_LOG_ENABLED: "false",
                           **endpoint, **spec["conf"]}, (stand, rel)
            assert s["sparkConf"]["spark.pyspark.python"] == "./environment/bin/python"
            assert s.get("driver", {}).get("env", []) == spec["driver_env"]
            assert s.get("executor", {}).get("env", []) == spec["executor_env"]
            for role in ("driver", "executor"):
                assert s[role]["podSecurityContext"] == RESTRICTED_POD
                assert s[role]["securityContext"] == RESTRICTED_CONTAINER
                assert "nodeSelector" not in s[role]  # spec-level only: the operator refuses both
            assert s["nodeSelector"] == {"kubernetes.io/arch": "amd64", "node-pool.example.com/spark": "yes"}
            assert s["imagePullSecrets"] == ["regcred"]
            checked += 1
    assert checked >= 4 * 3  # train, inference, monitoring on each stand, and the acceptance checks


def test_the_arch_matches_the_platform_environments_are_built_for() -> None:
    from mlops_module.building.artifacts import TARGET_PLATFORM
    from mlops_module.building.stand_manifest import node_arch

    assert TARGET_PLATFORM.startswith("x86_64-") and node_arch() == "amd64"
    assert node_arch("aarch64-manylinux_2_28") == "arm64"


def test_a_stand_may_change_the_mode_its_defaults_give(tmp_path: Path) -> None:
    """Defaults with keys from a Secret, prom with its service account's role: prom's Secret keys go unused."""
    stands = stands_file(tmp_path, MODES["secret"]["stands"], {"prom": {"storage": {"credentials": {"mode": "web_identity"}}}})
    parsed, _ = manifests(EXAMPLE, stands, "prom")
    spec = parsed[names.manifest_file("churn-classifier", "prom", "train")]["spec"]
    assert spec["sparkConf"][names.S3A_CREDENTIALS_PROVIDER] == MODES["web_identity"]["conf"][names.S3A_CREDENTIALS_PROVIDER]
    assert [v["name"] for v in spec["driver"]["env"]] == ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]
    assert "env" not in spec["executor"]


def test_mlflow_token_event_logs_and_no_restricted_profile(tmp_path: Path) -> None:
    stands = stands_file(tmp_path, {
        "mlflow": {"credentials": {"secret": "mlflow-token", "token_key": "token"}},
        "spark": {"event_log": {"enabled": True, "dir": "s3://spark-history/events/"}},
        "kubernetes": {"security": {"restricted": False}},
    }, {"prom": {"kubernetes": {"security": {"restricted": True, "run_as_user": 1001, "run_as_group": 0}}}})
    parsed, _ = manifests(EXAMPLE, stands, "mdp")
    spec = parsed[names.manifest_file("churn-classifier", "mdp", "train")]["spec"]
    assert spec["driver"]["env"] == [secret_env("MLFLOW_TRACKING_TOKEN", "mlflow-token", "token")]
    assert "env" not in spec["executor"]  # MLflow credentials reach the driver only
    assert spec["sparkConf"][names.EVENT_LOG_ENABLED] == "true"
    assert spec["sparkConf"][names.EVENT_LOG_DIR] == "s3a://spark-history/events"
    assert not {"podSecurityContext", "securityContext"} & (set(spec["driver"]) | set(spec["executor"]))
    assert "imagePullSecrets" not in spec
    assert crd_errors(parsed[names.manifest_file("churn-classifier", "mdp", "train")]) == []
    prom, _ = manifests(EXAMPLE, stands, "prom")
    driver = prom[names.manifest_file("churn-classifier", "prom", "train")]["spec"]["driver"]
    assert driver["podSecurityContext"] == {**RESTRICTED_POD, "runAsUser": 1001, "runAsGroup": 0}


def test_a_model_may_still_choose_its_event_logs(tmp_path: Path) -> None:
    stands = stands_file(tmp_path, {"spark": {"event_log": {"enabled": True, "dir": "s3://spark-history/events"}}})
    config = write_repo(tmp_path / "repo", {**MINIMAL, "spark": {"conf": {"spark.eventLog.enabled": "false"}}})
    parsed, _ = manifests(config, stands, "mdp")
    conf = parsed[names.manifest_file("churn", "mdp", "train")]["spec"]["sparkConf"]
    assert conf[names.EVENT_LOG_ENABLED] == "false" and conf[names.EVENT_LOG_DIR] == "s3a://spark-history/events"


def test_file_storage_and_local_stands_get_no_s3_or_pod_settings(tmp_path: Path) -> None:
    """The local stand keeps the manifest it had: nothing for S3, no pod fields, the same event-log setting."""
    stands = stands_file(tmp_path, MODES["secret"]["stands"])
    parsed, files = manifests(EXAMPLE, stands, "local")
    for manifest in parsed.values():
        s = manifest["spec"]
        assert {k: v for k, v in s["sparkConf"].items() if k.startswith(("spark.hadoop.", "spark.eventLog."))} == {
            names.EVENT_LOG_ENABLED: "false"}
        assert not {"nodeSelector", "imagePullSecrets"} & set(s)
        for role in ("driver", "executor"):
            assert not {"env", "podSecurityContext", "securityContext"} & set(s[role])
        assert crd_errors(manifest) == []
    train = _spark_call(files[names.dag_file("churn-classifier", "local", "train")], "LocalSparkSubmitOperator")
    assert "retries" not in train  # a local failure shows at once (the DAG's retries: 0)


def test_kubernetes_stand_on_file_storage_gets_no_s3_settings(tmp_path: Path) -> None:
    stands = stands_file(tmp_path, MODES["secret"]["stands"], {"mdp": {"storage": {"uri": "file:///mnt/models"}}})
    parsed, _ = manifests(EXAMPLE, stands, "mdp")
    spec = parsed[names.manifest_file("churn-classifier", "mdp", "train")]["spec"]
    assert not [k for k in spec["sparkConf"] if k.startswith("spark.hadoop.")]
    assert spec["driver"]["env"] == MODES["secret"]["driver_env"][2:]  # MLflow's only
    assert "env" not in spec["executor"]


def _spark_call(source: str, operator: str, task_id: str | None = None) -> dict[str, Any]:
    """The keyword arguments of the DAG file's ``operator(...)`` call (of ``task_id``), as Python source."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == operator:
            kwargs = {kw.arg: ast.unparse(kw.value) for kw in node.keywords if kw.arg}
            if task_id is None or kwargs["task_id"] == repr(task_id):
                return kwargs
    raise AssertionError(f"no {operator} call for {task_id}")


def test_retries_per_job_kind_and_delete_on_termination(tmp_path: Path) -> None:
    stands = stands_file(tmp_path, {"airflow": {"retries": {"train": {"retries": 3, "retry_delay": "10m"},
                                                             "monitoring": {"retries": 0}}}},
                         {"int": {"kubernetes": {"delete_on_termination": True}}})
    _, files = manifests(EXAMPLE, stands, "mdp")
    op = "SparkKubernetesOperator"
    train = _spark_call(files[names.dag_file("churn-classifier", "mdp", "train")], op, "train")
    assert (train["retries"], train["retry_delay"]) == ("3", "600")
    assert train["delete_on_termination"] == "False"  # the default: kept until its timeToLiveSeconds
    infer = _spark_call(files[names.dag_file("churn-classifier", "mdp", "inference")], op)
    assert (infer["retries"], infer["retry_delay"]) == ("2", "300")  # the default
    monitor = _spark_call(files[names.dag_file("churn-classifier", "mdp", "monitoring")], op)
    assert "retries" not in monitor
    # the gate, promote and decide tasks keep the DAG's retries: 0
    assert "default_args={'owner': 'risk-team', 'retries': 0}" in files[names.dag_file("churn-classifier", "mdp", "train")]
    _, files = manifests(EXAMPLE, stands, "int")
    accept = files[names.dag_file("churn-classifier", "int", names.ACCEPT)]
    assert _spark_call(accept, op, "evaluate")["retries"] == "1"
    assert _spark_call(accept, op, "smoke")["delete_on_termination"] == "True"


@pytest.mark.slow
def test_rendered_dags_carry_the_retries_airflow_sees(tmp_path: Path) -> None:
    """Airflow's own parse of the DAG file: the Spark task retries, the gate and promote don't."""
    import datetime

    from helpers import dagbag

    from mlops_module.building.render import write_bundle

    (cfg,) = check(EXAMPLE, load_stands(stands_file(tmp_path)), "mdp")
    out = write_bundle(render_bundle(cfg), tmp_path / "dags" / "mdp")
    bag = dagbag(out)
    assert bag.import_errors == {}
    dag = bag.dags[names.dag_id(cfg.name, "mdp", "train")]
    assert dag.get_task("train").retries == 2
    assert dag.get_task("train").retry_delay == datetime.timedelta(minutes=5)
    assert dag.get_task("train").delete_on_termination is False
    assert dag.get_task(names.TASK_GATE).retries == 0 and dag.get_task(names.TASK_PROMOTE).retries == 0


BAD_STANDS = [
    ({"storage": {"credentials": {"mode": "secret", "secret": "S3_Keys"}}},
     "storage.credentials.secret", "is not a Kubernetes object name (DNS-1123 subdomain)"),
    ({"storage": {"credentials": {"mode": "secret", "secret": "s3", "access_key_id_key": "key id"}}},
     "storage.credentials.access_key_id_key", "is not a Secret's data key"),
    ({"storage": {"credentials": {"mode": "secret"}}},
     "storage.credentials", "mode secret needs `secret`"),
    ({"storage": {"credentials": {"secret": "s3"}}},
     "storage.credentials.secret", "secret needs mode: secret (the default is instance_profile)"),
    ({"storage": {"credentials": {"mode": "keys"}}},
     "storage.credentials.mode", "is not one of: instance_profile, web_identity, secret"),
    ({"mlflow": {"credentials": {"secret": "mlflow", "username_key": "user"}}},
     "mlflow.credentials", "give token_key, or both username_key and password_key"),
    ({"mlflow": {"credentials": {"secret": "mlflow", "token_key": "t", "username_key": "u", "password_key": "p"}}},
     "mlflow.credentials", "not both"),
    ({"mlflow": {"credentials": {"secret": "mlflow", "token_key": "{{ var.value.token }}"}}},
     "mlflow.credentials.token_key", "is not a Secret's data key"),
    ({"mlflow": {"credentials": {"secret": "mlflow\n---\nkind: Secret", "token_key": "token"}}},
     "mlflow.credentials.secret", "is not a Kubernetes object name"),
    ({"mlflow": {"credentials": {"token_key": "t"}}},
     "mlflow.credentials", "needs `secret`"),
    ({"kubernetes": {"image_pull_secrets": ["regcred", "Reg Cred"]}},
     "kubernetes.image_pull_secrets[1]", "is not a Kubernetes object name"),
    ({"kubernetes": {"node_selector": {"kubernetes.io/arch": "arm64"}}},
     'kubernetes.node_selector["kubernetes.io/arch"]', "is set by the toolkit"),
    ({"kubernetes": {"node_selector": {"pool!": "spark"}}},
     "kubernetes.node_selector", "is not a Kubernetes label key"),
    ({"kubernetes": {"node_selector": {"pool": "spark pool"}}},
     "kubernetes.node_selector.pool", "is not a Kubernetes label value"),
    ({"kubernetes": {"security": {"run_as_user": 0}}},
     "kubernetes.security.run_as_user", "0"),
    ({"storage": {"endpoint_url": MINIO}, "spark": {"conf": {"spark.hadoop.fs.s3a.endpoint": "http://x:9000"}}},
     'spark.conf["spark.hadoop.fs.s3a.endpoint"]', "is also set from storage.endpoint_url; keep one of the two"),
    ({"spark": {"conf": {"spark.eventLog.enabled": "true"}}},  # the built-in defaults have spark.event_log
     'spark.conf["spark.eventLog.enabled"]', "is also set from spark.event_log.enabled"),
    ({"spark": {"event_log": {"enabled": True}}},
     "spark.event_log", "enabled needs `dir`"),
    ({"airflow": {"retries": {"train": {"retry_delay": "5 minutes"}}}},
     "airflow.retries.train.retry_delay", "is not a duration like 30m"),
    ({"airflow": {"retries": {"gate": {"retries": 1}}}},
     "airflow.retries.gate", "unknown key 'gate'"),
]


@pytest.mark.parametrize(("values", "where", "message"), BAD_STANDS, ids=[b[1] for b in BAD_STANDS])
def test_invalid_values_are_refused_with_a_located_message(tmp_path: Path, values: dict[str, Any], where: str,
                                                            message: str) -> None:
    path = stands_file(tmp_path, per_stand={"mdp": values})
    with pytest.raises(ConfigError) as info:
        load_stands(path)
    found = [p for p in info.value.problems if p.path.startswith(f"stands.mdp.{where}")]
    assert found and message in found[0].message, info.value.problems
    assert found[0].line > 1  # a position in the file a platform engineer can go to


OLDER_STANDS = """\
order: [dev]
defaults:
  kubernetes: {namespace: ml-dev, service_account: spark, conn_id: k8s, startup_timeout_seconds: 300}
  spark: {image: "spark:3.5.5", version: 3.5.5, python_versions: ["3.11"], time_to_live_seconds: 60,
          conf: {spark.eventLog.enabled: "true", spark.eventLog.dir: "s3a://history/events",
                 spark.hadoop.fs.s3a.endpoint: "http://minio:9000"}}
  deploy: {trigger: none, approval: auto}
stands:
  dev:
    backend: kubernetes
    airflow: {dags: /opt/airflow/dags}
    storage: {uri: s3://dev-bucket/models}
    mlflow: {tracking_uri: "http://mlflow:5000"}
"""


def test_a_stands_file_written_before_these_keys_keeps_its_spark_conf(tmp_path: Path) -> None:
    """Spark properties a stand set in spark.conf before the structured keys existed still apply, and win."""
    path = tmp_path / "stands.yaml"
    path.write_text(OLDER_STANDS)
    config = write_repo(tmp_path / "repo", MINIMAL)
    parsed, _ = manifests(config, path, "dev")
    conf = parsed[names.manifest_file("churn", "dev", "train")]["spec"]["sparkConf"]
    assert {k: v for k, v in conf.items() if k.startswith(("spark.hadoop.", "spark.eventLog."))} == {
        names.EVENT_LOG_ENABLED: "true", names.EVENT_LOG_DIR: "s3a://history/events",
        names.S3A_ENDPOINT: "http://minio:9000", names.S3A_PATH_STYLE: "false"}


def test_a_model_may_not_set_what_the_stand_owns(tmp_path: Path) -> None:
    config = write_repo(tmp_path / "repo", {**MINIMAL, "spark": {"conf": {names.S3A_ENDPOINT: "http://x:9000"}}})
    with pytest.raises(ConfigError, match=r"storage\.endpoint_url sets it"):
        check(config, load_stands(), "mdp")


def test_stands_docs_name_every_key() -> None:
    """docs/stands.md has a row for every key of a stand (the stands file has no generated reference)."""
    doc = (ROOT / "docs" / "stands.md").read_text()

    def keys(schema: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for key, sub in schema.get("properties", {}).items():
            if key in names.SPARK_JOB_KINDS:
                continue  # airflow.retries.<kind>: one row for them all
            out.append(prefix + key)
            out += keys(sub, f"{prefix}{key}.")
        return out

    missing = [k for k in keys(STAND_SCHEMA) if f"`{k}`" not in doc]
    assert missing == []
