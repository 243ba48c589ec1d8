"""``mlops doctor``: a preflight of one stand, from where it runs, before the first job finds out the hard way.

A stand needs its storage (writable), its MLflow (an MLflow 3 server that proxies artifacts), its DAG location
(writable), its Airflow API where one is configured and, on a Kubernetes stand, a cluster that serves the
SparkApplication CRD, the stand's namespace and Spark driver service account, and the permissions the Airflow
identity uses; where the stand sends notifications, each channel's provider and Airflow connection. Each check is
one line: ``ok``, ``FAILED`` (what is wrong and what to do) or ``not checked`` (why:
no cluster configuration, or something it depends on failed). Every request has a short timeout, so a dead
endpoint costs seconds, not minutes; probes are written below :data:`~mlops_module.names.DOCTOR_PROBES` and
deleted at once. Nothing else is written: the other checks only read.

Run it where the work runs: on a Jenkins agent for storage, the DAG location and the Airflow API (what
``mlops package`` and ``mlops deploy`` need), on an Airflow worker with its Kubernetes configuration for the
cluster checks (the permissions are the identity's whose credentials it finds).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlops_module.names import CHANNEL_SLACK, CHANNEL_SMTP, CHANNEL_WEBHOOK, DOCTOR_PROBES
from mlops_module.platform import rbac

if TYPE_CHECKING:
    from mlops_module.spec.stands import Stand
    from mlops_module.storage import Storage

Status = Literal["ok", "FAILED", "not checked"]

# One access the Airflow identity needs in the stand's namespace: (API group, resource, subresource or "", verb),
# as a SelfSubjectAccessReview asks it; every verb of every rule `mlops platform render` grants (platform.rbac).
Permission = tuple[str, str, str, str]
AIRFLOW_PERMISSIONS: tuple[Permission, ...] = tuple(
    (rule.api_group, rule.resource, rule.subresource or "", verb) for rule in rbac.AIRFLOW_PERMISSIONS
    for verb in rule.verbs)

SPARK_GROUP, SPARK_VERSION, SPARK_PLURAL = rbac.SPARK_OPERATOR_GROUP, "v1beta2", "sparkapplications"
MLFLOW_MAJOR = 3
AIRFLOW_MAJOR = 3
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, how it went, and the detail a platform engineer acts on."""

    name: str
    status: Status
    detail: str

    def __str__(self) -> str:
        return f"{self.name}: {self.status}: {self.detail}"


@dataclass(frozen=True)
class Report:
    stand: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Nothing failed ("not checked" is no failure: it says why it could not look)."""
        return all(check.status != "FAILED" for check in self.checks)

    def summary(self) -> str:
        counts = {status: sum(c.status == status for c in self.checks) for status in ("ok", "FAILED", "not checked")}
        return f"stand {self.stand}: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n)

    def as_dict(self) -> dict[str, Any]:
        return {"stand": self.stand, "ok": self.ok,
                "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks]}


class _Failed(Exception):
    """The check found something wrong; the message says what and what to do."""


class _NotChecked(Exception):
    """The check could not look; the message says why."""


class _Run:
    """Runs checks in turn, reporting each one as it completes; a check's unexpected error is its failure."""

    def __init__(self, on_check: Callable[[Check], None]) -> None:
        self.on_check = on_check
        self.checks: list[Check] = []

    def check(self, name: str, fn: Callable[[], str]) -> Check:
        try:
            result = Check(name, "ok", fn())
        except _NotChecked as why:
            result = Check(name, "not checked", str(why))
        except _Failed as what:
            result = Check(name, "FAILED", str(what))
        except Exception as error:  # a doctor reports every error as its check's failure, never a traceback
            result = Check(name, "FAILED", f"{type(error).__name__}: {error}")
        self.add(result)
        return result

    def not_checked(self, name: str, why: str) -> None:
        self.add(Check(name, "not checked", why))

    def add(self, check: Check) -> None:
        self.checks.append(check)
        self.on_check(check)


