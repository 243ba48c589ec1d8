"""A model version's story in plain words: its verdict and why, per stand, for people.

MLflow shows a version's description (markdown) on its page; the gate and the promoter rewrite it whole from
the facts they have (:mod:`.describe` gathers them), so it never drifts from the tags or repeats itself.
Notifications (a gate failure, an approval waiting) send the same story as their message body.

Pure: facts in (:class:`Facts`, plain values), text out. The public API:

- :func:`version_story` ``(facts: Facts) -> Story``: the whole story;
- :func:`gate_story` ``(model, version, stand, record, **origin) -> Story``: the story of one gate's record
  (the ``quality_gate/<stand>.json`` artifact, or ``GateResult.as_dict()`` with ``stand``/``version``/``at``),
  when nothing else is at hand (a notification sent by the gate task);
- :class:`Story`: ``.title`` (the first line, plain text: the verdict and the reason), ``.markdown`` (for
  MLflow's description), ``.text`` (plain text, for e-mail and chat bodies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlops_module import names


@dataclass(frozen=True)
class StandGate:
    """One gate's record (``quality_gate/<stand>.json``): the verdict on ``stand`` of ``version`` (its number on
    that stand's registry), the checks with the metrics read, the champion compared against, when, on what.
    ``carried``: recorded on another stand's registry and carried with a push (evidence, not this stand's say)."""

    stand: str
    verdict: str
    version: str = ""
    checks: tuple[Mapping[str, Any], ...] = ()
    champion_version: str | None = None
    at: str = ""
    evidence: str = ""
    carried: bool = False

    @property
    def passed(self) -> bool:
        return self.verdict == names.SUCCESS

    @classmethod
    def from_record(cls, record: Mapping[str, Any], carried: bool = False) -> StandGate:
        """From a gate's artifact (or ``GateResult.as_dict()`` with ``stand``, ``version``, ``at``)."""
        return cls(str(record.get("stand") or "?"), str(record.get("verdict") or ""), str(record.get("version") or ""),
                   tuple(c for c in record.get("checks") or () if isinstance(c, Mapping)),
                   str(record["champion_version"]) if record.get("champion_version") else None,
                   str(record.get("at") or ""), str(record.get("evidence") or ""), carried)


@dataclass(frozen=True)
class Facts:
    """What is known of a version, as plain values (each optional but the first three).

    ``stand``: the stand whose registry holds this version (the story's stand when no gate has run);
    ``gates``: every gate record found (this registry's, and those carried with pushes);
    ``aliases``: the stand aliases it holds; ``held``: stand -> ``held.<stand>`` value (a retrain waiting for a
    person); ``pushes``: next stand -> the push's state (``pushed.<stand>``); ``replaced``: stands whose alias it
    held and no longer does; ``source``: (stand, version there) it was pushed from; ``trail``: earlier stands and
    its versions there; ``trained_on``: the stand that trained it; ``airflow_run``: the training's Airflow run id;
    ``retrain_reason``: monitoring's reason (drift, performance) or the conf's; ``created_by``: who or what
    registered it."""

    model: str
    version: str
    stand: str
    gates: tuple[StandGate, ...] = ()
    aliases: tuple[str, ...] = ()
    held: Mapping[str, str] = field(default_factory=dict)
    pushes: Mapping[str, str] = field(default_factory=dict)
    replaced: tuple[str, ...] = ()
    source: tuple[str, str] | None = None
    trail: Mapping[str, str] = field(default_factory=dict)
    trained_on: str = ""
    airflow_run: str = ""
    retrain_reason: str = ""
    git_sha: str = ""
    created_by: str = ""


@dataclass(frozen=True)
class Story:
    """``title``: the first line in plain text (verdict and reason); ``markdown``: the whole story for MLflow's
    description (its first line is the title, in bold where the verdict is); ``text``: the same in plain text."""

    title: str
    markdown: str
    text: str


# --- the pieces --------------------------------------------------------------------------------


def _num(value: Any) -> str:
    if value is None:
        return "–"
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def check_reason(check: Mapping[str, Any]) -> str:
    """``roc_auc 0.61 is below the minimum 0.7``: a failed check's first reason, with the metric's name."""
    reasons = [str(r) for r in check.get("reasons") or ()]
    return f"{check.get('name')} {reasons[0]}" if reasons else f"{check.get('name')} failed"


def threshold(check: Mapping[str, Any]) -> str:
    """The check's bounds in symbols: ``≥ 0.7``, ``≤ 0.6``, ``gain ≥ 0.01``; ``–`` when it has none."""
    parts = []
    if check.get("min") is not None:
        parts.append(f"≥ {_num(check['min'])}")
    if check.get("max") is not None:
        parts.append(f"≤ {_num(check['max'])}")
    if check.get("min_improvement") is not None:
        parts.append(f"gain ≥ {_num(check['min_improvement'])}")
    return ", ".join(parts) or "–"


