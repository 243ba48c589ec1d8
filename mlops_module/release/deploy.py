"""Deployment: publish a rendered bundle to a stand's DAG location, atomically for the scheduler.

A stand's ``airflow.dags`` is a directory (a shared volume, a git-sync checkout, the local stand)
or an ``s3://`` prefix that a sidecar or Airflow's S3 DAG bundle syncs. Each model and stand owns
one directory below it, ``<dags>/<model>/<stand>/``, holding exactly one bundle (DAG files,
manifests, the config copy, the index); nothing outside ``<dags>/<model>/`` is ever touched.
``<dags>/<model>/.airflowignore`` hides ``_mlops_staging/``, where a new bundle is written in full
before it goes live, from the DAG processor.

- **directory**: the staged bundle and the live one are swapped in one ``renameat2`` exchange
  (Linux): the scheduler sees the old bundle or the new one, never a mix (elsewhere, two renames).
- **s3**: objects become visible one PUT at a time and S3 has no multi-object transaction, so the
  bundle is staged first (a failure there changes nothing live), then copied into place in an
  order that never shows a DAG without its manifests: manifests and config first, DAG files next,
  the index last; removed DAG files go before what they read. A failure in the copy phase leaves
  every DAG file with the files it reads; running the deploy again finishes it.

The plan (added, changed with a diff, removed) is computed before anything is written and
printed for ``--dry-run`` and real runs alike; an unchanged bundle is a no-op. Deploys of the
same model and stand are serialised by a lock in the staging area.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import json
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_module import names
from mlops_module.building.render import BUNDLE_INDEX, Bundle, file_digest, write_bundle
from mlops_module.errors import MlopsError
from mlops_module.kinds import Log
from mlops_module.locking import lock
from mlops_module.release.history import actor
from mlops_module.storage import FileStorage, Storage, StorageError, open_storage

# No model or stand name can contain "_" (DNS-1035 labels), so this name hides nothing else; a plain
# name is the same rule in Airflow's "glob" syntax (a name at any depth) and "regexp" syntax.
STAGING = names.DEPLOY_STAGING
IGNORE_FILE = ".airflowignore"
IGNORE_RULES = f"# Written by `mlops deploy`: bundles being staged are not DAGs yet.\n{STAGING}\n"



class DeployError(MlopsError):
    """The bundle could not be published; the message says what is live now."""


@dataclass(frozen=True)
class Change:
    path: str  # relative to the bundle directory
    action: str  # "add", "change" or "remove"
    diff: str = ""  # unified diff, for "change"


@dataclass(frozen=True)
class Plan:
    model: str
    stand: str
    location: str  # where the bundle lives: <dags>/<model>/<stand>
    changes: tuple[Change, ...]
    unchanged: tuple[str, ...] = field(default=())

    @property
    def noop(self) -> bool:
        return not self.changes

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "stand": self.stand, "location": self.location, "noop": self.noop,
                "added": [c.path for c in self.changes if c.action == "add"],
                "changed": [c.path for c in self.changes if c.action == "change"],
                "removed": [c.path for c in self.changes if c.action == "remove"],
                "unchanged": list(self.unchanged),
                "diffs": {c.path: c.diff for c in self.changes if c.diff}}

    def describe(self) -> str:
        """The plan for people: one line per file, the diff of each changed file indented below it."""
        lines = [f"{self.model} on stand {self.stand} -> {self.location}:"]
        marks = {"add": "+", "change": "~", "remove": "-"}
        for c in self.changes:
            lines.append(f"  {marks[c.action]} {c.path}")
            lines += [f"      {line}" for line in c.diff.splitlines()]
        if self.unchanged:
            lines.append(f"  = {len(self.unchanged)} file(s) unchanged")
        if self.noop:
            lines.append("  nothing to do: the live bundle is this one")
        return "\n".join(lines)


def plan(bundle: Bundle, live: Mapping[str, str], location: str) -> Plan:
    """What publishing ``bundle`` over ``live`` (path -> text) changes. Pure."""
    changes: list[Change] = []
    for path, text in bundle.files.items():
        if path not in live:
            changes.append(Change(path, "add"))
        elif live[path] != text:
            diff = difflib.unified_diff(live[path].splitlines(), text.splitlines(), f"live/{path}", f"new/{path}",
                                        lineterm="")
            changes.append(Change(path, "change", "\n".join(diff)))
    changes += [Change(path, "remove") for path in sorted(set(live) - set(bundle.files))]
    unchanged = tuple(p for p, t in bundle.files.items() if live.get(p) == t)
    return Plan(bundle.model, bundle.stand, location, tuple(changes), unchanged)


def is_dag_file(path: str) -> bool:
    return "/" not in path and path.endswith(".py")


class Target(ABC):
    """One kind of DAG location; this model's files live in ``<dags>/<model>/``, the bundle in ``<stand>/``."""

    def __init__(self, dags: str, model: str, stand: str) -> None:
        self.dags, self.model, self.stand = dags.rstrip("/"), model, stand

    @property
    def location(self) -> str:
        return f"{self.dags}/{self.model}/{self.stand}"

    @property
    @abstractmethod
    def store(self) -> Storage:
        """``<dags>`` as storage: for the lock, the ignore file and (S3) the objects."""

    def live(self) -> dict[str, str]:
        """The files of the bundle that is live now, as its index lists them (empty when none is).

        Only listed files count: what Airflow leaves beside them (``__pycache__``) is not ours to plan
        with, and an object we did not write is never removed.
        """
        index = self.read(BUNDLE_INDEX)
        if index is None:
            return {}
        try:
            listed = list(json.loads(index)["files"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DeployError(f"{self.location}/{BUNDLE_INDEX} is not a bundle index ({exc}): move the "
                              "directory away, deploy never replaces what it did not write") from exc
        files = {BUNDLE_INDEX: index}
        for rel in listed:
            text = self.read(rel)
            if text is not None:
                files[rel] = text
        return files

    def read(self, rel: str) -> str | None:
        data = self.store.read_bytes(f"{self.model}/{self.stand}/{_safe(rel)}")
        return None if data is None else data.decode("utf-8", errors="replace")

    def ensure_ignore_file(self) -> None:
        key = f"{self.model}/{IGNORE_FILE}"
        if (self.store.read_bytes(key) or b"").decode(errors="replace") != IGNORE_RULES:
            self.store.put_bytes(key, IGNORE_RULES.encode())

    @abstractmethod
    def publish(self, bundle: Bundle, plan: Plan, log: Log) -> None:
        """Make ``bundle`` the live one (the plan says what differs)."""


class DirectoryTarget(Target):
    def __init__(self, dags: str, model: str, stand: str) -> None:
        super().__init__(dags, model, stand)
        self.root = Path(dags) / model

    @property
    def store(self) -> Storage:
        return FileStorage(f"file://{Path(self.dags).resolve()}")

    def live(self) -> dict[str, str]:
        out = self.root / self.stand
        if out.is_dir() and not (out / BUNDLE_INDEX).is_file() and any(out.iterdir()):
            raise DeployError(f"{out} is not empty and was not written by `mlops deploy`: move it away, "
                              "deploy never replaces what it did not write")
        return super().live()

    def publish(self, bundle: Bundle, plan: Plan, log: Log) -> None:
        staging = self.root / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        write_bundle(bundle, self.root / self.stand, staging=staging)
        log(f"swapped the new bundle into {self.location}")


class S3Target(Target):
    def __init__(self, dags: str, model: str, stand: str, endpoint_url: str | None = None) -> None:
        super().__init__(dags, model, stand)
        self._store = open_storage(self.dags, endpoint_url)

    @property
    def store(self) -> Storage:
        return self._store

    def publish(self, bundle: Bundle, plan: Plan, log: Log) -> None:
        store, live = self.store, f"{self.model}/{self.stand}"
        staged = f"{self.model}/{STAGING}/{self.stand}-{uuid.uuid4().hex[:12]}"
        writes = [c.path for c in plan.changes if c.action != "remove"]
        try:
            for path in writes:  # 1. stage: nothing live changes
                store.put_bytes(f"{staged}/{path}", bundle.files[path].encode("utf-8"))
        except BaseException:
            _delete_quietly(store, [f"{staged}/{p}" for p in writes])
            raise
        log(f"staged {len(writes)} file(s) under {self.dags}/{staged}/")
        try:
            # 2. into place: what DAG files read, then the DAG files, the index last
            order = sorted(writes, key=lambda p: (p == BUNDLE_INDEX, is_dag_file(p), p))
            for path in order:
                store.duplicate(f"{staged}/{path}", f"{live}/{path}")
            # 3. removed: DAG files first, then what they read
            removed = sorted((c.path for c in plan.changes if c.action == "remove"),
                             key=lambda p: (not is_dag_file(p), p))
            for path in removed:
                store.delete(f"{live}/{path}")
        finally:
            _delete_quietly(store, [f"{staged}/{p}" for p in writes])
        log(f"copied {len(writes)} file(s) into {self.location}, removed {len(removed)}")


def _delete_quietly(store: Storage, keys: list[str]) -> None:
    for key in keys:
        with contextlib.suppress(StorageError):
            store.delete(key)


def _safe(rel: str) -> str:
    """A path inside the bundle: relative, no ``..``, no backslashes (a hand-edited index is not trusted)."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise DeployError(f"{rel!r} is not a path inside a bundle")
    return rel


def target_for(dags: str, model: str, stand: str, endpoint_url: str | None = None) -> Target:
    if dags.startswith("s3://"):
        return S3Target(dags, model, stand, endpoint_url)
    if dags.startswith("file://"):
        dags = dags[len("file://"):]
    return DirectoryTarget(os.path.abspath(dags), model, stand)


def read_bundle(directory: Path) -> Bundle:
    """A bundle ``mlops render`` wrote, checked against its index (so what was reviewed is what ships)."""
    index_file = directory / BUNDLE_INDEX
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        files = {rel: (directory / _safe(rel)).read_text(encoding="utf-8") for rel in index["files"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DeployError(f"{directory} is not a bundle `mlops render` wrote ({exc})") from exc
    for rel, digest in index["files"].items():
        if file_digest(files[rel]) != digest:
            raise DeployError(f"{directory / rel} changed after `mlops render` wrote it; render again")
    files[BUNDLE_INDEX] = index_file.read_text(encoding="utf-8")
    return Bundle(index["model"], index["stand"], dict(sorted(files.items())))


def fetch_package(store: Storage, code_prefix: str, dest: Path) -> Path:
    """Download a code package (``mlops package``'s upload, or what a push copied) into ``dest`` as a model
    repository: its config, requirements and scripts; returns the config's path."""
    from mlops_module.building.code_package import package_manifest

    prefix = code_prefix.rstrip("/") + "/"
    keys = store.list_keys(prefix)
    manifest = package_manifest(store, code_prefix.rstrip("/"))
    if not keys or not manifest.get("config"):
        raise DeployError(f"{store.url(prefix)} is not a code package `mlops package` recorded (no "
                          f"{names.PACKAGE_FILE} with its config): package it again with this version of mlops")
    for key in keys:
        rel = key[len(prefix):]
        if rel != names.CODE_ZIP and not rel.endswith("/"):  # an S3 console's folder marker is no file
            local = dest / _safe(rel)
            local.parent.mkdir(parents=True, exist_ok=True)
            store.download(key, local)
    return dest / _safe(str(manifest["config"]))


def deploy(bundle: Bundle, dags: str, *, endpoint_url: str | None = None, dry_run: bool = False,
           log: Log = print, artifacts: Storage | None = None, create_folder: bool = True) -> Plan:
    """Publish ``bundle`` to the DAG location ``dags`` (directory or s3:// prefix); returns the plan.

    With ``artifacts`` (the stand's storage), refuses a bundle whose environment archive or code
    package is not there yet: its DAGs would fail at their first run. Without ``create_folder``, a
    DAG directory that does not exist is an error (an unmounted volume), not something to create.
    """
    target = target_for(dags, bundle.model, bundle.stand, endpoint_url)
    if isinstance(target, DirectoryTarget) and not Path(target.dags).is_dir():
        if not create_folder:
            raise DeployError(f"the DAG folder {target.dags} does not exist here: is the stand's volume mounted on "
                              "this machine? (create it first if it is meant to start empty)")
        if not dry_run:
            Path(target.dags).mkdir(parents=True, exist_ok=True)
    try:
        bundle = with_first_deployment(bundle, target.live())
        current = plan(bundle, target.live(), target.location)
        log(current.describe())
        if current.noop:
            return current
        if artifacts is not None:
            try:
                _check_artifacts(bundle, artifacts)
            except DeployError as exc:
                if not dry_run:
                    raise
                log(f"warning: a real deploy would stop here: {exc}")
        if dry_run:
            return current
        with lock(target.store, names.deploy_lock_key(bundle.model, bundle.stand),
                  f"another deploy of {bundle.model} to {bundle.stand} is in flight", holder=actor(), log=log):
            target.ensure_ignore_file()
            live = target.live()  # again, under the lock
            bundle = with_first_deployment(bundle, live)
            current = plan(bundle, live, target.location)
            if not current.noop:
                target.publish(bundle, current, log)
    except (OSError, StorageError, MlopsError) as exc:
        if isinstance(exc, DeployError):
            raise
        raise DeployError(f"deploy of {bundle.model} to {target.location} failed: {exc}. The bundle that was "
                          "live stays live (for s3://, files already copied stay: deploy again to finish)") from exc
    log(f"deployed {bundle.model} to {bundle.stand}: {current.count('add')} added, {current.count('change')} changed, "
        f"{current.count('remove')} removed")
    return current


def with_first_deployment(bundle: Bundle, live: Mapping[str, str],
                          now: datetime.datetime | None = None) -> Bundle:
    """``bundle`` with its index saying when the model's DAGs first went live on the stand: the live bundle's
    time when there is one (so an unchanged bundle stays a no-op), else now. A scheduled run of an interval that
    ended before it is skipped (``workflows.stale_interval``): unpausing a new DAG doesn't score old data."""
    first = None
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        first = json.loads(live.get(BUNDLE_INDEX) or "{}").get(names.BUNDLE_FIRST_DEPLOYED)
    index = json.loads(bundle.files[BUNDLE_INDEX])
    index[names.BUNDLE_FIRST_DEPLOYED] = first or (now or datetime.datetime.now(datetime.timezone.utc)).isoformat(
        timespec="seconds")
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    return Bundle(bundle.model, bundle.stand, {**bundle.files, BUNDLE_INDEX: text})


def _check_artifacts(bundle: Bundle, store: Storage) -> None:
    index = json.loads(bundle.files[BUNDLE_INDEX])
    missing = [index["env_object"]] if store.stat(index["env_object"]) is None else []
    if not store.list_keys(index["code_prefix"] + "/"):
        missing.append(index["code_prefix"] + "/")
    if missing:
        raise DeployError(f"{', '.join(store.url(m) for m in missing)} not found: the DAGs would fail at their first "
                          f"run. Run `mlops package --stand {bundle.stand}` first (or promote a version there)")
