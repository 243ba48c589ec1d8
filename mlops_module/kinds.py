"""Small shared types: the progress callback and the closed vocabularies the stands file and the gate use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

Log = Callable[[str], None]
"""Where a long operation reports progress, one line at a time (print, a logger's info, a UI)."""

BackendName = Literal["kubernetes", "local"]
TriggerName = Literal["jenkins", "command", "none"]
ApprovalName = Literal["auto", "manual"]
Verdict = Literal["success", "failed"]
RetrainPolicy = Literal["approval", "direct"]
S3Credentials = Literal["instance_profile", "web_identity", "secret"]
"""How Spark's S3A connector finds credentials on a Kubernetes stand (the stands file's storage.credentials.mode)."""
