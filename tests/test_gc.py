"""Garbage collection: retention rules, plan/execute, the grace period, repack, the CLI, and the
publisher's side of the safety rule (freshen, settle check). Helpers here are shared with
test_gc_state_machine.py and test_gc_s3_concurrent.py."""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from helpers_store import write_dir as write_files

from zoostore.cli import main as cli
from zoostore.documents.store_config import Chunking, StoreConfig
from zoostore.core.digest import Digest
from zoostore.core.errors import ConflictError, FormatError, ReadOnlyError, UsageError
from zoostore.ops.gc import GcPlan, KeepRule, pinned_blobs, pinned_versions, plan_gc
from zoostore.documents.lockfile import Lock, LockedFile, LockedModel
from zoostore.documents.manifest import FileEntry, Release, manifest_key, now_utc
from zoostore.storage.pack import pack_key
from zoostore.ops.publish import publish
from zoostore.storage.recipe import blob_key
from zoostore.repository import init_store, open_store
from zoostore.ops.verify import read_footer, verify_store
from zoostore.repository import Store

HOUR = 3600.0
#: Tiny chunks and packs: a 40 kB file spans several packs, so dedup and repack have work.
# A settle time of 0.2 s keeps the publish/gc handshake quick in tests (docs/gc.md).
TINY = StoreConfig(chunking=Chunking(256, 1024, 4096), pack_target_size=16 * 1024, grace_seconds=HOUR,
                   settle_seconds=0.2)


# -- helpers (shared) ------------------------------------------------------------------------


def make_zoo(path: Path, *, grace: float = HOUR, pack_size: int = TINY.pack_target_size,
             settle: float = TINY.settle_seconds) -> Store:
    config = StoreConfig(chunking=TINY.chunking, pack_target_size=pack_size, grace_seconds=grace,
                         settle_seconds=settle)
    zoo, _ = init_store(path, config=config)
    assert isinstance(zoo, Store)
    return zoo


def content(seed: int, n: int = 40_000) -> bytes:
    return random.Random(seed).randbytes(n)


def mutate(data: bytes, seed: int, size: int = 6_000) -> bytes:
    """`data` with one region replaced: shares most chunks with it (dedup)."""
    rng = random.Random(seed)
    at = rng.randrange(0, max(1, len(data) - size))
    return data[:at] + rng.randbytes(size) + data[at + size :]


def put_version(zoo: Store, tmp: Path, model: str, version: str, files: dict[str, bytes], *,
                tags: tuple[str, ...] = (), arch: str = "any") -> None:
    src = write_files(tmp / "src" / f"{model}-{version}-{arch}", files)
    publish(zoo, model, version, [src], arch=arch, tags=tags, check=False)


def orphan(zoo: Store, tmp: Path, name: str, data: bytes) -> Digest:
    """A failed publish: recipe and packs written, no manifest entry."""
    path = write_files(tmp / "orphans", {name: data}) / name
    return zoo.blobs.put_files([path])[0].blob


def store_root(zoo: Store) -> Path:
    return Path(zoo.url.removeprefix("file://"))


def age_store(zoo: Store, seconds: float, *, prefixes: tuple[str, ...] = ("packs/", "blobs/"),
              keys: set[str] | None = None) -> None:
    """Move mtimes `seconds` into the past (local backend): the same as the clock moving on."""
    root = store_root(zoo)
    for prefix in prefixes:
        for info in zoo.backend.list(prefix):
            if keys is None or info.key in keys:
                t = info.mtime - seconds
                os.utime(root / info.key, (t, t))


def keys(zoo: Store, prefix: str) -> set[str]:
    return {i.key for i in zoo.backend.list(prefix)}


def snapshot(zoo: Store) -> dict[str, tuple[int, float]]:
    return {i.key: (i.size, i.mtime) for i in zoo.backend.list("")}


def assert_all_readable(url: str, tmp: Path, *, storage_options: dict[str, Any] | None = None) -> int:
    """Every file of every listed version reads back verified, through a fresh store object
    (no cached recipes). Returns the number of files read."""
    zoo = open_store(url, storage_options=storage_options)
    out = tmp / f"read-{time.monotonic_ns()}"
    count = 0
    for model in zoo.models():
        m = zoo.manifest(model)
        for version, release in m.versions.items():
            for arch, path, entry in release.blobs():
                dest = zoo.blobs.get_file(entry.blob, out / model / version / arch / path)
                assert dest.stat().st_size == entry.size
                count += 1
    return count


def lock_text(store: str, pins: dict[str, str], zoo: Store | None = None) -> str:
    models = {}
    for name, version in pins.items():
        files: tuple[LockedFile, ...] = ()
        if zoo is not None and name in zoo.models() and version in zoo.manifest(name).versions:
            release = zoo.manifest(name).versions[version]
            files = tuple(LockedFile(arch, path, e.blob, e.size) for arch, path, e in release.blobs())
        models[name] = LockedModel(name, "*", ("x86_64",), (), version, files)
    return Lock(store=store, models=models).dumps()


# -- sweeping without --keep --------------------------------------------------------------------


