"""Chunk frames: one chunk, encoded by the smallest of a few codecs, with a 5-byte header.

frame := codec (u8) | raw length (u32 little-endian) | payload

codec 0 raw            payload is the chunk itself
codec 1 zstd           payload is one zstd frame of the chunk
codec 2 zstd-bytegroup the chunk split into 4 byte planes (bytes 0,4,8,… then 1,5,9,… then
                       2,6,… then 3,7,…; plane i holds ceil((n-i)/4) bytes), the planes
                       concatenated and compressed as one zstd frame. On float32 weights the
                       exponent bytes line up in one plane and compress well where plain zstd
                       sees noise (the "byte grouping" of Hugging Face Xet and of
                       Zarr/Blosc's shuffle filter).

The writer keeps the smallest encoding and falls back to raw when nothing helps. Trying every
codec on every chunk doubles the compression work, so `CodecChooser` tries all on a file's first
chunks and then every `REPROBE`-th chunk, and otherwise uses the codec that has been winning.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

import zstandard

from zoostore.errors import FormatError

RAW, ZSTD, BYTEGROUP = 0, 1, 2
CODEC_NAMES = {RAW: "raw", ZSTD: "zstd", BYTEGROUP: "zstd-bytegroup4"}
HEADER = struct.Struct("<BI")
HEADER_SIZE = HEADER.size  # 5
#: Chunks to try with every codec before trusting the running winner, and how often to re-check.
PROBE = 8
REPROBE = 32

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    comp = cache.get(level)
    if comp is None:
        # write_content_size lets the decoder allocate exactly once.
        comp = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def group_bytes(data: bytes | memoryview) -> bytes:
    raw = bytes(data)
    return b"".join(raw[i::4] for i in range(4))


def ungroup_bytes(planes: bytes, n: int) -> bytes:
    out = bytearray(n)
    pos = 0
    for i in range(4):
        count = (n - i + 3) // 4 if n > i else 0
        out[i::4] = planes[pos : pos + count]
        pos += count
    return bytes(out)


def encode(data: bytes | memoryview, codec: int, *, level: int = 3) -> bytes:
    """One frame of `data` with a given codec (no size comparison)."""
    n = len(data)
    if codec == RAW:
        payload = bytes(data)
    elif codec == ZSTD:
        payload = _compressor(level).compress(data)
    elif codec == BYTEGROUP:
        payload = _compressor(level).compress(group_bytes(data))
    else:
        raise ValueError(f"unknown codec {codec}")
    return HEADER.pack(codec, n) + payload


def encode_best(data: bytes | memoryview, codecs: tuple[int, ...], *, level: int = 3) -> bytes:
    """The smallest frame among `codecs`; raw when no codec makes the chunk smaller."""
    best = encode(data, RAW)
    for codec in codecs:
        if codec == RAW:
            continue
        frame = encode(data, codec, level=level)
        if len(frame) < len(best):
            best = frame
    return best


@dataclass(slots=True)
class CodecChooser:
    """Adaptive codec choice for one file's chunks (see module docstring). Not thread-safe:
    call `plan(i)` from the producer thread, then encode anywhere, then `record(codec)`."""

    codecs: tuple[int, ...]
    wins: dict[int, int] | None = None

    def plan(self, index: int) -> tuple[int, ...]:
        if index < PROBE or index % REPROBE == 0 or not self.wins:
            return self.codecs
        winner = max(self.wins, key=lambda c: self.wins[c] if self.wins else 0)
        return (winner,)

    def record(self, codec: int) -> None:
        if self.wins is None:
            self.wins = {}
        self.wins[codec] = self.wins.get(codec, 0) + 1


def frame_codec(frame: bytes | memoryview) -> int:
    return int(frame[0])


def decode(frame: bytes | memoryview, *, where: str = "frame") -> bytes:
    """The chunk bytes of one frame. Raises FormatError on a malformed frame; the caller
    verifies the chunk id."""
    if len(frame) < HEADER_SIZE:
        raise FormatError(f"{where}: truncated chunk frame ({len(frame)} bytes, header is 5)")
    codec, n = HEADER.unpack_from(frame)
    payload = memoryview(frame)[HEADER_SIZE:]
    try:
        if codec == RAW:
            data = bytes(payload)
        elif codec == ZSTD:
            data = _decompressor().decompress(payload, max_output_size=n)
        elif codec == BYTEGROUP:
            data = ungroup_bytes(_decompressor().decompress(payload, max_output_size=n), n)
        else:
            raise FormatError(
                f"{where}: unknown chunk codec {codec}; this zoostore knows "
                f"{sorted(CODEC_NAMES)}: upgrade zoostore"
            )
    except zstandard.ZstdError as exc:
        raise FormatError(f"{where}: corrupt zstd payload ({exc})") from exc
    if len(data) != n:
        raise FormatError(f"{where}: frame says {n} raw bytes but decodes to {len(data)}")
    return data
