"""Gate recording, promotion from stand to stand, rollback and the history MLflow doesn't keep.

Order of a promotion, each step idempotent so a re-run after any failure converges:
1. tags on the version (gate verdict, config hash, git sha, environment archive, previous holder);
2. the stand's alias moves to the version, then is read back (MLflow has no compare-and-set, so
   promotions of one model are serialised by a lock object in the stand's storage);
3. the push: environment archive and code package copied server-side to the next stand's storage,
   the model registered there if the next stand has its own registry, the next stand's deploy
   trigger called (unless that stand wants a manual approval).
Every alias move is recorded as an event in ``history/<model>/<stand>/`` of the stand's storage.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import json
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .config import ModelConfig
from .errors import MlopsError
from .gate import GateResult, evaluate
from .registry import CHAMPION_VERSION_TAG
from .stands import Stand
from .storage import LockBusy, Storage, lock, open_storage, parse_json_object

GATE_TAG = "quality_gate"
Log = Callable[[str], None]


class PromotionError(MlopsError):
    """A promotion or rollback was refused or could not complete; nothing inconsistent is left."""


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def actor() -> str:
    return os.environ.get("MLOPS_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def storage_of(stand: Stand) -> Storage:
    return open_storage(stand.storage_uri, stand.storage_endpoint_url)


# --- gate ------------------------------------------------------------------------------------


def run_gate(cfg: ModelConfig, version: str, mlflow: Any = None, log: Log | None = None) -> GateResult:
    """Evaluate a registered version against the config and the stand's champion; record the result."""
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    mv = registry.model_version(mlflow, cfg.name, version)
    run = mlflow.get_run(mv.run_id) if mv.run_id else None
    metrics = dict(run.data.metrics) if run else {}
    scored = run.data.tags.get(CHAMPION_VERSION_TAG) if run else None
    champion = registry.alias_version(mlflow, cfg.name, cfg.stand.name)
    result = evaluate(cfg.quality_gate.metrics, metrics, champion if champion != str(version) else None, scored)
    at = now()
    stand = cfg.stand.name
    registry.set_tags(mlflow, cfg.name, str(version), {
        GATE_TAG: result.verdict,  # the latest verdict, on whichever stand
        f"{GATE_TAG}.stand": stand,
        f"{GATE_TAG}.{stand}": result.verdict,  # what promotion and rollback on this stand check
        f"{GATE_TAG}.{stand}.summary": result.summary(),
        f"{GATE_TAG}.{stand}.champion_version": result.champion_version or "",
        f"{GATE_TAG}.{stand}.at": at,
    })
    if mv.run_id:
        mlflow.log_dict(mv.run_id, {"stand": cfg.stand.name, "version": str(version), "at": at, **result.as_dict()},
                        f"quality_gate/{cfg.stand.name}.json")
        mlflow.set_tag(mv.run_id, f"{GATE_TAG}.{cfg.stand.name}", result.verdict)
    if log:
        log(f"{cfg.name} version {version} on {cfg.stand.name}: {result.verdict} ({result.summary()})")
    return result


# --- lock and history ------------------------------------------------------------------------


@contextmanager
def promotion_lock(store: Storage, model: str, wait_seconds: float = 60.0) -> Iterator[None]:
    """One promotion of a model at a time, across machines (see :func:`storage.lock`)."""
    try:
        with lock(store, f"locks/{model}/promotion.json", f"another promotion of {model} is in flight", wait_seconds,
                  holder=actor()):
            yield
    except LockBusy as exc:
        raise PromotionError(f"{exc}; try again when it has finished") from exc


def _read_json(store: Storage, key: str) -> dict[str, Any] | None:
    return parse_json_object(store.read_bytes(key) or b"")


def record(store: Storage, model: str, stand: str, event: dict[str, Any]) -> dict[str, Any]:
    event = {"model": model, "stand": stand, "at": now(), "by": actor(), **event}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    store.put_bytes(f"history/{model}/{stand}/{stamp}-{uuid.uuid4().hex[:8]}.json",
                    json.dumps(event, sort_keys=True).encode())
    return event