def test_without_keep_only_old_unreferenced_objects_go(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path / "store")
    base = content(1)
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": base})
    put_version(zoo, tmp_path, "m", "1.1.0", {"w.bin": mutate(base, 2)})
    live_recipes, live_packs = keys(zoo, "blobs/"), keys(zoo, "packs/")
    old_orphan = orphan(zoo, tmp_path, "old.bin", content(3))
    age_store(zoo, 2 * HOUR)
    young_orphan = orphan(zoo, tmp_path, "young.bin", content(4))
    before = snapshot(zoo)

    plan = plan_gc(zoo)
    assert snapshot(zoo) == before, "planning changed the store"
    assert plan.drops == {} and plan.dropped_versions == []
    assert {i.key for i in plan.recipes} == {blob_key(old_orphan)}
    assert plan.packs and all(i.key not in live_packs for i in plan.packs)
    assert plan.young_recipes == 1  # its packs are kept through it
    text = str(plan)
    assert "versions to drop: none" in text and "recipes to delete: 1" in text

    result = plan.execute()
    assert result.recipes_deleted == 1 and result.packs_deleted == len(plan.packs)
    assert keys(zoo, "blobs/") == live_recipes | {blob_key(young_orphan)}
    assert live_packs <= keys(zoo, "packs/")
    assert zoo.manifest("m").sorted_versions() == ["1.0.0", "1.1.0"]
    assert assert_all_readable(zoo.url, tmp_path) == 2
    assert zoo.blobs.recipe(young_orphan)  # a publisher may still be about to list it
    assert verify_store(open_store(zoo.url), read_data=True).problems == []
    with pytest.raises(UsageError, match="already executed"):
        plan.execute()


def test_nothing_old_means_nothing_deleted(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path / "store")
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": content(1)})
    orphan(zoo, tmp_path, "o.bin", content(2))
    plan = plan_gc(zoo)
    assert plan.empty and plan.bytes_to_delete == 0
    assert "total to delete: 0 B" in str(plan)


def test_now_override_and_grace_argument(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path / "store")
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": content(1)})
    o = orphan(zoo, tmp_path, "o.bin", content(2))
    assert plan_gc(zoo, now=time.time() + 2 * HOUR).recipes[0].key == blob_key(o)
    assert plan_gc(zoo, now=time.time() + 0.5 * HOUR).recipes == ()
    warned = plan_gc(zoo, grace=0)
    assert [i.key for i in warned.recipes] == [blob_key(o)]
    assert any("only safe when nobody is publishing" in n for n in warned.notes)
    assert not any("only safe" in n for n in plan_gc(zoo, grace=2 * HOUR).notes)
    with pytest.raises(UsageError):
        plan_gc(zoo, grace=-1)
    with pytest.raises(UsageError):
        plan_gc(zoo, repack=True, repack_threshold=1.5)


# -- retention ----------------------------------------------------------------------------------


def _zoo_with_history(tmp_path: Path) -> Store:
    zoo = make_zoo(tmp_path / "store")
    base = content(10)
    for i, v in enumerate(["1.0.0", "1.1.0", "1.1.1", "1.2.0", "1.3.0"]):
        put_version(zoo, tmp_path, "m", v, {"w.bin": mutate(base, i), "c.json": f"{{'v': {i}}}".encode()})
    put_version(zoo, tmp_path, "m", "2.0.0-rc.1", {"w.bin": mutate(base, 99)}, tags=("bleedingedge",))
    for v in ["0.1.0", "0.2.0"]:
        put_version(zoo, tmp_path, "other", v, {"o.bin": content(hash(v) % 1000)})
    age_store(zoo, 2 * HOUR)
    return zoo


def test_keep_range_drops_the_rest_but_tags_latest_and_unnamed_models_stay(tmp_path: Path) -> None:
    zoo = _zoo_with_history(tmp_path)
    plan = plan_gc(zoo, keep=["m@~1.1"])
    assert [str(d) for d in plan.dropped_versions] == ["m@1.0.0", "m@1.2.0"]
    text = str(plan)
    assert "versions to drop (2):" in text and "m: 1.0.0" in text
    assert zoo.manifest("m").sorted_versions()[0] == "1.0.0", "the plan changed a manifest"
    result = plan.execute()
    assert [str(d) for d in result.dropped] == ["m@1.0.0", "m@1.2.0"]
    # 1.1.x by the range, 1.3.0 as latest, the rc by its tag; `other` is not named: untouched.
    assert zoo.manifest("m").sorted_versions() == ["1.1.0", "1.1.1", "1.3.0", "2.0.0-rc.1"]
    assert zoo.manifest("m").tags == {"bleedingedge": "2.0.0-rc.1"}
    assert zoo.manifest("other").sorted_versions() == ["0.1.0", "0.2.0"]
    assert result.recipes_deleted >= 2 and result.packs_deleted >= 1
    assert assert_all_readable(zoo.url, tmp_path) == 4 * 2 - 1 + 2
    assert verify_store(open_store(zoo.url), read_data=True).problems == []


def test_keep_rule_forms(tmp_path: Path) -> None:
    zoo = _zoo_with_history(tmp_path)
    m = zoo.manifest("m")
    assert KeepRule.parse("m@bleedingedge").matches(m) == {"2.0.0-rc.1"}
    assert KeepRule.parse("m@latest").matches(m) == {"1.3.0"}
    assert KeepRule.parse("m@1.1.1").matches(m) == {"1.1.1"}
    assert KeepRule.parse("m").matches(m) == set(m.versions)
    assert str(KeepRule.parse(" m@^1 ")) == "m@^1"
    assert plan_gc(zoo, keep=["m"]).drops == {}
    # Two rules for one model add up.
    plan = plan_gc(zoo, keep=["m@1.0.0", "m@1.2.0"])
    assert [d.version for d in plan.dropped_versions] == ["1.1.0", "1.1.1"]


