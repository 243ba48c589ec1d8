"""Download Maven artifacts (jars) into a directory, each checked against its checksums.

Every jar is checked against the SHA-1 the repository publishes beside it (``<jar>.sha1``, which Maven Central
has for every artifact): that catches a truncated or corrupted download and a wrong URL. A pinned SHA-256
(``GROUP:ARTIFACT:VERSION=SHA256``) is checked too, and protects against a repository or mirror that serves
another file with a matching checksum file; a coordinate without a pin is fetched with a warning that prints
the value to pin. Used by platform/spark/Dockerfile and platform/spark-operator/Dockerfile:

    python3 fetch_maven.py --dest /tmp/jars org.apache.hadoop:hadoop-aws:3.3.4=<sha256> ...

Standard library only (the Spark image's python3 runs it); ``--repository`` may be a file:// URL.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"


class Coordinate(NamedTuple):
    group: str
    artifact: str
    version: str
    sha256: str  # "" when not pinned

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def url(self, repository: str) -> str:
        group = self.group.replace(".", "/")
        return f"{repository.rstrip('/')}/{group}/{self.artifact}/{self.version}/{self.file_name}"


class FetchError(Exception):
    """A download failed or a checksum disagreed: the message says which artifact and how."""


def parse(spec: str) -> Coordinate:
    """``GROUP:ARTIFACT:VERSION`` with an optional ``=SHA256`` (empty means not pinned)."""
    coordinate, _, sha256 = spec.partition("=")
    parts = coordinate.split(":")
    if len(parts) != 3 or not all(parts):
        raise FetchError(f"{spec!r}: expected GROUP:ARTIFACT:VERSION[=SHA256]")
    sha256 = sha256.strip().lower()
    if sha256 and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
        raise FetchError(f"{spec!r}: the pinned SHA-256 is not 64 hex digits")
    return Coordinate(parts[0], parts[1], parts[2], sha256)


def _transient(exc: OSError) -> bool:
    """A server error or a network failure, worth another try; not a missing file or a refusal."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return not isinstance(reason, (FileNotFoundError, PermissionError))


def _read(url: str, attempts: int = 3) -> bytes:
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data: bytes = response.read()
                return data
        except OSError as exc:
            if attempt == attempts or not _transient(exc):
                raise FetchError(f"{url}: {exc}") from exc
            time.sleep(2 * attempt)  # a transient network error: back off, then try again
    raise AssertionError("unreachable")


def fetch(coordinate: Coordinate, repository: str, dest: Path) -> str:
    """Download one jar into ``dest`` once its checksums agree; returns its SHA-256."""
    url = coordinate.url(repository)
    data = _read(url)
    published = _read(url + ".sha1").decode("ascii", "replace").split()
    sha1, sha256 = hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest()
    if not published or published[0].lower() != sha1:
        raise FetchError(f"{coordinate.file_name}: SHA-1 {sha1} does not match the published "
                         f"{published[0] if published else '(empty file)'} ({url}.sha1)")
    if coordinate.sha256 and coordinate.sha256 != sha256:
        raise FetchError(f"{coordinate.file_name}: SHA-256 {sha256} does not match the pinned {coordinate.sha256}")
    dest.mkdir(parents=True, exist_ok=True)
    partial = dest / f".{coordinate.file_name}.part"
    partial.write_bytes(data)
    partial.chmod(0o644)
    os.replace(partial, dest / coordinate.file_name)
    return sha256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", default=MAVEN_CENTRAL, help="Maven repository base URL (a mirror)")
    parser.add_argument("--dest", type=Path, required=True, help="directory the jars are written to")
    parser.add_argument("coordinates", nargs="+", metavar="GROUP:ARTIFACT:VERSION[=SHA256]")
    args = parser.parse_args(argv)
    try:
        coordinates = [parse(c) for c in args.coordinates]
        for c in coordinates:
            sha256 = fetch(c, args.repository, args.dest)
            state = "pinned SHA-256 matches" if c.sha256 else f"NOT PINNED: pin SHA-256 {sha256}"
            print(f"{c.file_name}: published SHA-1 matches; {state}")
    except FetchError as exc:
        print(f"fetch_maven: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
