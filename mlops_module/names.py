"""Every generated name in one place, so the length checks and the renderer can't disagree."""

from __future__ import annotations

JOBS = ("train", "inference", "monitoring")
# SparkApplication names are short so that model (40) + stand (5) + job fit the 54 characters
# left after SparkKubernetesOperator appends "-" and 8 random characters (63 in all).
APP_SUFFIX = {"train": "train", "inference": "infer", "monitoring": "monitor"}
MAX_APP_NAME = 63 - 9


def dag_id(model: str, stand: str, job: str) -> str:
    return f"{model}__{stand}__{job}"


def app_name(model: str, stand: str, job: str) -> str:
    return f"{model}-{stand}-{APP_SUFFIX[job]}"


def dag_file(model: str, stand: str, job: str) -> str:
    return f"{dag_id(model, stand, job)}.py"


def manifest_file(model: str, stand: str, job: str) -> str:
    return f"manifests/{app_name(model, stand, job)}.yaml"


def image_for(image: str, registry: str | None) -> str:
    """Point ``image`` at the stand's registry mirror, keeping its repository path and tag."""
    if not registry:
        return image
    first, _, rest = image.partition("/")
    has_registry = bool(rest) and ("." in first or ":" in first or first == "localhost")
    path = rest if has_registry else image
    return f"{registry.rstrip('/')}/{path}"
