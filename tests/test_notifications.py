"""Notifications through Airflow's notifiers, delivered for real: a loopback SMTP server (aiosmtpd) and a loopback
HTTP endpoint (the webhook, and Slack's incoming webhook), reached through Airflow connections given as
AIRFLOW_CONN_* variables. The DAG tests run rendered DAGs with dag.test() against the session's MLflow server."""

from __future__ import annotations

import email
import email.policy
import json
import os
import queue
import shutil
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import test_promotion
from helpers import EXAMPLE_CONFIGS, MINIMAL, dagbag, stands_for_tests, write_repo

from mlops_module import names, notifications
from mlops_module.errors import ConfigError
from mlops_module.local.services import free_port
from mlops_module.notifications import Message, NotifySettings
from mlops_module.spec.config import check
from mlops_module.spec.stands import SmtpChannel, WebhookChannel, load_stands

jenkins, world = test_promotion.jenkins, test_promotion.world  # the fixtures, by the names the tests ask for
WAIT = 60  # seconds a test waits for a delivery before it fails (never a sleep: a queue's timeout)

NOTIFY_BLOCK = """\
  notifications:
    smtp: {conn_id: mlops_smtp, to: [platform@example.com]}
    slack: {conn_id: mlops_slack}
    webhook: {conn_id: mlops_hook, endpoint: /hooks/mlops}
    links: {airflow: "https://airflow.example.com", mlflow: "https://mlflow.example.com/"}
"""


# --- the loopback servers ----------------------------------------------------------------------------------------


@dataclass
class Inbox:
    """What reached the SMTP server: (sender, recipients, parsed message)."""

    port: int
    received: queue.Queue[tuple[str, list[str], EmailMessage]]

    def next(self) -> tuple[str, list[str], EmailMessage]:
        return self.received.get(timeout=WAIT)


@pytest.fixture()
def smtp_server() -> Iterator[Inbox]:
    from aiosmtpd.controller import Controller

    inbox = Inbox(free_port(), queue.Queue())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            inbox.received.put((envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@dataclass
class Endpoint:
    """A loopback HTTP server that answers every POST with 200 and keeps (path, body)."""

    url: str
    received: queue.Queue[tuple[str, bytes]]

    def next(self) -> tuple[str, bytes]:
        return self.received.get(timeout=WAIT)

    def empty(self) -> bool:
        return self.received.empty()


@pytest.fixture()
def http_endpoint() -> Iterator[Endpoint]:
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.put((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Endpoint(f"http://127.0.0.1:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class Channels:
    smtp: Inbox
    http: Endpoint  # the webhook (path /hooks/mlops) and Slack's incoming webhook (path /slack/...)

    def webhook(self) -> dict[str, Any]:
        """The next JSON body posted to the webhook's endpoint (Slack's posts are kept aside)."""
        slack: list[tuple[str, bytes]] = []
        while True:
            path, body = self.http.next()
            if path == "/hooks/mlops":
                for item in slack:
                    self.http.received.put(item)
                return dict(json.loads(body))
            slack.append((path, body))

    def slack(self) -> dict[str, Any]:
        hooks: list[tuple[str, bytes]] = []
        while True:
            path, body = self.http.next()
            if path.startswith("/slack/"):
                for item in hooks:
                    self.http.received.put(item)
                return dict(json.loads(body))
            hooks.append((path, body))


@pytest.fixture()
def channels(smtp_server: Inbox, http_endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> Channels:
    """The three Airflow connections NOTIFY_BLOCK names, on the loopback servers."""
    port = http_endpoint.url.rsplit(":", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": smtp_server.port,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "mlops@example.com", "retry_limit": 0,
                  "timeout": 10}}))
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_HOOK", json.dumps({
        "conn_type": "http", "host": "127.0.0.1", "port": int(port), "schema": "http"}))
    # slack_sdk's WebhookClient takes an http:// URL: the connection's password, when it is a whole URL
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_SLACK", json.dumps({
        "conn_type": "slackwebhook", "password": f"{http_endpoint.url}/slack/T000/B000/XXXX"}))
    return Channels(smtp_server, http_endpoint)


