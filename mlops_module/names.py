"""Every name the toolkit writes where someone else reads it, spelt once.

Generated names (DAG ids, SparkApplication names, files), MLflow tag keys (on model versions and on
runs), MLflow artifact names, storage keys and verdict values. A tag or key written in one module and
read back in another comes from here, so they can't drift apart. A leaf module: it ships to the
cluster with the runtime, so it imports nothing but the standard library and :mod:`.kinds`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final

from mlops_module.kinds import Verdict

# --- Airflow and Kubernetes ------------------------------------------------------------------

JOBS = ("train", "inference", "monitoring")  # a DAG each, on every stand
# The checks a stand runs on a version pushed to it (its acceptance DAG), each a Spark job: evaluate
# (candidate and champion on the same rows), smoke (inference on a small window), load (inference at volume).
ACCEPTANCE_JOBS = ("evaluate", "smoke", "load")
INFERENCE_CHECKS = ("smoke", "load")  # the checks that run the model's inference script, under these job names
ACCEPT = "accept"  # the acceptance DAG: dag_id(model, stand, ACCEPT)
# SparkApplication names are short so that model (40) + stand (5) + job fit the 54 characters
# left after SparkKubernetesOperator appends "-" and 8 random characters (63 in all).
APP_SUFFIX = {"train": "train", "inference": "infer", "monitoring": "monitor", "evaluate": "eval",
              "smoke": "smoke", "load": "load"}
MAX_APP_NAME = 63 - 9
# Spark properties a stand's structured keys set (storage.*, spark.event_log): spelt here, refused in spark.conf
S3A_ENDPOINT = "spark.hadoop.fs.s3a.endpoint"
S3A_SSL = "spark.hadoop.fs.s3a.connection.ssl.enabled"
S3A_PATH_STYLE = "spark.hadoop.fs.s3a.path.style.access"
S3A_CREDENTIALS_PROVIDER = "spark.hadoop.fs.s3a.aws.credentials.provider"
EVENT_LOG_ENABLED = "spark.eventLog.enabled"
EVENT_LOG_DIR = "spark.eventLog.dir"
ARCH_LABEL = "kubernetes.io/arch"  # the node label a manifest's nodeSelector pins to the environments' platform
SPARK_JOB_KINDS = JOBS + ACCEPTANCE_JOBS  # each runs as a SparkApplication
# Task ids: the Spark task of each job, and the rest of each DAG (the templates get them as values).
SPARK_TASK = {"train": "train", "inference": "infer", "monitoring": "monitor", "evaluate": "evaluate",
              "smoke": "smoke", "load": "load"}
TASK_GATE = "quality_gate"
TASK_PROMOTE = "promote"
TASK_START_INFERENCE = "start_inference"
TASK_DECIDE = "decide"
TASK_TRIGGER_TRAIN = "trigger_train"
TASK_NO_ACTION = "no_action"
TASK_CHECK_INTERVAL = "check_interval"  # before a scheduled job: skip an interval that ended before deployment
TASK_CHECK_OUTPUT = "check_output"  # after the inference job: an empty window is not a success
# Kubernetes labels on every SparkApplication.
LABEL_MODEL, LABEL_STAND, LABEL_JOB, LABEL_OWNER, LABEL_CONFIG_HASH = (
    "mlops/model", "mlops/stand", "mlops/job", "mlops/owner", "mlops/config-hash")
# The per-stand cluster objects `mlops platform render` writes: their Roles (each RoleBinding has its Role's name)
# and the label that says who made them.
SPARK_DRIVER_ROLE = "mlops-spark-driver"
AIRFLOW_ROLE = "mlops-airflow-spark-jobs"
LABEL_MANAGED_BY, MANAGED_BY = "app.kubernetes.io/managed-by", "mlops"
# The owner as written (its label is sanitised: an e-mail address is no label value).
ANNOTATION_OWNER = "mlops/owner"
# Notifications: the events people are told about (stands file and model.yaml `notifications.events`), the
# channels a stand may send them on, and the DAG files' module-level constant holding the resolved settings.
EVENT_GATE_FAILED = "gate_failed"
EVENT_APPROVAL_WAITING = "approval_waiting"
EVENT_RETRAIN_DECIDED = "retrain_decided"
EVENT_ROLLBACK = "rollback"
EVENT_JOB_FAILED = "job_failed"
EVENT_ACCEPTANCE_FAILED = "acceptance_failed"
EVENTS = (EVENT_GATE_FAILED, EVENT_APPROVAL_WAITING, EVENT_RETRAIN_DECIDED, EVENT_ROLLBACK, EVENT_JOB_FAILED,
          EVENT_ACCEPTANCE_FAILED)
CHANNEL_SMTP, CHANNEL_SLACK, CHANNEL_WEBHOOK = "smtp", "slack", "webhook"
CHANNELS = (CHANNEL_SMTP, CHANNEL_SLACK, CHANNEL_WEBHOOK)


def dag_id(model: str, stand: str, job: str) -> str:
    return f"{model}__{stand}__{job}"


def app_name(model: str, stand: str, job: str) -> str:
    return f"{model}-{stand}-{APP_SUFFIX[job]}"


def dag_file(model: str, stand: str, job: str) -> str:
    return f"{dag_id(model, stand, job)}.py"


def manifest_file(model: str, stand: str, job: str) -> str:
    return f"manifests/{app_name(model, stand, job)}.yaml"


RETRAIN_RUN_ID_TEMPLATE = "retrain__{{ run_id }}"  # the same, as Airflow templates it in the trigger task


def retrain_run_id(monitoring_run_id: str) -> str:
    """The train DAG run a monitoring run triggers: deterministic, so a retry can't trigger twice."""
    return RETRAIN_RUN_ID_TEMPLATE.replace("{{ run_id }}", monitoring_run_id)


