"""How much slower do generated DAG files parse than hand-written ones with the same operators?

Renders N copies of the example model (default 100) for one stand, writes hand-written equivalents
(same operators, same manifests, the plain style a person would write), then times a real Airflow
``DagBag`` load of each folder, alternating, in fresh worker processes that have Airflow and the
operators imported already (as Airflow's DAG processor has). Prints medians and the ratio.
Goal: generated ≤ 1.1 × hand-written.

    python bench/parse_dags.py [--models 100] [--rounds 5] [--stand mdp]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "churn"

HAND_TRAIN = '''from datetime import datetime

from airflow.sdk import DAG, task
from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator

with DAG("{dag_id}", schedule={schedule!r}, start_date=datetime(2025, 1, 1), catchup=False,
         max_active_runs=1, tags=["{model}"], description="{model} {job}",
         default_args={{"owner": "{owner}", "retries": 0}}) as dag:
    train = SparkKubernetesOperator(task_id="train", application_file="{manifest}", namespace="{namespace}")

    @task
    def quality_gate():
        from mlops_module.dag_tasks import quality_gate
        quality_gate(model="{model}", stand="{stand}")

    @task
    def promote():
        from mlops_module.dag_tasks import promote
        promote(model="{model}", stand="{stand}")

    train >> quality_gate() >> promote()
'''

HAND_INFERENCE = '''from datetime import datetime

from airflow.sdk import DAG
from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator

with DAG("{dag_id}", schedule={schedule!r}, start_date=datetime(2025, 1, 1), catchup=False,
         max_active_runs=1, tags=["{model}"], description="{model} {job}",
         default_args={{"owner": "{owner}", "retries": 0}}) as dag:
    SparkKubernetesOperator(task_id="infer", application_file="{manifest}", namespace="{namespace}")
'''

HAND_MONITORING = '''from datetime import datetime

from airflow.sdk import DAG, task
from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

with DAG("{dag_id}", schedule={schedule!r}, start_date=datetime(2025, 1, 1), catchup=False,
         max_active_runs=1, tags=["{model}"], description="{model} {job}",
         default_args={{"owner": "{owner}", "retries": 0}}) as dag:
    monitor = SparkKubernetesOperator(task_id="monitor", application_file="{manifest}", namespace="{namespace}")

    @task
    def decide():
        from mlops_module.dag_tasks import decide_retrain
        decide_retrain(model="{model}", stand="{stand}")

    monitor >> decide() >> TriggerDagRunOperator(task_id="trigger_train", trigger_dag_id="{train_dag_id}")
'''
HAND = {"train": HAND_TRAIN, "inference": HAND_INFERENCE, "monitoring": HAND_MONITORING}

WORKER = '''
import sys, time, json
import airflow.sdk
from airflow.sdk import DAG, task, CronDataIntervalTimetable
from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.dag_processing.dagbag import DagBag
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "dags": len(bag.dags), "errors": len(bag.import_errors)}))
'''


def build(models: int, stand: str, work: Path) -> tuple[Path, Path]:
    from mlops_module import names
    from mlops_module.building.render import render_bundle, write_bundle
    from mlops_module.spec.config import check
    from mlops_module.spec.stands import load_stands

    stands = load_stands()
    generated, hand = work / "generated", work / "hand"
    template = (EXAMPLE / "model.yaml").read_text()
    for i in range(models):
        model = f"bench-model-{i:03d}"
        repo = work / "repos" / model
        shutil.copytree(EXAMPLE, repo)
        (repo / "model.yaml").write_text(template.replace("name: churn-classifier", f"name: {model}"))
        (cfg,) = check(repo / "model.yaml", stands, stand)
        out = write_bundle(render_bundle(cfg), generated / model)
        target = hand / model
        shutil.copytree(out / "manifests", target / "manifests")
        for job in cfg.jobs:
            schedule = job.schedule
            (target / names.dag_file(model, stand, job.kind)).write_text(HAND[job.kind].format(
                dag_id=names.dag_id(model, stand, job.kind), schedule=schedule, model=model, stand=stand,
                manifest=names.manifest_file(model, stand, job.kind), namespace=cfg.stand.namespace,
                train_dag_id=names.dag_id(model, stand, "train"), job=job.kind, owner=cfg.owner))
    return generated, hand


def measure(folder: Path, airflow_home: Path) -> dict[str, float]:
    env = {"AIRFLOW_HOME": str(airflow_home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", WORKER, str(folder)], capture_output=True, text=True,
                            env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=100, help="number of models (3 DAGs each)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating measurements per side")
    parser.add_argument("--stand", default="mdp", help="stand to render for (a Kubernetes stand by default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        generated, hand = build(args.models, args.stand, work)
        print(f"rendered {args.models} models ({args.models * 3} DAG files) in {time.perf_counter() - t0:.2f} s")
        times: dict[str, list[float]] = {"generated": [], "hand-written": []}
        for r in range(args.rounds):
            order = [("generated", generated), ("hand-written", hand)]
            for label, folder in order if r % 2 == 0 else reversed(order):
                result = measure(folder, work / "airflow")
                if result["errors"] or result["dags"] != args.models * 3:
                    print(f"{label}: {result}", file=sys.stderr)
                    return 1
                times[label].append(result["seconds"])
        gen, hand_s = statistics.median(times["generated"]), statistics.median(times["hand-written"])
        for label, values in times.items():
            print(f"{label:>13}: median {statistics.median(values):.3f} s over {len(values)} runs "
                  f"({', '.join(f'{v:.3f}' for v in values)})")
        ratio = gen / hand_s
        print(f"ratio generated / hand-written: {ratio:.3f} (goal <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
