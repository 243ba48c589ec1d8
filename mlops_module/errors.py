"""One exception family. The CLI maps each class to an exit status; messages are for data scientists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about an input file, printed as ``FILE:LINE:COL: dotted.path: message``."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"


class MlopsError(Exception):
    """Base of every error the toolkit raises on purpose. Exit status 1 unless a subclass says otherwise."""

    exit_code = 1


class UsageError(MlopsError):
    """The command was called wrongly (unknown stand, bad flag combination)."""

    exit_code = 2


class ConfigError(MlopsError):
    """A config or stands file is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], document: Any = None) -> None:
        self.problems = sorted(set(problems))
        self.document = document  # the parsed file, when there was one
        super().__init__("\n".join(str(p) for p in self.problems))


class RenderError(MlopsError):
    """Rendering failed for a reason outside the config (output directory, template)."""


class PackagingError(MlopsError):
    """Building or checking an artifact failed; the message says what to change."""


class PromotionError(MlopsError):
    """A promotion, approval or rollback was refused or could not complete; nothing inconsistent is left."""
