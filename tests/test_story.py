"""A version's story (release/story.py): the first line states the verdict and why, in plain words; the rest
tells each stand's verdict, each metric against its threshold and the champion's, why it was trained, where it
came from. And the rule the tags keep: one verdict tag per stand (helpers.verdict_tags_per_stand)."""

from __future__ import annotations

from typing import Any

from helpers import at_most_one_verdict_per_stand, verdict_tags_per_stand

from mlops_module import names
from mlops_module.release import story
from mlops_module.release.gate import evaluate
from mlops_module.spec.config import MetricThreshold

THRESHOLDS = (MetricThreshold("roc_auc", 0.7, None, 0.01), MetricThreshold("log_loss", None, 0.6, None))


def record(stand: str, version: str, metrics: dict[str, float], champion: str | None = None,
           at: str = "2026-12-02T08:00:00+00:00") -> dict[str, Any]:
    """What the gate writes on the version's run (quality_gate/<stand>.json), from the real rules."""
    result = evaluate(THRESHOLDS, metrics, champion, champion)
    return {"stand": stand, "version": version, "at": at, "summary": result.summary(), **result.as_dict()}


def test_a_rejected_version_says_so_and_why_first() -> None:
    told = story.gate_story("churn", "4", "mdp", record("mdp", "4", {"roc_auc": 0.61, "log_loss": 0.5}))
    assert told.title == "Rejected on mdp: roc_auc 0.61 is below the minimum 0.7"
    assert told.markdown.splitlines()[0] == "**Rejected on mdp**: roc_auc 0.61 is below the minimum 0.7"
    assert told.text.splitlines()[0] == told.title and "**" not in told.text and "|" not in told.text
    # each metric against its threshold (and the champion's value), in the table and in the plain text
    assert "| roc_auc | 0.61 | ≥ 0.7, gain ≥ 0.01 | – | FAILED: 0.61 is below the minimum 0.7 |" in told.markdown
    assert "| log_loss | 0.5 | ≤ 0.6 | – | ok |" in told.markdown
    assert "- roc_auc 0.61 (threshold ≥ 0.7, gain ≥ 0.01; champion –): FAILED" in told.text
    assert "- mdp: rejected: roc_auc 0.61 is below the minimum 0.7" in told.text


def test_every_failed_check_is_in_the_reason_and_the_champion_is_named() -> None:
    gate = record("int", "7", {"roc_auc": 0.805, "champion.roc_auc": 0.8, "log_loss": 0.9}, champion="5")
    told = story.gate_story("churn", "7", "int", gate)
    assert told.title.startswith("Rejected on int: roc_auc improves on the champion (version 5, 0.8) by ")
    assert "; log_loss 0.9 is above the maximum 0.6" in told.title
    assert "| metric | value | threshold | champion (v5) | result |" in told.markdown
    assert "| roc_auc | 0.805 | ≥ 0.7, gain ≥ 0.01 | 0.8 |" in told.markdown


