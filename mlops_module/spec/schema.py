"""The JSON Schema of ``model.yaml``: the single source of truth for validation, defaults, docs and editors.

``mlops schema`` prints :func:`config_schema`. Per-stand overrides (``stands.<name>``) use the same
properties with nothing required and no defaults, derived here so the two can never disagree.
Keys starting ``x-`` are annotations for our error messages; validators ignore them.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from mlops_module.names import EVENTS

SCHEMA_ID = "https://mlops-module.dev/schema/model-config.json"

DNS1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
TEXT = r"\S"  # any text with something in it that isn't a space
SCRIPT = r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_][A-Za-z0-9_./-]*\.py$"
REPO_FILE = r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_.][A-Za-z0-9_./-]*$"
SITE_PATTERN = r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_.*?\[][A-Za-z0-9_.*?\[\]!/-]*$"
SPARK_MEMORY = r"^[1-9][0-9]*([kKmMgGtT][bB]?)$"
K8S_CPU = r"^([1-9][0-9]*|[0-9]+\.[0-9]+|[1-9][0-9]*m)$"
DURATION = r"^[1-9][0-9]*[smhdw]$"
DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}  # per DURATION unit
IMAGE = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
SPARK_VERSION = r"^[0-9]+\.[0-9]+\.[0-9]+$"
PYTHON_VERSION = r"^3\.[0-9]+$"
CONF_KEY = r"^spark\.[A-Za-z0-9_.-]+$"
METRIC_NAME = r"^[A-Za-z0-9_.\-/ ]+$"
EMAIL = r"^[^@\s{}]+@[^@\s{}]+\.[^@\s{}]+$"  # an address to send to (no braces: they are no address's)
# Kubernetes names the stands file refers to (apimachinery's validation): Secrets (DNS1123_SUBDOMAIN, above),
# their keys, env vars, labels
SECRET_KEY = r"^[-._A-Za-z0-9]+$"
LABEL_KEY = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
             r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
INT32 = 2**31 - 1
# Sections every stand shares: the model's identity and its environment are what gets promoted.
NOT_PER_STAND = {
    "model": "the model's identity is the same on every stand",
    "python": "every stand runs the same environment archive (promotion copies it as it is)",
}

HINTS = {
    DNS1035: "a DNS-1035 label: lower-case letters, digits and '-', starting with a letter, not ending in '-'",
    DNS1123_LABEL: "a DNS-1123 label (a namespace name): lower-case letters, digits and '-', starting and ending "
                   "alphanumeric",
    LABEL_VALUE: "a Kubernetes label value: letters, digits, '-', '_', '.', starting and ending alphanumeric",
    TEXT: "a non-empty text",
    SCRIPT: "a relative path to a .py file inside the model repository, like src/train.py",
    REPO_FILE: "a relative path inside the model repository, like requirements.txt",
    SITE_PATTERN: "a path or glob below site-packages, like numpy/_core/include or */tests",
    SPARK_MEMORY: "a Spark memory size with a unit, like 512m or 4g (not Kubernetes' 4Gi)",
    K8S_CPU: "a Kubernetes CPU quantity, like 1, 1.5 or 1500m",
    DURATION: "a duration like 30m, 12h, 3d or 1w",
    IMAGE: "an image reference like registry.example.com/spark-py:3.5.1",
    SPARK_VERSION: "a Spark version like 3.5.1",
    PYTHON_VERSION: 'a Python version as a quoted string, like "3.11"',
    CONF_KEY: "a Spark property name starting with 'spark.'",
    METRIC_NAME: "an MLflow metric name: letters, digits, '_', '-', '.', '/', spaces",
    EMAIL: "an e-mail address, like ml-team@example.com",
    DNS1123_SUBDOMAIN: "a Kubernetes object name (DNS-1123 subdomain): lower-case letters, digits, '-' and '.', "
                       "starting and ending alphanumeric",
    SECRET_KEY: "a Secret's data key: letters, digits, '-', '_' and '.'",
    LABEL_KEY: "a Kubernetes label key: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_', "
               "'.', starting and ending alphanumeric",
}


def _str(pattern: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern, "description": description, **extra}


def _obj(properties: dict[str, Any], description: str, required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": properties,
    }
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


_SCHEDULE = {
    "type": ["string", "null"],
    "description": "A 5-field cron expression, an Airflow preset (@hourly, @daily, @weekly, @monthly, "
    "@quarterly, @yearly) or null: run only when triggered. The job receives the data interval.",
}
_ARGS = {
    "type": "array",
    "description": "Extra command-line arguments for the script, after the standard ones.",
    "items": {"type": ["string", "number"]},
    "default": [],
}
_WINDOW = _obj(
    {"days": {"type": "integer", "minimum": 1, "maximum": 36500, "description": "Length of the data window in days."}},
    "Fixed window of data the job reads, ending at the data interval's end.",
    required=("days",),
)


def _resources(executor: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "cores": {"type": "integer", "minimum": 1, "maximum": INT32, "default": 1, "description": "CPU cores."},
        "memory": _str(SPARK_MEMORY, "JVM heap memory.", default="2g" if executor else "1g"),
        "core_limit": _str(K8S_CPU, "Kubernetes CPU limit of the pod; defaults to cores."),
        "memory_overhead": _str(SPARK_MEMORY, "Non-heap memory (Python workers live here)."),
    }
    if executor:
        props["instances"] = {"type": "integer", "minimum": 1, "maximum": INT32, "default": 1,
                              "description": "Executor count."}
    return _obj(props, "Executor resources." if executor else "Driver resources.", default={})


def _job(what: str, script_required: bool, optional: bool = True) -> dict[str, Any]:
    props: dict[str, Any] = {
        "script": _str(SCRIPT, f"The {what} script, relative to the model repository."),
        "args": copy.deepcopy(_ARGS),
        "schedule": copy.deepcopy(_SCHEDULE),
        "data_window": copy.deepcopy(_WINDOW),
    }
    if optional:
        props["enabled"] = {"type": "boolean", "default": True,
                            "description": "false: no DAG for this job on this stand (`mlops deploy` removes it)."}
    return _obj(props, f"The {what} job.", required=("script",) if script_required else ())


def _base_properties() -> dict[str, Any]:
    train = _job("training", True, optional=False)
    train["properties"]["schedule"]["default"] = None
    inference = _job("inference", True)
    inference["properties"]["require_data"] = {
        "type": "boolean", "default": False,
        "description": "true: an inference run whose window scored no rows fails; false: it ends skipped, with the "
                       "reason in the `check_output` task's log."}
    inference["properties"]["schedule"]["default"] = "@daily"
    monitoring = _job("monitoring", False)
    monitoring["description"] = "The monitoring job: data drift and performance decay, and the retraining decision."
    monitoring["properties"]["script"]["description"] = ("The monitoring script, relative to the model repository; "
                                                         "without it the built-in drift job runs.")
    monitoring["properties"]["schedule"]["default"] = "@daily"
    monitoring["properties"]["require_data"] = {
        "type": "boolean", "default": False,
        "description": "true: a run with too few scored rows to decide on (drift.min_rows) or no champion fails; "
                       "false: its decide task ends skipped, with the reason in its log."}
    monitoring["default"] = {}
    monitoring["properties"].update(
        drift=_obj(
            {
                "method": {"enum": ["psi", "ks", "jensenshannon"], "default": "psi",
                           "description": "Per-feature drift measure."},
                "threshold": {"type": "number", "exclusiveMinimum": 0, "default": 0.2,
                              "description": "A feature drifts when its score reaches this."},
                "share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.3,
                          "description": "The dataset drifts when this share of features drift."},
                "features": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True,
                             "description": "Features to watch; empty or absent means all."},
                "min_rows": {"type": "integer", "minimum": 1, "maximum": INT32, "default": 1000,
                             "description": "Fewer rows than this: no decision (insufficient_data)."},
            },
            "Data drift of the inference inputs against the training data.",
            default={},
        ),
        performance=_obj(
            {
                "metric": {"type": "string", "pattern": METRIC_NAME, "description": "Metric to watch."},
                "min": {"type": "number", "description": "Decay when the metric falls below this."},
                "max": {"type": "number", "description": "Decay when the metric rises above this (errors)."},
                "id": {"type": "string", "minLength": 1, "default": "id",
                       "description": "Column joining scored rows with labels/<model>/ in the stand's storage."},
                "label": {"type": "string", "minLength": 1, "default": "label",
                          "description": "Column of the true outcome in the labels data."},
                "score": {"type": "string", "minLength": 1, "default": "prediction",
                          "description": "Column of the model's output in the scored data."},
            },
            "Performance decay, measured when labels are available (they arrive in labels/<model>/ of the "
            "stand's storage, joined to the scored rows on `id`).",
            required=("metric",),
            oneOf=[{"required": ["min"], "not": {"required": ["max"]}},
                   {"required": ["max"], "not": {"required": ["min"]}}],
        ),
        retrain=_obj(
            {
                "on": {"type": "array", "uniqueItems": True, "default": ["drift"],
                       "items": {"enum": ["schedule", "drift", "performance"]},
                       "description": "What may trigger retraining."},
                "cooldown": _str(DURATION, "Minimum time between two triggered retrains.", default="1d"),
            },
            "Automatic retraining.",
            default={},
        ),
    )
    return {
        "model": _obj(
            {
                "name": _str(DNS1035, "Model name; names the DAGs, Spark applications and registry entry.",
                             maxLength=40),
                "owner": _str(TEXT, "Owning team or person, any text (an e-mail address, say): the DAG owner and "
                                    "tag; on Kubernetes a label in a sanitised form and an annotation as written.",
                              maxLength=90),
                "description": {"type": "string", "maxLength": 2000, "default": "",
                                "description": "Shown in Airflow as the DAG documentation."},
            },
            "Who and what.",
            required=("name", "owner"),
        ),
        "python": _obj(
            {
                "version": _str(PYTHON_VERSION, "Python of the model environment; must match the Spark image."),
                "requirements": _str(REPO_FILE, "Requirements or lock file in the model repository.",
                                     default="requirements.txt"),
                "keep": {"type": "array", "uniqueItems": True, "default": [], "maxItems": 100,
                         "items": _str(SITE_PATTERN, "A path or glob below site-packages.", maxLength=200),
                         "description": "What the environment archive keeps although no job runs it: paths or "
                                        "globs below site-packages (`*` crosses `/`; a folder keeps what is in "
                                        "it), like `numpy/_core/include` or `pyarrow/tests`. By default test "
                                        "suites inside packages, headers, sources, type stubs and static "
                                        "libraries are left out, and shared libraries lose their symbol tables; "
                                        "what a pattern names stays as installed (docs/packaging.md)."},
            },
            "The model's Python environment.",
            required=("version",),
        ),
        "spark": _obj(
            {
                "image": _str(IMAGE, "Spark image; defaults to the stand's image."),
                "version": _str(SPARK_VERSION, "Spark version of the image; defaults to the stand's."),
                "driver": _resources(False),
                "executor": _resources(True),
                "conf": {
                    "type": "object",
                    "description": "Extra Spark properties (values become strings).",
                    "propertyNames": {"pattern": CONF_KEY},
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                    "default": {},
                },
            },
            "Spark resources and settings for every job of this model.",
            default={},
        ),
        "train": train,
        "quality_gate": _obj(
            {
                "script": _str(SCRIPT, "Evaluation script (the evaluate job: scores the candidate and the stand's "
                               "champion on the same rows and logs them with runtime.log_evaluation); else the "
                               "built-in evaluation on stands that receive a push, and the metrics logged by train "
                               "on the stand that trains."),
                "args": copy.deepcopy(_ARGS),
                "evaluation": _obj(
                    {
                        "data": _str(REPO_FILE, "Evaluation data of the built-in evaluate job: a parquet path "
                                     "below data/<model>/ in the stand's storage.", default="events.parquet"),
                        "label": {"type": "string", "minLength": 1,
                                  "description": "Column of the true outcome; default monitoring.performance.label, "
                                                 "else `label`."},
                        "time_column": {"type": "string", "minLength": 1, "default": "ts",
                                        "description": "Rows are kept inside the window by this column (when the "
                                                       "data has it)."},
                        "data_window": _obj(
                            {"days": {"type": "integer", "minimum": 1, "maximum": 36500, "default": 30,
                                      "description": "Length of the evaluation window in days."}},
                            "The window evaluated, ending when the acceptance run starts.", default={"days": 30}),
                        "bootstrap": _obj(
                            {
                                "samples": {"type": "integer", "minimum": 50, "maximum": 100000, "default": 1000,
                                            "description": "Paired bootstrap replicates."},
                                "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                                               "default": 0.95, "description": "Of the interval of the paired "
                                                                                "difference candidate - champion."},
                                "seed": {"type": "integer", "minimum": 0, "maximum": INT32, "default": 0,
                                         "description": "Same seed, same interval."},
                            },
                            "How the comparison with the champion is made robust to noise.", default={}),
                    },
                    "The evaluate job: candidate and champion on the same rows of the stand's data.",
                    default={},
                ),
                "metrics": {
                    "type": "array",
                    "default": [],
                    "description": "Thresholds a candidate must meet.",
                    "items": _obj(
                        {
                            "name": _str(METRIC_NAME, "Metric logged by the training run."),
                            "min": {"type": "number", "description": "Lowest acceptable value."},
                            "max": {"type": "number", "description": "Highest acceptable value."},
                            "min_improvement": {"type": "number", "minimum": 0,
                                                "description": "Required gain over the current champion."},
                            "tolerance": {"type": "number", "minimum": 0, "default": 0,
                                          "description": "The champion check fails only when the paired gain's "
                                                         "confidence interval lies wholly below min_improvement "
                                                         "minus this (without an interval: the gain itself)."},
                        },
                        "One metric threshold.",
                        required=("name",),
                        anyOf=[{"required": ["min"]}, {"required": ["max"]}, {"required": ["min_improvement"]}],
                    ),
                },
            },
            "What a trained model must achieve to be promoted.",
            default={},
        ),
        "inference": inference,
        "monitoring": monitoring,
        "acceptance": _obj(
            {
                "smoke": _obj({"data_window": _obj(
                    {"days": {"type": "integer", "minimum": 1, "maximum": 36500, "default": 1,
                              "description": "Days scored."}}, "The smoke run's window.", default={"days": 1})},
                    "The inference script on a small window, with the pushed version.", default={}),
                "load": _obj(
                    {
                        "data_window": _obj(
                            {"days": {"type": "integer", "minimum": 1, "maximum": 36500, "default": 30,
                                      "description": "Days scored."}}, "The load run's volume.",
                            default={"days": 30}),
                        "max_duration_seconds": {"type": "number", "exclusiveMinimum": 0,
                                                 "description": "The load run may take at most this long."},
                        "min_rows_per_second": {"type": "number", "exclusiveMinimum": 0,
                                                "description": "The load run must score at least this fast."},
                    },
                    "The inference script at volume with the stand's resources (on stands whose checks include "
                    "load): its duration and throughput are gate metrics.",
                    default={},
                ),
            },
            "What a stand that receives a pushed version runs on it (which checks: the platform's stands file).",
            default={},
        ),
        "notifications": _obj(
            {
                "email": {"type": "array", "uniqueItems": True, "default": [], "maxItems": 50,
                          "items": _str(EMAIL, "An e-mail address."),
                          "description": "Who else is told, beside the stand's recipients (on stands whose "
                                         "stands file has an smtp channel)."},
                "events": {"type": "array", "uniqueItems": True, "items": {"enum": list(EVENTS)},
                           "description": "Only these events (default: every event the stand sends): "
                                          + ", ".join(EVENTS) + "."},
            },
            "Who is told what happens to this model (the channels are the stand's: docs/stands.md).",
            default={},
        ),
    }


def _strip(schema: Any) -> Any:
    """Same shape, nothing required, no defaults: what a per-stand override may contain."""
    if isinstance(schema, dict):
        return {
            k: _strip(v)
            for k, v in schema.items()
            if k not in ("required", "default", "oneOf", "anyOf")
        }
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema


@cache
def _schema() -> dict[str, Any]:
    base = _base_properties()
    override = _obj(
        {k: v for k, v in _strip(base).items() if k not in NOT_PER_STAND},
        "Values that replace the base config on one stand (deep-merged).",
    )
    override["x-not-per-stand"] = NOT_PER_STAND
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "mlops model config (model.yaml)",
        "description": "One file per model repository; everything else is generated from it.",
        "type": "object",
        "additionalProperties": False,
        "required": ["model", "python", "train", "inference"],
        "properties": {
            **base,
            "stands": {
                "type": "object",
                "description": "Per-stand overrides, keyed by stand name, deep-merged over the rest.",
                "additionalProperties": {"$ref": "#/$defs/stand_override"},
                "default": {},
            },
        },
        "$defs": {"stand_override": override},
    }


SCHEMA_FILE = ".mlops/model-config.schema.json"  # beside model.yaml, for editors (written by mlops init)


def stale_editor_schema(config: Path) -> Path | None:
    """The editor schema beside ``config`` when it is not this version's (the toolkit was upgraded since
    ``mlops init``): completion would offer keys validation rejects, or miss new ones."""
    path = config.resolve().parent / SCHEMA_FILE
    try:
        return None if path.read_text(encoding="utf-8") == config_schema_text() else path
    except OSError:
        return None  # no editor schema here: nothing to keep in step


def config_schema_text() -> str:
    """The schema as ``mlops schema`` prints it and ``mlops init`` writes it for editors."""
    return json.dumps(config_schema(), indent=2) + "\n"


def config_schema() -> dict[str, Any]:
    """A fresh copy of the model config schema."""
    return copy.deepcopy(_schema())


def apply_defaults(schema: dict[str, Any], data: Any) -> Any:
    """Fill ``default`` values from the schema into already-validated data (the schema owns defaults)."""
    if not isinstance(data, dict) or schema.get("type") != "object":
        if isinstance(data, list) and isinstance(schema.get("items"), dict):
            return [apply_defaults(schema["items"], item) for item in data]
        return data
    out = dict(data)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = apply_defaults(sub, out[key])
    return out


def _type_of(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    kind = node.get("type")
    if isinstance(kind, list):
        return " \\| ".join(kind)
    if kind == "array" and isinstance(node.get("items"), dict):
        return f"array of {_type_of(node['items'])}"
    return str(kind or "any")


def _reference_rows(node: dict[str, Any], path: str, required: bool, rows: list[str]) -> None:
    if path:
        default = f"`{json.dumps(node['default'])}`" if "default" in node else ("**required**" if required else "")
        text = " ".join(str(node.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{path}` | {_type_of(node)} | {default} | {text} |")
    needed = set(node.get("required", []))
    for key, sub in node.get("properties", {}).items():
        _reference_rows(sub, f"{path}.{key}" if path else key, key in needed, rows)
    items = node.get("items")
    if isinstance(items, dict) and items.get("properties"):
        for key, sub in items["properties"].items():
            _reference_rows(sub, f"{path}[].{key}", key in set(items.get("required", [])), rows)


def config_reference() -> str:
    """The config reference in Markdown, generated from the schema (docs/config-reference.md is its output)."""
    schema = _schema()
    rows: list[str] = []
    _reference_rows({k: v for k, v in schema.items() if k != "$defs"}, "", False, rows)
    per_stand = ", ".join(f"`{k}`" for k in schema["$defs"]["stand_override"]["x-not-per-stand"])
    return "\n".join([
        "# model.yaml reference",
        "",
        "Generated from the JSON Schema by `mlops schema --markdown > docs/config-reference.md`; a test fails",
        "when the two disagree. Editors complete and check `model.yaml` from the same schema (`mlops init`",
        "writes the modeline). Every key of `stands.<stand>` is one of the keys below, deep-merged over the",
        f"base config on that stand, except {per_stand}; nothing is required there and nothing defaults.",
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
