"""Recipes stored as edits of the previous version's (recipe format 3, pack footer format 2,
store format 3; docs/format.md): round trips, readers, gc keeping and dropping base recipes,
repair, hostile or damaged edits, golden files and refusal by older zoostores."""

from __future__ import annotations

import os
import random
import shutil
import struct
import time
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings, strategies as st

import zoostore
from zoostore.cli import main as cli
from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError, IntegrityError, NewerFormatError
from zoostore.documents import store_config
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.gc import plan_gc
from zoostore.ops.verify import verify_store
from zoostore.repository import Store, open_store
from zoostore.storage import edits, pack as pack_mod, recipe as recipe_mod
from zoostore.storage.packcheck import footer_of
from zoostore.storage.recipe import ChunkRef, Recipe, RecipeEdits, decode_stored

from test_delta import DELTA, HOUR, _age, blob_of, flip, make_store, put

GOLDEN = Path(__file__).parent / "golden" / "format3"


def root_of(zoo: Store) -> Path:
    return Path(zoo.url.removeprefix("file://"))


def stored(zoo: Store, blob: Digest) -> Recipe | RecipeEdits:
    return decode_stored(blob, zoo.backend.get(f"blobs/{blob.hex[:2]}/{blob.hex}"))


def three_versions(zoo: Store, tmp: Path, seed: int = 1) -> list[bytes]:
    v1 = random.Random(seed).randbytes(60_000)
    v2 = flip(v1, seed + 1)
    v3 = flip(v2, seed + 2)
    for version, data in (("1.0.0", v1), ("2.0.0", v2), ("3.0.0", v3)):
        put(zoo, tmp, version, {"lib.so": data})
    return [v1, v2, v3]


# -- the encoding ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=60), st.lists(st.integers(0, 30), max_size=60))
def test_diff_then_apply_gives_the_list_back(base: list[int], items: list[int]) -> None:
    runs, new = edits.diff(base, items)
    assert edits.apply(base, runs, [items[i] for i in new], where="t") == items
    assert sum(r.copy for r in runs) + len(new) == len(items)


def test_diff_of_a_list_with_a_few_changes_is_a_few_runs() -> None:
    base = list(range(1000))
    items = base[:300] + [-1] + base[301:700] + [-2, -3] + base[700:]  # replace, insert
    runs, new = edits.diff(base, items)
    assert len(runs) == 3 and len(new) == 3


def test_apply_refuses_runs_that_go_back_or_past_the_base() -> None:
    with pytest.raises(IntegrityError, match="does not fit its base"):
        edits.apply([1, 2, 3], [edits.Run(0, 2, 0), edits.Run(1, 1, 0)], [], where="t")  # overlap
    with pytest.raises(IntegrityError, match="does not fit its base"):
        edits.apply([1, 2, 3], [edits.Run(2, 5, 0)], [], where="t")
    with pytest.raises(IntegrityError, match="new items"):
        edits.apply([1, 2, 3], [edits.Run(0, 1, 4)], [9], where="t")


def _pair() -> tuple[Recipe, Recipe]:
    p1, p2 = Digest.of(b"p1"), Digest.of(b"p2")
    base = Recipe(Digest.of(b"a"), 1000, tuple(ChunkRef(Digest.of(bytes([i])), 100, p1, i * 50, 50) for i in range(10)))
    chunks = list(base.chunks)
    chunks[3] = ChunkRef(Digest.of(b"x"), 100, p2, 0, 40, chunks[3])  # a delta frame against the old chunk
    chunks.insert(6, ChunkRef(Digest.of(b"y"), 50, p2, 40, 40))
    return base, Recipe(Digest.of(b"b"), 1050, tuple(chunks))


def test_recipe_edits_round_trip_and_older_zoostore_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    base, new = _pair()
    e = new.as_edits(base)
    data = e.encode()
    assert data[6:8] == (3).to_bytes(2, "little") and len(data) < len(new.encode())
    assert len(e.runs) == 3 and len(e.new) == 2
    back = decode_stored(new.blob, data)
    assert back == e and back.packs == (Digest.of(b"p2"), Digest.of(b"p1"))  # the new frames and the delta's base
    resolved = back.resolve(base)
    assert resolved.chunks == new.chunks and resolved.against == base.blob
    assert Recipe.decode(new.blob, data, base=lambda b: base) == resolved
    with pytest.raises(FormatError, match="stored as edits of recipe"):
        Recipe.decode(new.blob, data)  # a reader that cannot fetch the base says so
    assert Recipe.decode(base.blob, base.encode()) == base  # formats 1 and 2 unchanged
    monkeypatch.setattr(recipe_mod, "FORMAT", 2)  # a zoostore with delta frames but no edits
    with pytest.raises(NewerFormatError, match=r"format 3\).*upgrade zoostore"):
        decode_stored(new.blob, data)


