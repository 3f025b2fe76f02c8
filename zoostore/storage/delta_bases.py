"""Delta frames for one file's new chunks: which chunk of the previous version each is encoded
against, and whether the delta frame is kept (docs/format.md, docs/design-decisions.md).

A new chunk's base is the previous version's chunk at the same file offset (the one
overlapping it most; that chunk's own base when it is a delta frame, so a base is never a
delta). Where that chunk shares little with the new one (a cheap comparison of aligned bytes,
zoostore.storage.resemblance.aligned_match), as in a library rebuilt for a new release whose
sections moved, the base is the previous version's chunk it resembles most
(resemblance.ResemblanceIndex). Each encoder batch fetches its bases in one read per kind
(verified, through BlobStore.chunk_bytes), encodes every new chunk once more against its
base, and keeps the delta frame only when it is below DELTA_KEEP of the plain frame.

Every decision depends only on the batch's own bytes and the previous version's, never on
which encoder thread ran first: the same file gives the same frames and packs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from zoostore.core.digest import Digest
from zoostore.core.errors import ZooError
from zoostore.storage import codec
from zoostore.storage.recipe import ChunkRef, Recipe

#: A delta frame is kept only when smaller than this fraction of the chunk's plain frame: a
#: reader pays an extra base fetch for it on a cold read.
DELTA_KEEP = 0.8
#: zstd level of delta frames at least: level 1 barely uses a raw-content dictionary (11 changed
#: 64 KiB chunks of a 30 MB native library: 121 KB at level 1, 830 bytes at 3, 796 at 9;
#: docs/bench-delta.md), and level 3 costs about a millisecond per chunk.
DELTA_LEVEL = 3

Batch = list[memoryview]
#: What an encoder thread returns per chunk: id, frame (None: already stored), probe sizes, and
#: the base when the frame is a delta frame.
Encoded = list[tuple[Digest, "bytes | None", "codec.Probe | None", "ChunkRef | None"]]
#: Reads verified chunk bytes: BlobStore.chunk_bytes.
Reader = Callable[..., dict[Digest, bytes]]
#: A position base: the chunk, where its place starts in the previous version, and that
#: place's index in the previous recipe.
Placed = tuple[ChunkRef, int, int]


class DeltaBases:
    """Delta bases for one file from its previous version's recipe. Shared by the encoder
    threads: read-only after construction but for the resemblance index, built once under
    a lock when first needed."""

    def __init__(self, recipe: Recipe, read: Reader, *, level: int) -> None:
        self.recipe = recipe
        self.starts = recipe.starts
        self.level = max(DELTA_LEVEL, level)
        self._read = read
        # Here, not at import: the writer imports this module for every publish, but a first
        # version has no previous one to resemble (resemblance brings pyfastcdc's imports).
        from zoostore.storage import resemblance

        self.index = resemblance.ResemblanceIndex(recipe, self._chunk_bytes)

    def _chunk_bytes(self, refs: Sequence[ChunkRef]) -> dict[Digest, bytes]:
        return self._read(list(refs), blob=self.recipe.blob) if refs else {}

    def candidate(self, start: int, n: int, chunk: Digest) -> Placed | None:
        """The non-delta chunk of the previous version that overlaps file bytes
        `[start, start + n)` most, with its place (`Placed`); or None."""
        best: int | None = None
        best_overlap = 0
        for i in self.recipe.covering(start, start + n):
            lo = max(start, self.starts[i])
            overlap = min(start + n, self.starts[i] + self.recipe.chunks[i].raw_length) - lo
            if overlap > best_overlap:
                best, best_overlap = i, overlap
        if best is None:
            return None
        ref = self.recipe.chunks[best]
        ref = ref.base if ref.base is not None else ref  # chain depth one: a delta frame's base stands in
        return (ref, self.starts[best], best) if ref.chunk != chunk else None

    def apply(self, batch: Batch, out: Encoded, start: int) -> None:
        """Replace the batch's new chunks' frames (in `out`) by delta frames where clearly
        smaller; the batch starts at file offset `start`."""
        offsets, pos = [], start
        for data in batch:
            offsets.append(pos)
            pos += len(data)
        new = [i for i in range(len(batch)) if out[i][1] is not None]
        placed = {i: cand for i in new
                  if (cand := self.candidate(offsets[i], len(batch[i]), out[i][0])) is not None}
        wanted = {i: ref for i, (ref, _, _) in placed.items()}
        try:
            base_bytes = self._chunk_bytes(list(wanted.values()))
        except ZooError:
            return  # an unreadable base: these chunks are stored without delta frames
        try:
            frames = [frame or b"" for _, frame, _, _ in out]
            moved = self._moved(batch, frames, new, offsets, placed, base_bytes)
            base_bytes.update(self._chunk_bytes(list(moved.values())))
            wanted.update(moved)
        except ZooError:
            pass  # the previous version could not be read for resemblance: position bases only
        for i, base in wanted.items():
            chunk, frame, probe, _ = out[i]
            assert frame is not None
            delta = codec.encode_delta(batch[i], base.chunk.raw, base_bytes[base.chunk], level=self.level)
            if len(delta) < DELTA_KEEP * len(frame):
                out[i] = (chunk, delta, probe, base)

    def _moved(self, batch: Batch, frames: list[bytes], new: list[int], offsets: list[int],
               placed: dict[int, Placed], base_bytes: dict[Digest, bytes]) -> dict[int, ChunkRef]:
        """Better bases by resemblance for the new chunks whose position base matches less
        than GOOD_OVERLAP of their aligned samples."""
        from zoostore.storage import resemblance

        moved: dict[int, ChunkRef] = {}
        for i in new:
            if len(frames[i]) > resemblance.COMPRESSIBLE * len(batch[i]):
                continue  # weights or compressed data: see resemblance.COMPRESSIBLE
            base, base_start, here = placed.get(i, (None, 0, None))
            if base is not None and resemblance.aligned_match(
                    batch[i], offsets[i], base_bytes[base.chunk], base_start) >= resemblance.GOOD_OVERLAP:
                continue  # a patched chunk: its position base is the right one
            cand, _ = self.index.similar(resemblance.features(batch[i]), offsets[i], here=here)
            if cand is not None and cand != base:
                moved[i] = cand
        return moved


__all__ = ["DELTA_KEEP", "DELTA_LEVEL", "Batch", "DeltaBases", "Encoded"]
