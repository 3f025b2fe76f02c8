"""Delta frames: a new chunk stored as zstd against a similar chunk the store already holds
(docs/format.md). Format round trips, refusal by an older zoostore, and a publish / sync /
verify / gc cycle on a delta store; damaged bases and payloads are IntegrityErrors."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import blake3
import pytest

import zoostore
from zoostore.cli import main as cli
from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError, IntegrityError, NewerFormatError, StoreExistsError
from zoostore.documents import store_config
from zoostore.documents.store_config import Chunking, StoreConfig
from zoostore.ops.gc import plan_gc
from zoostore.ops.publish import publish
from zoostore.ops.verify import verify_store
from zoostore.repository import Store, init_store, open_store
from zoostore.storage import codec, frames_into, recipe as recipe_mod
from zoostore.storage.recipe import ChunkRef, Recipe

HOUR = 3600.0
#: Small chunks and packs, so that a 60 kB file has many chunks and v1/v2 use separate packs.
DELTA = StoreConfig(chunking=Chunking(256, 1024, 4096), pack_target_size=16 * 1024, grace_seconds=HOUR,
                    settle_seconds=0.2, delta=True)


def flip(data: bytes, seed: int, count: int = 6) -> bytes:
    """`data` with a few single bytes changed at scattered offsets (a patched build)."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(count):
        out[rng.randrange(len(out))] ^= 0x5A
    return bytes(out)


def make_store(path: Path, config: StoreConfig = DELTA) -> Store:
    zoo, _ = init_store(path, config=config)
    assert isinstance(zoo, Store)
    return zoo


def put(zoo: Store, tmp: Path, version: str, files: dict[str, bytes]) -> None:
    src = tmp / "src" / version
    src.mkdir(parents=True)
    for name, data in files.items():
        (src / name).write_bytes(data)
    publish(zoo, "m", version, [src], check=False)


def blob_of(zoo: Store, version: str, path: str = "lib.so") -> Digest:
    return zoo.manifest("m").versions[version].files["any"][path].blob


def deltas(zoo: Store, blob: Digest) -> list[ChunkRef]:
    return [r for r in open_store(zoo.url).blobs.recipe(blob).chunks if r.base is not None]


# -- format ----------------------------------------------------------------------------------


def test_delta_frame_round_trip_and_wrong_base() -> None:
    base = random.Random(1).randbytes(50_000)
    new = flip(base, 2)
    base_id = blake3.blake3(base).digest()
    frame = codec.encode_delta(new, base_id, base, level=1)
    assert frame[0] == codec.DELTA and len(frame) < 500  # a few changed bytes cost a few bytes
    assert codec.delta_base(frame) == base_id and codec.delta_base(codec.encode(new, codec.ZSTD)) is None
    assert codec.decode(frame, base=base) == new
    out = bytearray(len(new) + 3)
    assert frames_into.decode_into(frame, out, 3, base=base) == len(new) and out[3:] == new
    with pytest.raises(FormatError, match="has no base"):
        codec.decode(frame)
    with pytest.raises(FormatError, match="names base chunk"):
        codec.decode(frame, base=flip(base, 3))
    damaged = bytearray(frame)
    damaged[-3] ^= 0xFF
    with pytest.raises(FormatError):
        codec.decode(bytes(damaged), base=base)
    with pytest.raises(FormatError, match="truncated delta frame"):
        codec.decode(frame[:20], base=base)


def test_recipe_format_2_round_trip_and_format_1_unchanged() -> None:
    p1, p2 = Digest.of(b"pack1"), Digest.of(b"pack2")
    base = ChunkRef(Digest.of(b"base"), 100, p1, 0, 80)
    plain = tuple(ChunkRef(Digest.of(bytes([i])), 100, p2, i * 50, 50) for i in range(3))
    v1 = Recipe(Digest.of(b"file1"), 300, plain)
    data1 = v1.encode()
    assert data1[6:8] == (1).to_bytes(2, "little"), "a recipe without delta frames stays format 1"
    assert Recipe.decode(v1.blob, data1) == v1
    chunks = (plain[0], ChunkRef(plain[1].chunk, 100, p2, 50, 30, base), ChunkRef(plain[2].chunk, 100, p2, 80, 30, base))
    v2 = Recipe(Digest.of(b"file2"), 300, chunks)
    data2 = v2.encode()
    assert data2[6:8] == (2).to_bytes(2, "little")
    back = Recipe.decode(v2.blob, data2)
    assert back == v2 and back.bases == (base,) and set(back.packs) == {p1, p2}
    # An older zoostore (recipe format 1 only) refuses it with "upgrade zoostore".
    old = pytest.MonkeyPatch()
    old.setattr(recipe_mod, "FORMAT", 1)
    try:
        with pytest.raises(NewerFormatError, match="upgrade zoostore"):
            Recipe.decode(v2.blob, data2)
    finally:
        old.undo()


