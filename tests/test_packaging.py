"""Environment archives: deterministic, relocatable, content-addressed, verifiable."""

from __future__ import annotations

import ast
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers import MINIMAL, PYTHON, PYTHON_HOME, elf_sections, library_with_symbols, write_repo

from mlops_module.building.artifacts import REQUIREMENTS_COPY, EnvSpec, PackagingError
from mlops_module.building.environment import build_environment, check_requirements, pack, verify
from mlops_module.cli import main

REQUIREMENTS = b"humanize==4.12.1\n"  # small, pure Python, and not installed in the test environment
SPEC = EnvSpec(REQUIREMENTS, "requirements.txt", PYTHON, PYTHON_HOME)  # built for this machine's Python


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("env")
    env = build_environment(SPEC, root / "a" / "environment")
    archive = root / "a.tar.gz"
    pack(env, archive)
    return {"root": root, "env": env, "archive": archive}


def test_same_input_gives_the_same_bytes(built: dict[str, Path]) -> None:
    root = built["root"]
    again = build_environment(SPEC, root / "b" / "environment")
    (again / "lib" / f"python{PYTHON}" / "site-packages" / "humanize" / "__pycache__").mkdir(exist_ok=True)
    _, first = pack(built["env"], root / "first.tar.gz")
    _, second = pack(again, root / "second.tar.gz")
    assert first == second


def test_large_archives_are_deterministic_too(tmp_path: Path) -> None:
    """More than one compression block (the parallel compressor's blocks are 1 MiB)."""
    import random

    env = tmp_path / "environment"
    rng = random.Random(7)
    for i in range(20):
        (env / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        words = [rng.choice(["alpha", "beta", "gamma", "delta", str(rng.random())]) for _ in range(300_000)]
        (env / f"d{i % 3}" / f"f{i}.txt").write_text(" ".join(words))
    size, first = pack(env, tmp_path / "a.tar.gz")
    _, second = pack(env, tmp_path / "b.tar.gz")
    assert size > 8 * 1024 * 1024 and first == second


def test_top_level_modules_from_metadata(tmp_path: Path) -> None:
    """Console scripts (bin/...) in RECORD are not modules; markers are evaluated for the target."""
    from mlops_module.building.environment import top_level_modules

    site = tmp_path / "site-packages"
    for dist, files in {"numpy-2.2.6": ["numpy/__init__.py", "bin/f2py", "numpy.libs/x.so"],
                        "PyYAML-6.0.2": ["yaml/__init__.py", "_yaml/__init__.py"],
                        "six-1.17.0": ["six.py"]}.items():
        info = site / f"{dist}.dist-info"
        info.mkdir(parents=True)
        (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))
        for f in files:
            if not f.startswith("bin/"):
                (site / f).parent.mkdir(parents=True, exist_ok=True)
                (site / f).touch()
    lock = (b"numpy==2.2.6 \\\n    --hash=sha256:abc\nPyYAML==6.0.2 ; python_version >= '3.8'\n"
            b"six==1.17.0 ; python_version < '3.10'\n# comment\n")
    assert top_level_modules(site, lock, "3.11") == ["numpy", "yaml"]
    assert top_level_modules(site, lock, "3.9") == ["numpy", "six", "yaml"]
    with pytest.raises(PackagingError, match="'scipy' is not installed"):
        top_level_modules(site, b"scipy==1.0\n", "3.11")


def test_verify_refuses_what_is_not_an_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_text("not gzip")
    assert main(["package", "--verify", str(junk), "--quiet"]) == 1
    assert "is not a readable tar.gz archive" in capsys.readouterr().err


def test_archive_layout_is_a_relocatable_venv(built: dict[str, Path]) -> None:
    with tarfile.open(built["archive"]) as tar:
        members = {m.name: m for m in tar.getmembers()}
        data = built["archive"].read_bytes()
    python = members["bin/python"]
    assert python.issym() and python.linkname == f"{PYTHON_HOME}/python{PYTHON}"  # the image's interpreter
    assert members["bin/python3"].linkname == "python"
    assert "pyvenv.cfg" in members and REQUIREMENTS_COPY in members
    assert any(n.startswith(f"lib/python{PYTHON}/site-packages/humanize/") for n in members)
    # Bytecode for the target interpreter only, compiled at build time: hash-based, never checked against
    # the source (flags 0b01), so no job compiles it again; none for the build machine's other interpreters.
    compiled = [n for n in members if n.endswith(".pyc")]
    tag = f".cpython-{PYTHON.replace('.', '')}.pyc"
    assert compiled and all("/__pycache__/" in n and n.endswith(tag) for n in compiled)
    with tarfile.open(built["archive"]) as tar:
        header = tar.extractfile(members[compiled[0]]).read(8)  # type: ignore[union-attr]
    assert int.from_bytes(header[4:8], "little") == 0b01
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}
    assert len({m.mtime for m in members.values()}) == 1
    absolute = [m.name for m in members.values() if m.issym() and m.linkname.startswith("/")]
    assert absolute == ["bin/python"]
    assert str(built["root"]).encode() not in data  # no trace of where it was built


