"""The platform kit (platform/): the image recipes agree with the stands file, pyproject.toml, the constraints
pin, the Hadoop inside the installed pyspark and each other; the operator's Helm values fit the chart and the
stands; the jar download checks its checksums; the Spark image's smoke check runs here as it runs in the build.

No Docker here: the recipes are read (their global ARG and FROM lines, by regex), not built."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shlex
import sys
from importlib.metadata import version as installed_version
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from mlops_module.spec.stands import BUILTIN_STANDS, Stand, load_stands

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (tomli is in the lock for it)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = ROOT / "platform"
SPARK = PLATFORM / "spark" / "Dockerfile"
OPERATOR = PLATFORM / "spark-operator" / "Dockerfile"
AIRFLOW = PLATFORM / "airflow" / "Dockerfile"
VALUES = PLATFORM / "spark-operator" / "values.yaml"

# The AWS SDK v1 bundle each Hadoop release builds hadoop-aws against: hadoop-project/pom.xml,
# <aws-java-sdk.version>, at the release's commit (3.3.4: a585a73c3e02ac62350c136643a5e7f6095a3dbb).
# A Spark whose Hadoop is missing here fails the test until its row is added from that release's pom.
AWS_SDK_BUNDLE_FOR_HADOOP = {"3.3.4": "1.12.262"}

# What the S3A jars' ARGs are called in both Spark-based recipes: they must be equal.
SHARED_SPARK_ARGS = ("SPARK_VERSION", "SPARK_REPOSITORY", "HADOOP_VERSION", "AWS_SDK_BUNDLE_VERSION",
                     "HADOOP_AWS_SHA256", "AWS_SDK_BUNDLE_SHA256", "MAVEN_REPOSITORY")


# --- reading a Dockerfile ---------------------------------------------------------------------------------------

_ARG = re.compile(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$")
_FROM = re.compile(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", re.IGNORECASE)
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _lines(path: Path) -> list[str]:
    """Instructions one per line: comments dropped, backslash continuations joined."""
    joined, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        joined.append(current + line)
        current = ""
    return joined


def global_args(path: Path) -> dict[str, str]:
    """The build arguments declared before the first FROM, with their defaults (unquoted; "" when none)."""
    found: dict[str, str] = {}
    for line in _lines(path):
        if _FROM.match(line):
            break
        if m := _ARG.match(line):
            found[m.group(1)] = " ".join(shlex.split(m.group(2) or ""))
    return found


def substitute(text: str, args: dict[str, str]) -> str:
    return _REF.sub(lambda m: args[m.group(1) or m.group(2)], text)


def stages(path: Path) -> list[tuple[str, str | None, list[str]]]:
    """(base image with the global ARGs substituted, stage name, the stage's other instructions) per FROM."""
    args, found = global_args(path), []
    for line in _lines(path):
        if m := _FROM.match(line):
            found.append((substitute(m.group(1), args), m.group(2), []))
        elif found:
            found[-1][2].append(line)
    return found


def last_user(instructions: list[str]) -> str | None:
    users = [line.split(None, 1)[1] for line in instructions if line.upper().startswith("USER ")]
    return users[-1] if users else None


def kubernetes_stands() -> list[Stand]:
    return [s for s in load_stands(BUILTIN_STANDS) if s.backend == "kubernetes"]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_reading_a_dockerfile(tmp_path: Path) -> None:
    recipe = tmp_path / "Dockerfile"
    recipe.write_text('# c\nARG A=1\nARG B="x y"\nARG C=\nFROM img:${A} AS one\nARG A\nRUN echo \\\n  $A\n'
                      "USER 185\nFROM one\nUSER root\n")
    assert global_args(recipe) == {"A": "1", "B": "x y", "C": ""}
    assert stages(recipe) == [("img:1", "one", ["ARG A", "RUN echo $A", "USER 185"]), ("one", None, ["USER root"])]


# --- the Spark job image ----------------------------------------------------------------------------------------

def test_spark_recipe_matches_the_stands_file() -> None:
    args = global_args(SPARK)
    pythons = args["PYTHON_VERSIONS"].split()
    stands = kubernetes_stands()
    assert stands
    for stand in stands:
        assert stand.spark_version == args["SPARK_VERSION"], stand.name
        assert stand.spark_image.rsplit(":", 1)[1] == args["SPARK_VERSION"], (stand.name, stand.spark_image)
        missing = set(stand.python_versions) - set(pythons)
        assert not missing, f"stand {stand.name} promises Python {sorted(missing)}, the image has {pythons}"
        assert stand.python_home == "/usr/bin", stand.name
    # Each python3.X goes (or already is) where environment archives link bin/python: <python_home>/python3.X.
    text = SPARK.read_text()
    assert 'for v in ${PYTHON_VERSIONS}; do' in text and '"/usr/bin/python$v"' in text


def test_spark_recipe_hadoop_jars_match_the_hadoop_of_that_spark() -> None:
    args = global_args(SPARK)
    spec = importlib.util.find_spec("pyspark")
    assert spec and spec.origin
    jars = Path(spec.origin).parent / "jars"
    (client,) = jars.glob("hadoop-client-api-*.jar")
    hadoop = client.name.removeprefix("hadoop-client-api-").removesuffix(".jar")
    pyspark = Version(installed_version("pyspark"))
    recipe_spark = Version(args["SPARK_VERSION"])
    assert (pyspark.major, pyspark.minor) == (recipe_spark.major, recipe_spark.minor), (
        f"the tests run pyspark {pyspark}, the image Spark {recipe_spark}: the Hadoop read from pyspark is not "
        "the image's")
    assert args["HADOOP_VERSION"] == hadoop, f"Spark {pyspark.major}.{pyspark.minor} ships Hadoop {hadoop}"
    assert hadoop in AWS_SDK_BUNDLE_FOR_HADOOP, f"add Hadoop {hadoop}'s aws-java-sdk.version to the table"
    assert args["AWS_SDK_BUNDLE_VERSION"] == AWS_SDK_BUNDLE_FOR_HADOOP[hadoop]
    # The versions the download step asks for are exactly these ARGs, each with its SHA-256 pin slot.
    for recipe in (SPARK, OPERATOR):
        text = " ".join(_lines(recipe))
        assert '"org.apache.hadoop:hadoop-aws:${HADOOP_VERSION}=${HADOOP_AWS_SHA256}"' in text, recipe
        assert '"com.amazonaws:aws-java-sdk-bundle:${AWS_SDK_BUNDLE_VERSION}=${AWS_SDK_BUNDLE_SHA256}"' in text, recipe


def test_spark_recipe_builds_on_the_official_image_keeps_its_user_and_is_gated_by_the_smoke_check() -> None:
    args = global_args(SPARK)
    built = stages(SPARK)
    by_name = {name: (base, body) for base, name, body in built}
    official = f"apache/spark:{args['SPARK_VERSION']}-java17-python3"
    assert by_name["s3a-jars"][0] == by_name["spark-py"][0] == official
    assert last_user(by_name["spark-py"][1]) == "185:185"
    smoke_base, smoke = by_name["smoke"]
    assert smoke_base == "spark-py"
    run = next(line for line in smoke if "smoke.py" in line)
    assert '--hadoop "${HADOOP_VERSION}"' in run and "--python-home /usr/bin" in run
    assert 'for v in ${PYTHON_VERSIONS}; do pythons="$pythons --python $v"' in run
    # The image is the last stage: spark-py plus a file only a passed smoke check writes, so it needs the check.
    final_base, final_name, final = built[-1]
    assert (final_base, final_name) == ("spark-py", None)
    assert any(line.startswith("COPY --from=smoke ") for line in final)
    assert last_user(final) is None  # still spark-py's 185
    # Everything the recipe copies from the build context exists (the wheel: `make dist`).
    for line in _lines(SPARK):
        if line.startswith("COPY ") and "--from=" not in line:
            source = substitute(line.split()[-2], args)
            if not source.startswith("dist/"):  # the wheel: made by `make dist` before a build
                assert (ROOT / source).exists(), source
    assert args["MLOPS_VERSION"] == pyproject()["project"]["version"]


# --- the spark-operator side ------------------------------------------------------------------------------------

def test_operator_recipe_is_on_the_same_spark_build_with_the_same_jars() -> None:
    spark, operator = global_args(SPARK), global_args(OPERATOR)
    for name in SHARED_SPARK_ARGS:
        assert operator[name] == spark[name], name
    bases = [base for base, _, _ in stages(OPERATOR)]
    assert bases[0] == f"ghcr.io/kubeflow/spark-operator/controller:{operator['OPERATOR_VERSION']}"
    assert bases[1:] == [f"apache/spark:{spark['SPARK_VERSION']}-java17-python3"] * 2
    final = stages(OPERATOR)[-1][2]
    assert last_user(final) == "185:185"
    assert "COPY --from=operator /usr/bin/spark-operator /usr/bin/spark-operator" in final
    assert any("smoke_job.py --hadoop" in line for line in final)
    # The operator release is the one whose chart and CRD the tests hold.
    for data in (f"spark-operator-chart-v{operator['OPERATOR_VERSION']}", f"crds/spark-operator-v{operator['OPERATOR_VERSION']}"):
        assert (ROOT / "tests" / "data" / data).is_dir(), data


def _unknown_keys(ours: Any, chart: Any, path: str = "") -> list[str]:
    """Keys of ``ours`` the chart's default values don't have (lists and scalars are replaced whole; a map the
    chart leaves empty, like ``resources`` or ``annotations``, takes any keys)."""
    if not isinstance(ours, dict) or chart == {}:
        return []
    if not isinstance(chart, dict):
        return [path]
    unknown = []
    for key, value in ours.items():
        if key not in chart:
            unknown.append(f"{path}.{key}".lstrip("."))
        else:
            unknown += _unknown_keys(value, chart[key], f"{path}.{key}")
    return unknown


def test_operator_values_fit_the_chart_and_list_the_stands_namespaces() -> None:
    values = yaml.safe_load(VALUES.read_text())
    operator = global_args(OPERATOR)
    chart = yaml.safe_load((ROOT / "tests" / "data" / f"spark-operator-chart-v{operator['OPERATOR_VERSION']}"
                            / "values.yaml").read_text())
    assert _unknown_keys(values, chart) == []
    assert values["spark"]["jobNamespaces"] == [s.namespace for s in kubernetes_stands()]
    # Our image, tagged with what it carries; the webhook on (docs/deploy.md says why); per-stand service
    # accounts from `mlops platform render`, not the chart's one name for every namespace.
    assert values["image"]["tag"] == f"{operator['OPERATOR_VERSION']}-spark{operator['SPARK_VERSION']}"
    assert values["webhook"]["enable"] is True and values["webhook"]["failurePolicy"] == "Fail"
    assert values["spark"]["serviceAccount"]["create"] is False and values["spark"]["rbac"]["create"] is False
    assert "mlops/spark-py" not in values["image"]["repository"]


# --- the Airflow image ------------------------------------------------------------------------------------------

def test_airflow_recipe_matches_pyproject_and_the_constraints_pin() -> None:
    args = global_args(AIRFLOW)
    project = pyproject()["project"]
    airflow_req = next(Requirement(r) for r in project["optional-dependencies"]["airflow"]
                       if Requirement(r).name == "apache-airflow")
    assert Version(args["AIRFLOW_VERSION"]) in airflow_req.specifier, (args["AIRFLOW_VERSION"], str(airflow_req))
    pins = re.findall(r"^apache-airflow==(\S+)", (ROOT / "requirements" / "constraints.txt").read_text(), re.M)
    assert pins == [args["AIRFLOW_VERSION"]], "the image's Airflow is the one the tests run"
    assert Version(args["AIRFLOW_PYTHON"] + ".0") in SpecifierSet(project["requires-python"])
    assert args["AIRFLOW_PYTHON"] in ("3.10", "3.11", "3.12")  # the Pythons the lock covers (Makefile)
    assert args["MLOPS_VERSION"] == project["version"]
    ((base, _, body),) = stages(AIRFLOW)
    assert base == f"apache/airflow:{args['AIRFLOW_VERSION']}-python{args['AIRFLOW_PYTHON']}"
    install = next(line for line in body if line.startswith("RUN pip install"))
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install
    assert '"mlops-module[airflow] @ file:///tmp/dist/mlops_module-${MLOPS_VERSION}-py3-none-any.whl"' in install
    assert ('--constraint "${AIRFLOW_CONSTRAINTS_BASE}/constraints-${AIRFLOW_VERSION}/constraints-${AIRFLOW_PYTHON}.txt"'
            in install)
    assert args["AIRFLOW_CONSTRAINTS_BASE"] == "https://raw.githubusercontent.com/apache/airflow"
    assert last_user(body) == "airflow"
    assert "ENV MLOPS_STANDS=/opt/airflow/mlops/stands.yaml" in body


# Variables the toolkit reads that a stand's Airflow workers never need, and why.
NOT_FOR_WORKERS = {
    "MLOPS_HOME": "this machine's local-stand state: local stands only",
    "MLOPS_LOCAL_PYTHON_HOME": "the local stand's interpreter directory",
    "MLOPS_AIRFLOW_USR": "what Jenkins binds for its deploy job",
    "MLOPS_AIRFLOW_PSW": "what Jenkins binds for its deploy job",
    "MLOPS_UNPACK_MAX_BYTES": "caps of archive unpacking: `mlops package --verify` (Jenkins) and local stands",
    "MLOPS_UNPACK_MAX_MEMBERS": "caps of archive unpacking: `mlops package --verify` (Jenkins) and local stands",
    "MLOPS_VERIFY_TIMEOUT": "`mlops package --verify`'s import check: the Jenkins pipeline's package stage",
}


def test_airflow_recipe_names_every_variable_the_tasks_read() -> None:
    """Every MLOPS_* variable read by the code the DAG tasks run is set or named in the recipe."""
    package = ROOT / "mlops_module"
    sources = [package / "dag_tasks.py", package / "workflows.py", package / "storage.py", package / "names.py",
               *(package / "release").rglob("*.py"), *(package / "spec").rglob("*.py"),
               *(package / "monitoring").rglob("*.py"), *(package / "building").rglob("*.py")]
    found = set()
    for source in sources:
        found |= set(re.findall(r"MLOPS_[A-Z0-9_]*[A-Z0-9]", source.read_text()))
    whole = {n for n in found if not any(o != n and o.startswith(n + "_") for o in found)}  # not a prefix
    recipe = AIRFLOW.read_text()
    assert "MLOPS_STANDS" in whole and "MLOPS_JENKINS_TOKEN" in whole
    missing = sorted(n for n in whole - set(NOT_FOR_WORKERS) if not re.search(rf"\b{n}\b", recipe))
    assert missing == []


def test_dockerignore_lets_through_every_file_the_recipes_copy() -> None:
    """The context is the repository root (with its .venv): only what the recipes copy is sent."""
    import fnmatch

    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = [rule[1:].rstrip("/") for rule in rules[1:] if rule.startswith("!")]
    copied = []
    for recipe in (SPARK, OPERATOR, AIRFLOW):
        args = global_args(recipe)
        for line in _lines(recipe):
            if line.startswith("COPY ") and "--from=" not in line:
                copied.append(substitute(line.split()[-2], args).rstrip("/"))
    assert f"dist/mlops_module-{pyproject()['project']['version']}-py3-none-any.whl" in copied
    for source in copied:
        assert any(fnmatch.fnmatch(source, rule) or source.startswith(rule + "/") for rule in allowed), source


# --- the jar download -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fetch_maven() -> ModuleType:
    return _module(PLATFORM / "spark" / "fetch_maven.py", "platform_kit_fetch_maven")


def _repository(root: Path, body: bytes, sha1: str | None = None) -> str:
    folder = root / "org" / "example" / "thing" / "1.0"
    folder.mkdir(parents=True)
    (folder / "thing-1.0.jar").write_bytes(body)
    (folder / "thing-1.0.jar.sha1").write_text((sha1 or hashlib.sha1(body).hexdigest()) + "  thing-1.0.jar\n")
    return root.as_uri()


def test_fetch_maven_checks_the_published_sha1_and_the_pin(fetch_maven: ModuleType, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    body = b"not really a jar"
    repo = _repository(tmp_path / "repo", body)
    sha256 = hashlib.sha256(body).hexdigest()
    dest = tmp_path / "jars"
    assert fetch_maven.main(["--repository", repo, "--dest", str(dest), "org.example:thing:1.0"]) == 0
    assert (dest / "thing-1.0.jar").read_bytes() == body
    assert f"NOT PINNED: pin SHA-256 {sha256}" in capsys.readouterr().out
    assert fetch_maven.main(["--repository", repo, "--dest", str(dest), f"org.example:thing:1.0={sha256}"]) == 0
    assert "pinned SHA-256 matches" in capsys.readouterr().out

    assert fetch_maven.main(["--repository", repo, "--dest", str(tmp_path / "other"),
                             f"org.example:thing:1.0={'0' * 64}"]) == 1
    assert "does not match the pinned" in capsys.readouterr().err
    assert not (tmp_path / "other" / "thing-1.0.jar").exists()


def test_fetch_maven_refuses_a_download_its_published_sha1_disagrees_with(fetch_maven: ModuleType, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    repo = _repository(tmp_path / "repo", b"truncated", sha1="a" * 40)
    assert fetch_maven.main(["--repository", repo, "--dest", str(tmp_path / "jars"), "org.example:thing:1.0"]) == 1
    assert "does not match the published" in capsys.readouterr().err
    assert not (tmp_path / "jars" / "thing-1.0.jar").exists()
    assert fetch_maven.main(["--repository", repo, "--dest", str(tmp_path / "jars"), "org.example:absent:1.0"]) == 1
    assert "absent-1.0.jar" in capsys.readouterr().err
    assert fetch_maven.main(["--dest", str(tmp_path), "org.example:thing"]) == 1
    assert "GROUP:ARTIFACT:VERSION" in capsys.readouterr().err


# --- the smoke check --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke() -> ModuleType:
    return _module(PLATFORM / "spark" / "smoke" / "smoke.py", "platform_kit_smoke")


def test_smoke_inputs_are_a_valid_stand_and_model(smoke: ModuleType, tmp_path: Path) -> None:
    """What the smoke check hands `mlops package` passes the toolkit's own validation (a schema change that
    broke it would otherwise surface only in an image build)."""
    from mlops_module.spec.config import check

    args = global_args(SPARK)
    pythons = args["PYTHON_VERSIONS"].split()
    for python in pythons:
        model = smoke.write_inputs(tmp_path, python, args["SPARK_VERSION"], pythons, "/usr/bin")
        (cfg,) = check(model / "model.yaml", load_stands(tmp_path / "stands.yaml"))
        assert (cfg.python_version, cfg.stand.python_home, cfg.stand.backend) == (python, "/usr/bin", "local")
        assert cfg.stand.spark_version == args["SPARK_VERSION"]
    names = [line.split("==")[0] for line in (PLATFORM / "spark" / "smoke" / "requirements.txt").read_text().split()
             if "==" in line]
    assert names == ["markupsafe", "pyyaml"] and smoke.MODULES == ("markupsafe", "yaml")


@pytest.mark.slow
def test_smoke_check_runs_here(smoke: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The build's smoke check, on this machine: `mlops package`, then spark-submit imports the requirements
    from ./environment on the driver and a worker (this machine's Python in place of the image's)."""
    from mlops_module.local.services import java_environment
    from mlops_module.names import local_python_home

    python = "{}.{}".format(*sys.version_info[:2])
    bin_dir = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")  # pyspark's scripts
    for key, value in java_environment().items():
        monkeypatch.setenv(key, value)
    assert smoke.main(["--work", str(tmp_path), "--spark-version", global_args(SPARK)["SPARK_VERSION"],
                       "--python", python, "--python-home", local_python_home(),
                       "--mlops", str(bin_dir / "mlops"), "--spark-submit", str(bin_dir / "spark-submit")]) == 0
    assert (tmp_path / f"run-{python}" / "environment" / "pyvenv.cfg").is_file()
