"""Artifact storage of a stand: ``s3://bucket/prefix`` (any S3-compatible server) or ``file:///path``.

One interface for both. An object becomes visible under its final key only when it is complete:
S3 shows an object only once its PUT or multipart upload completes (boto3 aborts a failed
multipart upload), and the file backend writes a temporary file and renames it. Each object
carries the SHA-256 of its bytes (S3 user metadata, or a ``.sha256`` sidecar file), which marks an
upload as finished; :meth:`Storage.verify` and copies read the bytes back and check them against it
(a recorded checksum says what was uploaded, not what is stored now).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_module.errors import MlopsError

if TYPE_CHECKING:
    from mlops_module.spec.stands import Stand

Progress = Callable[[int], None] | None
SHA_META = "sha256"
CHUNK = 8 * 1024 * 1024


class StorageError(MlopsError):
    """Storage could not be reached or refused an operation; the message says which and where."""


class IntegrityError(StorageError):
    """An object is missing, or its bytes are not the ones its recorded checksum names: never passed on."""


class LockBusy(StorageError):
    """Someone else holds the lock and kept it for as long as we waited."""


class LockLost(StorageError):
    """A holder's lock was taken over or removed while it worked: what it did may have raced another."""


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    sha256: str | None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Storage(ABC):
    """A stand's storage root; keys are relative paths below it (``envs/<key>.tar.gz``)."""

    uri: str

    def url(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError unless the storage root can be used."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size and recorded SHA-256 of a finished object, or None."""

    @abstractmethod
    def upload(self, source: Path, key: str, sha256: str, progress: Progress = None) -> None: ...

    @abstractmethod
    def download(self, key: str, dest: Path, progress: Progress = None) -> None: ...

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object (history events, lock files); atomic like every upload."""

    @abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` in one step, only if it doesn't exist; False if it does. Never seen
        empty or half-written. The basis of the locks (:mod:`mlops_module.locking`)."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes | None: ...

    @abstractmethod
    def modified(self, key: str) -> float | None:
        """When ``key`` was last written, by the storage's clock (epoch seconds); None if absent. Judges a lock
        whose own content can't say how old it is."""

    @abstractmethod
    def remove_if_same(self, key: str, expected: bytes) -> bool:
        """Delete ``key`` only if it still holds ``expected``; True if this call removed it."""

    @abstractmethod
    def replace_if_same(self, key: str, expected: bytes, data: bytes) -> bool:
        """Overwrite ``key`` with ``data`` only if it still holds ``expected``; True if this call wrote it.
        How a lock holder renews its lease without overwriting a lock someone else took over."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Keys below ``prefix`` (relative to the storage root), sorted."""

    def duplicate(self, key: str, dest_key: str) -> None:
        """Copy an object to another key of this storage (server-side for S3); the copy appears whole."""
        data = self.read_bytes(key)
        if data is None:
            raise StorageError(f"{self.url(key)} does not exist")
        self.put_bytes(dest_key, data)

    @abstractmethod
    def _copy_within(self, key: str, dest: Storage, dest_key: str) -> bool:
        """Server-side copy when both ends are the same kind of storage; False if not possible."""

    def _server_side(self, dest: Storage) -> bool:
        """Whether :meth:`_copy_within` can copy to ``dest`` without the bytes passing through this machine."""
        return False

    @abstractmethod
    def _hash(self, key: str) -> tuple[ObjectInfo, str] | None:
        """The object's size and recorded SHA-256, and the SHA-256 of its bytes as read now (streamed); None if
        it does not exist."""

    def verify(self, key: str) -> ObjectInfo:
        """Read the object and check its bytes against its recorded SHA-256; what a promotion does before it
        passes an object on: the recorded checksum says what was uploaded, not what is stored now.
        IntegrityError when it is missing, unfinished, or its content differs (both checksums named)."""
        return _checked(self.url(key), self._hash(key))

    def copy(self, key: str, dest: Storage, dest_key: str | None = None, *,
             verified: ObjectInfo | None = None) -> ObjectInfo:
        """Copy an object to another stand's storage, server-side where possible; the copy's bytes are read back
        and checked. The source's bytes are checked too: read (server-side copy) or hashed as downloaded, unless
        ``verified`` (what :meth:`verify` returned for it: the caller read it already) is given. A copy already
        there is kept when its bytes match; one that doesn't match after copying is removed."""
        dest_key = dest_key or key
        expected = verified or _recorded(self.url(key), self.stat(key))
        if _holds(dest._hash(dest_key), expected):
            return expected
        copied = False
        if self._server_side(dest):
            expected = verified or self.verify(key)
            copied = self._copy_within(key, dest, dest_key)
        if not copied:
            self._copy_through(key, dest, dest_key, expected)
        found = dest._hash(dest_key)
        if not _holds(found, expected):
            with contextlib.suppress(StorageError):
                dest.delete(dest_key)  # nothing downstream may take it for the real one
            copy = f"recorded {found[0].sha256}, content {found[1]}" if found else "missing"
            raise IntegrityError(f"the copy of {self.url(key)} to {dest.url(dest_key)} does not match it: expected "
                                 f"sha256 {expected.sha256} ({expected.size} bytes), the copy: {copy}; removed")
        return expected

    def _copy_through(self, key: str, dest: Storage, dest_key: str, expected: ObjectInfo) -> None:
        """Download and upload; the downloaded file is what gets hashed (the source is not read twice)."""
        with tempfile.TemporaryDirectory(prefix="mlops-copy-") as tmp:
            local = Path(tmp) / "object"
            self.download(key, local)
            actual = sha256_file(local)
            if actual != expected.sha256:
                raise IntegrityError(_mismatch(self.url(key), expected.sha256, actual))
            dest.upload(local, dest_key, actual)


def _recorded(url: str, info: ObjectInfo | None) -> ObjectInfo:
    if info is None:
        raise IntegrityError(f"{url} is missing: it does not exist (or its upload never finished)")
    if info.sha256 is None:
        raise IntegrityError(f"{url} is missing its recorded checksum: its upload never finished, or something "
                             "other than mlops wrote it")
    return info


def _mismatch(url: str, recorded: str | None, actual: str) -> str:
    return (f"{url} does not match its recorded checksum: recorded sha256 {recorded}, its content has sha256 "
            f"{actual} (replaced or corrupted in storage)")


def _checked(url: str, found: tuple[ObjectInfo, str] | None) -> ObjectInfo:
    info = _recorded(url, found[0] if found else None)
    if found is not None and found[1] != info.sha256:
        raise IntegrityError(_mismatch(url, info.sha256, found[1]))
    return info


def _holds(found: tuple[ObjectInfo, str] | None, expected: ObjectInfo) -> bool:
    """Whether an object read back is ``expected``: recorded checksum, size and content all agree."""
    return found is not None and found[0] == expected and found[1] == expected.sha256


class FileStorage(Storage):
    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.root = Path(uri[len("file://"):])

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError(f"key {key!r} escapes {self.uri}")
        return path

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot use {self.uri}: {exc.strerror or exc}") from exc

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        sidecar = path.with_name(path.name + ".sha256")
        if not path.is_file() or not sidecar.is_file():
            return None
        return ObjectInfo(path.stat().st_size, sidecar.read_text().strip() or None)

    def _hash(self, key: str) -> tuple[ObjectInfo, str] | None:
        path = self._path(key)
        try:
            try:
                recorded = path.with_name(path.name + ".sha256").read_text().strip() or None
            except FileNotFoundError:
                recorded = None
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self.url(key)}: {exc.strerror or exc}") from exc
        return ObjectInfo(size, recorded), digest.hexdigest()

    def upload(self, source: Path, key: str, sha256: str, progress: Progress = None) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_name(path.name + ".sha256").unlink(missing_ok=True)  # unfinished until rewritten
            _atomic_copy(source, path, progress)
            sidecar = path.with_name(path.name + ".sha256")
            tmp = sidecar.with_name(f".{sidecar.name}.tmp-{uuid.uuid4().hex}")
            tmp.write_text(sha256 + "\n")
            os.replace(tmp, sidecar)  # written last: marks the object finished
        except OSError as exc:
            raise StorageError(f"cannot write {self.url(key)}: {exc.strerror or exc}") from exc

    def download(self, key: str, dest: Path, progress: Progress = None) -> None:
        if self.stat(key) is None:
            raise StorageError(f"{self.url(key)} does not exist")
        _atomic_copy(self._path(key), dest, progress)

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """A temporary file, then a hard link to ``key`` (refused when it exists): the lock appears whole."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
            tmp.write_bytes(data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                return _create_unlinked(path, data)  # a file system without hard links
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.url(key)}: {exc.strerror or exc}") from exc
        return True

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # absent, or removed as we looked
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self.url(key)}: {exc.strerror or exc}") from exc

    def modified(self, key: str) -> float | None:
        try:
            return self._path(key).stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"cannot stat {self.url(key)}: {exc.strerror or exc}") from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _turn(self, key: str, what: str) -> Iterator[Path]:
        """An exclusive ``flock`` on a guard file beside ``key``: compare-and-remove and compare-and-replace
        take turns (a creator needs no turn, it only creates what is absent), so no one changes what it did
        not read."""
        import fcntl

        path = self._path(key)
        try:
            with open(path.with_name(f".{path.name}.guard"), "a+b") as guard:
                fcntl.flock(guard, fcntl.LOCK_EX)
                try:
                    yield path
                finally:
                    fcntl.flock(guard, fcntl.LOCK_UN)
        except OSError as exc:
            raise StorageError(f"cannot {what} {self.url(key)}: {exc.strerror or exc}") from exc

    def remove_if_same(self, key: str, expected: bytes) -> bool:
        if not self._path(key).is_file():
            return False
        with self._turn(key, "remove") as path:
            if not path.is_file() or path.read_bytes() != expected:
                return False
            path.unlink()
            return True

    def replace_if_same(self, key: str, expected: bytes, data: bytes) -> bool:
        if not self._path(key).is_file():
            return False
        with self._turn(key, "rewrite") as path:
            if not path.is_file() or path.read_bytes() != expected:
                return False
            tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            return True

    def list_keys(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        root = self.root.resolve()
        return sorted(p.relative_to(root).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".sha256"))

    def _copy_within(self, key: str, dest: Storage, dest_key: str) -> bool:
        return False  # a local copy is a download and an upload anyway


def _create_unlinked(path: Path, data: bytes) -> bool:
    """Exclusive create without a hard link: a kill before the write leaves an empty file, which a lock
    judges by its modification time."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True


