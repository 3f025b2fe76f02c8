"""Verified reads for `zoo://`: a byte range of a cached file checked chunk by chunk, a whole
file streamed from the store and checked against its blob id, and fsspec's start/end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import blake3

from zoostore.core.errors import IntegrityError
from zoostore.documents.manifest import FileEntry
from zoostore.storage.recipe import Recipe

if TYPE_CHECKING:
    from zoostore.repository import Store


def read_local(local: Path, recipe: Recipe, start: int, end: int) -> bytes | None:
    """Bytes [start, end) of a cached file, each covering chunk checked against its id.
    None when the cached copy no longer matches (a hard-linked copy of it in some project
    was written to in place); the caller then reads from the store."""
    cover = recipe.covering(start, end)
    base = recipe.starts[cover.start]
    last = recipe.chunks[cover.stop - 1]
    stop = recipe.starts[cover.stop - 1] + last.raw_length
    try:
        with open(local, "rb") as f:
            f.seek(base)
            data = f.read(stop - base)
    except OSError:
        return None
    view = memoryview(data)
    for i in cover:
        ref = recipe.chunks[i]
        off = recipe.starts[i] - base
        piece = view[off : off + ref.raw_length]
        if len(piece) != ref.raw_length or blake3.blake3(piece).digest() != ref.chunk.raw:
            return None
    return data[start - base : end - base]


class LocalReader:
    """Reads of one open cached file: the descriptor stays open (`os.pread`, no open and seek
    per read) and each chunk is hashed the first time this open file reads it, not on every
    read. The cache's files are read-only hard links; one written to in place while open is
    caught when a chunk is first read, and the reader then says so (None) for good."""

    def __init__(self, local: Path, recipe: Recipe) -> None:
        self.recipe = recipe
        self.fd: int | None = os.open(local, os.O_RDONLY)
        self.verified: set[int] = set()

    def read(self, start: int, end: int) -> bytes | None:
        if self.fd is None:
            return None
        recipe = self.recipe
        cover = recipe.covering(start, end)
        base = recipe.starts[cover.start]
        stop = recipe.starts[cover.stop - 1] + recipe.chunks[cover.stop - 1].raw_length
        if all(i in self.verified for i in cover):
            return os.pread(self.fd, end - start, start)  # every byte here was checked already
        try:
            data = os.pread(self.fd, stop - base, base)
        except OSError:
            self.close()
            return None
        view = memoryview(data)
        for i in cover:
            if i in self.verified:
                continue
            ref = recipe.chunks[i]
            off = recipe.starts[i] - base
            piece = view[off : off + ref.raw_length]
            if len(piece) != ref.raw_length or blake3.blake3(piece).digest() != ref.chunk.raw:
                self.close()
                return None
            self.verified.add(i)
        return data[start - base : end - base]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def stream(zoo: Store, entry: FileEntry, what: str) -> Iterator[bytes]:
    """The whole file from the store, chunk by chunk, then checked against its blob id."""
    blobs = zoo.blobs
    hasher = blake3.blake3()
    for data in blobs.iter_chunks(blobs.recipe(entry.blob)):
        hasher.update(data)
        yield data
    actual = hasher.hexdigest()
    if actual != entry.blob.hex:
        raise IntegrityError(
            f"{what}: assembled file hashes to blake3:{actual}, expected {entry.blob}; the "
            f"recipe in {zoo.url} is wrong: run 'zoostore verify --repair'",
            obj=str(entry.blob), expected=entry.blob.hex, actual=actual,
        )


def span(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """Python-slice semantics for fsspec's start/end (None, negative = from the end)."""
    s = 0 if start is None else (max(0, size + start) if start < 0 else min(start, size))
    e = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
    return s, max(s, e)
