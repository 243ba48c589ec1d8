"""Locks in a stand's storage that heal: one holder at a time across machines, and never stuck for long.

The lock is one object, created whole only if absent (``Storage.create_exclusive``), saying who holds it::

    {"token", "by", "host", "boot", "pid", "started", "at", "renewed", "lease"}

- **Lease.** While the ``with`` body runs, a thread rewrites ``renewed`` every lease/3, only if the object still
  holds this holder's token (``replace_if_same``). A lock not renewed for ``lease`` seconds is stale. The lease is
  ``MLOPS_LOCK_LEASE_SECONDS`` (default 120), so a holder that died elsewhere blocks for two minutes at most.
- **The same verdict for every waiter.** Staleness is read from the lock itself (``renewed + lease``), not from
  when a waiter first saw it; a lock that is empty, not JSON or without a usable timestamp is judged by the
  storage's own timestamp of the object plus the waiter's lease.
- **A holder provably gone is taken over at once:** same machine (host name and boot id) and its process no
  longer runs (or the pid now belongs to a process started at another time), or it is this very process but
  the token is no longer held here (a release that failed).
- **Takeover** removes the object only if it still holds what the waiter read (``remove_if_same``), so one waiter
  wins. Release does the same, so a holder never removes a lock it lost.
- **Errors.** Storage failures surface as StorageError; a release that fails never hides the body's own error
  (it becomes a note on it); a lost lease raises LockLost from ``Lease.check()`` and on leaving the ``with``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_module import names
from mlops_module.errors import UsageError
from mlops_module.kinds import Log
from mlops_module.storage import LockBusy, LockLost, Storage, StorageError, parse_json_object

Clock = Callable[[], float]

LEASE_SECONDS = 120.0  # default lease: what a lock guards takes seconds, a renewal every 40 s is cheap
MAX_LEASE_SECONDS = 24 * 3600.0  # a longer lease (or a lock claiming one) would block a stand for days
LEGACY_LEASE_SECONDS = 15 * 60.0  # a lock without "lease" was written by an mlops that never renewed
POLL_SECONDS = 0.2
FIRST_PROGRESS_SECONDS, PROGRESS_EVERY_SECONDS = 5.0, 10.0

_HELD: set[str] = set()  # tokens of the locks this process holds (or is taking): a same-pid lock not here is gone


def configured_lease() -> float:
    """``$MLOPS_LOCK_LEASE_SECONDS``, else LEASE_SECONDS."""
    raw = os.environ.get(names.LOCK_LEASE_ENV, "").strip()
    if not raw:
        return LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 1 <= value <= MAX_LEASE_SECONDS:
        raise UsageError(f"{names.LOCK_LEASE_ENV}={raw!r}: expected a number of seconds from 1 to "
                         f"{MAX_LEASE_SECONDS:.0f}")
    return value


# --- who is this process ------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and start time (clock ticks since boot), from /proc; None without /proc or process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rfind(")") + 2:].split()  # the command name, in parentheses, may hold spaces
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Identity:
    """What tells a holder's process apart from every other: machine, boot, pid and the pid's start time."""

    host: str
    boot: str
    pid: int
    started: int | None

    @classmethod
    def this_process(cls) -> Identity:
        stat = _proc_stat(os.getpid())
        return cls(socket.gethostname(), _boot_id(), os.getpid(), stat[1] if stat else None)


# --- what a lock object says ---------------------------------------------------------------------


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _stamp(at: float) -> str:
    try:
        return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "never"


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@dataclass(frozen=True)
class Holder:
    """A lock object as read, and when it becomes stale: the same for every waiter that reads the same bytes."""

    raw: bytes
    body: dict[str, Any]
    since: float  # when it was taken; for an unreadable lock, when the object was written
    stale_at: float
    problem: str = ""  # why the content could not be used ("is empty", ...): judged by the storage's timestamp

    @property
    def token(self) -> str | None:
        token = self.body.get("token")
        return token if isinstance(token, str) else None

    def who(self) -> str:
        if self.problem:
            return f"nobody known (the lock object {self.problem})"
        by = str(self.body.get("by") or "unknown")
        return f"{by} (host {self.body.get('host', '?')}, pid {self.body.get('pid', '?')})"

    def describe(self, now: float) -> str:
        """Holder, age and when it becomes stale, for refusals and progress lines."""
        age = f"for {_span(now - self.since)}"
        if self.problem:
            age = f"written {_span(now - self.since)} ago by the storage's clock"
        when = "stale now" if self.stale_at <= now else f"in {_span(self.stale_at - now)}"
        return f"held by {self.who()} {age}; stale at {_stamp(self.stale_at)} ({when})"

    def summary(self) -> dict[str, Any]:
        """What a history record keeps of the holder."""
        keep = ("by", "host", "pid", "at", "renewed", "lease")
        return {"problem": self.problem} if self.problem else {k: self.body[k] for k in keep if k in self.body}


def read_holder(store: Storage, key: str, raw: bytes, now: float, lease: float) -> Holder | None:
    """Judge ``raw``, the lock object's bytes; None if the object vanished meanwhile. ``lease`` is the reader's,
    used only for a lock that can't tell its own."""
    body = parse_json_object(raw)
    if body is not None:
        at = _seconds(body.get("at"))
        renewed = _seconds(body.get("renewed", at))
        held_for = _seconds(body.get("lease", LEGACY_LEASE_SECONDS))
        if at is not None and renewed is not None and held_for is not None and 0 < held_for <= MAX_LEASE_SECONDS \
                and renewed <= now + held_for:  # a time in the future beyond one lease: not a timestamp to trust
            return Holder(raw, body, at, renewed + held_for)
    problem = ("is empty" if not raw.strip() else "is not a JSON object" if body is None
               else "has no valid timestamp or lease")
    written = store.modified(key)
    if written is None:
        return None
    return Holder(raw, body or {}, written, written + lease, problem)


