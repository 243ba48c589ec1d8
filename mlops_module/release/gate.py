"""The quality gate: does a candidate meet the config's thresholds and beat the stand's champion?

:func:`evaluate` is pure (metrics in, verdict out) so every rule is unit-tested; :func:`run_gate` reads the
candidate and champion from the stand's registry and records the verdict there. Rules:

- ``min``: value ≥ min; ``max``: value ≤ max.
- ``min_improvement``: the candidate beats the champion by at least this much, in the metric's
  direction: lower is better for a metric with only a ``max`` (an error metric), higher otherwise.
  It compares values measured on the same evaluation data: the training run scores the champion
  too, logging ``champion.<metric>`` and tagging the run ``champion.version``; a score of another
  version than today's champion doesn't count. With no champion on the stand the check passes.
- A metric the run did not log fails the gate, with that reason; it never passes by default.
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


@dataclass(frozen=True)
class GateResult:
    verdict: Verdict
    champion_version: str | None
    checks: tuple[MetricCheck, ...] = field(default_factory=tuple)

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
             champion_version: str | None = None, scored_champion: str | None = None) -> GateResult:
    """Check ``candidate`` (the training run's metrics) against every threshold.

    ``scored_champion`` is the version the run's ``champion.<metric>`` scores belong to.
    """
    checks = tuple(_check(t, candidate, champion_version, scored_champion) for t in thresholds)
    verdict = names.SUCCESS if all(c.passed for c in checks) else names.FAILED
    return GateResult(verdict, champion_version, checks)


def _number(metrics: Mapping[str, float], name: str) -> float | None:
    value = metrics.get(name)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _check(t: MetricThreshold, candidate: Mapping[str, float], champion_version: str | None,
           scored_champion: str | None) -> MetricCheck:
    value = _number(candidate, t.name)
    champion = _number(candidate, CHAMPION_PREFIX + t.name)
    reasons: list[str] = []
    if value is None:
        reasons.append("not logged by the training run (or not a finite number)")
    else:
        if t.min is not None and value < t.min:
            reasons.append(f"{value:g} is below the minimum {t.min:g}")
        if t.max is not None and value > t.max:
            reasons.append(f"{value:g} is above the maximum {t.max:g}")
        if t.min_improvement is not None and champion_version is not None:
            if champion is None:
                reasons.append(f"the run did not log {CHAMPION_PREFIX}{t.name}: the champion (version "
                               f"{champion_version}) must be scored on the same evaluation data")
            elif scored_champion != champion_version:
                reasons.append(f"the run scored version {scored_champion or '(unknown)'} as the champion, but the "
                               f"champion is version {champion_version} now; train or evaluate again")
            else:
                gain = champion - value if lower_is_better(t) else value - champion
                if gain < t.min_improvement:
                    reasons.append(f"improves on the champion (version {champion_version}, {champion:g}) by "
                                   f"{gain:g}, less than the required {t.min_improvement:g}")
    return MetricCheck(t.name, value, champion, t.min, t.max, t.min_improvement, not reasons, tuple(reasons))


def run_gate(cfg: ModelConfig, version: str, mlflow: registry.RegistryClient | None = None,
             log: Log | None = None) -> GateResult:
    """Evaluate a registered version against the config and the stand's champion; record the result."""
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    mv = registry.model_version(mlflow, cfg.name, version)
    run = mlflow.get_run(mv.run_id) if mv.run_id else None
    metrics = dict(run.data.metrics) if run else {}
    scored = run.data.tags.get(CHAMPION_VERSION_TAG) if run else None
    champion = registry.alias_version(mlflow, cfg.name, cfg.stand.name)
    result = evaluate(cfg.quality_gate.metrics, metrics, champion if champion != str(version) else None, scored)
    at = now()
    stand = cfg.stand.name
    registry.set_tags(mlflow, cfg.name, str(version), {
        names.GATE_TAG: result.verdict,  # the latest verdict, on whichever stand
        names.GATE_STAND_TAG: stand,
        names.gate_tag(stand): result.verdict,  # what promotion and rollback on this stand check
        names.gate_summary_tag(stand): result.summary(),
        names.gate_champion_tag(stand): result.champion_version or "",
        names.gate_at_tag(stand): at,
    })
    if mv.run_id:
        mlflow.log_dict(mv.run_id, {"stand": cfg.stand.name, "version": str(version), "at": at, **result.as_dict()},
                        names.gate_artifact(stand))
        mlflow.set_tag(mv.run_id, names.gate_tag(stand), result.verdict)
    if log:
        log(f"{cfg.name} version {version} on {cfg.stand.name}: {result.verdict} ({result.summary()})")
    return result
