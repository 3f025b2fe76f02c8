"""The yank warning whenever sync places a pin that was yanked after zoo.lock was written,
even when every byte comes from a warm cache (the store is read for its manifests only)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from zoostore.cli import main as cli
from zoostore.documents.project import load_project
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.publish import publish
from zoostore.ops.sync import sync_project
from zoostore.ops.tags import yank
from zoostore.repository import init_store


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    zoo, _ = init_store(tmp_path / "store", config=StoreConfig(pack_target_size=256 * 1024))
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(bytes(range(256)) * 64)
    publish(zoo, "net", "1.0.0", [src], arch="x86_64", check=False)
    project = tmp_path / "project"
    project.mkdir()
    (project / "zoo.toml").write_text('store = "../store"\narchs = ["x86_64"]\n[models]\nnet = "^1.0"\n')
    first = sync_project(load_project(project))
    assert first.store_opened and not first.warnings
    yank(zoo, "net", "1.0.0", "wrong labels")
    return project


def test_a_warm_cache_sync_still_warns_about_a_yanked_pin(project: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    r = sync_project(load_project(project), dest=tmp_path / "elsewhere")
    assert len(r.placed) == 1 and r.bytes_downloaded == 0 and not r.store_opened
    assert any("net@1.0.0" in w and "yanked: wrong labels" in w for w in r.warnings), r.warnings
    assert cli(["sync", "--dest", str(tmp_path / "third"), "--project", str(project)]) == 0
    assert "net@1.0.0, which is yanked: wrong labels" in capsys.readouterr().err


def test_an_unreachable_store_only_costs_the_yank_check(project: Path, tmp_path: Path) -> None:
    shutil.move(tmp_path / "store", tmp_path / "moved")
    r = sync_project(load_project(project), dest=tmp_path / "elsewhere")
    assert len(r.placed) == 1 and (tmp_path / "elsewhere" / "net" / "x86_64" / "weights.bin").exists()
    assert any("could not check zoo.lock's pins for yanked versions" in w for w in r.warnings), r.warnings


def test_offline_and_no_op_syncs_do_not_read_the_store(project: Path, tmp_path: Path) -> None:
    shutil.move(tmp_path / "store", tmp_path / "moved")
    assert sync_project(load_project(project)).warnings == []  # nothing to place: the store is not read
    r = sync_project(load_project(project), dest=tmp_path / "elsewhere", offline=True)
    assert len(r.placed) == 1 and r.warnings == []


def test_the_yank_check_parses_only_manifests_that_yank_something(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from zoostore.documents import manifest as manifest_mod

    zoo, _ = init_store(tmp_path / "store")
    plain, odd = tmp_path / "plain", tmp_path / "odd"
    plain.mkdir()
    odd.mkdir()
    (plain / "weights.bin").write_bytes(b"weights")
    (odd / "yanked.txt").write_bytes(b"a file whose name mentions it")
    for model, src in (("a", plain), ("b", plain), ("c", odd)):
        publish(zoo, model, "1.0.0", [src], arch="x86_64", check=False)
        publish(zoo, model, "1.1.0", [src], arch="x86_64", check=False)
    yank(zoo, "b", "1.0.0", "wrong labels")
    parsed: list[str] = []
    real = manifest_mod.Manifest.parse

    def counting(text: str, **kwargs: object) -> manifest_mod.Manifest:
        parsed.append(str(kwargs.get("where", "")).rsplit("/", 1)[-1])
        return real(text, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(manifest_mod.Manifest, "parse", staticmethod(counting))
    assert zoo.pin_status("a", "1.0.0") is None and zoo.pin_status("a", "1.1.0") is None
    assert zoo.pin_status("b", "1.0.0") == ("yanked", "wrong labels") and zoo.pin_status("b", "1.1.0") is None
    assert zoo.pin_status("c", "1.0.0") is None and zoo.pin_status("gone", "1.0.0") == ("missing", "")
    # a only says `yanked = ""`: never parsed. b yanks: parsed. c names a file "yanked.txt": that
    # line is not an empty yank, so it is parsed too (the pre-check only ever skips a parse).
    assert parsed == ["b.toml", "b.toml", "c.toml"]


def test_a_store_answering_503_costs_a_cached_sync_a_few_quick_attempts(
        http_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every file is cached, so only the yank check needs the store: a store that is down then
    # costs YANK_CHECK_ATTEMPTS requests and a warning, not the 10 attempts (~16 s) of a download.
    from zoostore.ops.sync import YANK_CHECK_ATTEMPTS
    from zoostore.testing.faultproxy import FaultProxy, Faults

    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOOSTORE_MAX_ATTEMPTS", raising=False)
    zoo, _ = init_store(http_store.root)
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(bytes(range(256)) * 64)
    publish(zoo, "net", "1.0.0", [src], arch="x86_64", check=False)
    with FaultProxy(http_store.url.rsplit("/", 1)[0]) as proxy:
        project = tmp_path / "project"
        project.mkdir()
        (project / "zoo.toml").write_text(f'store = "{proxy.url}/zoo"\narchs = ["x86_64"]\n[models]\nnet = "^1.0"\n')
        assert sync_project(load_project(project)).store_opened
        proxy.faults = Faults(status_5xx=1.0, status_codes=(503,), seed=1)
        before = proxy.stats.requests
        r = sync_project(load_project(project), dest=tmp_path / "elsewhere")
        assert proxy.stats.requests - before == YANK_CHECK_ATTEMPTS
    assert len(r.placed) == 1 and any("could not check zoo.lock's pins" in w for w in r.warnings), r.warnings


def test_a_pin_the_store_does_not_list_is_warned_about(project: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # A hand-edited zoo.lock (or a version gc dropped while its blobs stay, shared with another)
    # used to sync --locked without a word.
    lock = project / "zoo.lock"
    lock.write_text(lock.read_text().replace('version = "1.0.0"', 'version = "1.0.7"'))
    assert cli(["sync", "--locked", "--dest", str(tmp_path / "fresh"), "--project", str(project)]) == 0
    err = capsys.readouterr().err
    assert ("zoo.lock pins net@1.0.7, which the store does not list (its versions: 1.0.0; gc dropped it, or "
            "zoo.lock was edited)") in err and "run 'zoostore lock'" in err
    assert (tmp_path / "fresh" / "net" / "x86_64" / "weights.bin").read_bytes() == bytes(range(256)) * 64
    lock.write_text(lock.read_text().replace('"net"', '"gone"').replace("[models.net]", "[models.gone]"))
    toml = project / "zoo.toml"
    toml.write_text(toml.read_text().replace("net =", "gone ="))
    r = sync_project(load_project(project), dest=tmp_path / "again", locked=True)
    assert any("gone@1.0.7, which the store does not list (the model is not in it" in w for w in r.warnings), r.warnings