def _html(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


# --- configuration -----------------------------------------------------------------------------------------------


def _stands(tmp_path: Path, block: str = NOTIFY_BLOCK) -> Path:
    text = (Path(names.__file__).parent / "data" / "stands.yaml").read_text()
    path = tmp_path / "stands.yaml"
    path.write_text(text.replace("\ndefaults:\n", "\ndefaults:\n" + block, 1))
    return path


def test_no_channels_by_default_and_nothing_is_sent(caplog: pytest.LogCaptureFixture) -> None:
    stand = load_stands().get("mdp")
    assert stand.notifications.smtp is None and stand.notifications.webhook is None
    assert stand.notifications.slack_conn_id is None
    assert stand.notifications.airflow_url == "https://airflow.ml-mdp.example.com"  # airflow.api_url
    message = Message(names.EVENT_GATE_FAILED, "m", "mdp", "failed the quality gate", "roc_auc too low")
    with caplog.at_level("INFO", logger="mlops_module.notifications"):
        assert notifications.send(NotifySettings(), message) == ()
    assert "not sent (no channel is configured)" in caplog.text


def test_stand_channels_and_model_additions_resolve(tmp_path: Path) -> None:
    stands = load_stands(_stands(tmp_path))
    n = stands.get("int").notifications
    assert n.smtp == SmtpChannel("mlops_smtp", ("platform@example.com",), None)
    assert n.slack_conn_id == "mlops_slack" and n.webhook == WebhookChannel("mlops_hook", "/hooks/mlops")
    assert n.events == names.EVENTS and n.mlflow_url == "https://mlflow.example.com"
    repo = write_repo(tmp_path / "repo", {**MINIMAL, "notifications": {
        "email": ["owner@example.com", "platform@example.com"], "events": ["gate_failed", "rollback"]},
        "stands": {"prom": {"notifications": {"events": ["rollback"]}}}})
    by_stand = {cfg.stand.name: notifications.settings(cfg) for cfg in check(repo, stands)}
    assert by_stand["int"].smtp is not None
    assert by_stand["int"].smtp.to == ("platform@example.com", "owner@example.com")  # once each
    assert by_stand["int"].events == ("gate_failed", "rollback")
    assert by_stand["prom"].events == ("rollback",)
    # what a DAG file carries reads back the same
    assert NotifySettings.from_dict(by_stand["int"].as_dict()) == by_stand["int"]


@pytest.mark.parametrize(("block", "expected"), [
    ("  notifications:\n    teams: {conn_id: x}\n", "teams"),
    ("  notifications:\n    webhook: {conn_id: mlops_hook}\n", "endpoint"),
    ("  notifications:\n    smtp: {conn_id: mlops_smtp, to: [not-an-address]}\n", "e-mail address"),
    ("  notifications:\n    events: [gate_failed, lunch]\n", "lunch"),
])
def test_a_bad_channel_is_refused_with_a_clear_message(tmp_path: Path, block: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_stands(_stands(tmp_path, block))
    assert "notifications" in str(err.value) and expected in str(err.value)


def test_a_bad_model_recipient_is_refused(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {**MINIMAL, "notifications": {"email": ["risk team"]}})
    with pytest.raises(ConfigError) as err:
        check(repo, load_stands())
    assert "notifications.email" in str(err.value) and "e-mail address" in str(err.value)


# --- the message -------------------------------------------------------------------------------------------------


def test_the_message_leads_with_the_verdict_and_carries_the_story_and_links() -> None:
    message = Message(names.EVENT_GATE_FAILED, "churn", "int", "failed the quality gate", "roc_auc: 0.61 < min 0.75",
                      story="The <candidate> scored {{ 0.61 }} on int.", version="7",
                      run_url="https://airflow.example.com/dags/d/runs/r",
                      mlflow_url=notifications.mlflow_version_url("https://mlflow.example.com", "churn", "7"))
    assert message.subject == "[mlops] churn version 7 on int: failed the quality gate"
    lines = message.text.splitlines()
    assert lines[0] == "Failed the quality gate: roc_auc: 0.61 < min 0.75"
    assert "The <candidate> scored {{ 0.61 }} on int." in lines
    assert "MLflow version: https://mlflow.example.com/#/models/churn/versions/7" in lines
    assert "Airflow run: https://airflow.example.com/dags/d/runs/r" in lines
    assert "&lt;candidate&gt;" in message.html and "<candidate>" not in message.html
    assert '<a href="https://mlflow.example.com/#/models/churn/versions/7">' in message.html
    assert message.slack_text.startswith("*[mlops] churn version 7 on int: failed the quality gate*")
    assert "&lt;candidate&gt;" in message.slack_text
    assert message.payload()["story"] == "The <candidate> scored {{ 0.61 }} on int."


def test_the_gate_story_names_each_check_against_its_threshold() -> None:
    from mlops_module.release.gate import evaluate
    from mlops_module.spec.config import MetricThreshold

    result = evaluate((MetricThreshold("roc_auc", 0.75, None, None), MetricThreshold("log_loss", None, 0.6, None)),
                      {"roc_auc": 0.61, "log_loss": 0.5})
    story = notifications.gate_story("churn", "7", "int", result)  # release/story.py's words
    assert story.splitlines()[0] == "Rejected on int: roc_auc 0.61 is below the minimum 0.75"
    assert "- roc_auc 0.61 (threshold ≥ 0.75; champion –): FAILED" in story
    assert "- log_loss 0.5 (threshold ≤ 0.6; champion –): ok" in story


# --- delivery ----------------------------------------------------------------------------------------------------


def _settings() -> NotifySettings:
    return NotifySettings(SmtpChannel("mlops_smtp", ("platform@example.com", "owner@example.com")), "mlops_slack",
                          WebhookChannel("mlops_hook", "/hooks/mlops"), mlflow_url="https://mlflow.example.com")


def test_every_channel_delivers_the_text_exactly(channels: Channels) -> None:
    story = 'Jinja must not touch this: {{ ti }} {% if %} {# x #} "quoted" <b>'
    message = Message(names.EVENT_ROLLBACK, "churn", "int", "rolled back to version 3", "a bad release",
                      story=story, version="3")
    assert notifications.send(_settings(), message) == ("smtp", "slack", "webhook")
    sender, recipients, mail = channels.smtp.next()
    assert sender == "mlops@example.com" and recipients == ["platform@example.com", "owner@example.com"]
    assert mail["Subject"] == message.subject
    assert 'Jinja must not touch this: {{ ti }} {% if %} {# x #} &quot;quoted&quot; &lt;b&gt;' in _html(mail)
    assert channels.webhook()["story"] == story
    assert story.replace("<", "&lt;").replace(">", "&gt;") in channels.slack()["text"]


def test_a_channel_that_fails_is_logged_and_the_others_still_deliver(channels: Channels,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_HOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                              "port": free_port(), "schema": "http"}))
    said: list[str] = []
    message = Message(names.EVENT_GATE_FAILED, "churn", "int", "failed the quality gate", "roc_auc too low")
    assert notifications.send(_settings(), message, say=said.append) == ("smtp", "slack")
    assert channels.smtp.next()[2]["Subject"] == message.subject
    assert any(line.startswith("notification over webhook not sent: ") for line in said)
    assert "notification over webhook not sent" in caplog.text


