"""Four real stands: a model travels MDP -> INT -> LT -> Prom with no hand in between but LT's approval.

Each stand has its own MLflow tracking server, its own storage and its own DAG folder and Airflow home. The test
runs only what the platform runs: the Jenkinsfile's stages for mdp, each stand's scheduler (`mlops run`, serving
the runs the deploy jobs and promotions queued), `mlops approve` where LT asks for it. It calls no gate or promote
function: every verdict comes from the stands' own acceptance runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from chain_helpers import MODEL, Chain, build_chain, inference_runs, jenkins_stages, train_window, write_data
from helpers import at_most_one_verdict_per_stand

from mlops_module import names

pytestmark = pytest.mark.slow

ORDER = ("mdp", "int", "lt", "prom")
ACCEPT_STATES = {"evaluate": "success", "smoke": "success", "quality_gate": "success", "promote": "success",
                 "start_inference": "success"}


@dataclass
class Travelled:
    chain: Chain
    versions: dict[str, str]  # the travelling version's number on each stand's registry
    runs: dict[str, dict[str, Any]]  # each stand's acceptance (or mdp's train) run


@pytest.fixture(scope="module")
def travelled(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("chain")
    edits = {"acceptance": {"load": {"data_window": {"days": 30}, "max_duration_seconds": 600}}}
    with build_chain(root, ORDER, edits) as chain:
        assert jenkins_stages(chain, "mdp") == ["Validate", "Model tests", "Package", "Render", "Deploy"]
        start, end = train_window()
        runs = {"mdp": chain.run("mdp", "train", f"data_interval_start={start}", f"data_interval_end={end}")}
        versions = {"mdp": runs["mdp"]["version"]}
        chain.run("mdp", "inference")  # the run mdp's promotion started
        for stand in ORDER[1:]:
            if stand == "lt":  # int pushed, lt waits for a person's word
                refused = chain.mlops("run", str(chain.repo / "model.yaml"), "--stand", "lt", "--job", "accept",
                                      expect=1)
                assert "a push held for approval waits for `mlops approve --stand lt`" in chain.log[-1], refused
                chain.mlops("approve", str(chain.repo / "model.yaml"), "--stand", "lt", "--version", versions["int"])
            runs[stand] = chain.run(stand, "accept")
            versions[stand] = runs[stand]["conf_version"]
            chain.run(stand, "inference")
        yield Travelled(chain, versions, runs)


def test_one_version_travels_to_prom_each_stand_deciding_on_its_own_evidence(travelled: Travelled) -> None:
    chain, versions = travelled.chain, travelled.versions
    for stand in ORDER:
        assert chain.alias(stand) == versions[stand], (stand, chain.log[-3:])
        tags = chain.tags(stand, versions[stand])
        assert tags[names.gate_tag(stand)] == names.SUCCESS
        assert names.gate_tag("other") not in tags
        assert at_most_one_verdict_per_stand(tags) == {}, tags
        before = ORDER[ORDER.index(stand) - 1] if stand != "mdp" else None
        origin = f"pushed from {before} v{versions[before]}" if before else "trained on mdp"
        first = chain.description(stand, versions[stand]).splitlines()[0]
        assert first.startswith(f"**Champion on {stand} (alias {stand})**: passed the quality gate, {origin}"), first
    assert travelled.runs["mdp"]["tasks"] == {"train": "success", "quality_gate": "success", "promote": "success",
                                              "start_inference": "success"}
    for stand in ("int", "prom"):
        assert travelled.runs[stand]["tasks"] == ACCEPT_STATES, stand
    assert travelled.runs["lt"]["tasks"] == {**ACCEPT_STATES, "load": "success"}


def test_each_registry_carries_the_evidence_of_the_stands_before_it(travelled: Travelled) -> None:
    chain, versions = travelled.chain, travelled.versions
    prom = chain.tags("prom", versions["prom"])
    story = chain.description("prom", versions["prom"])
    for before in ("mdp", "int", "lt"):  # their verdicts in the story (their records on the run), not as tags
        assert prom[names.source_version_tag(before)] == versions[before]
        assert f"Quality gate on {before}: passed (carried from {before}, v{versions[before]} there)" in story
        assert f"- **{before}**: passed the gate there (v{versions[before]} on {before}'s registry)" in story
    assert story.count("| roc_auc |") == 4  # prom's own gate and the three carried
    assert "Evidence: the evaluate job on lt" in story and "and its load run" in story
    mdp = chain.tags("mdp", versions["mdp"])
    for key in (names.ENV_ARCHIVE_TAG, names.CODE_PACKAGE_TAG, names.CONFIG_HASH_TAG):
        assert prom[key] == mdp[key]
    # each stand's verdict is its own: measured there, in its own acceptance run
    client = chain.client("int")
    from mlops_module.runtime import read_json_artifact

    run_id = client.get_model_version(MODEL, versions["int"]).run_id
    measured = read_json_artifact(client, run_id, names.evaluation_artifact("int"))
    assert measured["airflow_run_id"] == travelled.runs["int"]["run_id"]
    assert measured["rows"] > 0 and measured["metrics"]["roc_auc"] > 0.75
    moves = [e for e in chain.history("prom") if e["action"] == "promote"]
    assert moves[-1]["path"].startswith("pushed from lt")


def test_lt_measured_its_load_run(travelled: Travelled) -> None:
    from mlops_module.runtime import read_json_artifact

    client = travelled.chain.client("lt")
    run_id = client.get_model_version(MODEL, travelled.versions["lt"]).run_id
    gate = read_json_artifact(client, run_id, names.gate_artifact("lt"))
    checks = {c["name"]: c for c in gate["checks"]}
    assert checks["load.duration_seconds"]["passed"] and checks["load.duration_seconds"]["max"] == 600
    assert 0 < checks["load.duration_seconds"]["value"] < 600


def test_each_stand_scored_with_its_new_champion_after_the_alias_moved(travelled: Travelled) -> None:
    chain = travelled.chain
    for stand in ORDER:
        runs = inference_runs(chain, stand)
        assert runs, stand
        last = runs[-1]
        assert last.data.tags[names.RUN_TAG_MODEL_VERSION] == travelled.versions[stand]
        moved = next(e["at"] for e in reversed(chain.history(stand))
                     if e["action"] == "promote" and e["to_version"] == travelled.versions[stand])
        import datetime

        started = datetime.datetime.fromtimestamp(last.info.start_time / 1000, datetime.timezone.utc)
        assert started >= datetime.datetime.fromisoformat(moved), stand
        assert last.data.metrics["rows_scored"] > 0
        # what runtime.write_predictions counted and the check_output task read: the example's own count
        assert last.data.tags[names.RUN_TAG_ROWS_WRITTEN] == str(int(last.data.metrics["rows_scored"]))


def test_history_and_status_tell_the_story(travelled: Travelled) -> None:
    chain = travelled.chain
    lt = chain.history("lt")
    assert [e["action"] for e in lt if e["action"] in ("promote", "push")] == ["promote", "push"]
    assert any(e["action"] == "approve" for e in chain.history("int"))
    status = chain.mlops("status", str(chain.repo / "model.yaml"))
    for stand in ORDER:
        assert f"{stand}: version {travelled.versions[stand]}" in status


def test_a_version_int_rejects_stops_at_int(travelled: Travelled) -> None:
    """mdp trains a second version (as good as the first there); INT's own data disagrees: its evaluation fails
    it, INT keeps its champion, nothing reaches LT, and history and status say why."""
    chain = travelled.chain
    write_data(chain, "int", flip_labels=True)
    start, end = train_window()
    second = chain.run("mdp", "train", f"data_interval_start={start}", f"data_interval_end={end}",
                       "reason=a retrain on mdp")
    assert second["gate"] == names.SUCCESS and chain.alias("mdp") == second["version"]
    lt_objects = sorted(p.name for p in (chain.storage("lt") / "envs").iterdir())
    rejected = chain.run("int", "accept", expect=1)
    assert rejected["tasks"]["quality_gate"] == "failed" and rejected["tasks"]["promote"] == "upstream_failed"
    version = rejected["conf_version"]
    assert chain.tags("int", version)[names.gate_tag("int")] == names.FAILED
    assert chain.description("int", version).startswith("**Rejected on int**: roc_auc ")
    assert chain.alias("int") == travelled.versions["int"]
    assert sorted(p.name for p in (chain.storage("lt") / "envs").iterdir()) == lt_objects
    why = [e for e in chain.history("int") if e["action"] == "rejected"]
    assert why and why[-1]["to_version"] == version and "roc_auc" in why[-1]["reason"]
    status = chain.mlops("status", str(chain.repo / "model.yaml"), "--json")
    import json

    int_row = next(r for r in json.loads(status) if r["stand"] == "int")
    assert int_row["last_rejected"] == version and "below the minimum" in int_row["last_rejected_why"]
    write_data(chain, "int")


def test_a_retrain_on_prom_waits_for_the_approval_the_chain_requires(travelled: Travelled) -> None:
    """Monitoring's retrain on prom passes prom's gate but, under the default policy, does not take `prom`
    without the approval the chain asks for on the way (LT's); `mlops approve` moves it. With the permissive
    policy a retrain takes the alias directly. History records each path."""
    from chain_helpers import write_stands

    chain = travelled.chain
    start, end = train_window()
    champion = chain.alias("prom")
    held = chain.run("prom", "train", f"data_interval_start={start}", f"data_interval_end={end}",
                     "reason=monitoring on prom: drift")
    assert held["tasks"]["promote"] == "success" and held["tasks"]["start_inference"] == "skipped"
    assert chain.alias("prom") == champion
    assert chain.tags("prom", held["version"])[names.held_tag("prom")] == names.AWAITING
    assert chain.description("prom", held["version"]).startswith("**Passed the gate on prom**: awaiting approval")
    assert any(e["action"] == "held" and e["to_version"] == held["version"] for e in chain.history("prom"))
    status = chain.mlops("status", str(chain.repo / "model.yaml"))
    assert f"{held['version']} (retrained here)" in status
    chain.mlops("approve", str(chain.repo / "model.yaml"), "--stand", "prom", "--version", held["version"])
    assert chain.alias("prom") == held["version"]
    assert names.APPROVED_PREFIX + "platform-test" in chain.tags("prom", held["version"])[names.held_tag("prom")]
    story = chain.description("prom", held["version"])
    assert story.startswith("**Champion on prom (alias prom)**: passed the quality gate, trained on prom")
    assert "approved by platform-test" in story and "monitoring on prom: drift" in story

    write_stands(chain, {"prom": {"acceptance": {"retrained": "direct"}}})
    direct = chain.run("prom", "train", f"data_interval_start={start}", f"data_interval_end={end}",
                       "reason=monitoring on prom: drift")
    assert chain.alias("prom") == direct["version"]
    paths = [e.get("path") for e in chain.history("prom") if e["action"] == "promote"]
    assert paths[-3:] == ["pushed from lt, accepted on prom", "retrained on prom, approved by platform-test",
                          "retrained on prom, direct (policy)"]
    write_stands(chain)