def doctor(stand: Stand, *, timeout: float = DEFAULT_TIMEOUT, permissions: Sequence[Permission] = AIRFLOW_PERMISSIONS,
           kubeconfig: str | None = None, on_check: Callable[[Check], None] | None = None) -> Report:
    """Check what ``stand`` needs, from here. ``timeout`` bounds each request (seconds); ``permissions`` are what
    the Airflow identity must be allowed in the stand's namespace; ``kubeconfig`` (else ``KUBECONFIG``, else
    ``~/.kube/config``, else the in-cluster service account) is how to reach the cluster; ``on_check`` hears
    each check as it completes."""
    run = _Run(on_check or (lambda check: None))
    run.check("storage", lambda: _writable(stand.storage_uri, stand.storage_endpoint_url, timeout, "storage.uri"))
    mlflow = run.check("mlflow", lambda: _mlflow_version(stand.mlflow_tracking_uri, timeout,
                                                         started_by_run=stand.backend == "local"))
    if mlflow.status == "ok":
        run.check("mlflow artifacts", lambda: _mlflow_proxy(stand.mlflow_tracking_uri, timeout))
    else:
        run.not_checked("mlflow artifacts", "needs an MLflow 3 server that answers (see mlflow)")
    run.check("dags", lambda: _writable(stand.dags, stand.storage_endpoint_url, timeout, "airflow.dags"))
    run.check("airflow api", lambda: _airflow(stand.api_url, timeout))
    if _channels(stand):  # a stand without notifications has nothing to check here
        run.check("notifications", lambda: _notification_connections(stand))
    if stand.backend == "kubernetes":
        _kubernetes(run, stand, timeout, permissions, kubeconfig)
    return Report(stand.name, tuple(run.checks))


# --- storage and the DAG location ---------------------------------------------------------------------