def test_an_event_the_model_did_not_choose_is_not_sent(channels: Channels) -> None:
    chosen = NotifySettings(webhook=WebhookChannel("mlops_hook", "/hooks/mlops"), events=(names.EVENT_ROLLBACK,))
    skipped = Message(names.EVENT_RETRAIN_DECIDED, "churn", "int", "retraining decided", "drift")
    assert notifications.send(chosen, skipped) == ()
    sent = Message(names.EVENT_ROLLBACK, "churn", "int", "rolled back to version 3", "bad")
    assert notifications.send(chosen, sent) == ("webhook",)
    assert channels.webhook()["event"] == names.EVENT_ROLLBACK  # the first (and only) post is the rollback


def test_a_rollback_outside_airflow_notifies(tmp_path: Path, channels: Channels) -> None:
    """What `mlops rollback` sends once the alias moved back (workflows.rollback calls this)."""
    repo = write_repo(tmp_path / "repo", {**MINIMAL, "notifications": {"email": ["owner@example.com"]}})
    (cfg,) = check(repo, load_stands(_stands(tmp_path)), "int")
    said: list[str] = []
    sent = notifications.rollback_done(cfg, {"from_version": "4", "to_version": "3", "reason": "bad release"},
                                       say=said.append)
    assert sent == ("smtp", "slack", "webhook")
    body = channels.webhook()
    assert body["event"] == "rollback" and body["reason"] == "bad release"
    assert body["mlflow_version_url"] == "https://mlflow.example.com/#/models/churn/versions/3"
    assert channels.smtp.next()[1] == ["platform@example.com", "owner@example.com"]
    assert said[-1].startswith("notification sent over smtp, slack, webhook")


