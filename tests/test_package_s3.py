"""mlops package against an S3-compatible server (moto, its own process on loopback), through boto3."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import MINIMAL, PYTHON, PYTHON_HOME, write_repo

from mlops_module.building.artifacts import artifacts
from mlops_module.building.package import package
from mlops_module.building.render import render_bundle
from mlops_module.cli import main
from mlops_module.spec.config import check
from mlops_module.spec.stands import load_stands
from mlops_module.storage import S3Storage, StorageError, open_storage, sha256_file

pytestmark = pytest.mark.slow

STANDS = """\
order: [mdp, int]
defaults:
  kubernetes: {{conn_id: kubernetes_default, startup_timeout_seconds: 600, namespace: ml, service_account: spark}}
  spark: {{image: "apache/spark:3.5.5-python3", version: 3.5.5, python_versions: ["{python}"], python_home: "{home}",
          time_to_live_seconds: 60}}
  deploy: {{trigger: none, approval: auto}}
  airflow: {{dags: /tmp/dags}}
  mlflow: {{tracking_uri: "http://127.0.0.1:1"}}
  backend: kubernetes
stands:
  mdp: {{storage: {{uri: "s3://{bucket}-mdp/models", endpoint_url: "{endpoint}"}}}}
  int: {{storage: {{uri: "s3://{bucket}-int/models", endpoint_url: "{endpoint}"}}}}