def history(store: Storage, model: str, stand: str) -> list[dict[str, Any]]:
    """Every recorded alias move on a stand, oldest first."""
    events = []
    for key in store.list_keys(f"history/{model}/{stand}/"):
        event = _read_json(store, key)
        if event:
            events.append(event)
    return events


# --- promotion -------------------------------------------------------------------------------


@dataclass
class PromotionReport:
    model: str
    stand: str
    version: str
    previous_version: str | None
    alias_moved: bool
    pushed_to: str | None = None
    copied: list[str] = field(default_factory=list)
    trigger: str = "none"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Trigger = Callable[[ModelConfig, Stand, str, dict[str, str]], str]
AWAITING_APPROVAL = "awaiting manual approval"


def promote(cfg: ModelConfig, version: str, next_stand: Stand | None, *, env_object: str, code_prefix: str,
            mlflow: Any = None, store: Storage | None = None, next_store: Storage | None = None,
            trigger: Trigger | None = None, reason: str = "quality gate passed", git_sha: str = "",
            log: Log | None = None) -> PromotionReport:
    """Tag, move the alias, push to the next stand. Refuses a version whose gate did not pass."""
    version = str(version)
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    store = store or storage_of(cfg.stand)
    stand = cfg.stand.name
    tags = registry.version_tags(mlflow, cfg.name, version)
    if tags.get(f"{GATE_TAG}.{stand}") != "success":
        verdict = tags.get(f"{GATE_TAG}.{stand}", f"not run on {stand}")
        raise PromotionError(f"{cfg.name} version {version} is not promoted on {stand}: its quality gate is "
                             f"{verdict!r}; nothing moves")
    # Once pushed, a version keeps the artifacts it was first promoted with (not this checkout's).
    env_object = tags.get("env_archive") or env_object
    code_prefix = tags.get("code_package") or code_prefix
    from .packaging import read_source_commit

    git_sha = tags.get("git_sha") or git_sha or read_source_commit(store, code_prefix) or ""
    with promotion_lock(store, cfg.name):
        current = registry.alias_version(mlflow, cfg.name, stand)
        gated_against = tags.get(f"{GATE_TAG}.{stand}.champion_version") or None
        if current not in (version, gated_against):
            record(store, cfg.name, stand, {"action": "refused", "from_version": current, "to_version": version,
                                            "reason": f"gated against {gated_against or 'no champion'}"})
            raise PromotionError(
                f"{cfg.name} version {version} was gated against {gated_against or 'no champion'}, but version "
                f"{current} holds {stand} now; run the gate again to compare it with the current champion")
        new_tags = {key: value for key, value in (("env_archive", env_object), ("code_package", code_prefix),
                                                  ("git_sha", git_sha), ("config_hash", cfg.config_hash))
                    if value and not tags.get(key)}
        moved = current != version
        if moved:
            new_tags[f"promoted.{stand}.at"] = now()
            new_tags[f"promoted.{stand}.previous_version"] = current or ""
        registry.set_tags(mlflow, cfg.name, version, new_tags)
        if moved:
            mlflow.set_registered_model_alias(cfg.name, stand, version)
            if registry.alias_version(mlflow, cfg.name, stand) != version:
                raise PromotionError(f"the {stand} alias of {cfg.name} was moved by someone else meanwhile")
        if moved or _last_move(store, cfg.name, stand) != version:  # also heals a move whose record failed
            record(store, cfg.name, stand, {"action": "promote", "from_version": current if moved else
                                            tags.get(f"promoted.{stand}.previous_version") or None,
                                            "to_version": version, "reason": reason})
            if log:
                log(f"{cfg.name}: alias {stand} {current or '(none)'} -> {version}")
        report = PromotionReport(cfg.name, stand, version, current, moved)
        if next_stand is not None:
            _push(cfg, version, next_stand, tags, report, mlflow, store, next_store, env_object, code_prefix,
                  trigger, log)
    return report


