"""Generic backend over any fsspec filesystem (gs://, az://, sftp://, ...): best effort.

    <protocol>://<root>/zoostore.toml        key "zoostore.toml"
    <protocol>://<root>/packs/3f/3fa9...e1

UNSAFE FOR CONCURRENT PUBLISHERS (`atomic_cas=False`). fsspec has no portable conditional write,
so this backend checks, then writes:
- put_if_absent: `exists`, then `pipe_file`. Two racing writers may both write and both return
  True; for content-addressed keys their bytes are identical, so nothing is lost. Object stores
  make a single PUT visible all at once; on file-like filesystems a reader may see a partial object
  (zoostore verifies every hash, so it fails loudly rather than silently).
- put_cas: read, compare the BLAKE3 hex token, write. Two racing publishers can lose each other's
  manifest change, so put_cas (the manifest write) is refused with `CasUnsupportedError` unless
  the user chose single-writer mode (`single_writer=True` or `ZOOSTORE_SINGLE_WRITER=1`: publish
  from one place at a time), or use a native backend (s3://, a local or NFS directory) where CAS
  is atomic.
- freshen: `touch(truncate=False)` where the filesystem supports it, else rewrite the object with
  its own bytes (which sets a new modification time).
- now(): modification time of a probe `tmp/clock-<uuid>`, written and deleted; this machine's
  clock if the filesystem reports no times.
Modification times are read from whichever of `mtime`, `LastModified`, `updated`, `last_modified`,
`modified`, `created` the filesystem's `info` returns.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import blake3
import fsspec
from fsspec.core import url_to_fs

from zoostore.storage.backends.base import Backend, Capabilities, ObjectInfo, Versioned, single_writer_option
from zoostore.core.errors import ConflictError, ObjectNotFoundError

_MTIME_FIELDS = ("mtime", "LastModified", "updated", "last_modified", "modified", "created")


def _token(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def _mtime(info: dict[str, Any]) -> float | None:
    for name in _MTIME_FIELDS:
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.timezone.utc)
            return parsed.timestamp()
    return None


class GenericBackend(Backend):
    """A best-effort `Backend` over an fsspec URL; see the module docstring for what it lacks."""

    capabilities = Capabilities(atomic_cas=False)

    def __init__(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        options = {"skip_instance_cache": True, **(storage_options or {})}
        self.single_writer = single_writer_option(options)
        fs, root = url_to_fs(url, **options)
        self.fs: fsspec.AbstractFileSystem = fs
        self.url = url.rstrip("/")
        self._root = root.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def _missing(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"object {key!r} not found in {self.url}", key=key)

    def get(self, key: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self._path(key)))
        except (FileNotFoundError, IsADirectoryError):
            raise self._missing(key) from None

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end}) for {key!r}")
        size = self.stat(key).size
        if start >= min(end, size):
            return b""
        try:
            data = bytes(self.fs.cat_file(self._path(key), start=start, end=min(end, size)))
        except (FileNotFoundError, IsADirectoryError):
            raise self._missing(key) from None
        return data[: end - start]

    def stat(self, key: str) -> ObjectInfo:
        try:
            info = self.fs.info(self._path(key))
        except FileNotFoundError:
            raise self._missing(key) from None
        if info.get("type") == "directory":
            raise self._missing(key)
        mtime = _mtime(info)
        return ObjectInfo(key=key, size=int(info.get("size") or 0), mtime=time.time() if mtime is None else mtime)

    def get_versioned(self, key: str) -> Versioned:
        data = self.get(key)
        return Versioned(data=data, token=_token(data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        if self.fs.exists(path):
            return False
        self._write(path, data)
        return True

    def _write(self, path: str, data: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        self.fs.pipe_file(path, bytes(data))

    def put_cas(self, key: str, data: bytes, *, expected: str | None) -> str:
        self.refuse_unsafe_cas(key, f"fsspec's {type(self.fs).__name__} has no conditional write")
        try:
            current: str | None = self.get_versioned(key).token
        except ObjectNotFoundError:
            current = None
        if current != expected:
            raise ConflictError(
                f"compare-and-swap on {key!r} in {self.url} lost: expected "
                f"{'no object' if expected is None else 'token ' + expected} but found "
                f"{'no object' if current is None else 'token ' + current}; "
                "re-read the object, re-apply the change and retry"
            )
        self._write(self._path(key), data)
        return _token(data)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(base) if base else self._root
        try:
            found = self.fs.find(start, detail=True)
        except FileNotFoundError:
            return
        root = self._root + "/"
        for name, info in found.items():
            if info.get("type") == "directory" or not name.startswith(root):
                continue
            key = name[len(root) :]
            if not key.startswith(prefix):
                continue
            mtime = _mtime(info)
            yield ObjectInfo(key=key, size=int(info.get("size") or 0), mtime=time.time() if mtime is None else mtime)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.fs.rm_file(self._path(key))
            except FileNotFoundError:
                pass

    def freshen(self, key: str) -> None:
        path = self._path(key)
        if not self.fs.exists(path):
            raise self._missing(key)
        try:
            self.fs.touch(path, truncate=False)
        except (NotImplementedError, ValueError, TypeError):
            self.fs.pipe_file(path, self.get(key))

    def now(self) -> float:
        probe = self._path(f"tmp/clock-{uuid.uuid4().hex}")
        try:
            self._write(probe, b"")
            mtime = _mtime(self.fs.info(probe))
        finally:
            try:
                self.fs.rm_file(probe)
            except FileNotFoundError:
                pass
        return time.time() if mtime is None else mtime
