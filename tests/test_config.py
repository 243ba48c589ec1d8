"""Validation: every class of bad input is reported with its dotted path and its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import MINIMAL, write_repo

from mlops_module.errors import ConfigError, UsageError
from mlops_module.spec.config import check
from mlops_module.spec.stands import load_stands

LINE_FORMAT = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<message>.+)$")


def problems_of(tmp_path: Path, text: str, stand: str | None = None) -> list[str]:
    config = write_repo(tmp_path / "repo", text)
    with pytest.raises(ConfigError) as info:
        check(config, load_stands(), stand)
    lines = [str(p) for p in info.value.problems]
    for line in lines:
        assert LINE_FORMAT.match(line), line
    return [line.split("model.yaml:", 1)[1] for line in lines]


BASE = """\
model: {name: churn, owner: risk-team}
python: {version: "3.11"}
train: {script: src/train.py}
inference: {script: src/inference.py}
"""

CASES = [
    # (extra YAML appended at line 5, expected "LINE:COL: path: message" fragment)
    ("monitoring:\n  shedule: '@daily'\n",
     "6:3: monitoring.shedule: unknown key 'shedule' (did you mean 'schedule'?)"),
    ("spark:\n  driver: {memroy: 2g}\n",
     "6:12: spark.driver.memroy: unknown key 'memroy' (did you mean 'memory'?)"),
    ("spark:\n  driver: {memory: 4Gi}\n",
     "6:20: spark.driver.memory: '4Gi' is not a Spark memory size"),
    ("spark:\n  executor: {memory: 512}\n",
     "6:22: spark.executor.memory: expected a string, got the whole number 512"),
    ("spark:\n  executor: {core_limit: 2 cores}\n",
     "6:26: spark.executor.core_limit: '2 cores' is not a Kubernetes CPU quantity"),
    ("monitoring:\n  retrain: {cooldown: 3 days}\n",
     "6:23: monitoring.retrain.cooldown: '3 days' is not a duration like 30m, 12h, 3d or 1w"),
    ("monitoring:\n  schedule: '0 3 * *'\n",
     "6:13: monitoring.schedule: '0 3 * *' is not a valid cron expression"),
    ("monitoring:\n  schedule: '61 * * * *'\n",
     "6:13: monitoring.schedule: '61 * * * *' is not a valid cron expression"),
    ("monitoring:\n  schedule: '@dayly'\n",
     "6:13: monitoring.schedule: unknown preset '@dayly' (did you mean '@daily'?)"),
    ("spark:\n  conf: {spark.master: 'k8s://x'}\n",
     '6:24: spark.conf["spark.master"]: spark.master may not be set here'),
    ("spark:\n  conf: {spark.kubernetes.container.image: x}\n",
     '6:44: spark.conf["spark.kubernetes.container.image"]: spark.kubernetes.container.image may not be set here: use spark.image'),
    ("spark:\n  conf: {spark.kubernetes.authenticate.driver.oauthToken: t}\n",
     '6:59: spark.conf["spark.kubernetes.authenticate.driver.oauthToken"]: spark.kubernetes.authenticate.driver.oauthToken may not be set here'),
    ("spark:\n  conf: {sql.shuffle: '1'}\n",
     '6:10: spark.conf["sql.shuffle"]: key \'sql.shuffle\' is not a Spark property name'),
    ("quality_gate:\n  metrics: [{name: auc}]\n",
     "6:13: quality_gate.metrics[0]: give at least one of 'min', 'max', 'min_improvement'"),
    ("monitoring:\n  performance: {metric: rmse}\n",
     "6:16: monitoring.performance: give exactly one of 'min', 'max'"),
    ("monitoring:\n  retrain: {on: [drift, performance]}\n",
     "6:17: monitoring.retrain.on: retraining on 'performance' needs monitoring.performance"),
    ("stands:\n  prd: {train: {schedule: null}}\n",
     "6:3: stands.prd: unknown stand 'prd' (did you mean 'prom'?)"),
    ("stands:\n  mdp: {train: {schedul: '@daily'}}\n",
     "6:17: stands.mdp.train.schedul: unknown key 'schedul' (did you mean 'schedule'?)"),
    ("stands:\n  mdp: {train: {schedule: '0 0 * *'}}\n",
     "6:27: stands.mdp.train.schedule: '0 0 * *' is not a valid cron expression"),
    ("stands:\n  int: {python: {version: '3.12'}}\n",
     "6:9: stands.int.python: 'python' can't be set per stand: every stand runs the same environment archive"),
    ("stands:\n  int: {model: {owner: other}}\n",
     "6:9: stands.int.model: 'model' can't be set per stand"),
    ("monitoring:\n  schedule: '0 0 31 2 *'\n",
     "6:13: monitoring.schedule: '0 0 31 2 *' never fires (no such date)"),
    ("spark:\n  driver: {cores: 4, core_limit: 1500m}\n",
     "6:34: spark.driver.core_limit: '1500m' is below the 4 core(s) requested"),
    ("spark:\n  executor: {instances: 3.0}\n",
     "6:25: spark.executor.instances: expected a whole number, got the number 3.0"),
    ("spark:\n  executor: {cores: 4294967296}\n",
     "6:21: spark.executor.cores: 4294967296 is greater than the maximum of 2147483647"),
    ("quality_gate:\n  metrics: [{name: auc, min: .nan}]\n",
     "6:30: quality_gate.metrics[0].min: expected a number, got the number nan"),
    ("monitoring:\n  drift: {threshold: .inf}\n",
     "6:22: monitoring.drift.threshold: expected a number, got the number inf"),
    ("model_extra: {script: src/train.py}\n", "5:1: model_extra: unknown key 'model_extra'"),
    ("extra: 1\n", "5:1: extra: unknown key 'extra'; expected one of: acceptance, inference, model, "),
]


@pytest.mark.parametrize(("extra", "expected"), CASES, ids=[c[1].split(": ")[1] for c in CASES])
def test_bad_input_is_located(tmp_path: Path, extra: str, expected: str) -> None:
    found = problems_of(tmp_path, BASE + extra)
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("name: churn", "name: Churn_Model", "1:15: model.name: 'Churn_Model' is not a DNS-1035 label"),
        ("name: churn", "name: " + "a" * 41, "1:15: model.name: '" + "a" * 41 + "' is 41 characters long; the limit is 40"),
        ("owner: risk-team", "owner: ' '", "1:29: model.owner: ' ' is not a non-empty text"),
        ('version: "3.11"', "version: 3.10",
         '2:19: python.version: expected a string, got the number 3.1; quote it: "3.10" (unquoted, 3.10 reads as the number 3.1)'),
        ('version: "3.11"', 'version: "3.8"', "2:19: python.version: Python 3.8 is not supported on stand"),
        ("src/train.py", "/etc/train.py", "3:17: train.script: '/etc/train.py' is not a relative path"),
        ('version: "3.11"', 'version: "3.11", keep: [../etc]',
         "2:34: python.keep[0]: '../etc' is not a path or glob below site-packages"),
        ('version: "3.11"', 'version: "3.11", keep: [numpy/tests, numpy/tests]', "2:33: python.keep: items must be unique"),
        ("src/train.py", "../train.py", "3:17: train.script: '../train.py' is not a relative path"),
        ("src/train.py", "src/missing.py", "3:17: train.script: file not found: src/missing.py"),
        ("inference: {script: src/inference.py}\n", "", "1:1: (root): missing required key 'inference'"),
        ("train: {script: src/train.py}", "train: {schedule: '@daily'}", "3:1: train: missing required key 'script'"),
    ],
)
def test_bad_values_in_base(tmp_path: Path, replace: str, by: str, expected: str) -> None:
    assert replace in BASE
    found = problems_of(tmp_path, BASE.replace(replace, by))
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Schema problems, per-stand checks and unknown stands together, each once."""
    text = (BASE.replace("name: churn", "name: Churn").replace('"3.11"', '"3.9"')
            .replace("src/inference.py", "src/nope.py")
            + "monitoring: {shedule: x, schedule: '61 * * * *'}\nstands: {prd: {}}\n")
    found = problems_of(tmp_path, text)
    assert [p.split(": ")[1] for p in found] == [
        "model.name", "python.version", "inference.script", "monitoring.shedule", "monitoring.schedule", "stands.prd"]
    assert "on stands 'local', 'mdp', 'int', 'lt', 'prom'" in found[1]


