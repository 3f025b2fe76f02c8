"""Every backend runs the conformance suite; backend-specific behaviour is tested after it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# tests/ is not a package: pytest puts it on sys.path, so the suite imports by its own name.
from zoostore.testing.conformance import PAYLOAD, BackendConformance, ReadOnlyConformance, SeedFn

from zoostore.storage.backends import open_backend
from zoostore.storage.backends.base import Backend
from zoostore.storage.backends.generic import GenericBackend
from zoostore.storage.backends.http import HttpBackend
from zoostore.storage.backends.local import STALE_LOCK_SECONDS, LocalBackend
from zoostore.storage.backends.memory import MemoryBackend, forget
from zoostore.core.errors import ConflictError, InvalidPathError, ReadOnlyError, UsageError

if TYPE_CHECKING:
    from conftest import ServedDirectory


# -- the suite on every backend ----------------------------------------------------------------


class TestLocalBackend(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        return open_backend(str(tmp_path / "store"))

    def age(self, backend: Backend, key: str, seconds: float) -> bool:
        assert isinstance(backend, LocalBackend)
        past = time.time() - seconds
        os.utime(backend.root / key, (past, past))
        return True


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        path = f"conformance-{uuid.uuid4().hex}"
        yield open_backend(f"memory://{path}")
        forget(path)

    def age(self, backend: Backend, key: str, seconds: float) -> bool:
        assert isinstance(backend, MemoryBackend)
        store = backend._store  # noqa: SLF001 - the test reaches in to fake an old object
        data, mtime = store.objects[key]
        store.objects[key] = (data, mtime - seconds)
        return True


class TestS3Backend(BackendConformance):
    many_keys = 1_005  # more than one DeleteObjects batch of 1,000
    mtime_slack = 2.0  # LastModified has one-second resolution
    freshen_wait = 1.1  # ...so wait for it to tick before freshen

    @pytest.fixture
    def backend(self, s3_bucket: str, s3_storage_options: dict[str, Any]) -> Backend:
        return open_backend(f"s3://{s3_bucket}/zoo", storage_options=s3_storage_options)


class TestGenericBackendOnLocalFiles(BackendConformance):
    """The best-effort fsspec backend, driven through fsspec's local filesystem (in single-writer
    mode: without it, put_cas is refused, see test_generic_put_cas_needs_single_writer)."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        return GenericBackend(f"file://{tmp_path}/store", storage_options={"single_writer": True})

    def age(self, backend: Backend, key: str, seconds: float) -> bool:
        assert isinstance(backend, GenericBackend)
        past = time.time() - seconds
        os.utime(f"{backend._root}/{key}", (past, past))  # noqa: SLF001
        return True


