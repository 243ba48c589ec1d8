"""``mlops approve``: the deploy trigger a manual-approval stand held back, called once by a person's word."""

from __future__ import annotations

from typing import Any

from mlops_module import names
from mlops_module.errors import PromotionError
from mlops_module.kinds import Log
from mlops_module.release import registry
from mlops_module.release.history import actor, promotion_lock, record
from mlops_module.release.promotion import AWAITING_APPROVAL, register_on
from mlops_module.release.triggers import Trigger, call_deploy_trigger
from mlops_module.spec.config import ModelConfig
from mlops_module.spec.stands import Stand
from mlops_module.storage import IntegrityError, Storage, storage_of


def approve(cfg: ModelConfig, version: str, nxt: Stand, *, mlflow: registry.RegistryClient | None = None,
            store: Storage | None = None, next_store: Storage | None = None, trigger: Trigger | None = None,
            reason: str = "approved", log: Log | None = None) -> dict[str, Any]:
    """Call the deploy trigger a ``approval: manual`` stand held back when ``cfg``'s stand pushed ``version``.

    The artifacts are there already (the push copied them); this is the step a person signs off, possibly days
    later, so the copies are read and checked again first. Safe against a second approval: the trigger is
    called once per version, under the promotion lock.
    """
    version = str(version)
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    store = store or storage_of(cfg.stand)
    waiting_tag = names.pushed_tag(nxt.name)
    with promotion_lock(store, cfg.name, stand=cfg.stand.name, log=log) as lease:
        tags = registry.version_tags(mlflow, cfg.name, version)
        state = tags.get(waiting_tag)
        if state is None:
            raise PromotionError(f"{cfg.name} version {version} was never pushed from {cfg.stand.name} to {nxt.name}: "
                                 f"nothing awaits approval (`mlops history --stand {cfg.stand.name}` lists the pushes)")
        if state != AWAITING_APPROVAL:
            by = "" if names.APPROVED_PREFIX in state else " (by the promoter)"
            raise PromotionError(f"{cfg.name} version {version}'s push to {nxt.name} is not awaiting approval: its "
                                 f"trigger was {state!r}{by}")
        holder = registry.alias_version(mlflow, cfg.name, cfg.stand.name)
        if holder != version:
            raise PromotionError(f"{cfg.name} version {version} no longer holds {cfg.stand.name} (version {holder} "
                                 f"does): approving it would deploy to {nxt.name} what {cfg.stand.name} has replaced")
        env_object, code_prefix = tags.get(names.ENV_ARCHIVE_TAG, ""), tags.get(names.CODE_PACKAGE_TAG, "")
        _check_copies(cfg, version, nxt, store, next_store or storage_of(nxt), env_object, code_prefix)
        next_version = version
        if nxt.mlflow_tracking_uri != cfg.stand.mlflow_tracking_uri:
            next_version = register_on(cfg, version, nxt, mlflow, log)  # finds the version the push registered
        lease.check()
        result = call_deploy_trigger(cfg, version, next_version, nxt, env_object, code_prefix,
                                     tags.get(names.GIT_SHA_TAG, ""), trigger,
                                     config_hash=tags.get(names.CONFIG_HASH_TAG))  # as pushed, not this copy's
        registry.set_tags(mlflow, cfg.name, version, {waiting_tag: f"{result}, {names.APPROVED_PREFIX}{actor()}"})
        event = record(store, cfg.name, cfg.stand.name, {"action": "approve", "to_stand": nxt.name,
                                                          "version": version, "trigger": result, "reason": reason})
    from mlops_module.release.describe import describe

    describe(mlflow, cfg.name, version, cfg.stand.name, log)
    if log:
        log(f"{cfg.name}: version {version} approved for {nxt.name}; its deploy trigger: {result}")
    return event


def _check_copies(cfg: ModelConfig, version: str, nxt: Stand, store: Storage, next_store: Storage, env_object: str,
                  code_prefix: str) -> None:
    """The environment archive and the code package on ``nxt``, read and checked against their recorded checksums
    (every object the push copied, and any there beside them); PromotionError naming the key and both checksums."""
    prefix = code_prefix + "/"
    marker = prefix + names.CODE_ZIP  # uploaded last: without it the package is unfinished
    keys = sorted({marker, *store.list_keys(prefix), *next_store.list_keys(prefix)})
    try:
        for key in [env_object, *keys]:
            next_store.verify(key)
    except IntegrityError as exc:
        again = f"mlops promote {cfg.source.name} --stand {cfg.stand.name} --version {version}"
        raise PromotionError(f"{cfg.name} version {version} is not approved for {nxt.name}: {exc}; its deploy "
                             f"trigger is not called. Push it again: `{again}` copies what is missing or "
                             "damaged") from exc
