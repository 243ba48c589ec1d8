"""mlops deploy: to a directory and to s3:// (moto on loopback), plans, no-ops, removals, failures
part-way (the previous bundle stays live and loads in a real DagBag), other models untouched."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import MINIMAL, dagbag, write_repo

from mlops_module import names
from mlops_module.building.artifacts import artifacts
from mlops_module.building.render import BUNDLE_INDEX, dag_jobs, render_bundle
from mlops_module.cli import main
from mlops_module.release.deploy import IGNORE_FILE, STAGING, DeployError, deploy, target_for
from mlops_module.spec.config import check
from mlops_module.spec.stands import load_stands
from mlops_module.storage import FileStorage, S3Storage, StorageError, open_storage, sha256_file

pytestmark = pytest.mark.slow

DEFAULTS = """\
defaults:
  kubernetes: {{conn_id: kubernetes_default, startup_timeout_seconds: 600, namespace: ml, service_account: spark}}
  spark: {{image: "apache/spark:3.5.5-python3", version: 3.5.5, python_versions: ["3.11"], time_to_live_seconds: 60}}
  deploy: {{trigger: none, approval: auto}}
  mlflow: {{tracking_uri: "http://127.0.0.1:1"}}
  backend: kubernetes
"""
STANDS = "order: [dir, s3]\n" + DEFAULTS + """\
stands:
  dir:
    airflow: {{dags: "{tmp}/dags"}}
    storage: {{uri: "file://{tmp}/storage"}}
  s3:
    airflow: {{dags: "s3://{bucket}-dags/airflow/dags"}}
    storage: {{uri: "s3://{bucket}-models/models", endpoint_url: "{endpoint}"}}
