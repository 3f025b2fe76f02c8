"""Read segments: how a recipe's chunks are grouped into ranged reads, and the buffers those
reads and their decoded bytes go into (zoostore.storage.blobs reads them).

    recipe chunks   c0 c1 c2 | c3 c4 | c5 ...      segments: runs read in one go
    pack 3fa9…      [c0][c1]··[c2]                  ·· a gap of at most COALESCE_GAP, read and wasted
    cached file     [c3][c4]                        chunks a verified local file holds
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from zoostore.core.digest import Digest
from zoostore.core.records import dataclass
from zoostore.storage.recipe import Recipe

if TYPE_CHECKING:   # a local read starts no thread pool: concurrent.futures (with logging) costs ~3 ms
    from concurrent.futures import Future

unfilled: Callable[[int], bytearray]
try:
    # `unfilled(n)`: a bytearray of n bytes that are not zero-filled, for a read buffer (from
    # `take`, or BlobStore._load_segment's own), which is always overwritten before it is read.
    # `bytearray(n)` writes n zeros holding the GIL, which every other thread then waits for
    # (20-27 ms of a first sync of release 1, 56-70 fresh buffers of 1-4 MiB).
    from zoostore.storage._planes import empty

    unfilled = empty
except ImportError:  # pragma: no cover - an install without a C compiler
    unfilled = bytearray

#: Two frames of one pack closer than this are fetched in one ranged read (the gap is wasted).
COALESCE_GAP = 256 * 1024
#: Upper bound of one ranged read and of the raw bytes it decodes to, which bounds memory per
#: in-flight segment. 4 MiB: small enough that the writer starts early and decoding spreads
#: over the cores (16 MiB segments made get ~40% slower on 2 cores), large enough for object
#: stores (a few MiB per ranged GET).
MAX_SEGMENT = 4 * 1024 * 1024
#: The same bound for a local store, where a read is a copy from the page cache and there is no
#: request latency to spread: 1 MiB keeps the buffers in flight a quarter the size (first-sync
#: peak RSS 76 → 46 MB), and on the 2-core VM, where freshly touched memory is slow, a first
#: sync took 19% less wall time and 22% less CPU (docs/design-decisions.md, "Segment size").
LOCAL_SEGMENT = 1024 * 1024


def segment_size(*, local: bool) -> int:
    """The segment bound for a local store or one over the network."""
    return LOCAL_SEGMENT if local else MAX_SEGMENT


@dataclass(frozen=True, slots=True)
class LocalChunk:
    """A chunk held by a verified local file (the sync cache): read it instead of fetching."""

    path: Path
    offset: int
    length: int


class SegmentBuffers:
    """Read buffers (of pack ranges, or of decoded segments) reused by the reads of one
    BlobStore. A fresh 4 MiB bytearray is zeroed and page-faulted while holding the GIL, and
    one resized below half its size is reallocated and faulted again when it grows back: with a
    new buffer per range and per segment that was a tenth of a first sync's CPU time.

    While a read that uses the pool is under way (`reading()`), `take(n)` hands out a buffer
    of at least n bytes (a whole segment's worth, `segment`, for anything over a quarter of
    that; the smallest spare that fits) whose first n bytes are the caller's, and given-back
    buffers are kept for reuse, up to `keep` (then the larger ones); the last read to end drops
    them, so an idle BlobStore holds none. Outside such a read, `take(n)` is a fresh buffer of
    exactly n bytes and `give` drops it. A buffer is given back only once nothing reads it any
    more (the writer and the hasher are done with a segment, the decoder with a range); one
    taken is always filled before use (decoding writes every byte of a segment, a short read is
    an error or refetches)."""

    def __init__(self, keep: int, segment: int | None = None) -> None:
        self._free: list[bytearray] = []
        self._keep = keep
        self._segment = segment or MAX_SEGMENT
        self._readers = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bytearray:
        with self._lock:
            if not self._readers:
                pooled = False
            else:
                pooled = True
                # The smallest that fits (the most recently given of equal ones): a small read
                # taking a segment-sized buffer would leave the next segment a fresh one.
                fits = [i for i in range(len(self._free) - 1, -1, -1) if len(self._free[i]) >= n]
                if fits:
                    return self._free.pop(min(fits, key=lambda i: len(self._free[i])))
        return unfilled(self._segment if pooled and self._segment // 4 < n < self._segment else n)

    def give(self, buf: bytearray | memoryview) -> None:
        """Give back a buffer `take` handed out, or a view of one."""
        if isinstance(buf, memoryview):
            if not isinstance(buf.obj, bytearray):
                return
            buf = buf.obj
        with self._lock:
            if not self._readers:
                return
            if len(self._free) < self._keep:
                self._free.append(buf)
                return
            # Full: keep the larger buffer. Otherwise a pool filled with a few small reads' buffers
            # dropped every segment-sized one given back, and each take faulted in a fresh one.
            small = min(range(len(self._free)), key=lambda i: len(self._free[i]))
            if len(self._free[small]) < len(buf):
                self._free[small] = buf

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Keep given-back buffers for reuse while this block runs."""
        with self._lock:
            self._readers += 1
        try:
            yield
        finally:
            with self._lock:
                self._readers -= 1
                if not self._readers:
                    self._free.clear()