def test_config_opt_in_bumps_format_and_older_zoostore_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = StoreConfig()
    assert plain.format == 1 and "delta" not in plain.to_toml()
    on = StoreConfig(delta=True)
    text = on.to_toml()
    assert on.format == 3 and "format = 3" in text and "delta = true" in text and on.recipe_edits
    assert StoreConfig.from_toml(text) == on
    # A format-2 store (delta frames, as the first zoostore with them made it) stays readable
    # and keeps writing whole recipes.
    frames_only = StoreConfig.from_toml(text.replace("format = 3", "format = 2"))
    assert frames_only.delta and frames_only.format == 2 and not frames_only.recipe_edits
    with pytest.raises(FormatError, match="needs format = 2"):
        StoreConfig.from_toml(text.replace("format = 3", "format = 1"))
    with pytest.raises(FormatError, match="codecs.delta must be"):
        StoreConfig.from_toml(text.replace("delta = true", 'delta = "yes"'))
    monkeypatch.setattr(store_config, "FORMAT", 2)  # what a zoostore before recipe edits knows
    with pytest.raises(NewerFormatError, match="upgrade zoostore"):
        StoreConfig.from_toml(text)
    monkeypatch.setattr(store_config, "FORMAT", 1)  # what a zoostore before delta frames knows
    with pytest.raises(NewerFormatError, match="upgrade zoostore"):
        StoreConfig.from_toml(text)
    assert StoreConfig.from_toml(plain.to_toml()) == plain


def test_init_delta_flag(tmp_path: Path) -> None:
    assert cli(["init", str(tmp_path / "s"), "--delta"]) == 0
    text = (tmp_path / "s" / "zoostore.toml").read_text()
    # A new store also cuts code into larger chunks: format 4 (tests/test_code_chunks.py).
    assert "format = 4" in text and "delta = true" in text and "[chunking.code]" in text
    assert open_store(str(tmp_path / "s")).config.delta
    assert cli(["init", str(tmp_path / "p"), "--no-delta"]) == 0
    assert "format = 1" in (tmp_path / "p" / "zoostore.toml").read_text()
    with pytest.raises(StoreExistsError, match="delta frames: off in the store, on asked"):
        init_store(tmp_path / "p", config=StoreConfig(delta=True))
    assert cli(["init", str(tmp_path / "p"), "--delta"]) == 7  # an existing store keeps its format
    # Without a flag: a new store gets delta frames (the default since docs/bench-delta.md), an
    # existing one is fine as it is.
    assert cli(["init", str(tmp_path / "d")]) == 0
    assert "format = 4" in (tmp_path / "d" / "zoostore.toml").read_text()
    assert cli(["init", str(tmp_path / "p")]) == 0
    assert "format = 1" in (tmp_path / "p" / "zoostore.toml").read_text()
    assert cli(["init", str(tmp_path / "d"), "--no-delta"]) == 7


# -- the writer and readers ------------------------------------------------------------------------


def test_publish_stores_changed_chunks_as_deltas_and_reads_them_back(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store")
    v1 = random.Random(7).randbytes(60_000)
    v2 = flip(v1, 8)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1})
    packs_before = {i.key for i in zoo.backend.list("packs/")}
    put(zoo, tmp_path, "2.0.0", {"lib.so": v2, "new.bin": random.Random(9).randbytes(20_000)})
    new_bytes = sum(i.size for i in zoo.backend.list("packs/") if i.key not in packs_before)
    found = deltas(zoo, blob_of(zoo, "2.0.0"))
    assert found, "changed chunks of a file with a previous version become delta frames"
    assert all(r.base is not None and r.base.base is None for r in found)
    assert sum(r.length for r in found) < 0.2 * sum(r.raw_length for r in found)
    assert new_bytes < 20_000 + 6_000, "v2 costs its new file plus small deltas, not whole chunks"
    assert not deltas(zoo, blob_of(zoo, "2.0.0", "new.bin")), "no previous version: no delta frames"
    fresh = open_store(zoo.url)
    out = fresh.blobs.get_file(blob_of(zoo, "2.0.0"), tmp_path / "out.so")
    assert out.read_bytes() == v2
    assert fresh.blobs.read_range(blob_of(zoo, "2.0.0"), 1000, 50_000) == v2[1000:50_000]
    assert verify_store(fresh, read_data=True).ok


