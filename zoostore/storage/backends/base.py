"""The storage interface: a handful of primitives every store location provides.

Keys are relative POSIX paths under the store root (`packs/3f/3fa9...`). Every method is
blocking and thread-safe; callers run them from a thread pool for concurrency.

Capabilities are data (`Capabilities`), so operations can refuse early with a clear message
(for instance, `publish` to an `https://` store) instead of failing halfway.

Compare-and-swap is checked, not assumed. A backend whose server may ignore conditional writes
(S3-compatible servers, any fsspec filesystem) refuses `put_cas`, the manifest write, with
`CasUnsupportedError` unless the user chose single-writer mode: storage option
`single_writer=True` or `ZOOSTORE_SINGLE_WRITER=1` (docs/remote-stores.md). In that mode the user
promises that one process at a time writes manifests; nothing else checks it.
"""

from __future__ import annotations

import abc
import builtins
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from zoostore.core.records import dataclass
from zoostore.storage.backends.retry import RetryPolicy

#: Environment variable that opts every store into single-writer mode ("1", "true", "yes").
SINGLE_WRITER_ENV = "ZOOSTORE_SINGLE_WRITER"
#: Attempts of `Backend.put`'s read-then-compare-and-swap loop before it gives up.
PUT_ATTEMPTS = 20


def flag_option(options: dict[str, Any], key: str, env: str | None = None) -> bool:
    """Pop the yes/no storage option `key` (true/false, 1/0, yes/no, on/off); else read `env` if
    given. Anything else is a UsageError: a misspelt "ture" must not quietly mean no."""
    value = options.pop(key, None)
    source = f"storage option {key}"
    if value is None and env:
        value, source = os.environ.get(env, ""), f"${env}"
    if value is None or isinstance(value, bool):
        return bool(value)
    word = str(value).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("", "0", "false", "no", "off"):
        return False
    from zoostore.core.errors import UsageError

    raise UsageError(f"{source} = {value!r}: expected true or false (also 1/0, yes/no, on/off)")


def single_writer_option(options: dict[str, Any]) -> bool:
    """Pop `single_writer` from storage options; else read `ZOOSTORE_SINGLE_WRITER`."""
    return flag_option(options, "single_writer", SINGLE_WRITER_ENV)

#: Backoff between `Backend.put` rounds: short, as a lost round means another writer made progress.
_PUT_BACKOFF = RetryPolicy(base=0.05, cap=2.0)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object as `list` and `stat` see it. `mtime` is in seconds since the epoch,
    on the store's clock (not necessarily this machine's)."""

    key: str
    size: int
    mtime: float


@dataclass(frozen=True, slots=True)
class Versioned:
    """Object bytes plus an opaque token that `put_cas` compares against (an ETag on S3)."""

    data: bytes
    token: str


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, as data: writes, deletes, listing, atomic compare-and-swap, consistent lists."""

    writes: bool = True
    deletes: bool = True
    listing: bool = True
    #: put_cas is atomic against concurrent writers (S3 conditional writes, local lock file).
    #: On S3 it becomes what the server showed on the first `put_cas` (see `S3Backend`).
    atomic_cas: bool = True
    #: `list` shows every completed write, overwrite and `freshen` as promptly as `stat` does
    #: (AWS S3 lists are strongly consistent since 2020-12; a directory trivially). gc then
    #: re-checks its deletion candidates from a listing instead of one stat each; without it
    #: (fsspec filesystems may answer from a listing cache) gc stats them.
    fresh_listing: bool = False


#: Keys per list page: S3's ListObjectsV2 maximum and default. A local store pages the same, so
#: that gc's cost estimates (ops/gc/deletes.py) hold for both.
LIST_PAGE = 1000


