"""One cache shared by many CI jobs: syncs racing each other and `zoostore cache prune`, and
caches restored between runs (`cp -a`, `tar`, read-only). Every sync either places correct,
verified files or fails with a clear error; a later sync never trusts a wrong cached file."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import zoostore.ops.sync_fill
from helpers_store import flip_a_bit, project_dir, published_store

from zoostore.cli import main as cli
from zoostore.core.digest import hash_file
from zoostore.core.errors import OfflineError
from zoostore.documents.project import load_project
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.place import read_state
from zoostore.ops.sync import sync_project
from zoostore.repository import Store
from zoostore.storage import cache_prune
from zoostore.storage.cache import Cache

WEIGHTS = bytes(range(256)) * 2048   # 512 KiB: several chunks, stamped
FILES = {"weights.bin": WEIGHTS, "labels.txt": "cat\ndog\n"}


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    return published_store(tmp_path, FILES, config=StoreConfig(pack_target_size=256 * 1024))


def assert_synced(project: Path) -> None:
    """Every file of the lock placed with the right bytes, and the state file lists each."""
    dest = project / "models"
    state = read_state(dest).files
    assert sorted(state) == ["m/x86_64/labels.txt", "m/x86_64/weights.bin"]
    for rel, entry in state.items():
        assert str(hash_file(dest / rel)) == entry["blob"]
    assert (dest / "m/x86_64/weights.bin").read_bytes() == WEIGHTS


def prune_after_first_fill(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make `cache prune --all` run between sync's fill of the cache and its placing (the
    window two CI jobs hit when one prunes while the other syncs). Returns the call count."""
    fill = zoostore.ops.sync_fill.fill_cache
    calls: list[int] = []

    def fill_then_prune(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = fill(*args, **kwargs)
        calls.append(len(out))
        if len(calls) == 1:
            assert cli(["cache", "prune", "--all"]) == 0
        return out

    monkeypatch.setattr(zoostore.ops.sync_fill, "fill_cache", fill_then_prune)
    return calls


def test_a_prune_between_fill_and_placing_fetches_the_files_again(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = prune_after_first_fill(monkeypatch)
    project = project_dir(tmp_path, "app")
    report = sync_project(load_project(project))
    assert len(calls) == 2 and sorted(report.placed) == ["m/x86_64/labels.txt", "m/x86_64/weights.bin"]
    assert_synced(project)
    assert Cache(tmp_path / "cache").info().blobs == 2


@pytest.mark.parametrize("link", ["hardlink", "copy", "auto"])
def test_a_prune_between_fill_and_placing_fetches_again_whatever_the_link_mode(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str) -> None:
    """--link hardlink too: a cached file gone before its link is made is fetched again, not
    a UsageError saying the cache may be on another file system."""
    calls = prune_after_first_fill(monkeypatch)
    project = project_dir(tmp_path, "app")
    report = sync_project(load_project(project), link=link)
    assert len(calls) == 2 and sorted(report.placed) == ["m/x86_64/labels.txt", "m/x86_64/weights.bin"]
    assert_synced(project)


def test_a_prune_between_fill_and_placing_offline_is_a_clear_offline_error(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    warm = project_dir(tmp_path, "warm")
    sync_project(load_project(warm))
    project = project_dir(tmp_path, "app")
    monkeypatch.chdir(project)
    assert cli(["lock"]) == 0
    prune_after_first_fill(monkeypatch)
    capsys.readouterr()
    assert cli(["sync", "--offline"]) == 9
    err = capsys.readouterr().err
    assert "vanished from the cache" in err and "Traceback" not in err
    assert read_state(project / "models").files == {}   # nothing claimed that is not there
    monkeypatch.undo()
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(project)
    assert cli(["sync"]) == 0   # a re-run succeeds
    assert_synced(project)


def test_concurrent_syncs_and_a_prune_on_one_cache_all_succeed(zoo: Store, tmp_path: Path) -> None:
    """Two jobs syncing one checkout, one syncing another project, one pruning: real processes,
    at once (bounded: one round, 60 s timeout each). All succeed, the files and the cache are right."""
    import subprocess
    import sys

    one, two = project_dir(tmp_path, "one"), project_dir(tmp_path, "two")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), ZOOSTORE_NO_PROGRESS="1")
    zoostore = [sys.executable, "-m", "zoostore"]
    jobs = [(one, ["sync", "-q"]), (one, ["sync", "-q"]), (two, ["sync", "-q"]), (tmp_path, ["cache", "prune", "--all"])]
    procs = [subprocess.Popen(zoostore + argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for cwd, argv in jobs]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and "Traceback" not in err, err
    for project in (one, two):
        assert_synced(project)
    cache = Cache(tmp_path / "cache")
    # whatever the prune left (all of it, if it ran first; none, if it ran last)
    kept = [f for f in (tmp_path / "cache" / "blobs").iterdir() if not f.name.startswith(".")]
    assert len(kept) == cache.info().blobs
    for blob_file in kept:
        assert hash_file(blob_file).hex == blob_file.name   # nothing torn or wrong was kept
    assert cache.info().stale_temps == 0


def read_only_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a CI cache restored read-only (a read-only mount) does to zoostore's writes: every
    new file under the cache fails with EROFS. (Tests run as root, so chmod would not do.)"""
    import errno

    import zoostore.ops.cache_users
    import zoostore.storage.cache

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(zoostore.ops.cache_users, "atomic_write", refuse)
    monkeypatch.setattr(zoostore.storage.cache, "atomic_write", refuse)
    monkeypatch.setattr(zoostore.storage.cache.os, "access", lambda path, mode: False)


def test_a_read_only_cache_that_holds_every_file_syncs_a_new_checkout(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync_project(load_project(project_dir(tmp_path, "warm")))
    read_only_cache(monkeypatch)
    project = project_dir(tmp_path, "checkout")   # never registered with the cache
    report = sync_project(load_project(project))
    assert len(report.placed) == 2 and not report.warnings
    assert_synced(project)


def test_a_read_only_cache_missing_files_fails_saying_so(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    project = project_dir(tmp_path, "checkout")
    monkeypatch.chdir(project)
    assert cli(["lock"]) == 0
    read_only_cache(monkeypatch)
    capsys.readouterr()
    assert cli(["sync"]) == 1
    err = capsys.readouterr().err
    assert f"the local cache {tmp_path / 'cache'} cannot take files" in err and "$ZOOSTORE_CACHE" in err
    # no file anywhere under blobs/ (format 2 keeps blobs/<hex>, format 1 blobs/<aa>/<hex>)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and "blobs" in p.relative_to(tmp_path).parts]


def test_cache_info_skips_a_file_a_concurrent_prune_removes(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sync_project(load_project(project_dir(tmp_path, "app")))
    listing = cache_prune.files

    def listed_then_removed(folder: Path) -> Iterator[Path]:
        yield from listing(folder)
        yield folder / ("0" * 64)   # a prune removes a file between the listing and its stat

    monkeypatch.setattr(cache_prune, "files", listed_then_removed)
    assert cli(["cache", "info", "--json"]) == 0
    assert '"blobs": 2' in capsys.readouterr().out


def test_cache_verify_after_a_restore_drops_a_damaged_file_then_reports_all_intact(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The CI restore path: the cache copied with `cp -a` (new inodes and ctimes: every stamp
    misses), one file damaged on the way. `cache verify` finds it (exit 4), drops it, and says
    all is intact the next time; a sync from the restored cache then fetches it again."""
    import json

    sync_project(load_project(project_dir(tmp_path, "warm")))
    restored = tmp_path / "restored"
    shutil.copytree(tmp_path / "cache", restored, symlinks=True)   # as `cp -a`: new inodes, new ctimes
    monkeypatch.setenv("ZOOSTORE_CACHE", str(restored))
    weights = zoo.resolve("m", "1.0.0", arch="x86_64").files["weights.bin"].blob
    flip_a_bit(Cache(restored).blob_path(weights))
    capsys.readouterr()
    assert cli(["cache", "verify", "--json"]) == 4
    doc = json.loads(capsys.readouterr().out)
    assert doc["damaged"] == [str(weights)] and doc["files"] == 2 and not doc["ok"]
    assert not Cache(restored).has(weights) and not Cache(restored).stamp_path(weights).exists()
    assert cli(["cache", "verify"]) == 0
    assert capsys.readouterr().out.startswith(f"verified 1 file(s), 8 B, in {restored}: all intact")
    project = project_dir(tmp_path, "job")
    report = sync_project(load_project(project))
    assert report.store_opened and not report.warnings
    assert_synced(project)


@pytest.mark.parametrize("how", ["copytree", "tar"])
def test_a_restored_cache_is_hashed_once_then_trusted_again(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Restoring a cache (`cp -a`, `tar`) gives every file a new inode and ctime: the verified
    stamps miss, so the first sync hashes each file it uses and stamps it; the next trusts them."""
    import tarfile

    import zoostore.storage.cache

    sync_project(load_project(project_dir(tmp_path, "warm")))
    restored = tmp_path / "restored"
    if how == "tar":
        with tarfile.open(tmp_path / "cache.tar", "w") as tar:
            tar.add(tmp_path / "cache", arcname=".")
        with tarfile.open(tmp_path / "cache.tar") as tar:
            tar.extractall(restored, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))  # type: ignore[arg-type]
    else:
        shutil.copytree(tmp_path / "cache", restored, symlinks=True)
    hashed: list[Path] = []
    real = zoostore.storage.cache.hash_file
    monkeypatch.setattr(zoostore.storage.cache, "hash_file", lambda path: (hashed.append(Path(path)), real(path))[1])
    weights = Cache(restored).blob_path(zoo.resolve("m", "1.0.0", arch="x86_64").files["weights.bin"].blob)
    for job in ("job1", "job2"):
        project = project_dir(tmp_path, job)
        report = sync_project(load_project(project), cache=Cache(restored))
        assert len(report.placed) == 2 and not report.store_opened
        assert_synced(project)
        assert hashed.count(weights) == 1   # job1 hashed it (stamp missed), job2 trusted the new stamp