def test_plain_store_publishes_no_deltas(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store", StoreConfig(chunking=DELTA.chunking, pack_target_size=16 * 1024))
    v1 = random.Random(7).randbytes(60_000)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1})
    put(zoo, tmp_path, "2.0.0", {"lib.so": flip(v1, 8)})
    assert not deltas(zoo, blob_of(zoo, "2.0.0"))


def test_sync_and_zoofs_read_delta_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    zoo = make_store(tmp_path / "store")
    v1 = random.Random(11).randbytes(60_000)
    v2 = flip(v1, 12)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1})
    put(zoo, tmp_path, "2.0.0", {"lib.so": v2})
    assert deltas(zoo, blob_of(zoo, "2.0.0"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "zoo.toml").write_text('store = "../store"\narchs = ["x86_64"]\n[models]\nm = "1.0.0"\n')
    zoostore.sync(project)
    assert (project / "models" / "m" / "x86_64" / "lib.so").read_bytes() == v1
    # The upgrade: bases are in the cache already.
    (project / "zoo.toml").write_text('store = "../store"\narchs = ["x86_64"]\n[models]\nm = "2.0.0"\n')
    zoostore.sync(project)
    assert (project / "models" / "m" / "x86_64" / "lib.so").read_bytes() == v2
    import fsspec
    with fsspec.open("zoo://m@2.0.0/any/lib.so", store=str(tmp_path / "store"), mode="rb") as f:
        f.seek(500)
        assert f.read(20_000) == v2[500:20_500]


# -- damage -----------------------------------------------------------------------------------------


def _damage(zoo: Store, ref: ChunkRef, at: int) -> None:
    path = Path(zoo.url.removeprefix("file://")) / f"packs/{ref.pack.hex[:2]}/{ref.pack.hex}"
    data = bytearray(path.read_bytes())
    data[ref.offset + at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["base", "delta"])
def test_damaged_base_or_delta_payload_is_an_integrity_error(tmp_path: Path, which: str) -> None:
    zoo = make_store(tmp_path / "store")
    v1 = random.Random(21).randbytes(60_000)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1})
    put(zoo, tmp_path, "2.0.0", {"lib.so": flip(v1, 22)})
    ref = deltas(zoo, blob_of(zoo, "2.0.0"))[0]
    if which == "base":
        assert ref.base is not None
        _damage(zoo, ref.base, ref.base.length // 2)
    else:
        _damage(zoo, ref, ref.length - 4)  # inside the zstd payload
    fresh = open_store(zoo.url)
    with pytest.raises(IntegrityError):
        fresh.blobs.get_file(blob_of(zoo, "2.0.0"), tmp_path / "out.so")
    assert not (tmp_path / "out.so").exists()
    report = verify_store(open_store(zoo.url), read_data=True)
    assert not report.ok
    assert any(p.kind == "bad-chunk" and blob_of(zoo, "2.0.0").hex in p.message for p in report.problems)


def test_verify_reports_a_missing_base_pack(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store")
    v1 = random.Random(31).randbytes(60_000)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1})
    put(zoo, tmp_path, "2.0.0", {"lib.so": flip(v1, 32)})
    ref = deltas(zoo, blob_of(zoo, "2.0.0"))[0]
    assert ref.base is not None
    os.remove(Path(zoo.url.removeprefix("file://")) / f"packs/{ref.base.pack.hex[:2]}/{ref.base.pack.hex}")
    report = verify_store(open_store(zoo.url))
    assert any(p.kind == "missing-pack" and blob_of(zoo, "2.0.0").hex in p.message for p in report.problems)


# -- gc ----------------------------------------------------------------------------------------------


def _age(zoo: Store, seconds: float) -> None:
    root = Path(zoo.url.removeprefix("file://"))
    for prefix in ("packs/", "blobs/"):
        for info in zoo.backend.list(prefix):
            t = info.mtime - seconds
            os.utime(root / info.key, (t, t))


