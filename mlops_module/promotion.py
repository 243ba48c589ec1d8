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
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .config import ModelConfig
from .errors import MlopsError
from .gate import GateResult, evaluate
from .stands import Stand
from .storage import Storage, open_storage

GATE_TAG = "quality_gate"
LOCK_STALE_SECONDS = 15 * 60
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
    mv = mlflow.get_model_version(cfg.name, version)
    metrics = dict(mlflow.get_run(mv.run_id).data.metrics) if mv.run_id else {}
    champion = registry.alias_version(mlflow, cfg.name, cfg.stand.name)
    result = evaluate(cfg.quality_gate.metrics, metrics, champion if champion != str(version) else None)
    at = now()
    registry.set_tags(mlflow, cfg.name, str(version), {
        GATE_TAG: result.verdict,
        f"{GATE_TAG}.stand": cfg.stand.name,
        f"{GATE_TAG}.summary": result.summary(),
        f"{GATE_TAG}.champion_version": result.champion_version or "",
        f"{GATE_TAG}.at": at,
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
    """One promotion of a model at a time, across machines: an object created only if absent."""
    key = f"locks/{model}/promotion.json"
    token = uuid.uuid4().hex
    body = json.dumps({"token": token, "by": actor(), "at": time.time()}).encode()
    deadline = time.monotonic() + wait_seconds
    while not store.create_exclusive(key, body):
        held = _read_json(store, key)
        if held and time.time() - float(held.get("at", 0)) > LOCK_STALE_SECONDS:
            store.delete(key)  # its holder died; a promotion takes seconds
            continue
        if time.monotonic() > deadline:
            who = f" by {held.get('by')}" if held else ""
            raise PromotionError(f"another promotion of {model} is in flight{who}; try again when it has finished")
        time.sleep(0.2)
    try:
        yield
    finally:
        held = _read_json(store, key)
        if held and held.get("token") == token:
            store.delete(key)


def _read_json(store: Storage, key: str) -> dict[str, Any] | None:
    raw = store.read_bytes(key)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


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


def promote(cfg: ModelConfig, version: str, next_stand: Stand | None, *, env_object: str, code_prefix: str,
            mlflow: Any = None, store: Storage | None = None, next_store: Storage | None = None,
            trigger: Trigger | None = None, reason: str = "quality gate passed", git_sha: str = "",
            log: Log | None = None) -> PromotionReport:
    """Tag, move the alias, push to the next stand. Refuses a version whose gate did not pass."""
    version = str(version)
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    store = store or storage_of(cfg.stand)
    tags = registry.version_tags(mlflow, cfg.name, version)
    if tags.get(GATE_TAG) != "success":
        verdict = tags.get(GATE_TAG, "no gate result")
        raise PromotionError(f"{cfg.name} version {version} is not promoted on {cfg.stand.name}: its quality gate is "
                             f"{verdict!r}; nothing moves")
    stand = cfg.stand.name
    with promotion_lock(store, cfg.name):
        current = registry.alias_version(mlflow, cfg.name, stand)
        new_tags = {"config_hash": cfg.config_hash, "env_archive": env_object, "code_package": code_prefix,
                    f"promoted.{stand}.at": tags.get(f"promoted.{stand}.at") or now()}
        if git_sha:
            new_tags["git_sha"] = git_sha
        if current is not None and current != version and f"promoted.{stand}.previous_version" not in tags:
            new_tags[f"promoted.{stand}.previous_version"] = current
        registry.set_tags(mlflow, cfg.name, version, new_tags)
        moved = current != version
        if moved:
            mlflow.set_registered_model_alias(cfg.name, stand, version)
            if registry.alias_version(mlflow, cfg.name, stand) != version:
                raise PromotionError(f"the {stand} alias of {cfg.name} was moved by someone else meanwhile")
            record(store, cfg.name, stand, {"action": "promote", "from_version": current, "to_version": version,
                                            "reason": reason})
            if log:
                log(f"{cfg.name}: alias {stand} {current or '(none)'} -> {version}")
        report = PromotionReport(cfg.name, stand, version, current, moved)
        if next_stand is not None:
            _push(cfg, version, next_stand, tags, report, mlflow, store, next_store, env_object, code_prefix,
                  trigger, log)
    return report


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
    if nxt.mlflow_tracking_uri != cfg.stand.mlflow_tracking_uri:
        _register_on(cfg, version, nxt, mlflow, tags, log)
    pushed_tag = f"pushed.{nxt.name}.at"
    if registry.version_tags(mlflow, cfg.name, version).get(pushed_tag):
        report.trigger = "already triggered"
        return
    if nxt.approval == "manual":
        report.trigger = "awaiting manual approval"
        record(store, cfg.name, cfg.stand.name, {"action": "push", "to_stand": nxt.name, "version": version,
                                                  "trigger": report.trigger})
        return
    params = {"MODEL": cfg.name, "STAND": nxt.name, "VERSION": version, "SOURCE_STAND": cfg.stand.name,
              "ENV_ARCHIVE": env_object, "CODE_PACKAGE": code_prefix, "CONFIG_HASH": cfg.config_hash}
    report.trigger = (trigger or call_trigger)(cfg, nxt, version, params)
    registry.set_tags(mlflow, cfg.name, version, {pushed_tag: now()})
    record(store, cfg.name, cfg.stand.name, {"action": "push", "to_stand": nxt.name, "version": version,
                                              "trigger": report.trigger})


def _register_on(cfg: ModelConfig, version: str, nxt: Stand, mlflow: Any, tags: dict[str, str],
                 log: Log | None) -> None:
    """A separate registry on the next stand: register the same artifacts there (copy_model_version
    can't cross servers). Skipped when a version from this one is already there."""
    import tempfile

    import mlflow as mlflow_module

    target = registry.client(nxt.mlflow_tracking_uri)
    marker = f"source.{cfg.stand.name}.version"
    from mlflow.exceptions import MlflowException

    try:
        existing = target.search_model_versions(f"name = '{cfg.name}' AND tags.`{marker}` = '{version}'")
    except MlflowException:
        existing = []
    if existing:
        return
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
        target.set_terminated(run.info.run_id)
        with suppress(MlflowException):
            target.create_registered_model(cfg.name)
        mv = target.create_model_version(cfg.name, f"{run.info.artifact_uri}/model", run.info.run_id,
                                         tags={marker: version, GATE_TAG: tags.get(GATE_TAG, "")})
    if log:
        log(f"{cfg.name}: registered version {version} of {cfg.stand.name} as version {mv.version} on {nxt.name}")


def call_trigger(cfg: ModelConfig, nxt: Stand, version: str, params: dict[str, str]) -> str:
    """The next stand's deploy trigger: a Jenkins job, a command, or nothing."""
    if nxt.deploy_trigger == "none":
        return "none"
    if nxt.deploy_trigger == "jenkins":
        return _jenkins(nxt, params)
    import subprocess
    import sys

    command = [sys.executable, "-m", "mlops_module", "deploy", str(cfg.source), "--stand", nxt.name]
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
        if registry.version_tags(mlflow, cfg.name, target).get(GATE_TAG) != "success":
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
