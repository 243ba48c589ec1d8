"""The commit a code package was built from, when git can vouch for it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from mlops_module.spec.config import ModelConfig

COMMIT_ID = re.compile(r"[0-9a-f]{7,40}")


def source_commit(cfg: ModelConfig, files: list[tuple[str, Path]]) -> str | None:
    """The commit that holds exactly the package's repository files, if one can be named: every one of
    them tracked and unchanged at HEAD, HEAD on a remote branch (a deploy job can fetch it), and, under
    Jenkins, HEAD being the ``$GIT_COMMIT`` it checked out. None otherwise: no commit beats a wrong one."""
    root = cfg.repo_root
    if root is None:
        return None
    ours = [str(path.resolve()) for _, path in files if path.resolve().is_relative_to(root.resolve())]

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None

    head = git("rev-parse", "HEAD")
    if head is None or head.returncode != 0 or not ours:
        return None
    commit = head.stdout.strip()
    given = os.environ.get("GIT_COMMIT", "").strip()
    if given and given != commit:
        return None
    checks = (git("ls-files", "--error-unmatch", "--", *ours),  # tracked
              git("diff", "--quiet", "HEAD", "--", *ours),  # unchanged, staged or not
              git("branch", "-r", "--contains", commit))  # pushed
    if any(c is None or c.returncode != 0 for c in checks) or not checks[2].stdout.strip():  # type: ignore[union-attr]
        return None
    return commit if COMMIT_ID.fullmatch(commit) else None