def test_champion_pushed_held_and_waiting_for_approval() -> None:
    mdp = story.StandGate.from_record(record("mdp", "3", {"roc_auc": 0.8, "log_loss": 0.4}), carried=True)
    int_gate = story.StandGate.from_record(record("int", "1", {"roc_auc": 0.79, "log_loss": 0.4},
                                                  at="2026-12-02T09:00:00+00:00"))
    pushed = story.Facts("churn", "1", "int", gates=(mdp, int_gate), aliases=("int",), source=("mdp", "3"),
                         git_sha="abc123", created_by="airflow:churn__int__accept/accept__mdp-v3")
    told = story.version_story(pushed)
    assert told.title == "Champion on int (alias int): passed the quality gate, pushed from mdp v3"
    assert "- **mdp**: passed the gate there (v3 on mdp's registry), then pushed on" in told.markdown
    assert "- **int**: champion (alias int), passed the quality gate" in told.markdown
    assert told.markdown.index("Quality gate on int: passed") < told.markdown.index("Quality gate on mdp: passed")
    assert "- pushed from mdp (v3 there) to int" in told.text and "- commit abc123" in told.text
    assert "- registered by airflow:churn__int__accept/accept__mdp-v3" in told.text

    waiting = story.Facts("churn", "1", "int", gates=(int_gate,), aliases=("int",),
                          pushes={"lt": names.AWAITING_PUSH_APPROVAL})
    assert story.version_story(waiting).title.endswith("; awaiting approval to go to lt")
    assert "- **lt**: pushed there: awaiting manual approval" in story.version_story(waiting).markdown

    held_gate = story.StandGate.from_record(record("prom", "2", {"roc_auc": 0.8, "log_loss": 0.4}))
    held = story.Facts("churn", "2", "prom", gates=(held_gate,), held={"prom": names.AWAITING})
    assert story.version_story(held).title == "Passed the gate on prom: awaiting approval"
    approved = story.Facts("churn", "2", "prom", gates=(held_gate,), aliases=("prom",),
                           held={"prom": "approved by ann at 2026-12-02T09:00:00+00:00"})
    assert "champion (alias prom), passed the quality gate, approved by ann" in story.version_story(approved).text
    replaced = story.Facts("churn", "2", "prom", gates=(held_gate,), replaced=("prom",))
    assert story.version_story(replaced).title == "Replaced on prom: passed the quality gate, no longer holds the alias"
    arriving = story.Facts("churn", "4", "lt", source=("int", "2"))
    assert story.version_story(arriving).title == "In acceptance on lt: pushed from int v2, not gated on lt yet"


def test_why_it_was_trained() -> None:
    def why(**facts: Any) -> str:
        return story.training_reason(story.Facts("churn", "1", "mdp", **facts))

    drift = "drift: 3 of 10 features drifted (tenure psi 0.41, plan psi 0.3, age psi 0.22), share 0.30 >= 0.2"
    assert why(retrain_reason=drift, airflow_run="retrain__scheduled__x") == \
        "retrained for drift: 3 of 10 features drifted (tenure psi 0.41, plan psi 0.3, age psi 0.22), share 0.30 >= 0.2"
    assert why(retrain_reason="performance: roc_auc 0.61 below the minimum 0.7") == \
        "retrained for decayed performance: roc_auc 0.61 below the minimum 0.7"
    assert why(airflow_run="scheduled__2026-12-01T00:00:00+00:00") == \
        "scheduled training (Airflow run scheduled__2026-12-01T00:00:00+00:00)"
    assert why(airflow_run="manual__2026-12-01", retrain_reason="new features") == \
        "started by hand (Airflow run manual__2026-12-01): new features"
    assert why() == "not recorded"
    assert why(source=("mdp", "3")) == "recorded where it was trained (see mdp's registry)"


def test_the_story_is_rewritten_not_appended() -> None:
    facts = story.Facts("churn", "4", "mdp", gates=(story.StandGate.from_record(
        record("mdp", "4", {"roc_auc": 0.61, "log_loss": 0.5})),))
    once = story.version_story(facts).markdown
    assert story.version_story(facts).markdown == once and once.count("#### Verdict per stand") == 1


def test_verdict_tags_are_counted_per_stand_by_key_shape() -> None:
    before = {  # what a version pushed through int carried until issue 19: several verdicts per stand
        "quality_gate": "success", "quality_gate.stand": "int", "quality_gate.int": "success",
        "quality_gate.int.summary": "passed 2 check(s)", "quality_gate.int.champion_version": "",
        "quality_gate.int.at": "2026-12-02T08:00:00+00:00", "source.mdp.version": "3",
        "source.mdp.verdict": "success", "source.mdp.summary": "passed 2 check(s)", "promoted.int.at": "x",
        "promoted.int.previous_version": "", "pushed.lt.at": "x", "pushed.lt.trigger": "jenkins 201"}
    assert set(at_most_one_verdict_per_stand(before)) == {"int", "mdp"}
    assert len(verdict_tags_per_stand(before)["int"]) == 6
    now = {"quality_gate.int": "success", "source.mdp.version": "3", "promoted.int.previous_version": "",
           "pushed.lt": "jenkins 201", "held.int": names.AWAITING, "env_archive": "envs/a.tar.gz"}
    assert at_most_one_verdict_per_stand(now) == {}
    assert verdict_tags_per_stand(now) == {"int": ["quality_gate.int"]}