def _open(uri: str, endpoint_url: str | None, timeout: float) -> Storage:
    """The project's storage layer, with a client that gives up after ``timeout`` instead of retrying."""
    from mlops_module.storage import FileStorage, S3Storage

    if uri.startswith("s3://"):
        import boto3
        from botocore.config import Config

        client = boto3.client("s3", endpoint_url=endpoint_url, config=Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"}))
        return S3Storage(uri, endpoint_url, client=client)
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return FileStorage(f"file://{os.path.abspath(path)}")


def _writable(uri: str, endpoint_url: str | None, timeout: float, key: str) -> str:
    """Write a probe, read it back, delete it: what packaging, deploys and the history need of the location."""
    from mlops_module.storage import FileStorage

    store = _open(uri, endpoint_url, timeout)
    probe = f"{DOCTOR_PROBES}/probe-{uuid.uuid4().hex}"
    body = f"mlops doctor probe, {time.time():.0f}\n".encode()
    try:
        try:
            store.put_bytes(probe, body)
        except Exception as error:
            problem = _storage_problem(error, "write", store.url(probe))
            raise _Failed(f"{problem}; {_storage_hint(error, key)}") from error
        back = store.read_bytes(probe)
        if back != body:
            raise _Failed(f"wrote {store.url(probe)} but read back {'nothing' if back is None else 'other bytes'}: "
                          f"is {key} served by one consistent storage?")
        try:
            store.delete(probe)
        except Exception as error:
            problem = _storage_problem(error, "delete", store.url(probe))
            raise _Failed(f"wrote and read a probe but {problem}: deploys remove files and the promotion lock is "
                          f"released by a delete: allow deleting below {uri}") from error
        if store.read_bytes(probe) is not None:
            raise _Failed(f"deleted {store.url(probe)} but it is still there")
    finally:
        with contextlib.suppress(Exception):
            store.delete(probe)
        if isinstance(store, FileStorage):
            with contextlib.suppress(OSError):
                (store.root / DOCTOR_PROBES).rmdir()  # only when empty: another doctor's probe stays
    return f"{uri} writable (a probe written, read back and deleted)"


def _storage_problem(error: Exception, doing: str, url: str) -> str:
    """The storage layer's message names the object; an OSError from the file backend gets it added."""
    if isinstance(error, OSError) and not hasattr(error, "response"):
        return f"cannot {doing} {url}: {error.strerror or error}"
    return str(error)


def _storage_hint(error: Exception, key: str) -> str:
    """What to do, from the S3 error code or the kind of error behind the storage layer's message."""
    cause: BaseException | None = error
    code = ""
    while cause is not None:
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            break
        cause = cause.__cause__
    if code == "NoSuchBucket":
        return f"the bucket does not exist: create it, or correct {key} in the stands file"
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return ("the credentials found here (AWS_* variables, a profile, an instance or pod role) may not write "
                f"there: grant them read, write and delete below {key}")
    if isinstance(error, PermissionError):
        return f"this user may not write there: grant it write access to {key}'s directory"
    text = str(error)
    if "Unable to locate credentials" in text:
        return "no S3 credentials here: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or a role"
    if "Could not connect" in text or "timed out" in text.lower() or "Connect timeout" in text:
        return ("nothing answers at the S3 endpoint: check storage.endpoint_url (else AWS_ENDPOINT_URL) and the "
                "network path from here")
    return f"check {key} in the stands file and the credentials found here"


# --- MLflow -------------------------------------------------------------------------------------------


def _mlflow_get(uri: str, endpoint: str, timeout: float, params: dict[str, str] | None = None) -> Any:
    """One GET with MLflow's own client settings (MLFLOW_TRACKING_TOKEN / _USERNAME / _PASSWORD, TLS options),
    no retries: a :class:`requests.Response`, or _Failed when nothing answers."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        creds = get_default_host_creds(uri)  # type: ignore[no-untyped-call]
        return http_request(creds, endpoint, "GET", max_retries=0, timeout=timeout, raise_on_status=False,  # type: ignore[no-untyped-call]
                            params=params)
    except MlflowException as error:
        raise _Failed(f"nothing answers at {uri} ({_reason(error)}): is the server up, and is mlflow.tracking_uri "
                      "its address as seen from here?") from error


def _reason(error: BaseException) -> str:
    """The innermost reason of a connection failure ("Connection refused", "timed out"), not the whole chain."""
    import re

    text = str(error)
    found = re.findall(r"\[Errno -?\d+\] ([^'\")]+)|(Read timed out|timed out|Name or service not known)", text)
    return next((a or b for a, b in reversed(found)), text[:200])


def _mlflow_version(uri: str, timeout: float, *, started_by_run: bool = False) -> str:
    """``started_by_run``: a local stand, whose loopback MLflow ``mlops run`` starts when nothing answers."""
    if not uri.startswith(("http://", "https://")):
        raise _NotChecked(f"{uri} is no tracking server (only an http(s) server has a version to ask)")
    import urllib.parse

    from packaging.version import InvalidVersion, Version

    from mlops_module.local.run import LOOPBACK

    try:
        response = _mlflow_get(uri, "/version", timeout)
    except _Failed as down:
        parsed = urllib.parse.urlsplit(uri)
        if started_by_run and parsed.hostname in LOOPBACK and parsed.port and not parsed.path.strip("/"):
            raise _NotChecked(f"nothing answers at {uri}: `mlops run` starts MLflow there for each run "
                              "(start one to check it here)") from down
        raise
    if response.status_code != 200:
        raise _Failed(f"GET {uri}/version answered HTTP {response.status_code}: is mlflow.tracking_uri the address "
                      "of an MLflow server (with its --static-prefix, if it has one)?")
    text = response.text.strip()
    try:
        version = Version(text)
    except InvalidVersion:
        raise _Failed(f"GET {uri}/version answered {text[:60]!r}, not a version: is this an MLflow server?") from None
    if version.major != MLFLOW_MAJOR:
        raise _Failed(f"{uri} runs MLflow {version}: the toolkit's clients (mlflow-skinny {MLFLOW_MAJOR}.x) need an "
                      f"MLflow {MLFLOW_MAJOR} server: upgrade it (and its database: mlflow db upgrade)")
    return f"MLflow {version} at {uri}"


def _mlflow_proxy(uri: str, timeout: float) -> str:
    """Proxied artifacts: the Spark driver and the Airflow workers upload and download models through the server
    (``mlflow-artifacts:``), so they need no credentials to its artifact store. Asked read-only: listing a path
    of the artifact root that does not exist, which only a proxying server answers with 200."""
    response = _mlflow_get(uri, "/api/2.0/mlflow-artifacts/artifacts", timeout, params={"path": DOCTOR_PROBES})
    if response.status_code == 503:
        raise _Failed(f"{uri} does not proxy artifacts (it runs with --no-serve-artifacts): run `mlflow server` with "
                      "--serve-artifacts (the default) and --artifacts-destination s3://<bucket>/<prefix>, so that "
                      "drivers and workers reach the artifact store through it")
    if response.status_code in (401, 403):
        raise _Failed(f"{uri} refused to list artifacts (HTTP {response.status_code}): set MLFLOW_TRACKING_TOKEN, or "
                      "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, for a user who may read")
    if response.status_code != 200:
        raise _Failed(f"GET {uri}/api/2.0/mlflow-artifacts/artifacts answered HTTP {response.status_code}: "
                      f"{response.text.strip()[:200]}")
    detail = "artifacts proxied by the server (mlflow-artifacts:)"
    default = _mlflow_get(uri, "/api/2.0/mlflow/experiments/get", timeout, params={"experiment_id": "0"})
    location = default.json().get("experiment", {}).get("artifact_location", "") if default.status_code == 200 else ""
    if location and not location.startswith("mlflow-artifacts:"):
        detail += (f"; but its Default experiment keeps artifacts at {location}, which clients write to directly: "
                   "is --default-artifact-root set?")
    return detail


# --- Airflow ------------------------------------------------------------------------------------------


def _airflow(api_url: str | None, timeout: float) -> str:
    if not api_url:
        raise _NotChecked("the stand has no airflow.api_url (needed where pushed versions start acceptance runs)")
    from packaging.version import InvalidVersion, Version

    from mlops_module.release.airflow_api import AirflowApiError, server_state

    try:
        state = server_state(api_url, timeout=timeout)
    except AirflowApiError as error:
        raise _Failed(str(error)) from error
    try:
        major = Version(state.version).major
    except InvalidVersion:
        major = None
    if major != AIRFLOW_MAJOR:
        raise _Failed(f"{api_url} runs Airflow {state.version}: the rendered DAGs and the deploy job need Airflow "
                      f"{AIRFLOW_MAJOR}")
    unhealthy = [name for name in ("metadatabase", "scheduler", "dag_processor")
                 if state.health.get(name) == "unhealthy"]
    if unhealthy:
        raise _Failed(f"Airflow {state.version} at {api_url} answers, but its {' and '.join(unhealthy)} "
                      f"{'is' if len(unhealthy) == 1 else 'are'} unhealthy (GET {api_url.rstrip('/')}"
                      "/api/v2/monitor/health): deployed DAGs would not be parsed or run")
    return f"Airflow {state.version} at {api_url}"


# --- notifications -------------------------------------------------------------------------------------

# Each channel's Airflow notifier: the provider module the notifier comes from.
_NOTIFIER_MODULES = {CHANNEL_SMTP: "airflow.providers.smtp.notifications.smtp",
                     CHANNEL_SLACK: "airflow.providers.slack.notifications.slack_webhook",
                     CHANNEL_WEBHOOK: "airflow.providers.http.notifications.http"}


def _channels(stand: Stand) -> list[tuple[str, str]]:
    """(channel, Airflow connection id) of each channel the stands file gives the stand."""
    n = stand.notifications
    found = [(CHANNEL_SMTP, n.smtp.conn_id if n.smtp else None), (CHANNEL_SLACK, n.slack_conn_id),
             (CHANNEL_WEBHOOK, n.webhook.conn_id if n.webhook else None)]
    return [(channel, conn) for channel, conn in found if conn]


def _notification_connections(stand: Stand) -> str:
    """Each channel's provider is installed and its connection is found here (nothing is sent): on an Airflow
    worker, what the DAGs' tasks will find."""
    import importlib

    try:
        from airflow.sdk import BaseHook
    except ImportError as error:
        raise _NotChecked(f"Airflow is not installed here ({error}); run it on an Airflow worker") from error
    problems, found = [], []
    for channel, conn_id in _channels(stand):
        try:
            importlib.import_module(_NOTIFIER_MODULES[channel])
        except ImportError as error:
            problems.append(f"{channel}: its provider is not installed ({error}; the toolkit's airflow extra "
                            "installs it)")
            continue
        try:
            BaseHook.get_connection(conn_id)
        except Exception as error:
            problems.append(f"{channel}: Airflow connection {conn_id!r} not found ({type(error).__name__}: {error}); "
                            "create it on the stand's Airflow (docs/stands.md, Notifications)")
        else:
            found.append(f"{conn_id} ({channel})")
    if problems:
        raise _Failed("; ".join(problems))
    return "connections found: " + ", ".join(found)


# --- Kubernetes ---------------------------------------------------------------------------------------


def _cluster_config(kubeconfig: str | None) -> tuple[Any, str] | None:
    """A client configuration and where it came from, found as kubectl finds one (then the in-cluster service
    account, as on an Airflow worker's pod); None when there is none."""
    from kubernetes import client, config

    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if not path and Path("~/.kube/config").expanduser().is_file():
        path = str(Path("~/.kube/config").expanduser())
    if path:
        config.load_kube_config(config_file=path, client_configuration=configuration, persist_config=False)
        source = f"kubeconfig {path}"
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
        source = "the pod's service account (in-cluster)"
    else:
        return None
    configuration.retries = 0  # one attempt: the check's timeout is the whole wait
    return configuration, source


@contextlib.contextmanager
def _forbidden_is_not_checked(what: str, identity: str) -> Iterator[None]:
    """A 403 on a read the stand does not need of this identity: the check could not look, nothing failed."""
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as error:
        if error.status == 403:
            raise _NotChecked(f"{identity} may not {what} (HTTP 403; the jobs don't need it to): "
                              "look as someone who may") from error
        raise


def _kubernetes(run: _Run, stand: Stand, timeout: float, permissions: Sequence[Permission],
                kubeconfig: str | None) -> None:
    groups = list(dict.fromkeys((g, r, s) for g, r, s, _ in permissions))
    dependent = ["spark crd", "namespace", "service account", *(_rbac_name(r, s) for _, r, s in groups)]
    found: dict[str, Any] = {}

    def reach() -> str:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        loaded = _cluster_config(kubeconfig)
        if loaded is None:
            raise _NotChecked("no cluster configuration (KUBECONFIG / in-cluster)")
        configuration, source = loaded
        api = client.ApiClient(configuration)
        try:
            code = client.VersionApi(api).get_code(_request_timeout=timeout)
        except ApiException as error:
            if error.status == 401:
                raise _Failed(f"the API server at {configuration.host} refused the credentials of {source} "
                              "(HTTP 401): renew the token or certificate") from error
            raise _Failed(f"the API server at {configuration.host} answered HTTP {error.status} to GET /version"
                          ) from error
        except Exception as error:  # urllib3: refused, timed out, TLS, DNS
            raise _Failed(f"cannot reach the API server at {configuration.host} ({_reason(error)}), configured by "
                          f"{source}: is the cluster up and reachable from here?") from error
        found["api"] = api
        found["identity"] = _identity(api, timeout) or f"the identity of {source}"
        return f"Kubernetes {code.git_version} at {configuration.host}, as {found['identity']}"

    cluster = run.check("kubernetes api", reach)
    if cluster.status != "ok":
        why = (cluster.detail if cluster.status == "not checked"
               else "the API server did not answer (see kubernetes api)")
        for name in dependent:
            run.not_checked(name, why)
        return
    api, identity = found["api"], found["identity"]
    run.check("spark crd", lambda: _spark_crd(api, timeout))
    run.check("namespace", lambda: _namespace(api, stand.namespace, identity, timeout))
    run.check("service account", lambda: _service_account(api, stand, identity, timeout))
    for group, resource, subresource in groups:
        verbs = [v for g, r, s, v in permissions if (g, r, s) == (group, resource, subresource)]
        run.check(_rbac_name(resource, subresource), functools.partial(
            _allowed, api, stand.namespace, identity, group, resource, subresource, verbs, timeout))


def _rbac_name(resource: str, subresource: str) -> str:
    return f"permission {resource}/{subresource}" if subresource else f"permission {resource}"


def _identity(api: Any, timeout: float) -> str | None:
    """Who the cluster takes this client for (SelfSubjectReview, Kubernetes 1.28+); None where it can't say."""
    from kubernetes import client

    with contextlib.suppress(Exception):
        review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview(),
                                                                            _request_timeout=timeout)
        return str(review.status.user_info.username) or None
    return None


