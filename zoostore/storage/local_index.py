"""Which chunks the local cache already holds, by model: what a sync reads from cached older
versions instead of the store (the chunk-reuse part of `zoostore.storage.cache`).

    models/<model>        blob ids cached for a model, one per line (append-only hint)
    recipes/<aa>/<hex>    each cached file's recipe: its chunks and where they start
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from zoostore.core.digest import Digest
from zoostore.storage.blobs import LocalChunk
from zoostore.storage.recipe import Recipe


class CacheFiles(Protocol):
    """What the index reads of the cache (zoostore.storage.cache.Cache)."""

    def blob_path(self, blob: Digest) -> Path: ...
    def cached_recipe(self, blob: Digest) -> Recipe | None: ...
    def model_blobs(self, model: str) -> list[Digest]: ...
    def _append_model(self, model: str, *blobs: Digest) -> None: ...


def add_chunks(index: dict[Digest, LocalChunk], path: Path, recipe: Recipe) -> None:
    for ref, start in zip(recipe.chunks, recipe.starts):
        index.setdefault(ref.chunk, LocalChunk(path, start, ref.raw_length))


class LocalIndex:
    """Chunk id -> where a cached file of the same model holds it, for one sync (see the module
    docstring). Thread-safe: a sync fills several files at once. Chunks are only ever added;
    an entry whose file changed since is harmless (the reader verifies every local chunk and
    fetches the ones that no longer match)."""

    def __init__(self, cache: CacheFiles, *, batch: bool = False) -> None:
        self._cache = cache
        self._lock = threading.Lock()
        # batch: models/<model> lines wait for `flush` (one append per model, not per file)
        self._pending: dict[str, list[Digest]] | None = {} if batch else None
        self._members: dict[str, set[Digest]] = {}       # models/<model>, read once, plus notes
        self._unread: dict[str, list[Digest]] = {}       # members whose recipes are not indexed yet
        self._chunks: dict[str, dict[Digest, LocalChunk]] = {}

    def _members_of(self, model: str) -> set[Digest]:
        members = self._members.get(model)
        if members is None:
            members = self._members[model] = set(self._cache.model_blobs(model))
            self._unread[model] = list(members)
        return members

    def chunks(self, model: str) -> Mapping[Digest, LocalChunk]:
        """The chunks of the model's cached files. The mapping is live: files noted later join
        it. The first call per model reads the recipes of the model's cached files (none for a
        model with nothing cached); later calls read only files noted without a recipe."""
        with self._lock:
            self._members_of(model)
            index = self._chunks.setdefault(model, {})
            for blob in self._unread.pop(model, []):
                path = self._cache.blob_path(blob)
                recipe = self._cache.cached_recipe(blob) if path.is_file() else None
                if recipe is not None:
                    add_chunks(index, path, recipe)
            return index

    def note(self, model: str, blob: Digest, recipe: Recipe | None = None, *, path: Path | None = None) -> None:
        """Record that the cache holds `blob` for `model` (models/<model> gets it once). With
        its `recipe` (a file just fetched) its chunks join the index without any read; `path`
        is its cached file, when the caller has it at hand."""
        with self._lock:
            members = self._members_of(model)
            if blob not in members:
                members.add(blob)
                if self._pending is None:
                    self._cache._append_model(model, blob)
                else:
                    self._pending.setdefault(model, []).append(blob)
                if recipe is None:
                    self._unread.setdefault(model, []).append(blob)
            if recipe is not None:
                add_chunks(self._chunks.setdefault(model, {}), path or self._cache.blob_path(blob), recipe)


    def flush(self) -> None:
        """Append the blobs noted since to models/<model> (a batch index; else nothing to do).
        Best effort, like the hint file itself: a sync killed before it only loses reuse."""
        with self._lock:
            pending, self._pending = self._pending, {} if self._pending is not None else None
        for model, blobs in (pending or {}).items():
            self._cache._append_model(model, *blobs)


def partial_chunks(partial: Path, recipe: Recipe) -> dict[Digest, LocalChunk]:
    """The chunks a kept partial file holds whole (its prefix); the reader's whole-file hash
    checks them, and after a mismatch each is verified on its own (BlobStore.get_file), so a
    damaged partial file costs a download, never wrong bytes."""
    try:
        size = partial.stat().st_size
    except OSError:
        return {}
    return {ref.chunk: LocalChunk(partial, start, ref.raw_length)
            for ref, start in zip(recipe.chunks, recipe.starts) if start + ref.raw_length <= size}