INFERENCE_RUN_ID_TEMPLATE = "promoted__{{ run_id }}"  # the inference run a promotion starts, one per run


def acceptance_run_id(source_stand: str, source_version: str) -> str:
    """The acceptance run a push starts: one per pushed version, so a re-run deploy can't start two."""
    return f"accept__{source_stand}-v{source_version}"


def image_for(image: str, registry: str | None) -> str:
    """Point ``image`` at the stand's registry mirror, keeping its repository path and tag."""
    if not registry:
        return image
    first, _, rest = image.partition("/")
    has_registry = bool(rest) and ("." in first or ":" in first or first == "localhost")
    path = rest if has_registry else image
    return f"{registry.rstrip('/')}/{path}"


PERFORMANCE_METRICS = ("roc_auc", "accuracy", "log_loss", "rmse", "mae")  # what the built-in monitoring job measures

# --- verdicts --------------------------------------------------------------------------------

SUCCESS: Final[Verdict] = "success"
FAILED: Final[Verdict] = "failed"

# --- MLflow: tags on a model version ---------------------------------------------------------

GATE_TAG = "quality_gate"  # the prefix of the per-stand verdict (and the run tag's)
ENV_ARCHIVE_TAG = "env_archive"  # storage key of the environment archive the version was first promoted with
CODE_PACKAGE_TAG = "code_package"  # storage prefix of its code package
GIT_SHA_TAG = "git_sha"
CONFIG_HASH_TAG = "config_hash"
RETRAIN_REASON_TAG = "retrain_reason"  # also on the training run
# A version carries at most one verdict tag per stand (quality_gate.<stand>); the details (summary, champion,
# times, paths, the evidence a push carried) live in the gate's run artifact, the stand's history and the
# version's description (release/story.py), where people read them.


def gate_tag(stand: str) -> str:
    """The verdict on ``stand`` (``success``/``failed``): what promotion and rollback there check; the only
    verdict tag of that stand on a version."""
    return f"{GATE_TAG}.{stand}"


def is_stand_verdict_tag(key: str) -> bool:
    """``quality_gate.<stand>``, the per-stand verdict."""
    return key.startswith(f"{GATE_TAG}.") and key.count(".") == 1


def previous_version_tag(stand: str) -> str:
    """The version that held ``stand`` before this one: where a rollback goes."""
    return f"promoted.{stand}.previous_version"


def pushed_tag(stand: str) -> str:
    """On the pushing stand's version: the state of its push to ``stand`` (the deploy trigger's answer,
    :data:`AWAITING_PUSH_APPROVAL`, or ``<trigger answer>, approved by <who>``); present once pushed."""
    return f"pushed.{stand}"


def pushed_tag_stand(key: str) -> str | None:
    """The stand a :func:`pushed_tag` names; None for any other tag."""
    return key[len("pushed."):] if key.startswith("pushed.") and key.count(".") == 1 else None


def source_version_tag(stand: str) -> str:
    """On a version registered on another stand's registry: its version number on ``stand`` (identity, not a
    verdict: what the source stand decided is in the version's description and its run's ``source/`` records)."""
    return f"source.{stand}.version"


def source_version_tag_stand(key: str) -> str | None:
    """The stand a :func:`source_version_tag` names; None for any other tag."""
    prefix, suffix = "source.", ".version"
    inner = key[len(prefix):-len(suffix)] if key.startswith(prefix) and key.endswith(suffix) else ""
    return inner or None


AWAITING = "awaiting approval"
AWAITING_PUSH_APPROVAL = "awaiting manual approval"  # a push's state while the next stand wants a person's word
APPROVED_PREFIX = "approved by "  # a held version's tag once a person let it in: "approved by <who> at <when>"