def _spark_crd(api: Any, timeout: float) -> str:
    """Served, as the API server's discovery says (readable by every authenticated identity, unlike the CRD)."""
    from kubernetes import client

    groups = client.ApisApi(api).get_api_versions(_request_timeout=timeout).groups or []
    served = next(([v.version for v in g.versions] for g in groups if g.name == SPARK_GROUP), None)
    install = "install spark-operator 2.x (its Helm chart installs the CRDs; see docs/deploy.md)"
    if served is None:
        raise _Failed(f"the cluster serves no {SPARK_GROUP} API: the SparkApplication CRD is not installed: {install}")
    if SPARK_VERSION not in served:
        raise _Failed(f"{SPARK_GROUP} serves {', '.join(served)}, not {SPARK_VERSION}, which the rendered manifests "
                      f"use: {install}")
    resources = client.CustomObjectsApi(api).get_api_resources(SPARK_GROUP, SPARK_VERSION, _request_timeout=timeout)
    names = {r.name for r in (resources.resources or [])}
    if SPARK_PLURAL not in names:
        raise _Failed(f"{SPARK_GROUP}/{SPARK_VERSION} has no {SPARK_PLURAL} resource: {install}")
    return f"{SPARK_PLURAL}.{SPARK_GROUP} {SPARK_VERSION} served"


