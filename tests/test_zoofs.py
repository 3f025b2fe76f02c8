"""`zoo://` behaviour: URL grammar, store discovery, errors, read-only, ranged and cached reads,
instance isolation, and the code paths pandas-style readers take. fsspec's own conformance
suite runs in test_zoofs_conformance.py."""

from __future__ import annotations

import csv
import io
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest

import zoostore

from zoostore.core.digest import Digest
from zoostore.core.errors import IntegrityError, NotFoundError, ReadOnlyError, UsageError
from zoostore.ops.publish import publish
from zoostore.repository import init_store, open_store
from zoostore.repository import Store
from zoostore.zoofs import STORE_ENV, ZooFile, ZooFileSystem, find_store_url

BIG = 6 * 1024 * 1024
CSV = "id,label\n1,car\n2,pedestrian\n3,cyclist\n"


def _random(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _init(url: str | Path) -> Store:
    zoo, _ = init_store(url)
    assert isinstance(zoo, Store)  # init_store is typed as returning the base Store
    return zoo


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


class World:
    """A tmp store with a small zoo, and a factory for filesystems on it. Built once per
    module (`template`), then copied for each test, which may publish into its copy."""

    def __init__(self, tmp_path: Path, template: World | None = None) -> None:
        self.tmp = tmp_path
        self.url = str(tmp_path / "store")
        self.cache = tmp_path / "cache"
        self.big = _random(BIG, 1)
        self.weights = np.arange(1000, dtype=np.float32).reshape(10, 100)
        if template is not None:
            shutil.copytree(template.tmp / "store", tmp_path / "store")
            shutil.copytree(template.tmp / "src", tmp_path / "src")
            zoo = open_store(self.url)
            assert isinstance(zoo, Store)
            self.zoo = zoo
            return
        self.zoo = _init(self.url)
        npy = io.BytesIO()
        np.save(npy, self.weights)
        any_files = {"model.onnx": b"onnx-bytes-1", "labels.csv": CSV.encode(),
                     "weights.npy": npy.getvalue(), "sub/dir/deep.txt": b"deep"}
        self.publish("yolo", "1.0.0", {"model.onnx": b"onnx-bytes-0"})
        self.publish("yolo", "1.2.0", any_files)
        self.publish("yolo", "1.2.0", {"deploy_lib.so": self.big, "deploy_graph.json": b"{}"}, arch="x86_64")
        self.publish("yolo", "1.3.0-dev.1", {"model.onnx": b"onnx-bytes-dev"}, tags=["bleedingedge"])
        self.publish("yolo", "2.0.0", {"deploy_lib.so": b"aarch64-only"}, arch="aarch64")
        self.publish("centerpoint", "0.1.0", {"a.bin": b"a", "b.bin": b"bb"})

    def publish(self, model: str, version: str, files: dict[str, bytes], *, arch: str = "any",
                tags: tuple[str, ...] | list[str] = ()) -> None:
        src = _write(self.tmp / "src" / f"{model}-{version}-{arch}", files)
        publish(self.zoo, model, version, [src], arch=arch, tags=list(tags), check=False)

    def fs(self, **options: Any) -> ZooFileSystem:
        options.setdefault("cache", str(self.cache))
        return ZooFileSystem(store=self.url, skip_instance_cache=True, **options)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("zoofs-template"))


@pytest.fixture
def world(tmp_path: Path, template: World) -> World:
    return World(tmp_path, template)


@pytest.fixture
def fs(world: World) -> ZooFileSystem:
    return world.fs()


# -- registration --------------------------------------------------------------------------------


