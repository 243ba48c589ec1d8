"""Time of one promotion (gate → tags → alias → copy to the next stand → trigger) on local servers.

Starts moto's S3 server and an MLflow tracking server (SQLite) on loopback, puts a 200 MB environment
archive and a code package on stand "mdp", registers a candidate, and times `run_gate` + `promote`
to "int" (whose Jenkins trigger is a local HTTP endpoint). The baseline, in the same run: moving
the same archive by download and re-upload, which is what a promoter without server-side copy does.
Goal: the whole promotion under 2 s.

    python bench/promote.py [--size-mb 200]
"""

from __future__ import annotations

import argparse
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STANDS = """\
order: [mdp, int]
defaults:
  backend: kubernetes
  airflow: {{dags: /tmp/dags}}
  kubernetes: {{conn_id: k8s, startup_timeout_seconds: 600, namespace: ml, service_account: spark}}
  spark: {{image: "mlops/spark-py:3.5.5", version: 3.5.5, python_versions: ["3.11"], time_to_live_seconds: 60}}
  mlflow: {{tracking_uri: "{mlflow}"}}
stands:
  mdp: {{storage: {{uri: "s3://bench-mdp/models", endpoint_url: "{s3}"}}, deploy: {{trigger: none, approval: auto}}}}
  int: {{storage: {{uri: "s3://bench-int/models", endpoint_url: "{s3}"}},
        deploy: {{trigger: jenkins, url: "{jenkins}/job/deploy/buildWithParameters", approval: auto}}}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(1200):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"server for {url} exited") from None
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


class Jenkins(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200, help="size of the environment archive")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    with tempfile.TemporaryDirectory(prefix="mlops-bench-promote-") as tmp:
        work = Path(tmp)
        s3_port, mlflow_port = free_port(), free_port()
        s3 = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mlflow_server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
             "--artifacts-destination", str(work / "artifacts")],
            cwd=work, env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        jenkins = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jenkins)
        threading.Thread(target=jenkins.serve_forever, daemon=True).start()
        try:
            s3_url, mlflow_url = f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{mlflow_port}"
            wait(s3_url + "/moto-api/", s3)
            wait(mlflow_url + "/health", mlflow_server)
            import boto3

            from mlops_module.release import registry
            from mlops_module.release.gate import run_gate
            from mlops_module.release.promotion import promote
            from mlops_module.spec.config import check
            from mlops_module.spec.stands import load_stands
            from mlops_module.storage import sha256_file, storage_of

            client = boto3.client("s3", endpoint_url=s3_url)
            for bucket in ("bench-mdp", "bench-int"):
                client.create_bucket(Bucket=bucket)
            stands_file = work / "stands.yaml"
            stands_file.write_text(STANDS.format(mlflow=mlflow_url, s3=s3_url,
                                                 jenkins=f"http://127.0.0.1:{jenkins.server_address[1]}"))
            repo = work / "repo"
            (repo / "src").mkdir(parents=True)
            for name in ("train.py", "inference.py"):
                (repo / "src" / name).write_text("print('job')\n")
            (repo / "requirements.txt").write_text("")
            (repo / "model.yaml").write_text(
                'model: {name: bench, owner: bench}\npython: {version: "3.11"}\n'
                "train: {script: src/train.py}\ninference: {script: src/inference.py}\n"
                "quality_gate: {metrics: [{name: roc_auc, min: 0.7}]}\n")
            stands = load_stands(stands_file)
            (cfg,) = check(repo / "model.yaml", stands, "mdp")
            store = storage_of(cfg.stand)
            archive = work / "env.tar.gz"
            with archive.open("wb") as handle:
                for _ in range(args.size_mb):
                    handle.write(os.urandom(1024 * 1024))
            digest = sha256_file(archive)
            store.upload(archive, "envs/bench.tar.gz", digest)
            for name in ("code.zip", "src/train.py", "src/inference.py"):
                store.upload(repo / "src" / "train.py", f"code/bench/k/{name}", sha256_file(repo / "src" / "train.py"))

            mlflow = registry.client(mlflow_url)
            experiment = mlflow.create_experiment("bench")
            run = mlflow.create_run(experiment)
            mlflow.log_metric(run.info.run_id, "roc_auc", 0.8)
            mlflow.log_text(run.info.run_id, "flavor: bench", "model/MLmodel")
            mlflow.create_registered_model("bench")
            version = str(mlflow.create_model_version("bench", f"{run.info.artifact_uri}/model",
                                                      run.info.run_id).version)

            start = time.perf_counter()
            result = run_gate(cfg, version, mlflow)
            gated = time.perf_counter()
            report = promote(cfg, version, stands.get("int"), env_object="envs/bench.tar.gz",
                             code_prefix="code/bench/k", mlflow=mlflow)
            done = time.perf_counter()
            assert result.passed and report.alias_moved and report.trigger.startswith("jenkins")

            base_start = time.perf_counter()
            target = storage_of(stands.get("int"))
            store.download("envs/bench.tar.gz", work / "copy.tar.gz")
            target.upload(work / "copy.tar.gz", "envs/naive.tar.gz", digest)
            base_seconds = time.perf_counter() - base_start

            total = done - start
            print(f"archive {args.size_mb} MB; gate {gated - start:.2f} s, promote (tags, alias, copy, trigger) "
                  f"{done - gated:.2f} s, total {total:.2f} s (goal < 2 s: {'met' if total < 2 else 'NOT met'})")
            print(f"baseline: download + re-upload of the same archive {base_seconds:.2f} s; "
                  f"promotion / baseline = {total / base_seconds:.2f}")
        finally:
            jenkins.shutdown()
            for process in (s3, mlflow_server):
                process.terminate()
                process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