def _namespace(api: Any, namespace: str, identity: str, timeout: float) -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        with _forbidden_is_not_checked(f"read namespace {namespace}", identity):
            client.CoreV1Api(api).read_namespace(namespace, _request_timeout=timeout)
    except ApiException as error:
        if error.status == 404:
            raise _Failed(f"namespace {namespace} (kubernetes.namespace) does not exist: create the stand's "
                          "objects (docs/deploy.md)") from error
        raise
    return f"namespace {namespace} exists"


def _service_account(api: Any, stand: Stand, identity: str, timeout: float) -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name, namespace = stand.service_account, stand.namespace
    try:
        with _forbidden_is_not_checked(f"read service accounts in {namespace}", identity):
            client.CoreV1Api(api).read_namespaced_service_account(name, namespace, _request_timeout=timeout)
    except ApiException as error:
        if error.status == 404:
            raise _Failed(f"service account {name} (kubernetes.service_account), which the Spark driver runs as, "
                          f"is not in namespace {namespace}: create the stand's objects (docs/deploy.md)") from error
        raise
    return f"Spark driver service account {namespace}/{name} exists"


def _allowed(api: Any, namespace: str, identity: str, group: str, resource: str, subresource: str,
             verbs: Sequence[str], timeout: float) -> str:
    """SelfSubjectAccessReview: the API server's own answer to "may I", for this identity, verb by verb."""
    from kubernetes import client

    authorization = client.AuthorizationV1Api(api)
    denied = []
    for verb in verbs:
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                group=group, resource=resource, subresource=subresource or None, verb=verb, namespace=namespace)))
        answer = authorization.create_self_subject_access_review(review, _request_timeout=timeout)
        if not answer.status.allowed:
            denied.append(verb)
    what = f"{resource}/{subresource}" if subresource else resource
    if denied:
        raise _Failed(f"{identity} may not {', '.join(denied)} {what} in namespace {namespace}: bind the stand's "
                      "Role for the Airflow identity to it (docs/deploy.md); the SparkKubernetesOperator makes these "
                      "calls")
    return f"{identity} may {', '.join(verbs)} {what} in {namespace}"
