"""`zoostore verify`: every problem is found and reported, --read-data re-hashes chunks, and
--repair rebuilds recipes from pack footers (and says what it could not)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from test_gc import content, keys, make_zoo, put_version, store_root
from zoostore.cli import main as cli
from zoostore.core.digest import Digest
from zoostore.storage.pack import pack_key
from zoostore.storage.recipe import blob_key
from zoostore.repository import open_store
from zoostore.ops.verify import read_footer, verify_store
from zoostore.repository import Store


def _blob(zoo: Store, model: str, version: str, path: str) -> Digest:
    return zoo.manifest(model).versions[version].files["any"][path].blob


def _packs(zoo: Store, blob: Digest) -> list[str]:
    return [pack_key(p) for p in zoo.blobs.recipe(blob).packs]


@pytest.fixture
def zoo(tmp_path: Path) -> Store:
    z = make_zoo(tmp_path / "store")
    put_version(z, tmp_path, "m", "1.0.0", {"a.bin": content(1), "b.bin": content(2)})
    put_version(z, tmp_path, "n", "1.0.0", {"c.bin": content(3)})
    return z


def _kinds(report: object) -> list[str]:
    return sorted(p.kind for p in report.problems)  # type: ignore[attr-defined]


def test_clean_store_has_no_problems(zoo: Store) -> None:
    report = verify_store(zoo, read_data=True)
    assert report.problems == [] and report.ok
    assert report.recipes == 3 and report.packs == report.packs_read == len(keys(zoo, "packs/"))
    assert report.chunks_read > 0 and report.bytes_read == sum(i.size for i in zoo.backend.list("packs/"))


def test_manifest_file_without_recipe(zoo: Store) -> None:
    blob = _blob(zoo, "m", "1.0.0", "a.bin")
    zoo.backend.delete([blob_key(blob)])
    report = verify_store(open_store(zoo.url))
    assert _kinds(report) == ["missing-recipe"]
    problem = report.problems[0]
    assert problem.obj == blob_key(blob) and "m@1.0.0 any/a.bin" in problem.message


def test_recipe_naming_a_missing_pack(zoo: Store) -> None:
    blob = _blob(zoo, "n", "1.0.0", "c.bin")
    victim = _packs(zoo, blob)[0]
    zoo.backend.delete([victim])
    report = verify_store(open_store(zoo.url))
    assert "missing-pack" in _kinds(report)
    assert any(p.obj == victim and str(blob) in p.message for p in report.problems)


def test_read_data_detects_a_flipped_byte(zoo: Store) -> None:
    blob = _blob(zoo, "m", "1.0.0", "b.bin")
    recipe = zoo.blobs.recipe(blob)
    ref = recipe.chunks[len(recipe.chunks) // 2]
    path = store_root(zoo) / pack_key(ref.pack)
    data = bytearray(path.read_bytes())
    data[ref.offset + ref.length // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert verify_store(open_store(zoo.url)).problems == [], "sizes still agree: only reading finds it"
    report = verify_store(open_store(zoo.url), read_data=True)
    kinds = _kinds(report)
    assert "bad-pack" in kinds and kinds.count("bad-chunk") >= 2  # the frame, and the blob using it
    assert any(p.obj == blob_key(blob) and str(ref.chunk) in p.message for p in report.problems)


def test_read_data_detects_a_truncated_pack(zoo: Store) -> None:
    blob = _blob(zoo, "m", "1.0.0", "a.bin")
    victim = _packs(zoo, blob)[-1]
    path = store_root(zoo) / victim
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    report = verify_store(open_store(zoo.url))
    assert "bad-frame-range" in _kinds(report)
    report = verify_store(open_store(zoo.url), read_data=True)
    bad = [p for p in report.problems if p.obj == victim and p.kind == "bad-pack"]
    assert any("hash" in p.message for p in bad) and any("footer" in p.message for p in bad)


def test_read_data_with_a_missing_pack(zoo: Store) -> None:
    blob = _blob(zoo, "m", "1.0.0", "a.bin")
    victim = _packs(zoo, blob)[0]
    zoo.backend.delete([victim])
    report = verify_store(open_store(zoo.url), read_data=True)
    assert "missing-pack" in _kinds(report) and report.packs_read == len(keys(zoo, "packs/"))


def test_every_problem_is_reported_in_one_run(zoo: Store) -> None:
    a, b, c = (_blob(zoo, "m", "1.0.0", "a.bin"), _blob(zoo, "m", "1.0.0", "b.bin"),
               _blob(zoo, "n", "1.0.0", "c.bin"))
    zoo.backend.delete([blob_key(a)])                                     # missing recipe
    zoo.backend.put(blob_key(b), zoo.backend.get(blob_key(b))[:-1] + b"\0")  # damaged recipe
    zoo.backend.delete([_packs(zoo, c)[0]])                              # missing pack
    report = verify_store(open_store(zoo.url), read_data=True)
    kinds = set(_kinds(report))
    assert {"missing-recipe", "bad-recipe", "missing-pack"} <= kinds
    assert not report.ok


def test_read_data_subset_slices_cover_every_pack_once(zoo: Store) -> None:
    total = len(keys(zoo, "packs/"))
    read = [verify_store(zoo, subset=(n, 3)).packs_read for n in (1, 2, 3)]
    assert sum(read) == total and all(r <= total for r in read)


def test_repair_rebuilds_a_deleted_recipe_and_says_what_it_could_not(zoo: Store, tmp_path: Path) -> None:
    a = _blob(zoo, "m", "1.0.0", "a.bin")
    c = _blob(zoo, "n", "1.0.0", "c.bin")
    # c's publish listed its file in its last pack; losing that pack and the recipe loses c.
    lists_c = [p for p in _packs(zoo, c)
               if any(fl.blob == c for fl in read_footer(zoo, Digest(p.rsplit("/", 1)[1]),
                                                         zoo.backend.stat(p).size).files)]
    assert lists_c
    zoo.backend.delete([blob_key(a), blob_key(c), *lists_c])
    report = verify_store(open_store(zoo.url), repair=True)
    assert any(str(a) in r and "rebuilt" in r for r in report.repaired)
    assert any(str(c) in r and "republish" in r for r in report.unrepaired)
    assert not report.ok
    fresh = open_store(zoo.url)
    out = fresh.blobs.get_file(a, tmp_path / "a.bin")
    assert Digest.of(out.read_bytes()) == a
    assert blob_key(c) not in keys(zoo, "blobs/")


def test_read_data_finds_a_recipe_that_misplaces_chunks_and_repair_rebuilds_it(zoo: Store, tmp_path: Path) -> None:
    # A damaged (or hostile) recipe: its frames exist and its checksum holds, but it names the
    # wrong chunk at two places of a pack. Only the pack footers can tell.
    a = _blob(zoo, "m", "1.0.0", "a.bin")
    recipe = zoo.blobs.recipe(a)
    assert len(recipe.chunks) >= 2
    first, second = recipe.chunks[:2]
    lying = replace(recipe, chunks=(replace(first, chunk=second.chunk), replace(second, chunk=first.chunk),
                                    *recipe.chunks[2:]))
    zoo.backend.put(blob_key(a), lying.encode())
    assert verify_store(open_store(zoo.url)).problems == []  # without reading packs: unseen
    report = verify_store(open_store(zoo.url), read_data=True)
    assert _kinds(report) == ["recipe-mismatch"]
    assert report.problems[0].obj == blob_key(a) and str(first.chunk) in report.problems[0].message
    repaired = verify_store(open_store(zoo.url), read_data=True, repair=True)
    assert any(str(a) in r and "rebuilt" in r for r in repaired.repaired)
    assert verify_store(open_store(zoo.url), read_data=True).problems == []
    assert Digest.of(open_store(zoo.url).blobs.get_file(a, tmp_path / "a.bin").read_bytes()) == a


def test_repairing_a_recipe_mismatch_makes_the_report_ok_and_exits_0(zoo: Store, tmp_path: Path) -> None:
    # `verify --read-data --repair` that rebuilt every misplacing recipe has nothing left to fix:
    # like a rebuilt missing or bad recipe, the report is ok and the command exits 0.
    a = _blob(zoo, "m", "1.0.0", "a.bin")
    recipe = zoo.blobs.recipe(a)
    first, second = recipe.chunks[:2]
    lying = replace(recipe, chunks=(replace(first, chunk=second.chunk), replace(second, chunk=first.chunk),
                                    *recipe.chunks[2:]))
    zoo.backend.put(blob_key(a), lying.encode())
    report = verify_store(open_store(zoo.url), read_data=True, repair=True)
    assert _kinds(report) == ["recipe-mismatch"] and len(report.repaired) == 1 and not report.unrepaired
    assert report.ok
    zoo.backend.put(blob_key(a), lying.encode())
    assert cli(["verify", zoo.url, "--read-data", "--repair"]) == 0
    assert verify_store(open_store(zoo.url), read_data=True).problems == []


def test_repair_does_not_rebuild_from_a_recipe_that_misplaces_chunks(tmp_path: Path) -> None:
    # A recipe-edits store: 2.0.0's recipe is edits of 1.0.0's, and so is its footer's file list.
    # 1.0.0's recipe lies about two chunks that 2.0.0 shares: 2.0.0's recipe no longer resolves.
    # Repair must take 1.0.0's chunk list from its footer, not from the lying recipe, for both.
    import random

    from test_delta import blob_of, flip, make_store, put
    from zoostore.storage.recipe import RecipeEdits, decode_stored

    zoo = make_store(tmp_path / "store")
    v1 = random.Random(5).randbytes(60_000)
    v2 = flip(v1, 6)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1})
    put(zoo, tmp_path, "2.0.0", {"lib.so": v2})
    b1, b2 = blob_of(zoo, "1.0.0"), blob_of(zoo, "2.0.0")
    assert isinstance(decode_stored(b2, zoo.backend.get(blob_key(b2))), RecipeEdits)
    r1, r2 = zoo.blobs.recipe(b1), zoo.blobs.recipe(b2)
    i, j = [k for k, (x, y) in enumerate(zip(r1.chunks, r2.chunks)) if x == y][:2]  # shared by 2.0.0
    chunks = list(r1.chunks)
    chunks[i], chunks[j] = replace(chunks[i], chunk=r1.chunks[j].chunk), replace(chunks[j], chunk=r1.chunks[i].chunk)
    zoo.backend.put(blob_key(b1), replace(r1, chunks=tuple(chunks)).encode())
    report = verify_store(open_store(zoo.url), read_data=True, repair=True)
    assert "recipe-mismatch" in _kinds(report)
    assert not report.unrepaired and report.ok, report.unrepaired
    for version, want in (("1.0.0", v1), ("2.0.0", v2)):
        out = open_store(zoo.url).blobs.get_file(blob_of(zoo, version), tmp_path / f"out-{version}")
        assert out.read_bytes() == want
    assert verify_store(open_store(zoo.url), read_data=True).problems == []


def test_a_chunk_stored_again_elsewhere_is_not_blamed_for_its_bad_copy(tmp_path: Path) -> None:
    # 1.0.0's packs are lost, so 2.0.0's delta frames (bases in them) are bad. 3.0.0, published
    # after, stored those chunks anew as plain frames in a new pack: it reads back, and verify
    # names 2.0.0 but not 3.0.0 (a bad frame is a pack's frame, not every copy of its chunk).
    import random

    from test_delta import blob_of, flip, make_store, put

    zoo = make_store(tmp_path / "store")
    v1 = random.Random(71).randbytes(60_000)
    v2, v3 = flip(v1, 72), flip(flip(v1, 72), 73)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1})
    lost = keys(zoo, "packs/")
    put(zoo, tmp_path, "2.0.0", {"lib.so": v2})
    for key in lost:
        (store_root(zoo) / key).unlink()
    put(open_store(zoo.url), tmp_path, "3.0.0", {"lib.so": v3})
    fresh = open_store(zoo.url)
    b2, b3 = blob_of(fresh, "2.0.0"), blob_of(fresh, "3.0.0")
    shared = {r.chunk for r in fresh.blobs.recipe(b2).chunks if r.base is not None}
    assert shared & {r.chunk for r in fresh.blobs.recipe(b3).chunks}
    assert fresh.blobs.get_file(b3, tmp_path / "out.so").read_bytes() == v3
    problems = verify_store(fresh, read_data=True).problems
    assert any(p.kind == "bad-chunk" and p.obj == blob_key(b2) for p in problems)
    assert not [p for p in problems if str(b3) in p.message or p.obj == blob_key(b3)]


def test_repair_alone_makes_a_report_ok(zoo: Store) -> None:
    a = _blob(zoo, "m", "1.0.0", "a.bin")
    zoo.backend.delete([blob_key(a)])
    report = verify_store(open_store(zoo.url), repair=True)
    assert report.repaired and not report.unrepaired and report.ok
    assert verify_store(open_store(zoo.url), read_data=True).problems == []


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_exit_codes_and_json(zoo: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["verify", zoo.url, "--read-data", "-q"]) == 0
    assert "no problems" in capsys.readouterr().err
    a = _blob(zoo, "m", "1.0.0", "a.bin")
    zoo.backend.delete([blob_key(a)])
    assert cli(["verify", zoo.url, "--json", "-q"]) == 4
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["problems"][0]["kind"] == "missing-recipe"
    assert cli(["verify", zoo.url, "--repair", "-q"]) == 0
    out = capsys.readouterr().out
    assert "problem: missing-recipe" in out and "repaired:" in out
    assert cli(["verify", zoo.url, "--read-data-subset", "2/2", "-q"]) == 0


@pytest.mark.parametrize("subset", ["0/3", "4/3", "x", "1/0", "1-3"])
def test_cli_rejects_bad_subsets(zoo: Store, subset: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["verify", zoo.url, "--read-data-subset", subset]) == 2
    assert "N/M" in capsys.readouterr().err


def test_cli_unrepairable_exits_4(zoo: Store, capsys: pytest.CaptureFixture[str]) -> None:
    c = _blob(zoo, "n", "1.0.0", "c.bin")
    zoo.backend.delete([blob_key(c), *_packs(zoo, c)])
    assert cli(["verify", zoo.url, "--repair", "-q"]) == 4
    assert "not repaired:" in capsys.readouterr().out


def test_verify_sees_a_store_after_gc_and_repack(tmp_path: Path) -> None:
    from test_gc import age_store, mutate

    from zoostore.ops.gc import plan_gc

    z = make_zoo(tmp_path / "s")
    base = content(7, n=60_000)
    for i, v in enumerate(["1.0.0", "1.1.0", "1.2.0"]):
        put_version(z, tmp_path, "m", v, {"w.bin": mutate(base, i, size=20_000)})
    age_store(z, 7200)
    plan_gc(z, keep=["m@1.2.0"], repack=True, repack_threshold=0.95).execute()
    assert verify_store(open_store(z.url), read_data=True).problems == []
