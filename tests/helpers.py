"""Shared test helpers: model repos on disk, rendering, Airflow loading, the strict CRD schema."""

from __future__ import annotations

import copy
import hashlib
import re
import sys
import types
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mlops_module import names
from mlops_module.building.render import render_bundle, write_bundle
from mlops_module.names import local_python_home
from mlops_module.spec.config import ModelConfig, check
from mlops_module.spec.stands import load_stands

ROOT = Path(__file__).resolve().parents[1]
# The released SparkApplication CRD, kept as test data with its source and license (SOURCE.md beside it).
CRD_FILE = ROOT / "tests" / "data" / "crds" / "spark-operator-v2.5.2" / "sparkoperator.k8s.io_sparkapplications.yaml"
CRD_SHA256 = "ecd9c14fcadb9d5f8ced4c4ee31920548ea53a892e0a69c3e43aa758bfca6d94"
EXAMPLE_CONFIGS = sorted(ROOT.glob("examples/*/model.yaml"))
TEST_CONFIGS = sorted(ROOT.glob("tests/configs/*/model.yaml"))
ALL_CONFIGS = EXAMPLE_CONFIGS + TEST_CONFIGS
STANDS = ("local", "mdp", "int", "lt", "prom")
# This machine's Python (3.10-3.12): what the local stand's "image" runs jobs with, where it really lives.
# Tests that build or run an environment archive use these, not a version and /usr/bin of their own.
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
PYTHON_HOME = local_python_home()

MINIMAL: dict[str, Any] = {
    "model": {"name": "churn", "owner": "risk-team"},
    "python": {"version": "3.11"},
    "train": {"script": "src/train.py"},
    "inference": {"script": "src/inference.py"},
}


def write_repo(root: Path, config: dict[str, Any] | str, extra_files: tuple[str, ...] = ()) -> Path:
    """A model repository with the config and every file it names (empty scripts are enough here)."""
    root.mkdir(parents=True, exist_ok=True)
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    path = root / "model.yaml"
    path.write_text(text, encoding="utf-8")
    for rel in ("requirements.txt", "src/train.py", "src/inference.py", "src/quality.py", "src/monitoring.py",
                *extra_files):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    return path


def stands_for_tests(tmp_path: Path, mlflow_server: str, chain_local: bool = False) -> Path:
    """The built-in stands with the test MLflow server as every stand's registry, temp directories as
    their storage and the local stand's DAG folder, and no Jenkins: promotions push for real.
    ``chain_local`` puts local at the head of the chain, as the demo's stands file does."""
    text = (ROOT / "mlops_module" / "data" / "stands.yaml").read_text()
    if chain_local:
        text = text.replace("order: [mdp,", "order: [local, mdp,").replace("standalone: [local]", "")
    text = re.sub(r"tracking_uri: \S+", f"tracking_uri: {mlflow_server}", text)
    text = re.sub(r"uri: (s3://|file://\$\{MLOPS_HOME\}/)([a-z-]+)\S*", rf"uri: file://{tmp_path}/\2", text)
    text = text.replace("dags: ${MLOPS_HOME}/local/airflow/dags", f"dags: {tmp_path}/dags")
    stands = tmp_path / "stands.yaml"
    stands.write_text(text.replace("trigger: jenkins", "trigger: none"))
    return stands


def resolve(config_path: Path, stand: str) -> ModelConfig:
    (cfg,) = check(config_path, load_stands(), stand)
    return cfg


def render(config_path: Path, stand: str, out: Path) -> Path:
    return write_bundle(render_bundle(resolve(config_path, stand)), out)


