"""Decoding chunk frames (zoostore.storage.codec) straight into a caller's buffer, and a read
run of them verified chunk by chunk (`decode_run`): the read path's decode. A reader assembles
a whole read segment in one buffer without per-chunk copies: zstd payloads are decompressed
into it directly, byte planes into a buffer kept per thread and then interleaved into it, where
`codec.decode` makes a bytes object per chunk (and per plane set) that is page-faulted, copied
and freed.

Same frames accepted and refused as `codec.decode` (tests/test_codec_decode_into.py): a
streaming zstd reader, unlike the one-shot decoder, would accept a frame cut after its last
bytes (an empty last block, a checksum), so `frame_end` walks the block headers first.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import blake3
import zstandard

from zoostore.core.digest import Digest
from zoostore.core.errors import DAMAGED_PACK_ADVICE, FormatError, IntegrityError
# The frame format's private helpers: this module is codec's decode side for the read path.
from zoostore.storage import codec
from zoostore.storage import planes as byte_planes
from zoostore.storage.recipe import ChunkRef

_local = threading.local()


#: Blocks `frame_end` walks at most (a zstd block holds up to 128 KiB: the writer's frames have
#: up to 17, a 2 MiB code chunk of a format-4 store in 16 blocks plus an empty last one; a
#: bytegroup frame has one per plane); a frame of more is decoded by the one-shot path, so that
#: a hostile frame of many tiny blocks costs no long Python loop.
MAX_WALK = 24


def frame_end(payload: memoryview) -> int | None:
    """Where the zstd frame at the start of `payload` ends, from its block headers: -1 when its
    blocks run past the payload, None after MAX_WALK blocks (not walked further)."""
    pos = zstandard.frame_header_size(payload)
    size = len(payload)
    checksum = 4 if size > 4 and payload[4] & 0x04 else 0  # frame header descriptor bit 2
    for _ in range(MAX_WALK):
        if pos + 3 > size:
            return -1
        block = int.from_bytes(payload[pos : pos + 3], "little")
        # block := last (1 bit) | type (2 bits: raw, RLE, compressed) | size (21 bits); an RLE
        # block stores one byte.
        pos += 3 + (1 if (block >> 1) & 3 == 1 else block >> 3)
        if block & 1:
            return pos + checksum if pos + checksum <= size else -1
    return None


def decompress_into(payload: memoryview, target: memoryview, where: str) -> None:
    """The zstd payload of a frame that declares `len(target)` raw bytes, decompressed straight
    into `target` (no bytes object to allocate, page-fault and copy), never producing more.
    Same checks and errors as `codec._decompress`: a streaming reader would accept a frame cut
    after its last bytes (an empty last block, a checksum), so the blocks are walked first."""
    n = len(target)
    if codec._empty_or_checked(payload, n, where):
        return
    try:
        end = frame_end(payload)
    except zstandard.ZstdError as exc:
        raise FormatError(f"{where}: corrupt zstd payload ({exc})") from exc
    if end is None:
        target[:] = codec._decompress(payload, n, where)
        return
    if end < 0:
        raise FormatError(f"{where}: corrupt zstd payload (the frame is truncated: its blocks run "
                          f"past the {len(payload)} payload bytes); nothing was decoded")
    try:
        # With the content size declared and the whole frame at hand, zstd decodes in one pass
        # straight into `target`; the GIL is released meanwhile. Bytes after the frame are
        # ignored, as `codec.decode` does.
        with codec._decompressor().stream_reader(payload[:end]) as reader:
            got = reader.readinto(target)
            longer = got == n and reader.read(1) != b""
    except zstandard.ZstdError as exc:
        raise FormatError(f"{where}: corrupt zstd payload, or longer than the {n} bytes the frame "
                          f"says ({exc})") from exc
    if got != n:
        raise FormatError(f"{where}: frame says {n} raw bytes but decodes to {got}")
    if longer:
        raise FormatError(f"{where}: corrupt zstd payload, or longer than the {n} bytes the frame says")


#: Byte planes up to this size are decompressed into a buffer kept per thread (larger ones,
#: from stores with chunks over 1 MiB, into a fresh one).
SCRATCH_MAX = 1024 * 1024


def _scratch(n: int) -> bytearray:
    """A bytearray of at least n bytes (the caller uses its first n): this thread's own, kept
    and only ever replaced by a larger one, when n <= SCRATCH_MAX. Resizing it to each chunk's
    length instead reallocated and zero-filled it whenever chunk sizes went up and down (CDC
    chunks vary 16-256 KiB): decoding release 1's frames on one thread took 192 ms of CPU with
    it, 175 ms without."""
    if n > SCRATCH_MAX:
        return bytearray(n)
    buf: bytearray | None = getattr(_local, "scratch", None)
    if buf is None or len(buf) < n:
        buf = _local.scratch = bytearray(n)
    return buf


def decode_into(frame: bytes | memoryview, out: bytearray, offset: int, *, where: str = "frame",
                base: bytes | None = None) -> int:
    """Decode one frame into `out[offset : offset + raw length]` (which must fit); returns the
    raw length. Same errors as `codec.decode`; the caller verifies the chunk id. zstd payloads are
    decompressed straight into `out` (byte planes into a buffer kept per thread)."""
    kind, n, payload = codec._payload(frame, where, codec.MAX_RAW)
    if offset + n > len(out):
        raise FormatError(f"{where}: frame says {n} raw bytes, more than the {len(out) - offset} expected")
    if kind == codec.RAW:
        if len(payload) != n:
            raise FormatError(f"{where}: frame says {n} raw bytes but decodes to {len(payload)}")
        out[offset : offset + n] = payload
    elif kind == codec.ZSTD:
        with memoryview(out) as view:
            decompress_into(payload, view[offset : offset + n], where)
    elif kind == codec.DELTA:
        out[offset : offset + n] = codec._undelta(payload, n, where, base)
    else:
        with memoryview(_scratch(n)) as scratch, scratch[:n] as planes:
            decompress_into(payload, planes, where)
            byte_planes.ungroup_into(planes, out, offset, n)
    return n


def decode_run(blob: Digest, refs: Sequence[ChunkRef], buf: bytearray, start: int, out: bytearray, pos: int,
               base_bytes: Mapping[Digest, bytes], *, check: bool = True) -> None:
    """Decode the frames of `refs`, read into `buf` from pack offset `start`, into `out` from
    `pos` on, verifying each chunk against its id (IntegrityError naming `blob`, the file).
    With `check` false the ids are not hashed (frames are still decoded and their lengths
    checked): for a caller that verifies the whole file and re-reads with checks on a mismatch
    (`BlobStore.get_file`)."""
    with memoryview(buf) as view, memoryview(out) as oview:
        for ref in refs:
            where = f"pack {ref.pack} chunk {ref.chunk}"
            try:
                n = decode_into(view[ref.offset - start : ref.offset - start + ref.length], out, pos,
                                where=where, base=base_bytes.get(ref.base.chunk) if ref.base else None)
            except FormatError as exc:
                raise IntegrityError(
                    f"{exc}; blob {blob} cannot be read: {DAMAGED_PACK_ADVICE}", obj=where,
                ) from exc
            actual = blake3.blake3(oview[pos : pos + n]).digest() if check else ref.chunk.raw
            if n != ref.raw_length or actual != ref.chunk.raw:
                if not check:  # the error says what the frame decoded to, not the id again
                    actual = blake3.blake3(oview[pos : pos + n]).digest()
                raise IntegrityError(
                    f"chunk {ref.chunk} in pack {ref.pack} at offset {ref.offset} is corrupt: "
                    f"expected hash {ref.chunk.hex} ({ref.raw_length} bytes) but got "
                    f"{actual.hex()} ({n} bytes); blob {blob} cannot be read: {DAMAGED_PACK_ADVICE}",
                    obj=where, expected=ref.chunk.hex, actual=actual.hex(),
                )
            pos += n
