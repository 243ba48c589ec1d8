"""Rendering: a resolved config becomes three DAG files and three SparkApplication manifests.

Values are computed here and handed to layout-only templates already serialised (Python literals
for DAG files, escaped YAML scalars for manifests). Output is deterministic and written atomically.
"""

from __future__ import annotations

import ast
import ctypes
import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from mlops_module import __version__, names
from mlops_module.building.artifacts import BUILTIN_DIR, Artifacts, artifacts
from mlops_module.building.backends import SparkTask, backend_for
from mlops_module.building.literals import airflow_expression, py, yaml_value
from mlops_module.building.stand_manifest import stand_manifest
from mlops_module.errors import RenderError
from mlops_module.notifications import settings as notification_settings
from mlops_module.spec.config import Job, ModelConfig, Resources
from mlops_module.spec.stands import TaskRetries

BUNDLE_INDEX = names.BUNDLE_INDEX
CONFIG_COPY = names.CONFIG_COPY
TEMPLATES_ENV = "MLOPS_TEMPLATES"
_SPARK_VAR = names.SPARK_TASK
_FAILURE_CALLBACK = "spark_failed"  # the function dag_base.py.j2 defines when the stand notifies

# Keys a triggered run may pass in ``conf``; a scheduled run has none and the job gets the data
# interval. Not Airflow Params: those are schema-checked on every parse, which doubles parse time.
CONF_KEYS = (
    ("data_interval_start", "start of the data window (ISO 8601); default: the run's data interval"),
    ("data_interval_end", "end of the data window (ISO 8601); default: the run's data interval"),
    ("reason", "why this run was triggered; recorded with the model it produces"),
)
# What the deploy job passes to an acceptance run (the window ends when it starts: each check's data_window).
ACCEPT_CONF_KEYS = (
    ("version", "the pushed model version, as registered on this stand's registry (required)"),
    ("source_stand", "the stand that pushed it"),
    ("source_version", "its version there"),
    ("reason", "why it was pushed; recorded in the history"),
)


def builtin_templates() -> Path:
    """Templates ship inside the wheel as ``mlops_module/templates``; a source checkout has them at the top."""
    return names.shipped("templates")


def template_env(template_dir: Path | None = None) -> jinja2.Environment:
    """Platform templates (if any) first, the built-in ones behind them, so one file can be overridden."""
    chosen = template_dir or (Path(os.environ[TEMPLATES_ENV]) if os.environ.get(TEMPLATES_ENV) else None)
    loaders: list[jinja2.BaseLoader] = []
    if chosen is not None:
        if not chosen.is_dir():
            raise RenderError(f"template directory not found: {chosen}")
        loaders.append(jinja2.FileSystemLoader(str(chosen)))
    loaders.append(jinja2.FileSystemLoader(str(builtin_templates())))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def job_arguments(cfg: ModelConfig, job: Job) -> list[str]:
    """The standard job arguments, then ``--`` and the script's own; each a manifest-ready YAML scalar.

    The window comes from a trigger's conf when given, else from the run's data interval.
    """

    def conf(key: str) -> str:
        return f"(dag_run.conf or {{}}).get('{key}')"

    def window(edge: str) -> str:
        # dag_run's attributes, not the context's data_interval_* keys: a run triggered without a
        # logical date has neither those keys nor an interval, and then the window ends at run_after.
        interval = f"dag_run.{edge}"
        return airflow_expression(
            f"{conf(edge)} or ({interval}.isoformat() if {interval} else dag_run.run_after.isoformat())"
        )

    args = [
        yaml_value("--job"), yaml_value(job.kind),
        yaml_value("--model"), yaml_value(cfg.name),
        yaml_value("--stand"), yaml_value(cfg.stand.name),
        yaml_value("--run-id"), airflow_expression("run_id"),
        yaml_value("--data-interval-start"), window("data_interval_start"),
        yaml_value("--data-interval-end"), window("data_interval_end"),
    ]
    if job.window_days is not None:
        args += [yaml_value("--data-window-days"), yaml_value(str(job.window_days))]
    if job.kind in names.ACCEPTANCE_JOBS:  # the pushed version (acceptance run); none: what this run trained
        args += [yaml_value("--model-version"), airflow_expression(f"{conf('version')} or ''")]
    args += [
        yaml_value("--reason"), airflow_expression(f"{conf('reason')} or ''"),
        yaml_value("--tracking-uri"), yaml_value(cfg.stand.mlflow_tracking_uri),
        yaml_value("--storage-uri"), yaml_value(cfg.stand.storage_uri),
        yaml_value("--"),
    ]
    return args + [yaml_value(a) for a in (*builtin_arguments(cfg, job), *job.args)]


