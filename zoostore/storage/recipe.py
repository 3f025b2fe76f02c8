"""Blob recipes: how to rebuild one file from chunk frames in packs.

blobs/ab/ab12…ef   one recipe, named by the BLAKE3 of the file it rebuilds

recipe := magic b"ZOORCP" | format (u16 = 1) | file size (u64) | pack count (u32)
          | chunk count (u32) | pack count × pack id (32 bytes)
          | chunk count × entry | checksum (32 bytes: BLAKE3 of everything before it)
entry  := chunk id (32 bytes) | raw length (u32) | pack index (u32) | offset (u64)
          | frame length (u32)

recipe (format 2, only for a file with at least one delta frame; docs/format.md)
       := magic | format (u16 = 2) | file size (u64) | pack count (u32) | chunk count (u32)
          | base count (u32) | pack count × pack id | chunk count × (entry | base index (u32))
          | base count × entry | checksum
       base index 0xFFFFFFFF: a plain frame; otherwise the entry's frame is a delta frame against
       that base, a non-delta chunk located by its own entry in the base table.

recipe (format 3, only in format-3 stores: a file stored as edits of its previous version's)
       := magic | format (u16 = 3) | file size (u64) | base blob (32) | chunk list digest (32)
          | pack count (u32) | run count (u32) | new count (u32) | base count (u32)
          | pack count × pack id | run count × run | new count × (entry | base index (u32))
          | base count × entry | checksum
       run := base start (u32) | copy count (u32) | new count (u32)   (zoostore.storage.edits)
       The chunk list is the base blob's recipe's (itself format 1 or 2: chain depth one) edited
       by the runs; the digest is the BLAKE3 of (chunk id | raw length (u32)) of every chunk of
       the resulting list, so a base that does not fit (swapped, rebuilt differently) is caught.

All integers little-endian. Entries are in file order; the raw lengths add up to the file size.
The checksum catches a damaged recipe before any pack is fetched. The checksum is no defence
against a hostile store (anyone can compute it), so `decode` also bounds every length field by
the store's largest chunk before a reader allocates anything for it.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Sequence
from functools import cached_property

import blake3

from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError, IntegrityError, NewerFormatError
from zoostore.core.records import dataclass
from zoostore.storage import edits
from zoostore.storage.codec import MAX_RAW, max_frame
from zoostore.storage.edits import Run

#: The newest recipe format (2: delta frames, 3: edits of a base recipe). A recipe without
#: delta frames is written as 1; format 3 only where the store allows it (store format 3 or 4).
FORMAT = 3
MAGIC = b"ZOORCP"
_HEAD = struct.Struct("<6sHQII")
_BASES = struct.Struct("<I")  # format 2: base count, right after the format-1 head
_ENTRY = struct.Struct("<32sIIQI")
_BASE_INDEX = struct.Struct("<I")
_PREFIX = struct.Struct("<6sHQ")  # magic, format, file size: every format starts so
_HEAD3 = struct.Struct("<32s32sIIII")  # format 3, after the prefix
_RUN = struct.Struct("<III")
NO_BASE = 0xFFFFFFFF
#: Largest pack offset a recipe may name (256 TiB, far past any pack): keeps seeks and range
#: arithmetic in range (an offset of 2^63 made readers fail with ValueError).
MAX_OFFSET = 2**48


def blob_key(blob: Digest) -> str:
    return f"blobs/{blob.hex[:2]}/{blob.hex}"


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """Where one chunk of a file lives: pack, offset and frame length; and its raw length.
    `base` is set when the frame is a delta frame: where its (non-delta) base chunk lives."""

    chunk: Digest
    raw_length: int
    pack: Digest
    offset: int
    length: int
    base: ChunkRef | None = None


@dataclass(frozen=True)
class Recipe:
    """A file's whole chunk list. `against` is set when the store holds it as edits of that
    blob's recipe (format 3, `RecipeEdits`); `encode` always writes the whole list."""

    blob: Digest
    size: int
    chunks: tuple[ChunkRef, ...]
    against: Digest | None = None

    @cached_property
    def starts(self) -> list[int]:
        """Offset in the file where each chunk starts."""
        out, pos = [], 0
        for ref in self.chunks:
            out.append(pos)
            pos += ref.raw_length
        return out

    def covering(self, start: int, end: int) -> range:
        """Indices of the chunks that hold file bytes `[start, end)`."""
        if start >= end or not self.chunks:
            return range(0)
        first = bisect.bisect_right(self.starts, start) - 1
        last = bisect.bisect_left(self.starts, end)
        return range(max(first, 0), last)

    @cached_property
    def bases(self) -> tuple[ChunkRef, ...]:
        """The base chunks of the file's delta frames, each once, in order of first use."""
        return _bases(self.chunks)

    @property
    def refs(self) -> tuple[ChunkRef, ...]:
        """Every frame a reader may need: the chunks, then the bases of delta frames."""
        return self.chunks + self.bases

    @property
    def packs(self) -> tuple[Digest, ...]:
        """Every pack the file needs, bases' packs included (gc keeps them all)."""
        return _packs(self.refs)

    def as_edits(self, base: Recipe, diff: tuple[list[Run], list[int]] | None = None) -> RecipeEdits:
        """This chunk list as edits of `base`'s (a whole recipe of another blob); `diff` is
        `edits_if_smaller`'s answer for the two lists when the caller has it already."""
        runs, new = diff or edits.diff([_key(r) for r in base.chunks], [_key(r) for r in self.chunks])
        return RecipeEdits(self.blob, self.size, base.blob, tuple(runs), tuple(self.chunks[i] for i in new),
                           chunk_list_digest(self.chunks))

    def encode(self) -> bytes:
        packs, bases = self.packs, self.bases
        index = {p: i for i, p in enumerate(packs)}
        fmt = 2 if bases else 1
        out = bytearray(_HEAD.pack(MAGIC, fmt, self.size, len(packs), len(self.chunks)))
        if bases:
            out += _BASES.pack(len(bases))
        for p in packs:
            out += p.raw
        base_index = {b: i for i, b in enumerate(bases)}
        for ref in self.chunks:
            out += _ENTRY.pack(ref.chunk.raw, ref.raw_length, index[ref.pack], ref.offset, ref.length)
            if bases:
                out += _BASE_INDEX.pack(NO_BASE if ref.base is None else base_index[ref.base])
        for b in bases:
            out += _ENTRY.pack(b.chunk.raw, b.raw_length, index[b.pack], b.offset, b.length)
        out += blake3.blake3(out).digest()
        return bytes(out)

    @classmethod
    def decode(cls, blob: Digest, data: bytes, *, max_chunk: int = MAX_RAW,
               base: Callable[[Digest], Recipe | RecipeEdits] | None = None) -> Recipe:
        """Parse a recipe whose chunks are at most `max_chunk` raw bytes (the store's
        `chunking.largest`). Any malformed field is a FormatError naming the recipe. A
        format-3 recipe is resolved against `base(its base blob)`; without `base` it is a
        FormatError (read it through a BlobStore, which fetches the base)."""
        stored = decode_stored(blob, data, max_chunk=max_chunk)
        if isinstance(stored, Recipe):
            return stored
        if base is None:
            raise FormatError(f"recipe {blob_key(blob)} is stored as edits of recipe {blob_key(stored.against)}, "
                              f"which this reader was not given")
        return stored.resolve(base(stored.against))

    @classmethod
    def _decode_whole(cls, blob: Digest, data: bytes, fmt: int, max_chunk: int) -> Recipe:
        where = f"recipe {blob_key(blob)}"
        if len(data) < _HEAD.size + 32:
            raise FormatError(f"{where}: truncated ({len(data)} bytes)")
        _, _, size, npacks, nchunks = _HEAD.unpack_from(data)
        head = _HEAD.size + (_BASES.size if fmt >= 2 else 0)
        nbases = _BASES.unpack_from(data, _HEAD.size)[0] if fmt >= 2 and len(data) >= head else 0
        entry_size = _ENTRY.size + (_BASE_INDEX.size if fmt >= 2 else 0)
        expected_len = head + 32 * npacks + entry_size * nchunks + _ENTRY.size * nbases + 32
        if len(data) != expected_len:
            raise FormatError(f"{where}: {len(data)} bytes, expected {expected_len} for {nchunks} chunks")
        _check_sum(data, where)
        packs = [Digest.from_bytes(data[head + 32 * i : head + 32 * (i + 1)]) for i in range(npacks)]
        pos = head + 32 * npacks
        chunks = _parse_entries(data, pos, nchunks, nbases, packs, where, max_chunk, with_base=fmt >= 2)
        total = sum(ref.raw_length for ref in chunks)
        if total != size:
            raise FormatError(f"{where}: chunk lengths add up to {total}, file size is {size}")
        return cls(blob, size, tuple(chunks))


