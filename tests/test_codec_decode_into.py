"""`frames_into.decode_into` decompresses zstd payloads straight into the caller's buffer (byte planes
into a per-thread one) instead of through a bytes object: it must accept and refuse exactly the
frames `codec.decode` accepts and refuses (a streaming reader alone would take a frame cut after
its last bytes), write exactly the chunk's bytes, and keep working from several threads."""

from __future__ import annotations

import random
import threading

import pytest
import zstandard

from zoostore.core.errors import FormatError
from zoostore.storage import codec, frames_into


def weights(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(rng.randbytes(n))
    out[3::4] = bytes(rng.choice((0x3C, 0x3D, 0xBC, 0xBD)) for _ in range(len(out[3::4])))
    return bytes(out)


def _frame(codec_id: int, n: int, payload: bytes) -> bytes:
    return codec.HEADER.pack(codec_id, n) + payload


def _outcome(fn: object, *args: object) -> str:
    try:
        fn(*args)  # type: ignore[operator]
    except FormatError:
        return "refused"
    return "ok"


def _payloads(data: bytes) -> dict[str, bytes]:
    """zstd payloads of `data` as writers may make them: one-shot, several blocks (as the
    bytegroup writer flushes one per plane), many small blocks, a checksum, no content size."""
    one = zstandard.ZstdCompressor(level=1, write_content_size=True).compress(data)
    obj = zstandard.ZstdCompressor(level=1, write_content_size=True).compressobj(size=len(data))
    quarter = max(1, len(data) // 4)
    blocks = b"".join(obj.compress(data[i : i + quarter]) + obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
                      for i in range(0, len(data), quarter)) + obj.flush()
    obj = zstandard.ZstdCompressor(level=1, write_content_size=True).compressobj(size=len(data))
    many = b"".join(obj.compress(data[i : i + 64]) + obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
                    for i in range(0, len(data), 64)) + obj.flush()
    checksum = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(data)
    unsized = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(data)
    return {"one": one, "blocks": blocks, "many": many, "checksum": checksum, "unsized": unsized}


@pytest.mark.parametrize("codec_id", [codec.ZSTD, codec.BYTEGROUP])
def test_decode_into_agrees_with_decode_on_every_cut_and_trailer(codec_id: int) -> None:
    data = weights(3000, 1)
    stored = codec.encode(data, codec.BYTEGROUP, level=1)[codec.HEADER_SIZE :] if codec_id == codec.BYTEGROUP else b""
    payloads = {**_payloads(data), **({"writer": stored} if stored else {})}
    for name, payload in payloads.items():
        raw = codec.decode(_frame(codec_id, len(data), payload))
        variants = [payload[:cut] for cut in range(len(payload))] + [payload + b"\x00" * 7, payload + payload]
        for variant in variants:
            frame = _frame(codec_id, len(data), variant)
            out = bytearray(b"\xee" * (len(data) + 9))
            expected = _outcome(codec.decode, frame)
            assert _outcome(frames_into.decode_into, frame, out, 4) == expected, (name, len(variant))
            if expected == "ok":
                assert out[4 : 4 + len(data)] == raw and out[:4] == b"\xee" * 4 and out[4 + len(data) :] == b"\xee" * 5


@pytest.mark.parametrize("codec_id", [codec.ZSTD, codec.BYTEGROUP])
def test_decode_into_refuses_what_decode_refuses_about_sizes(codec_id: int) -> None:
    data = weights(1000, 2)
    for name, payload in _payloads(data).items():
        for n in (0, 999, 1001):
            frame = _frame(codec_id, n, payload)
            assert _outcome(codec.decode, frame) == "refused"
            assert _outcome(frames_into.decode_into, frame, bytearray(2000), 0) == "refused", (name, n)


def test_an_empty_frame_decodes_to_nothing() -> None:
    empty = zstandard.ZstdCompressor(write_content_size=True).compress(b"")
    for codec_id in (codec.ZSTD, codec.BYTEGROUP):
        out = bytearray(b"\xee" * 3)
        assert frames_into.decode_into(_frame(codec_id, 0, empty), out, 1) == 0 and out == b"\xee" * 3


def test_frame_end_walks_blocks_and_stops_at_the_limit() -> None:
    data = weights(5000, 3)
    payloads = _payloads(data)
    for name in ("one", "blocks", "checksum", "unsized"):
        payload = payloads[name]
        assert frames_into.frame_end(memoryview(payload)) == len(payload), name
        assert frames_into.frame_end(memoryview(payload[:-1])) == -1, name
    assert frames_into.frame_end(memoryview(payloads["many"])) is None  # 79 blocks: not walked


def test_decode_into_from_threads_keeps_each_threads_planes_apart() -> None:
    chunks = [weights(20_000 + 4 * i + i % 3, i) for i in range(24)]
    frames = [codec.encode(c, codec.BYTEGROUP, level=1) for c in chunks]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(20):
                for i in range(k, len(frames), 3):
                    out = bytearray(len(chunks[i]))
                    frames_into.decode_into(frames[i], out, 0)
                    assert out == chunks[i]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_the_scratch_buffer_is_kept_and_only_grows() -> None:
    frames_into._local.__dict__.pop("scratch", None)
    first = frames_into._scratch(100)
    assert len(first) == 100 and frames_into._scratch(50) is first   # a smaller chunk: its first 50 bytes
    with memoryview(first):   # still exported (a view in a traceback): replaced, never resized
        bigger = frames_into._scratch(200)
    assert bigger is not first and len(bigger) == 200 and frames_into._scratch(150) is bigger
    assert len(frames_into._scratch(frames_into.SCRATCH_MAX + 1)) == frames_into.SCRATCH_MAX + 1
    assert frames_into._scratch(7) is bigger  # a large one is not kept


def test_bytegroup_chunks_of_falling_and_rising_sizes_decode_through_one_scratch() -> None:
    # The scratch holds a larger chunk's planes when a smaller one decodes into its first bytes.
    rng = random.Random(5)
    frames_into._local.__dict__.pop("scratch", None)
    for n in (65536, 4099, 1, 30000, 262144, 17):
        raw = bytes(rng.getrandbits(8) for _ in range(8)) * (n // 8) + bytes(n % 8)
        frame = codec.encode(raw, codec.BYTEGROUP, level=1)
        out = bytearray(b"\xee" * (n + 6))
        assert frames_into.decode_into(frame, out, 3) == n
        assert out[3 : 3 + n] == raw and out[:3] == b"\xee" * 3 and out[3 + n :] == b"\xee" * 3
