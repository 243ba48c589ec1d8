"""Unpacking an environment archive so that nothing lands outside the target: the one way the toolkit
extracts a tar.gz (``mlops package --verify`` and the local stand's environment cache).

An archive is data from storage anyone with write access to the bucket can replace, so extraction is an
allow-list: regular files, directories, and symbolic links that resolve inside the target, each name once.
The one deliberate exception is the environment's ``bin/python`` (and ``python3``, ``python3.X``) link to
the image's interpreter, an absolute path by design (see :func:`.environment.build_environment`). Hard
links, devices, FIFOs, sparse members, absolute or ``..`` names are refused, naming the member, rather
than skipped. Python's ``data`` filter does the per-member path and mode work (no owner applied; no
setuid, setgid or sticky bits; the executable bit kept); the caps on bytes and members stop an archive
that expands without bound. A leaf module: standard library and :mod:`mlops_module.errors` only.
"""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_module import names
from mlops_module.errors import PackagingError

DEFAULT_MAX_BYTES = 8 * 1024**3  # a real environment is ~0.5 GB unpacked
DEFAULT_MAX_MEMBERS = 500_000  # ... and ~6,000 files
_INTERPRETER_LINKS = re.compile(r"bin/python(3(\.\d+)?)?")
_INTERPRETER_TARGET = re.compile(r"/[^\0]*/python3(\.\d+)?")
_ALLOWED = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "directory",
            tarfile.SYMTYPE: "symbolic link"}
_REFUSED = {tarfile.LNKTYPE: "a hard link", tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
            tarfile.FIFOTYPE: "a FIFO", tarfile.CONTTYPE: "a contiguous file", tarfile.GNUTYPE_SPARSE: "a sparse file"}


@dataclass(frozen=True)
class UnpackLimits:
    """Caps on one archive: total bytes of its files and number of members."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS

    @classmethod
    def from_env(cls) -> UnpackLimits:
        """The defaults, overridden by ``$MLOPS_UNPACK_MAX_BYTES`` / ``$MLOPS_UNPACK_MAX_MEMBERS``."""
        return cls(_positive_int(names.UNPACK_MAX_BYTES_ENV, DEFAULT_MAX_BYTES),
                   _positive_int(names.UNPACK_MAX_MEMBERS_ENV, DEFAULT_MAX_MEMBERS))


def _positive_int(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise PackagingError(f"${variable} must be a positive whole number, not {raw!r}")
    return value


class _Filter:
    """A ``tarfile`` extraction filter that refuses instead of skipping, and counts what it lets through."""

    def __init__(self, archive: Path, dest: Path, limits: UnpackLimits) -> None:
        self.archive, self.dest, self.limits = archive, os.path.realpath(dest), limits
        self.seen: set[str] = set()
        self.bytes = 0

    def refuse(self, member: tarfile.TarInfo, why: str) -> PackagingError:
        return PackagingError(f"refusing to unpack {self.archive}: member {member.name!r} {why}; "
                              "nothing outside the target was written")

    def __call__(self, member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
        name = member.name
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            raise self.refuse(member, "has an absolute name")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse(member, "has a '..' in its name")
        if "\0" in name or "\\" in name:
            raise self.refuse(member, "has a NUL or backslash in its name")
        if member.type in _REFUSED:
            raise self.refuse(member, f"is {_REFUSED[member.type]}, which an environment never holds")
        if member.type not in _ALLOWED:
            raise self.refuse(member, f"has tar type {member.type!r}: only files, directories and links are allowed")
        clean = "/".join(parts)
        if clean in self.seen:  # a second entry would write through the first (a link) or replace it
            raise self.refuse(member, "appears twice")
        self.seen.add(clean)
        if len(self.seen) > self.limits.max_members:
            raise PackagingError(f"refusing to unpack {self.archive}: more than {self.limits.max_members:,} members "
                                 f"(set ${names.UNPACK_MAX_MEMBERS_ENV} to allow more)")
        self.bytes += member.size if member.isreg() else 0
        if self.bytes > self.limits.max_bytes:
            raise PackagingError(f"refusing to unpack {self.archive}: its files exceed {self.limits.max_bytes:,} bytes "
                                 f"unpacked (at member {name!r}; set ${names.UNPACK_MAX_BYTES_ENV} to allow more)")
        if member.issym() and _INTERPRETER_LINKS.fullmatch(clean) and (
                member.linkname in ("python", "python3")  # bin/python3 -> python: resolves to the interpreter too
                or (_INTERPRETER_TARGET.fullmatch(member.linkname) and ".." not in member.linkname.split("/"))):
            parent = os.path.realpath(os.path.join(self.dest, "bin"))
            if os.path.commonpath([parent, self.dest]) != self.dest:
                raise self.refuse(member, "would be created outside the target")
            no_owner: dict[str, Any] = {"uid": None, "gid": None, "uname": None, "gname": None, "mode": None}
            return member.replace(name=clean, deep=False, **no_owner)  # as the data filter treats links
        try:
            filtered = tarfile.data_filter(member.replace(name=clean, deep=False), path)
        except tarfile.FilterError as exc:
            raise self.refuse(member, f"is not allowed ({exc})") from exc
        return filtered


def extract(archive: Path, dest: Path, limits: UnpackLimits | None = None) -> None:
    """Unpack the tar.gz ``archive`` into the existing, empty directory ``dest``, or raise
    :class:`PackagingError` naming the first member refused. On refusal ``dest`` may hold part of the
    archive: callers unpack into a directory of their own and remove it (nothing is written elsewhere)."""
    check = _Filter(archive, dest, limits or UnpackLimits.from_env())
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, filter=check)
    except PackagingError:
        raise
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackagingError(f"{archive} is not a readable tar.gz archive: {exc}") from exc

