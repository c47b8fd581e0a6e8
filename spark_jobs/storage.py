"""One interface over the two places a lake can live: a local folder (embedded default) or S3.

Paths inside a store are ``/``-separated and relative to its root, so stages never branch on where
the lake is.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol


@dataclass(frozen=True)
class StoredFile:
    path: str  # relative to the store's root
    size: int
    version: str = ""  # changes whenever the file is rewritten: S3 ETag + LastModified, local size + mtime


class Store(Protocol):
    root: str

    def uri(self, path: str) -> str: ...
    def exists(self, path: str) -> bool: ...
    def list(self, prefix: str) -> list[StoredFile]: ...
    def list_after(self, prefix: str, start_after: str | None, limit: int | None) -> list[StoredFile]: ...
    def open_read(
        self, path: str, start: int = 0, end: int | None = None
    ) -> contextlib.AbstractContextManager[IO[bytes]]:
        """The file's bytes from ``start`` up to ``end`` (exclusive; None: its end)."""
        ...

    def open_write(self, path: str) -> contextlib.AbstractContextManager[IO[bytes]]: ...
    def delete(self, path: str) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def create_exclusive(self, path: str, body: bytes) -> bool: ...


def store_for(root: str, session: Any = None) -> Store:
    """A store rooted at a local path or an ``s3://bucket/prefix`` URI (S3 through ``session``, a
    boto3 Session, when given)."""
    return S3Store(root, session) if root.startswith("s3://") else LocalStore(root)


def store_with(root: str, credentials: dict[str, dict[str, str]]) -> Store:
    """``store_for`` in a Spark job: S3 with the run's temporary keys for the bucket when it has
    them (a role chain's, ``RunSpec.s3_credentials``), else the job's own credentials."""
    keys = credentials.get(root.removeprefix("s3://").split("/", 1)[0]) if root.startswith("s3://") else None
    if not keys:
        return store_for(root)
    return store_for(root, _session((keys["access_key"], keys["secret_key"], keys["session_token"])))


def _session(keys: tuple[str, str, str | None]) -> Any:
    """A boto3 Session on these keys (access key, secret key, session token)."""
    import boto3

    return boto3.Session(*keys)


def read_json(store: Store, path: str) -> Any:
    with store.open_read(path) as f:
        return json.load(f)


def read_json_if_exists(store: Store, path: str) -> Any | None:
    return read_json(store, path) if store.exists(path) else None


def write_json(store: Store, path: str, data: Any) -> None:
    with store.open_write(path) as f:
        f.write(json.dumps(data, indent=2, sort_keys=True).encode())


class _Window(io.RawIOBase):
    """At most ``length`` bytes of an open file, from where it stands (all of them: None)."""

    def __init__(self, f: IO[bytes], length: int | None) -> None:
        self._f, self._left = f, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = len(buffer) if self._left is None else min(len(buffer), self._left)
        chunk = self._f.read(want)
        buffer[: len(chunk)] = chunk
        if self._left is not None:
            self._left -= len(chunk)
        return len(chunk)


class LocalStore:
    def __init__(self, root: str) -> None:
        self.root = str(Path(root))

    def uri(self, path: str) -> str:
        return str(Path(self.root, path))

    def exists(self, path: str) -> bool:
        return Path(self.root, path).is_file()

    def list(self, prefix: str) -> list[StoredFile]:
        return self.list_after(prefix, None, None)

    def list_after(self, prefix: str, start_after: str | None, limit: int | None) -> list[StoredFile]:
        """Files under ``prefix`` whose path sorts after ``start_after``, in S3's (byte) order.

        Walks directories in key order and skips every subtree that sorts wholly before the marker,
        so a date-ordered landing zone costs a walk of the new days, not of its whole history.
        """
        out: list[StoredFile] = []
        prefix = prefix.strip("/")

        def walk(directory: Path, rel: str) -> bool:  # True once `limit` files are collected
            entries = sorted(os.scandir(directory), key=lambda e: e.name + ("/" if e.is_dir() else ""))
            for entry in entries:
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    sub = path + "/"
                    if start_after and sub < start_after and not start_after.startswith(sub):
                        continue  # every key in this subtree sorts before the marker
                    if walk(Path(entry.path), path):
                        return True
                elif entry.is_file() and (start_after is None or path > start_after):
                    st = entry.stat()
                    out.append(StoredFile(path, st.st_size, f"{st.st_size}-{st.st_mtime_ns}"))
                    if limit is not None and len(out) >= limit:
                        return True
            return False

        base = Path(self.root, prefix)
        if base.is_dir():
            walk(base, prefix)
        return out

    @contextlib.contextmanager
    def open_read(self, path: str, start: int = 0, end: int | None = None) -> Iterator[IO[bytes]]:
        with open(Path(self.root, path), "rb") as f:
            if start or end is not None:
                f.seek(start)
                yield _Window(f, None if end is None else end - start)
            else:
                yield f

    @contextlib.contextmanager
    def open_write(self, path: str) -> Iterator[IO[bytes]]:
        """Write to a temporary sibling and rename, so readers never see a half-written file."""
        target = Path(self.root, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, path: str) -> None:
        Path(self.root, path).unlink(missing_ok=True)

    def create_exclusive(self, path: str, body: bytes) -> bool:
        """Create the file, whole, only if it does not exist; False when it does. Written to a
        temporary sibling, then hard-linked into place: the link is atomic and fails if the name
        exists, so no reader ever sees it empty."""
        target = Path(self.root, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    def delete_prefix(self, prefix: str) -> int:
        base = Path(self.root, prefix)
        if not base.exists():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file())
        shutil.rmtree(base)
        return count