def test_the_archive_leaves_out_what_never_runs(tmp_path: Path) -> None:
    """Test suites inside packages, headers, sources, stubs, static libraries and other interpreters' bytecode
    stay out; modules named like tests (numpy.testing, pandas._testing), data, dist-info and top-level
    packages called test stay; python.keep brings back what it names, with the folders above it."""
    from mlops_module.building.environment import members

    site = f"lib/python{PYTHON}/site-packages"
    tag = PYTHON.replace(".", "")
    files = {
        "pyvenv.cfg": True, "bin/activate": True,
        f"{site}/numpy/__init__.py": True, f"{site}/numpy/testing/__init__.py": True,
        f"{site}/numpy/testing/_private/utils.py": True, f"{site}/numpy/_core/_multiarray.so": True,
        f"{site}/numpy/_core/tests/test_a.py": False, f"{site}/numpy/_core/tests/data/x.npy": False,
        f"{site}/numpy/_core/include/numpy/ndarraytypes.h": False, f"{site}/numpy/_core/lib/libnpymath.a": False,
        f"{site}/numpy/__init__.pyi": False, f"{site}/numpy/random/_bounded.pxd": False,
        f"{site}/numpy/random/src/distributions.c": False,
        f"{site}/numpy/__pycache__/__init__.cpython-{tag}.pyc": True,
        f"{site}/numpy/__pycache__/__init__.cpython-39.pyc": False,
        f"{site}/numpy/testing/__pycache__/__init__.cpython-{tag}.opt-1.pyc": False,
        f"{site}/pandas/_testing/__init__.py": True, f"{site}/pandas/tests/frame/test_x.py": False,
        f"{site}/sklearn/datasets/data/iris.csv.gz": True, f"{site}/joblib/test/test_x.py": False,
        f"{site}/numpy-2.2.6.dist-info/METADATA": True, f"{site}/numpy-2.2.6.dist-info/RECORD": True,
        f"{site}/numpy-2.2.6.dist-info/licenses/numpy/_core/include/numpy/LICENSE.h": True,
        f"{site}/test/__init__.py": True, f"{site}/legacy.pyc": True,
    }
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    (tmp_path / site / "pandas" / "__pycache__").mkdir()  # empty: no entry
    listed = members(tmp_path)
    assert {rel for rel in files if rel in listed} == {rel for rel, stays in files.items() if stays}
    assert not [rel for rel in listed if rel.endswith(("/tests", "/test", "/include", "/src", "__pycache__"))
                and not rel.endswith((f"{site}/test", f"{site}/numpy/__pycache__")) and ".dist-info/" not in rel]
    kept = members(tmp_path, ("numpy/_core/include", "*/tests/*.py"))
    assert f"{site}/numpy/_core/include/numpy/ndarraytypes.h" in kept and f"{site}/numpy/_core/include" in kept
    assert f"{site}/numpy/_core/tests/test_a.py" in kept and f"{site}/numpy/_core/tests" in kept
    assert f"{site}/numpy/_core/tests/data/x.npy" not in kept and f"{site}/pandas/tests/frame/test_x.py" in kept
    assert f"{site}/numpy/__pycache__/__init__.cpython-39.pyc" not in members(tmp_path, ("*",))  # keep can't


