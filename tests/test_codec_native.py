"""The byte planes in C (zoostore/storage/_planes.c) against the pure-Python slices they replace: the
same planes, the same frames, the same decoded bytes, for every length and offset."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoostore.storage import codec, frames_into, planes

native = planes._native


@contextmanager
def pure_python() -> Iterator[None]:
    """The pure-Python slices for a block (as in an install without the C helper)."""
    saved, planes._native = planes._native, None
    try:
        yield
    finally:
        planes._native = saved


def python_planes(raw: bytes) -> bytes:
    return raw[0::4] + raw[1::4] + raw[2::4] + raw[3::4]


def test_native_planes_are_built():
    # setup.py marks the extension optional (an install without a compiler still works), so a
    # failed build would go unnoticed: CI, which has a compiler, must have built it.
    if native is None and not os.environ.get("CI"):
        pytest.skip("zoostore.storage._planes is not built here (run ./dev.sh setup, or pip install -e .)")
    assert native is not None, "zoostore.storage._planes was not built: see `pip install -e . -v` for the compiler's error"


needs_native = pytest.mark.skipif(native is None, reason="zoostore.storage._planes is not built")


@needs_native
@given(st.binary(max_size=300))
def test_split_matches_slices(raw):
    assert native.split4(raw) == python_planes(raw)
    assert [bytes(p) for p in planes.split(raw)] == [raw[0::4], raw[1::4], raw[2::4], raw[3::4]]


@needs_native
@given(st.binary(max_size=300), st.integers(0, 9), st.integers(0, 9))
def test_interleave_inverts_split_at_any_offset(raw, before, after):
    out = bytearray(b"\xee" * (before + len(raw) + after))
    native.interleave4(python_planes(raw), out, before)
    assert out == b"\xee" * before + raw + b"\xee" * after


@needs_native
def test_interleave_refuses_what_does_not_fit():
    planes = python_planes(bytes(range(10)))
    for out, offset in ((bytearray(9), 0), (bytearray(12), 3), (bytearray(20), -1), (bytearray(5), 30)):
        with pytest.raises(ValueError, match="do not fit"):
            native.interleave4(planes, out, offset)
    with pytest.raises(TypeError):
        native.interleave4(planes, bytes(20), 0)  # not writable


def test_ungroup_refuses_planes_of_another_length():
    with pytest.raises(ValueError, match="11 bytes of planes for a 12-byte chunk"):
        planes.ungroup_into(bytes(11), bytearray(12), 0, 12)
    with pure_python(), pytest.raises(ValueError, match="13 bytes of planes for a 12-byte chunk"):
        planes.ungroup_into(bytes(13), bytearray(12), 0, 12)


def float_like(n: int, seed: int) -> bytes:
    """Bytes with a float32 weight's structure: noise in the low bytes, few high bytes."""
    rnd = random.Random(seed).randbytes(n) if seed % 2 else bytes((i * 2654435761 >> (seed % 7)) & 0xFF for i in range(n))
    return bytes(b if i % 4 < 2 else (0x3C + (b & 3) if i % 4 == 3 else b & 0x8F) for i, b in enumerate(rnd))


@needs_native
@settings(max_examples=30, deadline=None)
@given(st.integers(0, 70_000), st.integers(0, 50), st.sampled_from([1, 3]))
def test_frames_and_decoding_are_the_same_either_way(n, seed, level):
    data = float_like(n, seed)
    with_c = codec.encode(data, codec.BYTEGROUP, level=level)
    assert isinstance(planes.split(data)[0], memoryview)  # the C helper's planes
    with pure_python():
        assert isinstance(planes.split(data)[0], bytes)    # the slices'
        in_python = codec.encode(memoryview(data), codec.BYTEGROUP, level=level)
        assert codec.decode(with_c) == data
        out = bytearray(n + 3)
        frames_into.decode_into(with_c, out, 3)
        assert out[3:] == data
    assert with_c == in_python
    assert codec.decode(in_python) == data
    out = bytearray(n + 3)
    frames_into.decode_into(in_python, out, 3)
    assert out[3:] == data


def test_any_view_of_the_chunk_gives_the_same_frame_either_way():
    data = float_like(4099, 7)
    wide = bytearray(2 * len(data))
    wide[::2] = data
    views = [data, memoryview(data), memoryview(wide)[::2], memoryview(data[:4096]).cast("I")]
    for path in (contextlib.nullcontext, pure_python):
        with path():
            frames = {codec.encode(v, codec.BYTEGROUP, level=1) for v in views[:3]}
            assert len(frames) == 1 and codec.decode(frames.pop()) == data
            assert codec.decode(codec.encode(views[3], codec.BYTEGROUP, level=1)) == data[:4096]


def test_ungroup_refuses_an_offset_outside_the_output_either_way():
    chunk = bytes(range(12))
    for path in (contextlib.nullcontext, pure_python):
        with path():
            for offset in (-1, 5):
                with pytest.raises(ValueError, match="do not fit"):
                    planes.ungroup_into(python_planes(chunk), bytearray(16), offset, 12)
            out = bytearray(16)
            planes.ungroup_into(python_planes(chunk), out, 4, 12)
            assert out[4:] == chunk


@pytest.mark.skipif(native is None, reason="zoostore.storage._planes is not built")
def test_empty_is_a_bytearray_of_n_bytes_that_segment_buffers_hand_out():
    from zoostore.storage import segments

    assert native is not None
    for n in (0, 1, 4096, 3 << 20):
        buf = native.empty(n)
        assert type(buf) is bytearray and len(buf) == n
        buf[-1:] = b"x" if n else b""
        buf.extend(b"yz")   # an ordinary bytearray: it grows and shrinks
        assert len(buf) == n + 2 and (n == 0 or buf[n - 1 : n] == b"x")
    with pytest.raises(ValueError, match="negative"):
        native.empty(-1)
    with pytest.raises(TypeError):
        native.empty(1.5)
    assert segments.unfilled is native.empty   # read buffers are handed out without zero-filling them
    pool = segments.SegmentBuffers(keep=2)
    assert len(pool.take(1000)) == 1000
