"""The platform's stands file: defaults, overrides, environment expansion, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import MINIMAL, write_repo

from mlops_module.errors import ConfigError
from mlops_module.spec.config import check
from mlops_module.spec.stands import BUILTIN_STANDS, load_stands


def test_builtin_order_and_chain() -> None:
    stands = load_stands()
    assert stands.order == ("mdp", "int", "lt", "prom")
    assert stands.names == ("local", "mdp", "int", "lt", "prom")
    assert [s.next for s in stands] == [None, "int", "lt", "prom", None]  # local is a sandbox: no push
    assert stands.get("local").backend == "local"
    assert stands.get("prom").startup_timeout_seconds == 900  # stand value over defaults
    assert stands.get("mdp").startup_timeout_seconds == 600
    assert stands.get("lt").approval == "manual"
    assert stands.get("mdp").spark_storage_uri == "s3a://mlops-mdp/models"


def test_mlops_home_expansion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    local = load_stands().get("local")
    assert local.storage_uri == f"file://{tmp_path}/local/storage"
    assert local.dags == f"{tmp_path}/local/airflow/dags"


def _custom(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stands.yaml"
    path.write_text(text)
    return path


CUSTOM = """\
order: [dev, prod]
defaults:
  kubernetes: {conn_id: k8s, startup_timeout_seconds: 300}
  spark: {image: "${SPARK_IMAGE:-spark:3.5.1}", version: 3.5.1, python_versions: ["3.11"], time_to_live_seconds: 60}
  deploy: {trigger: none, approval: auto}