"""


@pytest.fixture()
def setup(tmp_path: Path, s3: Any, s3_server: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    bucket = "b" + str(abs(hash(request.node.name)) % 10**8)
    for stand in ("mdp", "int"):
        s3.create_bucket(Bucket=f"{bucket}-{stand}")
    stands_file = tmp_path / "stands.yaml"
    # Built for this machine's Python, where `--verify` imports from the archive.
    stands_file.write_text(STANDS.format(bucket=bucket, endpoint=s3_server, python=PYTHON, home=PYTHON_HOME))
    config = write_repo(tmp_path / "repo", {**MINIMAL, "python": {"version": PYTHON}})
    (tmp_path / "repo" / "requirements.txt").write_text("humanize==4.12.1\n")
    (tmp_path / "repo" / "src" / "train.py").write_text("print('train')\n")
    stands = load_stands(stands_file)
    (cfg,) = check(config, stands, "mdp")
    return {"cfg": cfg, "bucket": bucket, "stands": stands, "stands_file": stands_file, "config": config,
            "endpoint": s3_server}


def counting_storage(uri: str, endpoint: str) -> tuple[S3Storage, list[str]]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    calls: list[str] = []
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    return S3Storage(uri, endpoint, client), calls


def test_upload_then_skip_with_zero_bytes(setup: dict[str, Any], s3: Any) -> None:
    cfg, bucket = setup["cfg"], setup["bucket"]
    first = package(cfg)
    assert [a.status for a in first.artifacts] == ["uploaded", "uploaded"]
    art = artifacts(cfg)
    head = s3.head_object(Bucket=f"{bucket}-mdp", Key=f"models/{art.env_object}")
    assert head["Metadata"]["sha256"] == first.artifacts[0].sha256
    assert first.artifacts[0].bytes_uploaded == head["ContentLength"] > 0
    listed = s3.list_objects_v2(Bucket=f"{bucket}-mdp", Prefix=f"models/{art.code_prefix}/")
    names = {o["Key"].split(art.code_prefix + "/", 1)[1] for o in listed["Contents"]}
    assert {"code.zip", "src/train.py", "model.yaml", "_mlops/monitoring.py"} <= names

    storage, calls = counting_storage(cfg.stand.storage_uri, setup["endpoint"])
    second = package(cfg, storage)
    assert [a.status for a in second.artifacts] == ["skipped", "skipped"]
    assert [a.bytes_uploaded for a in second.artifacts] == [0, 0]
    assert calls == ["HeadBucket", "HeadObject", "HeadObject"]  # nothing built, nothing uploaded


def test_manifests_reference_the_uploaded_objects(setup: dict[str, Any], s3: Any) -> None:
    cfg = setup["cfg"]
    report = package(cfg)
    manifest = render_bundle(cfg).files["manifests/churn-mdp-train.yaml"]
    env_uri = report.artifacts[0].uri.replace("s3://", "s3a://")
    assert f'"{env_uri}#environment"' in manifest
    code_uri = report.artifacts[1].uri.replace("s3://", "s3a://")
    assert f'"{code_uri}/code.zip"' in manifest and f'"{code_uri}/src/train.py"' in manifest


class Boom(Exception):
    pass


def test_interrupted_upload_leaves_nothing_under_the_final_key(setup: dict[str, Any], s3: Any,
                                                               tmp_path: Path) -> None:
    bucket = f"{setup['bucket']}-mdp"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40 * 1024 * 1024))
    digest = sha256_file(big)
    storage = open_storage(f"s3://{bucket}/models", setup["endpoint"])
    sent = {"n": 0}

    def fail_midway(n: int) -> None:
        sent["n"] += n
        if sent["n"] > 12 * 1024 * 1024:
            raise Boom("connection lost")

    with pytest.raises(Boom):
        storage.upload(big, "envs/big.tar.gz", digest, fail_midway)
    assert storage.stat("envs/big.tar.gz") is None
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="models/envs/")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted, not left behind
    storage.upload(big, "envs/big.tar.gz", digest)
    info = storage.stat("envs/big.tar.gz")
    assert info is not None and (info.size, info.sha256) == (big.stat().st_size, digest)


def test_failed_package_run_converges_on_the_next(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = setup["cfg"]
    original = S3Storage.upload

    def flaky(self: S3Storage, source: Path, key: str, sha256: str, progress: Any = None) -> None:
        if key.startswith("envs/"):
            raise StorageError(f"upload to {self.url(key)} failed: SlowDown")
        original(self, source, key, sha256, progress)

    monkeypatch.setattr(S3Storage, "upload", flaky)
    with pytest.raises(StorageError):
        package(cfg)
    monkeypatch.undo()
    assert open_storage(cfg.stand.storage_uri, setup["endpoint"]).stat(artifacts(cfg).env_object) is None
    report = package(cfg)
    assert [a.status for a in report.artifacts] == ["uploaded", "uploaded"]


def test_server_side_copy_to_the_next_stand(setup: dict[str, Any]) -> None:
    cfg, stands = setup["cfg"], setup["stands"]
    package(cfg)
    key = artifacts(cfg).env_object
    source, source_calls = counting_storage(cfg.stand.storage_uri, setup["endpoint"])
    target, calls = counting_storage(stands.get("int").storage_uri, setup["endpoint"])
    copied = source.copy(key, target)
    assert copied.sha256 == source.stat(key).sha256
    # Server-side: nothing uploaded from here; the source read once and the copy read back, both checked.
    assert ("CopyObject" in calls or "UploadPartCopy" in calls) and not {"PutObject", "UploadPart"} & set(calls)
    assert source_calls.count("GetObject") == 1 and calls.count("GetObject") == 2  # the copy: before and after
    calls.clear()
    source_calls.clear()
    source.copy(key, target)  # already there and intact: no copy, the source not read
    assert "CopyObject" not in calls and "GetObject" not in source_calls


def test_cli_package_json(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["package", str(setup["config"]), "--stand", "mdp", "--stands", str(setup["stands_file"]), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert [a["status"] for a in first["artifacts"]] == ["uploaded", "uploaded"]
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert [(a["status"], a["bytes_uploaded"]) for a in second["artifacts"]] == [("skipped", 0), ("skipped", 0)]
    assert {a["key"] for a in first["artifacts"]} == {a["key"] for a in second["artifacts"]}
    env_uri = first["artifacts"][0]["uri"]
    assert main(["package", "--verify", env_uri, "--stand", "mdp", "--stands", str(setup["stands_file"]),
                 "--quiet"]) == 0


def test_unreachable_storage_is_a_clear_error(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    stands_file = setup["stands_file"]
    stands_file.write_text(stands_file.read_text().replace(setup["endpoint"], "http://127.0.0.1:9"))
    assert main(["package", str(setup["config"]), "--stand", "mdp", "--stands", str(stands_file), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "access to s3://" in err and "Could not connect" in err and "Traceback" not in err


def test_missing_bucket_fails_before_building(setup: dict[str, Any], s3: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    stands_file = setup["stands_file"]
    stands_file.write_text(stands_file.read_text().replace(f"{setup['bucket']}-mdp", "no-such-bucket-mlops"))
    assert main(["package", str(setup["config"]), "--stand", "mdp", "--stands", str(stands_file)]) == 1
    err = capsys.readouterr().err
    assert "access to s3://no-such-bucket-mlops/models" in err and "installing" not in err
