"""Blob recipes: how to rebuild one file from chunk frames in packs.

blobs/ab/ab12…ef   one recipe, named by the BLAKE3 of the file it rebuilds

recipe := magic b"ZOORCP" | format (u16 = 1) | file size (u64) | pack count (u32)
          | chunk count (u32) | pack count × pack id (32 bytes)
          | chunk count × entry | checksum (32 bytes: BLAKE3 of everything before it)
entry  := chunk id (32 bytes) | raw length (u32) | pack index (u32) | offset (u64)
          | frame length (u32)

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

FORMAT = 1
MAGIC = b"ZOORCP"
_HEAD = struct.Struct("<6sHQII")
_ENTRY = struct.Struct("<32sIIQI")
#: Largest pack offset a recipe may name (256 TiB, far past any pack): keeps seeks and range
#: arithmetic in range (an offset of 2^63 made readers fail with ValueError).
MAX_OFFSET = 2**48


def blob_key(blob: Digest) -> str:
    return f"blobs/{blob.hex[:2]}/{blob.hex}"


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """Where one chunk of a file lives: pack, offset and frame length; and its raw length."""

    chunk: Digest
    raw_length: int
    pack: Digest
    offset: int
    length: int


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

    @property
    def packs(self) -> tuple[Digest, ...]:
        return tuple(dict.fromkeys(ref.pack for ref in self.chunks))

    def encode(self) -> bytes:
        packs = self.packs
        index = {p: i for i, p in enumerate(packs)}
        out = bytearray(_HEAD.pack(MAGIC, FORMAT, self.size, len(packs), len(self.chunks)))
        for p in packs:
            out += p.raw
        for ref in self.chunks:
            out += _ENTRY.pack(ref.chunk.raw, ref.raw_length, index[ref.pack], ref.offset, ref.length)
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
        expected_len = _HEAD.size + 32 * npacks + _ENTRY.size * nchunks + 32
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
        pos = _HEAD.size
        packs = []
        for _ in range(npacks):
            packs.append(Digest.from_bytes(data[pos : pos + 32]))
            pos += 32
        chunks: list[ChunkRef] = []
        total = 0
        for _ in range(nchunks):
            raw, raw_length, pidx, offset, length = _ENTRY.unpack_from(data, pos)
            pos += _ENTRY.size
            if pidx >= npacks:
                raise FormatError(f"{where}: chunk entry names pack #{pidx} of {npacks}")
            _check_entry(where, len(chunks), raw_length, offset, length, max_chunk)
            chunks.append(ChunkRef(Digest.from_bytes(raw), raw_length, packs[pidx], offset, length))
            total += raw_length
        if total != size:
            raise FormatError(f"{where}: chunk lengths add up to {total}, file size is {size}")
        return cls(blob, size, tuple(chunks))


def _check_entry(where: str, index: int, raw_length: int, offset: int, length: int, max_chunk: int) -> None:
    """Bound one entry's lengths by the format before a reader allocates or fetches for them."""
    if raw_length > max_chunk:
        raise FormatError(
            f"{where}: chunk #{index} claims {raw_length} raw bytes, more than the store's largest "
            f"chunk ({max_chunk} bytes): the recipe is damaged or hostile; nothing was read. "
            f"Run 'zoostore verify --repair' on the store"
        )
    if length > max_frame(max_chunk) or length > max_frame(raw_length):
        raise FormatError(
            f"{where}: chunk #{index} has a {length}-byte frame for {raw_length} raw bytes, expected "
            f"at most {max_frame(raw_length)}: the recipe is damaged or hostile; nothing was read"
        )
    if offset + length > MAX_OFFSET:
        raise FormatError(f"{where}: chunk #{index} lies at pack offset {offset}, beyond any pack ({MAX_OFFSET})")
