"""The byte planes in C (zoostore/storage/_planes.c) against the pure-Python slices they replace: the
same planes, the same frames, the same decoded bytes, for every length and offset."""

from __future__ import annotations

import os
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
    saved, codec._native = planes._native, None
    try:
        yield
    finally:
        codec._native = saved


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
    rnd = os.urandom(n) if seed < 0 else bytes((i * 2654435761 >> (seed % 7)) & 0xFF for i in range(n))
    return bytes(b if i % 4 < 2 else (0x3C + (b & 3) if i % 4 == 3 else b & 0x8F) for i, b in enumerate(rnd))


@needs_native
@settings(max_examples=30, deadline=None)
@given(st.integers(0, 70_000), st.integers(-1, 50), st.sampled_from([1, 3]))
def test_frames_and_decoding_are_the_same_either_way(n, seed, level):
    data = float_like(n, seed)
    with_c = codec.encode(data, codec.BYTEGROUP, level=level)
    with pure_python():
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
