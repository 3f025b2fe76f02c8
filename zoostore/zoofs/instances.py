"""fsspec's instance cache for `zoo://`, keyed on the store actually used."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fsspec.config import apply_config
from fsspec.spec import _Cached

from zoostore.documents.project import find_store, find_store_url
from zoostore.core.offline import offline_requested
from zoostore.repository import Store
from zoostore.storage.cache import default_cache_dir


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
        return super().__call__(*args, **kwargs)