#: A recipe is stored as edits of its base only below this fraction of its whole encoding and
#: at least EDITS_MIN_SAVING bytes smaller: a cold reader fetches the base recipe as well.
EDITS_KEEP = 0.5
EDITS_MIN_SAVING = 1024


def edits_if_smaller(base: Recipe, chunks: Sequence[tuple[Digest, int]]) -> tuple[list[Run], list[int]] | None:
    """The runs and new chunk indices of the list `chunks` (chunk id, raw length) as edits of
    `base`, when that is clearly smaller than the whole list (sizes of the entries: 56 bytes
    whole, 60 new plus 12 per run and about 100 of header as edits)."""
    runs, new = edits.diff([_key(r) for r in base.chunks], chunks)
    whole, edited = 56 * len(chunks), 100 + 12 * len(runs) + 60 * len(new)
    return (runs, new) if edited <= EDITS_KEEP * whole and whole - edited >= EDITS_MIN_SAVING else None


def _key(ref: ChunkRef) -> tuple[Digest, int]:
    return ref.chunk, ref.raw_length


def chunk_list_digest(chunks: Sequence[ChunkRef]) -> bytes:
    """BLAKE3 of (chunk id | raw length (u32)) of each chunk: what a format-3 recipe pins."""
    h = blake3.blake3()
    for ref in chunks:
        h.update(ref.chunk.raw)
        h.update(_BASE_INDEX.pack(ref.raw_length))
    return h.digest()


