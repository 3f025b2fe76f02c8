"""`zoo://` instances across processes: fsspec's instance cache, keyed on the store actually
used; what a forked child does with the instances it inherits; pickling (spawned workers, dask)."""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import Any

from fsspec.config import apply_config
from fsspec.spec import _Cached

from zoostore.core.errors import UsageError
from zoostore.documents.project import find_store, find_store_url
from zoostore.core.offline import offline_requested
from zoostore.repository import Store
from zoostore.storage.cache import Cache, default_cache_dir
from zoostore.zoofs.reading import ReaderPool


class _ZooCached(_Cached):  # type: ignore[misc]  # fsspec ships no type hints
    """fsspec's instance cache, keyed on the store actually used: the store named by the
    environment or a zoo.toml is resolved before the cache token is computed, so two stores
    never share an instance and a pickled instance names its store explicitly."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        kwargs = apply_config(cls, kwargs)
        store = kwargs.get("store")
        if store is None:
            kwargs["store"], defaults = find_store()
            if defaults:  # zoo.toml's [store_options], under any store_options given
                kwargs["store_defaults"] = defaults
        elif not isinstance(store, Store):
            kwargs["store"] = find_store_url(store)
        cache = kwargs.get("cache")
        if cache is None or cache is True:
            kwargs["cache"] = str(default_cache_dir())
        elif cache is not False:
            kwargs["cache"] = str(Path(os.fspath(cache)).expanduser().resolve())
        kwargs["offline"] = offline_requested(kwargs.get("offline"))   # $ZOOSTORE_OFFLINE, now
        fs = super().__call__(*args, **kwargs)
        _LIVE[id(fs)] = fs
        return fs


class AcrossProcesses:
    """What a ZooFileSystem does in another process: it starts over in a forked child
    (`_forked`), and pickles as its options (fsspec's `__reduce__`), which an opened Store
    object given as `store=` cannot be."""

    _store_arg: str | Store
    _zoo: Store | None
    _lock: threading.Lock
    _readers: ReaderPool
    cache: Cache | None

    def _forked(self) -> None:
        """Start over in a forked child: new locks and cache handle, the parent's open cached
        files closed, and a store of our own. One this instance opened is opened again (a new
        backend too: s3fs refuses to run in a fork); a Store object given as `store=` keeps its
        backend and gets new reader threads, locks and reader slots."""
        self._lock = threading.Lock()
        self._readers.abandon()
        self._readers = ReaderPool(self._readers.size)
        if self.cache is not None:
            self.cache = Cache(self.cache.root)
        zoo = self._zoo
        if zoo is not None:
            self._zoo = Store(zoo.backend, zoo.config) if zoo is self._store_arg else None

    def __reduce__(self) -> Any:
        if isinstance(self._store_arg, Store):
            url = self._store_arg.url
            raise UsageError(
                f"cannot pickle a zoo:// filesystem made from an opened Store ({url}), as spawned "
                f"workers and dask need: a Store holds threads and connections. Give the store as a "
                f"URL or path instead (store={url!r}, with store_options=... for its backend): "
                f"such an instance pickles as its options")
        return super().__reduce__()


#: Every live instance, by id (fsspec instances hash by their options: two equal ones would be
#: one entry of a WeakSet).
_LIVE: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _after_fork_in_child() -> None:
    """A forked child (multiprocessing's fork workers, torch DataLoader workers) inherits each
    instance with the parent's locks and store as they were at the fork: a lock or a reader
    slot that another thread of the parent held then stays taken forever, and the store's
    reader threads do not exist. Each instance starts over (`ZooFileSystem._forked`)."""
    for fs in list(_LIVE.values()):
        fs._forked()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
