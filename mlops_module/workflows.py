"""The use cases, each composed once: resolve, artifacts, package, render, deploy, gate, promote, approve,
roll back, read back what a run trained.

The CLI, the DAG tasks, ``mlops run`` and the demo call these and only parse, print or adapt (to
Airflow's context, to a terminal). Anything two of them would otherwise put together themselves
belongs here, so they can't disagree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_module import __version__, names
from mlops_module.building.artifacts import Artifacts, artifacts
from mlops_module.building.render import Bundle, render_bundle
from mlops_module.errors import UsageError
from mlops_module.kinds import Log
from mlops_module.release import registry
from mlops_module.release.gate import GateResult, run_gate
from mlops_module.release.triggers import Trigger
from mlops_module.spec.config import CRON_PRESETS, ModelConfig, check, known_stand
from mlops_module.spec.stands import Stand, Stands, load_stands
from mlops_module.storage import storage_of

if TYPE_CHECKING:  # the heavy modules load when a use case runs
    from mlops_module.building.environment import VerifyReport
    from mlops_module.building.package import PackageReport
    from mlops_module.release.deploy import Plan
    from mlops_module.release.promotion import PromotionReport
    from mlops_module.release.status import StandStatus

# --- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """A config resolved on one stand, with the stands file it was resolved against."""

    cfg: ModelConfig
    stands: Stands

    @property
    def next_stand(self) -> Stand | None:
        """The stand a promotion here pushes to, or None at the end of the chain / on a standalone stand."""
        return self.stands.get(self.cfg.stand.next) if self.cfg.stand.next else None


def resolve(config: Path | str, stand: str, *, stands_file: str | Path | None = None,
            check_files: bool = True) -> Resolved:
    """The config on ``stand`` (stands file: the given one, else ``$MLOPS_STANDS``, else the built-in)."""
    stands = load_stands(stands_file)
    (cfg,) = check(Path(config), stands, stand, check_files=check_files)
    return Resolved(cfg, stands)


def resolve_all(config: Path | str, stands: Stands, *, stand: str | None = None) -> list[ModelConfig]:
    """Every stand's merged view (or one stand's): what ``mlops validate`` checks."""
    return check(Path(config), stands, stand)


def resolve_bundle(bundle: str | Path, stand: str) -> Resolved:
    """The config a deployed bundle was rendered from, on its stand: what a DAG task works with.

    The stand's MLflow and storage addresses are the rendered ones from the bundle's index, so the gate and
    promote tasks talk to the same servers as the bundle's Spark jobs, whatever ``${VAR}`` in the stands file
    expands to in the scheduler's environment."""
    resolved = resolve(Path(bundle) / names.CONFIG_COPY, stand, check_files=False)
    index_file = Path(bundle) / names.BUNDLE_INDEX
    if not index_file.is_file():  # a config copy without its bundle (tests, older bundles)
        return resolved
    rendered = json.loads(index_file.read_text(encoding="utf-8")).get(names.BUNDLE_STAND_ADDRESSES) or {}
    addresses = {field: rendered[field] for field in names.STAND_ADDRESS_FIELDS if field in rendered}
    return Resolved(dataclasses.replace(resolved.cfg, stand=dataclasses.replace(resolved.cfg.stand, **addresses)),
                    resolved.stands)


# --- building ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactKeys:
    """Where a version's environment archive and code package live in a stand's storage."""

    env_object: str
    code_prefix: str


def artifact_keys(cfg: ModelConfig, art: Artifacts | None = None) -> ArtifactKeys:
    """The keys of a config's artifacts, from its repository (hashes the code tree: pass ``art`` if known)."""
    art = art or artifacts(cfg)
    return ArtifactKeys(art.env_object, art.code_prefix)


def bundle_artifact_keys(bundle: str | Path) -> ArtifactKeys:
    """The keys a deployed bundle runs (its index): a DAG task has the bundle, not the repository."""
    index = json.loads((Path(bundle) / names.BUNDLE_INDEX).read_text(encoding="utf-8"))
    return ArtifactKeys(index["env_object"], index["code_prefix"])


def package(cfg: ModelConfig, *, art: Artifacts | None = None, show_progress: bool = False,
            log: Log | None = None) -> PackageReport:
    """Build the environment archive and code package, upload what the stand's storage lacks."""
    from mlops_module.building.package import package as build_and_upload

    return build_and_upload(cfg, show_progress=show_progress, log=log, art=art)