def test_entry_point_registers_protocol_without_import(world: World) -> None:
    # A fresh interpreter that never imports zoostore: fsspec finds `zoo` through the
    # `fsspec.specs` entry point of the installed distribution.
    code = (
        "import sys, fsspec\n"
        "assert 'zoostore' not in sys.modules\n"
        f"with fsspec.open('zoo://yolo@^1.2/x86_64/deploy_graph.json', 'rb', store={world.url!r}, "
        f"cache={str(world.cache)!r}) as f:\n"
        "    print(f.read().decode())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "{}"




def test_reading_through_zoo_urls_loads_no_heavy_library(world: World) -> None:
    # tests/test_quality.py checks `import zoostore.zoofs`; this is the whole consumer path:
    # opening the store, resolving, listing, globbing, whole, ranged and file-object reads.
    code = (
        "import sys, fsspec, zoostore\n"
        f"opts = dict(store={world.url!r}, cache={str(world.cache)!r})\n"
        "with fsspec.open('zoo://yolo@^1.2/x86_64/deploy_lib.so', 'rb', **opts) as f:\n"
        "    f.seek(1000); f.read(10); f.seek(0); f.read()\n"
        "fs = fsspec.filesystem('zoo', **opts)\n"
        "fs.ls('zoo://yolo'); fs.glob('zoo://yolo@*/x86_64/*'); fs.info('zoo://yolo@^1.2/any/model.onnx')\n"
        "fs.cat_file('zoo://yolo@^1.2/any/model.onnx'); fs.cat_file('zoo://yolo@^1.2/any/labels.csv', 3, 9)\n"
        "heavy = ('onnx', 'onnxruntime', 'tvm', 'tvm_ffi', 's3fs', 'botocore', 'aiobotocore', 'aiohttp')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_eight_threads_reading_one_file_each_get_its_bytes(world: World) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = "zoo://yolo@^1.2/x86_64/deploy_lib.so"
    for cache in (str(world.cache), False):
        fs = world.fs(cache=cache)

        def read(i: int) -> bool:
            s = (i * 700_001) % BIG
            with fs.open(path, "rb") as f:
                f.seek(s)
                ok = f.read(70_000) == world.big[s : s + 70_000]
            return ok and fs.cat_file(path, s, s + 5000) == world.big[s : s + 5000] and fs.cat_file(path) == world.big

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(read, range(16)))


# -- URL grammar and listings --------------------------------------------------------------------


def test_root_lists_models(fs: ZooFileSystem) -> None:
    assert fs.ls("zoo://", detail=False) == ["centerpoint", "yolo"]
    assert fs.info("") == {"name": "", "size": 0, "type": "directory"}


def test_model_lists_versions(fs: ZooFileSystem) -> None:
    assert fs.ls("yolo", detail=False) == ["yolo@1.0.0", "yolo@1.2.0", "yolo@1.3.0-dev.1", "yolo@2.0.0"]
    info = fs.info("zoo://yolo")
    assert info["type"] == "directory" and info["latest"] == "2.0.0"
    assert info["tags"] == {"bleedingedge": "1.3.0-dev.1"}
    dev = next(e for e in fs.ls("yolo") if e["version"] == "1.3.0-dev.1")
    assert dev["tags"] == ["bleedingedge"]


def test_version_lists_archs_and_arch_lists_files(fs: ZooFileSystem) -> None:
    assert fs.ls("yolo@1.2.0", detail=False) == ["yolo@1.2.0/any", "yolo@1.2.0/x86_64"]
    # An arch gets the architecture-independent files plus its own, nested by '/'.
    assert fs.ls("yolo@1.2.0/x86_64", detail=False) == [
        "yolo@1.2.0/x86_64/deploy_graph.json", "yolo@1.2.0/x86_64/deploy_lib.so",
        "yolo@1.2.0/x86_64/labels.csv", "yolo@1.2.0/x86_64/model.onnx",
        "yolo@1.2.0/x86_64/sub", "yolo@1.2.0/x86_64/weights.npy",
    ]
    assert fs.ls("yolo@1.2.0/any/sub", detail=False) == ["yolo@1.2.0/any/sub/dir"]
    assert fs.cat_file("zoo://yolo@1.2.0/any/sub/dir/deep.txt") == b"deep"
    assert fs.isdir("yolo@1.2.0/any/sub/dir") and not fs.isfile("yolo@1.2.0/any/sub/dir")


def test_info_gives_size_blob_and_type(world: World, fs: ZooFileSystem) -> None:
    info = fs.info("zoo://yolo@^1.2/x86_64/deploy_lib.so")
    assert info["type"] == "file"
    assert info["size"] == BIG
    assert info["blob"] == str(Digest.of(world.big))
    assert (info["model"], info["version"], info["arch"], info["path"]) == ("yolo", "1.2.0", "x86_64", "deploy_lib.so")
    assert info["name"] == "yolo@^1.2/x86_64/deploy_lib.so"  # names keep the spec as written
    assert fs.ukey("yolo@1.2.0/x86_64/deploy_lib.so") == info["blob"]
    assert fs.size("yolo@1.2.0/any/model.onnx") == len(b"onnx-bytes-1")
    assert fs.modified("yolo@1.2.0/any/model.onnx").tzinfo is not None


@pytest.mark.parametrize(("spec", "expected"), [
    ("1.0.0", b"onnx-bytes-0"),       # exact version
    ("^1.2", b"onnx-bytes-1"),        # range: prereleases excluded
    ("~1.0", b"onnx-bytes-0"),
    ("1.x", b"onnx-bytes-1"),
    (">=1.0.0 <1.2.0", b"onnx-bytes-0"),
    ("bleedingedge", b"onnx-bytes-dev"),  # tag
    ("1.3.0-dev.1", b"onnx-bytes-dev"),
])
def test_spec_takes_version_range_or_tag(fs: ZooFileSystem, spec: str, expected: bytes) -> None:
    assert fs.cat_file(f"zoo://yolo@{spec}/any/model.onnx") == expected


def test_model_alone_means_latest(world: World, fs: ZooFileSystem) -> None:
    world.publish("solo", "1.0.0", {"w.bin": b"one"})
    world.publish("solo", "1.1.0", {"w.bin": b"two"})
    world.publish("solo", "1.2.0-rc.1", {"w.bin": b"pre"})
    assert fs.cat_file("zoo://solo/any/w.bin") == b"two"
    assert fs.cat_file("zoo://solo@latest/any/w.bin") == b"two"
    assert fs.info("solo@latest")["version"] == "1.1.0"


def test_arch_picks_newest_version_with_files_for_it(fs: ZooFileSystem) -> None:
    # 2.0.0 exists only for aarch64, so x86_64 with `*` gets 1.2.0 and aarch64 gets 2.0.0.
    assert fs.info("yolo@*/x86_64/deploy_lib.so")["version"] == "1.2.0"
    assert fs.cat_file("yolo@*/aarch64/deploy_lib.so") == b"aarch64-only"
    assert fs.cat_file("yolo@^2/arm64/deploy_lib.so") == b"aarch64-only"  # arch aliases


def test_find_and_walk(fs: ZooFileSystem) -> None:
    assert fs.find("zoo://centerpoint") == ["centerpoint@0.1.0/any/a.bin", "centerpoint@0.1.0/any/b.bin"]
    assert fs.du("centerpoint@0.1.0/any") == 3
    assert fs.find("yolo@^1.2/any/sub") == ["yolo@^1.2/any/sub/dir/deep.txt"]
    dirs = [d for d, _, _ in fs.walk("yolo@1.2.0")]
    assert "yolo@1.2.0/any/sub/dir" in dirs


def test_globs_count_depth_by_slash_so_they_cross_versions(fs: ZooFileSystem) -> None:
    assert fs.glob("zoo://yolo@*") == ["yolo@1.0.0", "yolo@1.2.0", "yolo@1.3.0-dev.1", "yolo@2.0.0"]
    assert fs.glob("zoo://yolo@*/any/model.onnx") == [
        "yolo@1.0.0/any/model.onnx", "yolo@1.2.0/any/model.onnx", "yolo@1.3.0-dev.1/any/model.onnx"]
    assert fs.glob("zoo://*/aarch64/*.so") == ["yolo@2.0.0/aarch64/deploy_lib.so"]
    assert fs.find("", maxdepth=1, withdirs=True)[:2] == ["centerpoint", "centerpoint@0.1.0"]


# -- errors ----------------------------------------------------------------------------------------


def test_unknown_model_lists_models(fs: ZooFileSystem) -> None:
    with pytest.raises(NotFoundError, match=r"no model 'nope'.*models: centerpoint, yolo") as exc:
        fs.open("zoo://nope@1/any/x")
    assert isinstance(exc.value, FileNotFoundError)
    assert not fs.exists("zoo://nope")


def test_no_matching_version_lists_versions_and_tags(fs: ZooFileSystem) -> None:
    with pytest.raises(FileNotFoundError) as exc:
        fs.cat_file("zoo://yolo@^3/any/model.onnx")
    assert isinstance(exc.value, NotFoundError)
    assert "1.0.0, 1.2.0, 1.3.0-dev.1, 2.0.0" in str(exc.value)
    assert "bleedingedge=1.3.0-dev.1" in str(exc.value)
    with pytest.raises(NotFoundError, match="no tag or version 'stable'"):
        fs.info("yolo@stable")
    # A malformed range is not found either (a FileNotFoundError, as fsspec callers expect), and
    # says that it is not a range: it said only "no tag or version '^1.x.y'".
    with pytest.raises(NotFoundError, match=r"no tag or version '\^1\.x\.y', and it is not a version range "
                       r"\(such as \^1\.2.*versions: 1\.0\.0"):
        fs.open("zoo://yolo@^1.x.y/x86_64/deploy_lib.so")


def test_unknown_arch_lists_archs(world: World, fs: ZooFileSystem) -> None:
    world.publish("armonly", "1.0.0", {"lib.so": b"x"}, arch="aarch64")
    with pytest.raises(NotFoundError, match=r"has no files for x86_64 \(it has aarch64\)"):
        fs.ls("armonly@1.0.0/x86_64")


def test_a_file_missing_under_an_arch_the_version_lacks_says_check_the_arch(fs: ZooFileSystem) -> None:
    # yolo@1.2.0 has `any` files, so an arch it was not built for (or a typo) still lists them;
    # the error named only the file, as though the arch were right.
    for arch in ("x86_46", "riscv64"):
        with pytest.raises(NotFoundError) as exc:
            fs.open(f"zoo://yolo@1.2.0/{arch}/deploy_lib.so", "rb")
        assert (f"has no file or directory 'deploy_lib.so'; it has no files for {arch}, only "
                f"architecture-independent ones (its architectures: any, x86_64): check the arch") in str(exc.value)
    with pytest.raises(NotFoundError) as exc:
        fs.open("zoo://yolo@1.2.0/x86_64/nope.so", "rb")
    assert "check the arch" not in str(exc.value)


def test_a_file_missing_from_an_architecture_independent_version_does_not_blame_the_arch(fs: ZooFileSystem) -> None:
    # centerpoint@0.1.0 has only `any` files: every arch gets all of them, so a missing file is
    # a wrong name, not a wrong arch.
    with pytest.raises(NotFoundError) as exc:
        fs.open("zoo://centerpoint@0.1.0/x86_64/missing.bin", "rb")
    assert "has no file or directory 'missing.bin'; files: a.bin, b.bin" in str(exc.value)
    assert "check the arch" not in str(exc.value)


def test_missing_file_lists_files(fs: ZooFileSystem) -> None:
    with pytest.raises(NotFoundError, match=r"has no file or directory 'missing.bin'; files: a.bin, b.bin"):
        fs.open("zoo://centerpoint@0.1.0/any/missing.bin", "rb")
    assert not fs.exists("centerpoint@0.1.0/any/missing.bin")
    assert fs.exists("centerpoint@0.1.0/any/a.bin")


def test_directories_are_not_files(fs: ZooFileSystem) -> None:
    with pytest.raises(IsADirectoryError):
        fs.cat_file("yolo@1.2.0/any")
    with pytest.raises(IsADirectoryError):
        fs.open("yolo@1.2.0/any/sub")


def test_paths_cannot_leave_a_version(fs: ZooFileSystem) -> None:
    with pytest.raises(UsageError, match="leaves the version"):
        fs.info("yolo@1.2.0/any/../../etc/passwd")


# -- read-only -----------------------------------------------------------------------------------


@pytest.mark.parametrize("write", [
    lambda fs, tmp: fs.open("yolo@1.2.0/any/new.bin", "wb"),
    lambda fs, tmp: fs.open("yolo@1.2.0/any/model.onnx", "ab"),
    lambda fs, tmp: fs.open("yolo@1.2.0/any/model.onnx", "xb"),
    lambda fs, tmp: fs.open("yolo@1.2.0/any/new.txt", "w"),
    lambda fs, tmp: fs.pipe_file("yolo@1.2.0/any/new.bin", b"x"),
    lambda fs, tmp: fs.pipe({"yolo@1.2.0/any/new.bin": b"x"}),
    lambda fs, tmp: fs.touch("yolo@1.2.0/any/new.bin"),
    lambda fs, tmp: fs.mkdir("yolo@9.0.0"),
    lambda fs, tmp: fs.makedirs("yolo@9.0.0/any", exist_ok=True),
    lambda fs, tmp: fs.rm("yolo@1.2.0/any/model.onnx"),
    lambda fs, tmp: fs.rm_file("yolo@1.2.0/any/model.onnx"),
    lambda fs, tmp: fs.rmdir("yolo@1.2.0/any/sub"),
    lambda fs, tmp: fs.cp_file("yolo@1.2.0/any/model.onnx", "yolo@1.2.0/any/copy.onnx"),
    lambda fs, tmp: fs.copy("yolo@1.2.0/any", "yolo@9.0.0/any", recursive=True),
    lambda fs, tmp: fs.mv("yolo@1.2.0/any/model.onnx", "yolo@1.2.0/any/moved.onnx"),
    lambda fs, tmp: fs.put(str(tmp / "src"), "yolo@9.0.0/any", recursive=True),
    lambda fs, tmp: fs.put_file(str(tmp / "src" / "centerpoint-0.1.0-any" / "a.bin"), "yolo@9.0.0/any/a.bin"),
])
def test_every_write_is_refused(world: World, fs: ZooFileSystem, write: Callable[..., object]) -> None:
    with pytest.raises(PermissionError) as exc:
        write(fs, world.tmp)
    assert isinstance(exc.value, ReadOnlyError)
    assert "zoostore publish" in str(exc.value)
    assert fs.ls("yolo", detail=False)[-1] == "yolo@2.0.0"  # nothing changed


def test_fsspec_open_for_writing_is_refused(world: World) -> None:
    with pytest.raises(PermissionError, match="read-only"):
        with fsspec.open("zoo://yolo@1.2.0/any/new.bin", "wb", store=world.url, cache=str(world.cache)) as f:
            f.write(b"x")


# -- random access -------------------------------------------------------------------------------


def test_seek_and_read_fetches_only_covering_chunks(world: World, fs: ZooFileSystem) -> None:
    path = "zoo://yolo@^1.2/x86_64/deploy_lib.so"
    with fs.open(path, "rb") as f:
        assert isinstance(f, ZooFile)
        recipe = fs.zoo.blobs.recipe(f.entry.blob)
        stats = fs.zoo.blobs.stats
        biggest = max(c.length for c in recipe.chunks)
        for offset in (0, 1_234_567, BIG - 4096, 3 * 1024 * 1024 + 17):
            before_bytes, before_chunks = stats.bytes_fetched, stats.chunks_fetched
            f.seek(offset)
            assert f.read(4096) == world.big[offset : offset + 4096]
            assert stats.chunks_fetched - before_chunks <= 2
            assert stats.bytes_fetched - before_bytes <= 2 * biggest
    assert stats.bytes_fetched < BIG // 4
    assert not fs.cache or not fs.cache.has(Digest.of(world.big))  # partial reads do not fill the cache


def test_random_reads_are_verified(world: World, fs: ZooFileSystem) -> None:
    recipe = fs.zoo.blobs.recipe(Digest.of(world.big))
    ref = recipe.chunks[len(recipe.chunks) // 2]
    pack = Path(world.url) / "packs" / ref.pack.hex[:2] / ref.pack.hex
    os.chmod(pack, 0o644)
    data = bytearray(pack.read_bytes())
    data[ref.offset + ref.length - 1] ^= 0xFF  # the payload's last byte, in random (raw) data
    pack.write_bytes(bytes(data))
    fresh = world.fs(cache=False)
    start = recipe.starts[len(recipe.chunks) // 2]
    with fresh.open("yolo@1.2.0/x86_64/deploy_lib.so") as f:
        f.seek(start + 10)
        with pytest.raises(IntegrityError, match="corrupt"):
            f.read(100)
    with pytest.raises(IntegrityError):
        fresh.cat_file("yolo@1.2.0/x86_64/deploy_lib.so", start, start + 10)


def test_sequential_small_reads_fetch_each_chunk_once(world: World, fs: ZooFileSystem) -> None:
    stats = fs.zoo.blobs.stats
    out = bytearray()
    with fs.open("yolo@1.2.0/x86_64/deploy_lib.so", "rb") as f:
        recipe = fs.zoo.blobs.recipe(f.entry.blob)
        requests_before = stats.requests
        while chunk := f.read(8192):
            out += chunk
    assert bytes(out) == world.big
    assert stats.chunks_fetched == len(recipe.chunks)
    # Read-ahead doubles while reading sequentially: far fewer requests than chunks.
    assert stats.requests - requests_before < len(recipe.chunks) // 2


def test_whole_file_reads_use_and_fill_the_cache(world: World, fs: ZooFileSystem) -> None:
    blob = Digest.of(world.big)
    assert fs.cache is not None and not fs.cache.has(blob)
    assert fs.cat_file("yolo@1.2.0/x86_64/deploy_lib.so") == world.big
    assert fs.cache.has(blob)
    stats = fs.zoo.blobs.stats
    fetched = stats.bytes_fetched
    # Later reads of the file, whole or in part, by any spec, are local.
    assert fs.cat_file("yolo@^1/x86_64/deploy_lib.so", 100, 200) == world.big[100:200]
    with fs.open("yolo@1.2.0/x86_64/deploy_lib.so") as f:
        f.seek(5000)
        assert f.read(10) == world.big[5000:5010]
    dest = world.tmp / "out" / "deploy_lib.so"
    fs.get("zoo://yolo@1.2.0/x86_64/deploy_lib.so", str(dest))
    assert dest.read_bytes() == world.big
    assert stats.bytes_fetched == fetched
    # The copy is an ordinary file: writable, not a link into the read-only cache.
    assert os.access(dest, os.W_OK) and dest.stat().st_ino != fs.cache.blob_path(blob).stat().st_ino


def test_get_file_fills_the_cache(world: World, fs: ZooFileSystem) -> None:
    dest = world.tmp / "out" / "nested" / "labels.csv"
    fs.get_file("yolo@1.2.0/any/labels.csv", str(dest))
    assert dest.read_text() == CSV
    assert fs.cache is not None and fs.cache.has(Digest.of(CSV.encode()))
    buf = io.BytesIO()
    fs.get_file("yolo@1.2.0/any/labels.csv", buf)
    assert buf.getvalue() == CSV.encode()


def test_reading_a_whole_file_object_fills_the_cache(world: World, fs: ZooFileSystem) -> None:
    with fs.open("yolo@1.2.0/x86_64/deploy_lib.so") as f:
        assert f.read() == world.big
    assert fs.cache is not None and fs.cache.has(Digest.of(world.big))


def test_without_cache_whole_reads_are_verified_and_leave_nothing(world: World) -> None:
    fs = world.fs(cache=False)
    assert fs.cat_file("yolo@1.2.0/x86_64/deploy_lib.so") == world.big
    dest = world.tmp / "plain.so"
    fs.get_file("yolo@1.2.0/x86_64/deploy_lib.so", str(dest))
    assert dest.read_bytes() == world.big
    assert not world.cache.exists()


def test_empty_file(world: World, fs: ZooFileSystem) -> None:
    world.publish("empty", "1.0.0", {"nothing": b""})
    assert fs.cat_file("empty@1.0.0/any/nothing") == b""
    with fs.open("empty@1.0.0/any/nothing") as f:
        assert f.read() == b""
    assert fs.cat_ranges(["empty@1.0.0/any/nothing"], [0], [10]) == [b""]


# -- fsspec and pandas-style entry points ------------------------------------------------------


def test_open_files_with_glob(world: World) -> None:
    files = fsspec.open_files("zoo://yolo@^1.2/x86_64/*.json", "rb", store=world.url, cache=str(world.cache))
    assert [f.path for f in files] == ["yolo@^1.2/x86_64/deploy_graph.json"]
    files = fsspec.open_files("zoo://centerpoint@0.1.0/any/*.bin", "rb", store=world.url, cache=str(world.cache))
    contents = {}
    for of in files:
        with of as f:
            contents[of.path.rsplit("/", 1)[-1]] = f.read()
    assert contents == {"a.bin": b"a", "b.bin": b"bb"}
    assert fsspec.open_files("zoo://yolo@1.2.0/any/**/*.txt", store=world.url, cache=str(world.cache))[0].path \
        == "yolo@1.2.0/any/sub/dir/deep.txt"


def test_cat_ranges(world: World, fs: ZooFileSystem) -> None:
    big = "yolo@1.2.0/x86_64/deploy_lib.so"
    paths = [big, big, big, "centerpoint@0.1.0/any/b.bin", big, "centerpoint@0.1.0/any/missing", big]
    starts = [0, 10, 4_000_000, 0, -100, 0, 5]
    ends = [10, 20, 4_000_100, 2, None, 1, 5]
    out = fs.cat_ranges(paths, starts, ends)
    assert out[:5] == [world.big[:10], world.big[10:20], world.big[4_000_000:4_000_100], b"bb", world.big[-100:]]
    assert isinstance(out[5], FileNotFoundError)
    assert out[6] == b""
    with pytest.raises(FileNotFoundError):
        fs.cat_ranges(["centerpoint@0.1.0/any/missing"], [0], [1], on_error="raise")
    # Ranges sharing chunks cost those chunks once.
    fresh = world.fs(cache=False)
    stats = fresh.zoo.blobs.stats
    fresh.cat_ranges([big] * 4, [100, 200, 300, 400], [110, 210, 310, 410])
    assert stats.chunks_fetched == 1


def test_text_wrapper_and_csv(world: World) -> None:
    with fsspec.open("zoo://yolo@^1.2/any/labels.csv", "rb", store=world.url, cache=str(world.cache)) as f:
        rows = list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8")))
    assert [r["label"] for r in rows] == ["car", "pedestrian", "cyclist"]
    with fsspec.open("zoo://yolo@^1.2/any/labels.csv", "rt", store=world.url, cache=str(world.cache)) as f:
        assert f.readline() == "id,label\n"


def test_numpy_load_from_file_object(world: World) -> None:
    with fsspec.open("zoo://yolo/x86_64/weights.npy", "rb", store=world.url, cache=str(world.cache)) as f:
        # Not `latest` (2.0.0 has no x86_64 files): `yolo` alone means latest, which is 2.0.0
        # for aarch64 only, so x86_64 resolves to the newest version that has x86_64 files.
        loaded = np.load(f)
    np.testing.assert_array_equal(loaded, world.weights)


def test_read_block_and_head(world: World, fs: ZooFileSystem) -> None:
    assert fs.head("yolo@1.2.0/any/labels.csv", 8) == b"id,label"
    assert fs.tail("yolo@1.2.0/any/labels.csv", 8) == b"cyclist\n"
    assert fs.read_block("yolo@1.2.0/any/labels.csv", 8, 5, delimiter=b"\n") == b"1,car\n"


# -- store discovery -------------------------------------------------------------------------------


def test_store_from_environment(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_ENV, world.url)
    monkeypatch.setenv("ZOOSTORE_CACHE", str(world.cache))
    with fsspec.open("zoo://centerpoint@0.1.0/any/b.bin", "rb") as f:
        assert f.read() == b"bb"


def test_store_from_zoo_toml_walking_up(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    project = world.tmp / "project"
    (project / "src" / "deep").mkdir(parents=True)
    rel = os.path.relpath(world.url, project)
    (project / "zoo.toml").write_text(f'store = "{rel}"\n[models]\ncenterpoint = "0.1"\n')
    monkeypatch.delenv(STORE_ENV, raising=False)
    monkeypatch.chdir(project / "src" / "deep")
    assert find_store_url() == str(Path(world.url).resolve())
    fs = fsspec.filesystem("zoo", cache=str(world.cache), skip_instance_cache=True)
    assert fs.cat_file("centerpoint@0.1.0/any/a.bin") == b"a"


def test_store_from_pyproject_tool_table(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    project = world.tmp / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[project]\nname = "x"\n[tool.zoostore]\nstore = "{world.url}"\n')
    monkeypatch.delenv(STORE_ENV, raising=False)
    assert find_store_url(start=project) == world.url


def test_store_option_beats_environment_beats_zoo_toml(world: World, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _init(tmp_path / "other")
    (tmp_path / "zoo.toml").write_text(f'store = "{tmp_path / "nowhere"}"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(STORE_ENV, world.url)
    assert find_store_url() == world.url
    fs = fsspec.filesystem("zoo", store=str(tmp_path / "other"), cache=str(world.cache))
    assert fs.ls("", detail=False) == []


def test_no_store_says_how_to_name_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"store=.*ZOOSTORE_STORE.*zoo.toml"):
        find_store_url(start=tmp_path)


# -- instances -------------------------------------------------------------------------------------


def test_two_stores_never_share_an_instance(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other_url = str(tmp_path / "other")
    other = _init(other_url)
    src = _write(tmp_path / "o", {"a.bin": b"OTHER"})
    publish(other, "centerpoint", "0.1.0", [src], check=False)

    monkeypatch.setenv("ZOOSTORE_CACHE", str(world.cache))
    monkeypatch.setenv(STORE_ENV, world.url)
    fs1 = fsspec.filesystem("zoo")
    assert fs1.cat_file("centerpoint@0.1.0/any/a.bin") == b"a"
    monkeypatch.setenv(STORE_ENV, other_url)
    fs2 = fsspec.filesystem("zoo")
    assert fs2 is not fs1
    assert fs2.cat_file("centerpoint@0.1.0/any/a.bin") == b"OTHER"
    assert fs2.ls("", detail=False) == ["centerpoint"] and "yolo" in fs1.ls("", detail=False)
    # The same store again reuses the instance (and its recipe cache).
    monkeypatch.setenv(STORE_ENV, world.url)
    assert fsspec.filesystem("zoo") is fs1
    a = fsspec.filesystem("zoo", store=world.url)
    b = fsspec.filesystem("zoo", store=other_url)
    assert a is fs1 and a is not b
    assert a.cat_file("zoo://centerpoint@0.1.0/any/a.bin") != b.cat_file("zoo://centerpoint@0.1.0/any/a.bin")


def test_pickled_instance_reads_the_same_store(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_ENV, world.url)
    fs = fsspec.filesystem("zoo", cache=str(world.cache), skip_instance_cache=True)
    blob = pickle.dumps(fs)
    monkeypatch.delenv(STORE_ENV)
    clone = pickle.loads(blob)
    assert clone.cat_file("centerpoint@0.1.0/any/a.bin") == b"a"
    assert clone.storage_options["store"] == world.url


def test_an_opened_store_object_can_be_passed(world: World) -> None:
    zoo = world.zoo
    assert isinstance(zoo, Store)
    fs = ZooFileSystem(store=zoo, cache=str(world.cache), skip_instance_cache=True)
    assert fs.zoo is zoo
    assert fs.cat_file("centerpoint@0.1.0/any/b.bin") == b"bb"
    # Pickling one (spawned DataLoader workers, dask) failed deep inside with "cannot pickle
    # '_thread.lock' object"; it says why and what to pass instead.
    for obj in (fs, fs.open("centerpoint@0.1.0/any/b.bin")):
        with pytest.raises(UsageError, match=rf"cannot pickle a zoo:// filesystem made from an opened Store "
                                             rf".*store='{zoo.url}'"):
            pickle.dumps(obj)


def test_manifests_are_reused_briefly_then_reread(world: World) -> None:
    fs = world.fs()
    assert fs.ls("centerpoint", detail=False) == ["centerpoint@0.1.0"]
    world.publish("centerpoint", "0.2.0", {"a.bin": b"a2"})
    assert fs.ls("centerpoint", detail=False) == ["centerpoint@0.1.0"]  # within the TTL
    fs.invalidate_cache("zoo://centerpoint")
    assert fs.ls("centerpoint", detail=False) == ["centerpoint@0.1.0", "centerpoint@0.2.0"]
    eager = world.fs(manifest_ttl=0)
    world.publish("centerpoint", "0.3.0", {"a.bin": b"a3"})
    assert eager.cat_file("centerpoint/any/a.bin") == b"a3"


def test_offline_reads_resolve_against_manifests_kept_by_online_reads_of_a_plain_path(world: World) -> None:
    # The store given as a path: online reads kept manifests under the URL opening made of it
    # (file:///...), offline ones looked under the path, so nothing read online was found.
    assert world.fs().cat_file("yolo@^1.2/any/labels.csv") == CSV.encode()
    zoostore.fetch("centerpoint", "0.1.0", "a.bin", store=world.url, cache=str(world.cache))
    offline = world.fs(offline=True)
    assert offline.cat_file("yolo@^1.2/any/labels.csv") == CSV.encode()
    assert offline.cat_file("centerpoint@0.1.0/any/a.bin") == b"a"    # what fetch kept, too
    assert offline.info("yolo@^1.2/any/labels.csv")["version"] == "1.2.0"


def test_reading_a_version_gc_dropped_after_it_was_opened_says_so(world: World) -> None:
    from zoostore.ops.gc.plan import plan_gc

    old = _random(BIG, 7)
    world.publish("gone", "1.0.0", {"w.bin": old})
    world.publish("gone", "2.0.0", {"w.bin": b"new"})
    path = "zoo://gone@^1/any/w.bin"
    fs, ranged, ranges = world.fs(cache=False), world.fs(cache=False), world.fs(cache=False)
    f = fs.open(path, "rb", block_size=0)
    assert f.read(100) == old[:100]
    for other in (ranged, ranges):   # resolved before the gc: manifest and recipe reused after it
        assert other.cat_file(path, 0, 10) == old[:10]
    plan_gc(world.zoo, keep=["gone@2.0.0"], grace=0).execute()
    # It said "pack ... is missing ... the store is damaged; run 'zoostore verify'" (IntegrityError).
    gone = r"zoo://gone@\^1/any/w.bin: gone@1.0.0 is no longer in the store .*zoostore gc dropped it.*Open the path again"
    f.seek(5_000_000)
    with pytest.raises(NotFoundError, match=gone):
        f.read(100)
    for read in (lambda: ranged.cat_file(path, 5_000_000, 5_000_100), lambda: ranges.cat_ranges([path], 5, 9)[0]):
        with pytest.raises(NotFoundError, match=gone):
            result = read()
            if isinstance(result, Exception):
                raise result
    # Then the manifest is read again: the path resolves afresh.
    with pytest.raises(NotFoundError, match=r"no version of gone matches '\^1'"):
        fs.cat_file(path, 0, 10)
    assert fs.cat_file("zoo://gone@latest/any/w.bin") == b"new"


def test_a_missing_pack_of_a_published_version_is_still_an_integrity_error(world: World) -> None:
    fs = world.fs(cache=False)
    with fs.open("zoo://yolo@1.2.0/x86_64/deploy_lib.so", "rb", block_size=0) as f:
        assert f.read(10) == world.big[:10]
        for pack in (Path(world.url) / "packs").rglob("*"):
            if pack.is_file() and pack.stat().st_size > BIG // 2:
                pack.unlink()
        f.seek(4_000_000)
        with pytest.raises(IntegrityError, match="is missing from the store"):
            f.read(10)


def test_yanked_exact_version_warns_once(world: World, fs: ZooFileSystem) -> None:
    world.zoo.update_manifest("centerpoint", lambda m: m.with_yank("0.1.0", "wrong labels") if m else m)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fs.cat_file("centerpoint@0.1.0/any/a.bin") == b"a"
        assert fs.cat_file("centerpoint@0.1.0/any/b.bin") == b"bb"
    assert [str(w.message) for w in caught] == ["centerpoint@0.1.0 is yanked: wrong labels"]
    with pytest.raises(NotFoundError, match="yanked"):
        fs.info("centerpoint@^0.1/any/a.bin")