def _gate_reason(gate: StandGate) -> str:
    failed = [c for c in gate.checks if not c.get("passed")]
    if failed:
        return "; ".join(check_reason(c) for c in failed)
    return "its quality gate failed" if not gate.passed else "passed the quality gate"


def _own_gates(facts: Facts) -> list[StandGate]:
    return [g for g in facts.gates if not g.carried]


def _latest(gates: Sequence[StandGate]) -> StandGate | None:
    return max(gates, key=lambda g: g.at) if gates else None


def _origin(facts: Facts) -> str:
    if facts.source:
        return f"pushed from {facts.source[0]} v{facts.source[1]}"
    return f"trained on {facts.trained_on}" if facts.trained_on else ""


def stand_state(facts: Facts, stand: str) -> str:
    """The verdict on ``stand`` in plain words: ``champion (alias int)``, ``rejected: <why>``, ``passed the gate,
    awaiting approval`` ..."""
    gate = next((g for g in reversed(facts.gates) if g.stand == stand and not g.carried), None) \
        or next((g for g in reversed(facts.gates) if g.stand == stand), None)
    held = facts.held.get(stand, "")
    if gate is not None and gate.carried and stand not in facts.aliases:  # another registry's say: what it was then
        there = f" (v{gate.version} on {stand}'s registry)" if gate.version else ""
        return (f"passed the gate there{there}, then pushed on" if gate.passed
                else f"rejected there{there}: {_gate_reason(gate)}")
    if stand in facts.aliases:
        state = f"champion (alias {stand})"
    elif gate is None:
        state = "not gated yet" + (", in acceptance" if facts.source and stand == facts.stand else "")
    elif not gate.passed:
        return f"rejected: {_gate_reason(gate)}"
    elif held == names.AWAITING:
        state = "passed the gate, awaiting approval"
    elif stand in facts.replaced:
        state = "passed the gate; was champion, replaced since"
    else:
        state = "passed the gate, not promoted"
    if gate is not None and gate.passed and stand in facts.aliases:
        state += ", passed the quality gate"
    if held.startswith(names.APPROVED_PREFIX):
        state += f", {held}"
    return state


def title(facts: Facts) -> tuple[str, str]:
    """The first line as (verdict, reason): ``("Rejected on mdp", "roc_auc 0.61 is below the minimum 0.7")``."""
    gate = _latest(_own_gates(facts))
    origin = _origin(facts)
    waiting = [nxt for nxt, state in facts.pushes.items() if state == names.AWAITING_PUSH_APPROVAL]
    if gate is None:
        if facts.source:
            return f"In acceptance on {facts.stand}", f"{origin}, not gated on {facts.stand} yet"
        return f"Registered on {facts.stand}", "not gated yet"
    stand = gate.stand
    if not gate.passed:
        return f"Rejected on {stand}", _gate_reason(gate)
    if stand in facts.aliases:
        reason = "passed the quality gate" + (f", {origin}" if origin else "")
        if waiting:
            reason += f"; awaiting approval to go to {', '.join(waiting)}"
        return f"Champion on {stand} (alias {stand})", reason
    if facts.held.get(stand) == names.AWAITING:
        return f"Passed the gate on {stand}", "awaiting approval"
    if stand in facts.replaced:
        return f"Replaced on {stand}", "passed the quality gate, no longer holds the alias"
    return f"Passed the gate on {stand}", "not promoted yet"


def training_reason(facts: Facts) -> str:
    """Why it was trained: monitoring's reason (drift with the top features, performance), a schedule, a person."""
    reason = facts.retrain_reason.strip()
    run = facts.airflow_run
    if reason.startswith("drift:"):
        return f"retrained for drift: {reason[len('drift:'):].strip()}"
    if reason.startswith("performance:"):
        return f"retrained for decayed performance: {reason[len('performance:'):].strip()}"
    if run.startswith(names.RETRAIN_RUN_ID_TEMPLATE.split("{{")[0]):
        return "retrained by monitoring" + (f": {reason}" if reason else "")
    if run.startswith("scheduled__"):
        return f"scheduled training (Airflow run {run})" + (f": {reason}" if reason else "")
    if run.startswith("manual__"):
        return f"started by hand (Airflow run {run})" + (f": {reason}" if reason else "")
    if reason:
        return reason
    if run:
        return f"Airflow run {run}"
    if facts.source:
        first = next(iter(facts.trail), facts.source[0])
        return f"recorded where it was trained (see {first}'s registry)"
    return "not recorded"


