"""Who moved a stand's alias, when and why (MLflow keeps no alias history), and the lock that serialises moves."""

from __future__ import annotations

import datetime
import getpass
import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlops_module import names
from mlops_module.errors import PromotionError
from mlops_module.storage import LockBusy, Storage, lock, parse_json_object


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def actor() -> str:
    return os.environ.get("MLOPS_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


@contextmanager
def promotion_lock(store: Storage, model: str, wait_seconds: float = 60.0) -> Iterator[None]:
    """One promotion of a model at a time, across machines (see :func:`storage.lock`)."""
    try:
        with lock(store, names.promotion_lock_key(model), f"another promotion of {model} is in flight", wait_seconds,
                  holder=actor()):
            yield
    except LockBusy as exc:
        raise PromotionError(f"{exc}; try again when it has finished") from exc


def _read_json(store: Storage, key: str) -> dict[str, Any] | None:
    return parse_json_object(store.read_bytes(key) or b"")


def record(store: Storage, model: str, stand: str, event: dict[str, Any]) -> dict[str, Any]:
    event = {"model": model, "stand": stand, "at": now(), "by": actor(), **event}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    store.put_bytes(f"{names.history_prefix(model, stand)}{stamp}-{uuid.uuid4().hex[:8]}.json",
                    json.dumps(event, sort_keys=True).encode())
    return event


def history(store: Storage, model: str, stand: str) -> list[dict[str, Any]]:
    """Every recorded alias move on a stand, oldest first."""
    events = []
    for key in store.list_keys(names.history_prefix(model, stand)):
        event = _read_json(store, key)
        if event:
            events.append(event)
    return events


def last_move(store: Storage, model: str, stand: str) -> str | None:
    moves = [e for e in history(store, model, stand) if e.get("action") in ("promote", "rollback")]
    return str(moves[-1]["to_version"]) if moves else None
