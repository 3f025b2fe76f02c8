"""gc remembers, on this machine, which packs each recipe names: a repeated gc reads only the
recipes that are new or were rewritten, and its plan is the same as a gc that read them all."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from test_gc import HOUR, content, make_zoo, put_version
from zoostore.ops.gc import plan_gc
from zoostore.repository import Store


def recipe_reads(zoo: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real = zoo.backend.get

    def get(key: str) -> bytes:
        if key.startswith("blobs/"):
            reads.append(key)
        return real(key)

    monkeypatch.setattr(zoo.backend, "get", get)
    return reads


def test_a_second_gc_reads_only_new_recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    zoo = make_zoo(tmp_path / "store")
    for i in range(5):
        put_version(zoo, tmp_path, "m", f"1.{i}.0", {"a.bin": content(i), "b.bin": content(100 + i)})
    reads = recipe_reads(zoo, monkeypatch)
    now = time.time() + 48 * HOUR
    first = plan_gc(zoo, keep=["m@>=1.2.0"], now=now)
    assert len(reads) == 6  # the recipes of the three retained versions, once each
    reads.clear()
    second = plan_gc(zoo, keep=["m@>=1.2.0"], now=now)
    assert reads == [] and second.packs == first.packs and second.recipes == first.recipes

    put_version(zoo, tmp_path, "m", "1.5.0", {"a.bin": content(50), "b.bin": content(101)})
    reads.clear()
    plan_gc(zoo, keep=["m@>=1.2.0"], now=now)
    # The new a.bin, and b.bin, whose recipe 1.1.0 wrote and no earlier gc had to keep.
    assert sorted(reads) == sorted(set(reads)) and len(reads) == 2
    # A rewritten recipe (another mtime, as repack leaves it) is read again.
    key = sorted(k for k in (tmp_path / "store" / "blobs").rglob("*") if k.is_file())[0]
    os.utime(key, (time.time() + 10, time.time() + 10))
    reads.clear()
    plan_gc(zoo, keep=["m@>=1.2.0"], now=now)
    assert len(reads) <= 1


def test_a_corrupt_cache_file_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    zoo = make_zoo(tmp_path / "store")
    put_version(zoo, tmp_path, "m", "1.0.0", {"a.bin": content(1)})
    plan_gc(zoo, keep=["m@*"], now=time.time() + 48 * HOUR)
    [cache] = list((tmp_path / "cache" / "gc").glob("*.json"))
    cache.write_text("{not json")
    reads = recipe_reads(zoo, monkeypatch)
    plan = plan_gc(zoo, keep=["m@*"], now=time.time() + 48 * HOUR)
    assert len(reads) == 1 and not plan.dropped_versions
