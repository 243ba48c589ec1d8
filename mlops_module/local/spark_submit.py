"""A SparkApplication manifest as a spark-submit command line: how the local stand runs the same spec."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_module.building.unpack import UnpackLimits

_DEP_FLAGS = (("archives", "--archives"), ("pyFiles", "--py-files"), ("files", "--files"),
              ("jars", "--jars"), ("packages", "--packages"))


def local_path(uri: str) -> str:
    """spark-operator's ``local://`` (a path inside the image) and ``file://`` become plain paths."""
    for scheme in ("local://", "file://"):
        if uri.startswith(scheme):
            return uri[len(scheme):]
    return uri


def spark_submit_argv(app: dict[str, Any], spark_submit: str = "spark-submit", master: str = "local[*]",
                      unpacked: Iterable[str] = ()) -> list[str]:
    """The spark-submit call that runs ``app`` (a parsed SparkApplication) in local mode.

    Resources map to the same Spark properties spark-operator sets; Kubernetes-only fields
    (image, service account, labels, restart policy, TTL) have no meaning locally and are dropped.
    ``unpacked`` archives (already linked into the working directory by :func:`prepare_workdir`) are
    not handed to Spark again: in local mode its own copy would land where no process looks.
    """
    spec = app["spec"]
    conf: dict[str, str] = {}
    for key, value in (spec.get("hadoopConf") or {}).items():
        conf[f"spark.hadoop.{key}"] = str(value)
    conf.update({k: str(v) for k, v in (spec.get("sparkConf") or {}).items()})
    driver, executor = spec.get("driver") or {}, spec.get("executor") or {}
    if "cores" in driver:
        conf["spark.driver.cores"] = str(driver["cores"])
    if "memory" in executor:
        conf["spark.executor.memory"] = str(executor["memory"])
    argv = [spark_submit, "--master", master, "--deploy-mode", "client", "--name", app["metadata"]["name"]]
    if "memory" in driver:
        argv += ["--driver-memory", str(driver["memory"])]
    deps = spec.get("deps") or {}
    skip = set(unpacked)
    for key, flag in _DEP_FLAGS:
        values = [u for u in deps.get(key) or [] if not (key == "archives" and u in skip)]
        if values:
            argv += [flag, ",".join(local_path(u) if key != "packages" else u for u in values)]
    for key in sorted(conf):
        argv += ["--conf", f"{key}={conf[key]}"]
    argv.append(local_path(spec["mainApplicationFile"]))
    argv += [str(a) for a in spec.get("arguments") or []]
    return argv


def _content_stamp(source: Path) -> str:
    sidecar = source.with_name(source.name + ".sha256")  # written by storage.FileStorage with the object
    recorded = sidecar.read_text().strip() if sidecar.is_file() else ""
    if recorded:
        return recorded[:16]
    stat = source.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def prepare_workdir(app: dict[str, Any], workdir: Path, cache: Path) -> list[str]:
    """Make ``./<name>`` of every ``archive#name`` exist in the job's working directory.

    On Kubernetes each executor unpacks ``--archives`` into its own working directory. In local mode
    the Python workers (and, in client mode, the driver) run in spark-submit's working directory,
    where Spark unpacks nothing, so the local stand unpacks each archive there itself. Archives are
    content-addressed, so each is unpacked once into ``cache`` and linked into ``workdir``. The cache
    entry is named by the archive's recorded SHA-256 (its storage sidecar; else size and mtime), not by
    its file name alone: an archive replaced under the same name is unpacked again. Returns the
    archive entries it linked.
    """
    linked = []
    for entry in (app["spec"].get("deps") or {}).get("archives") or []:
        uri, _, name = entry.partition("#")
        source = Path(local_path(uri))
        if not name or "://" in local_path(uri) or not source.is_file():
            continue
        link = workdir / name
        if not link.exists():
            link.symlink_to(unpacked_archive(source, cache))
        linked.append(entry)
    return linked


def unpacked_archive(source: Path, cache: Path, limits: UnpackLimits | None = None) -> Path:
    """The cache directory holding ``source`` (a tar.gz archive) unpacked: made on first use, then reused.

    An archive built where no interpreter of the target's version was at hand ships no bytecode, so every
    process of every job would compile each module it imports (where ``PYTHONDONTWRITEBYTECODE`` is set,
    as in many images, again each time: seconds per process for pandas, scikit-learn, MLflow). The cache
    entry never changes once made, so such an environment is compiled once here, by its own interpreter,
    into hash-based bytecode that is never checked against the sources again (:func:`compile_environment`).
    """
    import threading

    from mlops_module.building.unpack import extract

    unpacked = cache / f"{source.name}.{_content_stamp(source)}"
    if not unpacked.is_dir():
        staging = cache / f".{source.name}.tmp-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            extract(source, staging, limits)  # refuses what would land outside staging; caps the size
            compile_environment(staging)
            os.replace(staging, unpacked)
        except OSError:  # another process or thread unpacked the same archive first: theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
            if not unpacked.is_dir():
                raise
        except BaseException:  # refused, interrupted: no half-unpacked staging copy stays in the cache
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return unpacked


def compile_environment(env: Path) -> bool:
    """Compile an unpacked environment's modules with its ``bin/python`` (all cores, hash-based bytecode),
    unless the archive ships its bytecode already (``mlops package`` compiles it when it can); False when
    there is nothing to compile with (no such interpreter here: the job will say so itself)."""
    import subprocess

    from mlops_module.building.environment import BYTECODE_MARK

    python, lib, cfg = env / "bin" / "python", env / "lib", env / "pyvenv.cfg"
    if cfg.is_file() and any(line.startswith(BYTECODE_MARK) for line in cfg.read_text().splitlines()):
        return True
    if not python.exists() or not lib.is_dir():
        return False
    done = subprocess.run([str(python), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                           "unchecked-hash", str(lib)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    return done.returncode == 0  # a module that doesn't compile is the job's to report when it imports it