def test_resolve_refuses_a_wrong_or_chained_base() -> None:
    base, new = _pair()
    e = new.as_edits(base)
    other = Recipe(Digest.of(b"c"), base.size, base.chunks)
    with pytest.raises(IntegrityError, match="but the base it got is of blob"):
        e.resolve(other)
    with pytest.raises(IntegrityError, match="chain depth is one"):
        e.resolve(Recipe(base.blob, base.size, base.chunks, against=Digest.of(b"z")))
    swapped = Recipe(base.blob, base.size, base.chunks[::-1])  # same blob id, other chunk list
    with pytest.raises(IntegrityError, match="does not fit it"):
        e.resolve(swapped)


def _resign(data: bytearray) -> bytes:
    data[-32:] = blake3.blake3(bytes(data[:-32])).digest()
    return bytes(data)


def test_hostile_edits_are_refused_before_allocating() -> None:
    base, new = _pair()
    data = bytearray(new.as_edits(base).encode())
    runs_at = 6 + 2 + 8 + 32 + 32 + 16  # prefix, base blob, digest, four counts
    # A billion runs claimed by a recipe of a few hundred bytes: refused by its length.
    huge = bytearray(data)
    huge[6 + 2 + 8 + 64 + 4 : 6 + 2 + 8 + 64 + 8] = struct.pack("<I", 10**9)
    with pytest.raises(FormatError, match="bytes, expected"):
        decode_stored(new.blob, _resign(huge))
    # A run copying 4 billion base chunks: refused when resolved, nothing allocated for it.
    npacks = struct.unpack_from("<I", data, 6 + 2 + 8 + 64)[0]
    big = bytearray(data)
    struct.pack_into("<III", big, runs_at + 32 * npacks + 24, 6, 2**32 - 7, 0)  # the last run
    hostile = decode_stored(new.blob, _resign(big))
    assert isinstance(hostile, RecipeEdits)
    with pytest.raises(IntegrityError, match="does not fit its base"):
        hostile.resolve(base)
    # Runs going backwards are refused as soon as the recipe is read.
    back = bytearray(data)
    struct.pack_into("<III", back, runs_at + 32 * npacks + 12, 0, 1, 1)
    with pytest.raises(IntegrityError, match="does not fit its base"):
        decode_stored(new.blob, _resign(back))
    # A recipe naming itself as its base.
    selfish = bytearray(data)
    selfish[16:48] = new.blob.raw
    with pytest.raises(FormatError, match="edits of itself"):
        decode_stored(new.blob, _resign(selfish))
    damaged = bytearray(data)
    damaged[runs_at] ^= 1
    with pytest.raises(IntegrityError, match="checksum"):
        decode_stored(new.blob, bytes(damaged))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_edits_and_edit_footers_fail_only_cleanly(changes: list[tuple[int, int]]) -> None:
    """Any bytes of a format-3 recipe (checksum re-signed, as a hostile store would) or of a
    format-2 footer: a FormatError or IntegrityError, or a recipe that resolves within bounds."""
    base, new = _pair()
    data = bytearray(new.as_edits(base).encode())
    for at, value in changes:
        data[at % (len(data) - 32)] = value
    try:
        got = decode_stored(new.blob, _resign(data))
        if isinstance(got, RecipeEdits):
            assert len(got.resolve(base).chunks) <= len(base.chunks) + len(got.new)
    except (FormatError, IntegrityError):
        pass
    builder = pack_mod.PackBuilder()
    builder.add(Digest.of(b"x"), b"\x00\x01\x00\x00\x00x", 1)
    builder.add_file_list([pack_mod.FileList(new.blob, 1050, ((Digest.of(b"x"), 100),), base.blob,
                                             (edits.Run(0, 3, 1), edits.Run(4, 6, 0)))])
    _, pack, _ = builder.finish()
    mutated = bytearray(pack)
    for at, value in changes:
        mutated[at % (len(mutated) - 12)] = value
    try:
        footer_of(bytes(mutated), "packs/xx/test")
    except FormatError:
        pass


