"""`--offline` / ZOOSTORE_OFFLINE=1: `zoostore.fetch` and `sync` work from the cache alone and
fail naming what is missing instead of contacting the store."""

from __future__ import annotations

from pathlib import Path

import pytest

import zoostore
from zoostore.cli import main as cli
from zoostore.core.errors import OfflineError, UsageError
from zoostore.documents.project import load_project
from zoostore.ops.publish import publish
from zoostore.ops.sync import sync_project
from zoostore.repository import Store, init_store


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOOSTORE_OFFLINE", raising=False)
    store, _ = init_store(tmp_path / "store")
    for version in ("1.0.0", "1.1.0"):
        src = tmp_path / "src" / version
        src.mkdir(parents=True)
        (src / "a.txt").write_text(f"a {version}\n")
        (src / "b.txt").write_text(f"b {version}\n")
        publish(store, "m", version, [src], arch="x86_64", check=False)
    return store


def take_store_away(zoo: Store, tmp_path: Path) -> None:
    """Any contact with the store now fails loudly."""
    (tmp_path / "store").rename(tmp_path / "store-gone")


def test_fetch_offline_resolves_from_the_manifest_last_fetched(zoo: Store, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url = zoo.url
    online = zoostore.fetch("m", "^1.0", "a.txt", arch="x86_64", store=url)
    take_store_away(zoo, tmp_path)
    assert zoostore.fetch("m", "^1.0", "a.txt", arch="x86_64", store=url, offline=True) == online
    monkeypatch.setenv("ZOOSTORE_OFFLINE", "1")
    assert zoostore.fetch("m@1.1.0", path="a.txt", arch="x86_64", store=url).read_text() == "a 1.1.0\n"
    # The version resolves, but this file was never fetched: the error names it.
    with pytest.raises(OfflineError, match=r"m@1.1.0 x86_64/b.txt is not in the cache"):
        zoostore.fetch("m", "^1.0", "b.txt", arch="x86_64", store=url)
    # offline=False overrides the environment (and then fails: the store is gone).
    with pytest.raises(Exception) as exc:
        zoostore.fetch("m", "^1.0", "a.txt", arch="x86_64", store=url, offline=False)
    assert not isinstance(exc.value, OfflineError)


def test_fetch_offline_without_a_cached_manifest_says_so(zoo: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OfflineError, match=r"cannot resolve m@\^1.0.*holds no manifest of m from"):
        zoostore.fetch("m", "^1.0", "a.txt", arch="x86_64", store=zoo.url, offline=True)
    monkeypatch.setenv("ZOOSTORE_OFFLINE", "yes")
    with pytest.raises(OfflineError, match="ZOOSTORE_OFFLINE"):
        zoostore.fetch("m", "^1.0", "a.txt", arch="x86_64", store=zoo.url)
    monkeypatch.setenv("ZOOSTORE_OFFLINE", "perhaps")
    with pytest.raises(UsageError, match=r"ZOOSTORE_OFFLINE='perhaps': expected 1, true"):
        zoostore.fetch("m", "^1.0", "a.txt", arch="x86_64", store=zoo.url)


def test_sync_honours_the_environment_variable(zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "zoo.toml").write_text('store = "../store"\narchs = ["x86_64"]\n[models]\nm = "1.0.0"\n')
    sync_project(load_project(project))
    take_store_away(zoo, tmp_path)
    monkeypatch.setenv("ZOOSTORE_OFFLINE", "1")
    r = sync_project(load_project(project), dest=tmp_path / "second")
    assert len(r.placed) == 2 and not r.store_opened
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(OfflineError, match=r"m@1.0.0 x86_64/(a|b).txt is not in the cache"):
        sync_project(load_project(project), dest=tmp_path / "third")
    assert cli(["sync", "--project", str(project), "--dest", str(tmp_path / "third"), "-q"]) == 9


def test_zoo_urls_read_the_cache_offline(zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    url = zoo.url
    with fsspec.open("zoo://m@^1.0/x86_64/a.txt", "rb", store=url) as f:
        assert f.read() == b"a 1.1.0\n"
    take_store_away(zoo, tmp_path)
    monkeypatch.setenv("ZOOSTORE_OFFLINE", "1")
    # The manifest as that read kept it, and the cached file: no store needed.
    with fsspec.open("zoo://m@^1.0/x86_64/a.txt", "rb", store=url) as f:
        assert f.read() == b"a 1.1.0\n"
    fs = fsspec.filesystem("zoo", store=url)
    assert fs.offline and fs.cat_file("m@1.1.0/x86_64/a.txt", start=2) == b"1.1.0\n"
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls("m@1.1.0/x86_64", detail=False)) == ["a.txt", "b.txt"]
    with pytest.raises(OfflineError, match=r"zoo://m@\^1.0/x86_64/b.txt is not in the cache"):
        fs.cat_file("m@^1.0/x86_64/b.txt")
    with pytest.raises(OfflineError, match="holds no manifest of other"):
        fs.cat_file("other@1.0.0/x86_64/a.txt")
    with pytest.raises(OfflineError, match="needs the store"):
        fs.ls("")


def test_offline_errors_name_both_switches(zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline errors advised only one way out: with $ZOOSTORE_OFFLINE=1 set, 'run once without
    --offline' (there was no --offline to drop); with --offline, 'unset $ZOOSTORE_OFFLINE' (it was
    not set). Each message now names both switches."""
    url = zoo.url
    zoostore.fetch("m", "^1.0", "a.txt", arch="x86_64", store=url)
    monkeypatch.setenv("ZOOSTORE_OFFLINE", "1")
    with pytest.raises(OfflineError) as exc:
        zoostore.fetch("m", "^1.0", "b.txt", arch="x86_64", store=url)
    assert "--offline" in str(exc.value) and "$ZOOSTORE_OFFLINE unset" in str(exc.value)
    monkeypatch.delenv("ZOOSTORE_OFFLINE")
    for call in (lambda: zoostore.fetch_version("m", "^1.0", arch="x86_64", store=url, offline=True),
                 lambda: zoostore.fetch("other", "^1.0", "a.txt", arch="x86_64", store=url, offline=True)):
        with pytest.raises(OfflineError) as exc:
            call()
        assert "without --offline" in str(exc.value) and "$ZOOSTORE_OFFLINE unset" in str(exc.value)


def test_zoo_url_offline_errors_name_both_switches(zoo: Store) -> None:
    """fsspec.filesystem('zoo', offline=True) said 'read it once online, or unset
    $ZOOSTORE_OFFLINE', which was not set: the way out is offline=False too."""
    import fsspec

    fs = fsspec.filesystem("zoo", store=zoo.url, offline=True, skip_instance_cache=True)
    for call in (lambda: fs.ls(""), lambda: fs.cat_file("m@1.0.0/x86_64/a.txt")):
        with pytest.raises(OfflineError) as exc:
            call()
        assert "offline=False" in str(exc.value) and "$ZOOSTORE_OFFLINE unset" in str(exc.value), exc.value


def test_zoo_url_offline_never_reads_a_store_given_as_an_object(zoo: Store) -> None:
    """offline=True with an opened Store object (not a URL) read uncached files from it anyway."""
    from zoostore.zoofs import ZooFileSystem

    fs = ZooFileSystem(store=zoo, offline=True, cache=False, skip_instance_cache=True)
    with pytest.raises(OfflineError, match="offline=False"):
        fs.cat_file("m@1.0.0/x86_64/a.txt")
