"""The ``mlops`` command line: parses arguments, calls the library, maps errors to exit statuses.

Exit status: 0 success, 1 invalid input or failed check, 2 wrong usage. No tracebacks unless
``MLOPS_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_module import __version__
from mlops_module.errors import ConfigError, MlopsError

if TYPE_CHECKING:
    from mlops_module.building.artifacts import Artifacts
    from mlops_module.kinds import Log
    from mlops_module.release.triggers import Trigger
    from mlops_module.spec.config import ModelConfig

DEFAULT_CONFIG = "model.yaml"


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG, metavar="CONFIG",
                        help=f"the model config (default: {DEFAULT_CONFIG} in the current directory); "
                             "paths in it are relative to its directory")
    _add_stands(parser)


def _add_stands(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stands", metavar="FILE",
                        help="the platform's stands file (default: $MLOPS_STANDS, else the built-in "
                             "sandbox local and the chain mdp -> int -> lt -> prom)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops",
        description="One model.yaml in; Airflow DAGs, SparkApplication manifests and promotions out.",
        epilog="Exit status: 0 success, 1 invalid input or failed check, 2 wrong usage. "
               "Run `mlops COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"mlops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check a model config (every stand, or one)",
                       description="Check the config against the schema and, for every stand (or the one "
                                   "given), the merged view: base config deep-merged with stands.<name>. "
                                   "Prints every problem as FILE:LINE:COL: path: message.")
    _add_config(p)
    p.add_argument("--stand", metavar="S", help="check only this stand's merged view")
    p.add_argument("--json", action="store_true", help="print a JSON result instead of text")

    p = sub.add_parser("render", help="write a stand's DAG files and SparkApplication manifests",
                       description="Validate, then write the train, inference and monitoring DAGs and their "
                                   "manifests for one stand into DIR. DIR is replaced atomically; it must be "
                                   "new, empty, or an earlier render output. Nothing is written when the "
                                   "config is invalid.")
    _add_config(p)
    p.add_argument("--stand", metavar="S", required=True, help="the stand to render for")
    p.add_argument("--out", metavar="DIR", required=True, type=Path, help="output directory")
    p.add_argument("--templates", metavar="DIR", type=Path,
                   help="a platform template directory whose files override the built-in ones "
                        "(default: $MLOPS_TEMPLATES)")
    p.add_argument("--json", action="store_true", help="print the bundle index as JSON")

    p = sub.add_parser("package", help="build the environment archive and code package, upload them",
                       description="Build the model's Python environment (a tar.gz for spark.archives) and its "
                                   "code package, and upload both to the stand's storage under content-addressed "
                                   "keys, the ones the rendered manifests reference. What the storage already has "
                                   "is neither built nor uploaded. With --verify, check an archive instead.")
    _add_config(p)
    p.add_argument("--stand", metavar="S", help="the stand whose storage receives the artifacts (required "
                                                "unless --verify)")
    p.add_argument("--verify", metavar="URI", help="download an archive (s3://..., file://... or a path), unpack "
                                                   "it elsewhere and import every top-level requirement with its "
                                                   "./environment/bin/python")
    p.add_argument("--json", action="store_true", help="print a JSON summary (key, size, sha256, uploaded or "
                                                       "skipped, seconds) on standard output")
    p.add_argument("--quiet", action="store_true", help="no progress or messages (progress bars only show on a "
                                                        "terminal anyway)")

    p = sub.add_parser("deploy", help="publish a stand's DAGs and manifests to its Airflow DAG location",
                       description="Render (or take --bundle) and publish the bundle to the stand's airflow.dags "
                                   "(a directory or an s3:// prefix) under <dags>/<model>/<stand>/: atomically for "
                                   "the scheduler, never touching other models' files, removing this model's files "
                                   "that no longer exist. Prints the plan (+ added, ~ changed with a diff, "
                                   "- removed) first; an unchanged bundle is a no-op. Refuses while the stand's "
                                   "storage lacks the environment archive or code package the DAGs run.")
    _add_config(p)
    p.add_argument("--stand", metavar="S", required=True, help="the stand to deploy to")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--bundle", metavar="DIR", type=Path,
                        help="publish this `mlops render` output (it must match the config and stand) instead of "
                             "rendering again")
    source.add_argument("--package", metavar="PREFIX",
                        help="render from a code package in the stand's storage (code/<model>/<key>, what a "
                             "promotion pushed there) instead of CONFIG: deploys exactly what was promoted")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("--templates", metavar="DIR", type=Path,
                   help="platform template directory, as for render (default: $MLOPS_TEMPLATES)")
    p.add_argument("--version", dest="model_version", metavar="V",
                   help="a version pushed here (its number on this stand's registry): once the bundle is live, "
                        "start the stand's acceptance run for it (the promoter's deploy trigger passes this)")
    p.add_argument("--source-stand", metavar="S", help="with --version: the stand that pushed it")
    p.add_argument("--source-version", metavar="V", help="with --version: its version on the source stand")
    p.add_argument("--json", action="store_true", help="print the plan as JSON on standard output "
                                                       "(the text plan goes to standard error)")

    p = sub.add_parser("run", help="run a deployed DAG on a local stand (train, inference or monitoring)",
                       description="Run the DAG `mlops deploy` published on a local stand, as its scheduler would: "
                                   "Airflow (SQLite, home in $MLOPS_HOME/<stand>/airflow) runs every task, the Spark "
                                   "jobs by spark-submit in local mode. When nothing answers at the stand's loopback "
                                   "MLflow URI, an MLflow server is started there for the run (state in "
                                   "$MLOPS_HOME/<stand>/mlflow). When a trigger has queued a run of the DAG "
                                   "(a retrain the monitoring DAG asked for), that run is the one that runs, "
                                   "with its dates and conf (--conf on top): one per invocation. Prints each "
                                   "task's state and, for train, the version, the gate's verdict and the stand's "
                                   "alias. Exit 0 when the run succeeded, 1 when "
                                   "it failed (a rejected candidate fails its quality_gate task).")
    _add_config(p)
    p.add_argument("--stand", metavar="S", default="local", help="a stand with backend: local (default: local)")
    p.add_argument("--job", choices=("train", "inference", "monitoring", "accept"), default="train",
                   help="which DAG (default: train; accept: the acceptance run a push queued)")
    p.add_argument("--conf", metavar="KEY=VALUE", action="append", default=[],
                   help="run conf, repeatable: data_interval_start=2025-04-24T00:00:00+00:00, "
                        "data_interval_end=..., reason=...")
    p.add_argument("--json", action="store_true", help="print the result as JSON on standard output "
                                                       "(progress goes to standard error)")

    p = sub.add_parser("gate", help="evaluate a candidate against the thresholds and the stand's champion",
                       description="Check a registered model version against the config's quality_gate metrics "
                                   "and the version under the stand's alias (the champion), and record the result "
                                   "on the version (tags) and its run (quality_gate/<stand>.json). The evidence: the "
                                   "metrics its training run logged; for a version pushed to this stand (or a model "
                                   "with its own quality_gate.script), what the evaluate job of the Airflow run named "
                                   "by --airflow-run-id measured here. Exit 0 when it passes, 1 when it fails.")
    _add_config(p)
    p.add_argument("--stand", metavar="S", required=True, help="the stand whose registry and champion apply")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", metavar="V", help="the registered model version")
    which.add_argument("--run-id", metavar="RUN", help="the MLflow run of the training job: the version it registered")
    p.add_argument("--airflow-run-id", metavar="ID", help="the Airflow run whose train job logged the candidate; with "
                                                          "--version, the acceptance (or train) run whose evaluate job "
                                                          "measured it on this stand")
    p.add_argument("--json", action="store_true", help="print the gate result as JSON")

    p = sub.add_parser("promote", help="tag, move the stand's alias, push to the next stand",
                       description="Promote a version whose gate passed: tags, then the stand's alias, then the "
                                   "push to the next stand (environment and code copied server-side, the model "
                                   "registered there if it has its own registry, its deploy trigger called unless it "
                                   "wants a manual approval). Safe to re-run; refuses a version that did not pass.")
    _add_config(p)
    p.add_argument("--stand", metavar="S", required=True, help="the stand to promote on")
    p.add_argument("--version", metavar="V", required=True, help="the registered model version")
    p.add_argument("--reason", default="quality gate passed", help="recorded in the history")
    p.add_argument("--git-sha", default=os.environ.get("GIT_COMMIT", ""), help="recorded on the version "
                                                                              "(default: $GIT_COMMIT)")
    p.add_argument("--no-push", action="store_true", help="move the alias only; don't push to the next stand")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")

    p = sub.add_parser("approve", help="call the deploy trigger a manual-approval stand held back",
                       description="A stand with deploy.approval: manual receives a pushed version's artifacts but "
                                   "not its deploy trigger: the push waits for a person. This calls that trigger "
                                   "(Jenkins job, command) once, and records who approved and why. VERSION is the "
                                   "version the previous stand pushed, as `mlops history --stand <previous>` and its "
                                   "promote log show it. Exit 1 when nothing awaits approval.")
    _add_config(p)
    p.add_argument("--stand", metavar="S", required=True, help="the stand awaiting approval (e.g. lt)")
    p.add_argument("--version", metavar="V", required=True, help="the version the previous stand pushed")
    p.add_argument("--reason", default="approved", help="recorded in the history (e.g. a change ticket)")
    p.add_argument("--json", action="store_true", help="print the recorded event as JSON")

    p = sub.add_parser("rollback", help="point a stand's alias back at the previous good version",
                       description="Move the stand's alias back to the version it held before the current one "
                                   "(or --to VERSION) and record why. Refuses a version that failed its gate.")
    _add_config(p)
    p.add_argument("--stand", metavar="S", required=True, help="the stand to roll back")
    p.add_argument("--to", metavar="V", help="the version to restore (default: the previous one)")
    p.add_argument("--reason", default="rollback", help="recorded in the history")
    p.add_argument("--json", action="store_true", help="print the recorded event as JSON")

    p = sub.add_parser("unlock", help="remove a stuck promotion lock of a stand (recorded in the history)",
                       description="Promotions, approvals and rollbacks of a model on a stand hold a lock in the "
                                   "stand's storage (locks/MODEL/promotion.json). Its holder renews it while it "
                                   "works; one not renewed for its lease ($MLOPS_LOCK_LEASE_SECONDS, default 120) "
                                   "is stale, and one whose process is gone from the same machine is taken over "
                                   "by the next promotion at once, so this is rarely needed. It shows who holds "
                                   "the lock, removes it if it is stale or its holder is gone, and records that in "
                                   "the stand's history. A lock that looks alive is refused unless --force. Exit 0 "
                                   "when removed or when there is no lock, 1 when refused.")
    _add_config(p)
    p.add_argument("--stand", metavar="S", required=True, help="the stand whose lock to remove")
    p.add_argument("--force", action="store_true",
                   help="remove it even if its holder looks alive: only when you are sure it is gone (its machine "
                        "lost, its process killed); a live holder would run on unprotected")
    p.add_argument("--reason", metavar="R", default="", help="recorded in the history (e.g. a ticket)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("history", help="who moved a stand's alias, from which version to which, when and why",
                       description="Print the recorded alias moves of a stand (MLflow keeps no history of aliases).")
    _add_config(p)
    p.add_argument("--stand", metavar="S", required=True, help="the stand")
    p.add_argument("--json", action="store_true", help="print the events as JSON")

    p = sub.add_parser("status", help="where the model stands on every stand of the chain",
                       description="Ask each stand of the chain (its own MLflow and storage) for the model's state: "
                                   "the alias holder, its verdict and when it moved (and how: trained, pushed and "
                                   "accepted, retrained), versions in acceptance (pushed, not gated there yet), "
                                   "approvals waiting, the last version rejected there and why, the last monitoring "
                                   "decision. A stand that can't be read says so; the others are still shown.")
    _add_config(p)
    p.add_argument("--json", action="store_true", help="print one object per stand as JSON")

    p = sub.add_parser("doctor", help="check, from here, what a stand needs (storage, MLflow, Airflow, cluster)",
                       description="A preflight of one stand, from where it runs: its storage and DAG location "
                                   "writable (a probe written, read back and deleted), its MLflow an MLflow 3 "
                                   "server that proxies artifacts, its Airflow API answering (where airflow.api_url "
                                   "is set) and, on a Kubernetes stand, the API server reachable (KUBECONFIG, "
                                   "~/.kube/config, else the pod's service account), the SparkApplication CRD "
                                   "served at v1beta2, the namespace and the Spark driver's service account there, "
                                   "and what the Airflow identity may do there (SelfSubjectAccessReview). One line "
                                   "per check as it completes: ok, FAILED (what is wrong, what to do) or not checked "
                                   "(why). Exit 0 when nothing failed, 1 otherwise.")
    p.add_argument("--stand", metavar="S", required=True, help="the stand to check")
    _add_stands(p)
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=5.0,
                   help="how long each request may take (default: 5)")
    p.add_argument("--json", action="store_true", help="print the checks as JSON on standard output "
                                                       "(the lines go to standard error as they complete)")

    p = sub.add_parser("demo", help="the whole lifecycle of the bundled example on this machine",
                       description="Run the bundled churn example through its whole lifecycle on this machine, "
                                   "with real Airflow (SQLite), real MLflow servers and Spark in local mode, on four "
                                   "stands mdp -> int -> lt -> prom, each with its own MLflow, storage and DAG "
                                   "folder: generate data, validate, package, deploy mdp, train there under "
                                   "Airflow; each push deploys the next stand and starts its acceptance run (its "
                                   "checks, its gate, its promotion); LT asks for an approval; prom's promoter "
                                   "starts inference, monitoring finds drift and triggers a retrain that waits for "
                                   "approval. Prints where each stand's verdict came from and how to open each "
                                   "MLflow UI. Everything it makes stays in DIR; each run starts over. The example "
                                   "is built for the Python running the demo (3.10-3.12); Spark runs on JAVA_HOME's "
                                   "Java, a Java 17+ on PATH, or the one `make install` puts into the virtualenv.")
    p.add_argument("--dir", metavar="DIR", type=Path,
                   help="where the demo keeps everything (default: $MLOPS_HOME/demo, i.e. ~/.mlops/demo)")
    p.add_argument("--clean", action="store_true", help="remove DIR's earlier demo state first and start over")
    p.add_argument("--rows-per-day", metavar="N", type=int, default=1200,
                   help="synthetic customer events per day (default: 1200, at least 1100: prom's monitoring "
                        "decides on one scored day; 134 days are generated)")
    p.add_argument("--json", action="store_true", help="print the final state (aliases, versions and their tags, "
                                                       "inference, monitoring) as JSON instead of the table")

    p = sub.add_parser("platform", help="the cluster side of a stand, for the platform team",
                       description="What the platform team sets up once per Kubernetes stand, from the stands file.")
    platform = p.add_subparsers(dest="platform_command", metavar="ACTION", required=True)
    p = platform.add_parser(
        "render", help="the Kubernetes objects a stand needs: namespace, service account, Roles, RoleBindings",
        description="Print (or write to DIR/<stand>.yaml) the objects a Kubernetes stand needs before its first "
                    "job, as one multi-document YAML for `kubectl apply -f`: the job namespace "
                    "(kubernetes.namespace); the Spark driver's service account (kubernetes.service_account) and "
                    "a Role letting it manage its executors' pods, configmaps, services and volume claims; a Role "
                    "with exactly the calls Airflow's SparkKubernetesOperator makes (sparkapplications create, "
                    "delete; sparkapplications/status get; pods get, list, patch; pods/log get; events list), bound "
                    "to the Airflow workers' service account (kubernetes.airflow_service_account). A stand with "
                    "backend: local needs none: asking for one is an error.",
        epilog="Example: mlops platform render --stand mdp | kubectl apply -f -")
    p.add_argument("--stand", metavar="S", required=True, help="a stand with backend: kubernetes")
    p.add_argument("--stands", metavar="FILE",
                   help="the platform's stands file (default: $MLOPS_STANDS, else the built-in one)")
    p.add_argument("--out", metavar="DIR", type=Path,
                   help="write DIR/<stand>.yaml (DIR is created) instead of printing to standard output")
    p = platform.add_parser(
        "stands", help="the built-in stands file, with its comments: where a platform's own starts",
        description="Print the built-in stands file (four Kubernetes stands with example.com placeholders, and "
                    "the local sandbox), comments included, to edit into the platform's own: point "
                    "MLOPS_STANDS (or --stands) at the result. docs/stands.md explains every key.",
        epilog="Example: mlops platform stands --out stands.yaml")
    p.add_argument("--out", metavar="FILE", type=Path,
                   help="write FILE (refused if it exists) instead of printing to standard output")

    p = sub.add_parser("schema", help="print the model config's JSON Schema",
                       description="Print the JSON Schema of model.yaml: the source of truth for validation, "
                                   "defaults and editor autocompletion (yaml-language-server).")
    p.add_argument("--out", metavar="FILE", type=Path, help="write to FILE instead of standard output")
    p.add_argument("--markdown", action="store_true",
                   help="the config reference as Markdown (every key: type, default, description), "
                        "as in docs/config-reference.md")

    p = sub.add_parser("init", help="scaffold a new model repository",
                       description="Create DIR/NAME: model.yaml (with a schema modeline for editor completion), "
                                   "src/train.py and src/inference.py on the runtime, tests, locked "
                                   "requirements, a pre-commit config running `mlops validate`. It validates and "
                                   "renders as it is, and its train job runs on the local stand on generated "
                                   "sample rows until your data is in place.")
    p.add_argument("name", metavar="NAME", help="the model name (model.name; lowercase, digits, '-')")
    p.add_argument("--dir", metavar="DIR", type=Path, default=Path("."), help="where to create it (default: .)")
    p.add_argument("--owner", default="my-team", help="model.owner (default: my-team)")
    return parser


def _problems_json(exc: ConfigError) -> list[dict[str, Any]]:
    return [p.__dict__ | {"text": str(p)} for p in exc.problems]


def cmd_validate(args: argparse.Namespace) -> int:
    from mlops_module import workflows
    from mlops_module.spec.schema import stale_editor_schema
    from mlops_module.spec.stands import load_stands

    stands = load_stands(args.stands)  # a broken stands file is the platform's problem: not a config result
    try:
        resolved = workflows.resolve_all(args.config, stands, stand=args.stand)
    except ConfigError as exc:
        if args.json:
            print(json.dumps({"valid": False, "problems": _problems_json(exc)}, indent=2))
            return 1
        raise
    names = [c.stand.name for c in resolved]
    stale = stale_editor_schema(Path(args.config))
    if stale is not None:
        print(f"note: {stale} is another mlops version's schema; your editor completes from it. Refresh it: "
              f"mlops schema --out {stale}", file=sys.stderr)
    if args.json:
        print(json.dumps({"valid": True, "config": args.config, "stands": names,
                          "config_hashes": {c.stand.name: c.config_hash for c in resolved}}, indent=2))
    else:
        print(f"{args.config}: valid on stand{'s' if len(names) > 1 else ''} {', '.join(names)}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from mlops_module import names, workflows
    from mlops_module.building.render import write_bundle

    cfg = workflows.resolve(args.config, args.stand, stands_file=args.stands).cfg
    bundle = workflows.render(cfg, args.templates)
    out = write_bundle(bundle, args.out)
    if args.json:
        print(bundle.files[names.BUNDLE_INDEX], end="")
        return 0
    print(f"Rendered {cfg.name} for stand {cfg.stand.name} into {out}:")
    for rel in bundle.files:
        print(f"  {rel}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from mlops_module.spec.schema import config_reference, config_schema_text

    text = config_reference() if args.markdown else config_schema_text()
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_platform(args: argparse.Namespace) -> int:
    from mlops_module.platform.objects import render_stand, starting_stands
    from mlops_module.spec.stands import load_stands

    if args.platform_command == "stands":
        text = starting_stands(args.out)
        if args.out is None:
            sys.stdout.write(text)
        else:
            print(f"Wrote the built-in stands file to {args.out}: edit it, then MLOPS_STANDS={args.out}")
        return 0
    text, path = render_stand(load_stands(args.stands), args.stand, args.out)
    if path is None:
        sys.stdout.write(text)
    else:
        print(f"Wrote the Kubernetes objects of stand {args.stand} to {path}: kubectl apply -f {path}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from mlops_module.local.scaffold import init

    init(args.name, args.dir, owner=args.owner)
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from mlops_module import workflows
    from mlops_module.errors import UsageError

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    if args.verify:
        result = workflows.verify(args.verify, stands_file=args.stands, stand=args.stand, log=log)
        if args.json:
            print(json.dumps(result.__dict__, indent=2))
        elif not result.ok:
            print(result.output, file=sys.stderr)
        return 0 if result.ok else 1
    if not args.stand:
        raise UsageError("--stand is required (or use --verify URI)")
    cfg = workflows.resolve(args.config, args.stand, stands_file=args.stands).cfg
    report = workflows.package(cfg, show_progress=not args.quiet and sys.stderr.isatty(), log=log)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from mlops_module import workflows

    if args.package:
        with workflows.package_checkout(args.package, args.stand, args.stands) as (resolved, art):
            return _deploy(args, resolved.cfg, art)
    return _deploy(args, workflows.resolve(args.config, args.stand, stands_file=args.stands).cfg)


def _deploy(args: argparse.Namespace, cfg: ModelConfig, art: Artifacts | None = None) -> int:
    from mlops_module import workflows
    from mlops_module.errors import UsageError

    if args.model_version and not (args.source_stand and args.source_version):
        raise UsageError("--version needs --source-stand and --source-version (where the pushed version came from)")
    bundle = workflows.read_checked_bundle(args.bundle, cfg) if args.bundle else None
    out = sys.stderr if args.json else sys.stdout

    def say(message: str) -> None:
        print(message, file=out, flush=True)

    plan = workflows.deploy(cfg, bundle=bundle, templates=args.templates, art=art, dry_run=args.dry_run, log=say)
    acceptance = None
    if args.model_version and not args.dry_run:
        acceptance = workflows.start_acceptance(cfg, args.model_version, args.source_stand, args.source_version,
                                                log=say)
    if args.json:
        print(json.dumps({**plan.as_dict(), "dry_run": args.dry_run, "acceptance_run": acceptance}, indent=2))
    elif args.dry_run and not plan.noop:
        print("dry run: nothing was written")
    return 0


def _log(args: argparse.Namespace) -> Log | None:
    return None if getattr(args, "json", False) else (lambda message: print(message, file=sys.stderr))


def cmd_run(args: argparse.Namespace) -> int:
    import signal

    from mlops_module import workflows
    from mlops_module.errors import UsageError
    from mlops_module.local.run import run_dag, summary_lines
    from mlops_module.spec.stands import stands_source

    run_conf: dict[str, str] = {}
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--conf {item!r}: expected KEY=VALUE")
        run_conf[key] = value
    cfg = workflows.resolve(args.config, args.stand, stands_file=args.stands).cfg

    def stop(signum: int, _frame: Any) -> None:  # a terminated run still stops its Airflow and MLflow (finally)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        result = run_dag(cfg, args.job, run_conf=run_conf, stands_file=stands_source(args.stands),
                         log=lambda message: print(message, file=sys.stderr if args.json else sys.stdout, flush=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print("\n".join(summary_lines(result)))
    return 0 if result.ok else 1


def cmd_gate(args: argparse.Namespace) -> int:
    from mlops_module import workflows
    from mlops_module.errors import UsageError

    cfg = workflows.resolve(args.config, args.stand, stands_file=args.stands).cfg
    if not (args.version or args.run_id or args.airflow_run_id):
        raise UsageError("name the candidate: --version, --run-id or --airflow-run-id")
    version, result = workflows.gate(cfg, version=args.version, run_id=args.run_id,
                                     airflow_run_id=args.airflow_run_id, log=_log(args))
    if args.json:
        print(json.dumps({"version": version, **result.as_dict()}, indent=2))
    return 0 if result.passed else 1


def _trigger(args: argparse.Namespace) -> Trigger | None:
    """The deploy trigger, told which stands file this command was given (a command trigger deploys with it)."""
    import functools

    from mlops_module.release.triggers import call_trigger

    return functools.partial(call_trigger, stands_file=args.stands) if args.stands else None


def cmd_promote(args: argparse.Namespace) -> int:
    from mlops_module import workflows
    from mlops_module.building.source import COMMIT_ID
    from mlops_module.errors import UsageError

    if args.git_sha and not COMMIT_ID.fullmatch(args.git_sha):
        raise UsageError(f"--git-sha {args.git_sha!r} is not a commit id (7 to 40 lowercase hex digits)")
    resolved = workflows.resolve(args.config, args.stand, stands_file=args.stands)
    report = workflows.promote(resolved, args.version, workflows.artifact_keys(resolved.cfg), push=not args.no_push,
                               reason=args.reason, git_sha=args.git_sha, log=_log(args), trigger=_trigger(args))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from mlops_module import workflows

    event = workflows.approve(args.config, args.stand, args.version, stands_file=args.stands, reason=args.reason,
                              log=_log(args), trigger=_trigger(args))
    if args.json:
        print(json.dumps(event, indent=2))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from mlops_module import workflows

    cfg = workflows.resolve(args.config, args.stand, stands_file=args.stands).cfg
    event = workflows.rollback(cfg, args.to, reason=args.reason, log=_log(args))
    if args.json:
        print(json.dumps(event, indent=2))
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    from mlops_module import workflows

    cfg = workflows.resolve(args.config, args.stand, stands_file=args.stands).cfg
    event = workflows.unlock(cfg, force=args.force, reason=args.reason)
    if args.json:
        print(json.dumps(event, indent=2))
    elif not event["removed"]:
        print(f"no promotion lock of {cfg.name} on {cfg.stand.name} ({event['lock']}): nothing to do")
    else:
        print(f"removed the promotion lock of {cfg.name} on {cfg.stand.name}, {event['held']}: {event['why']} "
              "(recorded in the history)")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from mlops_module import workflows
    from mlops_module.release.history import event_line

    cfg = workflows.resolve(args.config, args.stand, stands_file=args.stands).cfg
    events = workflows.history(cfg, warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    if args.json:
        print(json.dumps(events, indent=2))
        return 0
    if not events:
        print(f"no recorded alias moves of {cfg.name} on {cfg.stand.name}")
    for event in events:
        print(event_line(event))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from mlops_module import workflows
    from mlops_module.release.status import as_json, table

    rows = workflows.status(args.config, stands_file=args.stands)
    print(as_json(rows) if args.json else table(rows))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from mlops_module.errors import UsageError
    from mlops_module.platform.doctor import doctor
    from mlops_module.spec.config import known_stand
    from mlops_module.spec.stands import load_stands

    if args.timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    stands = load_stands(args.stands)
    known_stand(args.stand, stands)
    out = sys.stderr if args.json else sys.stdout
    report = doctor(stands.get(args.stand), timeout=args.timeout,
                    on_check=lambda check: print(check, file=out, flush=True))
    print(report.summary(), file=out)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from mlops_module.local.demo import run_demo, summary_lines

    result = run_demo(args.dir, clean=args.clean, rows_per_day=args.rows_per_day,
                      progress_to_stderr=args.json)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print("\n".join(summary_lines(result)))
    return 0


COMMANDS = {"validate": cmd_validate, "render": cmd_render, "package": cmd_package, "deploy": cmd_deploy,
            "run": cmd_run, "gate": cmd_gate, "promote": cmd_promote, "approve": cmd_approve,
            "rollback": cmd_rollback, "unlock": cmd_unlock, "history": cmd_history, "status": cmd_status,
            "schema": cmd_schema, "doctor": cmd_doctor, "platform": cmd_platform, "demo": cmd_demo, "init": cmd_init}


def service_failure(exc: BaseException) -> str | None:
    """MLflow or S3 failing where no library call named it (their clients' own exceptions): one line, or None."""
    module = type(exc).__module__
    if module.startswith(("mlflow", "requests", "urllib3")):
        from mlops_module.release.registry import unavailable

        return f"MLflow failed: {unavailable(exc) or getattr(exc, 'message', None) or exc}"
    if module.startswith(("botocore", "boto3", "s3transfer")):
        return f"S3 failed: {exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return exc.exit_code
    except MlopsError as exc:
        print(f"mlops {args.command}: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", ()):  # what else went wrong meanwhile (a lock left behind)
            print(f"  also: {note}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("MLOPS_DEBUG"):
            raise
        service = service_failure(exc)
        if service:  # a server failing is not a bug of ours: say which and why
            print(f"mlops {args.command}: {service}", file=sys.stderr)
            return 1
        print(f"mlops {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(set MLOPS_DEBUG=1 for a traceback and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