def test_numbers_in_args_and_spark_conf_keep_their_spelling(tmp_path: Path) -> None:
    text = BASE.replace("train: {script: src/train.py}",
                        "train: {script: src/train.py, args: [--python, 3.10, --lr, 1e-3, --mask, 0x10, 7]}")
    text += "spark:\n  conf: {spark.a: 1.50, spark.b: 1e-7, spark.c: 64, spark.d: false}\n"
    text += "stands:\n  prom: {spark: {conf: {spark.a: 2.50}}}\n"
    by_stand = {c.stand.name: c for c in check(write_repo(tmp_path / "repo", text), load_stands())}
    assert by_stand["mdp"].train.args == ("--python", "3.10", "--lr", "1e-3", "--mask", "0x10", "7")
    conf = dict(by_stand["mdp"].spark.conf)
    assert (conf["spark.a"], conf["spark.b"], conf["spark.c"], conf["spark.d"]) == ("1.50", "1e-7", "64", "false")
    assert dict(by_stand["prom"].spark.conf)["spark.a"] == "2.50"


def test_merge_keys_report_where_a_value_was_written(tmp_path: Path) -> None:
    text = ("model: {name: churn, owner: risk-team}\npython: {version: \"3.11\"}\n"
            "inference: &b\n  script: src/inference.py\n  schedule: \"@daily\"\n"
            "train:\n  <<: *b\n  script: src/missing.py\n  schedule: \"99 * * * *\"\n")
    found = problems_of(tmp_path, text)
    assert [p.split(": ")[0] + ": " + p.split(": ")[1] for p in found] == [
        "8:11: train.script", "9:13: train.schedule"]


