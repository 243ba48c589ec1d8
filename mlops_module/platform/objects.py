"""The Kubernetes objects one stand needs before its first job: rendered from the stands file, applied once.

The job namespace, the Spark driver's service account with the Role its executors need, and the Role and
RoleBinding that let the stand's Airflow identity submit and follow SparkApplications there. The Airflow service
account itself belongs to the Airflow install (its own namespace) and is only bound here, not created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_module import names
from mlops_module.errors import UsageError
from mlops_module.platform.rbac import AIRFLOW_PERMISSIONS, SPARK_DRIVER_PERMISSIONS, Permission
from mlops_module.spec.config import known_stand
from mlops_module.spec.stands import Stand, Stands

RBAC_API = "rbac.authorization.k8s.io"


def _metadata(stand: Stand, name: str, namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespaced:
        meta["namespace"] = stand.namespace
    meta["labels"] = {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_STAND: stand.name}
    return meta


def _rules(permissions: tuple[Permission, ...]) -> list[dict[str, Any]]:
    return [{"apiGroups": [p.api_group], "resources": [p.rbac_resource], "verbs": list(p.verbs)}
            for p in permissions]


def _role(stand: Stand, name: str, permissions: tuple[Permission, ...]) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC_API}/v1", "kind": "Role", "metadata": _metadata(stand, name),
            "rules": _rules(permissions)}


def _binding(stand: Stand, role: str, account: str, account_namespace: str) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC_API}/v1", "kind": "RoleBinding", "metadata": _metadata(stand, role),
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_namespace}],
            "roleRef": {"apiGroup": RBAC_API, "kind": "Role", "name": role}}


def stand_objects(stand: Stand) -> list[dict[str, Any]]:
    """Namespace, driver ServiceAccount, Roles and RoleBindings, in the order `kubectl apply` needs them."""
    if stand.backend != "kubernetes":
        raise UsageError(f"stand {stand.name!r} has backend {stand.backend!r}: it runs Spark on this machine and "
                         "needs no Kubernetes objects (only a stand with backend: kubernetes does)")
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _metadata(stand, stand.namespace, namespaced=False)},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(stand, stand.service_account)},
        _role(stand, names.SPARK_DRIVER_ROLE, SPARK_DRIVER_PERMISSIONS),
        _binding(stand, names.SPARK_DRIVER_ROLE, stand.service_account, stand.namespace),
        _role(stand, names.AIRFLOW_ROLE, AIRFLOW_PERMISSIONS),
        _binding(stand, names.AIRFLOW_ROLE, stand.airflow_service_account, stand.airflow_service_account_namespace),
    ]


def objects_yaml(stand: Stand) -> str:
    """The stand's objects as one multi-document YAML stream (`kubectl apply -f -` reads it)."""
    import yaml

    header = (f"# Kubernetes objects of stand {stand.name!r}, rendered by `mlops platform render` from the stands "
              "file: apply once, before the first job.\n")
    return header + yaml.safe_dump_all(stand_objects(stand), sort_keys=False, explicit_start=True)


def render_stand(stands: Stands, stand: str, out: Path | None = None) -> tuple[str, Path | None]:
    """The YAML of ``stand``'s objects; written to ``out/<stand>.yaml`` as well when ``out`` is given."""
    known_stand(stand, stands)
    text = objects_yaml(stands.get(stand))
    if out is None:
        return text, None
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stand}.yaml"
    path.write_text(text, encoding="utf-8")
    return text, path


def starting_stands(out: Path | None = None) -> str:
    """The built-in stands file's text, comments included: a platform's own starts as a copy of it. With ``out``,
    also written there (never over an existing file: it would be someone's stands file)."""
    from mlops_module.spec.stands import BUILTIN_STANDS

    text = BUILTIN_STANDS.read_text(encoding="utf-8")
    if out is not None:
        try:
            with out.open("x", encoding="utf-8") as handle:
                handle.write(text)
        except FileExistsError:
            raise UsageError(f"{out} exists: choose another --out, or remove it first") from None
    return text