def builtin_arguments(cfg: ModelConfig, job: Job) -> list[str]:
    """What the built-in monitoring and evaluate jobs need from the config."""
    if job.script is not None:
        return []
    if job.kind == "evaluate":
        ev = cfg.quality_gate.evaluation
        assert ev is not None
        return ["--data", ev.data, "--label-column", ev.label, "--time-column", ev.time_column,
                "--metrics-json", json.dumps([m.name for m in cfg.quality_gate.metrics]),
                "--samples", str(ev.samples), "--confidence", repr(ev.confidence), "--seed", str(ev.seed)]
    if job.kind != "monitoring":
        return []
    args = ["--features-json", json.dumps(list(cfg.drift.features))] if cfg.drift.features else []
    if cfg.performance is not None:
        p = cfg.performance
        args += ["--performance-metric", p.metric, "--id-column", p.id, "--label-column", p.label,
                 "--score-column", p.score]
    return args


def _resources(res: Resources, executor: bool, service_account: str) -> list[tuple[str, str]]:
    fields: list[tuple[str, Any]] = []
    if executor:
        fields.append(("instances", res.instances))
    fields += [("cores", res.cores), ("coreLimit", res.core_limit), ("memory", res.memory)]
    if res.memory_overhead:
        fields.append(("memoryOverhead", res.memory_overhead))
    if not executor:
        fields.append(("serviceAccount", service_account))
    return [(k, yaml_value(v)) for k, v in fields]


def label_value(text: str) -> str:
    """Any text as a Kubernetes label value (at most 63 of letters, digits, '-', '_', '.', alphanumeric at both
    ends): every other character becomes '_' (``supply@example.com`` -> ``supply_example.com``)."""
    value = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def owner_annotations(cfg: ModelConfig) -> list[tuple[str, str]]:
    """What a label can't hold, as written: the owner."""
    return [(yaml_value(names.ANNOTATION_OWNER), yaml_value(cfg.owner))]


def labels(cfg: ModelConfig, job: str) -> list[tuple[str, str]]:
    pairs = [
        ("app.kubernetes.io/managed-by", "mlops"),
        ("app.kubernetes.io/name", cfg.name),
        (names.LABEL_MODEL, cfg.name),
        (names.LABEL_STAND, cfg.stand.name),
        (names.LABEL_JOB, job),
        (names.LABEL_OWNER, label_value(cfg.owner)),
        (names.LABEL_CONFIG_HASH, cfg.config_hash),
    ]
    return [(yaml_value(k), yaml_value(v)) for k, v in pairs]


def manifest_context(cfg: ModelConfig, job: Job, art: Artifacts | None = None) -> dict[str, Any]:
    art = art or artifacts(cfg)
    script = job.script or f"{BUILTIN_DIR}/{job.kind}.py"  # smoke and load run the inference script
    stand = stand_manifest(cfg.stand)
    conf = stand.spark_conf | dict(cfg.spark.conf)  # the model's spark.conf over the stand's (event logs)
    conf["spark.pyspark.python"] = "./environment/bin/python"
    return {
        "version": __version__,
        "job": job.kind,
        "model_name": cfg.name,
        "stand_name": cfg.stand.name,
        "name": yaml_value(names.app_name(cfg.name, cfg.stand.name, job.kind)),
        "namespace": yaml_value(cfg.stand.namespace),
        "labels": labels(cfg, job.kind),
        "annotations": owner_annotations(cfg),
        "image": yaml_value(cfg.spark.image),
        "spark_version": yaml_value(cfg.spark.version),
        "main_application_file": yaml_value(art.main_file(script)),
        "arguments": job_arguments(cfg, job),
        "env_archive": yaml_value(f"{art.env_archive}#environment"),
        "code_zip": yaml_value(art.code_zip),
        "spark_conf": [(yaml_value(k), yaml_value(v)) for k, v in sorted(conf.items())],
        "time_to_live_seconds": yaml_value(cfg.stand.time_to_live_seconds),
        "driver": _resources(cfg.spark.driver, False, cfg.stand.service_account),
        "executor": _resources(cfg.spark.executor, True, cfg.stand.service_account),
        # the stand's pod settings: flow values (lists and mappings as YAML data) or nothing
        "image_pull_secrets": [yaml_value(s) for s in stand.image_pull_secrets],
        "node_selector": [(yaml_value(k), yaml_value(v)) for k, v in sorted(stand.node_selector.items())],
        "driver_env": [yaml_value(v) for v in stand.driver_env],
        "executor_env": [yaml_value(v) for v in stand.executor_env],
        "pod_security_context": yaml_value(stand.pod_security_context) if stand.pod_security_context else "",
        "security_context": yaml_value(stand.security_context) if stand.security_context else "",
    }