def _last_move(store: Storage, model: str, stand: str) -> str | None:
    moves = [e for e in history(store, model, stand) if e.get("action") in ("promote", "rollback")]
    return str(moves[-1]["to_version"]) if moves else None


def _push(cfg: ModelConfig, version: str, nxt: Stand, tags: dict[str, str], report: PromotionReport, mlflow: Any,
          store: Storage, next_store: Storage | None, env_object: str, code_prefix: str,
          trigger: Trigger | None, log: Log | None) -> None:
    next_store = next_store or storage_of(nxt)
    report.pushed_to = nxt.name
    for key in [env_object, *[k for k in store.list_keys(code_prefix + "/")]]:
        store.copy(key, next_store)
        report.copied.append(key)
    if log:
        log(f"{cfg.name}: copied the environment and {len(report.copied) - 1} code object(s) to {nxt.name}")
    next_version = version
    if nxt.mlflow_tracking_uri != cfg.stand.mlflow_tracking_uri:
        next_version = _register_on(cfg, version, nxt, mlflow, log)
    pushed_tag = f"pushed.{nxt.name}.at"
    done = registry.version_tags(mlflow, cfg.name, version)
    if done.get(pushed_tag):
        report.trigger = done.get(f"pushed.{nxt.name}.trigger") or "already triggered"
        return
    if nxt.approval == "manual":
        report.trigger = AWAITING_APPROVAL
        registry.set_tags(mlflow, cfg.name, version, {pushed_tag: now(), f"pushed.{nxt.name}.trigger": report.trigger})
        record(store, cfg.name, cfg.stand.name, {"action": "push", "to_stand": nxt.name, "version": version,
                                                  "trigger": report.trigger})
        if log:
            log(f"{cfg.name}: {nxt.name} wants a manual approval: `mlops approve --stand {nxt.name} --version "
                f"{version}` calls its deploy trigger")
        return
    report.trigger = _call_trigger(cfg, version, next_version, nxt, env_object, code_prefix, done.get("git_sha", ""),
                                   trigger)
    registry.set_tags(mlflow, cfg.name, version, {pushed_tag: now(), f"pushed.{nxt.name}.trigger": report.trigger})
    record(store, cfg.name, cfg.stand.name, {"action": "push", "to_stand": nxt.name, "version": version,
                                              "trigger": report.trigger})


def _call_trigger(cfg: ModelConfig, version: str, next_version: str, nxt: Stand, env_object: str, code_prefix: str,
                  git_sha: str, trigger: Trigger | None, config_hash: str | None = None) -> str:
    """The next stand's deploy trigger, with what its deploy job needs to deploy exactly this version."""
    params = {"MODEL": cfg.name, "STAND": nxt.name, "VERSION": next_version, "SOURCE_VERSION": version,
              "SOURCE_STAND": cfg.stand.name, "ENV_ARCHIVE": env_object, "CODE_PACKAGE": code_prefix,
              "CONFIG_HASH": config_hash or cfg.config_hash, "GIT_SHA": git_sha}
    return (trigger or call_trigger)(cfg, nxt, version, params)


