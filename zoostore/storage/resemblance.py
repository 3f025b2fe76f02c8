"""Which chunk of a file's previous version a new chunk resembles most: delta bases for
content that moved.

Delta frames pair a new chunk first with the previous version's chunk at the same file offset
(zoostore.storage.delta_bases). That finds the base of a patched library or a fine-tuned weight file,
whose bytes stay in place, but not of a library rebuilt for a new release: its sections move by
a few kilobytes, so the chunk at the same offset holds other code. Measured on the benchmark
zoo's second release (bench/wheels.py: numpy 2.3.5 -> 2.4.6, onnxruntime 1.30.0 -> 1.31.1,
scipy 1.16.3 -> 1.17.1, MiniLM's last layer fine-tuned; everything the store gains, default
chunking, one publish per package; `zstd --patch-from` is zstd -3 of each file against its
previous version):

| release 2 adds   | plain store | delta, base by position | + resemblance | zstd --patch-from |
|------------------|-------------|-------------------------|---------------|-------------------|
| numpy            | 13.52 MB    | 12.57 MB                | 7.82 MB       | 7.16 MB           |
| onnxruntime      | 24.67 MB    | 24.22 MB                | 15.71 MB      | 17.61 MB          |
| scipy            | 24.38 MB    | 16.98 MB                | 16.51 MB      |                   |
| MiniLM           | 6.10 MB     | 6.07 MB                 | 6.07 MB       |                   |
| all              | 68.67 MB    | 59.84 MB                | 46.11 MB      | 47.18 MB          |

Publishing release 2 took 3.5 s of CPU with resemblance and 2.45 s with position bases only.

Features: a chunk is cut again into small content-defined pieces (FastCDC, 256 bytes on
average) and the gear hash at each cut (a hash of the 64 bytes before it) is a feature. Two chunks with many equal pieces share code
even when it moved; the index maps every feature of the previous version to the chunks that
have it, and a new chunk's candidate is the old chunk with the most features in common (ties:
the one nearest in the file). Features found in more than MAX_SHARED old chunks (zero runs,
padding) say nothing and are dropped. The gear hash, unlike Python's `hash`, is the same in
every process, so the same files give the same bases (and packs).

The index needs the previous version's bytes, so it is built only for a file that needs it:
when some new chunk's position base fails the cheap test (`aligned_match`: fewer than
GOOD_OVERLAP of its aligned byte samples equal). A patched library or a fine-tune never builds
it; a rebuilt library reads its previous version once (decoded in groups of READ_GROUP chunks,
through the store's verified reads). Previous versions larger than MAX_INDEXED are not indexed
(position bases only), and above FULL_INDEX only every fourth feature is kept, so that memory
stays bounded (about 100 bytes per kept feature). Encoder threads that need the index while
another builds it wait for it, so which chunks get a resemblance base never depends on thread
timing.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence

from pyfastcdc import FastCDC

from zoostore.core.digest import Digest
from zoostore.storage.recipe import ChunkRef, Recipe

#: Average, smallest and largest piece a chunk is cut into for its features.
PIECE_AVG, PIECE_MIN, PIECE_MAX = 256, 64, 1024
#: A feature shared by more old chunks than this is dropped from the index.
MAX_SHARED = 8
#: Only chunks whose plain frame is at most this fraction of their size are looked up. Float
#: weights and compressed data gain little from any base but the one at their own offset
#: (content that moved without changing is deduplicated by chunking already), and indexing
#: a large weight file costs a read of its previous version: on the benchmark's last-layer
#: fine-tune of MiniLM (87 MB) the lookup found nothing and cost 0.2-0.3 s of CPU.
COMPRESSIBLE = 0.8
#: A position base matching at least this fraction of the new chunk's aligned samples is kept.
GOOD_OVERLAP = 0.5
#: Previous versions up to this size index every feature; up to MAX_INDEXED one in four.
FULL_INDEX = 64 * 1024 * 1024
MAX_INDEXED = 1024 * 1024 * 1024
#: The cheap test of a position base: ALIGNED_SAMPLES samples of ALIGNED_WIDTH bytes of the new
#: chunk, looked for near the same file offset in the base.
ALIGNED_SAMPLES, ALIGNED_WIDTH = 16, 32
#: How far from the same offset a sample may be found: insertions of up to this many bytes
#: before it keep a chunk on its position base; sections of a rebuilt library move further.
ALIGNED_SLACK = 256
#: Chunks of the previous version decoded per read while indexing, and their raw bytes at most.
READ_GROUP = 64
READ_BYTES = 16 * 1024 * 1024

_cutter = FastCDC(PIECE_AVG, min_size=PIECE_MIN, max_size=PIECE_MAX)


def features(data: bytes | memoryview, sample: int = 1) -> set[int]:
    """The chunk's features: the gear hash where each small content-defined piece ends (a
    hash of the piece's last 64 bytes, which FastCDC computes anyway; with `sample` n, only
    those divisible by n)."""
    out = {p.gear_hash for p in _cutter.cut_buf(data)}
    return out if sample == 1 else {f for f in out if f % sample == 0}


def aligned_match(new: bytes | memoryview, new_start: int, old: bytes, old_start: int) -> float:
    """The fraction of ALIGNED_SAMPLES probes of `new` (at file offset `new_start`) found in
    `old` (at `old_start`) within ALIGNED_SLACK bytes of the same file offset: about 1 for a
    patched chunk, a sparse fine-tune or a few inserted bytes, about 0 when the content moved
    further or changed. Costs a few short `find`s."""
    lo, hi = max(new_start, old_start), min(new_start + len(new), old_start + len(old))
    if hi - lo < ALIGNED_WIDTH:
        return 0.0
    step = max(ALIGNED_WIDTH, (hi - lo) // ALIGNED_SAMPLES)
    hits = total = 0
    for pos in range(lo, hi - ALIGNED_WIDTH + 1, step):
        a, b = pos - new_start, pos - old_start
        sample = bytes(new[a : a + ALIGNED_WIDTH])
        hits += old.find(sample, max(0, b - ALIGNED_SLACK), b + ALIGNED_WIDTH + ALIGNED_SLACK) >= 0
        total += 1
    return hits / total


class ResemblanceIndex:
    """Features of one previous version's chunks, built on first use (thread-safe; read-only
    afterwards). `read` returns verified chunk bytes for refs of `recipe`, as
    BlobStore.chunk_bytes does."""

    def __init__(self, recipe: Recipe, read: Callable[[Sequence[ChunkRef]], dict[Digest, bytes]]) -> None:
        self.recipe = recipe
        self.read = read
        self.starts = recipe.starts
        self.sample = 1 if recipe.size <= FULL_INDEX else 4
        self.usable = 0 < recipe.size <= MAX_INDEXED
        self._failed = False
        self._lock = threading.Lock()
        self._index: dict[int, list[int]] | None = None

    def _build(self) -> dict[int, list[int]]:
        """The index, built by the first caller; others wait for it (never an empty answer
        because another thread is still building). A read that failed is not retried."""
        with self._lock:
            if self._index is None and not self._failed:
                try:
                    self._index = self._read_all()
                except BaseException:
                    self._failed = True
                    raise
            return self._index or {}

    def _read_all(self) -> dict[int, list[int]]:
        index: dict[int, list[int]] = {}
        chunks = self.recipe.chunks
        lo = 0
        while lo < len(chunks):
            hi, nbytes = lo + 1, chunks[lo].raw_length
            while hi < len(chunks) and hi - lo < READ_GROUP and nbytes + chunks[hi].raw_length <= READ_BYTES:
                nbytes += chunks[hi].raw_length
                hi += 1
            group, start, lo = chunks[lo:hi], lo, hi
            data = self.read(group)
            for i, ref in enumerate(group, start):
                for f in features(data[ref.chunk], self.sample):
                    index.setdefault(f, []).append(i)
        return {f: ids for f, ids in index.items() if len(ids) <= MAX_SHARED}

    def similar(self, feats: set[int], start: int, here: int | None = None) -> tuple[ChunkRef | None, float]:
        """The old chunk sharing the most of `feats` (the new chunk starting at file offset
        `start`), as a non-delta base, if it shares more than the old chunk number `here` (the
        position base) does; else (None, 0)."""
        if not self.usable or not feats:
            return None, 0.0
        index = self._build()
        if self.sample != 1:
            feats = {f for f in feats if f % self.sample == 0}
        votes: Counter[int] = Counter()
        for f in feats:
            for i in index.get(f, ()):
                votes[i] += 1
        if not votes:
            return None, 0.0
        best = max(votes.items(), key=lambda kv: (kv[1], -abs(self.starts[kv[0]] - start), -kv[0]))[0]
        if here is not None and votes[best] <= votes.get(here, 0):
            return None, 0.0
        ref = self.recipe.chunks[best]
        # Chain depth one: a delta frame's own base stands in for it (it is similar content).
        return (ref.base if ref.base is not None else ref), votes[best] / len(feats)


__all__ = ["ResemblanceIndex", "aligned_match", "features", "GOOD_OVERLAP"]
