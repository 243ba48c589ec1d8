"""Unpacking an archive writes nothing outside its target, whatever the archive holds (issue 17).

Every hostile archive goes through the three ways the toolkit unpacks: :func:`extract` itself,
``mlops package --verify`` and the local stand's environment cache. Each is refused with a message
naming the member and why; the file outside keeps its content and mode; no staging or temporary
directory stays behind.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import PYTHON, PYTHON_HOME

from mlops_module import names
from mlops_module.building.environment import pack, verify
from mlops_module.building.unpack import DEFAULT_MAX_BYTES, UnpackLimits, extract
from mlops_module.errors import PackagingError
from mlops_module.local.spark_submit import unpacked_archive

INTERPRETER = f"{PYTHON_HOME}/python{PYTHON}"
Member = tuple[tarfile.TarInfo, bytes]


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.size = kind, link, mode, len(data)
    return info, data


def _archive(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file an archive must never touch: its content and mode are checked after each attempt."""
    victim = tmp_path / "outside" / "victim"
    victim.parent.mkdir()
    victim.write_text("keep")
    victim.chmod(0o640)
    return victim


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where --verify's temporary directories go, so the test sees whether any is left behind."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


Unpack = Callable[[Path, Path, UnpackLimits | None], object]


def _via_extract(archive: Path, work: Path, limits: UnpackLimits | None) -> object:
    target = work / "target"
    target.mkdir()
    return extract(archive, target, limits)


def _via_verify(archive: Path, work: Path, limits: UnpackLimits | None) -> object:
    return verify(archive, limits=limits)


def _via_cache(archive: Path, work: Path, limits: UnpackLimits | None) -> object:
    return unpacked_archive(archive, work / "cache", limits)


ENTRY_POINTS = pytest.mark.parametrize("unpack", [_via_extract, _via_verify, _via_cache],
                                       ids=["extract", "verify", "cache"])


def _hostile(outside: Path) -> dict[str, tuple[list[Member], str]]:
    """Archives that try to leave the target, with what the refusal must say."""
    far = str(outside)
    rel = "../outside/victim"
    return {
        # the reported attack: a hard link to the outside file, then a file of the same name written through it
        "hardlink": ([_member("victim", tarfile.LNKTYPE, link=far),
                      _member("victim", data=b"pwned", mode=0o4777)], "'victim' is a hard link"),
        "hardlink-relative": ([_member("victim", tarfile.LNKTYPE, link=rel),
                               _member("victim", data=b"pwned", mode=0o777)], "is a hard link"),
        "symlink-dir-out": ([_member("lib", tarfile.SYMTYPE, link=str(outside.parent)),
                             _member("lib/victim", data=b"pwned")], "'lib' is not allowed"),
        "symlink-file-out": ([_member("victim", tarfile.SYMTYPE, link=far),
                              _member("victim", data=b"pwned")], "'victim' is not allowed"),
        "symlink-relative-out": ([_member("a/link", tarfile.SYMTYPE, link="../../outside"),
                                  _member("a/link/victim", data=b"pwned")], "'a/link' is not allowed"),
        "dotdot": ([_member("../outside/victim", data=b"pwned")], "has a '..' in its name"),
        "dotdot-deep": ([_member("lib/../../outside/victim", data=b"pwned")], "has a '..' in its name"),
        "absolute": ([_member(far, data=b"pwned")], "has an absolute name"),
        "chardev": ([_member("lib/null", tarfile.CHRTYPE)], "'lib/null' is a character device"),
        "blockdev": ([_member("sda", tarfile.BLKTYPE)], "is a block device"),
        "fifo": ([_member("lib/python3.11/site-packages/hang.pth", tarfile.FIFOTYPE)], "hang.pth' is a FIFO"),
        # the interpreter link is the one absolute link allowed: not as a way to write through it
        "python-then-file": ([_member("bin/python", tarfile.SYMTYPE, link=INTERPRETER),
                              _member("bin/python", data=b"pwned")], "'bin/python' appears twice"),
        "python-as-dir": ([_member("bin/python", tarfile.SYMTYPE, link=str(outside.parent) + "/python3"),
                           _member("bin/python/victim", data=b"pwned")], "'bin/python/victim' is not allowed"),
        "python-to-other": ([_member("bin/python", tarfile.SYMTYPE, link=far)], "'bin/python' is not allowed"),
        "other-to-python": ([_member("lib/python", tarfile.SYMTYPE, link=INTERPRETER)], "'lib/python' is not allowed"),
    }


