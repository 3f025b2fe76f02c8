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

All integers little-endian. Entries are in file order; the raw lengths add up to the file size.
The checksum catches a damaged recipe before any pack is fetched. The checksum is no defence
against a hostile store (anyone can compute it), so `decode` also bounds every length field by
the store's largest chunk before a reader allocates anything for it.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from functools import cached_property

import blake3

from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError, IntegrityError, NewerFormatError
from zoostore.storage.codec import MAX_RAW, max_frame

#: The newest recipe format (2: delta frames). A recipe without delta frames is written as 1.
FORMAT = 2
MAGIC = b"ZOORCP"
_HEAD = struct.Struct("<6sHQII")
_BASES = struct.Struct("<I")  # format 2: base count, right after the format-1 head
_ENTRY = struct.Struct("<32sIIQI")
_BASE_INDEX = struct.Struct("<I")
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
    blob: Digest
    size: int
    chunks: tuple[ChunkRef, ...]

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
        return tuple(dict.fromkeys(ref.base for ref in self.chunks if ref.base is not None))

    @property
    def refs(self) -> tuple[ChunkRef, ...]:
        """Every frame a reader may need: the chunks, then the bases of delta frames."""
        return self.chunks + self.bases

    @property
    def packs(self) -> tuple[Digest, ...]:
        """Every pack the file needs, bases' packs included (gc keeps them all)."""
        return tuple(dict.fromkeys(ref.pack for ref in self.refs))

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
    def decode(cls, blob: Digest, data: bytes, *, max_chunk: int = MAX_RAW) -> Recipe:
        """Parse a recipe whose chunks are at most `max_chunk` raw bytes (the store's
        `chunking.max_size`). Any malformed field is a FormatError naming the recipe."""
        where = f"recipe {blob_key(blob)}"
        if len(data) < _HEAD.size + 32:
            raise FormatError(f"{where}: truncated ({len(data)} bytes)")
        magic, fmt, size, npacks, nchunks = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise FormatError(f"{where}: not a zoostore recipe (magic {magic!r}, expected {MAGIC!r})")
        if fmt > FORMAT:
            raise NewerFormatError(where, fmt, FORMAT)
        head = _HEAD.size + (_BASES.size if fmt >= 2 else 0)
        nbases = _BASES.unpack_from(data, _HEAD.size)[0] if fmt >= 2 and len(data) >= head else 0
        entry_size = _ENTRY.size + (_BASE_INDEX.size if fmt >= 2 else 0)
        expected_len = head + 32 * npacks + entry_size * nchunks + _ENTRY.size * nbases + 32
        if len(data) != expected_len:
            raise FormatError(f"{where}: {len(data)} bytes, expected {expected_len} for {nchunks} chunks")
        body, checksum = data[:-32], data[-32:]
        actual = blake3.blake3(body).digest()
        if actual != checksum:
            raise IntegrityError(
                f"{where} is damaged: checksum expected {checksum.hex()} but got {actual.hex()}; "
                f"run 'zoostore verify --repair' to rebuild it from pack footers",
                obj=where, expected=checksum.hex(), actual=actual.hex(),
            )
        packs = [Digest.from_bytes(data[head + 32 * i : head + 32 * (i + 1)]) for i in range(npacks)]
        pos = head + 32 * npacks
        base_pos = pos + entry_size * nchunks
        bases = [_parse_entry(data, base_pos + _ENTRY.size * i, packs, where, f"base #{i}", max_chunk)
                 for i in range(nbases)]
        chunks: list[ChunkRef] = []
        total = 0
        for i in range(nchunks):
            ref = _parse_entry(data, pos, packs, where, f"chunk #{i}", max_chunk)
            if fmt >= 2:
                (bidx,) = _BASE_INDEX.unpack_from(data, pos + _ENTRY.size)
                if bidx != NO_BASE:
                    if bidx >= nbases:
                        raise FormatError(f"{where}: chunk #{i} names base #{bidx} of {nbases}")
                    ref = ChunkRef(ref.chunk, ref.raw_length, ref.pack, ref.offset, ref.length, bases[bidx])
            pos += entry_size
            chunks.append(ref)
            total += ref.raw_length
        if total != size:
            raise FormatError(f"{where}: chunk lengths add up to {total}, file size is {size}")
        return cls(blob, size, tuple(chunks))


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
