"""An architecture published deliberately with --new-arch can be named in zoo.toml, deliberately
too (`new_archs`), and locks and syncs like any other."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoostore.cli import main
from zoostore.core.errors import ConfigError
from zoostore.documents.project import load_project
from zoostore.ops.publish import publish
from zoostore.ops.sync import sync_project
from zoostore.repository import Store, init_store


def _store_with_sparc64(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A store holding net@1.0.0 for sparc64 only (published with --new-arch)."""
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    zoo, _ = init_store(tmp_path / "store")
    assert isinstance(zoo, Store)
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"sp64" * 1000)
    publish(zoo, "net", "1.0.0", [src], arch="sparc64", new_arch=True, check=False)
    return zoo


def test_new_arch_in_zoo_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = _store_with_sparc64(tmp_path, monkeypatch)
    project = tmp_path / "project"
    project.mkdir()
    (project / "zoo.toml").write_text('store = "../store"\narchs = ["sparc64"]\n[models]\nnet = "^1"\n')
    with pytest.raises(ConfigError, match=r"unknown architecture 'sparc64'.*new_archs"):
        load_project(project)
    (project / "zoo.toml").write_text(
        'store = "../store"\narchs = ["sparc64"]\nnew_archs = ["sparc64"]\n[models]\nnet = "^1"\n')
    report = sync_project(load_project(project))
    assert report.placed == ["net/sparc64/weights.bin"]
    assert main(["sync", "--project", str(project), "--arch", "sparc64", "-q"]) == 0
    (project / "zoo.toml").write_text('store = "../store"\nnew_archs = ["not an arch!"]\n[models]\n')
    with pytest.raises(ConfigError, match="new_archs"):
        load_project(project)


def test_new_arch_files_read_through_zoo_urls_and_sync_arch_hint(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """zoo://net@1.0.0/sparc64/weights.bin was refused ('unknown architecture ...; add
    --new-arch'), though the store holds that arch deliberately; and `sync --arch sparc` told a
    consumer to 'add --new-arch', an option of publish only."""
    import fsspec

    from zoostore.core.errors import NotFoundError, UsageError

    zoo = _store_with_sparc64(tmp_path, monkeypatch)
    with fsspec.open("zoo://net@1.0.0/sparc64/weights.bin", "rb", store=zoo.url) as f:
        assert f.read() == b"sp64" * 1000
    with pytest.raises(NotFoundError):
        fsspec.open("zoo://net@1.0.0/mips99/weights.bin", "rb", store=zoo.url).open()
    project = tmp_path / "project"
    project.mkdir()
    (project / "zoo.toml").write_text(
        'store = "../store"\narchs = ["sparc64"]\nnew_archs = ["sparc64"]\n[models]\nnet = "^1"\n')
    with pytest.raises(UsageError) as exc:
        sync_project(load_project(project), archs=["sparc"])
    assert "add --new-arch" not in str(exc.value) and "new_archs" in str(exc.value), exc.value
