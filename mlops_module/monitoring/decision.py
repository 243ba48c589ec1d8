"""The retraining decision: a pure function of what monitoring measured, the config and the guards.

``retrain``, ``no_action`` or ``insufficient_data``, always with reasons, and with the window the
train DAG gets in its ``conf`` (``data_interval_start/end``, ``reason``). Guards: no retrain while a
train run is queued or running, none inside the cooldown after the last triggered one, and no
decision at all on fewer rows than ``drift.min_rows`` (PSI is large by chance on small samples).
The monitoring DAG's ``decide`` task calls this; tests call it without Airflow or Spark.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RETRAIN, NO_ACTION, INSUFFICIENT = "retrain", "no_action", "insufficient_data"
MAX_LISTED = 10  # drifted features named in a reason (it becomes a tag; MLflow caps tags at 8000 characters)


@dataclass(frozen=True)
class Decision:
    action: str
    reasons: tuple[str, ...]
    window_start: str | None = None
    window_end: str | None = None
    drifted: tuple[str, ...] = ()
    drifted_share: float | None = None
    dataset_drift: bool = False
    performance_decayed: bool = False
    suppressed_by: str | None = None  # "cooldown" or "train_in_flight" when a retrain was wanted
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def conf(self) -> dict[str, str]:
        """What the train DAG's run gets: its window and why it runs."""
        return {"data_interval_start": self.window_start or "", "data_interval_end": self.window_end or "",
                "reason": self.reason}

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "reasons": list(self.reasons), "drifted": list(self.drifted)}


def _when(text: str) -> datetime.datetime:
    value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def feature_verdicts(features: Sequence[Mapping[str, Any]], method: str, threshold: float,
                     watched: Sequence[str] = ()) -> list[tuple[str, float, bool]]:
    """(name, score, drifted) for the watched features (all when none are named), by the configured method.

    KS has no meaning for a categorical feature: there the Jensen-Shannon distance stands in.
    """
    key = {"psi": "psi", "ks": "ks", "jensenshannon": "js"}[method]
    chosen = [f for f in features if not watched or f["name"] in watched]
    out = []
    for f in chosen:
        value = f.get(key)
        if value is None:
            value = f.get("js") or 0.0
        out.append((str(f["name"]), float(value), float(value) >= threshold))
    return out


def decide(result: Mapping[str, Any], *, method: str, threshold: float, share: float, min_rows: int,
           watched: Sequence[str] = (), performance: Mapping[str, Any] | None = None,
           retrain_on: Sequence[str] = ("drift",), cooldown_seconds: int = 0, window_days: int | None = None,
           now: datetime.datetime, last_trigger: datetime.datetime | None = None,
           train_runs_active: int = 0) -> Decision:
    """Decide from one monitoring result. ``performance`` is the config's {metric, min|max}."""
    window_end = _when(result["window"]["end"])
    window_start = _when(result["window"]["start"])
    rows = int(result.get("current_rows") or 0)
    if rows < min_rows:
        note = f"{result['note']}; " if result.get("note") else ""
        return Decision(INSUFFICIENT, (f"{note}only {rows} rows in the window {window_start.isoformat()} .. "
                                       f"{window_end.isoformat()}; at least {min_rows} are needed to decide "
                                       "(drift.min_rows)",))
    verdicts = feature_verdicts(result.get("features") or [], method, threshold, watched)
    drifted = tuple(name for name, _, d in verdicts if d)
    drifted_share = len(drifted) / len(verdicts) if verdicts else 0.0
    dataset_drift = bool(verdicts) and drifted_share >= share
    measured = result.get("performance") or None
    decayed = False
    perf_text = ""
    labelled = int(measured.get("rows") or 0) if measured else 0
    if performance and measured and measured.get("value") is not None and labelled >= min_rows:
        value = float(measured["value"])
        if performance.get("min") is not None and value < float(performance["min"]):
            decayed, perf_text = True, f"{performance['metric']} {value:.4g} below the minimum {performance['min']}"
        elif performance.get("max") is not None and value > float(performance["max"]):
            decayed, perf_text = True, f"{performance['metric']} {value:.4g} above the maximum {performance['max']}"
    top = [f"{name} {method} {score:.3g}" for name, score, d in sorted(verdicts, key=lambda v: -v[1]) if d]
    scores = ", ".join(top[:MAX_LISTED]) + (f" and {len(top) - MAX_LISTED} more" if len(top) > MAX_LISTED else "")
    common: dict[str, Any] = {"drifted": drifted, "drifted_share": round(drifted_share, 6),
                              "dataset_drift": dataset_drift, "performance_decayed": decayed}
    wanted: list[str] = []
    if dataset_drift and "drift" in retrain_on:
        wanted.append(f"drift: {len(drifted)} of {len(verdicts)} features drifted ({scores}), share "
                      f"{drifted_share:.2f} >= {share}")
    if decayed and "performance" in retrain_on:
        wanted.append(f"performance: {perf_text}")
    if not wanted:
        notes = [f"{len(drifted)} of {len(verdicts)} features drifted (share {drifted_share:.2f} < {share})"
                 if not dataset_drift else "drift found, but retrain.on does not include drift"]
        if decayed:
            notes.append(f"{perf_text}, but retrain.on does not include performance")
        return Decision(NO_ACTION, tuple(notes), **common)
    if train_runs_active:
        return Decision(NO_ACTION, (*wanted, f"not triggered: {train_runs_active} train run(s) already queued or "
                                              "running"), suppressed_by="train_in_flight", **common)
    if last_trigger is not None and (now - last_trigger).total_seconds() < cooldown_seconds:
        until = last_trigger + datetime.timedelta(seconds=cooldown_seconds)
        return Decision(NO_ACTION, (*wanted, f"not triggered: cooldown after the retrain triggered at "
                                              f"{last_trigger.isoformat()} lasts until {until.isoformat()}"),
                        suppressed_by="cooldown", **common)
    start = window_end - datetime.timedelta(days=window_days) if window_days else window_start
    return Decision(RETRAIN, tuple(wanted), start.isoformat(), window_end.isoformat(), **common)