class ObjectWriter:
    """An object written in pieces whose key is known only at the end (a pack: its key is the
    hash of its bytes). `commit(key)` stores it with `put_if_absent`'s contract; `discard()`
    drops it. This default keeps the pieces in memory for one `put_if_absent`; a local store
    writes them to a temp file as they come. Pieces are written from one thread at a time."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._parts: builtins.list[bytes] = []

    def write(self, parts: Sequence[bytes]) -> None:
        self._parts.extend(parts)

    def commit(self, key: str) -> bool:
        data, self._parts = b"".join(self._parts), []
        return self._backend.put_if_absent(key, data)

    def discard(self) -> None:
        self._parts = []


class Backend(abc.ABC):
    """Primitives over one store location. Subclasses override the abstract methods; the
    concrete ones are defaults built on them."""

    url: str
    capabilities: Capabilities = Capabilities()
    #: The user promised that one process at a time writes manifests (see the module docstring).
    single_writer: bool = False

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The whole object. Raises `ObjectNotFoundError` if absent."""

    @abc.abstractmethod
    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes `[start, end)` of the object, exactly `end - start` of them unless the object
        is shorter (then up to its end). Must never return bytes from another offset, even
        when a server ignores Range headers. Raises `ObjectNotFoundError` if absent."""

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Several ranges of one object; default: one request each."""
        return [self.get_range(key, start, end) for start, end in ranges]

    def get_range_into(self, key: str, start: int, buf: bytearray) -> int:
        """Bytes `[start, start + len(buf))` of the object into `buf`; returns how many (fewer
        only at the object's end). Same contract as `get_range`, which the default calls; a
        local backend reads straight into `buf` (no fresh buffer per read)."""
        data = self.get_range(key, start, start + len(buf))
        buf[: len(data)] = data
        return len(data)

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and mtime. Raises `ObjectNotFoundError` if absent."""

    def exists(self, key: str) -> bool:
        from zoostore.core.errors import ObjectNotFoundError

        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write `data` under `key` unless the key exists. Returns True if this call wrote it,
        False if it was already there (content-addressed keys: losing the race to an identical
        writer is success). Readers never see a partial object."""

    def object_writer(self, prefix: str) -> ObjectWriter:
        """A writer for one object under `prefix/` whose key is chosen at `commit` (ObjectWriter)."""
        return ObjectWriter(self)

    @abc.abstractmethod
    def get_versioned(self, key: str) -> Versioned:
        """The object and its CAS token. Raises `ObjectNotFoundError` if absent."""

    @abc.abstractmethod
    def put_cas(self, key: str, data: bytes, *, expected: str | None) -> str:
        """Replace the object only if its current token is `expected` (`None`: only if the key
        does not exist). Returns the new token. Raises `ConflictError` when another writer got
        there first; the caller re-reads, re-applies its change and retries."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix` (a directory-like prefix ending in "/"
        or ""), recursively, in no particular order. Empty when nothing matches."""

    def list_pages(self, prefix: str) -> Iterator[builtins.list[ObjectInfo]]:
        """`list(prefix)` in pages. Each page is read when the iterator is advanced to it, never
        ahead, so a caller that reads its clock before advancing knows that every object in
        the page was observed after that instant (gc's settle window counts from there).
        Default: the whole listing as one page."""
        yield list(self.list(prefix))

    @abc.abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete keys; absent keys are ignored. Backends batch where the service allows
        (S3: 1,000 keys per request)."""

    @abc.abstractmethod
    def freshen(self, key: str) -> None:
        """Set the object's mtime to the store's current time (gc's grace-period rule: a
        publisher reusing an old object freshens it so gc does not delete it underneath).
        Raises `ObjectNotFoundError` if absent."""

    @abc.abstractmethod
    def now(self) -> float:
        """The store's clock, in seconds since the epoch, comparable with `ObjectInfo.mtime`."""

    def put(self, key: str, data: bytes) -> None:
        """Unconditional overwrite (for mutable, non-shared objects); default via CAS loop,
        bounded: `ConflictError` after `PUT_ATTEMPTS` lost rounds."""
        from zoostore.core.errors import ConflictError, LockTimeoutError, ObjectNotFoundError

        last: ConflictError | None = None
        for attempt in range(PUT_ATTEMPTS):
            try:
                token: str | None = self.get_versioned(key).token
            except ObjectNotFoundError:
                token = None
            try:
                self.put_cas(key, data, expected=token)
                return
            except LockTimeoutError:
                raise
            except ConflictError as e:
                last = e
                time.sleep(_PUT_BACKOFF.delay(attempt))
        raise ConflictError(
            f"overwrite of {key!r} in {self.url} gave up after {PUT_ATTEMPTS} compare-and-swap "
            f"rounds, each lost (last: {last}). Either other writers keep changing it, or the "
            "server does not honour conditional writes (If-Match); retry later, or check the "
            "server (docs/remote-stores.md)"
        )

    def refuse_unsafe_cas(self, key: str, why: str) -> None:
        """Raise `CasUnsupportedError` for a manifest write unless in single-writer mode."""
        from zoostore.core.errors import CasUnsupportedError

        if self.single_writer:
            return
        raise CasUnsupportedError(
            f"refusing to write {key!r} in {self.url}: {why}, so two processes writing at once "
            "could silently lose each other's versions. If only one process at a time publishes, "
            "tags, yanks or collects garbage in this store, opt in to single-writer mode with "
            "ZOOSTORE_SINGLE_WRITER=1 (or storage option single_writer=true); otherwise use a "
            "server that honours If-None-Match and If-Match (docs/remote-stores.md)"
        )

    def close(self) -> None:
        """Release connections; default: nothing."""
