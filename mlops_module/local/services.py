"""Services the local stand starts on this machine: an MLflow tracking server on loopback.

Used by ``mlops demo`` and by the test session, so both run the same real server: SQLite backend,
artifacts proxied by the server (``mlflow-artifacts:/``), so a later server on the same directory,
on any port, serves the same runs and models.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlops_module.errors import MlopsError


class ServiceError(MlopsError):
    """A local service did not start; the message points at its log."""


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

    def start(self) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(mlflow_server_command(self.root, self.port), cwd=self.root, env=env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while True:  # readiness is the health endpoint answering, not a sleep
            if answers(self.uri, timeout=1):
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