# --- rendered DAGs -----------------------------------------------------------------------------------------------


def test_dag_files_carry_the_settings_as_data_and_parse_without_providers(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import render

    monkeypatch.setenv("MLOPS_STANDS", str(_stands(tmp_path)))
    out = render(EXAMPLE_CONFIGS[0], "int", tmp_path / "dags")
    train = (out / names.dag_file("churn-classifier", "int", "train")).read_text()
    assert "NOTIFY = {'smtp': {'conn_id': 'mlops_smtp'" in train
    assert "on_failure_callback=spark_failed" in train and "notify=NOTIFY" in train
    assert "airflow.providers.smtp" not in train.split("def spark_failed")[0]  # nothing heavy at parse time
    bag = dagbag(out)
    assert bag.import_errors == {}
    import subprocess

    found = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "AIR",
                            "--preview", *sorted(str(p) for p in out.glob("*.py"))], capture_output=True, text=True)
    assert found.returncode == 0, found.stdout + found.stderr
    accept = bag.dags[names.dag_id("churn-classifier", "int", names.ACCEPT)]
    assert all(t.on_failure_callback for t in accept.tasks if t.task_id in ("evaluate", "smoke"))
    monkeypatch.delenv("MLOPS_STANDS")
    plain = render(EXAMPLE_CONFIGS[0], "int", tmp_path / "plain")
    text = (plain / names.dag_file("churn-classifier", "int", "train")).read_text()
    assert "NOTIFY = None" in text and "spark_failed" not in text


# --- the DAG task path, under real Airflow ------------------------------------------------------------------------


