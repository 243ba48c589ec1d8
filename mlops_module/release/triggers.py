"""The next stand's deploy trigger: a Jenkins job, a command (``mlops deploy --package``), or nothing."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from mlops_module.errors import PromotionError
from mlops_module.spec.config import ModelConfig
from mlops_module.spec.stands import Stand

Trigger = Callable[[ModelConfig, Stand, str, dict[str, str]], str]


def call_deploy_trigger(cfg: ModelConfig, version: str, next_version: str, nxt: Stand, env_object: str,
                        code_prefix: str, git_sha: str, trigger: Trigger | None,
                        config_hash: str | None = None) -> str:
    """The next stand's deploy trigger, with what its deploy job needs to deploy exactly this version."""
    params = {"MODEL": cfg.name, "STAND": nxt.name, "VERSION": next_version, "SOURCE_VERSION": version,
              "SOURCE_STAND": cfg.stand.name, "ENV_ARCHIVE": env_object, "CODE_PACKAGE": code_prefix,
              "CONFIG_HASH": config_hash or cfg.config_hash, "GIT_SHA": git_sha}
    return (trigger or call_trigger)(cfg, nxt, version, params)


def call_trigger(cfg: ModelConfig, nxt: Stand, version: str, params: dict[str, str],
                 stands_file: str | None = None) -> str:
    """The next stand's deploy trigger: a Jenkins job, a command, or nothing. ``stands_file``: the one
    the caller was given (default ``$MLOPS_STANDS``), for the command's ``mlops deploy``."""
    if nxt.deploy_trigger == "none":
        return "none"
    if nxt.deploy_trigger == "jenkins":
        return _jenkins(nxt, params)
    import subprocess

    # From the code package the push just copied: the DAG's promote task has no repository, only its bundle.
    command = [sys.executable, "-m", "mlops_module", "deploy", "--package", params["CODE_PACKAGE"], "--stand", nxt.name]
    if params.get("VERSION"):  # a push: then the stand's acceptance run starts
        command += ["--version", params["VERSION"], "--source-stand", params["SOURCE_STAND"],
                    "--source-version", params["SOURCE_VERSION"]]
    stands_file = stands_file or os.environ.get("MLOPS_STANDS")
    if stands_file:
        command += ["--stands", str(Path(stands_file).resolve())]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PromotionError(f"deploy to {nxt.name} failed ({' '.join(command)}): {result.stderr.strip()[-500:]}")
    return "command"


def _jenkins(nxt: Stand, params: dict[str, str]) -> str:
    """POST to the job's buildWithParameters URL; credentials from the environment, never from files."""
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    if not nxt.deploy_url:
        raise PromotionError(f"stand {nxt.name} has trigger jenkins but no deploy.url in the stands file")
    user, token = os.environ.get("MLOPS_JENKINS_USER"), os.environ.get("MLOPS_JENKINS_TOKEN")
    request = urllib.request.Request(nxt.deploy_url, data=urllib.parse.urlencode(params).encode(), method="POST")
    if user and token:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return f"jenkins {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        raise PromotionError(f"could not trigger the deploy of {nxt.name} at {nxt.deploy_url}: {exc}") from exc