CASES = list(_hostile(Path("/x")))


@ENTRY_POINTS
@pytest.mark.parametrize("case", CASES)
def test_a_hostile_archive_is_refused_and_writes_nothing_outside(
        case: str, unpack: Unpack, outside: Path, temp_root: Path, tmp_path: Path) -> None:
    members, message = _hostile(outside)[case]
    archive = _archive(tmp_path / "hostile.tar.gz", members)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(PackagingError, match="refusing to unpack") as refused:
        unpack(archive, work, None)
    assert message in str(refused.value)
    assert outside.read_text() == "keep" and stat.S_IMODE(outside.stat().st_mode) == 0o640
    assert sorted(p.name for p in outside.parent.iterdir()) == ["victim"]
    assert not any(temp_root.iterdir())  # --verify's temporary directory is gone
    assert not any((work / "cache").iterdir()) if (work / "cache").exists() else True  # no staging copy
    devices = [p for p in tmp_path.rglob("*") if p.is_char_device() or p.is_block_device() or p.is_fifo()]
    assert devices == []


@ENTRY_POINTS
def test_an_archive_over_the_size_cap_is_refused(unpack: Unpack, temp_root: Path, tmp_path: Path) -> None:
    """A small archive that expands far beyond its size (zeros compress ~1000:1) stops at the cap."""
    archive = _archive(tmp_path / "bomb.tar.gz", [_member(f"zeros{i}", data=bytes(400_000)) for i in range(3)])
    assert archive.stat().st_size < 10_000
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(PackagingError, match=r"its files exceed 1,000,000 bytes unpacked \(at member 'zeros2'; "
                                             rf"set \${names.UNPACK_MAX_BYTES_ENV} to allow more\)"):
        unpack(archive, work, UnpackLimits(max_bytes=1_000_000))
    assert not any(temp_root.iterdir())
    assert not (work / "cache").exists() or not any((work / "cache").iterdir())


@ENTRY_POINTS
def test_an_archive_over_the_member_cap_is_refused(unpack: Unpack, temp_root: Path, tmp_path: Path) -> None:
    archive = _archive(tmp_path / "many.tar.gz", [_member(f"f{i}", data=b"x") for i in range(6)])
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(PackagingError, match=rf"more than 5 members \(set \${names.UNPACK_MAX_MEMBERS_ENV}"):
        unpack(archive, work, UnpackLimits(max_members=5))
    assert not any(temp_root.iterdir())
    assert not (work / "cache").exists() or not any((work / "cache").iterdir())


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert UnpackLimits.from_env() == UnpackLimits(DEFAULT_MAX_BYTES, 500_000)
    monkeypatch.setenv(names.UNPACK_MAX_MEMBERS_ENV, "2")
    archive = _archive(tmp_path / "three.tar.gz", [_member(f"f{i}", data=b"x") for i in range(3)])
    (tmp_path / "t").mkdir()
    with pytest.raises(PackagingError, match="more than 2 members"):
        extract(archive, tmp_path / "t")
    monkeypatch.setenv(names.UNPACK_MAX_BYTES_ENV, "lots")
    with pytest.raises(PackagingError, match=rf"\${names.UNPACK_MAX_BYTES_ENV} must be a positive whole number"):
        UnpackLimits.from_env()


