"""Pack files: chunk frames back to back, then a footer that indexes them.

packs/3f/3fa9…e1   [frame][frame]…[footer][footer length: u32][magic: b"ZOOPACK1"]

footer := format (u16 = 1) | count (u32) | count × entry | file count (u32) | file count × file
entry  := chunk id (32 bytes, BLAKE3 of the raw chunk) | offset (u64) | frame length (u32)
          | raw length (u32)
file   := blob id (32) | size (u64) | chunk count (u32) | chunk count × (chunk id (32) | raw length (u32))

footer (format 2: a pack listing a file stored as edits of its previous version; format-3 stores)
       := format (u16 = 2) | count (u32) | count × entry | file count (u32) | file count × file2
file2  := blob id (32) | size (u64) | base blob (32; zeros: none) | run count (u32) | run count × run
          | chunk count (u32) | chunk count × (chunk id (32) | raw length (u32))
run    := base start (u32) | copy count (u32) | new count (u32)   (zoostore.storage.edits)
          A file2 with a base lists the new chunks only; its whole list is the base blob's list
          (from its recipe or its own file list) edited by the runs. Without one, it is a file.

All integers little-endian. The pack id is the BLAKE3 of the whole pack file.

Readers normally never read the footer, because recipes carry every frame's pack, offset and
length. It exists so that `verify --repair` can rebuild recipes from packs alone: entries say
where each chunk is, and the last pack of every publish lists, for each file the publish added,
its chunk ids in order (a "file list"). A file list names chunks by id only, because the chunks
of a deduplicated file may live in older packs, and because a pack cannot name itself.
"""

from __future__ import annotations

import struct

from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError, NewerFormatError
from zoostore.core.records import dataclass
from zoostore.storage.codec import MAX_RAW, max_frame
from zoostore.storage.edits import Run

#: The newest footer format (2: file lists as edits of a base). A footer without such a file
#: list is written as format 1.
FORMAT = 2
MAGIC = b"ZOOPACK1"
_TRAILER = struct.Struct("<I8s")
_HEAD = struct.Struct("<HI")
_ENTRY = struct.Struct("<32sQII")
_U32 = struct.Struct("<I")
_FILE = struct.Struct("<32sQI")
_FCHUNK = struct.Struct("<32sI")
_FILE2 = struct.Struct("<32sQ32sI")
_RUN = struct.Struct("<III")
_NO_BLOB = bytes(32)


def pack_key(pack: Digest) -> str:
    return f"packs/{pack.hex[:2]}/{pack.hex}"


@dataclass(frozen=True, slots=True)
class PackEntry:
    """A frame in a pack's footer: the chunk id, where its frame sits and the chunk's raw length."""

    chunk: Digest
    offset: int
    length: int
    raw_length: int


@dataclass(frozen=True, slots=True)
class FileList:
    """A file a pack's footer lists (for `verify --repair`): its blob, size and chunks, maybe as edits of a base."""

    blob: Digest
    size: int
    chunks: tuple[tuple[Digest, int], ...]  # (chunk id, raw length) in file order
    #: With a base: `chunks` are the new chunks only, and the file's list is the base blob's
    #: list edited by `runs` (footer format 2).
    base: Digest | None = None
    runs: tuple[Run, ...] = ()


@dataclass(frozen=True, slots=True)
class Footer:
    """A pack's footer: its frames and the files added with it."""

    entries: list[PackEntry]
    files: list[FileList]


class PackBuilder:
    """Accumulates frames in memory until the pack reaches its target size."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._entries: list[PackEntry] = []
        self._files: list[FileList] = []
        self.size = 0

    def __len__(self) -> int:
        return len(self._entries) + len(self._files)

    def add_file_list(self, files: list[FileList]) -> None:
        self._files.extend(files)

    def add(self, chunk: Digest, frame: bytes, raw_length: int) -> int:
        """Append a frame; returns its offset in the pack."""
        offset = self.size
        self._parts.append(frame)
        self._entries.append(PackEntry(chunk, offset, len(frame), raw_length))
        self.size += len(frame)
        return offset

    def take_frames(self) -> list[bytes]:
        """The frames added since the last call, for a writer that streams them out as they
        come (zoostore.storage.pack_stream); such a writer ends the pack with `footer()`, never
        with `finish()`."""
        parts, self._parts = self._parts, []
        return parts

    def footer(self) -> bytes:
        """The footer and trailer that end the pack (after every frame added so far)."""
        fmt = 2 if any(fl.base is not None for fl in self._files) else 1
        footer = bytearray(_HEAD.pack(fmt, len(self._entries)))
        for e in self._entries:
            footer += _ENTRY.pack(e.chunk.raw, e.offset, e.length, e.raw_length)
        footer += _U32.pack(len(self._files))
        for fl in self._files:
            if fmt == 1:
                footer += _FILE.pack(fl.blob.raw, fl.size, len(fl.chunks))
            else:
                footer += _FILE2.pack(fl.blob.raw, fl.size, fl.base.raw if fl.base else _NO_BLOB, len(fl.runs))
                for r in fl.runs:
                    footer += _RUN.pack(r.start, r.copy, r.new)
                footer += _U32.pack(len(fl.chunks))
            for chunk, raw_length in fl.chunks:
                footer += _FCHUNK.pack(chunk.raw, raw_length)
        footer += _TRAILER.pack(len(footer), MAGIC)
        return bytes(footer)

    def finish(self) -> tuple[Digest, bytes, list[PackEntry]]:
        """The pack's id, bytes and entries. The builder is empty afterwards."""
        self._parts.append(self.footer())
        data = b"".join(self._parts)
        entries = self._entries
        self._parts, self._entries, self._files, self.size = [], [], [], 0
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