@pytest.mark.parametrize("repack", [False, True])
def test_gc_keeps_bases_of_live_delta_frames(tmp_path: Path, repack: bool) -> None:
    zoo = make_store(tmp_path / "store")
    v1 = random.Random(41).randbytes(60_000)
    tail = bytearray(v1)
    for at in range(len(v1) - 6000, len(v1), 700):  # the file's last chunks change: their bases
        tail[at] ^= 0x5A                             # share a pack with old.bin's first chunks
    v2 = flip(bytes(tail), 42)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1, "old.bin": random.Random(43).randbytes(40_000)})
    put(zoo, tmp_path, "2.0.0", {"lib.so": v2})
    found = deltas(zoo, blob_of(zoo, "2.0.0"))
    assert found
    _age(zoo, 2 * HOUR)
    plan = plan_gc(zoo, keep=["m@2.0.0"], repack=repack, repack_threshold=0.95)
    assert [str(d) for d in plan.dropped_versions] == ["m@1.0.0"]
    base_packs = {f"packs/{r.base.pack.hex[:2]}/{r.base.pack.hex}" for r in found if r.base is not None}
    assert not base_packs & {i.key for i in plan.packs}, "packs holding live bases are not deleted"
    result = plan.execute()
    if repack:
        assert base_packs & {r.pack for r in plan.repacks}, "a pack holding a base gets repacked"
        assert result.packs_repacked >= 1 and result.recipes_rewritten >= 1
        moved = open_store(zoo.url).blobs.recipe(blob_of(zoo, "2.0.0"))
        assert {r.base for r in moved.chunks if r.base} != {r.base for r in found}, "bases moved"
        _age(zoo, 2 * HOUR)
        plan_gc(zoo, keep=["m@2.0.0"]).execute()  # the old packs go now
    assert "1.0.0" not in open_store(zoo.url).manifest("m").versions
    fresh = open_store(zoo.url)
    assert fresh.blobs.get_file(blob_of(zoo, "2.0.0"), tmp_path / "out.so").read_bytes() == v2
    assert verify_store(open_store(zoo.url), read_data=True).ok


def test_repair_rebuilds_a_recipe_with_delta_frames(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store")
    v1 = random.Random(51).randbytes(60_000)
    v2 = flip(v1, 52)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1})
    put(zoo, tmp_path, "2.0.0", {"lib.so": v2})
    blob = blob_of(zoo, "2.0.0")
    assert deltas(zoo, blob)
    os.remove(Path(zoo.url.removeprefix("file://")) / f"blobs/{blob.hex[:2]}/{blob.hex}")
    report = verify_store(open_store(zoo.url), repair=True)
    assert report.repaired and not report.unrepaired and report.ok
    fresh = open_store(zoo.url)
    assert deltas(zoo, blob), "the rebuilt recipe names the bases again"
    assert fresh.blobs.get_file(blob, tmp_path / "out.so").read_bytes() == v2


# -- gc under concurrency: the gc state machine on a delta store ----------------------------------


