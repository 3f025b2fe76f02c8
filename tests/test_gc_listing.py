"""gc's re-check before deleting, done from a listing (ops.gc.deletes): one list request per
1,000 objects instead of one stat per candidate, with the same guarantee: a candidate that a
publisher freshened (or re-uploaded) after the plan, or after execute's own survey, survives.
Also the other per-object requests execute saves: manifests the plan read are not read again
unless they changed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from test_gc import HOUR, TINY, age_store, assert_all_readable, content, keys, make_zoo, orphan, put_version
from zoostore.core.digest import Digest
from zoostore.core.progress import NullProgress
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.gc import GcPlan, GcResult, plan_gc
from zoostore.ops.gc import deletes
from zoostore.repository import Store, init_store, open_store
from zoostore.storage.backends.base import ObjectInfo
from zoostore.storage.backends.memory import MemoryBackend
from zoostore.storage.pack import pack_key
from zoostore.storage.recipe import blob_key


def freshen_blob(zoo: Store, blob: Digest) -> None:
    """What a publisher reusing `blob` does (BlobWriter's freshen rule): recipe and packs."""
    zoo.backend.freshen(blob_key(blob))
    for p in zoo.blobs.recipe(blob).packs:
        zoo.backend.freshen(pack_key(p))


def count_stats(zoo: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    stats: list[str] = []
    real = zoo.backend.stat

    def stat(key: str) -> ObjectInfo:
        stats.append(key)
        return real(key)

    monkeypatch.setattr(zoo.backend, "stat", stat)
    return stats


def execute_with_two_freshened(zoo: Store, plan: GcPlan, orphans: list[Digest],
                               monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Freshen orphans[0] between plan and execute and orphans[1] between execute's last listing
    and its deletes, then execute: those two stay, orphans[2:4] go. Returns the keys stat-ed."""
    freshen_blob(zoo, orphans[0])
    freshen_after_execute_surveys(monkeypatch, zoo, orphans[1])
    stats = count_stats(zoo, monkeypatch)
    result = plan.execute()
    left = keys(zoo, "blobs/")
    assert blob_key(orphans[0]) in left and blob_key(orphans[1]) in left
    assert blob_key(orphans[2]) not in left and blob_key(orphans[3]) not in left
    assert result.recipes_deleted == 2
    return stats


def freshen_after_execute_surveys(monkeypatch: pytest.MonkeyPatch, zoo: Store, blob: Digest) -> None:
    """A publisher reuses `blob` after every listing execute acts on (the plan's, or a new one
    when the manifests changed) and before the look that precedes its first delete."""
    import zoostore.ops.gc.plan as gc_plan

    real = gc_plan.delete_checked

    def freshen_then_delete(*args: Any, **kwargs: Any) -> Any:
        freshen_blob(zoo, blob)
        return real(*args, **kwargs)

    monkeypatch.setattr(gc_plan, "delete_checked", freshen_then_delete)


def test_listing_check_keeps_candidates_freshened_since_the_plan(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = make_zoo(tmp_path / "store")
    put_version(zoo, tmp_path, "m", "1.0.0", {"w.bin": content(1)})
    orphans = [orphan(zoo, tmp_path, f"o{i}.bin", content(10 + i)) for i in range(4)]
    age_store(zoo, 2 * HOUR)
    plan = plan_gc(zoo)
    assert {blob_key(o) for o in orphans} <= {i.key for i in plan.recipes}
    assert deletes.use_listing(zoo.backend, len(plan.recipes), len(keys(zoo, "blobs/")))
    stats = execute_with_two_freshened(zoo, plan, orphans, monkeypatch)
    for o in orphans[:2]:
        assert {pack_key(p) for p in zoo.blobs.recipe(o).packs} <= keys(zoo, "packs/")
    assert not [k for k in stats if k.startswith("blobs/")], "recipes were stat-ed one by one"
    assert assert_all_readable(zoo.url, tmp_path) == 1


def test_one_candidate_is_stat_ed_not_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = make_zoo(tmp_path / "store")
    o = orphan(zoo, tmp_path, "o.bin", content(3))
    age_store(zoo, 2 * HOUR)
    plan = plan_gc(zoo)
    stats = count_stats(zoo, monkeypatch)
    assert plan.execute().recipes_deleted == 1
    assert blob_key(o) in stats


def test_a_slow_page_falls_back_to_stats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page that took more than half the settle window is not trusted: its old candidates
    are stat-ed (and deleted) instead; fresh ones stay either way."""
    zoo = make_zoo(tmp_path / "store")
    orphans = [orphan(zoo, tmp_path, f"o{i}.bin", content(20 + i)) for i in range(3)]
    age_store(zoo, 2 * HOUR)
    freshen_blob(zoo, orphans[0])
    real = zoo.backend.list_pages

    def slow_pages(prefix: str) -> Any:
        for page in real(prefix):
            time.sleep(TINY.settle_seconds)
            yield page

    monkeypatch.setattr(zoo.backend, "list_pages", slow_pages)
    stats = count_stats(zoo, monkeypatch)
    candidates = sorted(blob_key(o) for o in orphans)
    done = deletes.delete_checked(zoo.backend, candidates, prefix="blobs/", listed=3,
                                  cutoff=zoo.backend.now() - HOUR, window=TINY.settle_seconds,
                                  task="delete recipes", progress=NullProgress(), result=GcResult())
    assert sorted(done.deleted) == sorted(blob_key(o) for o in orphans[1:])
    assert done.fresh == [blob_key(orphans[0])]
    assert sorted(stats) == sorted(done.deleted)


def test_the_backends_that_may_list_instead_of_stat(tmp_path: Path) -> None:
    assert make_zoo(tmp_path / "store").backend.capabilities.fresh_listing
    assert MemoryBackend("gc-listing").capabilities.fresh_listing
    from zoostore.storage.backends.generic import GenericBackend

    assert not GenericBackend("memory://gc-listing-generic").capabilities.fresh_listing


def test_local_pages_hold_every_object_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoostore.storage.backends import local

    zoo = make_zoo(tmp_path / "store")
    for i in range(5):
        orphan(zoo, tmp_path, f"o{i}.bin", content(30 + i))
    monkeypatch.setattr(local, "LIST_PAGE", 2)
    pages = list(zoo.backend.list_pages("blobs/"))
    assert all(len(p) <= 2 for p in pages) and len(pages) >= 3
    assert sorted(i.key for p in pages for i in p) == sorted(keys(zoo, "blobs/"))


def s3_config(grace: float) -> StoreConfig:
    """Tiny chunks and packs, and a grace period short enough for S3 objects to age for real."""
    return StoreConfig(chunking=TINY.chunking, pack_target_size=TINY.pack_target_size, grace_seconds=grace,
                       settle_seconds=1.0)


def test_listing_check_on_s3(tmp_path: Path, s3_bucket: str, s3_storage_options: dict[str, Any],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """On S3 (moto; radosgw where available): mtimes cannot be moved back, so the objects age
    for real past a short grace period; a freshen sets LastModified to the server's now."""
    grace = 2.0
    url = f"s3://{s3_bucket}/zoo"
    zoo, _ = init_store(url, config=s3_config(grace), storage_options=s3_storage_options)
    assert zoo.backend.capabilities.fresh_listing
    orphans = [orphan(zoo, tmp_path, f"o{i}.bin", content(40 + i)) for i in range(4)]
    time.sleep(grace + 1.5)  # LastModified has one-second resolution
    plan = plan_gc(zoo)
    assert {blob_key(o) for o in orphans} <= {i.key for i in plan.recipes}
    stats = execute_with_two_freshened(zoo, plan, orphans, monkeypatch)
    assert not [k for k in stats if k.startswith("blobs/")], "recipes were stat-ed one by one"
    check = open_store(url, storage_options=s3_storage_options)
    for o in orphans[:2]:
        assert {pack_key(p) for p in check.blobs.recipe(o).packs} <= keys(check, "packs/")
        assert check.blobs.get_file(o, tmp_path / "out" / o.hex).stat().st_size > 0


def test_stale_listing_option_makes_gc_check_each_candidate_with_its_own_request(
        tmp_path: Path, s3_bucket: str, s3_storage_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """For an S3-compatible server whose listings may lag: `stale_listing = true` (a store option,
    also from the command line) and gc stats every candidate instead of trusting a listing."""
    grace = 1.0
    url = f"s3://{s3_bucket}/stale"
    options = {**s3_storage_options, "stale_listing": "true"}
    zoo, _ = init_store(url, config=s3_config(grace), storage_options=options)
    assert not zoo.backend.capabilities.fresh_listing
    assert open_store(url, storage_options=s3_storage_options).backend.capabilities.fresh_listing
    orphans = [orphan(zoo, tmp_path, f"s{i}.bin", content(70 + i)) for i in range(3)]
    time.sleep(grace + 1.5)  # LastModified has one-second resolution
    stats = count_stats(zoo, monkeypatch)
    result = plan_gc(zoo).execute()
    assert result.recipes_deleted == 3 and not {blob_key(o) for o in orphans} & keys(zoo, "blobs/")
    assert {blob_key(o) for o in orphans} <= set(stats), "a candidate was deleted without its own check"


def test_execute_drops_from_the_manifests_the_plan_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drop's first compare-and-swap uses the plan's copy and token: no read when nothing
    changed, and the manifest it wrote is not read again; a changed manifest still wins."""
    zoo = make_zoo(tmp_path / "store")
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        put_version(zoo, tmp_path, "m", v, {"w.bin": content(50 + int(v[2]))})
        put_version(zoo, tmp_path, "n", v, {"w.bin": content(60 + int(v[2]))})
    age_store(zoo, 2 * HOUR)
    plan = plan_gc(zoo, keep=["m@1.2.0", "n@1.2.0"])
    zoo.update_manifest("n", lambda mf: mf.with_tag("stable", "1.0.0") if mf else None)  # n changed since
    reads: list[str] = []
    for name in ("manifest", "manifest_versioned"):
        real = getattr(Store, name)

        def counted(self: Store, model: str, real: Any = real) -> Any:
            reads.append(model)
            return real(self, model)

        monkeypatch.setattr(Store, name, counted)
    result = plan.execute()
    assert reads == ["n"], "only the manifest that changed since the plan is read"
    assert set(zoo.manifest("m").versions) == {"1.2.0"}
    assert set(zoo.manifest("n").versions) == {"1.0.0", "1.2.0"}
    assert sorted((d.model, d.version) for d in result.dropped) == [("m", "1.0.0"), ("m", "1.1.0"), ("n", "1.1.0")]
    assert assert_all_readable(zoo.url, tmp_path) == 3


def test_a_yes_no_store_option_refuses_other_words(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoostore.core.errors import UsageError
    from zoostore.storage.backends.base import flag_option

    assert flag_option({"stale_listing": "true"}, "stale_listing") is True
    assert flag_option({"stale_listing": "off"}, "stale_listing") is False
    assert flag_option({}, "stale_listing") is False
    with pytest.raises(UsageError, match=r"storage option stale_listing = 'ture': expected true or false"):
        flag_option({"stale_listing": "ture"}, "stale_listing")
    monkeypatch.setenv("ZOOSTORE_SINGLE_WRITER", "maybe")
    with pytest.raises(UsageError, match=r"\$ZOOSTORE_SINGLE_WRITER = 'maybe'"):
        flag_option({}, "single_writer", "ZOOSTORE_SINGLE_WRITER")