def _schedule(job: Job) -> str:
    if job.schedule is None:
        return "None"
    # An explicit data-interval timetable: Airflow 3 reads a bare cron string as CronTriggerTimetable,
    # whose data interval is a single instant; jobs need the window the interval spans.
    return f'CronDataIntervalTimetable({py(job.schedule)}, timezone="UTC")'


def _spark_tasks(cfg: ModelConfig, dag: str) -> list[Job]:
    """The Spark jobs a DAG runs, in order."""
    if dag == names.ACCEPT:
        return list(cfg.acceptance_jobs)
    job = {j.kind: j for j in cfg.jobs}[dag]
    if dag == "train" and cfg.train_evaluates and cfg.evaluate is not None:
        return [job, cfg.evaluate]  # the model's own evaluation decides the gate
    return [job]


def _with_retries(task: SparkTask, retries: TaskRetries) -> SparkTask:
    """The stand's Airflow retries of this Spark task (a new SparkApplication each try); none: the DAG's 0."""
    if not retries.retries:
        return task
    # retry_delay in seconds: Airflow takes a number as seconds, and the DAG file stays literals only
    kwargs = (("retries", py(retries.retries)), ("retry_delay", py(retries.retry_delay_seconds)))
    return dataclasses.replace(task, kwargs=task.kwargs + kwargs)


