"""Who moved a stand's alias, when and why (MLflow keeps no alias history), and the lock that serialises moves."""

from __future__ import annotations

import datetime
import getpass
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from mlops_module import names
from mlops_module.errors import PromotionError
from mlops_module.kinds import Log
from mlops_module.locking import Lease, lock
from mlops_module.storage import LockBusy, Storage, parse_json_object


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def actor() -> str:
    """Who or what acts: ``$MLOPS_ACTOR``; inside an Airflow task ``airflow:<dag_id>/<run_id>``; in a Jenkins
    build ``jenkins:<user or job>#<build>``; else ``<user>@<host>``."""
    env = os.environ
    if env.get("MLOPS_ACTOR"):
        return env["MLOPS_ACTOR"]
    if env.get("AIRFLOW_CTX_DAG_ID") and env.get("AIRFLOW_CTX_DAG_RUN_ID"):
        return names.airflow_actor(env["AIRFLOW_CTX_DAG_ID"], env["AIRFLOW_CTX_DAG_RUN_ID"])
    if env.get("JENKINS_URL") and env.get("BUILD_NUMBER"):
        return f"jenkins:{env.get('BUILD_USER_ID') or env.get('JOB_NAME', '?')}#{env['BUILD_NUMBER']}"
    return f"{getpass.getuser()}@{socket.gethostname()}"


@contextmanager
def promotion_lock(store: Storage, model: str, wait_seconds: float = 60.0, *, stand: str | None = None,
                   log: Log | None = None, lease_seconds: float | None = None,
                   clock: Callable[[], float] = time.time) -> Iterator[Lease]:
    """One promotion, approval or rollback of a model at a time, across machines (see :func:`locking.lock`).

    Yields the lease: ``lease.check()`` raises LockLost once the lock was taken from this holder. A refusal
    names the holder, its age, when it becomes stale and how ``mlops unlock --stand <stand>`` removes it.
    """
    where = f"--stand {stand or '<stand>'}"
    with ExitStack() as stack:
        try:
            lease = stack.enter_context(lock(
                store, names.promotion_lock_key(model), f"another promotion, approval or rollback of {model} is "
                "in flight", wait_seconds, holder=actor(), lease_seconds=lease_seconds, clock=clock, log=log,
                unlock_hint=f"If its holder is gone for sure (killed, machine lost), `mlops unlock {where}` "
                            "removes it now.",
                lost_hint=f"check `mlops status` and `mlops history {where}`, then run it again"))
        except LockBusy as exc:
            raise PromotionError(f"{exc} Otherwise try again when it has finished.") from exc
        yield lease


def _read_json(store: Storage, key: str) -> dict[str, Any] | None:
    return parse_json_object(store.read_bytes(key) or b"")


def record(store: Storage, model: str, stand: str, event: dict[str, Any]) -> dict[str, Any]:
    event = {"model": model, "stand": stand, "at": now(), "by": actor(), **event}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    store.put_bytes(f"{names.history_prefix(model, stand)}{stamp}-{uuid.uuid4().hex[:8]}.json",
                    json.dumps(event, sort_keys=True).encode())
    return event


# What each kind of record must carry to be read at all; the others' fields are optional.
REQUIRED = {"promote": ("to_version",), "rollback": ("to_version",), "refused": ("to_version",),
            "held": ("to_version",), "rejected": ("to_version",), "push": ("version", "to_stand"),
            "approve": ("version", "to_stand")}


def problem(event: Any) -> str | None:
    """Why a history record can't be used (not an object, no action or time, a field its action needs), or None."""
    if not isinstance(event, dict):
        return "not a JSON object"
    missing = [f for f in ("action", "at", *REQUIRED.get(str(event.get("action")), ()))
               if not isinstance(event.get(f), (str, int)) or event.get(f) == ""]
    return f"lacks {', '.join(missing)}" if missing else None


def history(store: Storage, model: str, stand: str, warn: Log | None = None) -> list[dict[str, Any]]:
    """Every recorded event on a stand, oldest first. A record that does not parse or lacks what its action needs
    (written by hand, by another tool, cut short) is skipped, named through ``warn`` (default: the ``mlops``
    logger), so one bad file never stops history, status or a promotion."""
    events = []
    for key in store.list_keys(names.history_prefix(model, stand)):
        raw = store.read_bytes(key)
        event = parse_json_object(raw or b"")
        why = "unreadable JSON" if event is None else problem(event)
        if event is None or why:
            message = f"skipped history record {store.url(key)}: {why}"
            (warn or logging.getLogger("mlops").warning)(message)
            continue
        events.append(event)
    return events


def last_move(store: Storage, model: str, stand: str) -> str | None:
    moves = [e for e in history(store, model, stand) if e.get("action") in ("promote", "rollback")]
    return str(moves[-1]["to_version"]) if moves else None


def event_line(event: dict[str, Any]) -> str:
    """One history event as a line of ``mlops history``: when, what, which versions (or whose lock), by whom,
    why; control characters escaped (:func:`printable`), so a reason can't forge lines or drive the terminal."""
    action = str(event.get("action"))
    if action == "unlock":
        what = f"lock of {event.get('holder') or 'unknown holder'} ({event.get('why') or 'removed'})"
    else:
        what = f"{event.get('from_version') or '-'} -> {event.get('to_version') or event.get('version')}"
        if action in ("push", "approve"):
            what += f" to {event.get('to_stand')} ({event.get('trigger')})"
    return printable(f"{event.get('at')}  {action:<8} {what:<10}  by {event.get('by')}  "
                     f"{event.get('reason', '')}".rstrip())


def printable(value: Any) -> str:
    """A field for text output: control characters (newlines, terminal escapes) shown escaped, never obeyed, so
    a reason can't forge lines of ``mlops history`` or recolour a terminal."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
