"""In-process memory backend: tests, examples and throwaway stores.

    memory://<name>/<key>   ->   _REGISTRY["<name>"].objects["<key>"] = (bytes, mtime)

Every `MemoryBackend` opened on the same `memory://` path shares one `MemoryStore`, like
fsspec's memory filesystem, so `open_backend("memory://x")` twice sees the same objects.
Unlike fsspec, the state lives per path in a module-level registry, never in class attributes,
and `MemoryStore.clear` / `forget` let tests start from nothing. Different paths never share
objects (`memory://a` does not see `memory://a2`, nor `memory://a/b` as a prefix of it).

One `threading.Lock` per store makes every write atomic, so `put_cas` is a true
compare-and-swap across threads (`atomic_cas=True`); there is no sharing across processes.

The CAS token is the BLAKE3 hex digest of the object's bytes (same rule as the local backend):
two writes of identical bytes give identical tokens, which is harmless for CAS because the
caller's read-modify-write saw exactly those bytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import field

import blake3

from zoostore.core.records import dataclass
from zoostore.storage.backends.base import Backend, Capabilities, ObjectInfo, Versioned
from zoostore.core.errors import ConflictError, ObjectNotFoundError


def _token(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


@dataclass(slots=True)
class MemoryStore:
    """The shared state of one `memory://` path: key -> (bytes, mtime), guarded by `lock`."""

    objects: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.objects.clear()


_REGISTRY: dict[str, MemoryStore] = {}
_REGISTRY_LOCK = threading.Lock()


def _normalise(path: str) -> str:
    return path.strip("/")


def store_for(path: str) -> MemoryStore:
    """The shared store of a `memory://` path (created empty on first use)."""
    name = _normalise(path)
    with _REGISTRY_LOCK:
        store = _REGISTRY.get(name)
        if store is None:
            store = _REGISTRY[name] = MemoryStore()
        return store


def forget(path: str) -> None:
    """Drop a `memory://` path from the registry; the next open starts empty."""
    with _REGISTRY_LOCK:
        _REGISTRY.pop(_normalise(path), None)


class MemoryBackend(Backend):
    """A `Backend` over a `MemoryStore`; `path` is the part after `memory://`."""

    capabilities = Capabilities(fresh_listing=True)

    def __init__(self, path: str = "", *, store: MemoryStore | None = None) -> None:
        name = _normalise(path)
        self.url = f"memory://{name}"
        self._store = store if store is not None else store_for(name)

    def _missing(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(
            f"object {key!r} not found in {self.url}: nothing was written under that key",
            key=key,
        )

    def _entry(self, key: str) -> tuple[bytes, float]:
        with self._store.lock:
            entry = self._store.objects.get(key)
        if entry is None:
            raise self._missing(key)
        return entry

    def get(self, key: str) -> bytes:
        return self._entry(key)[0]

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end}) for {key!r}")
        return self._entry(key)[0][start:end]

    def stat(self, key: str) -> ObjectInfo:
        data, mtime = self._entry(key)
        return ObjectInfo(key=key, size=len(data), mtime=mtime)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        data = bytes(data)
        with self._store.lock:
            if key in self._store.objects:
                return False
            self._store.objects[key] = (data, time.time())
            return True

    def get_versioned(self, key: str) -> Versioned:
        data = self.get(key)
        return Versioned(data=data, token=_token(data))

    def put_cas(self, key: str, data: bytes, *, expected: str | None) -> str:
        data = bytes(data)
        with self._store.lock:
            entry = self._store.objects.get(key)
            current = None if entry is None else _token(entry[0])
            if current != expected:
                raise ConflictError(
                    f"compare-and-swap on {key!r} in {self.url} lost: expected "
                    f"{'no object' if expected is None else 'token ' + expected} but found "
                    f"{'no object' if current is None else 'token ' + current}; "
                    "re-read the object, re-apply the change and retry"
                )
            self._store.objects[key] = (data, time.time())
        return _token(data)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._store.lock:
            items = [(k, len(d), m) for k, (d, m) in self._store.objects.items() if k.startswith(prefix)]
        for key, size, mtime in items:
            yield ObjectInfo(key=key, size=size, mtime=mtime)

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)  # materialise outside the lock: `keys` may be a lazy generator
        with self._store.lock:
            for key in keys:
                self._store.objects.pop(key, None)

    def freshen(self, key: str) -> None:
        with self._store.lock:
            entry = self._store.objects.get(key)
            if entry is None:
                raise self._missing(key)
            # max(): the mtime never moves backwards even if the wall clock does.
            self._store.objects[key] = (entry[0], max(time.time(), entry[1]))

    def now(self) -> float:
        return time.time()