"""


@pytest.fixture()
def world(tmp_path: Path, s3: Any, s3_server: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    bucket = "d" + str(abs(hash(request.node.name)) % 10**8)
    for suffix in ("dags", "models"):
        s3.create_bucket(Bucket=f"{bucket}-{suffix}")
    stands_file = tmp_path / "stands.yaml"
    stands_file.write_text(STANDS.format(tmp=tmp_path, bucket=bucket, endpoint=s3_server))
    (tmp_path / "dags").mkdir()  # the stand's (mounted) DAG folder
    return {"tmp": tmp_path, "s3": s3, "bucket": bucket, "endpoint": s3_server, "stands_file": stands_file,
            "stands": load_stands(stands_file)}


def repo(world: dict[str, Any], name: str = "churn", **overrides: Any) -> Path:
    config = {**MINIMAL, "model": {"name": name, "owner": "risk-team"}, **overrides}
    return write_repo(world["tmp"] / f"repo-{name}", config)


def packaged(world: dict[str, Any], config: Path, stand: str) -> Any:
    """The resolved config, with placeholder artifacts where its DAGs expect the environment and code."""
    (cfg,) = check(config, world["stands"], stand)
    store = open_storage(cfg.stand.storage_uri, cfg.stand.storage_endpoint_url)
    art = artifacts(cfg)
    if store.stat(art.env_object) is None:
        placeholder = world["tmp"] / "placeholder"
        placeholder.write_bytes(b"env")
        store.upload(placeholder, art.env_object, sha256_file(placeholder))
    store.put_bytes(f"{art.code_prefix}/code.zip", b"code")
    return cfg


def live_files(world: dict[str, Any], stand: str, model: str = "churn") -> dict[str, str]:
    """The live bundle's files, its index without the first deployment's time (which render doesn't know)."""
    dags = world["stands"].get(stand).dags
    files = target_for(dags, model, stand).live()
    if BUNDLE_INDEX in files:
        index = json.loads(files[BUNDLE_INDEX])
        index.pop(names.BUNDLE_FIRST_DEPLOYED)
        files[BUNDLE_INDEX] = json.dumps(index, indent=2, sort_keys=True) + "\n"
    return files


def first_deployed(world: dict[str, Any], stand: str, model: str = "churn") -> str:
    dags = world["stands"].get(stand).dags
    return str(json.loads(target_for(dags, model, stand).live()[BUNDLE_INDEX])[names.BUNDLE_FIRST_DEPLOYED])


def synced_dag_folder(world: dict[str, Any], stand: str) -> Path:
    """The stand's DAG folder as the scheduler sees it: the directory, or the S3 prefix synced down."""
    dags = world["stands"].get(stand).dags
    if not dags.startswith("s3://"):
        return Path(dags)
    store = open_storage(dags)
    local = world["tmp"] / f"synced-{len(list(world['tmp'].glob('synced-*')))}"
    for key in store.list_keys(""):
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(store.read_bytes(key) or b"")
    assert (local / "churn" / IGNORE_FILE).is_file()
    return local


def quiet(_: str) -> None:
    pass


@pytest.mark.parametrize("stand", ["dir", "s3"])
def test_deploy_publishes_loads_and_a_second_deploy_is_a_no_op(world: dict[str, Any], stand: str) -> None:
    cfg = packaged(world, repo(world), stand)
    bundle = render_bundle(cfg)
    first = deploy(bundle, cfg.stand.dags, artifacts=open_storage(cfg.stand.storage_uri), log=quiet)
    assert {c.action for c in first.changes} == {"add"} and first.count("add") == len(bundle.files)
    assert live_files(world, stand) == bundle.files
    stamp = first_deployed(world, stand)  # when the DAGs first went live: what check_interval compares with
    assert abs(datetime.datetime.fromisoformat(stamp) - datetime.datetime.now(datetime.timezone.utc)).total_seconds() \
        < 600
    folder = synced_dag_folder(world, stand)
    bag = dagbag(folder)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {names.dag_id("churn", stand, j.kind) for j in dag_jobs(cfg)}
    assert (names.dag_id("churn", stand, names.ACCEPT) in bag.dag_ids) == (stand == "s3")  # s3 receives pushes
    assert all(Path(d.fileloc).parent == folder / "churn" / stand for d in bag.dags.values())

    # What Airflow leaves beside the DAG files (and anything the index doesn't list) is not in any plan.
    store = FileStorage(f"file://{cfg.stand.dags}") if stand == "dir" else open_storage(cfg.stand.dags)
    store.put_bytes(f"churn/{stand}/__pycache__/churn__{stand}__train.cpython-311.pyc", b"\x00bytecode")
    lines: list[str] = []
    again = deploy(render_bundle(cfg), cfg.stand.dags, log=lines.append)
    assert again.noop and again.unchanged == tuple(bundle.files)
    assert "nothing to do" in "\n".join(lines)
    assert first_deployed(world, stand) == stamp  # kept: a redeploy is no new deployment
    if stand == "s3":  # nothing staged or left behind
        keys = open_storage(cfg.stand.dags).list_keys("churn/")
        assert not [k for k in keys if STAGING in k]


@pytest.mark.parametrize("stand", ["dir", "s3"])
def test_disabling_a_job_removes_its_files_and_other_models_survive(world: dict[str, Any], stand: str) -> None:
    cfg = packaged(world, repo(world), stand)
    other = packaged(world, repo(world, "fraud"), stand)
    deploy(render_bundle(cfg), cfg.stand.dags, log=quiet)
    deploy(render_bundle(other), other.stand.dags, log=quiet)
    before_other = live_files(world, stand, "fraud")
    platform_dag = "# a DAG of the platform team's, beside ours\n"
    if stand == "dir":
        (Path(cfg.stand.dags) / "platform.py").write_text(platform_dag)
    else:
        open_storage(cfg.stand.dags).put_bytes("platform.py", platform_dag.encode())

    without = packaged(world, repo(world, monitoring={"enabled": False}), stand)
    result = deploy(render_bundle(without), without.stand.dags, log=quiet)
    removed = {c.path for c in result.changes if c.action == "remove"}
    assert removed == {names.dag_file("churn", stand, "monitoring"), names.manifest_file("churn", stand, "monitoring")}
    assert {BUNDLE_INDEX, "config/model.yaml"} <= {c.path for c in result.changes if c.action == "change"}
    assert next(c for c in result.changes if c.path == "config/model.yaml").diff.count("+  enabled: false") == 1
    live = live_files(world, stand)
    assert names.dag_file("churn", stand, "monitoring") not in live and len(live) == len(render_bundle(without).files)
    assert live_files(world, stand, "fraud") == before_other
    folder = synced_dag_folder(world, stand)
    assert (folder / "platform.py").read_text() == platform_dag
    bag = dagbag(folder)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {names.dag_id("churn", stand, j.kind) for j in dag_jobs(without)} | {
        names.dag_id("fraud", stand, j.kind) for j in dag_jobs(other)}
    assert names.dag_id("churn", stand, "monitoring") not in bag.dag_ids


@pytest.mark.parametrize("stand", ["dir", "s3"])
def test_a_failure_mid_deploy_leaves_the_previous_bundle_live(world: dict[str, Any], stand: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = packaged(world, repo(world), stand)
    deploy(render_bundle(cfg), cfg.stand.dags, log=quiet)
    previous = live_files(world, stand)
    changed = packaged(world, repo(world, train={"script": "src/train.py", "args": ["--max-iter", "9"]},
                                   inference={"script": "src/inference.py", "schedule": "@hourly"}), stand)
    writes = [0]
    with monkeypatch.context() as patch:
        if stand == "dir":
            original = Path.write_text

            def failing_write(self: Path, *args: Any, **kwargs: Any) -> int:
                writes[0] += 1
                if writes[0] == 4:
                    raise OSError(28, "No space left on device")
                return original(self, *args, **kwargs)

            patch.setattr(Path, "write_text", failing_write)
        else:
            original_put = S3Storage.put_bytes

            def failing_put(self: S3Storage, key: str, data: bytes) -> None:
                writes[0] += 1
                if writes[0] == 3:
                    raise StorageError(f"write {self.url(key)} failed: SlowDown")
                original_put(self, key, data)

            patch.setattr(S3Storage, "put_bytes", failing_put)
        with pytest.raises(DeployError, match="stays live"):
            deploy(render_bundle(changed), changed.stand.dags, log=quiet)
    assert writes[0] >= 3  # it did fail part-way
    assert live_files(world, stand) == previous
    bag = dagbag(synced_dag_folder(world, stand))
    assert bag.import_errors == {} and len(bag.dag_ids) == len(dag_jobs(cfg))
    inference = names.dag_file("churn", stand, "inference")
    assert "@hourly" in render_bundle(changed).files[inference] and "@hourly" not in previous[inference]
    # nothing half-written is left where the scheduler looks; the lock is released; a retry finishes
    root_keys = (FileStorage(f"file://{cfg.stand.dags}") if stand == "dir" else open_storage(cfg.stand.dags))
    assert [k for k in root_keys.list_keys(f"churn/{STAGING}/") if not k.endswith(".lock")] == []
    assert root_keys.read_bytes(f"churn/{STAGING}/{stand}.lock") is None
    retry = deploy(render_bundle(changed), changed.stand.dags, log=quiet)
    assert retry.count("change") >= 3 and live_files(world, stand) == render_bundle(changed).files


def test_staging_is_invisible_to_the_dag_processor_in_both_ignore_syntaxes(world: dict[str, Any],
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = packaged(world, repo(world), "dir")
    deploy(render_bundle(cfg), cfg.stand.dags, log=quiet)
    root = Path(cfg.stand.dags) / "churn"
    half = root / STAGING / ".dir.mlops-tmp-half"  # what an interrupted deploy could leave for a moment
    half.mkdir(parents=True)
    (half / names.dag_file("churn", "dir", "train")).write_text("this is not python (\n")
    for syntax in ("glob", "regexp"):
        monkeypatch.setenv("AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX", syntax)
        bag = dagbag(Path(cfg.stand.dags))
        assert bag.import_errors == {}, syntax
        assert len(bag.dag_ids) == 3


def test_cli_plan_dry_run_bundle_and_missing_artifacts(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = repo(world)
    stands = ["--stands", str(world["stands_file"])]
    assert main(["deploy", str(config), "--stand", "dir", *stands]) == 1
    err = capsys.readouterr().err
    assert "not found" in err and "mlops package --stand dir" in err
    assert not (world["tmp"] / "dags" / "churn" / "dir").exists()

    packaged(world, config, "dir")
    assert main(["deploy", str(config), "--stand", "dir", "--dry-run", *stands]) == 0
    out = capsys.readouterr().out
    assert f"+ {names.dag_file('churn', 'dir', 'train')}" in out and "dry run: nothing was written" in out
    assert not (world["tmp"] / "dags" / "churn" / "dir").exists()

    assert main(["deploy", str(config), "--stand", "dir", *stands]) == 0
    capsys.readouterr()
    changed = repo(world, inference={"script": "src/inference.py", "schedule": "@hourly"})
    packaged(world, changed, "dir")
    assert main(["deploy", str(changed), "--stand", "dir", "--dry-run", "--json", *stands]) == 0
    captured = capsys.readouterr()
    plan = json.loads(captured.out)
    assert plan["dry_run"] and not plan["noop"] and plan["removed"] == [] and plan["added"] == []
    dag = names.dag_file("churn", "dir", "inference")
    assert dag in plan["changed"] and "+    schedule=CronDataIntervalTimetable('@hourly'" in plan["diffs"][dag]
    assert f"~ {dag}" in captured.err

    # --bundle: exactly what render wrote, for the config and stand it was rendered from
    out = world["tmp"] / "build"
    assert main(["render", str(changed), "--stand", "dir", "--out", str(out), *stands]) == 0
    assert main(["deploy", str(repo(world, "fraud")), "--stand", "dir", "--bundle", str(out), *stands]) == 2
    assert "from another config" in capsys.readouterr().err
    assert main(["deploy", str(changed), "--stand", "dir", "--bundle", str(out), "--json", *stands]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] != []
    assert live_files(world, "dir")[dag] == (out / dag).read_text()
    (out / dag).write_text((out / dag).read_text() + "# edited by hand\n")
    assert main(["deploy", str(changed), "--stand", "dir", "--bundle", str(out), *stands]) == 1
    assert "changed after `mlops render`" in capsys.readouterr().err


def test_a_directory_not_written_by_deploy_is_refused(world: dict[str, Any]) -> None:
    cfg = packaged(world, repo(world), "dir")
    with pytest.raises(DeployError, match="is the stand's volume mounted"):
        deploy(render_bundle(cfg), cfg.stand.dags + "/unmounted", log=quiet, create_folder=False)
    assert not Path(cfg.stand.dags, "unmounted").exists()
    squatter = Path(cfg.stand.dags) / "churn" / "dir"
    squatter.mkdir(parents=True)
    (squatter / "notes.txt").write_text("mine")
    with pytest.raises(DeployError, match="not written by"):
        deploy(render_bundle(cfg), cfg.stand.dags, log=quiet)
    assert (squatter / "notes.txt").read_text() == "mine"


def test_config_check_monitoring_needs_inference(world: dict[str, Any]) -> None:
    from mlops_module.errors import ConfigError

    config = repo(world, inference={"script": "src/inference.py", "enabled": False})
    with pytest.raises(ConfigError, match="inference is disabled"):
        check(config, world["stands"], "dir")
    config = repo(world, inference={"script": "src/inference.py", "enabled": False}, monitoring={"enabled": False})
    (cfg,) = check(config, world["stands"], "dir")
    assert [j.kind for j in cfg.jobs] == ["train"]
    assert yaml.safe_load(render_bundle(cfg).files[BUNDLE_INDEX])["dag_ids"] == ["churn__dir__train"]


CHAIN = "order: [dev, qa]\n" + DEFAULTS + """\
stands:
  dev:
    airflow: {{dags: "{tmp}/dev-dags"}}
    storage: {{uri: "file://{tmp}/dev-storage"}}
  qa:
    airflow: {{dags: "{tmp}/qa-dags"}}
    storage: {{uri: "file://{tmp}/qa-storage"}}
    deploy: {{trigger: command, approval: auto}}
"""


def test_the_command_trigger_deploys_the_pushed_package_without_the_repository(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from mlops_module.building.package import package
    from mlops_module.release.triggers import call_trigger

    stands_file = tmp_path / "stands.yaml"
    stands_file.write_text(CHAIN.format(tmp=tmp_path))
    monkeypatch.delenv("MLOPS_STANDS", raising=False)  # the file reaches the deploy as given, not by the environment
    for folder in ("dev-dags", "qa-dags"):
        (tmp_path / folder).mkdir()
    stands = load_stands(stands_file)
    config = write_repo(tmp_path / "repo", MINIMAL)
    (dev,) = check(config, stands, "dev")
    art = artifacts(dev)
    dev_store = open_storage(dev.stand.storage_uri)
    placeholder = tmp_path / "placeholder"
    placeholder.write_bytes(b"env")
    dev_store.upload(placeholder, art.env_object, sha256_file(placeholder))  # built already: package skips it
    package(dev)
    qa_store = open_storage(stands.get("qa").storage_uri)
    for key in [art.env_object, *dev_store.list_keys(art.code_prefix + "/")]:  # what the push copies
        dev_store.copy(key, qa_store)
    # The train DAG's promote task knows the config only as rendered into its bundle: no repository beside it.
    in_bundle = tmp_path / "bundle" / "config" / "model.yaml"
    in_bundle.parent.mkdir(parents=True)
    in_bundle.write_text(config.read_text())
    (promoting,) = check(in_bundle, stands, "dev", check_files=False)
    assert call_trigger(promoting, stands.get("qa"), "1", {"CODE_PACKAGE": art.code_prefix},
                        stands_file=str(stands_file)) == "command"
    index = json.loads(live_files({"stands": stands}, "qa")[BUNDLE_INDEX])
    (qa,) = check(config, stands, "qa")
    assert index["config_hash"] == qa.config_hash and index["code_prefix"] == art.code_prefix
    assert index["env_object"] == art.env_object  # the same artifacts, found on qa: nothing rebuilt

    assert main(["deploy", "--package", f"code/{dev.name}/nope", "--stand", "qa", "--stands", str(stands_file)]) == 1
    assert "is not a code package `mlops package` recorded" in capsys.readouterr().err
