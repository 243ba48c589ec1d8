"""The quality gate: does a candidate meet the config's thresholds and beat the stand's champion?

:func:`evaluate` is pure (metrics in, verdict out) so every rule is unit-tested; :func:`run_gate` reads the
candidate and champion from the stand's registry and records the verdict there. Rules:

- ``min``: value ≥ min; ``max``: value ≤ max.
- ``min_improvement``: the candidate beats the champion by at least this much, in the metric's
  direction: lower is better for a metric with only a ``max`` (an error metric), higher otherwise.
  It compares values measured on the same evaluation data: the training run scores the champion
  too, logging ``champion.<metric>`` and tagging the run ``champion.version``; a score of another
  version than today's champion doesn't count. With no champion on the stand the check passes.
- With a confidence interval of the paired difference (the evaluate job scores candidate and champion on
  the same rows and bootstraps them), ``min_improvement`` fails only when the whole interval of the gain
  lies below ``min_improvement - tolerance``: a near-tie is a tie, not a coin flip. Without an interval
  (metrics logged by a training run), the gain itself is compared with ``min_improvement - tolerance``.
- A metric the run did not log fails the gate, with that reason; it never passes by default.

Where the evidence comes from (:class:`Evidence`): on a stand a version was pushed to, only what that
stand measured in this acceptance run (the evaluate job's artifact on the candidate's run there, the load
run's duration and throughput); on the stand that trains, the model's evaluation script when it has one,
else the comparison the training job logged itself (``runtime.log_evaluation``: candidate and champion on its
test rows, with the paired interval), else the metrics the training run logged. The source stand's verdict
is never evidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops_module import names
from mlops_module.kinds import Log, Verdict
from mlops_module.names import CHAMPION_PREFIX, CHAMPION_VERSION_TAG
from mlops_module.release import registry
from mlops_module.release.history import now
from mlops_module.spec.config import MetricThreshold, ModelConfig


@dataclass(frozen=True)
class MetricCheck:
    name: str
    value: float | None
    champion_value: float | None
    min: float | None
    max: float | None
    min_improvement: float | None
    passed: bool
    reasons: tuple[str, ...]
    tolerance: float = 0.0
    gain_low: float | None = None  # the confidence interval of the gain over the champion, when measured
    gain_high: float | None = None


@dataclass(frozen=True)
class Evidence:
    """What the gate decides on: the candidate's metrics (with ``champion.<metric>`` for the champion's on the
    same rows), the champion version those belong to, the paired differences' intervals (candidate - champion,
    raw direction) and extra thresholds (the load check's); ``source`` says where it was measured."""

    metrics: Mapping[str, float]
    scored_champion: str | None = None
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    extra: tuple[MetricThreshold, ...] = ()
    source: str = "the training run"
    confidence: float | None = None
    gate_metrics: bool = True  # False: the stand doesn't evaluate; its gate decides on its other checks only


@dataclass(frozen=True)
class GateResult:
    verdict: Verdict
    champion_version: str | None
    checks: tuple[MetricCheck, ...] = field(default_factory=tuple)
    evidence: str = "the training run"
    confidence: float | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == names.SUCCESS

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line per failed check (or a line saying all passed), for tags and logs."""
        failed = [f"{c.name}: {'; '.join(c.reasons)}" for c in self.checks if not c.passed]
        if failed:
            return "failed: " + " | ".join(failed)
        return f"passed {len(self.checks)} check(s)" + (
            f" against champion version {self.champion_version}" if self.champion_version else " (no champion)")


def lower_is_better(threshold: MetricThreshold) -> bool:
    return threshold.max is not None and threshold.min is None


def evaluate(thresholds: tuple[MetricThreshold, ...], candidate: Mapping[str, float],
             champion_version: str | None = None, scored_champion: str | None = None,
             intervals: Mapping[str, tuple[float, float]] | None = None, *, evidence: str = "the training run",
             confidence: float | None = None) -> GateResult:
    """Check ``candidate`` against every threshold.

    ``scored_champion`` is the version the ``champion.<metric>`` scores belong to; ``intervals`` the
    confidence intervals of candidate - champion per metric, when the comparison was bootstrapped.
    """
    checks = tuple(_check(t, candidate, champion_version, scored_champion, (intervals or {}).get(t.name), evidence)
                   for t in thresholds)
    verdict = names.SUCCESS if all(c.passed for c in checks) else names.FAILED
    return GateResult(verdict, champion_version, checks, evidence, confidence)


def _number(metrics: Mapping[str, float], name: str) -> float | None:
    value = metrics.get(name)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _check(t: MetricThreshold, candidate: Mapping[str, float], champion_version: str | None,
           scored_champion: str | None, interval: tuple[float, float] | None = None,
           evidence: str = "the training run") -> MetricCheck:
    value = _number(candidate, t.name)
    champion = _number(candidate, CHAMPION_PREFIX + t.name)
    reasons: list[str] = []
    low = high = None
    if value is None:
        reasons.append(f"not logged by {evidence} (or not a finite number)")
    else:
        if t.min is not None and value < t.min:
            reasons.append(f"{value:g} is below the minimum {t.min:g}")
        if t.max is not None and value > t.max:
            reasons.append(f"{value:g} is above the maximum {t.max:g}")
        if t.min_improvement is not None and champion_version is not None:
            if champion is None:
                reasons.append(f"the champion (version {champion_version}) was not scored on the same evaluation "
                               f"data ({CHAMPION_PREFIX}{t.name} missing)")
            elif scored_champion != champion_version:
                reasons.append(f"version {scored_champion or '(unknown)'} was scored as the champion, but the "
                               f"champion is version {champion_version} now; evaluate again")
            else:
                flip = lower_is_better(t)
                gain = champion - value if flip else value - champion
                floor = t.min_improvement - t.tolerance
                if interval is not None:
                    low, high = (-interval[1], -interval[0]) if flip else interval
                    if high < floor:
                        reasons.append(f"improves on the champion (version {champion_version}, {champion:g}) by "
                                       f"{gain:g}, interval [{low:g}, {high:g}] wholly below the required "
                                       f"{t.min_improvement:g}" + (f" - tolerance {t.tolerance:g}" if t.tolerance
                                                                   else ""))
                elif gain < floor:
                    reasons.append(f"improves on the champion (version {champion_version}, {champion:g}) by "
                                   f"{gain:g}, less than the required {t.min_improvement:g}"
                                   + (f" - tolerance {t.tolerance:g}" if t.tolerance else ""))
    return MetricCheck(t.name, value, champion, t.min, t.max, t.min_improvement, not reasons, tuple(reasons),
                       t.tolerance, low, high)


def train_evidence(mlflow: registry.RegistryClient, run_id: str | None) -> Evidence:
    """The metrics the training run logged (and its scores of the champion on its own test rows)."""
    run = mlflow.get_run(run_id) if run_id else None
    if run is None:
        return Evidence({}, source="the training run (none recorded)")
    return Evidence(dict(run.data.metrics), run.data.tags.get(CHAMPION_VERSION_TAG), source="the training run")


def evaluation_evidence(mlflow: registry.RegistryClient, cfg: ModelConfig, run_id: str | None,
                        airflow_run_id: str) -> Evidence:
    """What this run's evaluate job measured on this stand (its artifact on the candidate's run); a fresh
    measurement only: an artifact an earlier run left does not count."""
    from mlops_module.runtime import read_json_artifact

    stand = cfg.stand.name
    where = f"the evaluate job on {stand} (Airflow run {airflow_run_id})"
    if not run_id:
        return Evidence({}, source=where + ": the version has no run to read it from")
    try:
        measured = read_json_artifact(mlflow, run_id, names.evaluation_artifact(stand))
    except LookupError:
        return Evidence({}, source=where + ": nothing recorded")
    if measured.get("airflow_run_id") != airflow_run_id:
        return Evidence({}, source=where + f": the recorded evaluation is from run {measured.get('airflow_run_id')}")
    if measured.get("script") == cfg.train.script:  # the training job compared candidate and champion itself
        where = f"the training job's own comparison on {stand} (Airflow run {airflow_run_id})"
    metrics = {k: v for k, v in (measured.get("metrics") or {}).items() if v is not None}
    metrics.update({CHAMPION_PREFIX + k: v for k, v in (measured.get("champion_metrics") or {}).items()
                    if v is not None})
    intervals = {k: (d["low"], d["high"]) for k, d in (measured.get("differences") or {}).items()
                 if d and d.get("low") is not None and d.get("high") is not None}
    return Evidence(metrics, measured.get("champion_version"), intervals, source=where,
                    confidence=measured.get("confidence"))


def load_evidence(mlflow: registry.RegistryClient, cfg: ModelConfig, airflow_run_id: str) -> dict[str, float]:
    """The load run's duration (its MLflow run, start to end) and throughput (rows it scored per second)."""
    from mlops_module.spec.config import LOAD_DURATION, LOAD_ROWS, LOAD_THROUGHPUT

    try:
        run = mlflow.get_run(registry.run_of_airflow_run(mlflow, cfg.name, cfg.stand.name, airflow_run_id, "load"))
    except registry.RegistryError:
        return {}
    if run.info.end_time is None:
        return {}
    seconds = max((run.info.end_time - run.info.start_time) / 1000.0, 1e-3)
    found = {LOAD_DURATION: seconds}
    rows = run.data.metrics.get("rows_scored")
    if rows is not None:
        found[LOAD_ROWS] = float(rows)
        found[LOAD_THROUGHPUT] = float(rows) / seconds
    return found


