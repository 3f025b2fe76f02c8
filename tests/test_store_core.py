"""The content-addressed core: digests, chunk frames, packs, recipes, config, blob put/get."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import blake3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoostore.storage import codec
from zoostore.documents.store_config import StoreConfig, parse_duration
from zoostore.core.digest import Digest, hash_file
from zoostore.core.errors import (
    BlobNotFoundError, FormatError, IntegrityError, InvalidDigestError, NewerFormatError,
    StoreExistsError, StoreNotFoundError, ZooError,
)
from zoostore.storage.pack import PackBuilder, footer_span, parse_footer
from zoostore.storage.recipe import ChunkRef, Recipe, blob_key
from zoostore.repository import init_store, open_store

GOLDEN = Path(__file__).parent / "golden"
SMALL = StoreConfig(pack_target_size=256 * 1024)


def weights(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).normal(0, 0.05, n).astype(np.float32).tobytes()


# ------------------------------------------------------------------ digests
def test_digest_known_answer_matches_blake3_spec() -> None:
    # BLAKE3 of the empty input, from the BLAKE3 reference test vectors.
    assert str(Digest.of(b"")) == "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def test_digest_parse_accepts_bare_hex_and_rejects_garbage() -> None:
    d = Digest.of(b"x")
    assert Digest.parse(d.hex) == d == Digest.parse(str(d).upper().replace("BLAKE3:", "blake3:"))
    for bad in ("", "blake3:", "blake3:zz", "sha256:" + d.hex, d.hex[:-1]):
        with pytest.raises(InvalidDigestError) as info:
            Digest.parse(bad)
        assert isinstance(info.value, ValueError) and isinstance(info.value, ZooError)


@pytest.mark.skipif(shutil.which("b3sum") is None, reason="b3sum (Debian package) not installed; ./dev.sh installs it")
def test_blob_id_is_what_b3sum_prints(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(300_000))
    out = subprocess.run(["b3sum", str(f)], capture_output=True, text=True, check=True).stdout
    assert hash_file(f).hex == out.split()[0]


# ------------------------------------------------------------------ codecs
@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=5000))
def test_every_codec_round_trips(data: bytes) -> None:
    for c in (codec.RAW, codec.ZSTD, codec.BYTEGROUP):
        assert codec.decode(codec.encode(data, c)) == data


def test_bytegroup_wins_on_float_weights_and_raw_on_noise() -> None:
    w = weights(16384)
    best = codec.encode_best(w, (codec.ZSTD, codec.BYTEGROUP))
    assert codec.frame_codec(best) == codec.BYTEGROUP
    assert len(best) < len(codec.encode(w, codec.ZSTD))
    noise = os.urandom(65536)
    assert codec.frame_codec(codec.encode_best(noise, (codec.ZSTD, codec.BYTEGROUP))) == codec.RAW


def test_frame_layout_is_codec_byte_then_le_length() -> None:
    frame = codec.encode(b"abc", codec.RAW)
    assert frame == b"\x00\x03\x00\x00\x00abc"


def test_corrupt_or_unknown_frames_are_format_errors() -> None:
    with pytest.raises(FormatError):
        codec.decode(b"\x00\x01")
    with pytest.raises(FormatError, match="unknown chunk codec 9"):
        codec.decode(b"\x09\x01\x00\x00\x00x")
    frame = bytearray(codec.encode(b"a" * 1000, codec.ZSTD))
    frame[8] ^= 0xFF
    with pytest.raises(FormatError):
        codec.decode(bytes(frame))


# ------------------------------------------------------------------ packs and recipes
def test_pack_footer_round_trip() -> None:
    b = PackBuilder()
    frames = [codec.encode(bytes([i]) * (100 + i), codec.ZSTD) for i in range(5)]
    ids = [Digest.of(bytes([i]) * (100 + i)) for i in range(5)]
    for d, f, i in zip(ids, frames, range(5)):
        b.add(d, f, 100 + i)
    pack_id, data, entries = b.finish()
    assert pack_id == Digest.of(data)
    start, end = footer_span(data[-12:], len(data), where="p")
    footer = parse_footer(data[start:end], where="p")
    assert [e.chunk for e in footer.entries] == ids
    for e, f in zip(footer.entries, frames):
        assert data[e.offset : e.offset + e.length] == f


def test_pack_from_newer_format_is_refused_with_upgrade_hint() -> None:
    b = PackBuilder()
    b.add(Digest.of(b"x"), codec.encode(b"x", codec.RAW), 1)
    _, data, _ = b.finish()
    start, end = footer_span(data[-12:], len(data), where="p")
    footer = bytearray(data[start:end])
    footer[0] = 3  # footer format 2 exists (file lists as edits): 3 is newer
    with pytest.raises(NewerFormatError, match="upgrade zoostore"):
        parse_footer(bytes(footer), where="p")


def test_recipe_round_trip_and_checksum() -> None:
    p = Digest.of(b"pack")
    chunks = tuple(ChunkRef(Digest.of(bytes([i])), 10 + i, p, i * 20, 15) for i in range(4))
    r = Recipe(Digest.of(b"blob"), sum(c.raw_length for c in chunks), chunks)
    data = r.encode()
    assert Recipe.decode(r.blob, data) == r
    assert list(r.covering(0, 1)) == [0] and list(r.covering(9, 12)) == [0, 1] and list(r.covering(10, 12)) == [1] and list(r.covering(45, 46)) == [3]
    damaged = bytearray(data)
    damaged[40] ^= 1
    with pytest.raises(IntegrityError, match="damaged"):
        Recipe.decode(r.blob, bytes(damaged))
    newer = bytearray(data)
    newer[6] = 9
    with pytest.raises(NewerFormatError):
        Recipe.decode(r.blob, bytes(newer))


# ------------------------------------------------------------------ config
def test_config_round_trip_and_newer_format() -> None:
    c = StoreConfig(pack_target_size=1234567, grace_seconds=1800)
    assert StoreConfig.from_toml(c.to_toml()) == c
    # Format 2 is a store with delta frames, 3 with recipe edits (test_delta.py), 4 with larger
    # chunks for code (test_code_chunks.py); 5 is newer than this zoostore.
    with pytest.raises(NewerFormatError, match=r"format 5\).*upgrade zoostore"):
        StoreConfig.from_toml(c.to_toml().replace("format = 1", "format = 5"))
    with pytest.raises(FormatError, match="missing key"):
        StoreConfig.from_toml("format = 1\n")


@pytest.mark.parametrize("text,seconds", [("24h", 86400), ("30m", 1800), ("0s", 0), ("1h30m", 5400), ("90", 90), ("2d", 172800)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "h", "10x", "1h 2", "-1h"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


# ------------------------------------------------------------------ stores
def test_init_twice_is_fine_but_different_parameters_are_refused(tmp_path: Path) -> None:
    init_store(tmp_path / "s", config=SMALL)
    _, created = init_store(tmp_path / "s", config=SMALL)
    assert not created
    with pytest.raises(StoreExistsError):
        init_store(tmp_path / "s", config=StoreConfig())


def test_open_missing_store_says_how_to_create(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="zoostore init"):
        open_store(tmp_path / "nothing")


def test_store_written_by_newer_format_is_refused(tmp_path: Path) -> None:
    init_store(tmp_path / "s")
    cfg = tmp_path / "s" / "zoostore.toml"
    cfg.write_text(cfg.read_text().replace("format = 1", "format = 7"))
    with pytest.raises(NewerFormatError, match="upgrade zoostore"):
        open_store(tmp_path / "s")


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    zoo, _ = init_store(tmp_path / "store", config=SMALL)
    return zoo


def test_put_get_round_trip_various_sizes(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = []
    for i, size in enumerate([0, 1, 16383, 16384, 65537, 1_000_003]):
        f = tmp_path / f"f{i}"
        f.write_bytes(os.urandom(size // 2) + weights(size // 8)[: size - size // 2])
        files.append(f)
    results = store.blobs.put_files(files)
    for f, r in zip(files, results):
        assert r.blob == hash_file(f) and r.size == f.stat().st_size
        out = tmp_path / "out" / f.name
        store.blobs.get_file(r.blob, out)
        assert out.read_bytes() == f.read_bytes()


def test_existing_blob_costs_no_upload(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "a"
    f.write_bytes(weights(300_000))
    first = store.blobs.put_files([f])[0]
    packs_before = {i.key for i in store.backend.list("packs/")}
    again = store.blobs.put_files([f])[0]
    assert first.new and not again.new and again.new_stored_bytes == 0
    assert {i.key for i in store.backend.list("packs/")} == packs_before


def test_float_weights_are_stored_smaller_than_raw(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "w"
    f.write_bytes(weights(2_000_000))
    r = store.blobs.put_files([f])[0]
    assert r.new_stored_bytes < 0.95 * r.size


def test_dedup_against_known_chunks(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = bytearray(weights(1_000_000))
    a = tmp_path / "a"
    a.write_bytes(base)
    ra = store.blobs.put_files([a])[0]
    base[2_000_000:2_000_100] = os.urandom(100)
    b = tmp_path / "b"
    b.write_bytes(base)
    known = store.blobs.known_chunks([ra.blob])
    rb = store.blobs.put_files([b], known=known)[0]
    assert rb.new_raw_bytes <= 3 * 256 * 1024  # a few chunks around the edit, not the file
    out = tmp_path / "b.out"
    store.blobs.get_file(rb.blob, out)
    assert out.read_bytes() == bytes(base)


def test_read_range_fetches_only_covering_chunks(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(4_000_000)
    f = tmp_path / "big"
    f.write_bytes(data)
    r = store.blobs.put_files([f])[0]
    fresh = open_store(store.url)
    recipe = fresh.blobs.recipe(r.blob)
    before = fresh.blobs.stats.bytes_fetched
    assert fresh.blobs.read_range(r.blob, 2_000_000, 2_004_096) == data[2_000_000:2_004_096]
    fetched = fresh.blobs.stats.bytes_fetched - before
    biggest = max(c.length for c in recipe.chunks)
    assert fetched <= 2 * biggest
    assert fresh.blobs.read_range(r.blob, 3_999_990, 5_000_000) == data[3_999_990:]
    assert fresh.blobs.read_range(r.blob, 10, 10) == b""


def test_unknown_blob_is_a_file_not_found(store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BlobNotFoundError) as info:
        store.blobs.recipe(Digest.of(b"never"))
    assert isinstance(info.value, FileNotFoundError)


def _corrupt(store, tmp_path: Path, how: str) -> tuple[Digest, Path]:  # type: ignore[no-untyped-def]
    f = tmp_path / "c"
    f.write_bytes(os.urandom(200_000))
    r = store.blobs.put_files([f])[0]
    pack = next(iter(store.backend.list("packs/")))
    path = Path(store.url.removeprefix("file://")) / pack.key
    data = bytearray(path.read_bytes())
    os.chmod(path, 0o644)
    if how == "flip":
        data[50] ^= 0x01
        path.write_bytes(data)
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 3])
    elif how == "missing":
        path.unlink()
    return r.blob, tmp_path / "dest" / "out.bin"


@pytest.mark.parametrize("how", ["flip", "truncate", "missing"])
def test_corruption_is_an_integrity_error_naming_pack_and_nothing_is_left(store, tmp_path: Path, how: str) -> None:  # type: ignore[no-untyped-def]
    blob, dest = _corrupt(store, tmp_path, how)
    fresh = open_store(store.url)
    with pytest.raises(IntegrityError) as info:
        fresh.blobs.get_file(blob, dest)
    assert "pack" in str(info.value)
    assert not dest.exists()
    assert not [p for p in dest.parent.iterdir()] if dest.parent.exists() else True


def test_failed_get_leaves_existing_destination_untouched(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blob, dest = _corrupt(store, tmp_path, "flip")
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"previous")
    with pytest.raises(IntegrityError):
        open_store(store.url).blobs.get_file(blob, dest)
    assert dest.read_bytes() == b"previous"


# ------------------------------------------------------------------ golden files
def test_format1_golden_store_still_reads(tmp_path: Path) -> None:
    golden = GOLDEN / "format1"
    zoo = open_store(golden / "store")
    release = zoo.resolve("golden", "stable", arch="x86_64")
    assert release.version == "1.0.0" and release.release.requires == {"tvm": ">=0.27.0 <0.28.0"}
    for path, entry in release.files.items():
        out = tmp_path / path
        zoo.blobs.get_file(entry.blob, out)
        assert out.read_bytes() == (golden / "expected" / path).read_bytes()
    codecs = set()
    for info in zoo.backend.list("blobs/"):
        recipe = Recipe.decode(Digest.parse(info.key.rsplit("/", 1)[1]), zoo.backend.get(info.key))
        for ref in recipe.chunks:
            frame = zoo.backend.get_range(f"packs/{ref.pack.hex[:2]}/{ref.pack.hex}", ref.offset, ref.offset + 1)
            codecs.add(frame[0])
    assert codecs == {codec.RAW, codec.ZSTD, codec.BYTEGROUP}
    assert blob_key(release.files["notes.txt"].blob).startswith("blobs/")


def test_format1_golden_lockfile_still_reads() -> None:
    from zoostore.documents.lockfile import Lock

    lock = Lock.loads((GOLDEN / "format1" / "zoo.lock").read_text(), where="zoo.lock")
    assert lock.models["golden"].version == "1.0.0"
    assert lock.runtime == {"tvm": "0.27.0"}
    assert blake3.blake3((GOLDEN / "format1" / "expected" / "notes.txt").read_bytes()).hexdigest() in {
        f.blob.hex for f in lock.models["golden"].files}