def render(cfg: ModelConfig, templates: Path | None = None, art: Artifacts | None = None) -> Bundle:
    return render_bundle(cfg, templates, art)


def verify(source: str, *, stands_file: str | None = None, stand: str | None = None,
           log: Log | None = None) -> VerifyReport:
    """Download an environment archive (``s3://``, ``file://`` or a path), unpack it elsewhere, import every
    top-level requirement with its own interpreter."""
    from mlops_module.building.environment import verify as verify_archive
    from mlops_module.errors import MlopsError
    from mlops_module.storage import open_storage

    with tempfile.TemporaryDirectory(prefix="mlops-download-") as tmp:
        if source.startswith("file://"):
            source = source[len("file://"):]
        if source.startswith("s3://"):
            endpoint = load_stands(stands_file).get(stand).storage_endpoint_url if stand else None
            root, _, key = source.rpartition("/")
            local = Path(tmp) / key
            if log:
                log(f"downloading {source}")
            open_storage(root, endpoint).download(key, local)
        else:
            local = Path(source)
            if not local.is_file():
                raise MlopsError(f"{source}: no such file")
        return verify_archive(local, log)


# --- deploying -----------------------------------------------------------------------------------


def deploy(cfg: ModelConfig, *, bundle: Bundle | None = None, templates: Path | None = None,
           art: Artifacts | None = None, dry_run: bool = False, log: Log = print) -> Plan:
    """Publish ``cfg``'s bundle (rendered now, unless given) to its stand's DAG location; returns the plan."""
    from mlops_module.release.deploy import deploy as publish

    bundle = bundle or render_bundle(cfg, templates, art)
    return publish(bundle, cfg.stand.dags, endpoint_url=cfg.stand.storage_endpoint_url, dry_run=dry_run, log=log,
                   artifacts=storage_of(cfg.stand), create_folder=cfg.stand.backend == "local")


def read_checked_bundle(directory: Path, cfg: ModelConfig) -> Bundle:
    """A ``mlops render`` output, refused unless it was rendered from this config on this stand."""
    from mlops_module.release.deploy import read_bundle

    bundle = read_bundle(directory)
    rendered = json.loads(bundle.files[names.BUNDLE_INDEX])
    if (bundle.model, bundle.stand, rendered.get("config_hash")) != (cfg.name, cfg.stand.name, cfg.config_hash):
        raise UsageError(f"{directory} was rendered for {bundle.model} on {bundle.stand} from another config "
                         f"(or stands file): render it again with --stand {cfg.stand.name}")
    return bundle


@contextlib.contextmanager
def package_checkout(prefix: str, stand: str,
                     stands_file: str | Path | None = None) -> Iterator[tuple[Resolved, Artifacts]]:
    """A code package in the stand's storage (what a promotion pushed there), fetched as a model repository
    and resolved on ``stand``: the package is the repository. Refuses a package another toolkit version built
    (its built-in jobs and runtime are part of the key: re-rendering would point at another package).
    Yields the config and its artifact keys (computed once: render them with it)."""
    from mlops_module.release.deploy import DeployError, fetch_package

    stands = load_stands(stands_file)
    known_stand(stand, stands)
    with tempfile.TemporaryDirectory(prefix="mlops-package-") as tmp:
        config = fetch_package(storage_of(stands.get(stand)), prefix, Path(tmp))
        (cfg,) = check(config, stands, stand)
        art = artifacts(cfg)
        rendered = art.code_prefix
        if rendered != prefix.rstrip("/"):
            raise DeployError(f"{prefix} renders to another code package ({rendered}) with this mlops {__version__}: "
                              "the package was built by another mlops version or build (its built-in jobs and runtime "
                              "are part of the key); deploy with that one, or `mlops package` this version again")
        yield Resolved(cfg, stands), art


# --- releasing -----------------------------------------------------------------------------------


def trained_version(cfg: ModelConfig, airflow_run_id: str, mlflow: registry.RegistryClient | None = None,
                    job: str = "train") -> str:
    """The model version the train job of one Airflow run registered (never "the highest number")."""
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    run_id = registry.run_of_airflow_run(mlflow, cfg.name, cfg.stand.name, airflow_run_id, job=job)
    return registry.version_of_run(mlflow, cfg.name, run_id)