def parse_footer(footer: bytes, *, where: str, max_chunk: int = MAX_RAW,
                 frames_end: int | None = None) -> Footer:
    """Parse a footer. Every raw length is at most `max_chunk` (the store's largest chunk),
    every frame at most what such a chunk encodes to, and, given `frames_end` (where the footer
    starts), every frame lies before the footer: a hostile footer cannot make a reader allocate
    or fetch more than the pack holds."""
    try:
        fmt, count = _HEAD.unpack_from(footer)
        if fmt > FORMAT:
            raise NewerFormatError(where, fmt, FORMAT)
        if fmt < 1:
            raise FormatError(f"{where}: pack footer format {fmt} does not exist (formats are 1 to {FORMAT})")
        pos = _HEAD.size
        entries: list[PackEntry] = []
        for _ in range(count):
            raw, offset, length, raw_length = _ENTRY.unpack_from(footer, pos)
            pos += _ENTRY.size
            _check_entry(where, len(entries), offset, length, raw_length, max_chunk, frames_end)
            entries.append(PackEntry(Digest.from_bytes(raw), offset, length, raw_length))
        (nfiles,) = _U32.unpack_from(footer, pos)
        pos += _U32.size
        files = []
        for _ in range(nfiles):
            base: Digest | None = None
            runs: tuple[Run, ...] = ()
            if fmt == 1:
                raw, size, nchunks = _FILE.unpack_from(footer, pos)
                pos += _FILE.size
            else:
                raw, size, braw, nruns = _FILE2.unpack_from(footer, pos)
                pos += _FILE2.size
                runs = tuple(Run(*_RUN.unpack_from(footer, pos + _RUN.size * i)) for i in range(nruns))
                pos += _RUN.size * nruns
                (nchunks,) = _U32.unpack_from(footer, pos)
                pos += _U32.size
                base = Digest.from_bytes(braw) if braw != _NO_BLOB else None
                if base is None and runs:
                    raise FormatError(f"{where}: file list of blob {raw.hex()[:12]} has {len(runs)} runs of "
                                      f"a base recipe but names no base")
            chunks = []
            for _ in range(nchunks):
                craw, raw_length = _FCHUNK.unpack_from(footer, pos)
                pos += _FCHUNK.size
                if raw_length > max_chunk:
                    raise FormatError(f"{where}: file list of blob {raw.hex()[:12]} claims a chunk of "
                                      f"{raw_length} raw bytes, more than the store's largest ({max_chunk})")
                chunks.append((Digest.from_bytes(craw), raw_length))
            files.append(FileList(Digest.from_bytes(raw), size, tuple(chunks), base, runs))
    except struct.error as exc:
        raise FormatError(f"{where}: truncated pack footer ({exc})") from exc
    if pos != len(footer):
        raise FormatError(f"{where}: pack footer has {len(footer) - pos} unexpected trailing bytes")
    return Footer(entries, files)


def _check_entry(where: str, index: int, offset: int, length: int, raw_length: int, max_chunk: int,
                 frames_end: int | None) -> None:
    if raw_length > max_chunk or length > max_frame(raw_length):
        raise FormatError(
            f"{where}: footer entry #{index} claims a {length}-byte frame of {raw_length} raw bytes; "
            f"expected at most {max_chunk} raw bytes (the store's largest chunk) and a frame of at "
            f"most {max_frame(min(raw_length, max_chunk))}: the pack is damaged or hostile"
        )
    if frames_end is not None and offset + length > frames_end:
        raise FormatError(
            f"{where}: footer entry #{index} names bytes {offset}-{offset + length}, past the "
            f"frames, which end at {frames_end}: the pack is damaged or hostile"
        )


TRAILER_SIZE = _TRAILER.size


class PackSlot:
    """A pack being built (by a publish or by gc's repack): its id, the BLAKE3 of its bytes,
    is known only when it is finished, so entries that point into it hold the slot."""

    __slots__ = ("id",)

    def __init__(self) -> None:
        self.id: Digest | None = None