def _atomic_copy(source: Path, dest: Path, progress: Progress) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex}")
    try:
        with source.open("rb") as src, tmp.open("wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                if progress:
                    progress(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


class S3Storage(Storage):
    """boto3 managed transfers: multipart, concurrent, SHA-256 checksums checked by the server."""

    def __init__(self, uri: str, endpoint_url: str | None = None, client: Any = None) -> None:
        self.uri = uri.rstrip("/")
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Bounded: a refused connection fails in seconds, a hung server within about a minute (3 attempts,
            # 20 s without a byte each); S3 keeps long copies alive with whitespace, so they are not cut.
            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url,
                config=Config(connect_timeout=10, read_timeout=20, retries={"max_attempts": 3, "mode": "standard"}),
            )
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK, max_concurrency=8)

    def check(self) -> None:
        self._call("access to", "", lambda: self.client.head_bucket(Bucket=self.bucket))

    def _call(self, what: str, key: str, fn: Callable[[], Any], none_on: tuple[str, ...] = ()) -> Any:
        """``fn()``, its failures as StorageError naming the operation and URL (transport errors too:
        connection reset, timeouts); None for a ClientError whose code is in ``none_on``."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in none_on or (what == "stat" and code in ("404", "NoSuchKey", "NotFound")):
                return None
            raise StorageError(f"{what} {self.url(key)} failed: {code or exc}") from exc
        except (BotoCoreError, Boto3Error) as exc:
            raise StorageError(f"{what} {self.url(key)} failed: {exc}") from exc

    def stat(self, key: str) -> ObjectInfo | None:
        head = self._call("stat", key, lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
        if head is None:
            return None
        return ObjectInfo(int(head["ContentLength"]), head.get("Metadata", {}).get(SHA_META))

    def _hash(self, key: str) -> tuple[ObjectInfo, str] | None:
        """One GET: the recorded checksum and the bytes come from the same object, streamed, never stored."""
        from botocore.exceptions import ClientError

        def read() -> tuple[ObjectInfo, str] | None:
            try:
                found = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise
            digest = hashlib.sha256()
            with contextlib.closing(found["Body"]) as body:
                for chunk in body.iter_chunks(CHUNK):
                    digest.update(chunk)
            return ObjectInfo(int(found["ContentLength"]), found.get("Metadata", {}).get(SHA_META)), digest.hexdigest()

        found: tuple[ObjectInfo, str] | None = self._call("read", key, read)
        return found

    def upload(self, source: Path, key: str, sha256: str, progress: Progress = None) -> None:
        self._call("upload to", key, lambda: self.client.upload_file(
            str(source), self.bucket, self._key(key),
            ExtraArgs={"Metadata": {SHA_META: sha256}, "ChecksumAlgorithm": "SHA256"},
            Config=self._transfer(), Callback=progress,
        ))

    def download(self, key: str, dest: Path, progress: Progress = None) -> None:
        tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex}")
        try:
            self._call("download", key, lambda: self.client.download_file(
                self.bucket, self._key(key), str(tmp), Config=self._transfer(), Callback=progress))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("write", key, lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data))

    def create_exclusive(self, key: str, data: bytes) -> bool:
        # S3 conditional write: one request, refused when the object exists
        return self._call("create", key, lambda: self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"), none_on=_REFUSED) is not None

    def _get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag (read inside the call: a reset mid-body is a StorageError too)."""
        def get() -> tuple[bytes, str]:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return bytes(got["Body"].read()), str(got["ETag"])

        result: tuple[bytes, str] | None = self._call("read", key, get, none_on=_ABSENT)
        return result

    def read_bytes(self, key: str) -> bytes | None:
        got = self._get(key)
        return got[0] if got else None

    def modified(self, key: str) -> float | None:
        head = self._call("stat", key, lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
        return head["LastModified"].timestamp() if head else None

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))

    def remove_if_same(self, key: str, expected: bytes) -> bool:
        current = self._get(key)
        if current is None or current[0] != expected:
            return False
        return self._call("delete", key, lambda: self.client.delete_object(
            Bucket=self.bucket, Key=self._key(key), IfMatch=current[1]), none_on=_ABSENT + _REFUSED) is not None

    def replace_if_same(self, key: str, expected: bytes, data: bytes) -> bool:
        """A read, then a PUT with If-Match on the ETag read: S3 (and moto) refuse it when the object changed
        meanwhile. A server that ignores If-Match leaves a window of one request between read and write."""
        current = self._get(key)
        if current is None or current[0] != expected:
            return False
        return self._call("rewrite", key, lambda: self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, IfMatch=current[1]),
            none_on=_ABSENT + _REFUSED) is not None

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self._call("list", prefix, lambda: list(paginator.paginate(Bucket=self.bucket,
                                                                             Prefix=self._key(prefix))))
        for page in pages:
            keys += [o["Key"][strip:] for o in page.get("Contents", [])]
        return sorted(keys)

    def duplicate(self, key: str, dest_key: str) -> None:
        self._call("copy to", dest_key, lambda: self.client.copy_object(
            Bucket=self.bucket, Key=self._key(dest_key), CopySource={"Bucket": self.bucket, "Key": self._key(key)}))

    def _server_side(self, dest: Storage) -> bool:
        return isinstance(dest, S3Storage) and dest.endpoint_url == self.endpoint_url

    def _copy_within(self, key: str, dest: Storage, dest_key: str) -> bool:
        if not isinstance(dest, S3Storage) or not self._server_side(dest):
            return False
        from boto3.s3.transfer import TransferConfig

        source = {"Bucket": self.bucket, "Key": self._key(key)}
        # One CopyObject up to S3's 5 GiB limit (a single server-side operation); multipart copy above.
        config = TransferConfig(multipart_threshold=5 * 1024**3, multipart_chunksize=512 * 1024**2, max_concurrency=8)
        dest._call("copy to", dest_key, lambda: dest.client.copy(
            source, dest.bucket, dest._key(dest_key), SourceClient=self.client,
            ExtraArgs={"MetadataDirective": "COPY", "ChecksumAlgorithm": "SHA256"}, Config=config,
        ))
        return True


_ABSENT = ("NoSuchKey", "404", "NotFound")
_REFUSED = ("PreconditionFailed", "412", "ConditionalRequestConflict")  # a conditional request's condition failed


def parse_json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def open_storage(uri: str, endpoint_url: str | None = None) -> Storage:
    if uri.startswith("s3://"):
        return S3Storage(uri, endpoint_url)
    if uri.startswith("file://"):
        return FileStorage(uri)
    raise StorageError(f"unsupported storage URI {uri!r}: use s3://bucket/prefix or file:///path")


def storage_of(stand: Stand) -> Storage:
    """A stand's bucket (or directory), as the stands file names it."""
    return open_storage(stand.storage_uri, stand.storage_endpoint_url)