def test_gc_state_machine_on_a_delta_store() -> None:
    """test_gc_state_machine's publish/gc/read interleavings with delta frames: every mutated
    file of a model is a delta against its previous version, so dropped versions hold bases."""
    import shutil

    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import run_state_machine_as_test
    from test_gc_state_machine import G, GcMachine

    class DeltaGcMachine(GcMachine):
        def __init__(self) -> None:
            super().__init__()
            shutil.rmtree(self.tmp / "store")
            config = StoreConfig(chunking=Chunking(256, 1024, 4096), pack_target_size=4096, grace_seconds=G,
                                 settle_seconds=0.01, delta=True)
            self.zoo = make_store(self.tmp / "delta-store", config)
            self.reader = open_store(self.zoo.url)

    run_state_machine_as_test(DeltaGcMachine, settings=settings(
        max_examples=15, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


def test_third_version_reuses_deltas_and_never_chains(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store")
    v1 = random.Random(61).randbytes(60_000)
    v2 = flip(v1, 62)
    v3 = flip(v2, 63)  # keeps v2's changes (its delta chunks are reused) and changes more
    for version, data in (("1.0.0", v1), ("2.0.0", v2), ("3.0.0", v3)):
        put(zoo, tmp_path, version, {"lib.so": data})
    r2 = open_store(zoo.url).blobs.recipe(blob_of(zoo, "2.0.0"))
    r3 = open_store(zoo.url).blobs.recipe(blob_of(zoo, "3.0.0"))
    assert all(b.base is None for b in r3.bases), "chain depth one"
    reused = set(r2.chunks) & set(r3.chunks)
    assert any(r.base is not None for r in reused), "v3 reuses v2's delta frames, bases included"
    v1_chunks = {r.chunk for r in open_store(zoo.url).blobs.recipe(blob_of(zoo, "1.0.0")).chunks}
    assert {b.chunk for b in r3.bases} <= v1_chunks | {r.chunk for r in r2.chunks if r.base is None}
    _age(zoo, 2 * HOUR)
    plan_gc(zoo, keep=["m@3.0.0"]).execute()
    fresh = open_store(zoo.url)
    assert fresh.blobs.get_file(blob_of(zoo, "3.0.0"), tmp_path / "out.so").read_bytes() == v3
    assert verify_store(open_store(zoo.url), read_data=True).ok


def test_no_delta_work_without_a_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("delta work for a file without a previous version")

    zoo = make_store(tmp_path / "store")
    monkeypatch.setattr(codec, "encode_delta", refuse)
    monkeypatch.setattr(type(zoo.blobs), "chunk_bytes", refuse)
    put(zoo, tmp_path, "1.0.0", {"lib.so": random.Random(71).randbytes(30_000)})
    put(zoo, tmp_path, "2.0.0", {"other.so": random.Random(72).randbytes(30_000)})  # another path


def test_hostile_format_2_recipes_are_format_errors() -> None:
    p = Digest.of(b"pack")
    base = ChunkRef(Digest.of(b"base"), 100, p, 0, 80)
    r = Recipe(Digest.of(b"f"), 100, (ChunkRef(Digest.of(b"c"), 100, p, 80, 30, base),))
    data = bytearray(r.encode())
    body_end = len(data) - 32
    entry_end = 6 + 2 + 8 + 4 + 4 + 4 + 32 + 52 + 4  # head, base count, pack id, entry, base index
    data[entry_end - 4 : entry_end] = (5).to_bytes(4, "little")  # base #5 of 1
    data[body_end:] = blake3.blake3(bytes(data[:body_end])).digest()
    with pytest.raises(FormatError, match="names base #5 of 1"):
        Recipe.decode(r.blob, bytes(data))
    data = bytearray(r.encode())
    data[24:28] = (10**6).to_bytes(4, "little")  # a million bases in a 200-byte recipe
    with pytest.raises(FormatError, match="bytes, expected"):
        Recipe.decode(r.blob, bytes(data))


def test_config_enable_delta_upgrades_an_existing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An existing format-1 store opts in with `zoostore config STORE --enable-delta`: zoostore.toml
    becomes format 2 (older versions refuse it), old versions still read, new ones may use deltas."""
    import json as _json

    from zoostore.cli import main as cli
    from zoostore.ops.publish import publish as _publish
    from zoostore.repository import init_store as _init, open_store as _open

    store = tmp_path / "store"
    zoo, _ = _init(store)
    src = tmp_path / "v1"
    src.mkdir()
    data = bytearray(os.urandom(600_000))
    (src / "lib.so").write_bytes(bytes(data))
    _publish(zoo, "m", "1.0.0", [src], check=False)
    assert "format = 1" in (store / "zoostore.toml").read_text()
    assert cli(["config", str(store), "--enable-delta", "--json"]) == 0
    doc = _json.loads(capsys.readouterr().out)
    assert doc["delta"] is True and doc["format"] == 3
    data[300_000:300_010] = b"0123456789"
    src2 = tmp_path / "v2"
    src2.mkdir()
    (src2 / "lib.so").write_bytes(bytes(data))
    zoo = _open(store)
    _publish(zoo, "m", "1.1.0", [src2], check=False)
    for version, want in (("1.0.0", src / "lib.so"), ("1.1.0", src2 / "lib.so")):
        entry = zoo.manifest("m").versions[version].files["any"]["lib.so"]
        assert zoo.blobs.read_range(entry.blob, 0, entry.size) == want.read_bytes()
    assert cli(["config", str(store), "--enable-delta"]) == 0  # idempotent


def test_init_delta_on_a_format_2_store_says_how_to_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init_store(tmp_path / "s", config=StoreConfig(delta=True, format=2))
    capsys.readouterr()
    assert cli(["init", str(tmp_path / "s"), "--delta"]) == 0
    err = capsys.readouterr().err
    assert "format-2 store" in err and "--enable-delta" in err
    assert open_store(str(tmp_path / "s")).config.format == 2