@pytest.mark.parametrize("spec, message", [
    ("nope@^1", "no model 'nope'"),
    ("m@^7", "matches no version of m"),
    ("m@stable", "neither a version range nor a tag"),
    ("m@", "empty range"),
    ("../m@1", "--keep"),
])
def test_keep_mistakes_are_usage_errors_before_anything_changes(tmp_path: Path, spec: str, message: str) -> None:
    zoo = _zoo_with_history(tmp_path)
    before = snapshot(zoo)
    with pytest.raises(UsageError, match=message):
        plan_gc(zoo, keep=[spec])
    assert snapshot(zoo) == before


def test_keep_locks_from_a_path_and_an_fsspec_url(tmp_path: Path) -> None:
    import fsspec

    zoo = _zoo_with_history(tmp_path)
    old = tmp_path / "old.lock"
    old.write_text(lock_text(zoo.url, {"m": "1.1.0", "gone": "1.0.0"}, zoo))
    fs = fsspec.filesystem("memory")
    fs.pipe("/gc-test/new.lock", lock_text(zoo.url, {"m": "1.2.0", "other": "0.1.0"}, zoo).encode())
    try:
        plan = plan_gc(zoo, keep_locks=[old, "memory://gc-test/new.lock"])
    finally:
        fs.rm("/gc-test/new.lock")
    # m: pinned 1.1.0 and 1.2.0, latest 1.3.0, tagged rc; other: pinned 0.1.0, latest 0.2.0.
    assert [str(d) for d in plan.dropped_versions] == ["m@1.0.0", "m@1.1.1"]
    assert any("gone" in n for n in plan.notes)
    plan.execute()
    assert zoo.manifest("m").sorted_versions() == ["1.1.0", "1.2.0", "1.3.0", "2.0.0-rc.1"]
    assert assert_all_readable(zoo.url, tmp_path) == 4 + 3 + 2


def test_lockfile_parsing(tmp_path: Path) -> None:
    zoo = _zoo_with_history(tmp_path)
    text = lock_text("s3://b/zoo", {"m": "1.1.0", "other": "0.2.0"}, zoo)
    assert pinned_versions(text) == {"m": {"1.1.0"}, "other": {"0.2.0"}}
    blobs = pinned_blobs(text)
    assert blobs == {e.blob for v, mm in (("1.1.0", "m"), ("0.2.0", "other"))
                     for _, _, e in zoo.manifest(mm).versions[v].blobs()}
    with pytest.raises(FormatError):
        pinned_versions("format = 99\nstore = 'x'\n")
    with pytest.raises(FormatError):
        pinned_versions("not toml = = =")
    with pytest.raises(UsageError, match="cannot read lockfile"):
        plan_gc(zoo, keep_locks=[tmp_path / "missing.lock"])


# -- plan versus execute ------------------------------------------------------------------------


def test_execute_keeps_what_changed_since_the_plan(tmp_path: Path) -> None:
    zoo = _zoo_with_history(tmp_path)
    o = orphan(zoo, tmp_path, "o.bin", content(77))
    age_store(zoo, 2 * HOUR)
    plan = plan_gc(zoo, keep=["m@1.3.0"])
    assert blob_key(o) in {i.key for i in plan.recipes}
    assert "1.1.0" in {d.version for d in plan.dropped_versions}
    # Meanwhile: a tag moves onto a version the plan drops, and a publisher reuses the orphan
    # (freshening its recipe and packs, as BlobWriter does) and lists it in a new version.
    zoo.update_manifest("m", lambda mf: mf.with_tag("stable", "1.1.0") if mf else None)
    path = write_files(tmp_path / "again", {"o.bin": content(77)})
    publish(zoo, "reuse", "1.0.0", [path], check=False)
    result = plan.execute()
    assert "1.1.0" in zoo.manifest("m").versions
    assert any("1.1.0" in n and "tagged" in n for n in result.notes)
    assert blob_key(o) in keys(zoo, "blobs/")
    assert result.kept_changed >= 1
    assert assert_all_readable(zoo.url, tmp_path) > 0
    assert verify_store(open_store(zoo.url)).problems == []


