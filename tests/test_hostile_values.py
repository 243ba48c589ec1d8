"""Config values are data: whatever they hold, they can't change a DAG file's or manifest's structure,
run code, or be evaluated by Jinja (ours at render time, Airflow's at run time)."""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import MINIMAL, airflow_rendered_manifest, dagbag, render, resolve, write_repo

from mlops_module import names
from mlops_module.building.render import render_bundle
from mlops_module.errors import ConfigError

CANARY = "/tmp/mlops-hostile-canary"

HOSTILE = [
    "it's",
    'say "hi"',
    "line1\nline2",
    "trailing newline\n",
    "'''",
    '"""',
    '"""\nimport os\nos.system("touch ' + CANARY + '")\n"""',
    "')\nimport os; os.system('touch " + CANARY + "')\n#",
    "__import__('os').system('touch " + CANARY + "')",
    "{{ 7 * 7 }}",
    "{{ conn.x.password }}",
    "{{ var.value.secret }}{{",
    "{% for x in range(3) %}loop{% endfor %}",
    "{%- raw %}{% endraw -%}",
    "{# comment #}",
    "{{{ triple }}}",
    "$(touch " + CANARY + ")",
    "`touch " + CANARY + "`",
    "${HOME}",
    "\n---\napiVersion: v1\nkind: Secret\n",
    "---",
    "...",
    "key: value",
    "- item",
    "&anchor *alias",
    "!!python/object/apply:os.system ['touch " + CANARY + "']",
    "#not a comment",
    "back\\slash \\n \\\"",
    "tab\there",
    "nel\x85ls\u2028ps\u2029bom\ufeff",
    "emoji 😀 ünïcödé",
    "",
    " leading and trailing spaces ",
]


def _with(field: str, value: str) -> dict[str, Any]:
    config = copy.deepcopy(MINIMAL)
    config["model"]["description"] = "baseline"
    config["train"]["args"] = ["--x", "1"]
    config["spark"] = {"conf": {"spark.custom.value": "plain"}}
    if field == "description":
        config["model"]["description"] = value
    elif field == "args":
        config["train"]["args"] = ["--x", value]
    elif field == "conf":
        config["spark"]["conf"]["spark.custom.value"] = value
    elif field == "owner":
        config["model"]["owner"] = value
    return config


def _shape(tree: ast.AST) -> str:
    """The AST with every string constant blanked: equal shapes mean no value changed the code."""

    class Blank(ast.NodeTransformer):
        def visit_Constant(self, node: ast.Constant) -> ast.Constant:
            return ast.Constant("") if isinstance(node.value, str) else node

    return ast.dump(Blank().visit(tree))


def _keys(node: Any, prefix: str = "") -> set[str]:
    if isinstance(node, dict):
        out = set()
        for key, value in node.items():
            out |= {f"{prefix}/{key}"} | _keys(value, f"{prefix}/{key}")
        return out
    if isinstance(node, list):
        return {f"{prefix}[{len(node)}]"} | set().union(*(_keys(v, f"{prefix}[]") for v in node)) if node else set()
    return set()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("baseline")
    return render_bundle(resolve(write_repo(root, _with("none", "")), "mdp")).files


