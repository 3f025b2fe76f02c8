"""ZooFile: one open `zoo://` file, read by chunk with a bounded chunk cache and read-ahead."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fsspec.spec import AbstractBufferedFile

from zoostore.core.digest import Digest
from zoostore.core.errors import BlobNotFoundError, IntegrityError
from zoostore.documents.manifest import FileEntry
from zoostore.storage.recipe import Recipe
from zoostore.zoofs.reading import LocalReader, VersionKept

if TYPE_CHECKING:
    from zoostore.repository import Store
    from zoostore.storage.cache import Cache

#: Decoded chunks an open file keeps (bytes). With 64 KiB average chunks this is 128 chunks;
#: it bounds memory per open file, and must exceed the read-ahead window.
FILE_CHUNK_CACHE = 8 * 1024 * 1024
#: Largest sequential read-ahead (bytes): the window doubles from one chunk up to this, like
#: the kernel's page-cache read-ahead; any non-sequential read resets it to nothing.
DEFAULT_READAHEAD = 4 * 1024 * 1024


class ChunkSource(Protocol):
    """What a ZooFile needs from its filesystem (ZooFileSystem provides it)."""

    cache: Cache | None

    @property
    def zoo(self) -> Store: ...

    def _cached_path(self, blob: Digest) -> Path | None: ...

    def _recipe(self, blob: Digest) -> Recipe: ...

    def _read_local(self, local: Path, entry: FileEntry, start: int, end: int) -> bytes | None: ...

    def _local_reader(self, local: Path, blob: Digest) -> LocalReader: ...

    def _whole(self, model: str, entry: FileEntry, what: str) -> bytes: ...

    def _version_kept(self, model: str, version: str, entry: FileEntry, what: str) -> VersionKept: ...


class ZooFile(AbstractBufferedFile):  # type: ignore[misc]
    """A read-only file in a zoo: random access by chunk, sequential reads with read-ahead.

    `block_size` is the largest read-ahead in bytes (default 4 MiB; 0 turns read-ahead off).
    fsspec's own byte caches (`cache_type=...`) still work on top; the default is "none",
    because this class already caches whole, verified chunks.
    """

    DEFAULT_BLOCK_SIZE = DEFAULT_READAHEAD

    def __init__(self, fs: ChunkSource, path: str, *, entry: FileEntry, model: str,
                 block_size: Any = None, cache_type: str = "none",
                 cache_options: dict[str, Any] | None = None, info: dict[str, Any]) -> None:
        self.entry = entry
        self.model = model
        self._zfs = fs
        self._recipe: Recipe | None = None
        self._chunks: OrderedDict[int, bytes] = OrderedDict()
        self._chunk_bytes = 0
        self._last_end = 0
        self._ahead = 0  # chunks of read-ahead for the next sequential miss
        self._local = fs._cached_path(entry.blob)
        self._reader: LocalReader | None = None
        super().__init__(fs, path, mode="rb", block_size=block_size, cache_type=cache_type,
                         cache_options=cache_options, size=entry.size)
        self.details = info
        self._kept = fs._version_kept(model, info["version"], entry, f"zoo://{path}")

    def _fetch_range(self, start: int, end: int) -> bytes:
        """Bytes [start, end), verified; a NotFoundError if the version went from the store
        since this file was opened and a read needs data that went with it."""
        try:
            return self._fetch(start, end)
        except (IntegrityError, BlobNotFoundError) as exc:
            self._kept.check(exc)
            raise

    def _fetch(self, start: int, end: int) -> bytes:
        start, end = max(0, start), min(end, self.size)
        if start >= end:
            return b""
        fs = self._zfs
        if start == 0 and end == self.size and fs.cache is not None:
            # A whole-file read: through the cache (fetched once, verified by blob id); later
            # reads of this file are then local.
            whole = fs._whole(self.model, self.entry, f"zoo://{self.path}")
            self._local = fs._cached_path(self.entry.blob)
            return whole
        if self._local is not None:
            if self._reader is None:
                try:
                    self._reader = fs._local_reader(self._local, self.entry.blob)
                except OSError:
                    self._local = None
            local = self._reader.read(start, end) if self._reader is not None else None
            if local is not None:
                return local
            self._local = None  # the cached copy changed: read from the store from now on
        blobs = fs.zoo.blobs
        if self._recipe is None:
            self._recipe = fs._recipe(self.entry.blob)
        recipe = self._recipe
        cover = recipe.covering(start, end)
        sequential = start == self._last_end
        self._last_end = end
        span = recipe.starts[cover.stop - 1] + recipe.chunks[cover.stop - 1].raw_length - recipe.starts[cover.start]
        if span > FILE_CHUNK_CACHE // 2:
            # Too big to keep: read straight through (still only the covering chunks).
            self._ahead = 0
            return blobs.read_range(self.entry.blob, start, end)
        missing = [i for i in cover if i not in self._chunks]
        fetched: dict[int, bytes] = {}
        if missing:
            first, last = missing[0], missing[-1]
            if sequential:
                last = self._extend(recipe, last)
                self._ahead = min(max(1, self._ahead * 2), 4096)
            else:
                self._ahead = 0
            base = recipe.starts[first]
            data = blobs.read_range(self.entry.blob, base, recipe.starts[last] + recipe.chunks[last].raw_length)
            for i in range(first, last + 1):
                off = recipe.starts[i] - base
                fetched[i] = data[off : off + recipe.chunks[i].raw_length]
        parts = []
        for i in cover:
            chunk = fetched.get(i)
            if chunk is None:
                chunk = self._chunks[i]
                self._chunks.move_to_end(i)
            parts.append(chunk)
        self._keep(fetched)
        joined = b"".join(parts)
        offset = start - recipe.starts[cover.start]
        return joined[offset : offset + (end - start)]

    def _extend(self, recipe: Recipe, last: int) -> int:
        """The last chunk to fetch when reading ahead `self._ahead` chunks, within the
        read-ahead byte limit (`block_size`)."""
        limit = int(self.blocksize or 0)
        total = 0
        for _ in range(self._ahead):
            nxt = last + 1
            if nxt >= len(recipe.chunks) or total + recipe.chunks[nxt].raw_length > limit:
                break
            total += recipe.chunks[nxt].raw_length
            last = nxt
        return last

    def _keep(self, fetched: Mapping[int, bytes]) -> None:
        for i, data in fetched.items():
            if i in self._chunks:
                continue
            self._chunks[i] = data
            self._chunk_bytes += len(data)
        while self._chunk_bytes > FILE_CHUNK_CACHE and len(self._chunks) > 1:
            _, old = self._chunks.popitem(last=False)
            self._chunk_bytes -= len(old)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._chunks.clear()
        self._chunk_bytes = 0
        super().close()
