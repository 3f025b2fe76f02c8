"""The cache's files per blob: a small single-chunk file is one file (no recipe, no stamp), a
file of several chunks keeps both; the one-chunk recipe `cached_recipe` makes up serves chunk
reuse and local reads; a cache written by the previous layout (a recipe and a stamp for every
file) keeps working, and its stamps of small files are no longer trusted without a hash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers_store import project_dir, published_store

from zoostore.cli import main as cli
from zoostore.core.digest import Digest, hash_file
from zoostore.documents.project import load_project
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.sync import sync_project
from zoostore.repository import Store
from zoostore.storage.blobs import LocalChunk
from zoostore.storage.cache import NO_PACK, UNSTAMPED, Cache

WEIGHTS = bytes(range(256)) * 2048   # 512 KiB: several chunks
SMALL = {"labels.txt": b"cat\ndog\n", "config.json": os.urandom(4096)}


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOOSTORE_OFFLINE", raising=False)
    return published_store(tmp_path, {"weights.bin": WEIGHTS, **SMALL},
                           config=StoreConfig(pack_target_size=256 * 1024))


def project(tmp_path: Path, name: str) -> Path:
    return project_dir(tmp_path, name)


def blob(zoo: Store, name: str) -> Digest:
    return zoo.resolve("m", "1.0.0", arch="x86_64").files[name].blob


def test_small_files_are_one_file_large_ones_keep_recipe_and_stamp(zoo: Store, tmp_path: Path) -> None:
    sync_project(load_project(project(tmp_path, "a")))
    cache = Cache()
    big = blob(zoo, "weights.bin")
    assert len(zoo.blobs.recipe(big).chunks) > 1 and len(WEIGHTS) > UNSTAMPED
    assert cache.recipe_path(big).is_file() and cache.stamp_holds(big)
    assert cache.cached_recipe(big) == zoo.blobs.recipe(big)
    for name, data in SMALL.items():
        b = blob(zoo, name)
        assert not cache.recipe_path(b).exists() and not cache.stamp_path(b).exists()
        recipe = cache.cached_recipe(b)
        assert recipe is not None and recipe.size == len(data)
        assert [(r.chunk, r.raw_length, r.pack) for r in recipe.chunks] == [(b, len(data), NO_PACK)]
        # chunk reuse: the cached file is its own (only) chunk
        assert cache.local_index().chunks("m")[b] == LocalChunk(cache.blob_path(b), 0, len(data))
    assert cache.cached_recipe(Digest.of(b"not cached")) is None


def test_a_damaged_recipe_falls_back_to_the_file_as_one_chunk(zoo: Store, tmp_path: Path) -> None:
    sync_project(load_project(project(tmp_path, "a")))
    cache = Cache()
    big = blob(zoo, "weights.bin")
    cache.recipe_path(big).write_bytes(b"garbage")
    recipe = cache.cached_recipe(big)
    assert recipe is not None and [(r.chunk, r.raw_length) for r in recipe.chunks] == [(big, len(WEIGHTS))]


def flip_a_bit_keeping_mtime(path: Path) -> None:
    st = path.stat()
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        byte = f.read(1)[0]
        f.seek(0)
        f.write(bytes([byte ^ 0x10]))
    os.chmod(path, st.st_mode & 0o777)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_cache_of_the_previous_layout_keeps_working(zoo: Store, tmp_path: Path) -> None:
    sync_project(load_project(project(tmp_path, "a")))
    cache = Cache()
    small = {name: blob(zoo, name) for name in SMALL}
    for b in small.values():   # what the previous layout wrote for every file
        cache._write_checked(cache.recipe_path(b), zoo.blobs.recipe(b).encode())
        key = cache.stat_key(b)
        assert key is not None
        cache._write_checked(cache.stamp_path(b), key.encode() + b"\n")
    for b in small.values():   # its recipes are read as before
        assert cache.cached_recipe(b) == zoo.blobs.recipe(b)
    # offline, from that cache alone
    (project(tmp_path, "b") / "zoo.lock").write_bytes((tmp_path / "a/zoo.lock").read_bytes())
    (tmp_path / "store").rename(tmp_path / "store-gone")
    r = sync_project(load_project(tmp_path / "b"), offline=True)
    assert len(r.placed) == 3 and not r.store_opened
    for name, data in SMALL.items():
        assert (tmp_path / "b/models/m/x86_64" / name).read_bytes() == data
    (tmp_path / "store-gone").rename(tmp_path / "store")
    # A damaged small file whose old stamp matches its stat again: hashed anyway, caught.
    damaged = cache.blob_path(small["config.json"])
    flip_a_bit_keeping_mtime(damaged)
    key = cache.stat_key(small["config.json"])
    assert key is not None
    cache._write_checked(cache.stamp_path(small["config.json"]), key.encode() + b"\n")
    r = sync_project(load_project(project(tmp_path, "c")))
    assert any("no longer hashes to" in w for w in r.warnings) and r.store_opened
    assert (tmp_path / "c/models/m/x86_64/config.json").read_bytes() == SMALL["config.json"]
    assert hash_file(damaged) == small["config.json"]
    # prune removes the old layout's recipes and stamps with their files
    assert cli(["cache", "prune", "--all"]) == 0
    for b in small.values():
        assert not cache.blob_path(b).exists()
        assert not cache.recipe_path(b).exists() and not cache.stamp_path(b).exists()