def approve(cfg: ModelConfig, version: str, nxt: Stand, *, mlflow: Any = None, store: Storage | None = None,
            trigger: Trigger | None = None, reason: str = "approved", log: Log | None = None) -> dict[str, Any]:
    """Call the deploy trigger a ``approval: manual`` stand held back when ``cfg``'s stand pushed ``version``.

    The artifacts are there already (the push copied them); this is the step a person signs off. Safe
    against a second approval: the trigger is called once per version, under the promotion lock.
    """
    version = str(version)
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    store = store or storage_of(cfg.stand)
    waiting_tag = f"pushed.{nxt.name}.trigger"
    with promotion_lock(store, cfg.name):
        tags = registry.version_tags(mlflow, cfg.name, version)
        state = tags.get(waiting_tag)
        if state is None:
            raise PromotionError(f"{cfg.name} version {version} was never pushed from {cfg.stand.name} to {nxt.name}: "
                                 f"nothing awaits approval (`mlops history --stand {cfg.stand.name}` lists the pushes)")
        if state != AWAITING_APPROVAL:
            raise PromotionError(f"{cfg.name} version {version}'s push to {nxt.name} is not awaiting approval: its "
                                 f"trigger was {state!r} (by {tags.get(f'approved.{nxt.name}.by', 'the promoter')})")
        holder = registry.alias_version(mlflow, cfg.name, cfg.stand.name)
        if holder != version:
            raise PromotionError(f"{cfg.name} version {version} no longer holds {cfg.stand.name} (version {holder} "
                                 f"does): approving it would deploy to {nxt.name} what {cfg.stand.name} has replaced")
        next_version = version
        if nxt.mlflow_tracking_uri != cfg.stand.mlflow_tracking_uri:
            next_version = _register_on(cfg, version, nxt, mlflow, log)  # finds the version the push registered
        result = _call_trigger(cfg, version, next_version, nxt, tags.get("env_archive", ""),
                               tags.get("code_package", ""), tags.get("git_sha", ""), trigger,
                               config_hash=tags.get("config_hash"))  # as pushed, not this working copy's
        registry.set_tags(mlflow, cfg.name, version, {waiting_tag: result, f"approved.{nxt.name}.by": actor(),
                                                      f"approved.{nxt.name}.at": now()})
        event = record(store, cfg.name, cfg.stand.name, {"action": "approve", "to_stand": nxt.name,
                                                          "version": version, "trigger": result, "reason": reason})
    if log:
        log(f"{cfg.name}: version {version} approved for {nxt.name}; its deploy trigger: {result}")
    return event


def _register_on(cfg: ModelConfig, version: str, nxt: Stand, mlflow: Any, log: Log | None) -> str:
    """A separate registry on the next stand: register the same artifacts there (copy_model_version
    can't cross servers). Skipped when a version from this one is already there."""
    import tempfile

    import mlflow as mlflow_module

    target = registry.client(nxt.mlflow_tracking_uri)
    marker = f"source.{cfg.stand.name}.version"
    from mlflow.exceptions import MlflowException

    existing = target.search_model_versions(f"name = '{cfg.name}' AND tags.`{marker}` = '{version}'")
    if existing:
        return str(existing[0].version)
    # MLflow prints run links on stdout; keep stdout for --json.
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp, contextlib.redirect_stdout(sys.stderr):
        local = mlflow_module.artifacts.download_artifacts(
            artifact_uri=mlflow.get_model_version_download_uri(cfg.name, version), dst_path=tmp,
            tracking_uri=cfg.stand.mlflow_tracking_uri)
        experiment = f"mlops/{cfg.name}"
        exp = target.get_experiment_by_name(experiment)
        experiment_id = exp.experiment_id if exp else target.create_experiment(experiment)
        run = target.create_run(experiment_id, tags={"mlops.model": cfg.name, "mlops.promoted_from": cfg.stand.name})
        target.log_artifacts(run.info.run_id, local, "model")
        _copy_run_files(mlflow, mlflow.get_model_version(cfg.name, version).run_id, target, run.info.run_id, tmp)
        target.set_terminated(run.info.run_id)
        with suppress(MlflowException):
            target.create_registered_model(cfg.name)
        # Not the gate's verdict: the next stand's own gate decides there.
        mv = target.create_model_version(cfg.name, f"{run.info.artifact_uri}/model", run.info.run_id,
                                         tags={marker: version})
    if log:
        log(f"{cfg.name}: registered version {version} of {cfg.stand.name} as version {mv.version} on {nxt.name}")
    return str(mv.version)