def dag_context(cfg: ModelConfig, job: Job) -> dict[str, Any]:
    """The values of one DAG file; ``job`` is the DAG's job (for the acceptance DAG: its kind is ``accept``)."""
    stand = cfg.stand.name
    spark_jobs = _spark_tasks(cfg, job.kind)
    backend = backend_for(cfg.stand)
    tasks = [_with_retries(backend.spark_task(cfg.stand, _SPARK_VAR[j.kind],
                                              names.manifest_file(cfg.name, stand, j.kind)),
                           cfg.stand.task_retries(j.kind))
             for j in spark_jobs]
    notify = notification_settings(cfg)
    if notify.enabled:  # the DAG file's own callback (a toolkit name), which reads its NOTIFY literal
        tasks = [dataclasses.replace(t, kwargs=t.kwargs + (("on_failure_callback", _FAILURE_CALLBACK),))
                 for t in tasks]
    spark_vars = [_SPARK_VAR[j.kind] for j in spark_jobs]
    task_id = spark_vars[0] if spark_vars else ""
    summary = cfg.description.strip().splitlines()[0] if cfg.description.strip() else f"{cfg.name} model"
    keys = ACCEPT_CONF_KEYS if job.kind == names.ACCEPT else CONF_KEYS
    conf_help = "".join(f"- `{key}`: {text}\n" for key, text in keys)
    doc = (
        f"**{cfg.name}** ({job.kind}) on stand **{stand}**, owned by {cfg.owner}.\n\n"
        f"{cfg.description.strip()}\n\n"
        f"A manual or triggered run may pass in its conf:\n\n{conf_help}\n"
        f"Generated by mlops {__version__} from the model's config (hash {cfg.config_hash}); "
        "edit model.yaml and render again instead of this file.\n"
    )
    return {
        "version": __version__,
        "job": job.kind,
        "model_name": cfg.name,
        "stand_name": stand,
        "config_hash": cfg.config_hash,
        "model": py(cfg.name),
        "stand": py(stand),
        "dag_id": py(names.dag_id(cfg.name, stand, job.kind)),
        "train_dag_id": py(names.dag_id(cfg.name, stand, "train")),
        "description": py(f"{summary[:180]} [{job.kind}]"),
        "doc_md": py(doc),
        "schedule": _schedule(job),
        "tags": py(["mlops", cfg.name, f"stand:{stand}", f"job:{job.kind}", f"owner:{cfg.owner}"]),
        "default_args": py({"owner": cfg.owner, "retries": 0}),  # the gate, promote and decide tasks: none
        "spark_var": task_id,
        # every Spark task, in order, and the chain they form before the gate (toolkit names, not config values)
        "spark_tasks": [{"var": var, "operator": t.operator, "kwargs": t.kwargs}
                        for var, t in zip(spark_vars, tasks, strict=True)],
        "upstream": " >> ".join(spark_vars),
        "task_start_inference": json.dumps(names.TASK_START_INFERENCE),
        "inference_dag_id": py(names.dag_id(cfg.name, stand, "inference")),
        "inference_run_id": json.dumps(names.INFERENCE_RUN_ID_TEMPLATE),
        # the promoter starts inference when the alias moves (the stand's choice; there must be an inference DAG)
        "start_inference": cfg.stand.start_inference and cfg.inference.enabled,
        # the toolkit's own constants (ASCII, no quotes): JSON's quoting is Python's, and the DAG text stays
        # what earlier versions wrote, so an upgrade alone doesn't change a deployed file
        "task_gate": json.dumps(names.TASK_GATE),
        "task_promote": json.dumps(names.TASK_PROMOTE),
        "task_decide": json.dumps(names.TASK_DECIDE),
        "task_trigger_train": json.dumps(names.TASK_TRIGGER_TRAIN),
        "task_no_action": json.dumps(names.TASK_NO_ACTION),
        "task_check_interval": json.dumps(names.TASK_CHECK_INTERVAL),
        "task_check_output": json.dumps(names.TASK_CHECK_OUTPUT),
        "trigger_run_id": json.dumps(names.RETRAIN_RUN_ID_TEMPLATE),
        "spark": tasks[0] if tasks else backend.spark_task(cfg.stand, "", ""),  # its import line
        # the resolved notification settings as data (None: nothing to send, no callbacks)
        "notify": py(notify.as_dict()) if notify.enabled else "None",
        "notify_failures": notify.enabled and bool(tasks),
    }


def dag_jobs(cfg: ModelConfig) -> tuple[Job, ...]:
    """One per DAG file: the stand's jobs, and the acceptance DAG where versions are pushed to."""
    accept = (Job(names.ACCEPT, None, (), None, None),) if cfg.accepts else ()
    return cfg.jobs + accept


