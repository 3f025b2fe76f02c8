"""`zoostore cache info` and `zoostore cache prune [--keep-lock FILE]...`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_gc import content, lock_text, make_zoo, put_version
from zoostore.storage.cache import Cache
from zoostore.cli import main as cli
from zoostore.core.digest import Digest
from zoostore.repository import Store


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("ZOOSTORE_CACHE", str(d))
    return d


@pytest.fixture
def zoo(tmp_path: Path) -> Store:
    z = make_zoo(tmp_path / "store")
    put_version(z, tmp_path, "m", "1.0.0", {"a.bin": content(1), "b.bin": content(2)})
    put_version(z, tmp_path, "m", "1.1.0", {"a.bin": content(3)})
    put_version(z, tmp_path, "n", "2.0.0", {"c.bin": content(4, n=10_000)})
    return z


def _fill(zoo: Store, cache_dir: Path) -> dict[str, Digest]:
    cache = Cache(cache_dir)
    blobs = {}
    for model in zoo.models():
        for version, release in zoo.manifest(model).versions.items():
            for _, path, entry in release.blobs():
                cache.ensure(zoo.blobs, entry.blob, model=model)
                blobs[f"{model}@{version}/{path}"] = entry.blob
    return blobs


def test_info_on_an_empty_and_a_filled_cache(zoo: Store, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["cache", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"schema": 1, "path": str(cache_dir), "blobs": 0, "bytes": 0,
                                                   "stale_temps": 0, "stale_temp_bytes": 0, "format": 2}
    blobs = _fill(zoo, cache_dir)
    assert cli(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"path:  {cache_dir}" in out and f"blobs: {len(set(blobs.values()))}" in out and "format: 2" in out
    assert cli(["cache", "info", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bytes"] == 40_000 * 3 + 10_000


def test_prune_keeps_what_lockfiles_pin(zoo: Store, cache_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import fsspec

    blobs = _fill(zoo, cache_dir)
    lock = tmp_path / "zoo.lock"
    lock.write_text(lock_text(zoo.url, {"m": "1.1.0"}, zoo))
    fs = fsspec.filesystem("memory")
    fs.pipe("/cache-test/other.lock", lock_text(zoo.url, {"n": "2.0.0"}, zoo).encode())
    try:
        assert cli(["cache", "prune", "--keep-lock", str(lock), "--keep-lock", "memory://cache-test/other.lock"]) == 0
    finally:
        fs.rm("/cache-test/other.lock")
    out = capsys.readouterr().out
    assert "removed 2 file(s)" in out and "kept what 2 lockfile(s) pin" in out
    cache = Cache(cache_dir)
    assert cache.has(blobs["m@1.1.0/a.bin"]) and cache.has(blobs["n@2.0.0/c.bin"])
    assert not cache.has(blobs["m@1.0.0/a.bin"]) and not cache.has(blobs["m@1.0.0/b.bin"])
    assert cache.info().blobs == 2


def test_prune_all_empties_the_cache(zoo: Store, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blobs = _fill(zoo, cache_dir)
    assert cli(["cache", "prune", "--json"]) == 2  # no scope: refused, nothing deleted
    assert Cache(cache_dir).info().blobs == len(set(blobs.values()))
    capsys.readouterr()
    assert cli(["cache", "prune", "--all", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == len(set(blobs.values()))
    assert Cache(cache_dir).info().blobs == len(set(blobs.values()))
    assert cli(["cache", "prune", "--all", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["removed"] == len(set(blobs.values())) and doc["bytes"] == 40_000 * 3 + 10_000
    assert Cache(cache_dir).info().blobs == 0
    # The cache still works afterwards.
    assert Cache(cache_dir).ensure(zoo.blobs, blobs["n@2.0.0/c.bin"]).is_file()


def test_prune_keeps_hard_linked_project_copies(zoo: Store, cache_dir: Path, tmp_path: Path) -> None:
    blob = _fill(zoo, cache_dir)["n@2.0.0/c.bin"]
    project = tmp_path / "project" / "c.bin"
    project.parent.mkdir()
    project.hardlink_to(Cache(cache_dir).blob_path(blob))
    assert cli(["cache", "prune", "--all"]) == 0
    assert Digest.of(project.read_bytes()) == blob


def test_prune_older_than_keeps_recent_files_and_removes_stale_temps(zoo: Store, cache_dir: Path) -> None:
    import os
    import time

    from zoostore.core.atomic import TEMP_PREFIX

    blobs = _fill(zoo, cache_dir)
    cache = Cache(cache_dir)
    old = blobs["m@1.0.0/a.bin"]
    week_ago = time.time() - 7 * 86400
    os.utime(cache.blob_path(old), (week_ago, week_ago))
    stale = cache.blob_path(old).parent / f"{TEMP_PREFIX}999999999-0-dead"
    stale.write_bytes(b"partial")
    os.utime(stale, (week_ago, week_ago))
    assert cli(["cache", "prune", "--older-than", "1d"]) == 0
    assert not cache.has(old) and not stale.exists()
    assert cache.info().blobs == len(set(blobs.values())) - 1


@pytest.mark.parametrize("argv, code, message", [
    (["cache"], 2, "usage"),
    (["cache", "prune", "--keep-lock", "/nonexistent/zoo.lock"], 2, "cannot read lockfile"),
])
def test_cache_usage(cache_dir: Path, argv: list[str], code: int, message: str,
                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(argv) == code
    captured = capsys.readouterr()
    assert message in captured.out + captured.err


def test_prune_refuses_a_broken_lock_and_keeps_everything(zoo: Store, cache_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    blobs = _fill(zoo, cache_dir)
    bad = tmp_path / "zoo.lock"
    bad.write_text("format = 1\n[models.m]\nversion = [\n")
    assert cli(["cache", "prune", "--keep-lock", str(bad)]) == 2  # a malformed zoo.lock is a configuration error (issue 17), not a store format
    assert "zoo.lock" in capsys.readouterr().err
    assert Cache(cache_dir).info().blobs == len(set(blobs.values()))


@pytest.mark.parametrize("argv, message", [
    (["cache", "prune"], "needs a scope: --unused"),
    (["cache", "prune", "--all", "--unused"], "do not combine"),
    (["cache", "prune", "--all", "--ignore-projects"], "do not combine"),
])
def test_prune_needs_one_clear_scope(cache_dir: Path, argv: list[str], message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(argv) == 2
    assert message in capsys.readouterr().err


def _synced_project(zoo: Store, tmp_path: Path, name: str, spec: str) -> Path:
    from zoostore.documents.project import load_project
    from zoostore.ops.sync import sync_project

    project = tmp_path / name
    project.mkdir()
    (project / "zoo.toml").write_text(f'store = "{zoo.url}"\narchs = ["x86_64"]\n[models]\n{spec}\n')
    assert sync_project(load_project(project)).placed
    return project / "models"


def test_prune_keeps_what_synced_projects_use_until_they_are_gone(
        zoo: Store, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    blobs = _fill(zoo, cache_dir)
    dest = _synced_project(zoo, tmp_path, "app", 'm = "1.1.0"')
    used = blobs["m@1.1.0/a.bin"]
    cache = Cache(cache_dir)

    assert cli(["cache", "prune", "--unused", "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["removed"] == len(set(blobs.values())) - 1 and doc["projects"] == [str(dest.resolve())]
    assert cache.info().blobs == len(set(blobs.values()))  # a dry run deletes nothing

    assert cli(["cache", "prune", "--older-than", "0s"]) == 0
    assert "kept what 1 synced project(s) use" in capsys.readouterr().out
    assert cache.has(used) and cache.info().blobs == 1

    shutil.rmtree(dest)  # the project's files are gone: so is its claim on the cache
    assert cli(["cache", "prune", "--unused"]) == 0
    assert not cache.has(used) and cache.info().blobs == 0
    assert not any((cache_dir / "projects").iterdir())


def test_ignore_projects_prunes_their_files_too(zoo: Store, cache_dir: Path, tmp_path: Path) -> None:
    _fill(zoo, cache_dir)
    dest = _synced_project(zoo, tmp_path, "app", 'm = "1.1.0"')
    assert cli(["cache", "prune", "--unused", "--ignore-projects"]) == 0
    assert Cache(cache_dir).info().blobs == 0
    assert (dest / "m" / "x86_64" / "a.bin").read_bytes() == content(3)  # hard links keep the data