def test_shared_libraries_lose_their_symbol_tables_only_where_shown_to_load(tmp_path: Path) -> None:
    """strip --strip-unneeded on each ELF library below site-packages, except auditwheel's grafted ones
    (patchelf'd: strip corrupts them) and what python.keep names; one not shown to load before and after
    stripping is put back byte for byte."""
    import sys

    from mlops_module.building.libraries import loadable, strip_libraries

    source = library_with_symbols(tmp_path)
    original = source.read_bytes()
    site = tmp_path / "site-packages"
    for rel in ("pkg/_ext.so", "pkg/libalias.so.1.2", "pkg.libs/libgrafted-1a2b.so", "keepme/_kept.so"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(original)
    (site / "pkg" / "notes.so").write_bytes(b"not a library")
    (site / "pkg" / "broken.so").write_bytes(original[:4096])  # an ELF header, the rest missing: never loads
    said: list[str] = []
    saved = strip_libraries(site, sys.executable, ("keepme",), said.append)

    stripped = [site / "pkg" / "_ext.so", site / "pkg" / "libalias.so.1.2"]
    for path in stripped:
        assert ".symtab" not in elf_sections(path) and ".dynsym" in elf_sections(path)
    assert loadable(stripped, sys.executable) == set(stripped)
    assert saved == sum(len(original) - p.stat().st_size for p in stripped) > 0
    for rel in ("pkg.libs/libgrafted-1a2b.so", "keepme/_kept.so"):
        assert (site / rel).read_bytes() == original, rel
    assert (site / "pkg" / "broken.so").read_bytes() == original[:4096]
    assert (site / "pkg" / "notes.so").read_bytes() == b"not a library"
    assert said == [f"stripped the symbol tables of 2 shared libraries: {saved / 1e6:.1f} MB less; 1 left as built "
                    "(they don't load on this machine, so stripping them can't be checked)"]


def test_libraries_that_no_longer_load_once_stripped_are_put_back(tmp_path: Path) -> None:
    """numpy's grafted OpenBLAS and gfortran (patchelf'd by auditwheel), in a folder the rule for ``*.libs`` does
    not cover: they load, strip corrupts them, so they go back byte for byte (none made larger either)."""
    import sys

    import numpy

    from mlops_module.building.libraries import loadable, strip_libraries

    grafted = Path(numpy.__file__).resolve().parents[1] / "numpy.libs"
    copied = tmp_path / "site-packages" / "vendored"
    shutil.copytree(grafted, copied)
    libraries = sorted(copied.iterdir())
    assert libraries and loadable(libraries, sys.executable) == set(libraries)
    said: list[str] = []
    assert strip_libraries(tmp_path / "site-packages", sys.executable, (), said.append) == 0
    for path in libraries:
        assert path.read_bytes() == (grafted / path.name).read_bytes(), path.name
    assert "put back as built (they no longer loaded after stripping)" in said[0], said


def test_without_strip_the_libraries_stay_as_built_and_the_build_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mlops_module.building.libraries import strip_libraries

    source = library_with_symbols(tmp_path)
    (tmp_path / "site" / "pkg").mkdir(parents=True)
    target = tmp_path / "site" / "pkg" / "_ext.so"
    target.write_bytes(source.read_bytes())
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    said: list[str] = []
    assert strip_libraries(tmp_path / "site", sys.executable, (), said.append) == 0
    assert target.read_bytes() == source.read_bytes()
    assert len(said) == 1 and said[0].startswith("warning: no strip (binutils) on this machine")


def test_identical_libraries_ship_once_as_a_link(tmp_path: Path) -> None:
    """Wheels carry a library's SONAME aliases as copies: the archive holds the first (in its order) and links
    the others to it; both our unpacking and tar's (which Spark's executors use) give the same bytes back.
    Small or differing files, extension modules (one file would be one module's state for both) and anything
    not a library stay files."""
    import os

    from mlops_module.building.unpack import extract

    env = tmp_path / "environment"
    lib = env / f"lib/python{PYTHON}/site-packages/pyarrow"
    lib.mkdir(parents=True)
    big, other = os.urandom(100_000), os.urandom(100_000)
    for name, data in {"libarrow_python.so": big, "libarrow_python.so.2200": big, "libarrow_python.so.2200.0.0": big,
                       "libother.so": other, "data.bin": big, "libsmall.so": b"x" * 100,
                       "libsmall.so.1": b"x" * 100, "_a.cpython-311-x86_64-linux-gnu.so": other,
                       "_b.cpython-311-x86_64-linux-gnu.so": other}.items():
        (lib / name).write_bytes(data)
    archive = tmp_path / "env.tar.gz"
    pack(env, archive)
    with tarfile.open(archive) as tar:
        found = {m.name.rpartition("/")[2]: m for m in tar.getmembers()}
    assert found["libarrow_python.so"].isfile()  # sorted first
    assert found["libarrow_python.so.2200"].issym() and found["libarrow_python.so.2200"].linkname == "libarrow_python.so"
    assert found["libarrow_python.so.2200.0.0"].linkname == "libarrow_python.so"
    assert all(found[n].isfile() for n in ("libother.so", "data.bin", "libsmall.so", "libsmall.so.1",
                                           "_b.cpython-311-x86_64-linux-gnu.so"))  # two modules stay two files
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    extract(archive, ours)
    theirs.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(theirs)], check=True)
    for root in (ours, theirs):
        unpacked = root / f"lib/python{PYTHON}/site-packages/pyarrow"
        assert all((unpacked / n).read_bytes() == big for n in ("libarrow_python.so.2200", "libarrow_python.so.2200.0.0"))
        assert (unpacked / "libother.so").read_bytes() == other