def file_digest(text: str) -> str:
    """What the bundle index records per file, and what ``mlops deploy --bundle`` checks."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Bundle:
    """Rendered files by relative path, plus the index that describes them."""

    model: str
    stand: str
    files: dict[str, str]


def render_bundle(cfg: ModelConfig, template_dir: Path | None = None, art: Artifacts | None = None) -> Bundle:
    """The DAG files, manifests, config copy and index of ``cfg`` on its stand. ``art``: the config's
    artifact keys when the caller has them already (hashing the code tree is the costly part)."""
    art = art or artifacts(cfg)
    env = template_env(template_dir)
    files: dict[str, str] = {}
    try:
        for job in dag_jobs(cfg):
            dag_source = env.get_template(f"dag_{job.kind}.py.j2").render(dag_context(cfg, job))
            files[names.dag_file(cfg.name, cfg.stand.name, job.kind)] = dag_source
        for job in cfg.spark_jobs:
            manifest = env.get_template("sparkapplication.yaml.j2").render(manifest_context(cfg, job, art))
            files[names.manifest_file(cfg.name, cfg.stand.name, job.kind)] = manifest
    except jinja2.TemplateError as exc:
        raise RenderError(f"template error: {exc}") from exc
    _self_check(cfg, files)
    files[CONFIG_COPY] = cfg.source.read_text(encoding="utf-8") if cfg.source.is_file() else ""
    index = {
        "model": cfg.name,
        "stand": cfg.stand.name,
        "toolkit_version": __version__,
        "config_hash": cfg.config_hash,
        "env_archive": art.env_archive,
        "code_package": art.code_base,
        "env_object": art.env_object,
        "code_prefix": art.code_prefix,
        "dag_ids": [names.dag_id(cfg.name, cfg.stand.name, j.kind) for j in dag_jobs(cfg)],
        names.BUNDLE_STAND_ADDRESSES: {field: getattr(cfg.stand, field) for field in names.STAND_ADDRESS_FIELDS},
        "files": {path: file_digest(text) for path, text in sorted(files.items())},
    }
    files[BUNDLE_INDEX] = json.dumps(index, indent=2, sort_keys=True) + "\n"
    return Bundle(cfg.name, cfg.stand.name, dict(sorted(files.items())))


def _self_check(cfg: ModelConfig, files: dict[str, str]) -> None:
    """Catch a broken (platform) template before anything reaches a stand."""
    for path, text in files.items():
        if path.endswith(".py"):
            try:
                ast.parse(text, filename=path)
            except SyntaxError as exc:
                raise RenderError(f"{path}: the template produced invalid Python: {exc}") from exc
        else:
            try:
                body = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise RenderError(f"{path}: the template produced invalid YAML: {exc}") from exc
            if not isinstance(body, dict) or body.get("kind") != "SparkApplication":
                raise RenderError(f"{path}: the template did not produce a SparkApplication")


_STAGING = ".mlops-tmp-"
_STALE_SECONDS = 3600


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove_stale_staging(parent: Path, name: str) -> None:
    """Staging directories an interrupted render left behind (older than an hour)."""
    now = time.time()
    for leftover in parent.glob(f".{name}{_STAGING}*"):
        if leftover.is_dir() and not leftover.is_symlink() and now - leftover.stat().st_mtime > _STALE_SECONDS:
            shutil.rmtree(leftover, ignore_errors=True)


def write_bundle(bundle: Bundle, out: Path, staging: Path | None = None) -> Path:
    """Write into a staging directory beside ``out`` (or in ``staging``, on the same file system),
    then swap it into place.

    ``out`` must be new, empty, or a previous bundle (it has our index file); anything else is
    refused so that rendering never deletes files it did not write. Where the OS can exchange two
    directories atomically (Linux), ``out`` never stops existing; elsewhere there is a short gap
    between two renames. A symlinked ``out`` (a git-sync checkout, say) is followed, not replaced.
    Render into a build directory and let ``mlops deploy`` publish to a live DAG folder.
    """
    out = Path(os.path.abspath(out))
    if out.is_symlink():
        out = out.resolve()
    try:
        if out.exists() and not out.is_dir():
            raise RenderError(f"{out} exists and is not a directory")
        if out.is_dir() and any(out.iterdir()) and not (out / BUNDLE_INDEX).is_file():
            raise RenderError(f"{out} is not empty and was not written by `mlops render`; "
                              "choose a new or empty directory")
        out.parent.mkdir(parents=True, exist_ok=True)
        parent = staging or out.parent
        _remove_stale_staging(parent, out.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{_STAGING}", dir=parent))
    except OSError as exc:
        raise RenderError(f"cannot write to {out}: {exc.strerror or exc}") from exc
    try:
        for rel, text in bundle.files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o755)
        if not out.is_dir():
            tmp.rename(out)
        elif _exchange(tmp, out):
            shutil.rmtree(tmp, ignore_errors=True)  # the previous bundle now (and whatever Airflow cached in it)
        else:  # no atomic exchange here (some network file systems): a short gap between two renames
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}{_STAGING}old-", dir=parent))
            old.rmdir()
            out.rename(old)
            try:
                tmp.rename(out)
            except OSError:
                old.rename(out)  # put the previous bundle back
                raise
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RenderError(f"cannot write to {out}: {exc.strerror or exc}; the previous contents are unchanged") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
