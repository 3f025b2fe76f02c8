"""A zoo store: one location (any fsspec URL or a local path) with its config, blobs and
manifests.

    <store>/zoostore.toml            format, chunking, pack size, codecs, gc grace (config.py)
    <store>/packs/<aa>/<pack id>     chunk frames + footer                          (pack.py)
    <store>/blobs/<aa>/<blob id>     recipe of one file                              (recipe.py)
    <store>/manifests/<model>.toml   versions, tags, per-arch files of one model     (manifest.py)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from zoostore.backend import Backend, open_backend
from zoostore.blobstore import BlobStore
from zoostore.config import CONFIG_KEY, StoreConfig
from zoostore.errors import ObjectNotFoundError, StoreExistsError, StoreNotFoundError

if TYPE_CHECKING:
    from zoostore.zoo import Zoo


class Store:
    """An opened store. Cheap to create; holds no connections until used."""

    def __init__(self, backend: Backend, config: StoreConfig) -> None:
        self.backend = backend
        self.config = config
        self.url = backend.url
        self.blobs = BlobStore(backend, config)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # Model-level API (manifests) is attached by zoostore.zoo to keep layers apart.


def open_store(url: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> Zoo:
    """Open an existing store. Raises StoreNotFoundError when the location holds no
    `zoostore.toml`, NewerFormatError when a newer zoostore wrote it."""
    from zoostore.zoo import Zoo

    backend = open_backend(os.fspath(url), storage_options=storage_options)
    try:
        text = backend.get(CONFIG_KEY).decode("utf-8")
    except ObjectNotFoundError:
        raise StoreNotFoundError(
            f"no zoostore store at {backend.url}: {CONFIG_KEY} is missing. Check the URL, or "
            f"create a store there with 'zoostore init {url}'"
        ) from None
    config = StoreConfig.from_toml(text, where=f"{backend.url.rstrip('/')}/{CONFIG_KEY}")
    return Zoo(backend, config)


def init_store(url: str | os.PathLike[str], *, config: StoreConfig | None = None,
               storage_options: dict[str, Any] | None = None) -> tuple[Zoo, bool]:
    """Create a store (write `zoostore.toml`). Returns (store, created). An existing store with
    the same parameters is fine (created=False); one with different ones is refused."""
    from zoostore.zoo import Zoo

    config = config or StoreConfig()
    backend = open_backend(os.fspath(url), storage_options=storage_options)
    created = backend.put_if_absent(CONFIG_KEY, config.to_toml().encode())
    if not created:
        existing = StoreConfig.from_toml(backend.get(CONFIG_KEY).decode("utf-8"))
        if existing != config:
            raise StoreExistsError(
                f"{backend.url} already holds a zoostore store with other parameters "
                f"({existing}); a store's chunking never changes. Use it as it is, or choose "
                f"another location"
            )
        config = existing
    return Zoo(backend, config), created