def test_archive_runs_from_anywhere(built: dict[str, Path]) -> None:
    report = verify(built["archive"])
    assert report.ok, report.output
    assert report.modules == ["humanize"]
    assert report.interpreter == f"{PYTHON_HOME}/python{PYTHON}"


def test_verify_fails_when_a_requirement_does_not_import(built: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "environment"
    shutil.copytree(built["env"], broken, symlinks=True)
    package = broken / "lib" / f"python{PYTHON}" / "site-packages" / "humanize"
    (package / "__init__.py").write_text("raise ImportError('x')")
    shutil.rmtree(package / "__pycache__")  # the shipped bytecode is never checked against the source
    pack(broken, tmp_path / "broken.tar.gz")
    report = verify(tmp_path / "broken.tar.gz")
    assert not report.ok and "ImportError" in report.output
    assert main(["package", "--verify", str(tmp_path / "broken.tar.gz"), "--quiet"]) == 1
    assert main(["package", "--verify", str(built["archive"]), "--quiet"]) == 0


def test_key_covers_what_determines_the_archive() -> None:
    base = EnvSpec(REQUIREMENTS, "requirements.txt", "3.11", "/usr/bin")
    keys = {
        base.key,
        EnvSpec(b"humanize==4.12.0\n", "requirements.txt", "3.11", "/usr/bin").key,
        EnvSpec(REQUIREMENTS, "requirements.txt", "3.12", "/usr/bin").key,
        EnvSpec(REQUIREMENTS, "requirements.txt", "3.11", "/opt/python/bin").key,
        EnvSpec(REQUIREMENTS, "requirements.txt", "3.11", "/usr/bin", "aarch64-manylinux_2_28").key,
    }
    assert len(keys) == 5
    assert EnvSpec(REQUIREMENTS, "other-name.txt", "3.11", "/usr/bin").key == base.key


@pytest.mark.parametrize("line", ["-r base.txt", "--constraint c.txt", "-e ./mylib"])
def test_includes_are_refused(line: str) -> None:
    with pytest.raises(PackagingError, match=r"requirements.txt:2: .* includes and editable installs"):
        check_requirements(EnvSpec(b"numpy\n" + line.encode() + b"\n", "requirements.txt", "3.11", "/usr/bin"))


def test_unresolvable_requirements_are_a_clear_error(tmp_path: Path) -> None:
    spec = EnvSpec(b"this-package-does-not-exist-mlops==1.0\n", "requirements.txt", "3.11", "/usr/bin")
    with pytest.raises(PackagingError, match=r"installing requirements\.txt failed"):
        build_environment(spec, tmp_path / "environment")


def test_local_stand_needs_its_interpreter_before_building(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_LOCAL_PYTHON_HOME", f"{tmp_path}/nowhere")  # the built-in local stand's python_home
    config = write_repo(tmp_path / "repo", MINIMAL)
    assert main(["package", str(config), "--stand", "local", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"has no {tmp_path}/nowhere/python3.11" in err and "spark.python_home" in err
    assert "installing" not in err  # refused before anything was built


def test_code_package_carries_the_runtime_jobs_import(tmp_path: Path) -> None:
    """Job scripts import mlops_module.runtime from code.zip, with nothing but the standard library."""
    import subprocess
    import sys

    from helpers import resolve

    from mlops_module.building.artifacts import code_files
    from mlops_module.building.code_package import build_code_zip

    config = write_repo(tmp_path / "repo", MINIMAL)
    files = code_files(resolve(config, "mdp"))
    names = [rel for rel, _ in files]
    assert {"mlops_module/runtime/__init__.py", "mlops_module/runtime/drift.py", "mlops_module/names.py",
            "src/train.py", "model.yaml"} <= set(names)
    build_code_zip(files, tmp_path / "code.zip")
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from mlops_module import runtime; "
             "job = runtime.context(sys.argv[2:]); print(runtime.__file__, job.window_start.date())")
    argv = ["--job", "train", "--model", "m", "--stand", "mdp", "--run-id", "r", "--data-interval-start",
            "2025-01-01T00:00:00", "--data-interval-end", "2025-01-08T00:00:00", "--tracking-uri", "x",
            "--storage-uri", "y"]
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(tmp_path / "code.zip"), *argv],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"{tmp_path / 'code.zip'}/mlops_module/runtime/__init__.py", "2025-01-01"]
    # every module that ships imports with nothing else on the path, and so do the built-in jobs
    modules = [rel[:-len(".py")].replace("/", ".").removesuffix(".__init__") for rel in names
               if rel.startswith("mlops_module/") and rel.endswith(".py")]
    jobs = [rel for rel in names if rel.startswith("_mlops/") and rel.endswith(".py")]
    assert "mlops_module.runtime.drift" in modules and "mlops_module.runtime.evaluation" in modules
    assert {"_mlops/monitoring.py", "_mlops/evaluate.py"} <= set(jobs)
    probe = ("import importlib, runpy, sys; sys.path.insert(0, sys.argv[1]); "
             "[importlib.import_module(m) for m in sys.argv[2].split(',')]; "
             "[runpy.run_path(j, run_name='shipped') for j in sys.argv[3:]]; "
             "print(sorted(m for m in sys.modules if m.startswith('mlops_module')))")
    unpacked = tmp_path / "unpacked"
    for rel, path in files:
        (unpacked / rel).parent.mkdir(parents=True, exist_ok=True)
        (unpacked / rel).write_bytes(path.read_bytes())
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(tmp_path / "code.zip"), ",".join(modules),
                             *[str(unpacked / j) for j in jobs]], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert set(ast.literal_eval(result.stdout)) <= {m for m in modules} | {"mlops_module.runtime.jobs"}