def held_tag(stand: str) -> str:
    """A version that passed ``stand``'s gate but waits for a person before it takes the alias (a retrain
    on a stand the chain reaches only through a manual approval): ``awaiting approval``, then who approved.
    An approval state beside the verdict, not a second verdict."""
    return f"held.{stand}"


def airflow_actor(dag: str, run_id: str) -> str:
    """Who ran something from Airflow, as MLflow's ``mlflow.user`` and the history's ``by`` show it."""
    return f"airflow:{dag}/{run_id}"


# --- MLflow: tags on runs --------------------------------------------------------------------

RUN_TAG_MODEL = "mlops.model"
RUN_TAG_STAND = "mlops.stand"
RUN_TAG_AIRFLOW_RUN = "mlops.airflow_run_id"
RUN_TAG_JOB = "mlops.job"
RUN_TAG_DATA_INTERVAL_START = "mlops.data_interval_start"
RUN_TAG_DATA_INTERVAL_END = "mlops.data_interval_end"
RUN_TAG_WINDOW_START = "mlops.window_start"
RUN_TAG_TRAINING_DATA_URI = "mlops.training_data.uri"
RUN_TAG_TRAINING_DATA_ROWS = "mlops.training_data.rows"
RUN_TAG_TRAINING_DATA_WINDOW = "mlops.training_data.window"
RUN_TAG_MODEL_VERSION = "mlops.model_version"  # the version an inference or monitoring run used
RUN_TAG_PREDICTIONS = "mlops.predictions"
RUN_TAG_SHADOW_VERSION = "mlops.shadow_version"
RUN_TAG_SHADOW_PREDICTIONS = "mlops.shadow_predictions"
RUN_TAG_CURRENT_ROWS = "mlops.current_rows"
RUN_TAG_ROWS_WRITTEN = "mlops.rows_written"  # what runtime.write_predictions wrote (the check_output task reads it)
RUN_TAG_PROMOTED_FROM = "mlops.promoted_from"
# What the monitoring DAG's decide task decided, on the monitoring job's run.
RUN_TAG_DECISION = "mlops.decision"
RUN_TAG_DECISION_REASON = "mlops.decision.reason"
# The champion's scores on the candidate's evaluation data, and which version they belong to.
CHAMPION_PREFIX = "champion."
CHAMPION_VERSION_TAG = "champion.version"
RUN_TAG_USER = "mlflow.user"  # MLflow's own: the run's "User"; a version's "Created by" (user_id) can't be set


def copies_experiment(model: str) -> str:
    """The experiment that holds the runs registering versions pushed from another stand's registry."""
    return f"mlops/{model}"


# --- MLflow: run artifacts -------------------------------------------------------------------

PROFILE_ARTIFACT = "reference_profile.json"
TRAINING_DATA_ARTIFACT = "training_data.json"
DRIFT_ARTIFACT = "drift.json"
DECISION_ARTIFACT = "decision.json"
MODEL_ARTIFACT = "model"


GATE_FOLDER = "quality_gate"  # on a version's run: one gate record per stand
EVALUATION_FOLDER = "evaluation"  # on a candidate's run: one evaluate job's measurement per stand
CARRIED_FOLDER = "source"  # on a pushed copy's run: the source stands' records (gates, evaluations), as they were


def gate_artifact(stand: str) -> str:
    return f"{GATE_FOLDER}/{stand}.json"


def evaluation_artifact(stand: str) -> str:
    """On the candidate's run: what the evaluate job measured on ``stand`` (candidate, champion, paired
    differences with their confidence interval); what the stand's gate reads."""
    return f"{EVALUATION_FOLDER}/{stand}.json"


def evaluation_metric(stand: str, metric: str) -> str:
    """The same values as run metrics, for MLflow's UI: ``evaluation.<stand>.<metric>``,
    ``evaluation.<stand>.champion.<metric>``, ``evaluation.<stand>.diff_low.<metric>`` ..."""
    return f"evaluation.{stand}.{metric}"


# --- storage keys (relative to a stand's storage URI) ----------------------------------------

CODE_ZIP = "code.zip"  # in a code package: what --py-files puts on the path; uploaded last
PACKAGE_FILE = "mlops-package.json"  # in a code package: its config's path, the commit it was built from
BUNDLE_INDEX = "mlops-bundle.json"  # in a rendered bundle: what it is and what it runs
CONFIG_COPY = "config/model.yaml"  # in a rendered bundle: what the DAG's gate and promote tasks resolve
# In a bundle's index: the stand's addresses as rendered, which its DAG tasks use at run time (a stands file
# with ${VAR} in them may expand differently in the scheduler than where the bundle was rendered).
BUNDLE_STAND_ADDRESSES = "stand_addresses"
# In a deployed bundle's index: when this model's DAGs first went live on the stand (kept by later deploys); a
# scheduled run of an interval that ended before it is skipped (check_interval).
BUNDLE_FIRST_DEPLOYED = "first_deployed_at"
STAND_ADDRESS_FIELDS = ("mlflow_tracking_uri", "storage_uri", "storage_endpoint_url")


