"""Starting a DAG run on a stand's Airflow 3 through its public REST API (``/api/v2``).

The deploy job runs far from the stand's Airflow (a CI agent, a laptop): the REST API is the one door it
has, so this talks HTTP with the standard library only and needs no Airflow installed. What it does, in
the order a freshly deployed DAG needs it:

1. a JWT from the api-server's token endpoint (``POST /auth/token``, JSON ``username``/``password``: the
   SimpleAuthManager's, and FAB's and Keycloak's too), unless a bearer token is given;
2. ``GET /api/v2/dags/{dag_id}`` until the DAG is known: the dag-processor parses a new DAG file some
   seconds after the deploy wrote it, and the API answers 404 until then;
3. ``PATCH /api/v2/dags/{dag_id}`` with ``is_paused: false`` when it is paused (new DAGs are, by default);
4. ``POST /api/v2/dags/{dag_id}/dagRuns`` with the caller's run id: a second push of the same change asks
   for the same run id and gets 409, reported as ``"exists"``, so one change never starts two runs.

Credentials come from the environment only (:func:`credentials_for`); no message or repr shows a secret.
Requests that fail in transit or with a 5xx are sent again a few times (:data:`RETRY_DELAYS`): an
api-server restarting behind its load balancer is back within seconds. A trigger whose first attempt
went through unseen then reports ``"exists"``, which is still one run.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mlops_module.errors import MlopsError
from mlops_module.kinds import Log

TriggerOutcome = Literal["created", "exists"]

# Pauses before the second, third and fourth attempt of a request that failed in transit or with a 5xx.
RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0)
_DETAIL_LIMIT = 500


class AirflowApiError(MlopsError):
    """Airflow's API refused or could not do what was asked; the message names the URL, the HTTP status and
    Airflow's own explanation (its ``detail``)."""


@dataclass(frozen=True)
class Credentials:
    """A bearer token, or a username and password to get one. ``source`` says where they came from (the
    variable names, never the values), for messages; the secrets are left out of ``repr``."""

    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    source: str = ""

    def describe(self) -> str:
        """Which credentials a refusal is about, in words a platform engineer can act on."""
        if self.token:
            return f"the bearer token from {self.source}" if self.source else "the bearer token given"
        if self.username:
            what = f"the username {self.username!r} and its password"
            return f"{what} from {self.source}" if self.source else f"{what} given"
        return f"no credentials ({self.source})" if self.source else "no credentials"


def _variable_prefixes(stand: str) -> list[str]:
    """The stand's own prefix first, then the one every stand falls back to."""
    suffix = re.sub(r"[^A-Z0-9]", "_", stand.upper())
    return [f"MLOPS_AIRFLOW_{suffix}_", "MLOPS_AIRFLOW_"]


def credentials_for(stand: str, environ: Mapping[str, str] = os.environ) -> Credentials:
    """Credentials come from the environment, never from files in the repo: MLOPS_AIRFLOW_<STAND>_TOKEN or
    MLOPS_AIRFLOW_<STAND>_USERNAME/_PASSWORD (stand upper-cased, '-' -> '_'), else the same without the stand
    (MLOPS_AIRFLOW_TOKEN, MLOPS_AIRFLOW_USERNAME, MLOPS_AIRFLOW_PASSWORD), else MLOPS_AIRFLOW_USR/_PSW (what
    Jenkins binds for a username/password credential named MLOPS_AIRFLOW, as the deploy job does).

    Every character of the stand name other than a letter or digit becomes '_' (a variable name can't hold
    it). An empty variable counts as unset (CI systems define masked variables as empty). A username
    without its password, or the reverse, is an error naming the missing variable rather than a silent
    fall-back to the generic pair. Nothing found is not an error here: the request goes without
    credentials and a refusal lists the variables looked for.
    """
    looked_for = []
    for prefix in _variable_prefixes(stand):
        token, user, password = (environ.get(prefix + name) or None for name in ("TOKEN", "USERNAME", "PASSWORD"))
        if token:
            return Credentials(token=token, source=prefix + "TOKEN")
        if user and password:
            return Credentials(username=user, password=password, source=f"{prefix}USERNAME/{prefix}PASSWORD")
        if user or password:
            present, missing = (("USERNAME", "PASSWORD") if user else ("PASSWORD", "USERNAME"))
            raise AirflowApiError(f"{prefix}{present} is set but {prefix}{missing} is not: set both, "
                                  f"or {prefix}TOKEN instead")
        looked_for += [prefix + "TOKEN", f"{prefix}USERNAME/{prefix}PASSWORD"]
    # Jenkins' credentials() binding of a username/password credential as MLOPS_AIRFLOW (the deploy job's)
    user, password = environ.get("MLOPS_AIRFLOW_USR") or None, environ.get("MLOPS_AIRFLOW_PSW") or None
    if user and password:
        return Credentials(username=user, password=password, source="MLOPS_AIRFLOW_USR/MLOPS_AIRFLOW_PSW")
    looked_for.append("MLOPS_AIRFLOW_USR/MLOPS_AIRFLOW_PSW")
    return Credentials(source="none of " + ", ".join(looked_for) + " is set")