def test_the_runtime_may_import_only_what_ships(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime module importing the config machinery (or any non-leaf) is refused when the package is built,
    not discovered by a failing Spark job."""
    import shutil

    from mlops_module.building import artifacts
    from mlops_module.building.artifacts import PackagingError, runtime_files

    shipped = set(runtime_files())
    assert shipped == {"mlops_module/__init__.py", "mlops_module/names.py", "mlops_module/kinds.py",
                       "mlops_module/runtime/__init__.py", "mlops_module/runtime/drift.py",
                       "mlops_module/runtime/evaluation.py"}
    package = tmp_path / "mlops_module"
    shutil.copytree(artifacts.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(artifacts, "PACKAGE_DIR", package)
    monkeypatch.setattr(artifacts, "RUNTIME_DIR", package / "runtime")
    monkeypatch.setattr(artifacts, "BUILTIN_JOBS", package / "runtime" / "jobs")
    drift = package / "runtime" / "drift.py"
    drift.write_text(drift.read_text() + "\n\ndef late():\n    from mlops_module.spec.config import check\n")
    with pytest.raises(PackagingError, match=r"runtime/drift\.py imports mlops_module\.spec\.config, which does not ship"):
        runtime_files()
    drift.write_text(drift.read_text().replace("from mlops_module.spec.config import check", "from . import names"))
    with pytest.raises(PackagingError, match="relative import"):
        runtime_files()


def test_source_commit_names_only_a_pushed_commit_holding_exactly_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_module.building.artifacts import code_files
    from mlops_module.building.source import source_commit
    from mlops_module.spec.config import check
    from mlops_module.spec.stands import load_stands

    monkeypatch.delenv("GIT_COMMIT", raising=False)
    repo = tmp_path / "repo"
    config = write_repo(repo, MINIMAL)

    def commit_now() -> str | None:
        (cfg,) = check(config, load_stands(), "mdp")
        return source_commit(cfg, code_files(cfg))

    assert commit_now() is None  # not a git checkout
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "model"],
                 ["remote", "add", "origin", str(tmp_path / "origin.git")]):
        subprocess.run([*git, *args], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert commit_now() is None  # committed, not pushed: no deploy job could fetch it
    subprocess.run([*git, "push", "-q", "origin", "HEAD:refs/heads/main"], check=True)
    subprocess.run([*git, "fetch", "-q", "origin"], check=True)
    assert commit_now() == head
    (repo / "src" / "helper.py").write_text("x = 1\n")  # packaged (src/ goes whole), not committed
    assert commit_now() is None
    (repo / "src" / "helper.py").unlink()
    (repo / "src" / "train.py").write_text("changed = True\n")  # tracked, changed
    assert commit_now() is None
    subprocess.run([*git, "checkout", "-q", "--", "src/train.py"], check=True)
    monkeypatch.setenv("GIT_COMMIT", "0" * 40)  # Jenkins checked out something else than this HEAD
    assert commit_now() is None
    monkeypatch.setenv("GIT_COMMIT", head)
    assert commit_now() == head
