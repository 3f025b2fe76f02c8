"""Sync costs grow linearly with the number of files: the cache's index of local chunks
(zoostore.storage.cache.LocalIndex) reads each cached recipe at most once per sync. Counted,
not timed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoostore.documents.project import load_project
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.publish import publish
from zoostore.ops.sync import sync_project
from zoostore.repository import init_store
from zoostore.storage.cache import Cache

N = 40  # small files per version: the old per-file index read ~N^2/2 recipes on a cold sync


def version_dir(root: Path, version: int) -> Path:
    d = root / f"src{version}"
    d.mkdir(parents=True)
    rng = np.random.default_rng(version)
    for i in range(N):
        (d / f"f{i:03}.txt").write_bytes(rng.bytes(4096))
    w = np.random.default_rng(0).normal(0, 0.05, 300_000).astype(np.float32)
    w[1000 * version: 1000 * version + 500] += 1.0
    w.tofile(d / "weights.bin")
    return d


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Counter[str]:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    calls: Counter[str] = Counter()
    recipe, members = Cache.cached_recipe, Cache.model_blobs

    def cached_recipe(self: Cache, blob: Any) -> Any:
        calls["recipe"] += 1
        return recipe(self, blob)

    def model_blobs(self: Cache, model: str) -> Any:
        calls["models file"] += 1
        return members(self, model)

    monkeypatch.setattr(Cache, "cached_recipe", cached_recipe)
    monkeypatch.setattr(Cache, "model_blobs", model_blobs)
    return calls


def test_sync_reads_each_cached_recipe_at_most_once(tmp_path: Path, counted: Counter[str]) -> None:
    zoo, _ = init_store(tmp_path / "store", config=StoreConfig(pack_target_size=256 * 1024))
    for v in (1, 2):
        publish(zoo, "many", f"1.{v}.0", [version_dir(tmp_path, v)], check=False)
    project = tmp_path / "project"
    project.mkdir()

    def sync_to(version: str) -> Any:
        (project / "zoo.toml").write_text(f'store = "../store"\n[models]\nmany = "{version}"\n')
        counted.clear()
        return sync_project(load_project(project))

    # Cold cache: nothing cached for the model, so there is nothing to read.
    first = sync_to("1.1.0")
    assert len(first.placed) == N + 1
    assert counted["recipe"] == 0, counted
    assert counted["models file"] <= 1, counted

    # Upgrade: each of the N + 1 cached files' recipes is read once (not once per new file),
    # and the shared chunks of weights.bin still come from the cached older version.
    second = sync_to("1.2.0")
    assert len(second.placed) == N + 1
    assert counted["recipe"] <= N + 1, counted
    assert counted["models file"] <= 1, counted
    assert second.bytes_reused > 0.5 * 1_200_000
    placed = second.dest / next(rel for rel in second.placed if rel.endswith("/weights.bin"))
    assert placed.read_bytes() == (tmp_path / "src2/weights.bin").read_bytes()


def test_a_blob_cached_for_another_model_joins_the_index_once(tmp_path: Path, counted: Counter[str]) -> None:
    # Cache hits of a model's files are noted (models/<model>) without a recipe read; the index
    # reads their recipes only when a later file of that model has to be fetched.
    cache = Cache(tmp_path / "cache")
    zoo, _ = init_store(tmp_path / "store", config=StoreConfig(pack_target_size=256 * 1024))
    r1 = zoo.blobs.put_files([version_dir(tmp_path, 1) / "weights.bin"])[0]
    r2 = zoo.blobs.put_files([version_dir(tmp_path, 2) / "weights.bin"])[0]
    cache.ensure(zoo.blobs, r1.blob, model="a")
    index = cache.local_index()
    counted.clear()
    cache.ensure(zoo.blobs, r1.blob, model="b", index=index)
    assert counted["recipe"] == 0
    before = zoo.blobs.stats.bytes_local
    cache.ensure(zoo.blobs, r2.blob, model="b", index=index)
    assert counted["recipe"] == 1 and zoo.blobs.stats.bytes_local > before
    assert cache.model_blobs("b") == [r1.blob, r2.blob]
