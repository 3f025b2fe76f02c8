"""The cache's files per blob: a small single-chunk file is one file (no recipe, no stamp), a
file of several chunks keeps both; the one-chunk recipe `cached_recipe` makes up serves chunk
reuse and local reads; a cache written by the previous layout (a recipe and a stamp for every
file) keeps working, and its stamps of small files are no longer trusted without a hash.
Format 2 caches keep one folder per kind; a format-1 cache (fan-out folders, no format file)
is read and written as it is; a newer format is refused."""

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
from zoostore.storage.cache_layout import FORMAT_FILE

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


def folders_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir())


def test_a_new_cache_is_format_2_one_folder_per_kind(zoo: Store, tmp_path: Path) -> None:
    sync_project(load_project(project(tmp_path, "a")))
    root = tmp_path / "cache"
    assert (root / FORMAT_FILE).read_text() == "2\n"
    assert folders_of(root) == ["blobs", "models", "projects", "recipes", "verified"]
    cache = Cache()
    big = blob(zoo, "weights.bin")
    assert cache.blob_path(big) == root / "blobs" / big.hex and cache.blob_path(big).is_file()
    assert cache.recipe_path(big) == root / "recipes" / big.hex and cache.stamp_holds(big)
    assert cache.info().blobs == 3


def to_format_1(root: Path) -> None:
    """The cache as zoostore laid it out before format 2: <kind>/<aa>/<hex>, no format file."""
    (root / FORMAT_FILE).unlink()
    for kind in ("blobs", "recipes", "verified"):
        for f in list((root / kind).iterdir()):
            (root / kind / f.name[:2]).mkdir(exist_ok=True)
            f.rename(root / kind / f.name[:2] / f.name)


def test_a_format_1_cache_is_read_and_written_as_it_is(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sync_project(load_project(project(tmp_path, "a")))
    root = tmp_path / "cache"
    big, labels = blob(zoo, "weights.bin"), blob(zoo, "labels.txt")
    to_format_1(root)
    cache = Cache()
    assert cache.blob_path(big) == root / "blobs" / big.hex[:2] / big.hex
    assert cache.cached_recipe(big) == zoo.blobs.recipe(big)   # its recipes are found
    assert cache.check(big) == "ok"      # moved: its stamp no longer held, so it was hashed
    with monkeypatch.context() as m:
        m.setattr("zoostore.storage.cache.hash_file", lambda path: pytest.fail(f"hashed {path}"))
        assert cache.check(big) == "ok"  # and stamped again, where format 1 keeps stamps
    assert (root / "verified" / big.hex[:2] / big.hex).is_file()
    # offline, from that cache alone
    (project(tmp_path, "b") / "zoo.lock").write_bytes((tmp_path / "a/zoo.lock").read_bytes())
    (tmp_path / "store").rename(tmp_path / "store-gone")
    r = sync_project(load_project(tmp_path / "b"), offline=True)
    assert len(r.placed) == 3 and not r.store_opened
    (tmp_path / "store-gone").rename(tmp_path / "store")
    # a file fetched into it goes where format 1 keeps files; no format file appears
    Cache().drop(labels)
    assert not (root / "blobs" / labels.hex[:2] / labels.hex).exists()
    r = sync_project(load_project(project(tmp_path, "c")))
    assert r.store_opened and (root / "blobs" / labels.hex[:2] / labels.hex).is_file()
    assert not (root / FORMAT_FILE).exists() and not (root / "blobs" / labels.hex).exists()
    assert Cache().info().blobs == 3 and Cache().info().format == 1
    assert cli(["cache", "info"]) == 0
    assert "format: 1 (fan-out folders" in capsys.readouterr().out
    # and prune walks it
    assert cli(["cache", "prune", "--all"]) == 0
    assert Cache().info().blobs == 0 and not list((root / "blobs").rglob("*/*"))
    assert not (root / "recipes" / big.hex[:2] / big.hex).exists()


@pytest.mark.parametrize("text, expected", [
    ("3\n", "has format 3, newer than this zoostore reads (2): upgrade zoostore"),
    ("two\n", "expected the cache's format number (1 or 2), got 'two'"),
    (None, "cannot read the cache's format file"),   # a folder where the file belongs
])
def test_a_cache_of_a_newer_or_unknown_format_is_refused(
        zoo: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, expected: str) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    if text is None:
        (root / FORMAT_FILE).mkdir()
        expected += f" {root / FORMAT_FILE}: Is a directory; it is only a cache: delete the folder {root}"
    else:
        (root / FORMAT_FILE).write_text(text)
    os.chdir(project(tmp_path, "a"))
    assert cli(["sync"]) != 0
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert sorted(p.name for p in root.iterdir()) == [FORMAT_FILE]   # nothing written into it


def test_a_file_fetched_into_the_cache_is_stamped_by_the_fetch(zoo: Store, tmp_path: Path) -> None:
    """`ensure` and `put_small` stamp what they verified as they read it (sync then rewrites the
    stamp in place after its hard link changed the file's ctime); files up to UNSTAMPED get none."""
    cache = Cache()
    big, small = blob(zoo, "weights.bin"), blob(zoo, "config.json")
    cache.ensure(zoo.blobs, big)
    cache.ensure(zoo.blobs, small)
    assert cache.stamp_holds(big) and cache.stamp_path(big).is_file()
    assert not cache.stamp_path(small).exists()
    recipe = zoo.blobs.recipe(big)
    cache.drop(big)
    cache.put_small(recipe, WEIGHTS)
    assert cache.stamp_holds(big)