def env_object(env_key: str) -> str:
    return f"envs/{env_key}.tar.gz"


def code_prefix(model: str, code_key: str) -> str:
    return f"code/{model}/{code_key}"


def promotion_lock_key(model: str) -> str:
    return f"locks/{model}/promotion.json"


def history_prefix(model: str, stand: str) -> str:
    return f"history/{model}/{stand}/"


def decisions_prefix(model: str, stand: str) -> str:
    return f"monitoring/{model}/{stand}/decisions/"


def data_prefix(model: str) -> str:
    """Where a model's input data lives by convention (the example's and the scaffold's jobs read it)."""
    return f"data/{model}"


def labels_prefix(model: str) -> str:
    """Where outcomes arrive, joined to the scored rows by monitoring."""
    return f"labels/{model}"


def predictions_prefix(model: str, stand: str) -> str:
    return f"predictions/{model}/{stand}"


def acceptance_prefix(model: str, stand: str, job: str) -> str:
    """What the acceptance checks' inference (smoke, load) wrote: kept apart from the stand's predictions."""
    return f"acceptance/{model}/{stand}/{job}"


def shadow_prefix(model: str, stand: str) -> str:
    """A challenger's output, kept apart from the champion's predictions."""
    return f"shadow/{model}/{stand}"


# --- a stand's DAG location ------------------------------------------------------------------

DEPLOY_STAGING = "_mlops_staging"  # under <dags>/<model>/: bundles being staged; .airflowignore hides it


def deploy_lock_key(model: str, stand: str) -> str:
    return f"{model}/{DEPLOY_STAGING}/{stand}.lock"


# --- `mlops doctor` ----------------------------------------------------------------------------

# Its probes (written, read back, deleted at once) go below this prefix of the stand's storage and DAG
# location: apart from every model's keys (no model or stand name contains '_').
DOCTOR_PROBES = "_mlops_doctor"


# --- this machine ----------------------------------------------------------------------------


def shipped(*parts: str) -> Path:
    """Files the wheel carries inside the package (templates, the bundled example) that a checkout keeps
    at its top level: ``shipped("templates")``, ``shipped("examples", "churn")``."""
    packaged = Path(__file__).parent.joinpath(*parts)
    return packaged if packaged.exists() else Path(__file__).parent.parent.joinpath(*parts)


def bundled_example() -> Path:
    """The churn example: what ``mlops demo`` runs and ``mlops init`` borrows its locked requirements from."""
    return shipped("examples", "churn")


LOCAL_PYTHON_HOME_ENV = "MLOPS_LOCAL_PYTHON_HOME"
UNPACK_MAX_BYTES_ENV = "MLOPS_UNPACK_MAX_BYTES"  # cap on an archive's unpacked bytes (see building/unpack.py)
UNPACK_MAX_MEMBERS_ENV = "MLOPS_UNPACK_MAX_MEMBERS"  # cap on an archive's member count
VERIFY_TIMEOUT_ENV = "MLOPS_VERIFY_TIMEOUT"  # seconds `mlops package --verify` lets its import check run
LOCK_LEASE_ENV = "MLOPS_LOCK_LEASE_SECONDS"  # a lock holder's lease (see locking.py)


def local_python_home() -> str:
    """Where the local stand's "image" keeps ``python3.X``: ``$MLOPS_LOCAL_PYTHON_HOME``, default the
    directory of the interpreter running the toolkit, resolved past venvs and links (an environment
    archive's ``bin/python`` links to ``<python_home>/python3.X``, so it must be the real one)."""
    return os.environ.get(LOCAL_PYTHON_HOME_ENV) or os.path.dirname(os.path.realpath(sys.executable))


EXAMPLE_PYTHONS = ("3.10", "3.11", "3.12")  # what the example's universal lock is compiled for (its header)


def example_python() -> str:
    """The Python version to build the example (and `mlops init`'s scaffold) for: the running interpreter's,
    which the local stand runs jobs with; the newest the lock covers when this one is outside it."""
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return running if running in EXAMPLE_PYTHONS else EXAMPLE_PYTHONS[-1]


def mlops_home() -> Path:
    """Where the toolkit keeps this machine's state (``$MLOPS_HOME``, default ``~/.mlops``): the local
    stand's storage, DAGs, Airflow and MLflow, the demo, the unpacked-environment cache."""
    return Path(os.environ.get("MLOPS_HOME") or "~/.mlops").expanduser()


def local_stand_home(stand: str) -> Path:
    """A local stand's own state on this machine: its Airflow home (``airflow/``), its MLflow (``mlflow/``),
    the logs of ``mlops run``."""
    return mlops_home() / stand
