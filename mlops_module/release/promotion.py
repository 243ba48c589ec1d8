"""Promotion from stand to stand: tags, the stand's alias, the push to the next stand.

Order of a promotion, each step idempotent so a re-run after any failure converges:
1. the gate's verdict, as the gate recorded it (its artifact on the version's run, not the tag anyone can set);
2. the environment archive and every code package object read on this stand and checked against their
   recorded checksums, then copied to the next stand's storage (server-side where possible) and checked
   there the same way: the alias never points at a version whose artifacts did not reach the next stand;
3. tags on the version (config hash, git sha, environment archive, previous holder);
4. the stand's alias moves to the version, then is read back (MLflow has no compare-and-set, so
   promotions of one model are serialised by a lock object in the stand's storage);
5. the rest of the push: the model registered on the next stand if it has its own registry, its deploy
   trigger called (unless that stand wants a manual approval).
Every alias move is recorded in the stand's history (:mod:`.history`); the gate (:mod:`.gate`), approval
and rollback are modules of their own beside this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlops_module import names
from mlops_module.errors import PromotionError
from mlops_module.kinds import Log
from mlops_module.release import registry
from mlops_module.release.history import last_move, now, promotion_lock, record
from mlops_module.release.triggers import Trigger, call_deploy_trigger
from mlops_module.spec.config import ModelConfig
from mlops_module.spec.stands import Stand
from mlops_module.storage import IntegrityError, ObjectInfo, Storage, storage_of

AWAITING_APPROVAL = names.AWAITING_PUSH_APPROVAL


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
    held: bool = False  # passed, but waits for `mlops approve` before it takes the alias (a governed retrain)
    path: str = ""

    @property
    def holds_alias(self) -> bool:
        return not self.held

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


TRAINED, PUSHED, RETRAINED = "trained", "pushed", "retrained"


def describe_path(cfg: ModelConfig, path: str, source: str | None, approved_by: str | None) -> str:
    """How a version reached the stand's alias, in words (the history's ``path``, ``mlops status``)."""
    stand = cfg.stand.name
    if path == PUSHED:
        return f"pushed from {source or 'the previous stand'}, accepted on {stand}"
    if path == RETRAINED:
        return f"retrained on {stand}, " + (f"approved by {approved_by}" if approved_by else "direct (policy)")
    return f"trained on {stand}" + (f", approved by {approved_by}" if approved_by else "")


def promote(cfg: ModelConfig, version: str, next_stand: Stand | None, *, env_object: str, code_prefix: str,
            mlflow: registry.RegistryClient | None = None, store: Storage | None = None,
            next_store: Storage | None = None,
            trigger: Trigger | None = None, reason: str = "quality gate passed", git_sha: str = "",
            log: Log | None = None, path: str = TRAINED, source: str | None = None,
            approved_by: str | None = None) -> PromotionReport:
    """Tag, move the alias, push to the next stand. Refuses a version whose gate did not pass.

    ``path``: how the version got here (trained on this stand, pushed from ``source``, or retrained here by
    monitoring's trigger). A retrain on a stand whose policy is ``approval`` is held: tagged, recorded, the
    alias unmoved, until ``mlops approve`` promotes it with ``approved_by``."""
    version = str(version)
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    store = store or storage_of(cfg.stand)
    stand = cfg.stand.name
    tags = registry.version_tags(mlflow, cfg.name, version)
    if tags.get(names.gate_tag(stand)) != names.SUCCESS:
        verdict = tags.get(names.gate_tag(stand), f"not run on {stand}")
        raise PromotionError(f"{cfg.name} version {version} is not promoted on {stand}: its quality gate is "
                             f"{verdict!r}; nothing moves")
    gate = trusted_gate(cfg, mlflow, version)
    # Once pushed, a version keeps the artifacts it was first promoted with (not this checkout's).
    env_object = tags.get(names.ENV_ARCHIVE_TAG) or env_object
    code_prefix = tags.get(names.CODE_PACKAGE_TAG) or code_prefix
    from mlops_module.building.code_package import read_source_commit

    git_sha = tags.get(names.GIT_SHA_TAG) or git_sha or read_source_commit(store, code_prefix) or ""
    with promotion_lock(store, cfg.name, stand=stand, log=log) as lease:
        current = registry.alias_version(mlflow, cfg.name, stand)
        if path == RETRAINED and cfg.stand.retrained == "approval" and not approved_by and current != version:
            identity = {names.ENV_ARCHIVE_TAG: env_object, names.CODE_PACKAGE_TAG: code_prefix,
                        names.GIT_SHA_TAG: git_sha, names.CONFIG_HASH_TAG: cfg.config_hash}
            _verified(cfg, version, current, store, env_object, code_prefix)  # copied once approved
            registry.set_tags(mlflow, cfg.name, version,  # what it ran with: what its approval will push on
                              {key: value for key, value in identity.items() if value and not tags.get(key)})
            return _hold(cfg, version, current, mlflow, store, reason, log)
        gated_against = gate.get("champion_version") or None  # the gate's record, not the tag
        if current not in (version, gated_against):
            record(store, cfg.name, stand, {"action": "refused", "from_version": current, "to_version": version,
                                            "reason": f"gated against {gated_against or 'no champion'}"})
            raise PromotionError(
                f"{cfg.name} version {version} was gated against {gated_against or 'no champion'}, but version "
                f"{current} holds {stand} now; run the gate again to compare it with the current champion")
        copied: list[str] = []
        if next_stand is not None:  # before the alias moves: it never points at what the next stand lacks
            next_store = next_store or storage_of(next_stand)
            copied = _carry(cfg, version, current, store, next_store, next_stand, env_object, code_prefix, log)
        else:  # no push (the chain's last stand, --no-push): the stand's own jobs run what the alias points at
            _verified(cfg, version, current, store, env_object, code_prefix)
        new_tags = {key: value for key, value in ((names.ENV_ARCHIVE_TAG, env_object),
                                                  (names.CODE_PACKAGE_TAG, code_prefix), (names.GIT_SHA_TAG, git_sha),
                                                  (names.CONFIG_HASH_TAG, cfg.config_hash))
                    if value and not tags.get(key)}
        moved = current != version
        how = describe_path(cfg, path, source, approved_by)
        if moved:  # when and how it moved: the stand's history and the description (not more tags)
            new_tags[names.previous_version_tag(stand)] = current or ""
        if approved_by:
            new_tags[names.held_tag(stand)] = f"{names.APPROVED_PREFIX}{approved_by} at {now()}"
        lease.check()  # a holder that lost its lock (stalled past its lease) moves nothing
        registry.set_tags(mlflow, cfg.name, version, new_tags)
        if moved:
            mlflow.set_registered_model_alias(cfg.name, stand, version)
            if registry.alias_version(mlflow, cfg.name, stand) != version:
                raise PromotionError(f"the {stand} alias of {cfg.name} was moved by someone else meanwhile")
        if moved or last_move(store, cfg.name, stand) != version:  # also heals a move whose record failed
            record(store, cfg.name, stand, {"action": "promote", "from_version": current if moved else
                                            tags.get(names.previous_version_tag(stand)) or None,
                                            "to_version": version, "reason": reason, "path": how})
            if log:
                log(f"{cfg.name}: alias {stand} {current or '(none)'} -> {version} ({how})")
        from mlops_module.release.describe import describe

        describe(mlflow, cfg.name, version, stand, log)
        if moved and current:  # the replaced holder's page says so
            describe(mlflow, cfg.name, current, stand, log)
        report = PromotionReport(cfg.name, stand, version, current, moved, path=how, copied=copied)
        if next_stand is not None:
            lease.check()
            _push(cfg, version, next_stand, report, mlflow, store, env_object, code_prefix, trigger, log)
    return report


def trusted_gate(cfg: ModelConfig, mlflow: registry.RegistryClient, version: str) -> dict[str, Any]:
    """The gate's record of a pass on ``cfg``'s stand (:func:`registry.gate_record`), which promotion and rollback
    trust; PromotionError naming what is wrong when there is none: a ``quality_gate.<stand>`` tag without it was
    set by hand, not by the gate."""
    stand = cfg.stand.name
    record = registry.gate_record(mlflow, cfg.name, version, stand)
    if record is not None and record.get("verdict") == names.SUCCESS and str(record.get("version")) == version \
            and record.get("stand") == stand:
        return record
    mv = registry.model_version(mlflow, cfg.name, version)
    where = f"{names.gate_artifact(stand)} on run {mv.run_id}" if mv.run_id else "the version has no run to hold it"
    tag = dict(mv.tags).get(names.gate_tag(stand))
    hand_set = (f"; its {names.gate_tag(stand)} tag says {tag!r}, but the gate did not record that (a tag set by "
                "hand is no verdict)") if tag == names.SUCCESS else ""
    rerun = f"run the gate: `mlops gate {cfg.source.name} --stand {stand} --version {version}`"
    if record is None:
        raise PromotionError(f"{cfg.name} version {version} has no quality gate record on {stand} ({where}: "
                             f"missing){hand_set}; nothing moves: {rerun}")
    if record.get("verdict") != names.SUCCESS:
        raise PromotionError(f"{cfg.name} version {version} did not pass its quality gate on {stand}: the gate "
                             f"recorded {record.get('verdict')!r} ({where}){hand_set}; nothing moves")
    raise PromotionError(f"{cfg.name} version {version}'s quality gate record on {stand} ({where}) is of version "
                         f"{record.get('version')} on {record.get('stand')}{hand_set}; nothing moves: {rerun}")


def _verified(cfg: ModelConfig, version: str, current: str | None, store: Storage, env_object: str,
              code_prefix: str) -> dict[str, ObjectInfo]:
    """The environment archive and every code package object, read on this stand and checked against their
    recorded checksums; PromotionError (the key, both checksums) before anything moves."""
    keys = [env_object, *store.list_keys(code_prefix + "/")]
    marker = f"{code_prefix}/{names.CODE_ZIP}"  # uploaded last: without it the package is unfinished
    try:
        return {key: store.verify(key) for key in keys + ([] if marker in keys else [marker])}
    except IntegrityError as exc:
        raise _refused(cfg, version, current, exc) from exc


def _carry(cfg: ModelConfig, version: str, current: str | None, store: Storage, next_store: Storage, nxt: Stand,
           env_object: str, code_prefix: str, log: Log | None) -> list[str]:
    """Check the artifacts here, copy them to the next stand and check the copies there (each object read once
    here and once there; a copy already there and intact is kept). The keys copied."""
    verified = _verified(cfg, version, current, store, env_object, code_prefix)
    try:
        for key, info in verified.items():
            store.copy(key, next_store, verified=info)
    except IntegrityError as exc:
        raise _refused(cfg, version, current, exc) from exc
    if log:
        log(f"{cfg.name}: checked the environment and {len(verified) - 1} code object(s) and copied them to "
            f"{nxt.name}")
    return list(verified)


def _refused(cfg: ModelConfig, version: str, current: str | None, exc: IntegrityError) -> PromotionError:
    return PromotionError(f"{cfg.name} version {version} is not promoted on {cfg.stand.name}: {exc}; nothing moves "
                          f"(the alias stays on {current or 'no version'}). Put the object back (the stand it was "
                          "pushed from keeps a copy; `mlops package` uploads a build again) and promote again")


def _hold(cfg: ModelConfig, version: str, current: str | None, mlflow: registry.RegistryClient, store: Storage,
          reason: str, log: Log | None) -> PromotionReport:
    """A retrain that passed the gate on a stand the chain reaches only through a manual approval: it waits."""
    stand = cfg.stand.name
    if registry.version_tags(mlflow, cfg.name, version).get(names.held_tag(stand)) != names.AWAITING:
        registry.set_tags(mlflow, cfg.name, version, {names.held_tag(stand): names.AWAITING})
        record(store, cfg.name, stand, {"action": "held", "from_version": current, "to_version": version,
                                        "reason": reason, "path": describe_held(stand)})
        from mlops_module.release.describe import describe

        describe(mlflow, cfg.name, version, stand, log)
    if log:
        log(f"{cfg.name}: version {version} passed {stand}'s gate as a retrain; {stand}'s policy (acceptance."
            f"retrained: approval, the chain asks for a manual approval on the way here) holds it: "
            f"`mlops approve --stand {stand} --version {version}` moves the alias; {current or 'no version'} keeps it")
    return PromotionReport(cfg.name, stand, version, current, False, held=True, path=describe_held(stand))


def describe_held(stand: str) -> str:
    return f"retrained on {stand}, awaiting approval"


def _push(cfg: ModelConfig, version: str, nxt: Stand, report: PromotionReport, mlflow: registry.RegistryClient,
          store: Storage, env_object: str, code_prefix: str, trigger: Trigger | None, log: Log | None) -> None:
    """After the alias moved (the artifacts are on the next stand already): register, trigger, once."""
    report.pushed_to = nxt.name
    next_version = version
    if nxt.mlflow_tracking_uri != cfg.stand.mlflow_tracking_uri:
        next_version = register_on(cfg, version, nxt, mlflow, log)
    from mlops_module.release.describe import describe

    pushed_tag = names.pushed_tag(nxt.name)  # the push's state; when: the history's push event
    done = registry.version_tags(mlflow, cfg.name, version)
    if done.get(pushed_tag):
        report.trigger = done.get(pushed_tag) or "already triggered"
        return
    if nxt.approval == "manual":
        report.trigger = AWAITING_APPROVAL
        registry.set_tags(mlflow, cfg.name, version, {pushed_tag: report.trigger})
        describe(mlflow, cfg.name, version, cfg.stand.name, log)
        record(store, cfg.name, cfg.stand.name, {"action": "push", "to_stand": nxt.name, "version": version,
                                                  "trigger": report.trigger})
        if log:
            log(f"{cfg.name}: {nxt.name} wants a manual approval: `mlops approve --stand {nxt.name} --version "
                f"{version}` calls its deploy trigger")
        return
    report.trigger = call_deploy_trigger(cfg, version, next_version, nxt, env_object, code_prefix,
                                         done.get(names.GIT_SHA_TAG, ""), trigger)
    registry.set_tags(mlflow, cfg.name, version, {pushed_tag: report.trigger})
    record(store, cfg.name, cfg.stand.name, {"action": "push", "to_stand": nxt.name, "version": version,
                                              "trigger": report.trigger})
    describe(mlflow, cfg.name, version, cfg.stand.name, log)


def register_on(cfg: ModelConfig, version: str, nxt: Stand, mlflow: registry.RegistryClient, log: Log | None) -> str:
    """A separate registry on the next stand: register the same artifacts there (copy_model_version
    can't cross servers), with what monitoring reads beside the model. Skipped when already there."""
    target = registry.client(nxt.mlflow_tracking_uri)
    carried = registry.carried_evidence(mlflow, cfg.name, version, cfg.stand.name)
    copied, created = registry.register_copy(mlflow, cfg.stand.mlflow_tracking_uri, target, cfg.name, version,
                                             cfg.stand.name, carried)
    if created:
        from mlops_module.release.describe import describe

        describe(target, cfg.name, copied, nxt.name, log)
        if log:
            log(f"{cfg.name}: registered version {version} of {cfg.stand.name} as version {copied} on {nxt.name}")
    return copied