stands:
  dev:
    backend: kubernetes
    airflow: {dags: /opt/airflow/dags}
    kubernetes: {namespace: ml-dev, service_account: spark}
    storage: {uri: s3://dev-bucket/models, endpoint_url: "http://127.0.0.1:9000"}
    mlflow: {tracking_uri: "http://mlflow:5000"}
  prod:
    backend: kubernetes
    airflow: {dags: s3://prod-airflow/dags}
    kubernetes: {namespace: ml-prod, service_account: spark}
    storage: {uri: s3://prod-bucket/models}
    mlflow: {tracking_uri: "http://mlflow-prod:5000"}
"""


def test_custom_stands_file_by_flag_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _custom(tmp_path, CUSTOM)
    stands = load_stands(path)
    assert stands.order == ("dev", "prod")
    assert stands.get("dev").spark_image == "spark:3.5.1"
    monkeypatch.setenv("SPARK_IMAGE", "mirror/spark:3.5.1")
    monkeypatch.setenv("MLOPS_STANDS", str(path))
    assert load_stands().get("prod").spark_image == "mirror/spark:3.5.1"
    config = write_repo(tmp_path / "repo", {**MINIMAL, "stands": {"prod": {"train": {"schedule": "@daily"}}}})
    assert [c.stand.name for c in check(config, load_stands())] == ["dev", "prod"]
    # the built-in stands' names are not known here
    config = write_repo(tmp_path / "repo2", {**MINIMAL, "stands": {"mdp": {}}})
    with pytest.raises(ConfigError, match="unknown stand 'mdp'"):
        check(config, load_stands())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("order: [dev, prod]", "order: [dev, prod, qa]"), "1:20: order[2]: stand 'qa' is listed in order but not defined"),
        (("namespace: ml-dev", "namespace: ML_dev"), "stands.dev.kubernetes.namespace: 'ML_dev' is not a DNS-1035 label"),
        (("backend: kubernetes\n    airflow: {dags: /opt", "backend: k8s\n    airflow: {dags: /opt"),
         "stands.dev.backend: the string 'k8s' is not one of: kubernetes, local"),
        (("  prod:\n    backend: kubernetes\n", "  prod:\n    backend: kubernetes\n    colour: red\n"),
         "stands.prod.colour: unknown key 'colour'"),
        (("${SPARK_IMAGE:-spark:3.5.1}", "${NOT_SET_ANYWHERE}"), "environment variable NOT_SET_ANYWHERE is not set"),
        (("order: [dev, prod]", "order: [dev]"), "stands.prod: stand 'prod' is in neither order nor standalone"),
        (("order: [dev, prod]", "order: [dev, prod]\nstandalone: [prod]"),
         "standalone[0]: stand 'prod' is in both order and standalone"),
        (("order: [dev, prod]", "order: [dev, prod]\nstandalone: [sandbox]"),
         "standalone[0]: stand 'sandbox' is listed in standalone but not defined"),
    ],
)
def test_bad_stands_files(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    assert change[0] in CUSTOM
    path = _custom(tmp_path, CUSTOM.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_stands(path)
    assert any(expected in str(p) for p in info.value.problems), info.value.problems


def test_standalone_stand_is_in_no_chain(tmp_path: Path) -> None:
    stands = load_stands(_custom(tmp_path, CUSTOM.replace("order: [dev, prod]", "order: [prod]\nstandalone: [dev]")))
    assert stands.names == ("dev", "prod")
    assert stands.get("dev").next is None and stands.get("prod").next is None
    config = write_repo(tmp_path / "repo", MINIMAL)
    assert [c.stand.name for c in check(config, stands)] == ["dev", "prod"]
    assert check(config, stands, "dev")[0].stand.name == "dev"


def test_builtin_file_is_shipped_in_the_package() -> None:
    assert BUILTIN_STANDS.is_file()
    assert BUILTIN_STANDS.parent.parent.name == "mlops_module"


def test_acceptance_per_stand_and_the_retrain_policy_the_chain_implies(tmp_path: Path) -> None:
    stands = load_stands()
    assert [(s.name, s.previous, s.receives) for s in stands] == [
        ("local", None, False), ("mdp", None, False), ("int", "mdp", True), ("lt", "int", True),
        ("prom", "lt", True)]
    assert stands.get("mdp").acceptance_checks == ()  # the head trains; nothing is pushed to it
    assert stands.get("int").acceptance_checks == ("evaluate", "smoke")
    assert stands.get("lt").acceptance_checks == ("evaluate", "smoke", "load")
    # LT asks for a person on the way in, so a retrain on LT or after it waits for one too; INT's doesn't
    assert [stands.get(s).retrained for s in ("mdp", "int", "lt", "prom")] == ["direct", "direct", "approval",
                                                                              "approval"]
    assert stands.get("int").api_url == "https://airflow.ml-int.example.com"
    text = BUILTIN_STANDS.read_text().replace("      checks: [evaluate, smoke, load]",
                                              "      checks: [load]\n      retrained: direct")
    custom = tmp_path / "stands.yaml"
    custom.write_text(text)
    lt = load_stands(custom).get("lt")
    assert (lt.acceptance_checks, lt.retrained, load_stands(custom).get("prom").retrained) == (
        ("load",), "direct", "approval")
    empty = tmp_path / "no-checks.yaml"  # (the loader caches by file and environment)
    empty.write_text(BUILTIN_STANDS.read_text().replace("checks: [evaluate, smoke, load]", "checks: []"))
    with pytest.raises(ConfigError, match=r"acceptance\.checks"):
        load_stands(empty)


def test_the_inference_a_promotion_starts_scores_the_latest_complete_interval() -> None:
    import datetime

    from helpers import EXAMPLE_CONFIGS

    from mlops_module import workflows

    (cfg,) = check(EXAMPLE_CONFIGS[0], load_stands(), "prom")
    at = datetime.datetime(2026, 12, 1, 14, 30, tzinfo=datetime.timezone.utc)
    conf = workflows.inference_conf(cfg, at)  # @daily: yesterday, midnight to midnight
    assert (conf["data_interval_start"], conf["data_interval_end"]) == ("2026-11-30T00:00:00+00:00",
                                                                        "2026-12-01T00:00:00+00:00")
    assert "alias on prom moved" in conf["reason"]