def plan_segments(recipe: Recipe, indices: range, local: Mapping[Digest, LocalChunk] | None,
                  segment: int | None = None) -> Iterator[tuple[str, list[int]]]:
    """Group chunk indices into runs that are read in one go: ('local', [i, ...]) for
    chunks back to back in one cached file, ('remote', [i, j, ...]) for frames close
    together in one pack (coalescing). A run's stored and raw bytes both stay within
    `segment` (default MAX_SEGMENT), which bounds the memory of every run in flight."""
    segment = segment or MAX_SEGMENT
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
        if (run and joins and offset + length - run_start <= segment
                and raw + ref.raw_length <= segment):
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


#: Reader threads at least, for a store over the network (two per core on larger machines).
READERS_MIN = 4


def reader_threads(workers: int, *, local: bool) -> int:
    """Reader threads of a BlobStore with `workers` decode slots: two per slot over a network,
    where reads wait on latency. A local store reads on the reading thread instead
    (zoostore.storage.blobs); one opened to read through threads anyway (the tests of that path)
    gets one per slot: a read is a copy from the page cache, and more threads only wait for a
    slot, holding buffers (on 2 cores a first sync of 271 MB faulted 30% fewer pages with 2
    than with 4)."""
    return workers if local else max(READERS_MIN, workers * 2)


def in_order(runs: Iterable[tuple[str, list[int]]],
             submit: Callable[[str, list[int]], Future[memoryview]], *, lookahead: int,
             slots: threading.BoundedSemaphore | None) -> Iterator[tuple[list[int], memoryview]]:
    """(indices, bytes) of each run `submit` loads, in order, at most `lookahead` submitted
    ahead; the loads still running when the consumer stops are waited for (nothing outlives
    the read).

    `slots` (optional) bounds the runs submitted and not yet yielded across every read that
    shares it: a sync reads several files at once, and each one's look-ahead filling up made
    peak memory depend on thread timing. A read with nothing in flight waits for a slot; one
    with runs in flight yields its oldest instead, so a slot is only ever awaited while other
    reads' runs are loading (they finish without needing one)."""
    inflight: deque[tuple[list[int], Future[memoryview]]] = deque()

    def oldest() -> tuple[list[int], memoryview]:
        done, fut = inflight.popleft()
        try:
            return done, fut.result()
        finally:
            if slots is not None:
                slots.release()

    try:
        for kind, idx in runs:
            while slots is not None and not slots.acquire(blocking=not inflight):
                yield oldest()
            inflight.append((idx, submit(kind, idx)))
            if len(inflight) >= lookahead:
                yield oldest()
        while inflight:
            yield oldest()
    finally:
        for _, fut in inflight:
            fut.cancel()
        for _, fut in inflight:
            if not fut.cancelled():
                fut.exception()
            if slots is not None:
                slots.release()


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