def _gate_table(gate: StandGate) -> list[str]:
    champion = f"champion (v{gate.champion_version})" if gate.champion_version else "champion"
    rows = [f"| metric | value | threshold | {champion} | result |", "|---|---|---|---|---|"]
    for c in gate.checks:
        result = "ok" if c.get("passed") else "FAILED: " + "; ".join(str(r) for r in c.get("reasons") or ())
        rows.append(f"| {c.get('name')} | {_num(c.get('value'))} | {threshold(c)} | {_num(c.get('champion_value'))} "
                    f"| {result.replace('|', '/')} |")
    return rows


def _gate_lines(gate: StandGate) -> list[str]:
    champion = f", champion v{gate.champion_version}" if gate.champion_version else ""
    return [f"- {c.get('name')} {_num(c.get('value'))} (threshold {threshold(c)}; champion "
            f"{_num(c.get('champion_value'))}{champion}): " + ("ok" if c.get("passed") else "FAILED: " + "; ".join(
                str(r) for r in c.get("reasons") or ())) for c in gate.checks]


def _stands(facts: Facts) -> list[str]:
    seen: list[str] = []
    for stand in [*facts.trail, *(g.stand for g in facts.gates), facts.stand, *facts.aliases, *facts.held,
                  *facts.pushes]:
        if stand not in seen:
            seen.append(stand)
    return seen


def _sections(facts: Facts) -> list[tuple[str, list[str], list[str]]]:
    """(heading, markdown lines, text lines) of each section after the first line."""
    out: list[tuple[str, list[str], list[str]]] = []
    per_stand = []
    for stand in _stands(facts):
        line = stand_state(facts, stand) if stand not in facts.pushes else ""
        if stand in facts.pushes:
            line = (stand_state(facts, stand) + "; " if any(g.stand == stand for g in facts.gates)
                    or stand in facts.aliases else "") + f"pushed there: {facts.pushes[stand]}"
        per_stand.append((stand, line))
    out.append(("Verdict per stand", [f"- **{s}**: {t}" for s, t in per_stand], [f"- {s}: {t}" for s, t in per_stand]))
    for gate in sorted(facts.gates, key=lambda g: (not g.carried, g.at), reverse=True):  # its own first, newest first
        head = f"Quality gate on {gate.stand}: {'passed' if gate.passed else 'failed'}"
        if gate.carried:
            head += f" (carried from {gate.stand}, v{gate.version} there)"
        foot = [f"Evidence: {gate.evidence}." if gate.evidence else "", f"Decided at {gate.at}." if gate.at else ""]
        foot = [f for f in foot if f]
        md = (_gate_table(gate) if gate.checks else ["No metric checks."]) + ([""] + foot if foot else [])
        out.append((head, md, (_gate_lines(gate) or ["- no metric checks"]) + foot))
    why = training_reason(facts)
    out.append(("Why it was trained", [why], [why]))
    where = []
    if facts.trained_on:
        where.append(f"trained on {facts.trained_on}" + (f" (Airflow run {facts.airflow_run})"
                                                          if facts.airflow_run else ""))
    for stand, version in facts.trail.items():
        where.append(f"v{version} on {stand}")
    if facts.source:
        where.append(f"pushed from {facts.source[0]} (v{facts.source[1]} there) to {facts.stand}")
    where.append(f"v{facts.version} on {facts.stand}'s registry")
    if facts.git_sha:
        where.append(f"commit {facts.git_sha}")
    if facts.created_by:
        where.append(f"registered by {facts.created_by}")
    out.append(("Where it came from", [f"- {w}" for w in where], [f"- {w}" for w in where]))
    return out


def version_story(facts: Facts) -> Story:
    """The version's whole story: first line the verdict and the reason, then each stand's verdict, each gate's
    metrics against their thresholds and the champion's, why it was trained, where it came from."""
    verdict, reason = title(facts)
    md = [f"**{verdict}**: {reason}", ""]
    text = [f"{verdict}: {reason}", ""]
    for head, md_lines, text_lines in _sections(facts):
        md += [f"#### {head}", *md_lines, ""]
        text += [head, *text_lines, ""]
    return Story(f"{verdict}: {reason}", "\n".join(md).rstrip() + "\n", "\n".join(text).rstrip() + "\n")


def gate_story(model: str, version: str, stand: str, record: Mapping[str, Any], **origin: Any) -> Story:
    """The story of one gate's record on ``stand`` (no registry read): what a gate-failure or approval-waiting
    notification sends. ``origin``: any other field of :class:`Facts` (``source``, ``git_sha``, ``held``, ...)."""
    gate = StandGate.from_record({"stand": stand, "version": version, **record})
    return version_story(Facts(model, str(version), stand, gates=(gate,), **origin))