def _version(obj: dict[str, Any]) -> str:
    """ETag and LastModified: a rewrite changes LastModified even when the bytes are the same."""
    etag = obj["ETag"].strip('"')
    return f"{etag}@{obj['LastModified'].isoformat()}"


def _reconnected(root: str, keys: tuple[str, str, str | None] | None) -> S3Store:
    return S3Store(root, _session(keys) if keys else None)


class S3Store:
    def __init__(self, root: str, session: Any = None) -> None:
        import boto3
        from botocore.config import Config

        self.root = root.rstrip("/")
        bucket, _, prefix = self.root.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, prefix
        # The dump uploads several files at once, each in parallel parts: room for them all.
        self._s3 = (session or boto3).client("s3", config=Config(max_pool_connections=64))
        self._session = session

    def __reduce__(self) -> tuple[Any, ...]:
        """Sent to another process (a Spark worker), the store connects again there: with the keys
        its session holds now (a role chain's then expire, as a Spark job's do), else with that
        process's own credentials."""
        keys = None
        if self._session is not None:
            frozen = self._session.get_credentials().get_frozen_credentials()
            keys = (frozen.access_key, frozen.secret_key, frozen.token)
        return (_reconnected, (self.root, keys))

    def _key(self, path: str) -> str:
        return f"{self.prefix}/{path}".lstrip("/") if self.prefix else path

    def uri(self, path: str) -> str:
        return f"s3://{self.bucket}/{self._key(path)}"

    def exists(self, path: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(path))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str) -> list[StoredFile]:
        return self.list_after(prefix, None, None)

    def list_after(self, prefix: str, start_after: str | None, limit: int | None) -> list[StoredFile]:
        """Objects under ``prefix`` whose key sorts after ``start_after`` (``StartAfter``), at most ``limit``.

        S3 lists in key order and starts at the marker, so with date-ordered keys a caller that
        remembers where it stopped pays for what is new, not for the whole prefix.
        """
        key_prefix = self._key(prefix).rstrip("/") + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key_prefix}
        if start_after:
            kwargs["StartAfter"] = self._key(start_after)
        if limit is not None:
            kwargs["PaginationConfig"] = {"MaxItems": limit, "PageSize": min(limit, 1000)}
        out = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(**kwargs):
            out += [StoredFile(o["Key"][strip:], o["Size"], _version(o)) for o in page.get("Contents", [])]
        return out

    @contextlib.contextmanager
    def open_read(self, path: str, start: int = 0, end: int | None = None) -> Iterator[IO[bytes]]:
        last = "" if end is None else end - 1
        span = {"Range": f"bytes={start}-{last}"} if start or end is not None else {}
        body = self._s3.get_object(Bucket=self.bucket, Key=self._key(path), **span)["Body"]
        try:
            yield body
        finally:
            body.close()

    @contextlib.contextmanager
    def open_write(self, path: str) -> Iterator[IO[bytes]]:
        """Spool locally and upload on close: an S3 object appears whole or not at all."""
        with tempfile.SpooledTemporaryFile(max_size=64 * 2**20) as f:
            yield f
            f.seek(0)
            self._s3.upload_fileobj(f, self.bucket, self._key(path))

    def delete(self, path: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(path))

    def create_exclusive(self, path: str, body: bytes) -> bool:
        """Create the object only if no object has the key (a conditional write, ``If-None-Match: *``);
        False when one does. S3 decides atomically, so two writers never both succeed."""
        from botocore.exceptions import ClientError

        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(path), Body=body, IfNoneMatch="*")
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "412",
                "ConditionalRequestConflict",
            ):
                return False
            raise
        return True

    def delete_prefix(self, prefix: str) -> int:
        keys = [self._key(f.path) for f in self.list(prefix)]
        for i in range(0, len(keys), 1000):
            self._s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]}
            )
        return len(keys)
