"""The manifest's and the lock's sizes are checked against the bytes: absurd sizes are refused
when read, and a size that disagrees with the blob is an integrity error in zoo:// and sync."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from helpers_store import published_store

from zoostore.core.errors import FormatError, IntegrityError
from zoostore.documents.manifest import MAX_FILE_SIZE, Manifest
from zoostore.documents.project import load_project
from zoostore.ops.sync import sync_project

MANIFEST = '''format = 1
model = "m"
[versions."1.0.0"]
published = 2026-01-01T00:00:00Z
[versions."1.0.0".files.any]
"a.bin" = {{ blob = "blake3:{blob}", size = {size} }}
'''


@pytest.mark.parametrize("size", ["true", "-1", str(MAX_FILE_SIZE + 1), "1.5", '"12"'])
def test_absurd_sizes_are_refused(size: str) -> None:
    with pytest.raises(FormatError, match=r'm.toml: versions."1.0.0".files.any."a.bin"'):
        Manifest.parse(MANIFEST.format(blob="0" * 64, size=size), where="m.toml")


@pytest.fixture
def lying(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store whose manifest says a.bin is 10 bytes shorter than its blob."""
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    published_store(tmp_path, {"a.bin": b"x" * 1000})
    path = tmp_path / "store" / "manifests" / "m.toml"
    path.write_text(path.read_text().replace("size = 1000", "size = 990"))
    return tmp_path


def test_zoo_url_refuses_a_size_that_disagrees(lying: Path) -> None:
    fs = fsspec.filesystem("zoo", store=str(lying / "store"), cache=False, skip_instance_cache=True)
    with pytest.raises(IntegrityError, match="the manifest says 990 bytes but blob .* holds 1000"):
        fs.cat_file("m@1.0.0/x86_64/a.bin")


def test_sync_refuses_a_size_that_disagrees(lying: Path) -> None:
    project = lying / "project"
    project.mkdir()
    (project / "zoo.toml").write_text('store = "../store"\narchs = ["x86_64"]\n[models]\nm = "1.0.0"\n')
    with pytest.raises(IntegrityError, match="zoo.lock says 990 bytes but blob .* holds 1000"):
        sync_project(load_project(project))
    assert not (project / "models" / "m" / "x86_64" / "a.bin").exists()
