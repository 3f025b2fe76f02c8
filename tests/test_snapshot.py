"""`zoostore.fetch` returns the file under its own name in a per-version snapshot directory
(hard links to the verified cache), so TVM libraries and ONNX external data load from it;
`fetch_version` and `zoostore get` fetch a whole version; `cache prune` takes the links along."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import zoostore
import zoostore.storage.cache
from zoostore.cli import main as cli
from zoostore.core.digest import Digest, hash_file
from zoostore.core.errors import DestinationConflictError, OfflineError, UsageError
from zoostore.ops.fetch import copy_snapshot, needs_own_inode, snapshot_version
from zoostore.ops.publish import publish
from zoostore.repository import Store, init_store
from zoostore.storage.cache import UNSTAMPED, Cache

LIB = b"\x7fELF" + bytes(range(256)) * 400


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOOSTORE_OFFLINE", raising=False)
    monkeypatch.delenv("ZOOSTORE_STORE", raising=False)
    store, _ = init_store(tmp_path / "store")
    common = tmp_path / "common"
    (common / "labels").mkdir(parents=True)
    (common / "labels" / "coco.txt").write_text("cat\ndog\n")
    (common / "README.md").write_text("a model\n")
    publish(store, "net", "1.0.0", [common], arch="any", check=False)
    for arch in ("x86_64", "aarch64"):
        lib = tmp_path / arch
        lib.mkdir()
        (lib / "deploy_lib.so").write_bytes(LIB + arch.encode())
        (lib / "deploy_io.json").write_text(f'{{"arch": "{arch}"}}\n')
        publish(store, "net", "1.0.0", [lib], arch=arch, check=False)
    return store


def blob_of(zoo: Store, path: str, arch: str = "x86_64") -> Digest:
    return zoo.resolve("net", "1.0.0", arch=arch).files[path].blob


def test_a_library_keeps_its_name_as_a_hard_link_to_the_cache(zoo: Store) -> None:
    path = zoostore.fetch("net", "1.0.0", "deploy_lib.so", arch="x86_64", store=zoo.url)
    assert path.name == "deploy_lib.so" and path.read_bytes() == LIB + b"x86_64"
    assert path.parent.name == "x86_64" and path.parent.parent.name == "1.0.0"
    assert path.parent.parent.parent.name == "net"
    assert path.is_relative_to(Cache().root / "snapshots")
    assert path.samefile(Cache().blob_path(blob_of(zoo, "deploy_lib.so")))
    assert not os.access(path, os.W_OK) or os.geteuid() == 0
    # Fetched again: the same path, the same inode (nothing re-linked); an arch alias is the arch.
    assert zoostore.fetch("net@1.0.0", path="deploy_lib.so", arch="amd64", store=zoo.url) == path
    # A nested `any` file of the same version joins the same directory.
    labels = zoostore.fetch("net", "1.0.0", "labels/coco.txt", arch="x86_64", store=zoo.url)
    assert labels == path.parent / "labels" / "coco.txt"
    assert sorted(os.listdir(path.parent)) == ["deploy_lib.so", "labels"]


def test_fetched_onnx_model_loads_with_its_external_data(tmp_path: Path, zoo: Store) -> None:
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), name="W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    src = tmp_path / "onnx"
    src.mkdir()
    onnx.save_model(model, src / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    assert (src / "model.onnx.data").stat().st_size == 4096 * 4
    publish(zoo, "mlp", "2.0.0", [src], arch="any", check=False)

    path = zoostore.fetch("mlp", "^2", "model.onnx", arch="x86_64", store=zoo.url)
    assert path.name == "model.onnx"
    zoostore.fetch("mlp", "^2", "model.onnx.data", arch="x86_64", store=zoo.url)
    loaded = onnx.load(str(path))   # reads model.onnx.data from beside it
    assert np.array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), numpy_helper.to_array(weights))
    # onnx refuses external data with several hard links ("hardlink attack"), so the data file
    # is a copy of its own; the model file is a link to the cache.
    data = path.parent / "model.onnx.data"
    assert data.stat().st_nlink == 1 and path.stat().st_nlink == 2
    inode = data.stat().st_ino
    assert zoostore.fetch("mlp", "^2", "model.onnx.data", arch="x86_64", store=zoo.url) == data
    assert data.stat().st_ino == inode   # a good copy is kept, not made again
    os.chmod(data, 0o644)
    with open(data, "r+b") as f:         # a damaged copy is made again
        f.write(b"\1")
    zoostore.fetch("mlp", "^2", "model.onnx.data", arch="x86_64", store=zoo.url)
    assert data.stat().st_ino != inode and onnx.load(str(path)).graph.initializer[0].dims == [64, 64]
    # The whole version at once, without naming the data file.
    folder = zoostore.fetch_version("mlp@2.0.0", arch="aarch64", store=zoo.url)
    onnx.checker.check_model(str(folder / "model.onnx"), full_check=True)
    assert onnx.load(str(folder / "model.onnx")).graph.initializer[0].dims == [64, 64]


def test_only_possible_onnx_external_data_is_copied() -> None:
    files = ["model.onnx", "model.onnx.data", "deploy_lib.so", "sub/x.bin"]
    assert [needs_own_inode(p, files) for p in files] == [False, True, True, True]
    files = ["onnx/model.onnx", "onnx/weights/w.bin", "onnx.bin", "x86_64/deploy_lib.so"]
    assert [needs_own_inode(p, files) for p in files] == [False, True, False, False]
    assert not needs_own_inode("deploy_lib.so", ["deploy_lib.so", "deploy_io.json"])


def test_fetch_version_returns_the_directory_with_every_file_of_the_arch(zoo: Store) -> None:
    folder = zoostore.fetch_version("net", "^1.0", arch="aarch64", store=zoo.url)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["README.md", "deploy_io.json", "deploy_lib.so", "labels/coco.txt"]
    assert (folder / "deploy_lib.so").read_bytes() == LIB + b"aarch64"
    assert folder.name == "aarch64"
    # The other arch is its own directory; fetch of one of its files returns a path inside it.
    other = zoostore.fetch("net", "1.0.0", "deploy_lib.so", arch="x86_64", store=zoo.url)
    assert other.parent == folder.parent / "x86_64" and other.read_bytes() == LIB + b"x86_64"
    snap = snapshot_version("net", arch="x86_64", store=zoo.url)
    assert snap.version == "1.0.0" and snap.directory == other.parent and len(snap.files) == 4


def test_fetching_verifies_each_file_once_then_trusts_the_stamp(zoo: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    zoostore.fetch_version("net", arch="x86_64", store=zoo.url)
    calls: list[Path] = []

    def counting(path: str | os.PathLike[str]) -> Digest:
        calls.append(Path(path))
        return hash_file(path)

    monkeypatch.setattr(zoostore.storage.cache, "hash_file", counting)
    zoostore.fetch_version("net", arch="x86_64", store=zoo.url)
    zoostore.fetch_version("net", arch="aarch64", store=zoo.url)   # links `any` files again
    # the links changed only ctime: stamps were refreshed, the libraries not re-hashed; files up
    # to UNSTAMPED bytes carry no stamp and are hashed at each check instead
    assert calls and all(p.stat().st_size <= UNSTAMPED for p in calls)
    assert Cache().blob_path(blob_of(zoo, "deploy_lib.so")).stat().st_size > UNSTAMPED
    assert Cache().stamp_holds(blob_of(zoo, "deploy_lib.so")) and Cache().stamp_holds(blob_of(zoo, "deploy_lib.so", "aarch64"))


def test_a_damaged_cached_file_is_fetched_again_and_relinked(zoo: Store) -> None:
    path = zoostore.fetch("net", "1.0.0", "deploy_lib.so", arch="x86_64", store=zoo.url)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:   # the snapshot is the cache's inode: this damages the cache
        f.write(b"\0")
    with pytest.warns(UserWarning, match="no longer hashes to"):
        again = zoostore.fetch("net", "1.0.0", "deploy_lib.so", arch="x86_64", store=zoo.url)
    assert again == path and again.read_bytes() == LIB + b"x86_64"
    assert again.samefile(Cache().blob_path(blob_of(zoo, "deploy_lib.so")))


def test_offline_works_from_a_warm_cache(zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    url = zoo.url
    online = zoostore.fetch_version("net", "^1", arch="x86_64", store=url)
    lib = zoostore.fetch("net", "^1", "deploy_lib.so", arch="aarch64", store=url)
    (tmp_path / "store").rename(tmp_path / "store-gone")
    assert zoostore.fetch_version("net", "^1", arch="x86_64", store=url, offline=True) == online
    monkeypatch.setenv("ZOOSTORE_OFFLINE", "1")
    assert zoostore.fetch("net", "1.0.0", "deploy_lib.so", arch="aarch64", store=url) == lib
    # aarch64's deploy_io.json was never fetched (its `any` files were, for x86_64).
    with pytest.raises(OfflineError, match=r"net@1.0.0 \(aarch64\) has 1 file\(s\) not in the cache.*: deploy_io.json"):
        zoostore.fetch_version("net", "^1", arch="aarch64", store=url)
    monkeypatch.delenv("ZOOSTORE_OFFLINE")
    capsys.readouterr()
    assert cli(["get", "net@^1", "--store", url, "--arch", "x86_64", "--offline"]) == 0
    assert capsys.readouterr().out.strip() == str(online)
    assert cli(["get", "net@^1", "--store", url, "--arch", "aarch64", "--offline", "-q"]) == 9


def test_get_prints_the_directory_or_copies_to_dest(zoo: Store, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["get", "net@1.0.0", "--store", zoo.url, "--arch", "x86_64"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "deploy_lib.so").read_bytes() == LIB + b"x86_64" and (folder / "labels/coco.txt").is_file()

    dest = tmp_path / "out"
    assert cli(["get", "net", str(dest), "--store", zoo.url, "--arch", "aarch64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == "1.0.0" and doc["arch"] == "aarch64" and doc["dest"] == str(dest)
    assert sorted(doc["copied"]) == ["README.md", "deploy_io.json", "deploy_lib.so", "labels/coco.txt"]
    assert [f["path"] for f in doc["files"]] == sorted(doc["copied"])
    assert (dest / "deploy_lib.so").read_bytes() == LIB + b"aarch64"
    assert (dest / "deploy_lib.so").stat().st_ino != (Path(doc["path"]) / "deploy_lib.so").stat().st_ino
    # Again: identical files are left as they are.
    assert cli(["get", "net", str(dest), "--store", zoo.url, "--arch", "aarch64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["copied"] == []
    # A different file at a wanted path is left alone (exit 7) unless --force.
    os.chmod(dest / "README.md", 0o644)
    (dest / "README.md").write_text("mine\n")
    assert cli(["get", "net", str(dest), "--store", zoo.url, "--arch", "aarch64"]) == 7
    assert "README.md" in capsys.readouterr().err and (dest / "README.md").read_text() == "mine\n"
    assert cli(["get", "net", str(dest), "--store", zoo.url, "--arch", "aarch64", "--force", "-q"]) == 0
    assert (dest / "README.md").read_text() == "a model\n"
    with pytest.raises(DestinationConflictError):
        copy_snapshot(snapshot_version("net", arch="x86_64", store=zoo.url), dest)
    # Errors: an unknown version is exit 6 with the versions that exist.
    assert cli(["get", "net@9", "--store", zoo.url]) == 6
    assert "1.0.0" in capsys.readouterr().err


def test_cache_prune_removes_the_snapshot_links_of_the_blobs_it_removes(zoo: Store, tmp_path: Path) -> None:
    folder = zoostore.fetch_version("net", arch="x86_64", store=zoo.url)
    keep = blob_of(zoo, "deploy_lib.so")
    stray = folder / "notes.txt"          # not a link to a cached blob (a copy, a leftover)
    stray.write_text("x")
    removed, _ = Cache().prune({keep})
    assert removed == 3
    assert sorted(p.name for p in folder.rglob("*")) == ["deploy_lib.so"]
    assert cli(["cache", "prune", "--all"]) == 0
    assert not (Cache().root / "snapshots").exists() or not any((Cache().root / "snapshots").rglob("*"))
    # Fetching again brings everything back.
    assert zoostore.fetch_version("net", arch="x86_64", store=zoo.url) == folder
    assert (folder / "README.md").read_text() == "a model\n"


def test_get_with_the_store_first_or_no_store_says_how_to_name_it(zoo: Store, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ZOOSTORE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)   # no zoo.toml here or above
    store_dir = zoo.url.removeprefix("file://")
    # `publish` and `ls` take the store first; get would read it as MODEL and the model as DEST
    for store in (store_dir, "s3://bucket/zoo"):
        assert cli(["get", store, "net@1.0.0"]) == 2
        err = capsys.readouterr().err
        assert f"{store!r} is a store, not MODEL@SPEC" in err and f"zoostore get --store {store} net@1.0.0" in err
    assert not (tmp_path / "net@1.0.0").exists()
    assert cli(["get", "net@1.0.0"]) == 2
    err = capsys.readouterr().err
    assert "no store given: name one with --store URL" in err and "ZOOSTORE_STORE" in err and "Traceback" not in err
    assert cli(["get", "net@1.0.0", "--store", store_dir, "--arch", "x86_64", "-q"]) == 0


def test_get_refuses_an_arch_that_is_neither_known_nor_published(zoo: Store, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # `--arch x86` (a typo) used to get the version's `any` files alone: no deploy_lib.so, exit 0.
    assert cli(["get", "net@1.0.0", "--store", zoo.url, "--arch", "x86"]) == 2
    err = capsys.readouterr().err
    assert "unknown architecture 'x86': expected one of x86_64" in err
    assert "net@1.0.0 has files for aarch64, x86_64 (and 'any')" in err
    with pytest.raises(UsageError, match="unknown architecture 'x86'"):
        snapshot_version("net", arch="x86", store=zoo.url)
    # An alias, and an unusual arch the version was published for, are taken.
    assert cli(["get", "net@1.0.0", "--store", zoo.url, "--arch", "amd64", "-q"]) == 0
    assert capsys.readouterr().out.strip().endswith("/x86_64")
    lib = tmp_path / "rv"
    lib.mkdir()
    (lib / "deploy_lib.so").write_bytes(LIB + b"weird")
    publish(zoo, "net", "1.0.0", [lib], arch="weirdarch", new_arch=True, check=False)
    assert cli(["get", "net@1.0.0", "--store", zoo.url, "--arch", "weirdarch", "-q"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "deploy_lib.so").read_bytes() == LIB + b"weird"