@dataclass(frozen=True)
class _Response:
    status: int
    url: str
    body: Any  # the parsed JSON; None when the body was empty or not JSON
    text: str

    def detail(self) -> str:
        """Airflow's explanation: FastAPI's ``detail`` (a string, a validation error list or a dict)."""
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        if isinstance(detail, list):  # 422: [{"loc": ["body", "logical_date"], "msg": "Field required"}, ...]
            detail = "; ".join(f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg')}"
                               if isinstance(item, dict) else str(item) for item in detail)
        elif isinstance(detail, dict):  # a database error, for instance: {"reason": ..., "message": ...}
            detail = ": ".join(str(detail[key]) for key in ("reason", "message") if key in detail) or json.dumps(detail)
        text = str(detail) if detail else self.text.strip() or "(empty response)"
        return text if len(text) <= _DETAIL_LIMIT else text[:_DETAIL_LIMIT] + "..."

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.detail()}"


class _Api:
    """JSON over HTTP to one api-server, with retries of what may pass (5xx, connection trouble)."""

    def __init__(self, api_url: str, timeout: float, log: Log, retry_delays: tuple[float, ...] | None = None) -> None:
        self.base = api_url.rstrip("/")
        self.timeout = timeout
        self.log = log
        self.token: str | None = None
        self.retry_delays = retry_delays  # None: RETRY_DELAYS, read when a request is sent

    def url(self, path: str) -> str:
        return self.base + path

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> _Response:
        """The response, whatever its status; AirflowApiError only when no response came, after retries."""
        url = self.url(path)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", "User-Agent": "mlops-module"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        delays = RETRY_DELAYS if self.retry_delays is None else self.retry_delays
        for attempt in range(len(delays) + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    response = _response(answer.status, url, answer.read())
            except urllib.error.HTTPError as error:
                try:
                    response = _response(error.code, url, error.read())
                except OSError:  # the error body itself broke off
                    response = _response(error.code, url, b"")
                finally:
                    error.close()
            except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out, DNS
                reason = getattr(error, "reason", None) or error
                if attempt == len(delays):
                    raise AirflowApiError(f"could not reach Airflow at {url} ({method}): {reason}; is the api-server "
                                          f"up, and is {self.base} its base URL?") from error
                self._retrying(method, url, str(reason), delays[attempt])
                continue
            if response.status < 500 or attempt == len(delays):
                return response
            self._retrying(method, url, str(response), delays[attempt])
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    def _retrying(self, method: str, url: str, problem: str, delay: float) -> None:
        self.log(f"{method} {url}: {problem}; trying again in {delay:g} s")
        time.sleep(delay)


def _response(status: int, url: str, raw: bytes) -> _Response:
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
    return _Response(status, url, body, text)


def _refused(response: _Response, method: str, credentials: Credentials, doing: str) -> AirflowApiError:
    """401/403: which credentials Airflow turned down, and what they were needed for."""
    hint = ("they are missing or wrong (401)" if response.status == 401
            else "the token is invalid or expired, or the user's role may not do this (403)")
    return AirflowApiError(f"Airflow refused to {doing} with {credentials.describe()}: {hint}. "
                           f"{method} {response.url} -> {response}")


def _failed(response: _Response, method: str, doing: str) -> AirflowApiError:
    return AirflowApiError(f"could not {doing}: {method} {response.url} -> {response}")


def _check(response: _Response, method: str, credentials: Credentials, doing: str) -> None:
    if response.status in (401, 403):
        raise _refused(response, method, credentials, doing)
    if not 200 <= response.status < 300:
        raise _failed(response, method, doing)


def _login(api: _Api, credentials: Credentials) -> None:
    """A JWT for the requests that follow: the given bearer token, or one from the token endpoint."""
    if credentials.token:
        api.token = credentials.token
        return
    if not (credentials.username and credentials.password):
        return  # no credentials: Airflow's 401 will say so, with the variables looked for
    response = api.call("POST", "/auth/token", {"username": credentials.username, "password": credentials.password})
    if response.status == 404:
        raise AirflowApiError(f"no token endpoint at {response.url} (HTTP 404): is {api.base} the base URL of an "
                              "Airflow 3 api-server? (Airflow 2 has no /auth/token)")
    _check(response, "POST", credentials, "issue a token")
    token = response.body.get("access_token") if isinstance(response.body, dict) else None
    if not isinstance(token, str) or not token:
        raise AirflowApiError(f"POST {response.url} answered HTTP {response.status} without an access_token")
    api.token = token


def _dag_path(dag_id: str) -> str:
    return "/api/v2/dags/" + urllib.parse.quote(dag_id, safe="")


def _wait_for_dag(api: _Api, dag_id: str, credentials: Credentials, wait_seconds: float,
                  poll_seconds: float) -> dict[str, Any]:
    """The DAG as the API describes it, once the dag-processor has parsed its file.

    Waits while the API doesn't know it (404), and while it is stale or has import errors: after a
    redeploy those describe the previous file until the new one is parsed.
    """
    path = _dag_path(dag_id)
    started = time.monotonic()
    deadline = started + wait_seconds
    checked_api = False
    while True:
        response = api.call("GET", path)
        if response.status in (401, 403):
            raise _refused(response, "GET", credentials, f"read DAG {dag_id}")
        dag = response.body if response.status == 200 and isinstance(response.body, dict) else None
        if dag is not None and not dag.get("is_stale") and not dag.get("has_import_errors"):
            return dag
        if dag is not None:
            why = "is stale (its file was not seen in the last parse)" if dag.get("is_stale") else "has import errors"
        elif response.status == 404:
            if not checked_api:  # a 404 from something that is no Airflow 3 API would never end: say so now
                _check_is_airflow3(api)
                checked_api = True
            why = "is not known yet (HTTP 404)"
        else:
            raise _failed(response, "GET", f"read DAG {dag_id}")
        waited = time.monotonic() - started
        if time.monotonic() >= deadline:
            raise AirflowApiError(
                f"DAG {dag_id} {why} at {api.url(path)} after {waited:.0f} s of waiting: was its file deployed to "
                "the DAG folder this Airflow's dag-processor reads, and does it parse? (Airflow's import errors: "
                f"GET {api.url('/api/v2/importErrors')}, or the UI)")
        api.log(f"DAG {dag_id} {why} at {api.base}: waiting for the dag-processor to parse it "
                f"({waited:.0f} s of {wait_seconds:g} s)")
        time.sleep(max(0.0, min(poll_seconds, deadline - time.monotonic())))


def _check_is_airflow3(api: _Api) -> None:
    """``/api/v2/version`` needs no credentials; anything but Airflow's answer means a wrong ``api_url``."""
    response = api.call("GET", "/api/v2/version")
    if not (response.status == 200 and isinstance(response.body, dict) and "version" in response.body):
        raise AirflowApiError(f"{api.base} does not look like an Airflow 3 api-server: GET {response.url} -> "
                              f"{response}")


@dataclass(frozen=True)
class ServerState:
    """What an api-server says about itself without credentials: its version and its components' health."""

    version: str
    health: Mapping[str, str | None]  # metadatabase, scheduler, triggerer, dag_processor -> "healthy", ...


def server_state(api_url: str, *, timeout: float = 5.0) -> ServerState:
    """``GET /api/v2/version`` and ``GET /api/v2/monitor/health`` (neither needs credentials), each asked once:
    for a preflight (``mlops doctor``), which must say quickly that nothing answers rather than retry.
    AirflowApiError when nothing answers or the answer is not an Airflow 3 api-server's."""
    api = _Api(api_url, timeout, lambda line: None, retry_delays=())
    response = api.call("GET", "/api/v2/version")
    version = response.body.get("version") if response.status == 200 and isinstance(response.body, dict) else None
    if not isinstance(version, str):
        raise AirflowApiError(f"{api.base} does not look like an Airflow 3 api-server: GET {response.url} -> "
                              f"{response}")
    health: dict[str, str | None] = {}
    response = api.call("GET", "/api/v2/monitor/health")
    if response.status == 200 and isinstance(response.body, dict):
        health = {name: part.get("status") for name, part in response.body.items() if isinstance(part, dict)}
    return ServerState(version, health)


def trigger_dag_run(api_url: str, dag_id: str, run_id: str, conf: dict[str, Any], *, credentials: Credentials,
                    unpause: bool = True, wait_seconds: float = 300.0, poll_seconds: float = 5.0,
                    log: Log | None = None, timeout: float = 30.0) -> TriggerOutcome:
    """Start run ``run_id`` of ``dag_id`` with ``conf``: ``"created"``, or ``"exists"`` when Airflow already
    has a run with that id (the same change pushed twice starts one run).

    ``api_url`` is the api-server's base URL (what the UI is served at), with or without a trailing '/'.
    The DAG may still be unknown (its file just deployed): waits up to ``wait_seconds``, a line to ``log``
    each ``poll_seconds``. ``unpause``: a paused DAG is unpaused first, else its run would only queue.
    ``timeout`` bounds each HTTP request. The run gets no logical date, as a manual trigger from the UI.
    """
    api = _Api(api_url, timeout, log or (lambda line: None))
    _login(api, credentials)
    dag = _wait_for_dag(api, dag_id, credentials, wait_seconds, poll_seconds)
    path = _dag_path(dag_id)
    if unpause and dag.get("is_paused"):
        response = api.call("PATCH", path, {"is_paused": False})
        _check(response, "PATCH", credentials, f"unpause DAG {dag_id}")
        api.log(f"DAG {dag_id} was paused: unpaused it")
    runs = path + "/dagRuns"
    # Airflow 3's TriggerDAGRunPostBody requires logical_date (null is allowed, leaving it out is a 422).
    response = api.call("POST", runs, {"dag_run_id": run_id, "logical_date": None, "conf": conf})
    if 200 <= response.status < 300:
        api.log(f"started run {run_id} of DAG {dag_id} at {api.base}")
        return "created"
    if response.status == 409:  # a unique constraint: the run id; make sure that is the one
        existing = api.call("GET", runs + "/" + urllib.parse.quote(run_id, safe=""))
        if existing.status == 200 and isinstance(existing.body, dict):
            state = existing.body.get("state")
            if existing.body.get("conf") != conf:  # another push under the same id: say so, don't pass it off
                raise AirflowApiError(f"run {run_id} of DAG {dag_id} already exists at {api.base} (state {state}) "
                                      f"with another conf ({json.dumps(existing.body.get('conf'))}, not "
                                      f"{json.dumps(conf)}): start the run by hand under a new id, or delete "
                                      "the old one")
            api.log(f"run {run_id} of DAG {dag_id} already exists at {api.base} (state {state}): not starting "
                    "another")
            return "exists"
    doing = f"start run {run_id} of DAG {dag_id}"
    if response.status in (401, 403):
        raise _refused(response, "POST", credentials, doing)
    raise _failed(response, "POST", doing)