def dagbag(folder: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


def run_context(dag: Any, conf: dict[str, Any] | None = None, logical_date: bool = True) -> dict[str, Any]:
    """What Airflow's task runner hands to template rendering (sdk/execution_time/task_runner.py).

    A run without a logical date (``airflow dags trigger``, the API with ``logical_date: null``)
    has no ``data_interval_*`` keys and no interval on its dag_run.
    """
    import pendulum

    start, end = pendulum.datetime(2025, 3, 3, 3), pendulum.datetime(2025, 3, 10, 3)
    dag_run = types.SimpleNamespace(run_after=end, conf=conf, data_interval_start=None, data_interval_end=None)
    context = {"run_id": "scheduled__2025-03-10T03:00:00+00:00", "params": {}, "dag_run": dag_run, "dag": dag}
    if logical_date:
        dag_run.data_interval_start, dag_run.data_interval_end = start, end
        context |= {"data_interval_start": start, "data_interval_end": end, "logical_date": end}
    return context


def airflow_rendered_manifest(dag: Any, task_id: str, conf: dict[str, Any] | None = None,
                              logical_date: bool = True) -> dict[str, Any]:
    """The manifest as the operator sees it at run time: Airflow's Jinja applied, then YAML parsed."""
    task = copy.deepcopy(dag.get_task(task_id))
    task.render_template_fields(run_context(dag, conf, logical_date), jinja_env=dag.get_template_env())
    docs = list(yaml.safe_load_all(task.application_file))
    assert len(docs) == 1, f"expected one YAML document, got {len(docs)}"
    return docs[0]


def spark_task_id(job: str) -> str:
    return {"train": "train", "inference": "infer", "monitoring": "monitor"}[job]


def _tighten(schema: Any) -> None:
    if isinstance(schema, dict):
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            _tighten(value)
    elif isinstance(schema, list):
        for value in schema:
            _tighten(value)


@cache
def strict_crd_schema() -> dict[str, Any]:
    """The released CRD's v1beta2 schema, with unknown fields made errors (the API server would prune them)."""
    data = CRD_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == CRD_SHA256, f"{CRD_FILE} is not the released v2.5.2 file (SOURCE.md)"
    crd = yaml.safe_load(data)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta2"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    _tighten(schema)
    return schema


def crd_errors(manifest: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(strict_crd_schema())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def bundle_paths(model: str, stand: str) -> dict[str, tuple[str, str]]:
    return {job: (names.dag_file(model, stand, job), names.manifest_file(model, stand, job)) for job in names.JOBS}


def upload_stub_artifacts(store: Any, env_object: str, code_prefix: str, scratch: Path) -> None:
    """What `mlops package` uploads, as small stand-ins with true checksums: a promotion checks the bytes of the
    environment archive and the code package (code.zip marks it finished) before the alias moves."""
    from mlops_module.storage import sha256_file

    for key in (env_object, f"{code_prefix}/{names.CODE_ZIP}"):
        local = scratch / "stub-artifact"
        local.write_bytes(key.encode())
        store.upload(local, key, sha256_file(local))


def example_with_data(example: Path, root: Path, name: str, rows: int, seed: int) -> tuple[Path, Path]:
    """A copy of an example repository under a model name of its own (other tests promote the example's name
    on the session's server), and a local storage holding ``rows`` of its generated events: (config, storage)."""
    import shutil
    import sys

    repo = root / "repo"
    shutil.copytree(example, repo)
    config = repo / "model.yaml"
    config.write_text(config.read_text().replace("name: churn-classifier", f"name: {name}"))
    sys.path.insert(0, str(example / "src"))
    try:
        from data import generate
    finally:
        sys.path.remove(str(example / "src"))
    storage = root / "storage"
    (storage / "data" / name).mkdir(parents=True)
    generate(rows, seed=seed).to_parquet(storage / "data" / name / "events.parquet")
    return config, storage


VERDICT_FAMILIES = ("quality_gate",)  # a gate's verdict and anything about it (summary, champion, when)


def verdict_tags_per_stand(tags: dict[str, str]) -> dict[str, list[str]]:
    """The tags of a model version that state (or restate) a stand's verdict, per stand, by key shape alone:
    ``quality_gate.<stand>`` and ``quality_gate.<stand>.<detail>``; the latest-verdict pair ``quality_gate`` and
    ``quality_gate.stand`` (counted for the stand the latter names); ``source.<stand>.<field>`` other than the
    version number (evidence carried with a push, which reads as another verdict of that stand). Not counted:
    ``held.<stand>`` (an approval state), ``pushed.<stand>`` (a push's state), ``promoted.<stand>.previous_version``
    and ``source.<stand>.version`` (where the version came from)."""
    found: dict[str, list[str]] = {}
    latest_stand = tags.get("quality_gate.stand", "?")
    for key in tags:
        parts = key.split(".")
        if key in ("quality_gate", "quality_gate.stand"):
            stand = latest_stand
        elif (parts[0] in VERDICT_FAMILIES and len(parts) >= 2) or (
                parts[0] == "source" and len(parts) >= 3 and parts[2] != "version"):
            stand = parts[1]
        else:
            continue
        found.setdefault(stand, []).append(key)
    return found


def at_most_one_verdict_per_stand(tags: dict[str, str]) -> dict[str, list[str]]:
    """The stands with more than one verdict tag (empty when the version tells each stand's verdict once)."""
    return {stand: keys for stand, keys in verdict_tags_per_stand(tags).items() if len(keys) > 1}


def elf_sections(path: Path) -> set[str]:
    """The section names of a 64-bit ELF file (``.symtab`` is what ``strip`` removes)."""
    import struct

    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, f"{path} is not a 64-bit ELF file"
    order = "<" if data[5] == 1 else ">"
    (offset,) = struct.unpack_from(order + "Q", data, 0x28)
    size, count, names_index = struct.unpack_from(order + "HHH", data, 0x3A)

    def header(i: int) -> tuple[int, int]:  # (name's offset in the names section, section's offset)
        (name,) = struct.unpack_from(order + "I", data, offset + i * size)
        (where,) = struct.unpack_from(order + "Q", data, offset + i * size + 0x18)
        return name, where

    strings = header(names_index)[1]
    found = set()
    for i in range(count):
        start = strings + header(i)[0]
        found.add(data[start:data.index(b"\0", start)].decode())
    return found


def library_with_symbols(scratch: Path) -> Path:
    """A small ELF shared library that has a symbol table and loads from anywhere (needs only the C
    library), copied from this environment's packages into ``scratch``."""
    import shutil

    from mlops_module.building.libraries import loadable

    site = Path(jsonschema.__file__).resolve().parents[1]
    for found in sorted(site.rglob("*.so")):
        if ".libs" in found.as_posix() or found.stat().st_size > 500_000 or found.read_bytes()[:4] != b"\x7fELF":
            continue
        if ".symtab" in elf_sections(found):
            candidate = scratch / f"probe{found.stat().st_size}.so"
            shutil.copy2(found, candidate)
            if loadable([candidate], sys.executable):
                return candidate
    raise AssertionError(f"no small shared library with a symbol table in {site}")
