"""Read segments: how a recipe's chunks are grouped into ranged reads, and the buffers those
reads and their decoded bytes go into (zoostore.storage.blobs reads them).

    recipe chunks   c0 c1 c2 | c3 c4 | c5 ...      segments: runs read in one go
    pack 3fa9…      [c0][c1]··[c2]                  ·· a gap of at most COALESCE_GAP, read and wasted
    cached file     [c3][c4]                        chunks a verified local file holds
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zoostore.core.digest import Digest
from zoostore.storage.recipe import Recipe

#: Two frames of one pack closer than this are fetched in one ranged read (the gap is wasted).
COALESCE_GAP = 256 * 1024
#: Upper bound of one ranged read and of the raw bytes it decodes to, which bounds memory per
#: in-flight segment. 4 MiB: small enough that the writer starts early and decoding spreads
#: over the cores (16 MiB segments made get ~40% slower on 2 cores), large enough for object
#: stores (a few MiB per ranged GET).
MAX_SEGMENT = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LocalChunk:
    """A chunk held by a verified local file (the sync cache): read it instead of fetching."""

    path: Path
    offset: int
    length: int


class SegmentBuffers:
    """Segment buffers reused by one `get_file`: a fresh 4 MiB bytearray is zeroed and
    page-faulted on every segment (about 1 ms each, ~10% of a large read's CPU). A buffer is
    given back only once the writer and the hasher are done with it; one taken is always
    filled completely before use (decoding writes every byte, a short local read refetches)."""

    def __init__(self, keep: int) -> None:
        self._free: list[bytearray] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self, n: int) -> bytearray:
        with self._lock:
            buf = self._free.pop() if self._free else None
        return bytearray(n) if buf is None else resized(buf, n)

    def give(self, buf: bytearray) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)


def resized(buf: bytearray, n: int) -> bytearray:
    """`buf` resized to n bytes in place (contents are garbage), or a new buffer when `buf` is
    still exported (a memoryview kept alive, say by a traceback: resizing would raise)."""
    try:
        if len(buf) > n:
            del buf[n:]  # no reallocation while n is over half the allocation (CPython)
        elif len(buf) < n:
            buf.extend(bytes(n - len(buf)))
    except BufferError:
        return bytearray(n)
    return buf


def range_buffer(n: int) -> bytearray:
    """A buffer for one ranged pack read of n bytes. Fresh each time: keeping one 4 MiB buffer
    per reader thread saved its page faults but kept about 12 MiB more resident through a
    first sync (bench_release: 124 MiB peak against 91 MiB), over the 100 MiB the issue sets,
    for a speed gain lost in the noise of a shared machine."""
    return bytearray(n)


def plan_segments(recipe: Recipe, indices: range,
                  local: Mapping[Digest, LocalChunk] | None) -> Iterator[tuple[str, list[int]]]:
    """Group chunk indices into runs that are read in one go: ('local', [i, ...]) for
    chunks back to back in one cached file, ('remote', [i, j, ...]) for frames close
    together in one pack (coalescing). A run's stored and raw bytes both stay within
    MAX_SEGMENT, which bounds the memory of every run in flight."""
    run: list[int] = []
    kind = ""
    run_key: object = None
    run_start = run_end = raw = 0
    key: Path | Digest
    for i in indices:
        ref = recipe.chunks[i]
        loc = local.get(ref.chunk) if local is not None else None
        if loc is not None:
            new_kind, key, offset, length = "local", loc.path, loc.offset, loc.length
            joins = kind == "local" and key == run_key and offset == run_end
        else:
            new_kind, key, offset, length = "remote", ref.pack, ref.offset, ref.length
            joins = kind == "remote" and key == run_key and run_end <= offset <= run_end + COALESCE_GAP
        if (run and joins and offset + length - run_start <= MAX_SEGMENT
                and raw + ref.raw_length <= MAX_SEGMENT):
            run.append(i)
            run_end = offset + length
            raw += ref.raw_length
            continue
        if run:
            yield kind, run
        run, kind, run_key = [i], new_kind, key
        run_start, run_end, raw = offset, offset + length, ref.raw_length
    if run:
        yield kind, run


@dataclass(slots=True)
class ReadStats:
    """What reads cost; counters are cumulative per BlobStore (thread-safe)."""

    requests: int = 0
    bytes_fetched: int = 0
    chunks_fetched: int = 0
    chunks_local: int = 0
    bytes_local: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, requests: int = 0, fetched: int = 0, chunks: int = 0, local_chunks: int = 0,
            local_bytes: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.bytes_fetched += fetched
            self.chunks_fetched += chunks
            self.chunks_local += local_chunks
            self.bytes_local += local_bytes