def stand_evidence(mlflow: registry.RegistryClient, cfg: ModelConfig, version: str,
                   airflow_run_id: str, *, pushed: bool) -> Evidence:
    """The evidence this stand's gate decides on (see the module's docstring)."""
    mv = registry.model_version(mlflow, cfg.name, version)
    evidence = evaluation_evidence(mlflow, cfg, mv.run_id, airflow_run_id)
    if not pushed and not cfg.train_evaluates and not evidence.metrics:
        return train_evidence(mlflow, mv.run_id)  # a training job that compared nothing itself: what it logged
    if pushed and "evaluate" not in cfg.stand.acceptance_checks:  # the platform's choice: this stand doesn't
        evidence = Evidence({}, source=f"{cfg.stand.name}'s checks ({', '.join(cfg.stand.acceptance_checks)}; "
                                       "no evaluate)", gate_metrics=False)
    if pushed and "load" in cfg.stand.acceptance_checks:
        load = load_evidence(mlflow, cfg, airflow_run_id)
        thresholds = cfg.load_check.thresholds()
        evidence = Evidence({**evidence.metrics, **load}, evidence.scored_champion, evidence.intervals, thresholds,
                            evidence.source + " and its load run", evidence.confidence, evidence.gate_metrics)
    return evidence


def run_gate(cfg: ModelConfig, version: str, mlflow: registry.RegistryClient | None = None,
             log: Log | None = None, evidence: Evidence | None = None) -> GateResult:
    """Evaluate a registered version against the config and the stand's champion; record the result.
    ``evidence``: what to decide on (default: the metrics its training run logged)."""
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    mv = registry.model_version(mlflow, cfg.name, version)
    evidence = evidence or train_evidence(mlflow, mv.run_id)
    champion = registry.alias_version(mlflow, cfg.name, cfg.stand.name)
    thresholds = (cfg.quality_gate.metrics if evidence.gate_metrics else ()) + evidence.extra
    result = evaluate(thresholds, evidence.metrics,
                      champion if champion != str(version) else None, evidence.scored_champion, evidence.intervals,
                      evidence=evidence.source, confidence=evidence.confidence)
    at = now()
    stand = cfg.stand.name
    # One verdict tag per stand (what promotion, rollback and status read); the details are in the record on the
    # run (summary, checks, champion, when) and in the version's description, where people read them.
    registry.set_tags(mlflow, cfg.name, str(version), {names.gate_tag(stand): result.verdict})
    if mv.run_id:
        mlflow.log_dict(mv.run_id, {"stand": cfg.stand.name, "version": str(version), "at": at,
                                    "summary": result.summary(), **result.as_dict()}, names.gate_artifact(stand))
        mlflow.set_tag(mv.run_id, names.gate_tag(stand), result.verdict)
    from mlops_module.release.describe import describe

    describe(mlflow, cfg.name, str(version), stand, log)
    if not result.passed:  # the stand's history says why a version stopped here
        from mlops_module.release.history import record
        from mlops_module.storage import storage_of

        record(storage_of(cfg.stand), cfg.name, stand, {"action": "rejected", "to_version": str(version),
                                                         "reason": result.summary(), "evidence": result.evidence})
    if log:
        log(f"{cfg.name} version {version} on {cfg.stand.name}: {result.verdict} ({result.summary()}; "
            f"evidence: {result.evidence})")
    return result
