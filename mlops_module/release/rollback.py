"""``mlops rollback``: the stand's alias back on the previous good version, recorded."""

from __future__ import annotations

from typing import Any

from mlops_module import names
from mlops_module.errors import PromotionError
from mlops_module.kinds import Log
from mlops_module.release import registry
from mlops_module.release.history import promotion_lock, record
from mlops_module.release.promotion import trusted_gate
from mlops_module.spec.config import ModelConfig
from mlops_module.storage import Storage, storage_of


def rollback(cfg: ModelConfig, to: str | None = None, *, mlflow: registry.RegistryClient | None = None,
             store: Storage | None = None, reason: str = "rollback", log: Log | None = None) -> dict[str, Any]:
    """Point the stand's alias back at the previous good version (or ``to``), and record it."""
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    store = store or storage_of(cfg.stand)
    stand = cfg.stand.name
    with promotion_lock(store, cfg.name, stand=stand, log=log) as lease:
        current = registry.alias_version(mlflow, cfg.name, stand)
        target = to
        if target is None:
            if current is None:
                raise PromotionError(f"{cfg.name} has no version on stand {stand}; nothing to roll back")
            target = registry.version_tags(mlflow, cfg.name, current).get(names.previous_version_tag(stand))
            if not target:
                raise PromotionError(f"{cfg.name} version {current} on {stand} has no recorded previous version; "
                                     "name one with --to")
        target = str(target)
        try:  # the gate's record on the version's run (one artifact read), not a tag anyone can set
            trusted_gate(cfg, mlflow, target)
        except PromotionError as exc:
            raise PromotionError(f"refusing to roll back {cfg.name} on {stand} to version {target}: {exc}") from exc
        if target == current:
            return {"action": "rollback", "from_version": current, "to_version": target, "changed": False}
        lease.check()
        mlflow.set_registered_model_alias(cfg.name, stand, target)
        if registry.alias_version(mlflow, cfg.name, stand) != target:
            raise PromotionError(f"the {stand} alias of {cfg.name} was moved by someone else meanwhile")
        event = record(store, cfg.name, stand, {"action": "rollback", "from_version": current, "to_version": target,
                                                 "reason": reason})
    from mlops_module.release.describe import describe  # when: the history's rollback event

    for version in (target, current):
        if version:
            describe(mlflow, cfg.name, version, stand, log)
    if log:
        log(f"{cfg.name}: alias {stand} {current} -> {target} (rollback)")
    return {**event, "changed": True}