@pytest.fixture()
def notifying_stand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: str,
                    channels: Channels, request: pytest.FixtureRequest) -> Channels:
    """test_dag_runs' spark-submit stand-in and stands (local heads the chain, pushing to mdp), with every
    channel on; ``request.param``: the metrics the stand-in's training logs, and mdp's approval."""
    from test_dag_runs import FAKE_SPARK_SUBMIT

    metrics, approval = getattr(request, "param", ({"roc_auc": 0.6, "log_loss": 0.5}, "auto"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "spark-submit"
    script.write_text(FAKE_SPARK_SUBMIT.format(python=sys.executable, log=str(tmp_path / "spark-submit.jsonl"),
                                               metrics=repr(metrics)))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    stands = stands_for_tests(tmp_path, mlflow_server, chain_local=True)
    text = stands.read_text().replace("\ndefaults:\n", "\ndefaults:\n" + NOTIFY_BLOCK, 1)
    if approval == "manual":  # mdp wants a person to let versions in: local's push leaves them waiting
        url = "      url: https://jenkins.example.com/job/mlops-deploy/buildWithParameters\n"  # mdp's deploy: first
        text = text.replace(url, url + "      approval: manual\n", 1)
    stands.write_text(text)
    monkeypatch.setenv("MLOPS_STANDS", str(stands))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    return channels


def _model(tmp_path: Path, name: str) -> tuple[Any, Any, Path]:
    """The example under a name of its own (the session's registry keeps other tests' versions), with an extra
    recipient in model.yaml, rendered for the local stand and loaded into Airflow."""
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from helpers import render, resolve

    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE_CONFIGS[0].parent, repo, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    config = repo / "model.yaml"
    config.write_text(config.read_text().replace("name: churn-classifier", f"name: {name}")
                      + "notifications:\n  email: [owner@example.com]\n")
    cfg = resolve(config, "local")
    bag = dagbag(render(config, "local", tmp_path / "dags"))
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    return cfg, bag, config


@pytest.mark.slow
def test_a_failed_gate_in_a_dag_run_is_told_by_mail_webhook_and_slack(tmp_path: Path, airflow_db: None,
                                                                      notifying_stand: Channels) -> None:
    cfg, bag, _ = _model(tmp_path, "notify-gate")
    run = bag.dags[names.dag_id(cfg.name, "local", "train")].test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["quality_gate"] == "failed"  # the notification didn't change the task's outcome
    _, recipients, mail = notifying_stand.smtp.next()
    assert recipients == ["platform@example.com", "owner@example.com"]
    assert mail["Subject"].startswith("[mlops] notify-gate version ") and \
        mail["Subject"].endswith(" on local: failed the quality gate")
    body = _html(mail)
    assert "Failed the quality gate</b>: roc_auc 0.6 is below the minimum 0.75" in body  # verdict and reason first
    assert "Rejected on local: roc_auc 0.6 is below the minimum 0.75" in body  # the story: its verdict first,
    assert "roc_auc 0.6 (threshold ≥ 0.75" in body  # each check against its threshold
    assert f"https://airflow.example.com/dags/{names.dag_id(cfg.name, 'local', 'train')}/runs/" in body
    hook = notifying_stand.webhook()
    assert hook["event"] == names.EVENT_GATE_FAILED and hook["model"] == cfg.name and hook["stand"] == "local"
    assert hook["reason"] == "roc_auc 0.6 is below the minimum 0.75"
    from mlops_module.release import registry  # the same story as the version's MLflow description
    description = registry.model_version(registry.client(cfg.stand.mlflow_tracking_uri), cfg.name,
                                         hook["version"]).description
    assert hook["story"].splitlines()[0] == description.splitlines()[0].replace("**", "") == \
        "Rejected on local: roc_auc 0.6 is below the minimum 0.75"
    assert hook["mlflow_version_url"] == f"https://mlflow.example.com/#/models/{cfg.name}/versions/{hook['version']}"
    assert hook["airflow_run_url"].endswith("/runs/" + quote(run.run_id, safe=""))
    assert "failed the quality gate" in notifying_stand.slack()["text"]


@pytest.mark.slow
@pytest.mark.parametrize("notifying_stand", [({"roc_auc": 0.8, "log_loss": 0.5}, "manual")], indirect=True)
def test_a_version_waiting_for_approval_is_told(tmp_path: Path, airflow_db: None, notifying_stand: Channels) -> None:
    from mlops_module.building.artifacts import artifacts
    from mlops_module.building.environment import pack
    from mlops_module.storage import sha256_file, storage_of

    cfg, bag, _ = _model(tmp_path, "notify-approval")
    art, store = artifacts(cfg), storage_of(cfg.stand)  # what `mlops package` would have uploaded
    (tmp_path / "empty-env" / "bin").mkdir(parents=True)
    pack(tmp_path / "empty-env", tmp_path / "env.tar.gz")
    store.upload(tmp_path / "env.tar.gz", art.env_object, sha256_file(tmp_path / "env.tar.gz"))
    stub = tmp_path / "stub"
    stub.write_text("artifact")
    for key in (f"{art.code_prefix}/code.zip", f"{art.code_prefix}/src/train.py"):
        store.upload(stub, key, sha256_file(stub))
    run = bag.dags[names.dag_id(cfg.name, "local", "train")].test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["quality_gate"] == "success" and states["promote"] == "success"
    hook = notifying_stand.webhook()
    assert hook["event"] == names.EVENT_APPROVAL_WAITING and hook["verdict"] == "waits for approval on mdp"
    assert f"mlops approve --stand mdp --version {hook['version']}" in hook["story"]
    assert hook["story"].startswith("Champion on local (alias local): ")  # the version's story leads
    assert hook["reason"] == "pushed to mdp, which wants a manual approval"
    _, recipients, mail = notifying_stand.smtp.next()
    assert recipients == ["platform@example.com", "owner@example.com"]
    assert mail["Subject"].endswith("on local: waits for approval on mdp")
    assert "Waits for approval on mdp</b>: pushed to mdp" in _html(mail)
    assert "waits for approval on mdp" in notifying_stand.slack()["text"]


@pytest.mark.slow
def test_a_failed_spark_job_is_told(tmp_path: Path, airflow_db: None, notifying_stand: Channels) -> None:
    (tmp_path / "bin" / "spark-submit").write_text(f"#!{sys.executable}\nimport sys\nprint('boom')\nsys.exit(3)\n")
    cfg, bag, _ = _model(tmp_path, "notify-job")
    run = bag.dags[names.dag_id(cfg.name, "local", "inference")].test()
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == \
           {"check_interval": "success", "infer": "failed", "check_output": "upstream_failed"}
    hook = notifying_stand.webhook()
    assert hook["event"] == names.EVENT_JOB_FAILED and hook["verdict"] == "the infer job failed"
    assert hook["reason"] != "the task failed; its log says why"  # the exception Airflow handed the callback
    assert notifying_stand.smtp.next()[2]["Subject"] == f"[mlops] {cfg.name} on local: the infer job failed"


@pytest.mark.slow
def test_a_retrain_decided_by_monitoring_is_told(tmp_path: Path, airflow_db: None, notifying_stand: Channels,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from test_dag_runs import MONITOR_CONF, _drift_result, _set_state, _train_runs

    monkeypatch.setenv("MLOPS_FAKE_DRIFT", str(_drift_result(tmp_path / "drift.json", psi=0.4)))
    cfg, bag, _ = _model(tmp_path, "notify-retrain")
    train_id = names.dag_id(cfg.name, "local", "train")
    run = bag.dags[names.dag_id(cfg.name, "local", "monitoring")].test(run_conf=MONITOR_CONF)
    try:
        assert {ti.task_id: ti.state for ti in run.get_task_instances()}["trigger_train"] == "success"
        hook = notifying_stand.webhook()
        assert hook["event"] == names.EVENT_RETRAIN_DECIDED and hook["verdict"] == "retraining decided"
        assert hook["reason"].startswith("drift: 3 of 3 features drifted (")
        assert hook["details"]["Window"] == "2025-02-14T00:00:00+00:00 to 2025-05-15T00:00:00+00:00"
        assert notifying_stand.smtp.next()[2]["Subject"] == f"[mlops] {cfg.name} on local: retraining decided"
    finally:  # the session's Airflow database is shared: leave no train run in flight for other tests
        for run_id, _, _ in _train_runs(train_id):
            _set_state(train_id, run_id, "success")


def test_a_failed_check_in_the_acceptance_dag_is_an_acceptance_failure(tmp_path: Path, channels: Channels,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The Spark tasks' callback, given what Airflow hands it after a check's last try in a stand's acceptance
    DAG (the callback itself runs under Airflow in test_a_failed_spark_job_is_told)."""
    import types

    from helpers import render

    monkeypatch.setenv("MLOPS_STANDS", str(_stands(tmp_path)))
    bag = dagbag(render(EXAMPLE_CONFIGS[0], "int", tmp_path / "dags"))
    accept = bag.dags[names.dag_id("churn-classifier", "int", names.ACCEPT)]
    context = {"dag": accept, "ti": types.SimpleNamespace(task_id="smoke", try_number=2), "run_id": "push__mdp__4",
               "dag_run": types.SimpleNamespace(conf={"version": "5", "source_stand": "mdp"}),
               "exception": RuntimeError("the driver ran out of memory")}
    accept.get_task("smoke").on_failure_callback[0](context)  # the DAG file's own callback
    hook = channels.webhook()
    assert hook["event"] == names.EVENT_ACCEPTANCE_FAILED and hook["version"] == "5"
    assert hook["verdict"] == "failed acceptance (the smoke check)"
    assert hook["reason"] == "RuntimeError: the driver ran out of memory"
    assert hook["airflow_run_url"] == f"https://airflow.example.com/dags/{accept.dag_id}/runs/push__mdp__4"
    assert channels.smtp.next()[2]["Subject"] == "[mlops] churn-classifier version 5 on int: failed acceptance " \
                                                 "(the smoke check)"


def test_a_gate_failure_on_a_stand_the_version_was_pushed_to_is_an_acceptance_failure(channels: Channels) -> None:
    from mlops_module.release.gate import evaluate
    from mlops_module.spec.config import MetricThreshold

    result = evaluate((MetricThreshold("roc_auc", 0.75, None, None),), {"roc_auc": 0.7})
    notify = _settings().as_dict()
    assert notifications.gate_failed({}, notify, model="churn", stand="int", version="5", result=result,
                                     pushed=True) == ("smtp", "slack", "webhook")
    hook = channels.webhook()
    assert hook["event"] == names.EVENT_ACCEPTANCE_FAILED and hook["verdict"] == "failed acceptance (its quality gate)"
    assert hook["mlflow_version_url"] == "https://mlflow.example.com/#/models/churn/versions/5"


def test_a_story_that_cannot_be_told_never_replaces_the_gate_failure(
        channels: Channels, monkeypatch: pytest.MonkeyPatch) -> None:
    """Telling the gate's story fails: the notification still goes, with the gate's summary; nothing is raised
    (the task then fails with the gate's own error). Without channels nothing is even attempted."""
    from mlops_module.release.gate import evaluate
    from mlops_module.spec.config import MetricThreshold

    result = evaluate((MetricThreshold("roc_auc", 0.75, None, None),), {"roc_auc": 0.7})

    def broken(*_: Any) -> str:
        raise ValueError("a record the story can't read")

    monkeypatch.setattr(notifications, "gate_story", broken)
    assert notifications.gate_failed({}, None, model="churn", stand="mdp", version="5", result=result,
                                     pushed=False) == ()
    assert notifications.gate_failed({}, _settings().as_dict(), model="churn", stand="mdp", version="5",
                                     result=result, pushed=False) == ("smtp", "slack", "webhook")
    hook = channels.webhook()
    assert hook["event"] == names.EVENT_GATE_FAILED and hook["reason"] == result.summary()


@pytest.mark.slow
def test_mlops_rollback_notifies(world: dict[str, Any], channels: Channels, capsys: pytest.CaptureFixture[str]) -> None:
    """The command, as a person runs it: the alias moves back, then the stand's channels are told."""
    from test_promotion import two_promoted

    from mlops_module.cli import main

    stands_file: Path = world["stands_file"]
    stands_file.write_text(stands_file.read_text().replace("defaults:\n", "defaults:\n" + NOTIFY_BLOCK, 1))
    model = world["model"]
    first, second = two_promoted(world)
    assert main(["rollback", str(world["config"]), "--stand", "mdp", "--stands", str(stands_file),
                 "--reason", "bad predictions"]) == 0
    hook = channels.webhook()
    assert hook["event"] == names.EVENT_ROLLBACK and hook["verdict"] == f"rolled back to version {first}"
    assert hook["reason"] == "bad predictions" and f"from version {second} back to {first}" in hook["story"]
    assert channels.smtp.next()[2]["Subject"] == f"[mlops] {model} version {first} on mdp: rolled back to version {first}"
    assert "notification sent over smtp, slack, webhook" in capsys.readouterr().err


def test_doctor_finds_each_channels_connection_or_names_the_missing_one(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_module.platform.doctor import doctor

    stand = load_stands(_stands(tmp_path)).get("local")
    for conn_id in ("MLOPS_SMTP", "MLOPS_SLACK"):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id}", json.dumps({"conn_type": "generic", "host": "127.0.0.1"}))
    monkeypatch.delenv("AIRFLOW_CONN_MLOPS_HOOK", raising=False)
    checks = {c.name: c for c in doctor(stand, timeout=1).checks}
    assert checks["notifications"].status == "FAILED"
    assert "webhook: Airflow connection 'mlops_hook' not found" in checks["notifications"].detail
    assert "smtp" not in checks["notifications"].detail
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_HOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1"}))
    checks = {c.name: c for c in doctor(stand, timeout=1).checks}
    assert checks["notifications"].status == "ok"
    assert checks["notifications"].detail == ("connections found: mlops_smtp (smtp), mlops_slack (slack), "
                                              "mlops_hook (webhook)")
    assert "notifications" not in {c.name for c in doctor(load_stands().get("local"), timeout=1).checks}
