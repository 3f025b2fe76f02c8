"""The writer's codec choice (zoostore.storage.codec.CodecChooser / BatchEncoder): right per
batch of chunks, at about the CPU of compressing every chunk once, and the same on every run."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from pyfastcdc import FastCDC

from zoostore.documents.store_config import StoreConfig
from zoostore.repository import init_store
from zoostore.storage import codec

CONFIG = StoreConfig()


def weights(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).normal(0, 0.05, n).astype(np.float32).tobytes()


def native_library() -> bytes:
    """A real native library: zstandard's C extension (a dependency of zoostore, ~12 MB of
    x86-64/aarch64 code, on which plain zstd beats byte-grouping by ~15% of the raw size)."""
    module = importlib.import_module("zstandard.backend_c")
    path = Path(module.__file__ or "")
    if path.suffix not in {".so", ".pyd"}:
        pytest.skip(f"zstandard.backend_c is not a native library here ({path})")
    return path.read_bytes()


def best_per_chunk(data: bytes, tmp_path: Path) -> int:
    """Frame bytes if every chunk got its own best codec (what trying all codecs on every chunk
    would store): the floor for any chooser."""
    f = tmp_path / "oracle"
    f.write_bytes(data)
    ch = CONFIG.chunking
    total = 0
    for c in FastCDC(ch.avg_size, min_size=ch.min_size, max_size=ch.max_size).cut_file(str(f)):
        total += len(codec.encode_best(bytes(c.data), CONFIG.codecs, level=CONFIG.zstd_level))
    return total


def test_a_float_header_does_not_decide_the_codec_of_the_code_after_it(tmp_path: Path) -> None:
    # 1.5 MiB of float32 weights first: byte-grouping wins every one of the file's first
    # chunks. Then a native library, where plain zstd stores ~15% of its size less. The old
    # chooser counted the wins of every frame (after the probes, only the winner was tried and
    # re-elected itself) and stored the library byte-grouped: 1.4x the per-chunk best.
    data = weights(384 * 1024) + native_library()
    f = tmp_path / "mixed.bin"
    f.write_bytes(data)
    zoo, _ = init_store(tmp_path / "s", config=CONFIG)
    (r,) = zoo.blobs.put_files([f])
    floor = best_per_chunk(data, tmp_path)
    assert r.new_stored_bytes <= 1.03 * floor, (r.new_stored_bytes, floor)


def test_codec_choice_is_the_same_on_every_run(tmp_path: Path) -> None:
    # The choice may use only what the writer's main thread knows at a fixed point, never
    # which encoder thread finished first: the same file gives the same packs.
    data = native_library()[: 3 * 1024 * 1024] + weights(512 * 1024) + native_library()[-2 * 1024 * 1024:]
    f = tmp_path / "mixed.bin"
    f.write_bytes(data)
    packs = []
    for i in range(3):
        zoo, _ = init_store(tmp_path / f"s{i}", config=CONFIG)
        zoo.blobs.put_files([f])
        packs.append(sorted(item.key for item in zoo.backend.list("packs/")))
    assert packs[0] == packs[1] == packs[2]


def test_only_probes_vote_and_they_vote_with_bytes() -> None:
    chooser = codec.CodecChooser((codec.RAW, codec.ZSTD, codec.BYTEGROUP))
    # Three chunks where byte-grouping wins by 1%, one where zstd wins by 40%: bytes decide.
    for _ in range(3):
        chooser.record(codec.Probe(1000, ((codec.RAW, 1005), (codec.ZSTD, 800), (codec.BYTEGROUP, 790))))
    chooser.record(codec.Probe(1000, ((codec.RAW, 1005), (codec.ZSTD, 400), (codec.BYTEGROUP, 800))))
    history = dict(chooser.history())
    assert history[codec.ZSTD] < history[codec.BYTEGROUP] < history[codec.RAW]


def test_a_batch_that_disagrees_with_the_history_probes_again_then_follows_its_data() -> None:
    floats = dict(((codec.RAW, 1.0), (codec.ZSTD, 0.92), (codec.BYTEGROUP, 0.82)))
    code = native_library()
    encoder = codec.BatchEncoder(CONFIG.codecs, tuple(floats.items()), level=1)
    probes = 0
    for i in range(codec.MAX_PROBES + 2):
        frame, probe = encoder.encode(code[i * 65536: (i + 1) * 65536])
        probes += probe is not None
    assert probes == codec.MAX_PROBES and encoder.plan == (codec.ZSTD,)


def test_a_batch_that_agrees_with_the_history_costs_one_probe() -> None:
    history = ((codec.RAW, 1.0), (codec.ZSTD, 0.92), (codec.BYTEGROUP, 0.82))
    encoder = codec.BatchEncoder(CONFIG.codecs, history, level=1)
    w = weights(64 * 1024)
    probes = [encoder.encode(w[i * 65536: (i + 1) * 65536])[1] for i in range(4)]
    assert probes[0] is not None and probes[1:] == [None] * 3
    assert encoder.plan == (codec.BYTEGROUP,)


def test_nothing_helps_keeps_raw_without_compressing_the_rest() -> None:
    noise = np.random.default_rng(1).bytes(4 * 65536)
    encoder = codec.BatchEncoder(CONFIG.codecs, ((codec.RAW, 1.0001), (codec.ZSTD, 1.0002), (codec.BYTEGROUP, 1.0003)), level=1)
    frames = [encoder.encode(noise[i * 65536: (i + 1) * 65536])[0] for i in range(4)]
    assert encoder.plan == (codec.RAW,)
    assert {codec.frame_codec(fr) for fr in frames} == {codec.RAW}


def test_a_single_compressing_codec_needs_no_probes() -> None:
    encoder = codec.BatchEncoder((codec.RAW, codec.ZSTD), None, level=1)
    frame, probe = encoder.encode(b"abc" * 10000)
    assert probe is None and codec.frame_codec(frame) == codec.ZSTD


def test_byte_grouping_is_tried_only_where_zstd_leaves_much() -> None:
    # Code compresses to ~40% with zstd: byte-grouping is not tried on it (it costs more CPU
    # than zstd and would save a fraction of a percent). Float weights stay near 90% with zstd:
    # byte-grouping is tried and wins.
    codecs = (codec.RAW, codec.ZSTD, codec.BYTEGROUP)
    code = native_library()[:65536]
    frame, probe = codec.encode_probe(code, codecs, level=1)
    assert [c for c, _ in probe.sizes] == [codec.RAW, codec.ZSTD]
    assert codec.frame_codec(frame) == codec.ZSTD
    assert len(frame) <= codec.WORTH_TRYING[codec.BYTEGROUP] * len(code)
    w = weights(64 * 1024)[:65536]
    frame, probe = codec.encode_probe(w, codecs, level=1)
    assert [c for c, _ in probe.sizes] == [codec.RAW, codec.ZSTD, codec.BYTEGROUP]
    assert codec.frame_codec(frame) == codec.BYTEGROUP
    assert codec.decode(frame) == w


def test_a_codec_without_a_threshold_is_always_tried() -> None:
    # Only codecs listed in WORTH_TRYING may be skipped: with byte-grouping listed before zstd,
    # a text chunk is still tried with zstd (and gets it).
    text = b"".join(b"line %d of some text\n" % i for i in range(3000))[:65536]
    frame, probe = codec.encode_probe(text, (codec.RAW, codec.BYTEGROUP, codec.ZSTD), level=1)
    assert [c for c, _ in probe.sizes] == [codec.RAW, codec.BYTEGROUP, codec.ZSTD]
    assert codec.frame_codec(frame) == codec.ZSTD