def _environment(root: Path, init: str = "VALUE = 1\n") -> Path:
    """An environment laid out as build_environment makes it, with one package, ``tiny``."""
    env = root / "environment"
    site = env / "lib" / f"python{PYTHON}" / "site-packages"
    (site / "tiny").mkdir(parents=True)
    (site / "tiny" / "__init__.py").write_text(init)
    (site / "tiny-1.0.dist-info").mkdir()
    (site / "tiny-1.0.dist-info" / "RECORD").write_text("tiny/__init__.py,,\n")
    (site / "tiny" / "tool").write_text("#!/bin/sh\n")
    (site / "tiny" / "tool").chmod(0o755)
    (env / "bin").mkdir()
    (env / "bin" / "python").symlink_to(INTERPRETER)
    (env / "bin" / "python3").symlink_to("python")
    (env / "bin" / f"python{PYTHON}").symlink_to("python")
    (env / "mlops-requirements.txt").write_text("tiny==1.0\n")
    (env / "pyvenv.cfg").write_text(f"home = {PYTHON_HOME}\ninclude-system-site-packages = false\n"
                                    f"version = {PYTHON}\n")
    return env


def test_an_environment_archive_still_unpacks_with_its_interpreter_link(tmp_path: Path) -> None:
    archive = tmp_path / "env.tar.gz"
    pack(_environment(tmp_path / "src"), archive)
    target = tmp_path / "target"
    target.mkdir()
    extract(archive, target)
    assert os.readlink(target / "bin" / "python") == INTERPRETER
    assert os.readlink(target / "bin" / "python3") == "python"
    assert (target / "bin" / f"python{PYTHON}").resolve() == Path(INTERPRETER).resolve()
    tool = target / "lib" / f"python{PYTHON}" / "site-packages" / "tiny" / "tool"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o755  # the executable bit is kept


def test_setuid_and_sticky_bits_are_stripped_and_the_owner_not_applied(tmp_path: Path) -> None:
    info, data = _member("tool", data=b"#!/bin/sh\n", mode=0o6777)
    info.uid, info.gid, info.uname, info.gname = 4242, 4242, "someone", "them"
    sticky, _ = _member("shared", tarfile.DIRTYPE, mode=0o1777)
    archive = _archive(tmp_path / "modes.tar.gz", [(info, data), (sticky, b"")])
    target = tmp_path / "target"
    target.mkdir()
    extract(archive, target)
    assert stat.S_IMODE((target / "tool").stat().st_mode) == 0o755
    assert not stat.S_IMODE((target / "shared").stat().st_mode) & (stat.S_ISVTX | stat.S_ISUID | stat.S_ISGID)
    assert (target / "tool").stat().st_uid == os.getuid()


def test_verify_stops_an_import_that_blocks(tmp_path: Path, temp_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "env.tar.gz"
    pack(_environment(tmp_path / "src", "import time\ntime.sleep(600)\n"), archive)
    monkeypatch.setenv(names.VERIFY_TIMEOUT_ENV, "1.5")
    with pytest.raises(PackagingError, match=rf"importing tiny with {INTERPRETER} did not finish within 1.5 s "
                                             rf".*set \${names.VERIFY_TIMEOUT_ENV} for a longer limit"):
        verify(archive)
    assert not any(temp_root.iterdir())


def test_verify_still_passes_a_good_environment(tmp_path: Path, temp_root: Path) -> None:
    archive = tmp_path / "env.tar.gz"
    pack(_environment(tmp_path / "src"), archive)
    report = verify(archive, timeout=60)
    assert report.ok, report.output
    assert report.modules == ["tiny"]
    assert not any(temp_root.iterdir())


def test_the_local_cache_still_compiles_what_it_unpacks(tmp_path: Path) -> None:
    archive = tmp_path / "env.tar.gz"
    pack(_environment(tmp_path / "src"), archive)
    unpacked = unpacked_archive(archive, tmp_path / "cache")
    assert list((unpacked / "lib").rglob("tiny/__pycache__/__init__.*.pyc"))
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [unpacked.name]