def gate(cfg: ModelConfig, *, version: str | None = None, run_id: str | None = None,
         airflow_run_id: str | None = None, pushed: bool = False, log: Log | None = None,
         mlflow: registry.RegistryClient | None = None) -> tuple[str, GateResult]:
    """Gate a candidate named by its version, its training run or the Airflow run that trained it.

    The evidence (see :mod:`.release.gate`): for a version ``pushed`` to this stand, or when the model has its
    own evaluation script, what the evaluate job of Airflow run ``airflow_run_id`` measured here; else the
    metrics its training run logged."""
    from mlops_module.release.gate import stand_evidence

    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    if version is None:
        if pushed:
            raise UsageError("a pushed version is named by its version on this stand")
        if run_id is not None:
            version = registry.version_of_run(mlflow, cfg.name, run_id)
        elif airflow_run_id is not None:
            version = trained_version(cfg, airflow_run_id, mlflow)
        else:
            raise UsageError("name the candidate: a version, a training run id or an Airflow run id")
    pushed = pushed or _was_pushed(cfg, registry.version_tags(mlflow, cfg.name, str(version)))
    if pushed and airflow_run_id is None:
        raise UsageError(f"version {version} was pushed to {cfg.stand.name}: only its acceptance run measures it here; "
                         "name that run with --airflow-run-id (the acceptance DAG's run), or start the acceptance "
                         "DAG again with the version in its conf")
    evidence = None
    if airflow_run_id is not None:
        evidence = stand_evidence(mlflow, cfg, str(version), airflow_run_id, pushed=pushed)
    return str(version), run_gate(cfg, str(version), mlflow, log, evidence)


def _was_pushed(cfg: ModelConfig, tags: dict[str, str]) -> bool:
    """Whether a version reached this stand by a push (registered from the previous stand's registry, or, on a
    shared registry, pushed here): its evidence is its acceptance run's, never its training's."""
    previous = cfg.stand.previous
    return previous is not None and (names.source_version_tag(previous) in tags
                                     or names.pushed_tag(cfg.stand.name) in tags)


def promote(resolved: Resolved, version: str, keys: ArtifactKeys, *, push: bool = True,
            reason: str = "quality gate passed", git_sha: str = "", trigger: Trigger | None = None,
            log: Log | None = None, mlflow: registry.RegistryClient | None = None, path: str = "trained",
            source: str | None = None, approved_by: str | None = None) -> PromotionReport:
    """Tags, the stand's alias, then (``push``) the push to the next stand and its deploy trigger. ``keys``:
    the artifacts to push when the version has none recorded yet (a version keeps what it was first
    promoted with). ``path``: trained here, pushed from ``source``, or retrained here (a retrain waits for
    approval where the stand's policy says so)."""
    from mlops_module.release.promotion import promote as promote_version

    nxt = resolved.next_stand if push else None
    return promote_version(resolved.cfg, version, nxt, env_object=keys.env_object, code_prefix=keys.code_prefix,
                           mlflow=mlflow, reason=reason, git_sha=git_sha, log=log, trigger=trigger, path=path,
                           source=source, approved_by=approved_by)


def inference_conf(cfg: ModelConfig, at: datetime.datetime | None = None) -> dict[str, str]:
    """The conf of the inference run a promotion starts: the latest complete interval of the inference schedule
    (the last day when it has none), so the new champion scores data that is there."""
    from croniter import croniter

    at = at or datetime.datetime.now(datetime.timezone.utc)
    schedule = cfg.inference.schedule or "@daily"
    cron = CRON_PRESETS.get(schedule, schedule)
    it = croniter(cron, at)
    end = it.get_prev(datetime.datetime)
    start = it.get_prev(datetime.datetime)
    return {"data_interval_start": start.isoformat(), "data_interval_end": end.isoformat(),
            "reason": f"{cfg.name}'s alias on {cfg.stand.name} moved: the promoter started inference"}


# --- running: what a scheduled run checks around its Spark job --------------------------------------


