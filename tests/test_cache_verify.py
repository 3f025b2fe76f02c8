"""The cache is never trusted blindly: a cached file is hashed before it is linked, copied or
returned by `zoostore.fetch`, unless its verified stamp (inode, size, mtime, ctime) still holds;
a damaged one is dropped and fetched again with a warning. Dangling symlinks are re-placed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import zoostore
import zoostore.storage.cache
from helpers_store import flip_a_bit, project_dir, published_store, write_dir

from zoostore.cli import main as cli
from zoostore.core.digest import Digest, hash_file
from zoostore.documents.project import load_project
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.publish import publish
from zoostore.ops.sync import sync_project
from zoostore.repository import Store
from zoostore.storage.blobs import BlobStore
from zoostore.storage.cache import UNSTAMPED, Cache

WEIGHTS = bytes(range(256)) * 2048   # 512 KiB: several chunks


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    return published_store(tmp_path, {"weights.bin": WEIGHTS, "labels.txt": "cat\ndog\n"},
                           config=StoreConfig(pack_target_size=256 * 1024))


def project(tmp_path: Path, name: str) -> Path:
    return project_dir(tmp_path, name)


def weights_blob(zoo: Store) -> Digest:
    return zoo.resolve("m", "1.0.0", arch="x86_64").files["weights.bin"].blob


def labels_blob(zoo: Store) -> Digest:
    return zoo.resolve("m", "1.0.0", arch="x86_64").files["labels.txt"].blob


def count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def counting(path: str | os.PathLike[str]) -> Digest:
        calls.append(Path(path))
        return hash_file(path)

    monkeypatch.setattr(zoostore.storage.cache, "hash_file", counting)
    return calls


def test_flipped_bit_in_cache_is_dropped_and_fetched_again(zoo: Store, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    first = project(tmp_path, "a")
    sync_project(load_project(first))
    blob = weights_blob(zoo)
    cached = Cache().blob_path(blob)
    flip_a_bit(cached)
    second = project(tmp_path, "b")
    assert cli(["sync", "--project", str(second)]) == 0
    err = capsys.readouterr().err
    assert f"no longer hashes to {blob}" in err and "fetching it again" in err
    assert (second / "models/m/x86_64/weights.bin").read_bytes() == WEIGHTS
    assert hash_file(cached) == blob
    # The same damage seen by zoostore.fetch: a warning, then the right bytes.
    flip_a_bit(cached)
    with pytest.warns(UserWarning, match="no longer hashes to"):
        path = zoostore.fetch("m", "1.0.0", "weights.bin", arch="x86_64", store=zoo.url)
    assert path.read_bytes() == WEIGHTS


def test_verified_stamp_avoids_rehashing(zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = count_hashes(monkeypatch)
    sync_project(load_project(project(tmp_path, "a")))
    assert hashes == []   # fetched files were verified while fetching, then stamped
    # A second project hard-links the same cached files: the stamp survives the first project's
    # links (which changed ctime), so the weights are not hashed again; labels.txt (up to
    # UNSTAMPED bytes) has no stamp and is hashed at every check, which costs less than one.
    labels = Cache().blob_path(labels_blob(zoo))
    assert labels.stat().st_size <= UNSTAMPED < len(WEIGHTS)
    r = sync_project(load_project(project(tmp_path, "b")))
    assert len(r.placed) == 2 and hashes == [labels] and not r.store_opened
    path = zoostore.fetch("m", "1.0.0", "weights.bin", arch="x86_64", store=zoo.url)
    assert path.read_bytes() == WEIGHTS and hashes == [labels]
    # A stamp that no longer matches (here: removed) means one hash, then a new stamp.
    Cache().stamp_path(weights_blob(zoo)).unlink()
    sync_project(load_project(project(tmp_path, "c")))
    assert sorted(hashes[1:]) == sorted([Cache().blob_path(weights_blob(zoo)), labels])
    assert Cache().stamp_holds(weights_blob(zoo)) and not Cache().stamp_path(labels_blob(zoo)).exists()


def test_a_stamp_or_recipe_is_rewritten_in_place_and_a_longer_old_one_cut(zoo: Store, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Stamps written again after sync's hard links are overwritten, not truncated first
    # (Cache._write_checked: truncating freed the block only for the write to allocate another),
    # and whatever a longer old one held past the new length is cut, so the exact comparison holds.
    sync_project(load_project(project(tmp_path, "a")))
    cache, blob = Cache(), weights_blob(zoo)
    stamp = cache.stamp_path(blob)
    inode, key = stamp.stat().st_ino, stamp.read_text()
    opened: list[int] = []
    real_open = os.open

    def spy(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path) == stamp:
            opened.append(flags)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    os.utime(cache.blob_path(blob))   # a new mtime and ctime: the stamp no longer holds
    assert not cache.stamp_holds(blob)
    cache.stamp(blob)   # the same length, so neither truncated nor cut
    assert opened and not any(flags & os.O_TRUNC for flags in opened)
    assert cache.stamp_holds(blob) and stamp.stat().st_ino == inode
    key = stamp.read_text()
    stamp.write_text(key.strip() + " and some garbage a torn or older writer left\n")
    assert not cache.stamp_holds(blob)
    cache.stamp(blob)
    monkeypatch.undo()
    assert stamp.read_text() == key and stamp.stat().st_ino == inode and cache.stamp_holds(blob)
    recipe = cache.recipe_path(blob)
    good = recipe.read_bytes()
    recipe.write_bytes(good + b"\0" * 100)
    cache._write_checked(recipe, good)
    assert recipe.read_bytes() == good
    assert cache.cached_recipe(blob) == zoo.blobs.recipe(blob)


def test_copy_mode_also_checks_the_cache_first(zoo: Store, tmp_path: Path) -> None:
    sync_project(load_project(project(tmp_path, "a")))
    flip_a_bit(Cache().blob_path(weights_blob(zoo)))
    r = sync_project(load_project(project(tmp_path, "b")), link="copy")
    assert any("no longer hashes to" in w for w in r.warnings) and r.store_opened
    assert (tmp_path / "b/models/m/x86_64/weights.bin").read_bytes() == WEIGHTS


def test_symlinks_left_dangling_by_cache_prune_are_placed_again(zoo: Store, tmp_path: Path) -> None:
    p = project(tmp_path, "a")
    sync_project(load_project(p), link="symlink")
    weights = p / "models/m/x86_64/weights.bin"
    assert weights.is_symlink() and weights.read_bytes() == WEIGHTS
    assert cli(["cache", "prune", "--all"]) == 0
    assert not weights.exists()   # dangling
    r = sync_project(load_project(p), link="symlink")
    assert sorted(r.placed) == ["m/x86_64/labels.txt", "m/x86_64/weights.bin"] and not r.conflicts
    assert weights.read_bytes() == WEIGHTS
    assert sync_project(load_project(p), link="symlink").unchanged == 2


def test_verify_rehashes_the_cache_even_when_the_stamp_holds(zoo: Store, tmp_path: Path) -> None:
    """Damage no stat shows (bit rot under an unchanged ctime, simulated by re-stamping) passes
    the stamp; --verify hashes anyway, drops the file and fetches it again."""
    a = project(tmp_path, "a")
    sync_project(load_project(a), link="copy")
    blob = weights_blob(zoo)
    flip_a_bit(Cache().blob_path(blob))
    Cache().stamp(blob)   # the stamp now matches the damaged file
    b = project(tmp_path, "b")
    r = sync_project(load_project(b), link="copy", verify=True)
    assert any("no longer hashes to" in w for w in r.warnings)
    assert (b / "models/m/x86_64/weights.bin").read_bytes() == WEIGHTS
    assert hash_file(Cache().blob_path(blob)) == blob


def test_a_cached_chunk_edited_through_a_hard_link_is_fetched_and_not_counted_as_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade reads the chunks it shares with a cached older version from that file. When
    a project wrote to its hard link of that file, the changed chunk no longer matches its id:
    the read of the new version (which hashes only the whole file first) reads it again with
    every chunk verified, takes the changed one from the store, and the sync's summary counts
    as reused only the cached bytes it really used, once."""
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    v1 = bytearray(os.urandom(1_500_000))
    v2 = bytes(v1[:1_200_000]) + os.urandom(300_000)  # shares most chunks with v1
    zoo = published_store(tmp_path, {"weights.bin": bytes(v1)})
    publish(zoo, "m", "1.1.0", [write_dir(tmp_path / "src2", {"weights.bin": v2})], arch="x86_64", check=False)
    a = project(tmp_path, "a")
    sync_project(load_project(a))
    old, new = (zoo.blobs.recipe(zoo.resolve("m", v, arch="x86_64").files["weights.bin"].blob)
                for v in ("1.0.0", "1.1.0"))
    shared = {ref.chunk for ref in old.chunks} & {ref.chunk for ref in new.chunks}
    edited = old.chunks[1]   # a chunk both versions hold
    assert edited.chunk in shared and len(shared) >= 4
    placed = a / "models/m/x86_64/weights.bin"
    assert placed.stat().st_nlink >= 2   # the cached file itself
    os.chmod(placed, 0o644)
    with open(placed, "r+b") as f:       # same size: only the chunk's bytes are wrong
        f.seek(old.starts[1] + 10)
        f.write(b"\xff" * 8)
    calls: list[bool] = []
    real = BlobStore._write_hashed

    def counting(self: BlobStore, *args: Any, **kwargs: Any) -> str:
        calls.append(kwargs["check"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(BlobStore, "_write_hashed", counting)
    b = project_dir(tmp_path, "b", models={"m": "1.1.0"})
    r = sync_project(load_project(b))
    assert (b / "models/m/x86_64/weights.bin").read_bytes() == v2
    assert calls == [False, True]   # the heal: a second read, each chunk verified
    assert Cache().blob_path(new.blob).stat().st_mode & 0o777 == 0o444 and hash_file(Cache().blob_path(new.blob)) == new.blob
    reused = sum(ref.raw_length for ref in new.chunks if ref.chunk in shared and ref.chunk != edited.chunk)
    assert r.bytes_reused == reused, (r.bytes_reused, reused, r.bytes_downloaded)
