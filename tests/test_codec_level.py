"""Plain zstd frames of code get more match search than a level-1 store's (codec.boosted_zstd):
template-heavy code is stored smaller, every frame still decodes with the plain decoder, weights
and byte planes keep the store's level, and the same bytes always give the same frames."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import zstandard

from zoostore.documents.store_config import StoreConfig
from zoostore.repository import init_store
from zoostore.storage import codec, frames_into

CODECS = (codec.RAW, codec.ZSTD, codec.BYTEGROUP)
CHUNK = 64 * 1024


def template_code(n: int, seed: int = 0) -> bytes:
    """Machine-code-like bytes of C++ template instances: a few function bodies, each
    instantiated for several types (the same instructions with other opcodes and operands
    where the type matters), separated by addresses and constants."""
    rng = random.Random(seed)
    bodies = [[rng.randrange(256) for _ in range(rng.randrange(300, 900))] for _ in range(24)]
    types = [{b: rng.randrange(256) for b in rng.sample(range(256), 24)} for _ in range(12)]
    out = bytearray()
    while len(out) < n:
        body, t = rng.choice(bodies), rng.choice(types)
        out += bytes(t.get(b, b) for b in body)
        out += rng.randbytes(rng.randrange(4, 24))
    return bytes(out[:n])


def weights(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).normal(0, 0.05, n).astype(np.float32).tobytes()


def level1(data: bytes) -> int:
    return len(codec.encode(data, codec.ZSTD, level=1))


def test_template_heavy_code_is_stored_smaller_than_at_level_1_and_decodes() -> None:
    code = template_code(CHUNK)
    frame = codec.encode_best(code, CODECS, level=1)
    assert codec.frame_codec(frame) == codec.ZSTD
    assert len(frame) <= 0.95 * level1(code), (len(frame), level1(code))
    assert codec.decode(frame) == code
    out = bytearray(CHUNK + 10)
    assert frames_into.decode_into(frame, out, 10) == CHUNK and out[10:] == code


def test_boosted_frames_are_plain_zstd_frames_of_every_size() -> None:
    # Small tails, ordinary chunks, and chunks over BIG_CHUNK, repetitive (the greedy search is
    # tried) or not: a plain zstd frame with its content size, readable by any zstd decoder.
    repetitive = (template_code(8 * 1024, seed=3) * 40)[: 250 * 1024]
    for data in (b"x", template_code(100), template_code(CHUNK), template_code(200 * 1024), repetitive):
        frame = codec.boosted_zstd(data)
        assert codec.frame_codec(frame) == codec.ZSTD
        assert codec.decode(frame) == data
        assert zstandard.frame_content_size(frame[codec.HEADER_SIZE:]) == len(data)
    assert len(codec.boosted_zstd(repetitive)) <= len(codec.encode(repetitive, codec.ZSTD, level=codec.BOOST_LEVEL))


def test_the_same_bytes_always_give_the_same_frames() -> None:
    data = template_code(6 * CHUNK, seed=1) + weights(CHUNK) + template_code(2 * CHUNK, seed=2)

    def frames() -> list[bytes]:
        history = ((codec.RAW, 1.0), (codec.ZSTD, 0.45), (codec.BYTEGROUP, 0.6))
        encoder = codec.BatchEncoder(CODECS, history, level=1)
        return [encoder.encode(data[i:i + CHUNK])[0] for i in range(0, len(data), CHUNK)]

    assert frames() == frames()


def test_a_code_batch_is_boosted_and_a_weight_batch_is_not() -> None:
    code_history = ((codec.RAW, 1.0), (codec.ZSTD, 0.45))
    encoder = codec.BatchEncoder(CODECS, code_history, level=1)
    code = template_code(4 * CHUNK)
    frames = [encoder.encode(code[i:i + CHUNK])[0] for i in range(0, len(code), CHUNK)]
    assert encoder.plan == (codec.ZSTD,) and encoder.boost
    assert all(len(f) < level1(code[i * CHUNK:(i + 1) * CHUNK]) for i, f in enumerate(frames))

    float_history = ((codec.RAW, 1.0), (codec.ZSTD, 0.92), (codec.BYTEGROUP, 0.82))
    encoder = codec.BatchEncoder(CODECS, float_history, level=1)
    w = weights(CHUNK)
    for i in range(4):
        frame, probe = encoder.encode(w[i * CHUNK:(i + 1) * CHUNK])
        if probe is not None:  # the probe tried plain zstd at the store's level
            assert dict(probe.sizes)[codec.ZSTD] == level1(w[i * CHUNK:(i + 1) * CHUNK])
    assert encoder.plan == (codec.BYTEGROUP,) and not encoder.boost


def test_a_files_first_chunks_are_tasted() -> None:
    # Without a history, the first TASTE bytes at the store's level say whether a probe tries
    # plain zstd boosted at once (code, text) or at the store's level (weights).
    code = b"".join(b'{"id": %d, "name": "layer.%d.weight", "shape": [%d, 384]},\n' % (i, i % 97, i % 7)
                    for i in range(2000))[:CHUNK]
    w = weights(CHUNK)
    frame, probe = codec.BatchEncoder(CODECS, None, level=1).encode(code)
    assert frame == codec.boosted_zstd(code) and probe is not None
    assert dict(probe.sizes)[codec.ZSTD] == len(frame)
    frame, probe = codec.BatchEncoder(CODECS, None, level=1).encode(w)
    assert probe is not None and dict(probe.sizes)[codec.ZSTD] == level1(w)
    assert codec.frame_codec(frame) == codec.BYTEGROUP


def test_byte_planes_keep_the_store_level() -> None:
    w = weights(CHUNK)
    assert codec.encode_best(w, CODECS, level=1) == codec.encode(w, codec.BYTEGROUP, level=1)


def test_only_levels_1_and_2_are_boosted() -> None:
    # A store that asks for level 3 or more gets exactly it; 0 (zstd's default) and the negative
    # "fast" levels too.
    code = template_code(CHUNK)
    for level in (-3, 0, 3, 6):
        plain = codec.encode(code, codec.ZSTD, level=level)
        assert codec.encode_best(code, (codec.RAW, codec.ZSTD), level=level) == plain
    assert codec.encode_best(code, (codec.RAW, codec.ZSTD), level=2) == codec.boosted_zstd(code)


def test_a_single_compressing_codec_boosts_chunk_by_chunk() -> None:
    encoder = codec.BatchEncoder((codec.RAW, codec.ZSTD), None, level=1)
    code, w = template_code(CHUNK), weights(CHUNK)
    assert encoder.encode(code)[0] == codec.boosted_zstd(code)
    assert encoder.encode(w)[0] == codec.encode_best(w, (codec.RAW, codec.ZSTD), level=1, boost=False)
    assert len(encoder.encode(w)[0]) == min(level1(w), codec.HEADER_SIZE + len(w))


def test_publishing_template_heavy_code_stores_less_than_level_1_frames(tmp_path: Path) -> None:
    data = template_code(3 * 1024 * 1024, seed=5)
    f = tmp_path / "lib.so"
    f.write_bytes(data)
    zoo, _ = init_store(tmp_path / "s", config=StoreConfig())
    (r,) = zoo.blobs.put_files([f])
    recipe = zoo.blobs.recipe(r.blob)
    plain = sum(level1(data[start:start + ch.raw_length]) for start, ch in zip(recipe.starts, recipe.chunks))
    assert r.new_stored_bytes <= 0.95 * plain, (r.new_stored_bytes, plain)
    assert zoo.blobs.read_range(r.blob, 0, len(data)) == data