def _process_gone(pid: int, started: Any) -> str:
    """Why process ``pid`` of this machine is provably not the holder any more; "" if it may be."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its process {pid} no longer runs on this machine"
    except PermissionError:
        pass  # it runs, as another user
    except OSError:
        return ""
    stat = _proc_stat(pid)
    if stat is None:
        return ""
    if stat[0] in ("Z", "X"):
        return f"its process {pid} has exited"
    if isinstance(started, int) and stat[1] != started:
        return f"its process {pid} has exited (the pid belongs to another process now)"
    return ""


def why_free(holder: Holder, me: Identity, now: float) -> str:
    """Why a waiter may take the lock over now ("" while its holder may be alive): stale, or holder provably gone."""
    if holder.stale_at <= now:
        return f"stale since {_stamp(holder.stale_at)}"
    body = holder.body
    pid = body.get("pid")
    same_machine = body.get("host") == me.host and (not body.get("boot") or not me.boot or body["boot"] == me.boot)
    if holder.problem or not same_machine or isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return ""
    if pid == me.pid and body.get("started") == me.started:
        return "" if holder.token in _HELD else "its holder is this process, which no longer holds it"
    return _process_gone(pid, body.get("started"))


# --- the holder's side ------------------------------------------------------------------------------


def _note(error: BaseException, text: str) -> None:
    """``error.add_note(text)``; on Python 3.10, the same ``__notes__`` list by hand."""
    notes = getattr(error, "__notes__", None)
    error.__notes__ = [*(notes if isinstance(notes, list) else []), text]


@dataclass(eq=False)
class Lease:
    """A held lock, renewed in the background while the ``with`` body runs. ``check()`` raises LockLost once the
    lock was taken over or removed, so long work can stop before it acts on a lock it no longer holds."""

    store: Storage
    key: str
    body: bytes
    lease: float
    clock: Clock
    lost_hint: str = ""
    _lost: str = field(default="", init=False)
    _renewed: float = field(default=0.0, init=False)  # when this holder last wrote the lock, by ``clock``
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return self.store.url(self.key)

    @property
    def lost(self) -> str:
        """Why the lock is no longer this holder's ("" while it is)."""
        return self._lost

    def check(self) -> None:
        if self._lost:
            raise LockLost(self._lost)

    def _lose(self, why: str) -> None:
        if not self._lost:
            self._lost = (f"lost the lock {self.url} while working under it: {why}. What ran meanwhile may have "
                          f"overlapped with the next holder; {self.lost_hint or 'check the outcome and run again'}")

    def start(self) -> None:
        self._renewed = float(json.loads(self.body)["renewed"])
        self._thread = threading.Thread(target=self._run, name=f"lease {self.key}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 3) and not self._lost:
            self.renew()

    def renew(self) -> None:
        """Rewrite ``renewed`` if the lock still holds this holder's bytes; a renewal that can't reach the
        storage is retried until the lease runs out, then the lease counts as lost."""
        now = self.clock()
        data = json.dumps({**json.loads(self.body), "renewed": now}).encode()
        try:
            if self.store.replace_if_same(self.key, self.body, data):
                self.body, self._renewed = data, now
                return
            own = self._own()
            if own is None:
                self._lose(self.taken_by())
            else:
                self.body = own
        except Exception as exc:  # a StorageError, or anything else: this thread must not die silently
            if now - self._renewed > self.lease:
                self._lose(f"it could not be renewed for {_span(now - self._renewed)} (lease {self.lease:g} s): {exc}")

    def _own(self) -> bytes | None:
        """The lock's bytes if they still carry this holder's token: a renewal whose answer was lost (and whose
        retry was refused) did land, and the holder carries on from what it wrote."""
        raw = self.store.read_bytes(self.key)
        body = parse_json_object(raw or b"")
        return raw if raw is not None and body is not None and body.get("token") == json.loads(self.body)["token"] \
            else None

    def release(self) -> bool:
        """Remove the lock if it is still this holder's; True if this call removed it."""
        if self.store.remove_if_same(self.key, self.body):
            return True
        own = None if self._lost else self._own()
        return own is not None and self.store.remove_if_same(self.key, own)

    def taken_by(self) -> str:
        """Who has the lock now, as well as a read can tell."""
        try:
            raw = self.store.read_bytes(self.key)
            holder = None if raw is None else read_holder(self.store, self.key, raw, self.clock(), self.lease)
        except StorageError as exc:
            return f"it changed, and reading it again failed: {exc}"
        if holder is None:
            return "someone removed it (a waiter that judged it stale, or `mlops unlock`)"
        return f"it was taken over and is now {holder.describe(self.clock())}"


# --- taking and releasing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    store: Storage
    key: str
    busy: str
    wait_seconds: float
    lease: float
    clock: Clock
    log: Log | None
    unlock_hint: str


def _acquire(req: _Request, fields: dict[str, Any], me: Identity) -> bytes:
    """Create the lock (``fields``, stamped at each try), taking over a stale one or one whose holder is gone;
    LockBusy once ``wait_seconds`` ran out. Returns the bytes written."""
    url = req.store.url(req.key)
    deadline = time.monotonic() + req.wait_seconds
    progress_at = time.monotonic() + FIRST_PROGRESS_SECONDS
    while True:
        now = req.clock()
        body = json.dumps({**fields, "at": now, "renewed": now}).encode()
        if req.store.create_exclusive(req.key, body):
            return body
        raw = req.store.read_bytes(req.key)
        holder = None if raw is None else read_holder(req.store, req.key, raw, req.clock(), req.lease)
        if raw is None or holder is None:
            continue  # released as we looked: try again at once
        if holder.token == fields["token"]:
            return raw  # our own create landed, though its answer was lost and its retry refused
        now = req.clock()
        why = why_free(holder, me, now)
        if why and req.store.remove_if_same(req.key, raw):
            if req.log:
                req.log(f"took over the lock {url}, {holder.describe(now)}: {why}")
            continue
        if time.monotonic() >= deadline:
            hint = f" {req.unlock_hint}" if req.unlock_hint else ""
            raise LockBusy(f"{req.busy}: the lock {url} is {holder.describe(now)}; waited {req.wait_seconds:g} s. "
                           f"It is taken over automatically once stale.{hint}")
        if req.log and time.monotonic() >= progress_at:
            req.log(f"waiting for the lock {url}, {holder.describe(now)}")
            progress_at += PROGRESS_EVERY_SECONDS
        time.sleep(POLL_SECONDS)


def _release(lease: Lease, req: _Request, error: BaseException | None) -> None:
    """Remove the lock if it is still ours. With ``error`` in flight (the body's), problems become notes on it."""
    lease.stop()
    try:
        removed = lease.release()
    except Exception as exc:  # whatever it was, it must not hide the body's error
        hint = f" {req.unlock_hint}" if req.unlock_hint else ""
        stale_at = _stamp(json.loads(lease.body)["renewed"] + lease.lease)
        problem = StorageError(f"could not release the lock {lease.url}: {exc}. It was left behind and becomes stale "
                               f"at {stale_at} ({lease.lease:g} s after its last renewal), when the next waiter "
                               f"takes it over.{hint}")
        if error is not None:
            _note(error, str(problem))
            return
        raise problem from exc
    if not removed and not lease.lost:
        lease._lose(lease.taken_by())
    if lease.lost:
        if error is not None:
            if str(error) != lease.lost:  # not the body's own lease.check()
                _note(error, lease.lost)
            return
        raise LockLost(lease.lost)


@contextlib.contextmanager
def lock(store: Storage, key: str, busy: str, wait_seconds: float = 60.0, holder: str = "", *,
         lease_seconds: float | None = None, clock: Clock = time.time, log: Log | None = None,
         unlock_hint: str = "", lost_hint: str = "") -> Iterator[Lease]:
    """Hold ``key`` of ``store`` for the ``with`` body, one holder at a time across machines; yields the Lease.

    Waits up to ``wait_seconds`` for a live holder (progress through ``log`` after a few seconds), then raises
    LockBusy naming ``busy``, the holder, its age and when it becomes stale (and ``unlock_hint``). ``holder`` is
    who is asking (recorded in the lock); ``clock`` is when "now" is (for tests); ``lost_hint`` says what to do
    when the lease was lost.
    """
    req = _Request(store, key, busy, wait_seconds, lease_seconds or configured_lease(), clock, log, unlock_hint)
    me, token = Identity.this_process(), uuid.uuid4().hex
    fields = {"token": token, "by": holder, "host": me.host, "boot": me.boot, "pid": me.pid, "started": me.started,
              "lease": req.lease}
    _HELD.add(token)  # before the create: a thread of this process must never judge it gone
    try:
        body = _acquire(req, fields, me)
        lease = Lease(store, key, body, req.lease, clock, lost_hint)
        lease.start()
        try:
            yield lease
        except BaseException as error:
            _release(lease, req, error)
            raise
        _release(lease, req, None)
    finally:
        _HELD.discard(token)