def test_model_name_too_long_for_a_long_stand_name(tmp_path: Path) -> None:
    stands_file = tmp_path / "stands.yaml"
    builtin = (Path(__file__).resolve().parents[1] / "mlops_module" / "data" / "stands.yaml").read_text()
    stands_file.write_text(builtin.replace("order: [mdp, int, lt, prom]", "order: [mdp, int, lt, prom, staging]")
                           + "  staging:\n    backend: local\n    airflow: {dags: /tmp/x}\n"
                           "    storage: {uri: 'file:///tmp/s'}\n    mlflow: {tracking_uri: 'http://127.0.0.1:1'}\n"
                           "    kubernetes: {namespace: default, service_account: default}\n")
    config = write_repo(tmp_path / "repo", BASE.replace("name: churn", "name: " + "a" * 40))
    stands = load_stands(stands_file)
    check(config, stands, "prom")  # 40 + "-prom-monitor" = 53: fits
    with pytest.raises(ConfigError) as info:
        check(config, stands, "staging")
    (problem,) = info.value.problems
    assert (problem.line, problem.path) == (1, "model.name")
    assert "would be named" in problem.message and "at most 38 characters" in problem.message


def test_unknown_stand_on_the_command_line_is_a_usage_error(tmp_path: Path) -> None:
    config = write_repo(tmp_path / "repo", MINIMAL)
    with pytest.raises(UsageError, match="unknown stand 'prd' \\(did you mean 'prom'\\?\\)"):
        check(config, load_stands(), "prd")


