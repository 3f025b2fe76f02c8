"""Which chunk of a file's previous version a new chunk resembles most: delta bases for
content that moved.

The writer pairs a new chunk first with the previous version's chunk at the same file offset
(zoostore.storage.writer). That finds the base of a patched library or a fine-tuned weight file,
whose bytes stay in place, but not of a library rebuilt for a new release: its sections move by
a few kilobytes, so the chunk at the same offset holds other code. Measured on the benchmark
zoo's release 2 (bench/wheels.py; stored bytes of the new chunks, 64 KiB chunks):

| file                          | plain  | base by position | base by resemblance | zstd --patch-from |
|-------------------------------|--------|------------------|---------------------|-------------------|
| numpy's libscipy_openblas64_  | 8.60 MB | 8.58 MB         | 5.82 MB             | 5.15 MB           |
| onnxruntime's libonnxruntime  | 12.21 MB| 11.65 MB        | 8.17 MB             | 8.62 MB           |
| numpy's _multiarray_umath     | 3.41 MB | 3.14 MB         | 1.35 MB             | 1.41 MB           |

Features: a chunk is cut again into small content-defined pieces (FastCDC, 256 bytes on
average) and each piece's CRC-32 is a feature. Two chunks with many equal pieces share code
even when it moved; the index maps every feature of the previous version to the chunks that
have it, and a new chunk's candidate is the old chunk with the most features in common (ties:
the one nearest in the file). Features found in more than MAX_SHARED old chunks (zero runs,
padding) say nothing and are dropped. CRC-32 rather than Python's `hash` so that the same
files give the same bases (and packs) in every process.

The index needs the previous version's bytes, so it is built only for a file that needs it:
when some new chunk shares less than GOOD_OVERLAP of its features with its position base. A
patched library or a fine-tune never builds it; a rebuilt library reads its previous version
once (decoded in groups of READ_GROUP chunks, through the store's verified reads). Previous
versions larger than MAX_INDEXED are not indexed (position bases only), and above
FULL_INDEX only every fourth feature is kept, so that memory stays bounded (about 100 bytes per
kept feature).
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from collections.abc import Callable, Sequence

from pyfastcdc import FastCDC

from zoostore.core.digest import Digest
from zoostore.storage.recipe import ChunkRef, Recipe

#: Average, smallest and largest piece a chunk is cut into for its features.
PIECE_AVG, PIECE_MIN, PIECE_MAX = 256, 64, 1024
#: A feature shared by more old chunks than this is dropped from the index.
MAX_SHARED = 8
#: A position base sharing at least this fraction of the new chunk's features is kept as is.
GOOD_OVERLAP = 0.5
#: Previous versions up to this size index every feature; up to MAX_INDEXED one in four.
FULL_INDEX = 64 * 1024 * 1024
MAX_INDEXED = 1024 * 1024 * 1024
#: Chunks of the previous version decoded per read while indexing.
READ_GROUP = 64

_cutter = FastCDC(PIECE_AVG, min_size=PIECE_MIN, max_size=PIECE_MAX)


def features(data: bytes | memoryview, sample: int = 1) -> set[int]:
    """The chunk's features: the CRC-32 of each small content-defined piece (with `sample`
    n, only those divisible by n)."""
    out = {zlib.crc32(p.data) for p in _cutter.cut_buf(data)}
    return out if sample == 1 else {f for f in out if f % sample == 0}


def overlap(a: set[int], b: set[int]) -> float:
    """The fraction of `a`'s features that `b` has too."""
    return len(a & b) / len(a) if a else 0.0


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
        self._lock = threading.Lock()
        self._index: dict[int, list[int]] | None = None

    def _build(self) -> dict[int, list[int]]:
        with self._lock:
            if self._index is None and self.usable:
                self.usable = False  # until built: a read that fails is not retried per batch
                index: dict[int, list[int]] = {}
                chunks = self.recipe.chunks
                for lo in range(0, len(chunks), READ_GROUP):
                    group = chunks[lo : lo + READ_GROUP]
                    data = self.read(group)
                    for i, ref in enumerate(group, lo):
                        for f in features(data[ref.chunk], self.sample):
                            index.setdefault(f, []).append(i)
                self._index = {f: ids for f, ids in index.items() if len(ids) <= MAX_SHARED}
                self.usable = True
            return self._index or {}

    def similar(self, feats: set[int], start: int) -> tuple[ChunkRef | None, float]:
        """The old chunk sharing the most of `feats` (the new chunk starting at file offset
        `start`), as a non-delta base, and the fraction shared; (None, 0) when nothing is."""
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
        ref = self.recipe.chunks[best]
        # Chain depth one: a delta frame's own base stands in for it (it is similar content).
        return (ref.base if ref.base is not None else ref), votes[best] / len(feats)


__all__ = ["ResemblanceIndex", "features", "overlap", "GOOD_OVERLAP"]