def _count_surveys(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per survey (listings of packs/ and blobs/, recipe reads) execute makes."""
    import zoostore.ops.gc.plan as gc_plan

    surveys: list[int] = []
    real = gc_plan._survey

    def counting(*args: Any, **kwargs: Any) -> Any:
        surveys.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(gc_plan, "_survey", counting)
    return surveys


@pytest.mark.parametrize("change", [None, "tag", "publish"])
def test_execute_lists_the_store_again_only_when_the_manifests_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str | None) -> None:
    zoo = _zoo_with_history(tmp_path)
    plan = plan_gc(zoo, keep=["m@1.3.0"])
    dropped = {d.version for d in plan.dropped_versions}
    assert {"1.0.0", "1.1.0"} <= dropped and plan.recipes
    if change == "tag":  # a tag moves onto a version the plan drops: it stays, and its blobs
        zoo.update_manifest("m", lambda mf: mf.with_tag("stable", "1.1.0") if mf else None)
    elif change == "publish":  # a new version names a blob the plan was about to delete
        old = zoo.manifest("m").versions["1.0.0"]
        zoo.update_manifest("m", lambda mf: mf.with_release(replace(old, version="3.0.0")) if mf else None)
    surveys = _count_surveys(monkeypatch)
    result = plan.execute()
    if change is None:
        assert surveys == [] and result.recipes_deleted == len(plan.recipes)
    else:
        assert surveys == [1]
        assert result.recipes_deleted < len(plan.recipes)
    assert assert_all_readable(zoo.url, tmp_path) > 0
    assert verify_store(open_store(zoo.url)).problems == []


def test_execute_stats_again_right_before_deleting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zoostore.ops.gc.plan as gc_module

    zoo = make_zoo(tmp_path / "store")
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": content(1)})
    o = orphan(zoo, tmp_path, "o.bin", content(2))
    age_store(zoo, 2 * HOUR)
    plan = plan_gc(zoo)
    assert blob_key(o) in {i.key for i in plan.recipes}
    real_delete_checked = gc_module.delete_checked

    def a_publisher_freshens_then_delete(*args: Any, **kwargs: Any) -> Any:
        # A publisher reuses the orphan after every listing execute relies on (the plan's, or
        # its own) and before the look that precedes the first delete.
        zoo.backend.freshen(blob_key(o))
        for p in zoo.blobs.recipe(o).packs:
            zoo.backend.freshen(pack_key(p))
        return real_delete_checked(*args, **kwargs)

    monkeypatch.setattr(gc_module, "delete_checked", a_publisher_freshens_then_delete)
    result = plan.execute()
    assert blob_key(o) in keys(zoo, "blobs/") and result.recipes_deleted == 0
    assert {pack_key(p) for p in zoo.blobs.recipe(o).packs} <= keys(zoo, "packs/")
    assert result.kept_changed >= 1


def test_young_unreferenced_recipe_keeps_its_old_packs(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path / "store")
    base = content(5)
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": base})
    put_version(zoo, tmp_path, "m", "2.0.0", {"w.bin": content(6)})
    old_blob = zoo.manifest("m").versions["1.0.0"].files["any"]["w.bin"].blob
    # A publisher, mid-way: its recipe (young, listed by no manifest yet) names 1.0.0's packs.
    known = zoo.blobs.known_chunks([old_blob])
    path = write_files(tmp_path / "mid", {"w.bin": mutate(base, 1, size=500)}) / "w.bin"
    pending = zoo.blobs.put_files([path], known=known)[0].blob
    shared = {pack_key(p) for p in zoo.blobs.recipe(pending).packs} & {pack_key(p) for p in zoo.blobs.recipe(old_blob).packs}
    assert shared
    # Everything else is old; the shared packs are old too (isolate the recipe rule).
    age_store(zoo, 2 * HOUR, prefixes=("packs/",))
    age_store(zoo, 2 * HOUR, prefixes=("blobs/",), keys={blob_key(old_blob)})
    plan = plan_gc(zoo, keep=["m@2.0.0"])
    assert [d.version for d in plan.dropped_versions] == ["1.0.0"]
    assert blob_key(old_blob) in {i.key for i in plan.recipes}
    assert not shared & {i.key for i in plan.packs}
    plan.execute()
    assert shared <= keys(zoo, "packs/")
    # The publisher finishes: its version lists the recipe, and everything reads.
    release = Release(model="m", version="3.0.0", published=now_utc(),
                      files={"any": {"w.bin": FileEntry(pending, path.stat().st_size)}})
    zoo.update_manifest("m", lambda mf: mf.with_release(release) if mf else None)
    assert assert_all_readable(zoo.url, tmp_path) == 2


def test_damaged_store_blocks_pack_deletion(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path / "store")
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": content(1)})
    o = orphan(zoo, tmp_path, "o.bin", content(2))
    age_store(zoo, 2 * HOUR)
    blob = zoo.manifest("m").versions["1.0.0"].files["any"]["w.bin"].blob
    zoo.backend.delete([blob_key(blob)])  # a referenced recipe is gone: its chunks may be rebuildable
    plan = plan_gc(zoo)
    assert plan.packs == () and plan.problems and "no recipe" in plan.problems[0]
    assert "warning:" in str(plan) and "verify --repair" in str(plan)
    packs_before = keys(zoo, "packs/")
    result = plan.execute()
    assert keys(zoo, "packs/") == packs_before
    assert result.recipes_deleted == 1 and blob_key(o) not in keys(zoo, "blobs/")
    assert any("verify --repair" in n for n in result.notes)
    report = verify_store(open_store(zoo.url), repair=True)
    assert report.repaired and assert_all_readable(zoo.url, tmp_path) == 1


def test_unparseable_manifest_stops_gc(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path / "store")
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": content(1)})
    zoo.backend.put(manifest_key("broken"), b"format = 1\nmodel = [\n")
    with pytest.raises(FormatError, match="deleted nothing"):
        plan_gc(zoo)


def test_read_only_store_is_refused(tmp_path: Path, serve_directory: Any) -> None:
    zoo = make_zoo(tmp_path / "store")
    served = serve_directory(tmp_path)
    with pytest.raises(ReadOnlyError):
        plan_gc(open_store(served.url + "/store"))


def test_memory_store(tmp_path: Path) -> None:
    from zoostore.storage.backends.memory import forget

    url = f"memory://gc-{os.getpid()}-{time.monotonic_ns()}"
    try:
        zoo, _ = init_store(url, config=TINY)
        assert isinstance(zoo, Store)
        for i, v in enumerate(["1.0.0", "1.1.0"]):
            src = write_files(tmp_path / v, {"w.bin": content(i)})
            publish(zoo, "m", v, [src], check=False)
        plan = plan_gc(zoo, keep=["m@1.1.0"], now=time.time() + 2 * HOUR)
        result = plan.execute()
        assert result.recipes_deleted == 1 and result.packs_deleted >= 1
        assert assert_all_readable(url, tmp_path) == 1
    finally:
        forget(url.removeprefix("memory://"))


# -- repack -------------------------------------------------------------------------------------


def _sparse_store(tmp_path: Path) -> tuple[Store, Digest]:
    """1.0.0 and 1.1.0 share most chunks; dropping 1.0.0 leaves packs partly dead."""
    zoo = make_zoo(tmp_path / "store")
    base = content(21, n=60_000)
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": base})
    put_version(zoo, tmp_path, "m", "1.1.0", {"w.bin": mutate(base, 1, size=20_000)})
    put_version(zoo, tmp_path, "m", "1.2.0", {"w.bin": mutate(base, 2, size=20_000)})
    age_store(zoo, 2 * HOUR)
    return zoo, zoo.manifest("m").versions["1.2.0"].files["any"]["w.bin"].blob


def test_repack_rewrites_sparse_packs_keeping_old_readers_and_repair_working(tmp_path: Path) -> None:
    zoo, blob = _sparse_store(tmp_path)
    plan = plan_gc(zoo, keep=["m@1.2.0"], repack=True, repack_threshold=0.95)
    assert plan.repacks and all(r.live_fraction < 0.95 for r in plan.repacks)
    assert "packs to repack" in str(plan)
    reader = open_store(zoo.url)
    held = reader.blobs.recipe(blob)  # a reader that fetched the recipe before the repack
    sources = {r.pack for r in plan.repacks}
    result = plan.execute()
    assert result.packs_repacked == len(sources) and result.recipes_rewritten >= 1
    assert result.packs_written >= 1
    assert sources <= keys(zoo, "packs/"), "old packs must outlive readers by the grace period"
    cutoff = zoo.backend.now() - HOUR
    assert all(i.mtime > cutoff for i in zoo.backend.list("packs/") if i.key in sources)
    new = open_store(zoo.url).blobs.recipe(blob)
    assert new != held and not sources & {pack_key(p) for p in new.packs}
    # The old reader still reads with the recipe it holds.
    reader.blobs.get_file(blob, tmp_path / "held.bin")
    assert Digest.of((tmp_path / "held.bin").read_bytes()) == blob
    # New packs carry the file lists of the recipes they serve: --repair still rebuilds them.
    new_packs = {pack_key(p) for p in new.packs} - {pack_key(p) for p in held.packs}
    listed = {fl.blob for p in new_packs
              for fl in read_footer(zoo, Digest(p.rsplit("/", 1)[1]), zoo.backend.stat(p).size).files}
    assert blob in listed
    assert assert_all_readable(zoo.url, tmp_path) == 1
    # Within the grace period nothing of the old packs goes; after it, they do.
    assert not sources & {i.key for i in plan_gc(zoo).packs}
    age_store(zoo, 2 * HOUR)
    later = plan_gc(zoo, repack=True, repack_threshold=0.95)
    assert sources <= {i.key for i in later.packs}
    assert later.repacks == (), "a repacked store has no dead frames left to repack"
    later.execute()
    assert not sources & keys(zoo, "packs/")
    assert assert_all_readable(zoo.url, tmp_path) == 1
    assert verify_store(open_store(zoo.url), read_data=True).problems == []
    # With only the new packs left, --repair rebuilds the rewritten recipe from their footers.
    zoo.backend.delete([blob_key(blob)])
    report = verify_store(open_store(zoo.url), repair=True)
    assert any(str(blob) in r for r in report.repaired), report
    assert assert_all_readable(zoo.url, tmp_path) == 1


def test_repack_skips_a_corrupt_source_pack(tmp_path: Path) -> None:
    zoo, _ = _sparse_store(tmp_path)
    plan = plan_gc(zoo, keep=["m@1.2.0"], repack=True, repack_threshold=0.95)
    victim = plan.repacks[0].pack
    path = store_root(zoo) / victim
    data = bytearray(path.read_bytes())
    data[5] ^= 0xFF
    mtime = path.stat().st_mtime
    path.write_bytes(bytes(data))
    os.utime(path, (mtime, mtime))
    result = plan.execute()
    assert any(victim in n and "verify" in n for n in result.notes)
    assert victim in keys(zoo, "packs/")


def test_repack_threshold_selects_packs(tmp_path: Path) -> None:
    zoo, _ = _sparse_store(tmp_path)
    low = plan_gc(zoo, keep=["m@1.2.0"], repack=True, repack_threshold=0.01)
    high = plan_gc(zoo, keep=["m@1.2.0"], repack=True, repack_threshold=1.0)
    assert len(low.repacks) <= len(high.repacks) and high.repacks
    assert plan_gc(zoo, keep=["m@1.2.0"]).repacks == ()


# -- the publisher's side -----------------------------------------------------------------------


def test_publish_stores_anew_the_chunks_of_a_pack_gc_deleted(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path / "store")
    base = content(31)
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": base})
    blob = zoo.manifest("m").versions["1.0.0"].files["any"]["w.bin"].blob
    known = zoo.blobs.known_chunks([blob])  # the publisher read 1.0.0 before gc dropped it...
    zoo.update_manifest("m", lambda m: m.without_versions({"1.0.0"}) if m else None)
    deleted = [pack_key(p) for p in zoo.blobs.recipe(blob).packs]
    zoo.backend.delete([blob_key(blob)] + deleted)
    path = write_files(tmp_path / "v2", {"w.bin": mutate(base, 3)}) / "w.bin"
    # ...so its chunks are not reused (a recipe naming the deleted packs would dangle) but
    # stored anew; it used to fail with "deleted ... while this publish was reusing it".
    (result,) = zoo.blobs.put_files([path], known=known)
    assert result.new_chunks == result.chunks
    assert not {pack_key(p) for p in zoo.blobs.recipe(result.blob).packs} & set(deleted)
    publish(zoo, "m", "2.0.0", [path.parent], check=False)
    assert assert_all_readable(zoo.url, tmp_path) == 1


def test_settle_check_catches_a_reused_chunks_pack_deleted_after_its_freshen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A pack holding chunks of an earlier version is there when the publisher checks it (and old,
    # so freshened), and a gc that looked before the freshen deletes it right after: the chunks
    # are not stored anew (the pack was there), so the settle check must fail the publish.
    zoo = make_zoo(tmp_path / "store")
    base = content(43)
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": base})
    old_packs = set(keys(zoo, "packs/"))
    age_store(zoo, 2 * HOUR)
    real_freshen = zoo.backend.freshen

    def freshen_then_gc_deletes(key: str) -> None:
        real_freshen(key)
        if key in old_packs:
            zoo.backend.delete([key])

    monkeypatch.setattr(zoo.backend, "freshen", freshen_then_gc_deletes)
    src = write_files(tmp_path / "v2", {"w.bin": mutate(base, 5)})
    with pytest.raises(ConflictError, match="deleted .* while this publish was reusing it"):
        publish(zoo, "m", "2.0.0", [src], check=False)
    assert list(zoo.manifest("m").versions) == ["1.0.0"], "a version naming a deleted pack was published"
    monkeypatch.setattr(zoo.backend, "freshen", real_freshen)
    r = publish(open_store(zoo.url), "m", "2.0.0", [src], check=False)  # the retry stores them anew
    assert r.new_stored_bytes > 0
    fresh = open_store(zoo.url)
    blob = fresh.manifest("m").versions["2.0.0"].files["any"]["w.bin"].blob
    assert not {pack_key(p) for p in fresh.blobs.recipe(blob).packs} & old_packs
    assert fresh.blobs.get_file(blob, tmp_path / "out.bin").read_bytes() == mutate(base, 5)


def test_delta_frames_whose_bases_sit_in_a_lost_pack_are_stored_anew(tmp_path: Path) -> None:
    # A delta store: 2.0.0's changed chunks are delta frames against 1.0.0's chunks, and its
    # recipe is edits of 1.0.0's. 1.0.0's packs are lost (2.0.0's are not). The blob writer,
    # storing 3.0.0's file (a change of 2.0.0's), reuses none of the delta frames whose bases
    # are gone, takes no delta base and no recipe edits from them: the recipe it writes names
    # only packs that exist (bases' included) and reads back. (The writer is tested alone: at
    # a publish's commit the final check would also catch a recipe naming a lost pack.)
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_delta import blob_of, flip, make_store, put

    zoo = make_store(tmp_path / "store")
    v1 = random.Random(71).randbytes(60_000)
    v2, v3 = flip(v1, 72), flip(flip(v1, 72), 73)
    put(zoo, tmp_path, "1.0.0", {"lib.so": v1})
    lost = set(keys(zoo, "packs/"))
    put(zoo, tmp_path, "2.0.0", {"lib.so": v2})
    b1, b2 = blob_of(zoo, "1.0.0"), blob_of(zoo, "2.0.0")
    r2 = zoo.blobs.recipe(b2)
    reused = {ref.chunk for ref in r2.chunks if ref.base is not None and pack_key(ref.base.pack) in lost}
    assert reused and any(pack_key(ref.pack) not in lost for ref in r2.chunks)
    for key in lost:
        (store_root(zoo) / key).unlink()
    fresh = open_store(zoo.url)
    path = write_files(tmp_path / "v3", {"lib.so": v3}) / "lib.so"
    (result,) = fresh.blobs.put_files([path], known=fresh.blobs.known_chunks([b1, b2]), previous=[b2])
    r3 = open_store(zoo.url).blobs.recipe(result.blob)
    assert reused & {ref.chunk for ref in r3.chunks}  # chunks of 2.0.0's delta frames, stored anew
    assert r3.against is None  # not edits of 2.0.0's recipe, which names the lost packs
    assert not {pack_key(p) for p in r3.packs} & lost
    assert open_store(zoo.url).blobs.get_file(result.blob, tmp_path / "out.so").read_bytes() == v3


def test_settle_check_catches_a_delete_that_raced_a_freshen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = make_zoo(tmp_path / "store")
    data = content(41)
    o = orphan(zoo, tmp_path, "w.bin", data)
    age_store(zoo, 2 * HOUR)
    real_freshen = zoo.backend.freshen

    def freshen_then_gc_deletes(key: str) -> None:
        real_freshen(key)
        # gc listed the object as old just before this freshen; its delete lands just after.
        zoo.backend.delete([key])

    monkeypatch.setattr(zoo.backend, "freshen", freshen_then_gc_deletes)
    src = write_files(tmp_path / "v", {"w.bin": data})
    with pytest.raises(ConflictError):
        publish(zoo, "m", "1.0.0", [src], check=False)
    assert zoo.models() == [], "a version naming a deleted object was published"
    monkeypatch.setattr(zoo.backend, "freshen", real_freshen)
    publish(zoo, "m", "1.0.0", [src], check=False)
    assert zoo.manifest("m").versions["1.0.0"].files["any"]["w.bin"].blob == o
    assert assert_all_readable(zoo.url, tmp_path) == 1


def test_long_lived_publisher_rechunks_a_recipe_gc_deleted(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path / "store")
    data = content(51)
    o = orphan(zoo, tmp_path, "w.bin", data)  # this process now holds the recipe in memory
    age_store(zoo, 2 * HOUR)
    plan_gc(open_store(zoo.url)).execute()
    assert blob_key(o) not in keys(zoo, "blobs/")
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": data})
    assert blob_key(o) in keys(zoo, "blobs/")
    assert assert_all_readable(zoo.url, tmp_path) == 1


def test_recipe_cache_expires_after_half_the_grace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = make_zoo(tmp_path / "store", grace=10)
    o = orphan(zoo, tmp_path, "w.bin", content(61))
    assert zoo.blobs.has_blob(o)
    zoo.backend.delete([blob_key(o)])
    assert zoo.blobs.has_blob(o)  # served from memory
    clock = time.monotonic() + 6
    monkeypatch.setattr(time, "monotonic", lambda: clock)
    assert not zoo.blobs.has_blob(o)


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_dry_run_then_refusal_without_a_terminal_then_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zoo = _zoo_with_history(tmp_path)
    before = snapshot(zoo)
    assert cli(["gc", zoo.url, "--keep", "m@~1.1", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "versions to drop (2):" in out and "m: 1.0.0" in out and "dry run" in err
    assert snapshot(zoo) == before
    assert cli(["gc", zoo.url, "--keep", "m@~1.1"]) == 2  # pytest's stdin is not a terminal
    err = capsys.readouterr().err
    assert "--yes" in err and "not a terminal" in err
    assert snapshot(zoo) == before
    assert cli(["gc", zoo.url, "--keep", "m@~1.1", "--yes", "-q"]) == 0
    out = capsys.readouterr().out
    assert "dropped 2 version(s): m@1.0.0, m@1.2.0" in out
    assert "1.0.0" not in zoo.manifest("m").versions


def test_cli_sweep_needs_no_confirmation_and_warns_on_short_grace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zoo = make_zoo(tmp_path / "store")
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": content(1)})
    o = orphan(zoo, tmp_path, "o.bin", content(2))
    assert cli(["gc", zoo.url, "--grace", "0s", "-q"]) == 0
    out, err = capsys.readouterr()
    assert "only safe when nobody is publishing" in err and "deleted 1 recipe(s)" in out
    assert blob_key(o) not in keys(zoo, "blobs/")
    assert cli(["gc", zoo.url]) == 0
    assert "nothing to do" in capsys.readouterr().err


@pytest.mark.parametrize("argv, code", [
    (["--grace", "soon"], 2),
    (["--keep", "m@^9"], 2),
    (["--repack", "--repack-threshold", "2"], 2),
    (["--keep-lock", "/nonexistent/zoo.lock"], 2),
])
def test_cli_usage_errors(tmp_path: Path, argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    zoo = make_zoo(tmp_path / "store")
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": content(1)})
    assert cli(["gc", zoo.url, *argv]) == code
    assert "zoostore: error:" in capsys.readouterr().err


def test_cli_keep_lock_and_repack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zoo, blob = _sparse_store(tmp_path)
    lock = tmp_path / "zoo.lock"
    lock.write_text(lock_text(zoo.url, {"m": "1.2.0"}, zoo))
    assert cli(["gc", zoo.url, "--keep-lock", str(lock), "--repack", "--repack-threshold", "0.95", "--yes", "-q"]) == 0
    out = capsys.readouterr().out
    assert "repacked" in out and "m@1.0.0" in out
    assert zoo.manifest("m").sorted_versions() == ["1.2.0"]  # 1.2.0 pinned and latest
    assert assert_all_readable(zoo.url, tmp_path) == 1


def test_plan_type_and_repr(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path / "store")
    plan = plan_gc(zoo)
    assert isinstance(plan, GcPlan) and "GcPlan(" in repr(plan)


def test_cli_asks_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    zoo = _zoo_with_history(tmp_path)
    before = snapshot(zoo)
    answers = iter(["n", "yes"])
    asked: list[str] = []
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or next(answers))
    assert cli(["gc", zoo.url, "--keep", "m@~1.1", "-q"]) == 1
    assert "aborted" in capsys.readouterr().err and snapshot(zoo) == before
    assert asked[0].startswith("Drop 2 version(s)") and asked[0].endswith("[y/N] ")
    assert cli(["gc", zoo.url, "--keep", "m@~1.1", "-q"]) == 0
    assert "1.0.0" not in zoo.manifest("m").versions


def test_a_model_whose_drop_gives_up_keeps_its_versions_and_the_others_are_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Drops run model by model in parallel: one model's compare-and-swap giving up (other writers
    # kept winning) leaves that model as it was, reported, while the other models' drops stand.
    zoo = _zoo_with_history(tmp_path)
    plan = plan_gc(zoo, keep=["m@~1.1", "other@0.2.0"])
    assert sorted(str(d) for d in plan.dropped_versions) == ["m@1.0.0", "m@1.2.0", "other@0.1.0"]
    real = zoo.update_manifest

    def flaky(model: str, *args: Any, **kwargs: Any) -> Any:
        if model == "other":
            raise ConflictError("manifests/other.toml: gave up after 8 concurrent-update conflicts")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(zoo, "update_manifest", flaky)
    result = plan.execute()
    assert [str(d) for d in result.dropped] == ["m@1.0.0", "m@1.2.0"]
    assert any(n.startswith("other: no version dropped") for n in result.notes)
    assert open_store(zoo.url).manifest("other").sorted_versions() == ["0.1.0", "0.2.0"]
    assert assert_all_readable(zoo.url, tmp_path) == 4 * 2 - 1 + 2


def _failed_publish_then_retry(zoo: Store, tmp_path: Path) -> tuple[Any, set[str]]:
    """A publish that crashed after storing its packs (no recipe, no manifest entry), more than G
    ago, and its retry planned now: the retry writes byte-identical packs, so its put-if-absent
    finds the orphans instead of writing them. Returns (the retry's plan, the orphan pack keys)."""
    from zoostore.ops.publish import plan_publish

    src = write_files(tmp_path / "v", {"w.bin": content(61)})
    first = plan_publish(zoo, "m", "1.0.0", [src], check=None)
    first.upload()
    blob = first.entries["w.bin"].blob
    orphans = {pack_key(p) for p in zoo.blobs.recipe(blob).packs}
    zoo.backend.delete([blob_key(blob)])  # as if the crash came before the recipe was written
    zoo.blobs.forget(None)
    age_store(zoo, 2 * HOUR)
    return plan_publish(zoo, "m", "1.0.0", [src], check=None), orphans


@pytest.mark.parametrize("upload", ["before execute", "after execute listed"])
def test_a_retried_publish_whose_packs_collide_with_old_orphans_keeps_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upload: str) -> None:
    """A pack the publisher writes and finds already there (same bytes: a retry of a failed
    publish) is reused as surely as a chunk it deduplicates: freshened when old, and checked
    after the settle time. gc's look then keeps it, whenever the retry's recipe appeared
    (before execute, which then acts on the plan's listings; or after execute listed the store)
    and however late the retry commits after its last check."""
    import zoostore.ops.gc.plan as gc_plan

    zoo = make_zoo(tmp_path / "store")
    retry, orphans = _failed_publish_then_retry(zoo, tmp_path)
    plan = plan_gc(zoo)
    assert orphans <= {i.key for i in plan.packs}
    confirm = retry._confirm_stored  # the commit's last look at what its version names

    def upload_and_confirm() -> None:
        retry.upload()
        assert orphans <= {pack_key(p) for r in retry.uploaded or [] for p in zoo.blobs.recipe(r.blob).packs}
        confirm()

    if upload == "before execute":
        upload_and_confirm()
    else:
        real = gc_plan.delete_checked
        calls: list[int] = []

        def upload_then_delete(*args: Any, **kwargs: Any) -> Any:
            if not calls:
                upload_and_confirm()
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(gc_plan, "delete_checked", upload_then_delete)
    plan.execute()  # its looks and deletes land between the commit's check and its CAS
    monkeypatch.setattr(retry, "_confirm_stored", lambda: None)  # confirmed above
    retry.commit()
    assert orphans <= keys(zoo, "packs/"), "gc deleted packs that a committed version names"
    assert assert_all_readable(zoo.url, tmp_path) == 1


def test_a_found_pack_that_gc_deletes_after_the_freshen_fails_the_publish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The settle check covers a found pack like any reused one: gc looked before the freshen
    and its delete lands after it; the publish fails instead of committing, and a retry works."""
    zoo = make_zoo(tmp_path / "store")
    retry, orphans = _failed_publish_then_retry(zoo, tmp_path)
    real_freshen = zoo.backend.freshen
    freshened: list[str] = []

    def freshen_then_gc_deletes(key: str) -> None:
        real_freshen(key)
        freshened.append(key)
        zoo.backend.delete([key])

    monkeypatch.setattr(zoo.backend, "freshen", freshen_then_gc_deletes)
    with pytest.raises(ConflictError, match="deleted .* while this publish was reusing it"):
        retry.upload()
    assert set(freshened) == orphans and zoo.models() == []
    monkeypatch.setattr(zoo.backend, "freshen", real_freshen)
    publish(zoo, "m", "1.0.0", [tmp_path / "v"], check=False)
    assert assert_all_readable(zoo.url, tmp_path) == 1
