"""``mlops status``: where a model stands on every stand of the chain, read from each stand's own registry and
storage (no stand knows the others' state: this asks each).

Per stand: the alias holder, its verdict there and when (and how) it took the alias; versions in acceptance
(pushed here, not yet gated here); approvals waiting (a push held for ``approval: manual``, or a retrain held by
the stand's policy); the last version rejected here and why; the last monitoring decision. A stand that can't be
read says so in its row, and the others are still shown.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops_module import names
from mlops_module.release import registry
from mlops_module.release.history import history, printable
from mlops_module.release.promotion import AWAITING_APPROVAL
from mlops_module.spec.config import ModelConfig
from mlops_module.storage import parse_json_object, storage_of


@dataclass
class StandStatus:
    stand: str
    alias: str | None = None
    verdict: str | None = None
    moved_at: str | None = None
    path: str | None = None
    in_acceptance: list[str] = field(default_factory=list)
    awaiting_approval: list[str] = field(default_factory=list)
    last_rejected: str | None = None
    last_rejected_why: str | None = None
    last_decision: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(chain: list[ModelConfig]) -> list[StandStatus]:
    """One row per stand, in chain order (``chain``: the config resolved on each stand)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a stand that's down: say so, don't hang
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    rows = []
    for i, cfg in enumerate(chain):
        row = StandStatus(cfg.stand.name)
        try:
            _registry_state(cfg, row, chain[i - 1] if i > 0 else None)
        except Exception as exc:  # one stand down must not hide the others
            row.error = f"registry {cfg.stand.mlflow_tracking_uri}: {str(exc).splitlines()[0][:200]}"
        try:
            row.last_decision = _last_decision(cfg)
        except Exception as exc:
            row.error = (row.error + "; " if row.error else "") + f"storage: {str(exc).splitlines()[0][:200]}"
        rows.append(row)
    return rows


def _registry_state(cfg: ModelConfig, row: StandStatus, previous: ModelConfig | None) -> None:
    stand = cfg.stand.name
    mlflow = registry.client(cfg.stand.mlflow_tracking_uri)
    held_pushes: set[str] = set()  # source versions whose push waits for a person: not in acceptance yet
    if previous is not None and cfg.stand.approval == "manual":
        before = registry.client(previous.stand.mlflow_tracking_uri)
        for v in before.search_model_versions(f"name = '{cfg.name}'"):
            if dict(v.tags or {}).get(names.pushed_tag(stand)) == AWAITING_APPROVAL:
                row.awaiting_approval.append(f"{v.version} of {previous.stand.name} (push)")
                held_pushes.add(str(v.version))
    row.alias = registry.alias_version(mlflow, cfg.name, stand)
    versions = sorted(mlflow.search_model_versions(f"name = '{cfg.name}'"), key=lambda v: int(v.version))
    for v in versions:
        tags = dict(v.tags or {})
        number = str(v.version)
        if number == row.alias:
            row.verdict = tags.get(names.gate_tag(stand))
        pushed_here = (tags.get(names.source_version_tag(previous.stand.name)) is not None if previous and
                       previous.stand.mlflow_tracking_uri != cfg.stand.mlflow_tracking_uri
                       else previous is not None and tags.get(names.pushed_tag(stand)) not in
                       (None, AWAITING_APPROVAL))
        source = tags.get(names.source_version_tag(previous.stand.name)) if previous else None
        if pushed_here and names.gate_tag(stand) not in tags and (source or number) not in held_pushes:
            row.in_acceptance.append(number)
        if tags.get(names.held_tag(stand)) == names.AWAITING:
            row.awaiting_approval.append(f"{number} (retrained here)")
        if tags.get(names.gate_tag(stand)) == names.FAILED:
            row.last_rejected = number
    if row.last_rejected:  # why: the gate's record (one read, of the last rejected version only)
        row.last_rejected_why = registry.gate_summary(mlflow, cfg.name, row.last_rejected, stand)
    if row.alias:  # since when and how: the stand's history (the alias moves are recorded there)
        moves = [e for e in history(storage_of(cfg.stand), cfg.name, stand)
                 if e.get("action") in ("promote", "rollback") and str(e.get("to_version")) == row.alias]
        if moves:
            last = moves[-1]
            row.moved_at = str(last.get("at"))
            row.path = last.get("path") or (f"rolled back from {last.get('from_version')}"
                                            if last.get("action") == "rollback" else None)


def _last_decision(cfg: ModelConfig) -> str | None:
    store = storage_of(cfg.stand)
    keys = sorted(store.list_keys(names.decisions_prefix(cfg.name, cfg.stand.name)))
    if not keys:
        return None
    record = parse_json_object(store.read_bytes(keys[-1]) or b"") or {}
    return f"{record.get('action', '?')} at {record.get('at', '?')}: {str(record.get('reason', ''))[:120]}"


def table(rows: list[StandStatus]) -> str:
    """The rows as a text table, then one line per detail that doesn't fit a column."""
    head = f"{'stand':<6} {'alias':<6} {'verdict':<8} {'since':<26} {'in acceptance':<14} {'awaiting approval':<24}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.stand:<6} {r.alias or '-':<6} {r.verdict or '-':<8} {r.moved_at or '-':<26} "
                     f"{', '.join(r.in_acceptance) or '-':<14} {', '.join(r.awaiting_approval) or '-':<24}".rstrip())
    for r in rows:
        if r.path:
            lines.append(f"{r.stand}: version {r.alias} {r.path}")
        if r.last_rejected:
            lines.append(f"{r.stand}: version {r.last_rejected} rejected: {r.last_rejected_why or ''}")
        if r.last_decision:
            lines.append(f"{r.stand}: last monitoring decision {r.last_decision}")
        if r.error:
            lines.append(f"{r.stand}: cannot read: {r.error}")
    return "\n".join(printable(line) for line in lines)  # reasons and tags are anyone's text: never obeyed


def as_json(rows: list[StandStatus]) -> str:
    return json.dumps([r.as_dict() for r in rows], indent=2)
