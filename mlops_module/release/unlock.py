"""``mlops unlock``: the operator's way out of a stuck promotion lock, recorded in the stand's history.

Rarely needed: a lock not renewed for its lease is taken over by the next promotion, and one whose holder's
process is gone from the same machine at once (:mod:`mlops_module.locking`). This is for the rest: a holder on
a machine that was lost, a lease configured long, a person who wants to see who holds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlops_module import names
from mlops_module.errors import PromotionError
from mlops_module.locking import Identity, configured_lease, read_holder, why_free
from mlops_module.release.history import record
from mlops_module.storage import Storage


def unlock(store: Storage, model: str, stand: str, *, force: bool = False, reason: str = "",
           clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Remove ``model``'s promotion lock from ``stand``'s storage if it is stale or its holder is provably gone
    (any lock with ``force``), and record who removed whose lock and why. ``removed`` False: there was none."""
    key = names.promotion_lock_key(model)
    url = store.url(key)
    raw = store.read_bytes(key)
    now = clock()
    holder = None if raw is None else read_holder(store, key, raw, now, configured_lease())
    if raw is None or holder is None:
        return {"action": "unlock", "lock": url, "removed": False}
    why = why_free(holder, Identity.this_process(), now)
    if not why and not force:
        raise PromotionError(
            f"the promotion lock {url} is {holder.describe(now)}. It looks alive: a promote, approve or rollback of "
            f"{model} may be running (see `mlops history --stand {stand}` once it ends). Wait for it: it is taken "
            "over automatically once stale. Use --force only when you are sure its holder is gone (its machine "
            "lost, its process killed): removing a live lock lets two promotions run at once")
    if not store.remove_if_same(key, raw):
        if store.read_bytes(key) is None:
            return {"action": "unlock", "lock": url, "removed": False}
        raise PromotionError(f"the promotion lock {url} changed while it was being removed (its holder renewed or "
                             f"another took it); look again: `mlops unlock --stand {stand}`")
    event = record(store, model, stand, {"action": "unlock", "lock": url, "holder": holder.summary(),
                                         "held": holder.describe(now), "why": why or "forced (--force)",
                                         "reason": reason or "mlops unlock"})
    return {**event, "removed": True}
