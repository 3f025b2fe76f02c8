"""Byte planes of zstd-bytegroup4 frames (zoostore.storage.codec): a chunk split into 4 planes
(bytes 0,4,8,... then 1,5,9,... then 2,6,... then 3,7,...; plane i holds ceil((n-i)/4) bytes)
and the planes interleaved back.

Both run in C without the GIL (`zoostore.storage._planes`, which setup.py builds where a C
compiler is found: 20-40 GB/s on a 1 MiB chunk on the benchmark machine) or else as CPython extended slices
(`raw[i::4]`, `out[i::4] = plane`: ~1.5 GB/s, holding the GIL). Both give the same bytes
(tests/test_codec_native.py). On the benchmark zoo's 91 MB of float32 weights the slices cost
~50 ms of CPU per publish and per first sync, all of it holding the GIL that the encoder and
reader threads share; the C version cut a first sync by ~17% and a publish by ~11%
(docs/design-decisions.md, "Byte planes in C").
"""

from __future__ import annotations

from types import ModuleType

_native: ModuleType | None
try:
    import zoostore.storage._planes as _native
except ImportError:  # pragma: no cover - an install without a C compiler
    _native = None


def plane_lengths(n: int) -> list[int]:
    """The lengths of the 4 byte planes of an n-byte chunk."""
    return [(n - i + 3) // 4 for i in range(4)]


def split(raw: bytes | memoryview) -> list[bytes | memoryview]:
    """The 4 byte planes of a chunk (an empty plane for a chunk under 4 bytes)."""
    if isinstance(raw, memoryview) and not (raw.c_contiguous and raw.itemsize == 1):
        raw = raw.tobytes()  # the C helper takes contiguous bytes only
    if _native is not None:
        whole = memoryview(_native.split4(raw))
        out: list[bytes | memoryview] = []
        pos = 0
        for count in plane_lengths(len(whole)):
            out.append(whole[pos : pos + count])
            pos += count
        return out
    data = raw if isinstance(raw, bytes) else bytes(raw)
    # Extended slices of bytes copy in C; a memoryview's strided tobytes is ~10x slower.
    return [data[0::4], data[1::4], data[2::4], data[3::4]]


def ungroup_into(planes: bytes | bytearray | memoryview, out: bytearray, offset: int, n: int) -> None:
    """Interleave the 4 planes of an n-byte chunk (`planes` holds exactly n bytes) into
    out[offset : offset + n]."""
    if len(planes) != n:
        raise ValueError(f"{len(planes)} bytes of planes for a {n}-byte chunk")
    if offset < 0 or offset + n > len(out):
        raise ValueError(f"{n} bytes do not fit at offset {offset} of {len(out)}")
    if _native is not None:
        _native.interleave4(planes, out, offset)
        return
    # bytearray slice assignment copies a non-bytearray value first: hand it bytearray slices.
    src = planes if isinstance(planes, bytearray) else bytearray(planes)
    pos = 0
    for i, count in enumerate(plane_lengths(n)):
        if count:
            out[offset + i : offset + n : 4] = src[pos : pos + count]
        pos += count


def ungroup(planes: bytes, n: int) -> bytes:
    """The n-byte chunk whose 4 planes `planes` holds."""
    out = bytearray(n)
    ungroup_into(planes, out, 0, n)
    return bytes(out)
