"""One cache shared by many CI jobs: syncs racing each other and `zoostore cache prune`, and
caches restored between runs (`cp -a`, `tar`, read-only). Every sync either places correct,
verified files or fails with a clear error; a later sync never trusts a wrong cached file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import zoostore.ops.sync_fill
from helpers_store import project_dir, published_store

from zoostore.cli import main as cli
from zoostore.core.digest import hash_file
from zoostore.core.errors import OfflineError
from zoostore.documents.project import load_project
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.place import read_state
from zoostore.ops.sync import sync_project
from zoostore.repository import Store
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
    for blob_file in (tmp_path / "cache" / "blobs").glob("*/*"):
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
    assert cli(["sync"]) == 8
    err = capsys.readouterr().err
    assert f"the local cache {tmp_path / 'cache'} cannot take files" in err and "$ZOOSTORE_CACHE" in err
    assert not list((tmp_path / "cache").rglob("blobs/*/*"))


def test_cache_info_skips_a_file_a_concurrent_prune_removes(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sync_project(load_project(project_dir(tmp_path, "app")))
    fan_out = next((tmp_path / "cache" / "blobs").iterdir())
    listing = Path.iterdir

    def listed_then_removed(self: Path):  # type: ignore[no-untyped-def]
        names = list(listing(self))
        if self == fan_out:   # a prune removes a file between the listing and its stat
            return iter(names + [self / ("0" * 64)])
        return iter(names)

    monkeypatch.setattr(Path, "iterdir", listed_then_removed)
    assert cli(["cache", "info", "--json"]) == 0
    assert '"blobs": 2' in capsys.readouterr().out