def _copy_run_files(source: Any, source_run: str | None, target: Any, target_run: str, tmp: str) -> None:
    """What monitoring reads beside the model (reference profile, training data record) goes along too."""
    from .runtime import PROFILE_ARTIFACT, TRAINING_DATA_ARTIFACT

    if not source_run:
        return
    present = {f.path for f in source.list_artifacts(source_run)}
    for name in (PROFILE_ARTIFACT, TRAINING_DATA_ARTIFACT):
        if name in present:
            target.log_artifact(target_run, source.download_artifacts(source_run, name, tmp))


def call_trigger(cfg: ModelConfig, nxt: Stand, version: str, params: dict[str, str],
                 stands_file: str | None = None) -> str:
    """The next stand's deploy trigger: a Jenkins job, a command, or nothing. ``stands_file``: the one
    the caller was given (default ``$MLOPS_STANDS``), for the command's ``mlops deploy``."""
    if nxt.deploy_trigger == "none":
        return "none"
    if nxt.deploy_trigger == "jenkins":
        return _jenkins(nxt, params)
    import subprocess
    import sys

    # From the code package the push just copied: the DAG's promote task has no repository, only its bundle.
    command = [sys.executable, "-m", "mlops_module", "deploy", "--package", params["CODE_PACKAGE"], "--stand", nxt.name]
    stands_file = stands_file or os.environ.get("MLOPS_STANDS")
    if stands_file:
        command += ["--stands", str(Path(stands_file).resolve())]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PromotionError(f"deploy to {nxt.name} failed ({' '.join(command)}): {result.stderr.strip()[-500:]}")
    return "command"


def _jenkins(nxt: Stand, params: dict[str, str]) -> str:
    """POST to the job's buildWithParameters URL; credentials from the environment, never from files."""
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    if not nxt.deploy_url:
        raise PromotionError(f"stand {nxt.name} has trigger jenkins but no deploy.url in the stands file")
    user, token = os.environ.get("MLOPS_JENKINS_USER"), os.environ.get("MLOPS_JENKINS_TOKEN")
    request = urllib.request.Request(nxt.deploy_url, data=urllib.parse.urlencode(params).encode(), method="POST")
    if user and token:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return f"jenkins {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        raise PromotionError(f"could not trigger the deploy of {nxt.name} at {nxt.deploy_url}: {exc}") from exc


# --- rollback --------------------------------------------------------------------------------


def rollback(cfg: ModelConfig, to: str | None = None, *, mlflow: Any = None, store: Storage | None = None,
             reason: str = "rollback", log: Log | None = None) -> dict[str, Any]:
    """Point the stand's alias back at the previous good version (or ``to``), and record it."""
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    store = store or storage_of(cfg.stand)
    stand = cfg.stand.name
    with promotion_lock(store, cfg.name):
        current = registry.alias_version(mlflow, cfg.name, stand)
        target = to
        if target is None:
            if current is None:
                raise PromotionError(f"{cfg.name} has no version on stand {stand}; nothing to roll back")
            target = registry.version_tags(mlflow, cfg.name, current).get(f"promoted.{stand}.previous_version")
            if not target:
                raise PromotionError(f"{cfg.name} version {current} on {stand} has no recorded previous version; "
                                     "name one with --to")
        target = str(target)
        if registry.version_tags(mlflow, cfg.name, target).get(f"{GATE_TAG}.{stand}") != "success":
            raise PromotionError(f"{cfg.name} version {target} did not pass its quality gate; refusing to roll back "
                                 "to it")
        if target == current:
            return {"action": "rollback", "from_version": current, "to_version": target, "changed": False}
        mlflow.set_registered_model_alias(cfg.name, stand, target)
        if registry.alias_version(mlflow, cfg.name, stand) != target:
            raise PromotionError(f"the {stand} alias of {cfg.name} was moved by someone else meanwhile")
        event = record(store, cfg.name, stand, {"action": "rollback", "from_version": current, "to_version": target,
                                                 "reason": reason})
    if current:
        registry.set_tags(mlflow, cfg.name, current, {f"rolled_back.{stand}.at": event["at"]})
    if log:
        log(f"{cfg.name}: alias {stand} {current} -> {target} (rollback)")
    return {**event, "changed": True}