@dataclass(frozen=True)
class RecipeEdits:
    """A recipe as the store holds it in format 3: edits (`runs`, `new` chunks) of the recipe
    of blob `against`, which must be a whole recipe (chain depth one). gc and repack work on
    this form; readers `resolve` it."""

    blob: Digest
    size: int
    against: Digest
    runs: tuple[Run, ...]
    new: tuple[ChunkRef, ...]
    digest: bytes  # chunk_list_digest of the resolved list

    @cached_property
    def bases(self) -> tuple[ChunkRef, ...]:
        """The bases of the new chunks' delta frames (copied chunks' bases are the base recipe's)."""
        return _bases(self.new)

    @property
    def refs(self) -> tuple[ChunkRef, ...]:
        """The frames this recipe names itself; the copied ones are named by the base recipe."""
        return self.new + self.bases

    @property
    def packs(self) -> tuple[Digest, ...]:
        """The packs of `refs`: what gc keeps for this recipe itself."""
        return _packs(self.refs)

    def resolve(self, base: Recipe | RecipeEdits) -> Recipe:
        """The whole recipe, from the base blob's recipe. IntegrityError when the base is not
        the one named, is itself edits (chain), or does not give the chunk list pinned here."""
        where = f"recipe {blob_key(self.blob)}"
        if base.blob != self.against or isinstance(base, RecipeEdits) or base.against is not None:
            what = "itself stored as edits (chain depth is one)" if base.blob == self.against else f"of blob {base.blob}"
            raise IntegrityError(
                f"{where} is stored as edits of recipe {blob_key(self.against)}, but the base it got is {what}: "
                f"the store is damaged or hostile; run 'zoostore verify --repair'", obj=where)
        chunks = edits.apply(base.chunks, self.runs, self.new, where=where)
        actual = chunk_list_digest(chunks)
        total = sum(ref.raw_length for ref in chunks)
        if actual != self.digest or total != self.size:
            raise IntegrityError(
                f"{where}: its edits of recipe {blob_key(self.against)} give {len(chunks)} chunks of {total} bytes "
                f"with list digest {actual.hex()[:16]}, expected {self.size} bytes and digest "
                f"{self.digest.hex()[:16]}: the base recipe does not fit it; run 'zoostore verify --repair'",
                obj=where, expected=self.digest.hex(), actual=actual.hex())
        return Recipe(self.blob, self.size, tuple(chunks), against=self.against)

    def encode(self) -> bytes:
        packs, bases = self.packs, self.bases
        index = {p: i for i, p in enumerate(packs)}
        base_index = {b: i for i, b in enumerate(bases)}
        out = bytearray(_PREFIX.pack(MAGIC, 3, self.size))
        out += _HEAD3.pack(self.against.raw, self.digest, len(packs), len(self.runs), len(self.new), len(bases))
        for p in packs:
            out += p.raw
        for r in self.runs:
            out += _RUN.pack(r.start, r.copy, r.new)
        for ref in self.new:
            out += _ENTRY.pack(ref.chunk.raw, ref.raw_length, index[ref.pack], ref.offset, ref.length)
            out += _BASE_INDEX.pack(NO_BASE if ref.base is None else base_index[ref.base])
        for b in bases:
            out += _ENTRY.pack(b.chunk.raw, b.raw_length, index[b.pack], b.offset, b.length)
        out += blake3.blake3(out).digest()
        return bytes(out)

    @classmethod
    def _decode(cls, blob: Digest, data: bytes, max_chunk: int) -> RecipeEdits:
        where = f"recipe {blob_key(blob)}"
        head = _PREFIX.size + _HEAD3.size
        if len(data) < head + 32:
            raise FormatError(f"{where}: truncated ({len(data)} bytes)")
        _, _, size = _PREFIX.unpack_from(data)
        against, digest, npacks, nruns, nnew, nbases = _HEAD3.unpack_from(data, _PREFIX.size)
        entry_size = _ENTRY.size + _BASE_INDEX.size
        expected_len = head + 32 * npacks + _RUN.size * nruns + entry_size * nnew + _ENTRY.size * nbases + 32
        if len(data) != expected_len:
            raise FormatError(f"{where}: {len(data)} bytes, expected {expected_len} for {nruns} runs and "
                              f"{nnew} new chunks")
        _check_sum(data, where)
        base_blob = Digest.from_bytes(against)
        if base_blob == blob:
            raise FormatError(f"{where}: stored as edits of itself")
        packs = [Digest.from_bytes(data[head + 32 * i : head + 32 * (i + 1)]) for i in range(npacks)]
        pos = head + 32 * npacks
        runs = tuple(Run(*_RUN.unpack_from(data, pos + _RUN.size * i)) for i in range(nruns))
        pos += _RUN.size * nruns
        new = _parse_entries(data, pos, nnew, nbases, packs, where, max_chunk, with_base=True)
        edits.check_runs(runs, 2**32, nnew, where=where)  # the base's length is checked on resolve
        return cls(blob, size, base_blob, runs, tuple(new), digest)