def _seed_on_disk(root: Path) -> SeedFn:
    def write(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return write


class TestHttpBackend(ReadOnlyConformance):
    mtime_slack = 2.0

    @pytest.fixture
    def backend(self, http_store: ServedDirectory) -> Backend:
        return open_backend(http_store.url)

    @pytest.fixture
    def seed(self, http_store: ServedDirectory) -> SeedFn:
        return _seed_on_disk(http_store.root)


class TestHttpBackendWithoutRanges(ReadOnlyConformance):
    mtime_slack = 2.0

    @pytest.fixture
    def backend(self, http_store_no_ranges: ServedDirectory) -> Backend:
        return open_backend(http_store_no_ranges.url)

    @pytest.fixture
    def seed(self, http_store_no_ranges: ServedDirectory) -> SeedFn:
        return _seed_on_disk(http_store_no_ranges.root)


# -- factory -----------------------------------------------------------------------------------


def test_open_backend_picks_by_scheme(tmp_path: Path) -> None:
    assert isinstance(open_backend(str(tmp_path)), LocalBackend)
    assert isinstance(open_backend(tmp_path.as_uri()), LocalBackend)
    local = open_backend(tmp_path.as_uri())
    assert isinstance(local, LocalBackend) and local.root == tmp_path
    assert isinstance(open_backend("memory://factory"), MemoryBackend)
    assert isinstance(open_backend("https://cdn.example.org/zoo"), HttpBackend)
    assert isinstance(open_backend("http://127.0.0.1:1/zoo"), HttpBackend)
    assert open_backend("https://cdn.example.org/zoo/").url == "https://cdn.example.org/zoo"
    forget("factory")


def test_open_backend_other_protocols_are_generic_and_not_atomic(tmp_path: Path) -> None:
    import zipfile

    zip_path = tmp_path / "store.zip"

    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("zoostore.toml", "format = 1\n")
    zipped = open_backend(f"zip://::{zip_path}")
    assert isinstance(zipped, GenericBackend) and not zipped.capabilities.atomic_cas
    assert zipped.get("zoostore.toml") == b"format = 1\n"


def test_open_backend_s3(s3_bucket: str, s3_storage_options: dict[str, Any]) -> None:
    from zoostore.storage.backends.s3 import S3Backend

    backend = open_backend(f"s3://{s3_bucket}/a/b/", storage_options=s3_storage_options)
    assert isinstance(backend, S3Backend)
    assert backend.url == f"s3://{s3_bucket}/a/b"
    backend.put_if_absent("k", b"v")
    root = open_backend(f"s3://{s3_bucket}", storage_options=s3_storage_options)
    assert root.get("a/b/k") == b"v"


def test_open_backend_rejects_unknown_options(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="fsynk"):
        open_backend(str(tmp_path), storage_options={"fsynk": False})
    with pytest.raises(UsageError, match="memory"):
        open_backend("memory://x", storage_options={"anything": 1})
    with pytest.raises(UsageError, match="host"):
        open_backend("file://server/share")
    with pytest.raises(UsageError, match="bucket"):
        open_backend("s3://")


def test_importing_backends_does_not_load_s3fs() -> None:
    code = (
        "import sys, zoostore.storage.backends, zoostore.storage.backends.local, zoostore.storage.backends.memory;"
        "zoostore.storage.backends.open_backend('memory://x');"
        "print(sorted(m for m in ('s3fs', 'botocore', 'aiobotocore', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- memory ------------------------------------------------------------------------------------


def test_memory_same_path_shares_store_and_other_paths_do_not() -> None:
    name = f"share-{uuid.uuid4().hex}"
    try:
        first = open_backend(f"memory://{name}")
        assert first.put_if_absent("k", b"v")
        assert open_backend(f"memory://{name}/").get("k") == b"v"
        assert not open_backend(f"memory://{name}2").exists("k")
        assert not open_backend(f"memory://{name}/sub").exists("k")
    finally:
        for suffix in ("", "2", "/sub"):
            forget(name + suffix)
    assert not open_backend(f"memory://{name}").exists("k")  # forget() started it afresh
    forget(name)


# -- local -------------------------------------------------------------------------------------


def test_local_stale_lock_is_broken(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, lock_wait=2.0)
    token = backend.put_cas("manifests/m.toml", b"1", expected=None)
    lock = tmp_path / "manifests" / "m.toml.lock"
    lock.write_text("crashed writer")
    old = time.time() - STALE_LOCK_SECONDS - 5
    os.utime(lock, (old, old))
    backend.put_cas("manifests/m.toml", b"2", expected=token)
    assert backend.get("manifests/m.toml") == b"2"
    assert not lock.exists()
    assert sorted(p.name for p in (tmp_path / "manifests").iterdir()) == ["m.toml"]


def test_local_fresh_lock_blocks_then_conflicts(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, lock_wait=0.2)
    token = backend.put_cas("manifests/m.toml", b"1", expected=None)
    lock = tmp_path / "manifests" / "m.toml.lock"
    lock.write_text("another writer")
    with pytest.raises(ConflictError, match="locked by another writer"):
        backend.put_cas("manifests/m.toml", b"2", expected=token)
    assert lock.read_text() == "another writer"  # not ours: left alone
    assert backend.get("manifests/m.toml") == b"1"
    assert [i.key for i in backend.list("")] == ["manifests/m.toml"]


def test_local_rejects_keys_that_escape_or_collide_with_bookkeeping(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    for key in ("../outside", "/etc/passwd", "a//b", "a/./b", "a\\b", "", "c:/x"):
        with pytest.raises(InvalidPathError):
            backend.put_if_absent(key, b"x")
    for key in ("manifests/m.toml.lock", "packs/.x.1234.tmp"):
        with pytest.raises(InvalidPathError, match="reserved"):
            backend.put_if_absent(key, b"x")
    assert not (tmp_path / "outside").exists()


def test_local_list_skips_temp_files(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.put_if_absent("packs/aa/p", b"p")
    (tmp_path / "packs" / "aa" / ".p.0123abcd.tmp").write_bytes(b"partial")
    (tmp_path / "packs" / "aa" / "p.lock").write_text("lock")
    assert [i.key for i in backend.list("packs/")] == ["packs/aa/p"]


# -- HTTP --------------------------------------------------------------------------------------


def test_http_range_ignoring_server_gives_right_bytes_and_fetches_once(
    http_store_no_ranges: ServedDirectory,
) -> None:
    _seed_on_disk(http_store_no_ranges.root)("packs/3f/p", PAYLOAD)
    backend = open_backend(http_store_no_ranges.url)
    assert isinstance(backend, HttpBackend)
    assert backend.get_range("packs/3f/p", 1_000, 1_010) == PAYLOAD[1_000:1_010]
    assert not backend.ranges_supported
    assert backend.get_ranges("packs/3f/p", [(0, 5), (9_990, 10_020)]) == [PAYLOAD[:5], PAYLOAD[9_990:]]
    gets = [r for r in http_store_no_ranges.requests if r[0] == "GET"]
    assert len(gets) == 1, gets  # the whole object came once, then the cache served the rest


def test_http_range_server_is_asked_for_ranges(http_store: ServedDirectory) -> None:
    _seed_on_disk(http_store.root)("packs/3f/p", PAYLOAD)
    backend = open_backend(http_store.url)
    assert isinstance(backend, HttpBackend)
    assert backend.get_range("packs/3f/p", 5, 9) == PAYLOAD[5:9]
    assert backend.ranges_supported
    assert http_store.requests[-1][2] == "bytes=5-8"


def test_http_cache_is_bounded(http_store_no_ranges: ServedDirectory) -> None:
    seed = _seed_on_disk(http_store_no_ranges.root)
    for name in "abc":
        seed(f"packs/{name}", PAYLOAD)
    backend = HttpBackend(http_store_no_ranges.url, cache_bytes=25_000)  # room for two
    for name in "abca":
        assert backend.get_range(f"packs/{name}", 3, 6) == PAYLOAD[3:6]
    gets = [r[1] for r in http_store_no_ranges.requests if r[0] == "GET"]
    assert gets == ["/zoo/packs/a", "/zoo/packs/b", "/zoo/packs/c", "/zoo/packs/a"]  # a was evicted


def test_http_list_is_refused(http_store: ServedDirectory) -> None:
    backend = open_backend(http_store.url)
    with pytest.raises(ReadOnlyError, match="publish to the store's s3:// or local URL instead"):
        backend.list("packs/")
