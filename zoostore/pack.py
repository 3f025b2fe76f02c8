"""Pack files: chunk frames back to back, then a footer that indexes them.

packs/3f/3fa9…e1   [frame][frame]…[footer][footer length: u32][magic: b"ZOOPACK1"]

footer := format (u16 = 1) | count (u32) | count × entry
entry  := chunk id (32 bytes, BLAKE3 of the raw chunk) | offset (u64) | frame length (u32)
          | raw length (u32)

All integers little-endian. The pack id is the BLAKE3 of the whole pack file. The footer lets
`verify --repair` rebuild recipes from packs alone; readers normally never read it, because
recipes carry every frame's pack, offset and length.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from zoostore.digest import Digest
from zoostore.errors import FormatError, NewerFormatError

FORMAT = 1
MAGIC = b"ZOOPACK1"
_TRAILER = struct.Struct("<I8s")
_HEAD = struct.Struct("<HI")
_ENTRY = struct.Struct("<32sQII")


def pack_key(pack: Digest) -> str:
    return f"packs/{pack.hex[:2]}/{pack.hex}"


@dataclass(frozen=True, slots=True)
class PackEntry:
    chunk: Digest
    offset: int
    length: int
    raw_length: int


class PackBuilder:
    """Accumulates frames in memory until the pack reaches its target size."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._entries: list[PackEntry] = []
        self.size = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, chunk: Digest, frame: bytes, raw_length: int) -> int:
        """Append a frame; returns its offset in the pack."""
        offset = self.size
        self._parts.append(frame)
        self._entries.append(PackEntry(chunk, offset, len(frame), raw_length))
        self.size += len(frame)
        return offset

    def finish(self) -> tuple[Digest, bytes, list[PackEntry]]:
        """The pack's id, bytes and entries. The builder is empty afterwards."""
        footer = bytearray(_HEAD.pack(FORMAT, len(self._entries)))
        for e in self._entries:
            footer += _ENTRY.pack(e.chunk.raw, e.offset, e.length, e.raw_length)
        self._parts.append(bytes(footer))
        self._parts.append(_TRAILER.pack(len(footer), MAGIC))
        data = b"".join(self._parts)
        entries = self._entries
        self._parts, self._entries, self.size = [], [], 0
        return Digest.of(data), data, entries


def footer_span(tail: bytes, pack_size: int, *, where: str) -> tuple[int, int]:
    """From the last 12 bytes of a pack, the (start, end) of its footer."""
    if len(tail) < _TRAILER.size:
        raise FormatError(f"{where}: truncated pack ({pack_size} bytes, no trailer)")
    length, magic = _TRAILER.unpack(tail[-_TRAILER.size:])
    if magic != MAGIC:
        raise FormatError(f"{where}: not a zoostore pack (trailer magic {magic!r}, expected {MAGIC!r})")
    end = pack_size - _TRAILER.size
    start = end - length
    if start < 0:
        raise FormatError(f"{where}: footer length {length} exceeds the pack size {pack_size}")
    return start, end


def parse_footer(footer: bytes, *, where: str) -> list[PackEntry]:
    if len(footer) < _HEAD.size:
        raise FormatError(f"{where}: truncated pack footer")
    fmt, count = _HEAD.unpack_from(footer)
    if fmt > FORMAT:
        raise NewerFormatError(where, fmt, FORMAT)
    if len(footer) != _HEAD.size + count * _ENTRY.size:
        raise FormatError(
            f"{where}: pack footer holds {len(footer)} bytes, expected "
            f"{_HEAD.size + count * _ENTRY.size} for {count} entries"
        )
    return list(_iter_entries(footer, count))


def _iter_entries(footer: bytes, count: int) -> Iterator[PackEntry]:
    for i in range(count):
        raw, offset, length, raw_length = _ENTRY.unpack_from(footer, _HEAD.size + i * _ENTRY.size)
        yield PackEntry(Digest.from_bytes(raw), offset, length, raw_length)


TRAILER_SIZE = _TRAILER.size
