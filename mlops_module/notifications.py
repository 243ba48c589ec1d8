"""Notifications: people are told when a gate fails, a version waits for approval, a retrain is decided, a stand
rolls back, a Spark job fails or a pushed version fails its acceptance, instead of finding out by looking.

Sent through Airflow's own notifier interface (``BaseNotifier``, called with a context) by the providers that
implement it: ``SmtpNotifier``, ``SlackWebhookNotifier`` and ``HttpNotifier``, each on an Airflow connection the
stands file names. Channels are the platform's (the stands file), extra recipients and an event filter the
model's (``model.yaml``); a rendered DAG file carries the resolved settings as a literal (``NOTIFY``), so its
tasks and callbacks need neither file at run time. Nothing configured: nothing is sent. A channel that can't send
is logged and skipped: a notification never fails a task or hides the error it reports. Provider classes are
imported only when something is sent, never when a DAG file is parsed.

The body's text comes from one place, :attr:`Message.story`, which the caller builds (see :func:`gate_story`).
"""

from __future__ import annotations

import dataclasses
import html
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mlops_module import names
from mlops_module.kinds import Log
from mlops_module.spec.stands import SmtpChannel, WebhookChannel

if TYPE_CHECKING:
    from mlops_module.release.gate import GateResult
    from mlops_module.spec.config import ModelConfig

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30  # Slack and webhook calls; the SMTP connection's extra `timeout` rules e-mail


