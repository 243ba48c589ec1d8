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

from .errors import MlopsError


class ServiceError(MlopsError):
    """A local service did not start; the message points at its log."""


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
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise ServiceError(f"the MLflow server did not start on {self.uri} (log {self.log_path}):\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        import signal

        os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and any workers it forked
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