def first_deployed(bundle: str | Path) -> datetime.datetime | None:
    """When the bundle's DAGs first went live on their stand (``mlops deploy`` keeps it in the index; a bundle
    that was only rendered has none)."""
    index_file = Path(bundle) / names.BUNDLE_INDEX
    if not index_file.is_file():
        return None
    stamp = json.loads(index_file.read_text(encoding="utf-8")).get(names.BUNDLE_FIRST_DEPLOYED)
    return datetime.datetime.fromisoformat(stamp) if stamp else None


def stale_interval(first_deployed_at: datetime.datetime | None, run_type: str,
                   interval_end: datetime.datetime | None) -> str | None:
    """Why a run should not go ahead, or None: a *scheduled* run of an interval that ended before the DAG was
    first deployed is the scheduler catching up on a DAG just unpaused, not work anyone asked for (a manual run,
    a trigger's, a backfill's is asked for and always runs)."""
    if run_type != "scheduled" or first_deployed_at is None or interval_end is None or \
            interval_end > first_deployed_at:
        return None
    return (f"the interval ending {interval_end.isoformat()} ended before this DAG was first deployed "
            f"({first_deployed_at.isoformat()}): not run. Trigger the DAG by hand for that interval to run it")


def scored_rows(cfg: ModelConfig, airflow_run_id: str, job: str = "inference",
                mlflow: registry.RegistryClient | None = None) -> int | None:
    """The rows the job's run of ``airflow_run_id`` wrote through ``runtime.write_predictions`` (None: its
    script writes some other way or logs no MLflow run, so the toolkit can't tell)."""
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    try:
        run_id = registry.run_of_airflow_run(mlflow, cfg.name, cfg.stand.name, airflow_run_id, job=job)
    except registry.RegistryError:  # the script logs no run of its own (runtime.mlflow_run): nothing to read
        return None
    rows = mlflow.get_run(run_id).data.tags.get(names.RUN_TAG_ROWS_WRITTEN)
    return None if rows is None else int(rows)


def empty_window(cfg: ModelConfig, rows: int | None, interval: str) -> str | None:
    """What to say about an inference run that scored ``rows`` in ``interval``, when it is nothing."""
    if rows != 0:
        return None
    data = f"{cfg.stand.storage_uri.rstrip('/')}/{names.data_prefix(cfg.name)}/"
    return (f"{cfg.name}'s inference on {cfg.stand.name} scored 0 rows in the window {interval}: is that window's "
            f"data where the inference script reads it (by convention under {data})? See docs/tutorial.md, "
            "\"The data a stand needs\"")


def start_acceptance(cfg: ModelConfig, version: str, source_stand: str, source_version: str, *,
                     reason: str = "", log: Log | None = None) -> str:
    """Start the acceptance run of a version pushed to ``cfg``'s stand (what its deploy job does last)."""
    from mlops_module.release.acceptance import start_acceptance as start

    return start(cfg, version, source_stand, source_version, reason=reason, log=log)


def approve(config: Path | str, stand: str, version: str, *, stands_file: str | Path | None = None,
            reason: str = "approved", trigger: Trigger | None = None, log: Log | None = None) -> dict[str, Any]:
    """A person's word on ``stand``: a retrain held there (its version on that stand's registry) takes the alias;
    otherwise the deploy trigger ``stand`` (manual approval) held back when the stand before it pushed
    ``version`` (its version on that stand) is called."""
    from mlops_module.release.approval import approve as approve_push
    from mlops_module.release.history import actor

    stands = load_stands(stands_file)
    known_stand(stand, stands)
    (here,) = check(Path(config), stands, stand)
    mlflow = registry.client(here.stand.mlflow_tracking_uri)
    held = None
    with contextlib.suppress(registry.RegistryError):
        held = registry.version_tags(mlflow, here.name, version).get(names.held_tag(stand))
    if held == names.AWAITING or (held or "").startswith(names.APPROVED_PREFIX):
        from mlops_module.release.history import record
        from mlops_module.release.promotion import RETRAINED
        from mlops_module.storage import storage_of

        event: dict[str, Any] = {"action": "approve", "to_stand": stand, "version": version, "reason": reason}
        if held == names.AWAITING:  # once: a second approve (a retry) only starts inference again
            report = promote(Resolved(here, stands), version, artifact_keys(here), reason=reason, trigger=trigger,
                             log=log, mlflow=mlflow, path=RETRAINED, approved_by=actor())
            event = record(storage_of(here.stand), here.name, stand, {**event, "path": report.path,
                                                                       "pushed_to": report.pushed_to})
        if here.stand.start_inference and here.inference.enabled:  # the alias moved: the promoter starts inference
            from mlops_module.release.acceptance import start_dag_run

            run_id = names.INFERENCE_RUN_ID_TEMPLATE.replace("{{ run_id }}", f"approved-{stand}-v{version}")
            event["inference_run"] = start_dag_run(here, "inference", run_id, inference_conf(here), log,
                                                   unpause=False)
        return event
    previous = [s.name for s in stands if s.next == stand]
    if not previous:
        raise UsageError(f"nothing of {here.name} awaits approval on {stand}: version {version} is not a held "
                         f"retrain there, and no stand pushes to {stand}")
    (cfg,) = check(Path(config), stands, previous[0])
    return approve_push(cfg, version, stands.get(stand), reason=reason, log=log, trigger=trigger)