def test_footer_format_2_round_trip() -> None:
    base, new = _pair()
    builder = pack_mod.PackBuilder()
    builder.add(Digest.of(b"x"), b"\x00\x01\x00\x00\x00x", 1)
    lists = [pack_mod.FileList(base.blob, 1000, tuple((c.chunk, c.raw_length) for c in base.chunks)),
             pack_mod.FileList(new.blob, 1050, ((Digest.of(b"x"), 100),), base.blob, (edits.Run(0, 3, 1),))]
    builder.add_file_list(lists)
    _, data, _ = builder.finish()
    footer = footer_of(data, "packs/xx/test")
    assert footer.files == lists
    start = len(data) - 12 - int.from_bytes(data[-12:-8], "little")
    assert data[start : start + 2] == (2).to_bytes(2, "little")


# -- publish and read --------------------------------------------------------------------------


def test_versions_are_stored_as_edits_of_the_first_and_read_everywhere(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    zoo = make_store(tmp_path / "store")
    data = three_versions(zoo, tmp_path)
    b1, b2, b3 = (blob_of(zoo, v) for v in ("1.0.0", "2.0.0", "3.0.0"))
    s1, s2, s3 = stored(zoo, b1), stored(zoo, b2), stored(zoo, b3)
    assert isinstance(s1, Recipe)
    assert isinstance(s2, RecipeEdits) and s2.against == b1
    assert isinstance(s3, RecipeEdits) and s3.against == b1, "chain depth one: 3.0.0 is edits of 1.0.0, not 2.0.0"
    whole = open_store(zoo.url).blobs.recipe(b2)
    assert len(s2.encode()) < 0.5 * len(Recipe(b2, whole.size, whole.chunks).encode())
    for version, want in zip(("1.0.0", "2.0.0", "3.0.0"), data):
        fresh = open_store(zoo.url)
        blob = blob_of(zoo, version)
        assert fresh.blobs.get_file(blob, tmp_path / f"out-{version}").read_bytes() == want
        assert open_store(zoo.url).blobs.read_range(blob, 30_000, 31_000) == want[30_000:31_000]
    project = tmp_path / "project"
    project.mkdir()
    for version, want in (("1.0.0", data[0]), ("3.0.0", data[2])):
        (project / "zoo.toml").write_text(f'store = "../store"\narchs = ["x86_64"]\n[models]\nm = "{version}"\n')
        zoostore.sync(project)
        assert (project / "models" / "m" / "x86_64" / "lib.so").read_bytes() == want
    import fsspec
    with fsspec.open("zoo://m@2.0.0/any/lib.so", store=str(tmp_path / "store"), mode="rb") as f:
        f.seek(100)
        assert f.read(40_000) == data[1][100:40_100]
    assert verify_store(open_store(zoo.url), read_data=True).ok


def test_footer_lists_an_edited_file_as_edits(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store")
    three_versions(zoo, tmp_path)
    lists = {}
    for info in zoo.backend.list("packs/"):
        for fl in footer_of(zoo.backend.get(info.key), info.key).files:
            lists[fl.blob] = fl
    b1, b2 = blob_of(zoo, "1.0.0"), blob_of(zoo, "2.0.0")
    whole = open_store(zoo.url).blobs.recipe(b2)
    assert lists[b1].base is None and len(lists[b1].chunks) == len(open_store(zoo.url).blobs.recipe(b1).chunks)
    assert lists[b2].base == b1 and len(lists[b2].chunks) < len(whole.chunks) // 4, "only the new chunks"
    resolved = edits.apply(lists[b1].chunks, lists[b2].runs, lists[b2].chunks, where="t")
    assert resolved == [(r.chunk, r.raw_length) for r in whole.chunks]


def test_plain_and_frames_only_stores_write_whole_recipes(tmp_path: Path) -> None:
    for name, config in (("plain", StoreConfig(chunking=DELTA.chunking, pack_target_size=16 * 1024)),
                         ("frames", StoreConfig(chunking=DELTA.chunking, pack_target_size=16 * 1024, delta=True,
                                                format=2))):
        zoo = make_store(tmp_path / name, config)
        three_versions(zoo, tmp_path / name)
        assert all(isinstance(stored(zoo, blob_of(zoo, v)), Recipe) for v in ("1.0.0", "2.0.0", "3.0.0"))
        for info in zoo.backend.list("packs/"):
            data = zoo.backend.get(info.key)
            assert int.from_bytes(data[-12 - int.from_bytes(data[-12:-8], "little"):][:2], "little") == 1


def test_a_whole_new_file_is_not_stored_as_edits(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store")
    put(zoo, tmp_path, "1.0.0", {"lib.so": random.Random(1).randbytes(60_000)})
    put(zoo, tmp_path, "2.0.0", {"lib.so": random.Random(2).randbytes(60_000)})
    assert isinstance(stored(zoo, blob_of(zoo, "2.0.0")), Recipe), "not clearly smaller: stored whole"


def test_reusing_an_edited_blob_freshens_its_base_recipe(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store")
    data = three_versions(zoo, tmp_path)
    b1 = blob_of(zoo, "1.0.0")
    _age(zoo, 2 * HOUR)
    old = zoo.backend.stat(f"blobs/{b1.hex[:2]}/{b1.hex}").mtime
    put(open_store(zoo.url), tmp_path, "4.0.0", {"lib.so": data[1]})  # 2.0.0's bytes again: reused
    assert zoo.backend.stat(f"blobs/{b1.hex[:2]}/{b1.hex}").mtime > old + HOUR


# -- gc and repack -------------------------------------------------------------------------------


def test_gc_keeps_a_base_recipe_whose_version_is_dropped(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store")
    data = three_versions(zoo, tmp_path)
    b1, b2, b3 = (blob_of(zoo, v) for v in ("1.0.0", "2.0.0", "3.0.0"))
    _age(zoo, 2 * HOUR)
    plan = plan_gc(zoo, keep=["m@3.0.0"])
    deleted = {i.key for i in plan.recipes}
    assert f"blobs/{b2.hex[:2]}/{b2.hex}" in deleted
    assert f"blobs/{b1.hex[:2]}/{b1.hex}" not in deleted, "3.0.0 is stored as edits of 1.0.0's recipe"
    plan.execute()
    assert set(open_store(zoo.url).manifest("m").versions) == {"3.0.0"}
    assert zoo.backend.exists(f"blobs/{b1.hex[:2]}/{b1.hex}") and not zoo.backend.exists(f"blobs/{b2.hex[:2]}/{b2.hex}")
    assert open_store(zoo.url).blobs.get_file(b3, tmp_path / "out").read_bytes() == data[2]
    assert verify_store(open_store(zoo.url), read_data=True).ok
    # A second gc (its recipe cache now knows 3.0.0's base) still keeps it.
    _age(zoo, 2 * HOUR)
    plan_gc(zoo).execute()
    assert open_store(zoo.url).blobs.get_file(b3, tmp_path / "out2").read_bytes() == data[2]


def test_gc_drops_a_base_recipe_nobody_refers_to(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store")
    v1 = random.Random(5).randbytes(60_000)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1})
    put(zoo, tmp_path, "2.0.0", {"lib.so": flip(v1, 6)})
    put(zoo, tmp_path, "3.0.0", {"lib.so": random.Random(7).randbytes(60_000)})  # whole: nothing in common
    b1, b2 = blob_of(zoo, "1.0.0"), blob_of(zoo, "2.0.0")
    assert isinstance(stored(zoo, b2), RecipeEdits)
    _age(zoo, 2 * HOUR)
    result = plan_gc(zoo, keep=["m@3.0.0"]).execute()
    assert result.recipes_deleted == 2
    assert not zoo.backend.exists(f"blobs/{b1.hex[:2]}/{b1.hex}") and not zoo.backend.exists(f"blobs/{b2.hex[:2]}/{b2.hex}")
    assert verify_store(open_store(zoo.url), read_data=True).ok


def test_gc_keeps_a_base_whose_user_a_publisher_just_freshened(tmp_path: Path) -> None:
    """A dropped version's recipe, stored as edits, reused by a publisher during gc: its base
    goes after it and stays with it (the order of docs/gc.md, one level up)."""
    zoo = make_store(tmp_path / "store")
    data = three_versions(zoo, tmp_path)
    b1, b2 = blob_of(zoo, "1.0.0"), blob_of(zoo, "2.0.0")
    put(zoo, tmp_path, "4.0.0", {"lib.so": random.Random(9).randbytes(60_000)})
    _age(zoo, 2 * HOUR)
    plan = plan_gc(zoo, keep=["m@4.0.0"])
    assert {f"blobs/{b.hex[:2]}/{b.hex}" for b in (b1, b2)} <= {i.key for i in plan.recipes}
    for key in (f"blobs/{b2.hex[:2]}/{b2.hex}", f"blobs/{b1.hex[:2]}/{b1.hex}"):
        zoo.backend.freshen(key)  # what the handshake does when a publisher reuses 2.0.0's blob
    plan.execute()
    assert zoo.backend.exists(f"blobs/{b1.hex[:2]}/{b1.hex}") and zoo.backend.exists(f"blobs/{b2.hex[:2]}/{b2.hex}")
    assert open_store(zoo.url).blobs.get_file(b2, tmp_path / "out").read_bytes() == data[1]


def test_repack_keeps_edited_recipes_readable(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store")
    v1 = random.Random(11).randbytes(60_000)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1, "old.bin": random.Random(12).randbytes(40_000)})
    v2 = flip(v1, 13)
    put(zoo, tmp_path, "2.0.0", {"lib.so": v2})
    b2 = blob_of(zoo, "2.0.0")
    before = stored(zoo, b2)
    assert isinstance(before, RecipeEdits)
    _age(zoo, 2 * HOUR)
    plan = plan_gc(zoo, keep=["m@2.0.0"], repack=True, repack_threshold=0.95)
    result = plan.execute()
    assert result.packs_repacked >= 1
    _age(zoo, 2 * HOUR)
    plan_gc(zoo, keep=["m@2.0.0"]).execute()  # the old packs go now
    after = stored(zoo, b2)
    assert isinstance(after, RecipeEdits) and after.against == before.against and after.runs == before.runs
    assert open_store(zoo.url).blobs.get_file(b2, tmp_path / "out").read_bytes() == v2
    assert verify_store(open_store(zoo.url), read_data=True).ok


# -- verify and repair ---------------------------------------------------------------------------


@pytest.mark.parametrize("lost", [["2.0.0"], ["1.0.0", "2.0.0"]])
def test_repair_rebuilds_edited_recipes_whole(tmp_path: Path, lost: list[str]) -> None:
    zoo = make_store(tmp_path / "store")
    data = three_versions(zoo, tmp_path)
    for version in lost:
        b = blob_of(zoo, version)
        os.remove(root_of(zoo) / f"blobs/{b.hex[:2]}/{b.hex}")
    report = verify_store(open_store(zoo.url), repair=True)
    # Without 1.0.0's recipe, 3.0.0's (edits of it) is broken too: rebuilt from its edits over
    # 1.0.0's file list.
    assert report.ok and not report.unrepaired
    assert len(report.repaired) == (1 if lost == ["2.0.0"] else 3)
    for version, want in zip(("1.0.0", "2.0.0", "3.0.0"), data):
        b = blob_of(zoo, version)
        assert open_store(zoo.url).blobs.get_file(b, tmp_path / f"out-{version}").read_bytes() == want
    assert isinstance(stored(zoo, blob_of(zoo, "2.0.0")), Recipe), "a rebuilt recipe is whole"
    assert verify_store(open_store(zoo.url), read_data=True).ok


def test_missing_base_recipe_is_a_clear_error_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zoo = make_store(tmp_path / "store")
    three_versions(zoo, tmp_path)
    b1, b2 = blob_of(zoo, "1.0.0"), blob_of(zoo, "2.0.0")
    shutil.move(root_of(zoo) / f"blobs/{b1.hex[:2]}/{b1.hex}", tmp_path / "saved")
    with pytest.raises(IntegrityError, match="is stored as edits of recipe .* not in the store"):
        open_store(zoo.url).blobs.recipe(b2)
    assert cli(["blob", "get", str(root_of(zoo)), str(b2), str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "stored as edits" in err
    report = verify_store(open_store(zoo.url))
    assert any(p.kind == "bad-recipe" and b2.hex in p.obj for p in report.problems)
    plan = plan_gc(zoo)
    assert any("stored as edits of recipe" in p for p in plan.problems) and not plan.packs


def test_edits_against_a_swapped_base_are_an_integrity_error(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store")
    three_versions(zoo, tmp_path)
    b1, b2 = blob_of(zoo, "1.0.0"), blob_of(zoo, "2.0.0")
    # The base recipe replaced by another whole recipe of the same size under 1.0.0's name
    # (its chunks in another order): the edits give a list other than the one they pin.
    base = open_store(zoo.url).blobs.recipe(b1)
    (root_of(zoo) / f"blobs/{b1.hex[:2]}/{b1.hex}").write_bytes(Recipe(b1, base.size, base.chunks[::-1]).encode())
    with pytest.raises(IntegrityError, match="does not fit it"):
        open_store(zoo.url).blobs.recipe(b2)


# -- golden files and older zoostores --------------------------------------------------------------


def test_format3_golden_store_still_reads(tmp_path: Path) -> None:
    zoo = open_store(GOLDEN / "store")
    assert zoo.config.format == 3 and zoo.config.recipe_edits
    b1, b2 = (zoo.manifest("golden").versions[v].files["x86_64"]["lib.so"].blob for v in ("1.0.0", "2.0.0"))
    s2 = stored(zoo, b2)
    assert isinstance(s2, RecipeEdits) and s2.against == b1 and s2.bases
    for version, blob in (("1.0.0", b1), ("2.0.0", b2)):
        out = zoo.blobs.get_file(blob, tmp_path / version)
        assert out.read_bytes() == (GOLDEN / "expected" / version / "lib.so").read_bytes()
    footers = [footer_of(zoo.backend.get(i.key), i.key) for i in zoo.backend.list("packs/")]
    assert any(fl.base == b1 for f in footers for fl in f.files), "a format-2 footer lists 2.0.0 as edits"
    assert verify_store(zoo, read_data=True).ok


def test_older_zoostores_refuse_the_format3_golden_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_config, "FORMAT", 2)  # a zoostore with delta frames, without recipe edits
    with pytest.raises(NewerFormatError, match="upgrade zoostore"):
        open_store(GOLDEN / "store")
    monkeypatch.undo()
    zoo = open_store(GOLDEN / "store")
    monkeypatch.setattr(pack_mod, "FORMAT", 1)
    with pytest.raises(NewerFormatError, match="upgrade zoostore"):
        for info in zoo.backend.list("packs/"):
            footer_of(zoo.backend.get(info.key), info.key)


def test_enable_delta_moves_a_frames_only_store_to_format_3(tmp_path: Path) -> None:
    zoo = make_store(tmp_path / "store", StoreConfig(chunking=DELTA.chunking, pack_target_size=16 * 1024,
                                                     delta=True, format=2))
    v1 = random.Random(21).randbytes(60_000)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1})
    assert cli(["config", str(root_of(zoo)), "--enable-delta"]) == 0
    assert "format = 3" in (root_of(zoo) / "zoostore.toml").read_text()
    zoo = open_store(zoo.url)
    put(zoo, tmp_path, "2.0.0", {"lib.so": flip(v1, 22)})
    assert isinstance(stored(zoo, blob_of(zoo, "2.0.0")), RecipeEdits)
    assert open_store(zoo.url).blobs.read_range(blob_of(zoo, "2.0.0"), 0, 10) == flip(v1, 22)[:10]


def test_gc_recipe_cache_remembers_bases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    zoo = make_store(tmp_path / "store")
    three_versions(zoo, tmp_path)
    b1 = blob_of(zoo, "1.0.0")
    _age(zoo, 2 * HOUR)
    plan_gc(zoo, keep=["m@2.0.0 || 3.0.0"]).execute()  # fills the cache
    time.sleep(0.01)

    def no_reads(*_: object) -> str:
        raise AssertionError("a recipe was read again although the gc cache knew it")

    from zoostore.ops.gc import survey
    monkeypatch.setattr(survey._RecipeIndex, "read", no_reads)
    plan = plan_gc(zoo, keep=["m@3.0.0"])  # from the cache: 3.0.0's base is still known
    assert f"blobs/{b1.hex[:2]}/{b1.hex}" not in {i.key for i in plan.recipes}


def test_format_zero_is_a_format_error() -> None:
    # A footer or recipe claiming format 0 does not exist (footers were read as format 1 before).
    footer = struct.pack("<HI", 0, 0) + struct.pack("<I", 0)
    with pytest.raises(FormatError, match="format 0 does not exist"):
        pack_mod.parse_footer(footer, where="test")
    whole = recipe_mod.Recipe(Digest.of(b"x"), 0, ()).encode()
    zero = whole[:6] + struct.pack("<H", 0) + whole[8:]
    with pytest.raises(FormatError, match="format 0 does not exist"):
        recipe_mod.decode_stored(Digest.of(b"x"), zero)


def test_footer_runs_without_a_base_are_a_format_error() -> None:
    footer = (struct.pack("<HI", 2, 0) + struct.pack("<I", 1)
              + struct.pack("<32sQ32sI", bytes(range(32)), 10, bytes(32), 1) + struct.pack("<III", 0, 0, 1)
              + struct.pack("<I", 0))
    with pytest.raises(FormatError, match="names no base"):
        pack_mod.parse_footer(footer, where="test")
