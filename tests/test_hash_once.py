"""Publishing hashes each file once (the plan's hash is reused by the writer), and a file that
changes between its hash and its chunking is refused instead of getting a wrong recipe."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers_store import count_hashes

from zoostore.core.digest import hash_file
from zoostore.core.errors import UsageError
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.publish import plan_publish
from zoostore.repository import Store, init_store
from zoostore.storage.writer import FileStamp, Hashed

CONFIG = StoreConfig(pack_target_size=256 * 1024)


@pytest.fixture
def zoo(tmp_path: Path) -> Store:
    store, _ = init_store(tmp_path / "store", config=CONFIG)
    return store


def weights_file(path: Path, seed: int, n: int = 200_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.random.default_rng(seed).normal(0, 0.05, n).astype(np.float32).tofile(path)
    return path


def test_publish_hashes_each_file_once(zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    for i in range(3):
        weights_file(src / f"w{i}.bin", i)
    calls = count_hashes(monkeypatch)
    plan = plan_publish(zoo, "net", "1.0.0", [src])
    results = plan.upload()
    assert calls == Counter({"w0.bin": 1, "w1.bin": 1, "w2.bin": 1})
    assert [r.blob for r in results] == [hash_file(src / f"w{i}.bin") for i in range(3)]
    assert all(r.new for r in results)


def test_put_files_without_ids_hashes_each_file_once(zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = weights_file(tmp_path / "w.bin", 0)
    calls = count_hashes(monkeypatch)
    (r,) = zoo.blobs.put_files([f])
    assert calls == Counter({"w.bin": 1}) and r.blob == hash_file(f)


@pytest.mark.parametrize("how", ["appended", "rewritten in place", "replaced"])
def test_a_file_that_changed_after_it_was_hashed_is_refused(zoo: Store, tmp_path: Path, how: str) -> None:
    f = weights_file(tmp_path / "w.bin", 0)
    hashed = Hashed(hash_file(f), FileStamp.of(f))
    st = f.stat()
    if how == "appended":
        with open(f, "ab") as out:
            out.write(b"x" * 100)
    elif how == "rewritten in place":  # same size; only the mtime tells
        with open(f, "r+b") as out:
            out.write(b"\xff" * 100)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    else:  # a new file renamed over the old one (a new inode), same size and mtime
        tmp = weights_file(tmp_path / "new.bin", 1)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        tmp.replace(f)
    with pytest.raises(UsageError, match="changed while it was being stored"):
        zoo.blobs.put_files([f], hashed=[hashed])
    assert not zoo.blobs.has_blob(hashed.blob)
    assert not list(zoo.backend.list("blobs/"))


def test_a_plan_whose_file_changed_before_upload_uploads_nothing(zoo: Store, tmp_path: Path) -> None:
    f = weights_file(tmp_path / "src" / "w.bin", 0)
    plan = plan_publish(zoo, "net", "1.0.0", [tmp_path / "src"])
    with open(f, "ab") as out:
        out.write(b"more")
    with pytest.raises(UsageError, match="changed while it was being stored"):
        plan.execute()
    assert not list(zoo.backend.list("blobs/"))
    assert "net" not in zoo.models()


def test_an_unchanged_file_the_store_holds_is_not_read_again(zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = weights_file(tmp_path / "w.bin", 0)
    (first,) = zoo.blobs.put_files([f])
    calls = count_hashes(monkeypatch)
    (again,) = zoo.blobs.put_files([f], hashed=[Hashed(first.blob, FileStamp.of(f))])
    assert not again.new and not calls