def rollback(cfg: ModelConfig, to: str | None = None, *, reason: str = "rollback",
             log: Log | None = None) -> dict[str, Any]:
    """Move the stand's alias back (release/rollback.py); a move is announced on the stand's channels, when this
    machine has their connections (else the output says nothing was sent)."""
    from mlops_module import notifications
    from mlops_module.release.rollback import rollback as roll_back

    event = roll_back(cfg, to, reason=reason, log=log)
    if event.get("changed"):
        notifications.rollback_done(cfg, event, say=log, story=version_story(cfg, str(event.get("to_version"))))
    return event


def version_story(cfg: ModelConfig, version: str, mlflow: registry.RegistryClient | None = None) -> str | None:
    """The version's story on its stand as its MLflow description tells it, in plain text: what a notification
    about it carries. None when the registry can't be read (the notification then says less, and still goes)."""
    from mlops_module.release.describe import story_of

    try:
        mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
        return story_of(mlflow, cfg.name, str(version), cfg.stand.name).text
    except Exception:
        return None


def unlock(cfg: ModelConfig, *, force: bool = False, reason: str = "") -> dict[str, Any]:
    from mlops_module.release.unlock import unlock as remove_lock

    return remove_lock(storage_of(cfg.stand), cfg.name, cfg.stand.name, force=force, reason=reason)


def status(config: Path | str, *, stands_file: str | Path | None = None) -> list[StandStatus]:
    """The model on every stand of the chain, each stand asked itself."""
    from mlops_module.release.status import status as ask

    stands = load_stands(stands_file)
    chain = [cfg for cfg in check(Path(config), stands) if cfg.stand.name in stands.order]
    return ask(sorted(chain, key=lambda c: stands.order.index(c.stand.name)))


def history(cfg: ModelConfig, warn: Log | None = None) -> list[dict[str, Any]]:
    from mlops_module.release.history import history as recorded

    return recorded(storage_of(cfg.stand), cfg.name, cfg.stand.name, warn)


@dataclass
class TrainOutcome:
    """What a train run left in the registry: its version, the gate's verdict on it, the stand's alias."""

    version: str | None = None
    verdict: str | None = None
    summary: str | None = None
    alias: str | None = None
    alias_read: bool = False  # False: the registry could not say (not: no version holds it)


def train_outcome(cfg: ModelConfig, airflow_run_id: str, mlflow: registry.RegistryClient | None = None,
                  version: str | None = None) -> TrainOutcome:
    """Read back, for information only: a part the registry can't answer stays None. ``version``: the one the run
    was about when known (an acceptance run's), else the one its train job registered."""
    mlflow = mlflow or registry.client(cfg.stand.mlflow_tracking_uri)
    outcome = TrainOutcome(version=version)
    stand = cfg.stand.name
    with contextlib.suppress(Exception):
        outcome.version = outcome.version or trained_version(cfg, airflow_run_id, mlflow)
    if outcome.version is not None:
        with contextlib.suppress(Exception):
            tags = registry.version_tags(mlflow, cfg.name, outcome.version)
            outcome.verdict = tags.get(names.gate_tag(stand))
            outcome.summary = registry.gate_summary(mlflow, cfg.name, outcome.version, stand)
    with contextlib.suppress(Exception):
        outcome.alias = registry.alias_version(mlflow, cfg.name, stand)
        outcome.alias_read = True
    return outcome
