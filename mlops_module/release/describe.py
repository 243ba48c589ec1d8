"""The version's description in MLflow: its story (:mod:`.story`) rewritten whole from what the registry holds.

Called by the gate, the promoter, the push, approval and rollback after each changes something, so the page
always tells the latest state once (never appended to). Facts come from the version (tags, aliases), the
gate records on its run (``quality_gate/<stand>.json``, and ``source/quality_gate/<stand>.json`` carried with a
push) and its run's tags (the training's Airflow run, the retrain reason, ``mlflow.user``).

MLflow's "Created by" column shows a version's ``user_id``, which its open-source server never sets and whose
API (CreateModelVersion, UpdateModelVersion) has no field for it; who registered it is the ``mlflow.user`` tag
of the registering run (the run's "User"), and the description's last section says it too.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from mlops_module import names
from mlops_module.kinds import Log
from mlops_module.release import registry
from mlops_module.release.story import Facts, StandGate, Story, version_story

CARRIED_GATES = f"{names.CARRIED_FOLDER}/{names.GATE_FOLDER}"  # where register_copy puts the source stands' gates


def _records(mlflow: registry.RegistryClient, run_id: str, folder: str) -> list[dict[str, Any]]:
    from mlops_module.runtime import read_json_artifact

    found = []
    for item in mlflow.list_artifacts(run_id, folder):
        if item.is_dir or not item.path.endswith(".json"):
            continue
        with contextlib.suppress(LookupError, ValueError):
            record = read_json_artifact(mlflow, run_id, item.path)
            if isinstance(record, dict):
                found.append(record)
    return found


def facts(mlflow: registry.RegistryClient, model: str, version: str, stand: str) -> Facts:
    """What the registry of ``stand`` holds about ``version`` (see the module's docstring)."""
    mv = registry.model_version(mlflow, model, version)
    tags = dict(mv.tags or {})
    gates: list[StandGate] = []
    run_tags: dict[str, str] = {}
    if mv.run_id:
        gates += [StandGate.from_record(r, carried=True) for r in _records(mlflow, mv.run_id, CARRIED_GATES)]
        gates += [StandGate.from_record(r) for r in _records(mlflow, mv.run_id, names.GATE_FOLDER)]
        run_tags = dict(mlflow.get_run(mv.run_id).data.tags)
    trail = {s: value for key, value in tags.items() if (s := names.source_version_tag_stand(key))}
    pushed_from = run_tags.get(names.RUN_TAG_PROMOTED_FROM)
    source = (pushed_from, trail[pushed_from]) if pushed_from and pushed_from in trail else None
    if source:
        trail.pop(source[0])
    stands = {g.stand for g in gates} | {stand} | set(trail)
    held = {s: tags[names.held_tag(s)] for s in stands if names.held_tag(s) in tags}
    pushes = {s: value for key, value in tags.items() if (s := names.pushed_tag_stand(key))}
    aliases = tuple(str(a) for a in (getattr(mv, "aliases", None) or ()))
    replaced = tuple(s for s in stands if names.previous_version_tag(s) in tags and s not in aliases)
    return Facts(model, str(version), stand, tuple(gates), aliases, held, pushes, replaced, source, trail,
                 trained_on=run_tags.get(names.RUN_TAG_STAND, "") if not pushed_from else "",
                 airflow_run=run_tags.get(names.RUN_TAG_AIRFLOW_RUN, "") if not pushed_from else "",
                 retrain_reason=tags.get(names.RETRAIN_REASON_TAG) or run_tags.get(names.RETRAIN_REASON_TAG, ""),
                 git_sha=tags.get(names.GIT_SHA_TAG, ""), created_by=run_tags.get(names.RUN_TAG_USER, ""))


def story_of(mlflow: registry.RegistryClient, model: str, version: str, stand: str) -> Story:
    """The version's story as the registry of ``stand`` tells it now (what a notification about it sends)."""
    return version_story(facts(mlflow, model, str(version), stand))


def describe(mlflow: registry.RegistryClient, model: str, version: str, stand: str,
             log: Log | None = None) -> Story | None:
    """Rewrite the version's description from the facts; None (and a warning) when that fails: a description
    is for people, never a reason for a gate or a promotion to fail after it decided."""
    try:
        story = story_of(mlflow, model, version, stand)
        mlflow.update_model_version(model, str(version), description=story.markdown[:60000])
    except Exception as exc:
        message = f"could not write the description of {model} version {version}: {str(exc).splitlines()[0][:200]}"
        (log or logging.getLogger("mlops").warning)(message)
        return None
    return story