def test_merged_view_and_defaults(tmp_path: Path) -> None:
    text = BASE + (
        "spark:\n  executor: {instances: 2, memory: 4g}\n"
        "stands:\n  prom: {spark: {executor: {instances: 8}}, train: {schedule: '@weekly'}}\n"
    )
    config = write_repo(tmp_path / "repo", text)
    by_stand = {c.stand.name: c for c in check(config, load_stands())}
    assert by_stand["mdp"].spark.executor.instances == 2
    assert by_stand["prom"].spark.executor.instances == 8
    assert by_stand["prom"].spark.executor.memory == "4g"  # deep merge keeps siblings
    assert by_stand["prom"].train.schedule == "@weekly"
    assert by_stand["mdp"].train.schedule is None  # schema default
    assert by_stand["mdp"].inference.schedule == "@daily"
    assert by_stand["mdp"].spark.driver.memory == "1g"
    assert by_stand["mdp"].spark.image == "registry.mdp.example.com/mlops/spark-py:3.5.5"
    assert by_stand["local"].spark.image == "mlops/spark-py:3.5.5"
    assert by_stand["mdp"].retrain.cooldown_seconds == 86400
    assert by_stand["mdp"].config_hash != by_stand["prom"].config_hash


def test_spark_conf_values_become_strings(tmp_path: Path) -> None:
    text = BASE + "spark:\n  conf: {spark.a: 64, spark.b: true, spark.c: 0.5}\n"
    (cfg,) = check(write_repo(tmp_path / "repo", text), load_stands(), "mdp")
    conf = dict(cfg.spark.conf)
    assert (conf["spark.a"], conf["spark.b"], conf["spark.c"]) == ("64", "true", "0.5")


def test_a_performance_metric_the_built_in_job_cannot_measure(tmp_path: Path) -> None:
    config = {**MINIMAL, "monitoring": {"performance": {"metric": "f1", "min": 0.5}}}
    with pytest.raises(ConfigError, match=r"monitoring\.performance\.metric: the built-in monitoring job measures "
                                          r"roc_auc, accuracy, log_loss, rmse, mae; for 'f1' set monitoring\.script"):
        check(write_repo(tmp_path, config), load_stands(), "mdp")
    config["monitoring"] = {"script": "src/monitoring.py", "performance": {"metric": "f1", "min": 0.5}}
    (cfg,) = check(write_repo(tmp_path, config), load_stands(), "mdp")  # a job of one's own measures what it likes
    assert cfg.performance is not None and cfg.performance.metric == "f1"


def test_a_gate_metric_the_built_in_evaluate_job_cannot_measure(tmp_path: Path) -> None:
    """Every stand a version is pushed to evaluates it with the built-in job unless the model has its own script:
    a metric only the training job logs would pass on mdp and fail every push."""
    config = {**MINIMAL, "quality_gate": {"metrics": [{"name": "f1", "min": 0.5}]}}
    path = write_repo(tmp_path, config)
    (cfg,) = check(path, load_stands(), "mdp")  # mdp trains: the training job's metrics decide there
    assert cfg.quality_gate.metrics[0].name == "f1"
    with pytest.raises(ConfigError, match=r"quality_gate\.metrics\[0\]\.name: stand 'int'.*built-in evaluate "
                                          r"job.*for 'f1' set quality_gate\.script"):
        check(path, load_stands(), "int")
    config["quality_gate"]["script"] = "src/quality.py"
    (cfg,) = check(write_repo(tmp_path, config), load_stands(), "int")
    assert cfg.quality_gate.script == "src/quality.py"


def test_python_keep_reaches_the_environment_key(tmp_path: Path) -> None:
    """What the archive keeps is part of what determines it: another keep list is another archive."""
    from mlops_module.building.artifacts import env_spec

    plain = check(write_repo(tmp_path / "a", BASE), load_stands(), "mdp")[0]
    kept = check(write_repo(tmp_path / "b", BASE.replace('"3.11"', '"3.11", keep: [numpy/_core/include, "*/tests"]')),
                 load_stands(), "mdp")[0]
    assert plain.keep == () and kept.keep == ("numpy/_core/include", "*/tests")
    assert env_spec(kept).keep == kept.keep and env_spec(kept).key != env_spec(plain).key