def _bases(chunks: tuple[ChunkRef, ...]) -> tuple[ChunkRef, ...]:
    """The bases of the delta frames among `chunks`, each once, in order of first use."""
    return tuple(dict.fromkeys(ref.base for ref in chunks if ref.base is not None))


def _packs(refs: tuple[ChunkRef, ...]) -> tuple[Digest, ...]:
    return tuple(dict.fromkeys(ref.pack for ref in refs))


def decode_stored(blob: Digest, data: bytes, *, max_chunk: int = MAX_RAW) -> Recipe | RecipeEdits:
    """A recipe as stored: a whole `Recipe` (formats 1, 2) or `RecipeEdits` (format 3). A
    malformed one is a FormatError that says what to do (a newer format: NewerFormatError)."""
    try:
        return _decode_stored(blob, data, max_chunk)
    except NewerFormatError:
        raise
    except FormatError as exc:
        raise FormatError(f"{exc}: the recipe is damaged; run 'zoostore verify --repair' on the store, which "
                          f"rebuilds it from the pack footers") from None


def _decode_stored(blob: Digest, data: bytes, max_chunk: int) -> Recipe | RecipeEdits:
    where = f"recipe {blob_key(blob)}"
    if len(data) < _PREFIX.size:
        raise FormatError(f"{where}: truncated ({len(data)} bytes)")
    magic, fmt, _ = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise FormatError(f"{where}: not a zoostore recipe (magic {magic!r}, expected {MAGIC!r})")
    if fmt > FORMAT:
        raise NewerFormatError(where, fmt, FORMAT)
    if fmt < 1:
        raise FormatError(f"{where}: recipe format {fmt} does not exist (formats are 1 to {FORMAT})")
    if fmt == 3:
        return RecipeEdits._decode(blob, data, max_chunk)
    return Recipe._decode_whole(blob, data, fmt, max_chunk)