@pytest.mark.parametrize("field", ["description", "args", "conf", "owner"])
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_value_keeps_structure(tmp_path: Path, baseline: dict[str, str], field: str, value: str) -> None:
    config = write_repo(tmp_path, _with(field, value))
    if field == "owner" and not value.strip():  # an owner is any text, but some text
        with pytest.raises(ConfigError, match=r"model.owner: .* is not a non-empty text"):
            resolve(config, "mdp")
        return
    files = render_bundle(resolve(config, "mdp")).files
    for rel, text in files.items():
        if rel.endswith(".py"):
            assert _shape(ast.parse(text)) == _shape(ast.parse(baseline[rel])), rel
        elif rel.endswith(".yaml"):
            docs = list(yaml.safe_load_all(text))
            assert len(docs) == 1
            assert _keys(docs[0]) == _keys(yaml.safe_load(baseline[rel])), rel
    if field == "owner":  # the annotation holds it as written, once Jinja has rendered its line
        import jinja2

        manifests = [text for rel, text in files.items() if rel.endswith(".yaml") and "SparkApplication" in text]
        assert manifests
        for text in manifests:
            lines = text.splitlines()
            (line,) = [x for x in lines[lines.index("  annotations:"):] if f"\"{names.ANNOTATION_OWNER}\":" in x][:1]
            assert yaml.safe_load(jinja2.Environment().from_string(line).render()) == \
                {names.ANNOTATION_OWNER: value}
    if field == "description":
        tree = ast.parse(files[names.dag_file("churn", "mdp", "train")])
        doc_md = next(kw.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                      for kw in node.keywords if kw.arg == "doc_md")
        assert value.strip() in ast.literal_eval(doc_md)


@pytest.mark.slow
@pytest.mark.parametrize("stand", ["local", "mdp"])
def test_airflow_renders_hostile_values_byte_for_byte(tmp_path: Path, stand: str) -> None:
    """All hostile values at once, loaded by a real DagBag and rendered by Airflow's own Jinja."""
    config = copy.deepcopy(MINIMAL)
    description = "\n".join(HOSTILE)
    config["model"]["description"] = description
    config["train"]["args"] = list(HOSTILE)
    config["inference"]["args"] = list(reversed(HOSTILE))
    config["spark"] = {"conf": {f"spark.hostile.v{i}": v for i, v in enumerate(HOSTILE)}}
    Path(CANARY).unlink(missing_ok=True)
    out = render(write_repo(tmp_path / "repo", config), stand, tmp_path / "dags")
    bag = dagbag(out)
    assert bag.import_errors == {}
    train = bag.dags[names.dag_id("churn", stand, "train")]
    assert description.strip() in train.doc_md
    manifest = airflow_rendered_manifest(train, "train")
    args = manifest["spec"]["arguments"]
    assert args[args.index("--") + 1:] == HOSTILE
    conf = manifest["spec"]["sparkConf"]
    assert [conf[f"spark.hostile.v{i}"] for i in range(len(HOSTILE))] == HOSTILE
    inference = bag.dags[names.dag_id("churn", stand, "inference")]
    args = airflow_rendered_manifest(inference, "infer")["spec"]["arguments"]
    assert args[args.index("--") + 1:] == list(reversed(HOSTILE))
    assert not Path(CANARY).exists(), "a config value ran as code"


RESTRICTED = [
    (("model", "name"), "x'); import os #"),
    (("model", "name"), "a{{b}}"),
    (("spark", "image"), "img\"; rm -rf /"),
    (("spark", "image"), "img:{{ tag }}"),
    (("spark", "version"), "3.5.1\n---"),
    (("spark", "driver"), {"memory": "1g\nkind: Secret"}),
    (("spark", "executor"), {"core_limit": "{{ 1 }}"}),
    (("train", "script"), "src/{{ x }}.py"),
    (("train", "script"), "src/train.py\n"),
    (("train", "schedule"), "{{ macros.ds_add(ds, 1) }}"),
    (("train", "schedule"), "0 3 * * 1\n---"),
    (("python", "requirements"), "req$(id).txt"),
    (("monitoring",), {"retrain": {"cooldown": "1d'"}}),
]


@pytest.mark.parametrize(("path", "value"), RESTRICTED, ids=[".".join(p) + f"-{i}" for i, (p, _) in enumerate(RESTRICTED)])
def test_structural_fields_reject_hostile_values(tmp_path: Path, path: tuple[str, ...], value: Any) -> None:
    """Fields that become names, paths or schedules only take their own syntax; the error names the field."""
    config = copy.deepcopy(MINIMAL)
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(ConfigError) as info:
        resolve(write_repo(tmp_path, config), "mdp")
    assert any(p.path.startswith(".".join(path)) for p in info.value.problems), info.value.problems