@dataclass(frozen=True)
class NotifySettings:
    """What one model on one stand sends, on which channels, with which links: the stand's channels, the
    stand's recipients and the model's, the events both choose."""

    smtp: SmtpChannel | None = None
    slack_conn_id: str | None = None
    webhook: WebhookChannel | None = None
    events: tuple[str, ...] = names.EVENTS
    airflow_url: str | None = None
    mlflow_url: str | None = None

    @property
    def enabled(self) -> bool:
        return bool((self.smtp and self.smtp.to) or self.slack_conn_id or self.webhook)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the DAG file's literal (``NOTIFY``); :meth:`from_dict` reads it back."""
        return {
            names.CHANNEL_SMTP: {"conn_id": self.smtp.conn_id, "to": list(self.smtp.to), "from": self.smtp.sender}
            if self.smtp else None,
            names.CHANNEL_SLACK: {"conn_id": self.slack_conn_id} if self.slack_conn_id else None,
            names.CHANNEL_WEBHOOK: {"conn_id": self.webhook.conn_id, "endpoint": self.webhook.endpoint}
            if self.webhook else None,
            "events": list(self.events),
            "airflow_url": self.airflow_url,
            "mlflow_url": self.mlflow_url,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> NotifySettings:
        """The settings a DAG file was rendered with (None, from an older DAG file: nothing is sent)."""
        if not data:
            return cls(events=())
        smtp, slack, webhook = (data.get(c) for c in names.CHANNELS)
        return cls(
            smtp=SmtpChannel(smtp["conn_id"], tuple(smtp.get("to") or ()), smtp.get("from")) if smtp else None,
            slack_conn_id=slack["conn_id"] if slack else None,
            webhook=WebhookChannel(webhook["conn_id"], webhook["endpoint"]) if webhook else None,
            events=tuple(data.get("events") or ()),
            airflow_url=data.get("airflow_url"),
            mlflow_url=data.get("mlflow_url"),
        )


def settings(cfg: ModelConfig) -> NotifySettings:
    """The stand's channels with the model's recipients added and its events (if it names any) kept."""
    stand, model = cfg.stand.notifications, cfg.notify
    smtp = stand.smtp
    if smtp is not None:
        smtp = SmtpChannel(smtp.conn_id, tuple(dict.fromkeys(smtp.to + model.email)), smtp.sender)
    events = stand.events if model.events is None else tuple(e for e in stand.events if e in model.events)
    return NotifySettings(smtp, stand.slack_conn_id, stand.webhook, events, stand.airflow_url, stand.mlflow_url)


@dataclass(frozen=True)
class Message:
    """One notification: the verdict and its reason first, then the story, then where to look."""

    event: str
    model: str
    stand: str
    verdict: str  # what happened, in a few words: "failed the quality gate"
    reason: str
    story: str = ""  # the plain-words story of the version (the seam: the caller builds it)
    version: str | None = None
    run_url: str | None = None
    mlflow_url: str | None = None
    details: tuple[tuple[str, str], ...] = ()  # more lines of "key: value"

    @property
    def subject(self) -> str:
        version = f" version {self.version}" if self.version else ""
        return f"[mlops] {self.model}{version} on {self.stand}: {self.verdict}"

    def facts(self) -> list[tuple[str, str]]:
        """The lines under the story: what, where, and the links."""
        rows = [("Model", self.model), ("Version", self.version or ""), ("Stand", self.stand),
                ("Event", self.event), *self.details, ("Airflow run", self.run_url or ""),
                ("MLflow version", self.mlflow_url or "")]
        return [(k, v) for k, v in rows if v]

    @property
    def text(self) -> str:
        head = f"{self.verdict[:1].upper()}{self.verdict[1:]}: {self.reason}"
        parts = [head, self.story.strip(), "\n".join(f"{k}: {v}" for k, v in self.facts())]
        return "\n\n".join(p for p in parts if p)

    @property
    def html(self) -> str:
        e = html.escape
        rows = "".join(f"<li>{e(k)}: " + (f'<a href="{e(v)}">{e(v)}</a>' if v.startswith(("http://", "https://"))
                                          else e(v)) + "</li>" for k, v in self.facts())
        story = f"<pre>{e(self.story.strip())}</pre>" if self.story.strip() else ""
        return (f"<p><b>{e(self.verdict[:1].upper() + self.verdict[1:])}</b>: {e(self.reason)}</p>"
                f"{story}<ul>{rows}</ul>")

    @property
    def slack_text(self) -> str:
        """Slack's mrkdwn: its three control characters escaped, the subject in bold."""
        def esc(text: str) -> str:
            return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

        return f"*{esc(self.subject)}*\n{esc(self.text)}"

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {"event": self.event, "model": self.model, "stand": self.stand, "version": self.version,
                "verdict": self.verdict, "reason": self.reason, "subject": self.subject, "story": self.story.strip(),
                "text": self.text, "airflow_run_url": self.run_url, "mlflow_version_url": self.mlflow_url,
                "details": dict(self.details)}


def mlflow_version_url(base: str | None, model: str, version: str | None) -> str | None:
    """The version's page in MLflow's UI."""
    if not base or not version:
        return None
    return f"{base}/#/models/{quote(model, safe='')}/versions/{quote(str(version), safe='')}"


def airflow_run_url(base: str | None, context: Mapping[str, Any] | None) -> str | None:
    """The run's page in the stand's Airflow UI when the stands file names it, else the task's log (``ti.log_url``,
    from Airflow's [api] base_url)."""
    if not context:
        return None
    dag, run_id = context.get("dag"), context.get("run_id")
    if base and dag is not None and run_id:
        return f"{base}/dags/{quote(dag.dag_id, safe='')}/runs/{quote(str(run_id), safe='')}"
    try:
        url = context["ti"].log_url
    except Exception:  # no task instance (a DAG-level context), or no configured base URL
        return None
    return str(url) if url else None


def _jinja_safe(value: Any) -> Any:
    """Text a notifier's template rendering gives back unchanged (BaseNotifier renders its fields with Jinja)."""
    from mlops_module.building.literals import airflow_escape

    if isinstance(value, str):
        return airflow_escape(value)
    if isinstance(value, list | tuple):
        return [_jinja_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _jinja_safe(v) for k, v in value.items()}
    return value


def notifiers(settings: NotifySettings, message: Message) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Each channel's name and a builder of its Airflow notifier (built when called: a missing provider is that
    channel's error, not the others')."""
    s = _jinja_safe
    if settings.smtp is not None and settings.smtp.to:
        smtp = settings.smtp

        def build_smtp() -> Any:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            return SmtpNotifier(to=s(list(smtp.to)), from_email=smtp.sender, subject=s(message.subject),
                                html_content=s(message.html), smtp_conn_id=smtp.conn_id)

        yield names.CHANNEL_SMTP, build_smtp
    if settings.slack_conn_id:
        conn_id = settings.slack_conn_id

        def build_slack() -> Any:
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

            return SlackWebhookNotifier(slack_webhook_conn_id=conn_id, text=s(message.slack_text),
                                        timeout=TIMEOUT_SECONDS)

        yield names.CHANNEL_SLACK, build_slack
    if settings.webhook is not None:
        webhook = settings.webhook

        def build_webhook() -> Any:
            from airflow.providers.http.notifications.http import HttpNotifier

            return HttpNotifier(http_conn_id=webhook.conn_id, endpoint=s(webhook.endpoint), json=s(message.payload()),
                                headers={"Content-Type": "application/json"},
                                extra_options={"timeout": TIMEOUT_SECONDS})

        yield names.CHANNEL_WEBHOOK, build_webhook


def send(settings: NotifySettings, message: Message, context: Mapping[str, Any] | None = None,
         say: Log | None = None) -> tuple[str, ...]:
    """Send ``message`` on every channel configured for its event; the channels that took it. Never raises: what
    could not be sent is logged (and said through ``say``, a command's output), with why."""
    def tell(text: str, warning: bool = False) -> None:
        (log.warning if warning else log.info)("%s", text)
        if say is not None:
            say(text)

    if message.event not in settings.events or not settings.enabled:
        why = "no channel is configured" if not settings.enabled else f"{message.event} is not among the events sent"
        tell(f"notification not sent ({why}): {message.subject}")
        return ()
    sent = []
    for channel, build in notifiers(settings, message):
        try:
            notifier = build()
            notifier(dict(context or {}))  # BaseNotifier.__call__: renders its fields, then notify()
        except Exception as exc:  # a notification never fails what it reports on
            tell(f"notification over {channel} not sent: {type(exc).__name__}: {exc}", warning=True)
        else:
            sent.append(channel)
    if sent:
        tell(f"notification sent over {', '.join(sent)}: {message.subject}")
    return tuple(sent)


def notify_task(context: Mapping[str, Any], notify: Mapping[str, Any] | None, message: Message) -> tuple[str, ...]:
    """Send from a running task or callback: the DAG file's settings, links to this run and the version's page."""
    try:
        cfg = NotifySettings.from_dict(notify)
        message = dataclasses.replace(
            message, run_url=message.run_url or airflow_run_url(cfg.airflow_url, context),
            mlflow_url=message.mlflow_url or mlflow_version_url(cfg.mlflow_url, message.model, message.version))
        return send(cfg, message, context)
    except Exception:  # a malformed NOTIFY literal, say: logged, and the task goes on as it would have
        log.exception("notification not sent: %s", message.subject)
        return ()


def gate_story(model: str, version: str, stand: str, result: GateResult) -> str:
    """The story of one gate's result (release/story.py: the same words as the MLflow description), for when the
    version's whole story can't be read from the registry."""
    from mlops_module.release import story

    return story.gate_story(model, version, stand, result.as_dict()).text


# --- the events, as the toolkit's tasks, callbacks and commands send them ----------------------------------------


def gate_failed(context: Mapping[str, Any], notify: Mapping[str, Any] | None, *, model: str, stand: str,
                version: str, result: GateResult, pushed: bool, story: str | None = None) -> tuple[str, ...]:
    """The gate refused the candidate: on the stand that trains, a gate failure; on a stand it was pushed to, a
    failed acceptance. ``story``: the version's story (default: the gate's own, :func:`gate_story`)."""
    if not notify:
        return ()
    event = names.EVENT_ACCEPTANCE_FAILED if pushed else names.EVENT_GATE_FAILED
    verdict = "failed acceptance (its quality gate)" if pushed else "failed the quality gate"
    try:  # the story's words ("roc_auc 0.61 is below…"); telling it must never replace the gate's own failure
        own = gate_story(model, version, stand, result)
        reason = own.splitlines()[0].partition(": ")[2] or result.summary()
    except Exception:
        log.exception("the gate's story could not be told: the notification says the gate's summary")
        own = reason = result.summary()
    return notify_task(context, notify, Message(event, model, stand, verdict, reason, story=story or own,
                                                version=version))


def approval_waiting(context: Mapping[str, Any], notify: Mapping[str, Any] | None, *, model: str, stand: str,
                     version: str, where: str, reason: str, story: str | None = None) -> tuple[str, ...]:
    """A version passed and waits for a person: ``where`` is the stand whose approval it waits for."""
    command = f"mlops approve --stand {where} --version {version}"
    told = f"It passed its quality gate on {stand}. `{command}` lets it in; until then the current version stays."
    return notify_task(context, notify, Message(
        names.EVENT_APPROVAL_WAITING, model, stand, f"waits for approval on {where}", reason,
        story=f"{story.strip()}\n\n{told}" if story else told, version=version,
        details=(("Approve with", command),)))


def retrain_decided(context: Mapping[str, Any], notify: Mapping[str, Any] | None, *, model: str, stand: str,
                    reason: str, window: str, story: str | None = None) -> tuple[str, ...]:
    """Monitoring decided to retrain (the train DAG is triggered with ``window``)."""
    return notify_task(context, notify, Message(
        names.EVENT_RETRAIN_DECIDED, model, stand, "retraining decided", reason,
        story=story or f"Monitoring decided to retrain {model} on {stand}: {reason}. The train DAG runs on {window}.",
        details=(("Window", window),)))


def spark_job_failed(context: Mapping[str, Any], *, model: str, stand: str,
                     notify: Mapping[str, Any] | None) -> None:
    """The Spark tasks' ``on_failure_callback`` (after the last try): a job failed, or in the acceptance DAG a
    pushed version's check did. Returns nothing and raises nothing: Airflow logs a callback's errors, and this
    one has none to give."""
    try:
        ti, dag = context.get("ti"), context.get("dag")
        task_id = getattr(ti, "task_id", "?")
        dag_id = getattr(dag, "dag_id", "?")
        accept = dag_id == names.dag_id(model, stand, names.ACCEPT)
        conf = dict(getattr(context.get("dag_run"), "conf", None) or {})
        version = str(conf["version"]) if accept and conf.get("version") else None
        error = context.get("exception")
        reason = f"{type(error).__name__}: {error}" if error else "the task failed; its log says why"
        event = names.EVENT_ACCEPTANCE_FAILED if accept else names.EVENT_JOB_FAILED
        verdict = f"failed acceptance (the {task_id} check)" if accept else f"the {task_id} job failed"
        story = (f"Airflow task {task_id} of {dag_id}, run {context.get('run_id')}, failed on its last try "
                 f"({getattr(ti, 'try_number', '?')}); its log has the Spark job's output.")
        notify_task(context, notify, Message(event, model, stand, verdict, reason, story=story, version=version))
    except Exception:
        log.exception("notification of a failed Spark task not sent")


def rollback_done(cfg: ModelConfig, event: Mapping[str, Any], say: Log | None = None,
                  story: str | None = None) -> tuple[str, ...]:
    """``mlops rollback`` moved an alias back (outside Airflow: the connections come from AIRFLOW_CONN_* or the
    secrets backend the machine's Airflow config names; none there: said, and nothing sent)."""
    try:
        cfg_notify = settings(cfg)
        to = str(event.get("to_version"))
        message = Message(names.EVENT_ROLLBACK, cfg.name, cfg.stand.name,
                          f"rolled back to version {to}", str(event.get("reason") or "rollback"),
                          story="\n\n".join(part for part in (
                              f"The {cfg.stand.name} alias of {cfg.name} moved from version "
                              f"{event.get('from_version') or '(none)'} back to {to}.", (story or "").strip()) if part),
                          version=to, mlflow_url=mlflow_version_url(cfg_notify.mlflow_url, cfg.name, to))
        return send(cfg_notify, message, None, say)
    except Exception as exc:
        log.exception("notification of a rollback not sent")
        if say is not None:
            say(f"notification not sent: {type(exc).__name__}: {exc}")
        return ()