def _check_sum(data: bytes, where: str) -> None:
    body, checksum = data[:-32], data[-32:]
    actual = blake3.blake3(body).digest()
    if actual != checksum:
        raise IntegrityError(
            f"{where} is damaged: checksum expected {checksum.hex()} but got {actual.hex()}; "
            f"run 'zoostore verify --repair' to rebuild it from pack footers",
            obj=where, expected=checksum.hex(), actual=actual.hex(),
        )


def _parse_entries(data: bytes, pos: int, count: int, nbases: int, packs: list[Digest], where: str,
                   max_chunk: int, *, with_base: bool) -> list[ChunkRef]:
    """`count` entries from `pos` (each followed by a base index when `with_base`), then the
    `nbases` base entries right after them."""
    entry_size = _ENTRY.size + (_BASE_INDEX.size if with_base else 0)
    base_pos = pos + entry_size * count
    bases = [_parse_entry(data, base_pos + _ENTRY.size * i, packs, where, f"base #{i}", max_chunk)
             for i in range(nbases)]
    out: list[ChunkRef] = []
    for i in range(count):
        ref = _parse_entry(data, pos, packs, where, f"chunk #{i}", max_chunk)
        if with_base:
            (bidx,) = _BASE_INDEX.unpack_from(data, pos + _ENTRY.size)
            if bidx != NO_BASE:
                if bidx >= nbases:
                    raise FormatError(f"{where}: chunk #{i} names base #{bidx} of {nbases}")
                ref = ChunkRef(ref.chunk, ref.raw_length, ref.pack, ref.offset, ref.length, bases[bidx])
        pos += entry_size
        out.append(ref)
    return out


def _parse_entry(data: bytes, pos: int, packs: list[Digest], where: str, what: str, max_chunk: int) -> ChunkRef:
    raw, raw_length, pidx, offset, length = _ENTRY.unpack_from(data, pos)
    if pidx >= len(packs):
        raise FormatError(f"{where}: {what} names pack #{pidx} of {len(packs)}")
    _check_entry(where, what, raw_length, offset, length, max_chunk)
    return ChunkRef(Digest.from_bytes(raw), raw_length, packs[pidx], offset, length)


def _check_entry(where: str, index: str, raw_length: int, offset: int, length: int, max_chunk: int) -> None:
    """Bound one entry's lengths by the format before a reader allocates or fetches for them."""
    if raw_length > max_chunk:
        raise FormatError(
            f"{where}: {index} claims {raw_length} raw bytes, more than the store's largest "
            f"chunk ({max_chunk} bytes): the recipe is damaged or hostile; nothing was read. "
            f"Run 'zoostore verify --repair' on the store"
        )
    if length > max_frame(max_chunk) or length > max_frame(raw_length):
        raise FormatError(
            f"{where}: {index} has a {length}-byte frame for {raw_length} raw bytes, expected "
            f"at most {max_frame(raw_length)}: the recipe is damaged or hostile; nothing was read"
        )
    if offset + length > MAX_OFFSET:
        raise FormatError(f"{where}: {index} lies at pack offset {offset}, beyond any pack ({MAX_OFFSET})")
