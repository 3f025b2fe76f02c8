"""Every backend runs the conformance suite; backend-specific behaviour is tested after it."""

from __future__ import annotations

import errno
import http.server
import io
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
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
from zoostore.cli import exit_code_for
from zoostore.core.errors import (
    CasUnsupportedError,
    ConflictError,
    InvalidPathError,
    ObjectNotFoundError,
    ReadOnlyError,
    RemoteError,
    UsageError,
)
from conftest import moto_options

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


def test_local_reads_remember_paths_not_contents_and_only_so_many(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # LocalBackend remembers each read key's path (building a Path cost a fifth of a random
    # zoo:// read): a key replaced since is read as it is now, a key that cannot be a path is
    # refused every time, and the memory is bounded.
    import zoostore.storage.backends.local as local

    b = LocalBackend(tmp_path)
    b.put("packs/ab/one", b"first version")
    buf = bytearray(5)
    assert b.get_range_into("packs/ab/one", 0, buf) == 5 and bytes(buf) == b"first"
    (tmp_path / "packs/ab/one").unlink()
    b.put("packs/ab/one", b"second version")
    assert b.get_range_into("packs/ab/one", 0, buf) == 5 and bytes(buf) == b"secon"
    assert b.get("packs/ab/one") == b"second version" and b.get_range("packs/ab/one", 7, 14) == b"version"
    for bad in ("../escape", "/abs", "a//b"):
        for _ in range(2):
            with pytest.raises(InvalidPathError):
                b.get_range_into(bad, 0, buf)
    monkeypatch.setattr(local, "READ_PATHS", 8)
    for i in range(20):
        with pytest.raises(ObjectNotFoundError):
            b.get(f"blobs/aa/{i}")
        assert len(b._read_paths) <= 8


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


def test_local_lock_whose_nonce_hit_a_full_disk_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The lock file is created, then writing the writer's nonce into it fails (ENOSPC): an
    # empty lock left behind made the next publish wait STALE_LOCK_SECONDS for "an unknown writer".
    backend = LocalBackend(tmp_path, lock_wait=0.2)
    token = backend.put_cas("manifests/m.toml", b"1", expected=None)
    real_fdopen = os.fdopen

    class FullDisk(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        os.close(fd)
        return io.TextIOWrapper(io.BufferedWriter(FullDisk()))

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(OSError) as failed:
        backend.put_cas("manifests/m.toml", b"2", expected=token)
    assert failed.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert sorted(p.name for p in (tmp_path / "manifests").iterdir()) == ["m.toml"]
    backend.put_cas("manifests/m.toml", b"2", expected=token)  # at once: no lock to wait for
    assert backend.get("manifests/m.toml") == b"2"


_KILLED_ONCE_THE_LOCK_EXISTS = """
import os, signal, sys
from pathlib import Path
from zoostore.storage.backends import local_lock
lock = Path(sys.argv[1])
killing = []
def hook(event, args):
    # The first thing this process does after the lock's name appears: it is killed (SIGKILL,
    # no cleanup). Before, that was writing the nonce into the lock it had just created empty.
    if not killing and lock.exists():
        killing.append(event)   # os.kill is audited too: this hook runs again for it
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
local_lock.acquire(lock, "manifests/m.toml", root=lock.parent.parent, wait=1)
"""


def test_a_writer_killed_as_its_lock_appears_leaves_a_lock_the_next_one_breaks_at_once(tmp_path: Path) -> None:
    from zoostore.storage.backends import local_lock

    lock = tmp_path / "manifests" / "m.toml.lock"
    lock.parent.mkdir()
    killed = subprocess.run([sys.executable, "-c", _KILLED_ONCE_THE_LOCK_EXISTS, str(lock)], timeout=60)
    assert killed.returncode == -9 and lock.exists()
    assert "pid=" in lock.read_text()   # never empty: it names its (dead) writer
    started = time.monotonic()
    with pytest.warns(local_lock.StaleLockWarning, match="no longer running"):
        nonce = local_lock.acquire(lock, "manifests/m.toml", root=tmp_path, wait=5)
    assert time.monotonic() - started < 5 and lock.read_text() == nonce


def _refuse_creates(monkeypatch: pytest.MonkeyPatch, root: Path, code: int) -> None:
    """Creating a file under `root` fails with `code` (EROFS: a read-only mount; EACCES: a
    folder we may only read), as os.open says it; reads are untouched."""
    real_open = os.open

    def refusing(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT and str(path).startswith(str(root)):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_local_store_that_cannot_be_written_is_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         code: int) -> None:
    # A consumer with read access only to a shared store: reads work; every write is a
    # ReadOnlyError (exit 8, "read-only store") naming the store and the folder, not an OSError
    # naming a temp file (exit 1).
    backend = LocalBackend(tmp_path / "store")
    backend.put_if_absent("packs/aa/p", b"p")
    token = backend.put_cas("manifests/m.toml", b"1", expected=None)
    _refuse_creates(monkeypatch, tmp_path / "store", code)
    assert backend.get("packs/aa/p") == b"p"
    writes: list[Callable[[], object]] = [
        lambda: backend.put_if_absent("packs/bb/q", b"q"),
        lambda: backend.put_cas("manifests/m.toml", b"2", expected=token),
        lambda: backend.object_writer("packs/cc").write([b"frame"]),
    ]
    for write in writes:
        with pytest.raises(ReadOnlyError, match=f"cannot write to the store {tmp_path / 'store'}: ") as info:
            write()
        assert exit_code_for(info.value) == 8
        assert ".zoostore-tmp-" not in str(info.value)
    assert backend.get("manifests/m.toml") == b"1"
    assert not [p for p in (tmp_path / "store").rglob("*") if p.name.startswith(".zoostore-tmp-")]


def test_local_store_full_disk_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A write's ENOSPC names no file: the error says which folder of the store filled up.
    backend = LocalBackend(tmp_path / "store")
    monkeypatch.setattr(os, "writev", lambda fd, parts: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    writer = backend.object_writer("packs/aa")
    with pytest.raises(OSError) as info:
        writer.write([b"frame"])
    writer.discard()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "store" / "packs" / "aa")
    assert not [p for p in (tmp_path / "store").rglob("*") if p.is_file()]


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
    # Listing is not a write: the message says where verify and gc can run, not "publish to".
    with pytest.raises(ReadOnlyError, match=r"mirror cannot be listed; run this command \(verify, gc\) on the "
                                            r"store's s3:// or local URL"):
        backend.list("packs/")


# -- compare-and-swap is checked, not assumed ----------------------------------------------------


def _bucket_at(endpoint: str) -> str:
    import boto3

    name = f"zoo-{uuid.uuid4().hex[:20]}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=name)
    return name


def test_s3_probe_passes_on_a_server_that_honours_conditions(moto_endpoint: str) -> None:
    from zoostore.storage.backends.s3 import S3Backend

    backend = open_backend(f"s3://{_bucket_at(moto_endpoint)}/zoo", storage_options=moto_options(moto_endpoint))
    assert isinstance(backend, S3Backend) and backend.cas_report is None
    backend.put_cas("manifests/m.toml", b"v1", expected=None)  # the first manifest write probes
    assert backend.capabilities.atomic_cas
    assert backend.cas_report is not None and "honours" in backend.cas_report
    assert list(backend.list("tmp/")) == []


def test_s3_manifest_writes_refused_where_conditions_are_ignored(
    moto_ignoring_conditions: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZOOSTORE_SINGLE_WRITER", raising=False)
    url = f"s3://{_bucket_at(moto_ignoring_conditions)}/zoo"
    options = moto_options(moto_ignoring_conditions)
    backend = open_backend(url, storage_options=options)
    assert backend.put_if_absent("packs/aa/p", b"content-addressed writes still work")
    with pytest.raises(CasUnsupportedError) as info:
        backend.put_cas("manifests/m.toml", b"v1", expected=None)
    message = str(info.value)
    assert "If-None-Match" in message and "ZOOSTORE_SINGLE_WRITER=1" in message and url in message
    assert isinstance(info.value, UsageError) and exit_code_for(info.value) == 2
    assert not backend.capabilities.atomic_cas
    assert not backend.exists("manifests/m.toml")
    with pytest.raises(CasUnsupportedError):  # checked once, refused every time
        backend.put_cas("manifests/m.toml", b"v1", expected=None)

    single = open_backend(url, storage_options={**options, "single_writer": True})
    token = single.put_cas("manifests/m.toml", b"v1", expected=None)
    single.put_cas("manifests/m.toml", b"v2", expected=token)
    assert not single.capabilities.atomic_cas  # still recorded as not atomic

    monkeypatch.setenv("ZOOSTORE_SINGLE_WRITER", "1")
    from_env = open_backend(url, storage_options=options)
    from_env.put_cas("manifests/m.toml", b"v3", expected=from_env.get_versioned("manifests/m.toml").token)
    assert from_env.get("manifests/m.toml") == b"v3"


def test_cli_publish_refused_without_cas_then_allowed_single_writer(
    moto_ignoring_conditions: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from zoostore.cli import main

    for name, value in {"AWS_ENDPOINT_URL": moto_ignoring_conditions, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("ZOOSTORE_SINGLE_WRITER", raising=False)
    url = f"s3://{_bucket_at(moto_ignoring_conditions)}/zoo"
    (tmp_path / "w.bin").write_bytes(PAYLOAD)
    assert main(["init", url]) == 0
    capsys.readouterr()
    publish = ["publish", url, "m", "1.0.0", str(tmp_path / "w.bin"), "--no-check", "-q"]
    assert main(publish) == 2
    err = capsys.readouterr().err
    assert "single-writer" in err and "Traceback" not in err
    monkeypatch.setenv("ZOOSTORE_SINGLE_WRITER", "1")
    assert main(publish) == 0
    assert main(["ls", url, "m"]) == 0
    assert "1.0.0" in capsys.readouterr().out


def test_generic_put_cas_needs_single_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZOOSTORE_SINGLE_WRITER", raising=False)
    backend = GenericBackend(f"file://{tmp_path}/store")
    with pytest.raises(CasUnsupportedError, match="no conditional write"):
        backend.put_cas("manifests/m.toml", b"v1", expected=None)
    monkeypatch.setenv("ZOOSTORE_SINGLE_WRITER", "true")
    assert GenericBackend(f"file://{tmp_path}/store").put_cas("manifests/m.toml", b"v1", expected=None)


def test_put_gives_up_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoostore.storage.backends import base

    class NeverSwaps(MemoryBackend):
        def put_cas(self, key: str, data: bytes, *, expected: str | None) -> str:
            raise ConflictError("412 Precondition Failed")

    monkeypatch.setattr(base, "PUT_ATTEMPTS", 3)
    name = f"never-{uuid.uuid4().hex}"
    with pytest.raises(ConflictError, match="gave up after 3 .*not honour conditional writes"):
        NeverSwaps(name).put("state/x", b"1")
    forget(name)


# -- S3: lost races and transient failures -----------------------------------------------------


def _client_error(status: int, code: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}}}, "PutObject")


def _flaky_s3(backend: Backend, monkeypatch: pytest.MonkeyPatch,
              fail: Callable[[str, dict[str, Any], int], Exception | None]) -> list[str]:
    """Make the backend's S3 calls fail as `fail(method, kwargs, call number)` says."""
    fs = backend._fs  # type: ignore[attr-defined]  # noqa: SLF001
    real = fs._call_s3
    calls: list[str] = []

    async def call(method: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        error = fail(method, kwargs, len(calls))
        if error is not None:
            raise error
        return await real(method, *args, **kwargs)

    monkeypatch.setattr(fs, "_call_s3", call)
    return calls


def test_s3_500_on_conditional_put_is_a_conflict(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = open_backend(f"s3://{_bucket_at(moto_endpoint)}/zoo",
                           storage_options={**moto_options(moto_endpoint), "max_attempts": 2})
    token = backend.put_cas("manifests/m.toml", b"v1", expected=None)
    calls = _flaky_s3(backend, monkeypatch,
                      lambda m, kw, n: _client_error(500, "UnknownError") if "IfMatch" in kw else None)
    with pytest.raises(ConflictError, match="500"):
        backend.put_cas("manifests/m.toml", b"v2", expected=token)
    assert calls == ["put_object", "put_object"]  # retried once (max_attempts=2), then a conflict
    assert backend.get("manifests/m.toml") == b"v1"


def test_s3_if_match_sends_the_bare_etag(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = open_backend(f"s3://{_bucket_at(moto_endpoint)}/zoo", storage_options=moto_options(moto_endpoint))
    token = backend.put_cas("manifests/m.toml", b"v1", expected=None)
    assert token.startswith('"')
    sent: list[str] = []
    _flaky_s3(backend, monkeypatch, lambda m, kw, n: sent.append(kw.get("IfMatch", "")) or None)  # type: ignore[func-returns-value]
    backend.put_cas("manifests/m.toml", b"v2", expected=token)
    assert sent == [token.strip('"')]


def test_s3_retries_transient_errors_then_succeeds(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = open_backend(f"s3://{_bucket_at(moto_endpoint)}/zoo", storage_options=moto_options(moto_endpoint))
    backend.put_if_absent("packs/aa/p", PAYLOAD)
    faults = [_client_error(503, "SlowDown"), _client_error(429, "TooManyRequests"),
              _client_error(500, "InternalError"), ConnectionResetError("reset by peer")]
    calls = _flaky_s3(backend, monkeypatch, lambda m, kw, n: faults[n - 1] if n <= len(faults) else None)
    assert backend.get_range("packs/aa/p", 100, 200) == PAYLOAD[100:200]
    assert calls == ["get_object"] * 5


def test_s3_retries_truncated_bodies(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import IncompleteReadError

    backend = open_backend(f"s3://{_bucket_at(moto_endpoint)}/zoo", storage_options=moto_options(moto_endpoint))
    backend.put_if_absent("packs/aa/p", PAYLOAD)
    fs = backend._fs  # type: ignore[attr-defined]  # noqa: SLF001
    real = fs._call_s3
    truncated = [0]

    async def call(method: str, *args: Any, **kwargs: Any) -> Any:
        response = await real(method, *args, **kwargs)
        if method == "get_object" and truncated[0] < 2:
            truncated[0] += 1

            async def short_read(*_: Any) -> bytes:  # StreamingBody.read(amt=None)
                raise IncompleteReadError(actual_bytes=10, expected_bytes=len(PAYLOAD))

            response["Body"].read = short_read
        return response

    monkeypatch.setattr(fs, "_call_s3", call)
    assert backend.get("packs/aa/p") == PAYLOAD
    assert truncated[0] == 2


def test_s3_give_up_message_drops_botocores_zero_retries(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    backend = open_backend(f"s3://{_bucket_at(moto_endpoint)}/zoo",
                           storage_options={**moto_options(moto_endpoint), "max_attempts": 2})
    # What botocore raises with its own retries off: "... (reached max retries: 0): ..."
    error = ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                         "ResponseMetadata": {"HTTPStatusCode": 503, "HTTPHeaders": {},
                                              "MaxAttemptsReached": True, "RetryAttempts": 0}}, "GetObject")
    assert "reached max retries: 0" in str(error)
    _flaky_s3(backend, monkeypatch, lambda m, kw, n: error)
    with pytest.raises(RemoteError, match="gave up after 2 attempt") as info:
        backend.get("zoostore.toml")
    assert "reached max retries" not in str(info.value) and "SlowDown" in str(info.value)


def test_s3_retry_budget_is_bounded(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = open_backend(f"s3://{_bucket_at(moto_endpoint)}/zoo",
                           storage_options={**moto_options(moto_endpoint), "max_attempts": 4})
    calls = _flaky_s3(backend, monkeypatch, lambda m, kw, n: _client_error(503, "SlowDown"))
    started = time.monotonic()
    with pytest.raises(RemoteError, match="gave up after 4 attempt") as info:
        backend.get("zoostore.toml")
    assert isinstance(info.value, ConnectionError) and "SlowDown" in str(info.value)
    assert calls == ["get_object"] * 4 and time.monotonic() - started < 5
    with pytest.raises(UsageError, match="max_attempts"):
        open_backend("s3://b/zoo", storage_options={"max_attempts": 0})


# -- HTTP: connection reuse and transient failures ----------------------------------------------


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive server of one object, failing the first requests as `plan` says:
    an int status (with Retry-After: 0), "truncate" (half the promised body, then close) or
    "reset" (close without answering)."""

    protocol_version = "HTTP/1.1"
    plan: list[int | str]
    seen: list[tuple[str, int]]  # (path, client port)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append((self.path, self.client_address[1]))
        fault = self.plan.pop(0) if self.plan else None
        if fault == "reset":
            self.close_connection = True
            return
        if isinstance(fault, int):
            self.send_response(fault)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if fault == "truncate":
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.close_connection = True
            return
        self.wfile.write(PAYLOAD)


@pytest.fixture
def flaky_http() -> Iterator[Callable[[list[int | str]], tuple[str, list[tuple[str, int]]]]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(plan: list[int | str]) -> tuple[str, list[tuple[str, int]]]:
        seen: list[tuple[str, int]] = []
        handler = type("Handler", (_FlakyHandler,), {"plan": list(plan), "seen": seen})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        host, port = server.server_address[:2]
        return f"http://{host!s}:{port}/zoo", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_http_reuses_connections(flaky_http: Callable[..., tuple[str, list[tuple[str, int]]]]) -> None:
    url, seen = flaky_http([])
    backend = open_backend(url)
    for _ in range(5):
        assert backend.get("packs/p") == PAYLOAD
    assert len(seen) == 5 and len({port for _, port in seen}) == 1, seen  # one keep-alive connection
    backend.close()


def test_http_retries_transient_failures(flaky_http: Callable[..., tuple[str, list[tuple[str, int]]]]) -> None:
    url, seen = flaky_http([503, "truncate", 429, "reset", 500, 502, 504])
    backend = open_backend(url, storage_options={"max_attempts": 8})
    assert backend.get("packs/p") == PAYLOAD
    assert len(seen) == 8


def test_http_gives_up_after_the_budget(flaky_http: Callable[..., tuple[str, list[tuple[str, int]]]]) -> None:
    url, seen = flaky_http([503] * 10)
    backend = open_backend(url, storage_options={"max_attempts": 3})
    with pytest.raises(RemoteError, match="gave up after 3 attempt.*HTTP 503"):
        backend.get("packs/p")
    assert len(seen) == 3
    url, seen = flaky_http(["truncate"] * 10)
    with pytest.raises(RemoteError, match="gave up after 2 attempt"):
        open_backend(url, storage_options={"max_attempts": 2}).get("packs/p")


def test_http_client_errors_are_not_retried(flaky_http: Callable[..., tuple[str, list[tuple[str, int]]]]) -> None:
    url, seen = flaky_http([403])
    with pytest.raises(RemoteError, match="HTTP 403") as info:
        open_backend(url).get("packs/p")
    assert isinstance(info.value, ConnectionError) and len(seen) == 1


def test_s3_init_never_replaces_a_store_on_a_server_without_conditions(moto_ignoring_conditions: str) -> None:
    from zoostore.core.errors import StoreExistsError
    from zoostore.documents.store_config import CONFIG_KEY, StoreConfig
    from zoostore.repository import init_store

    url = f"s3://{_bucket_at(moto_ignoring_conditions)}/zoo"
    options = moto_options(moto_ignoring_conditions)
    _, created = init_store(url, storage_options=options)
    assert created
    before = open_backend(url, storage_options=options).get(CONFIG_KEY)
    with pytest.raises(StoreExistsError):
        init_store(url, config=StoreConfig(pack_target_size=1 << 20), storage_options=options)
    assert init_store(url, storage_options=options)[1] is False
    assert open_backend(url, storage_options=options).get(CONFIG_KEY) == before


class _FaultyStaticHandler(http.server.SimpleHTTPRequestHandler):
    """A static HTTP/1.1 server where every third request fails: 503, a truncated body, or a
    connection closed without an answer, in turn."""

    protocol_version = "HTTP/1.1"
    counter: list[int]  # shared per server: [requests so far]
    faults: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.counter[0] += 1
        n = self.counter[0]
        if n % 3:
            super().do_GET()
            return
        fault = ("503", "truncate", "reset")[(n // 3) % 3]
        self.faults.append(fault)
        if fault == "reset":
            self.close_connection = True
        elif fault == "503":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            path = self.translate_path(self.path)
            data = Path(path).read_bytes() if os.path.isfile(path) else b"x" * 100
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True


def test_fetch_through_a_faulty_http_server_gives_right_bytes(tmp_path: Path) -> None:
    """End to end: a store served with a fault on every third request; fetch retries and
    verifies, and the files come out byte-identical."""
    import functools

    import zoostore
    from zoostore.documents.store_config import Chunking, StoreConfig
    from zoostore.ops.publish import publish
    from zoostore.repository import init_store

    zoo, _ = init_store(tmp_path / "store", config=StoreConfig(chunking=Chunking(1024, 4096, 16384),
                                                                pack_target_size=64 * 1024))
    src = tmp_path / "src"
    src.mkdir()
    files = {"a.bin": os.urandom(150_000), "b.bin": os.urandom(40_000) * 3}
    for name, data in files.items():
        (src / name).write_bytes(data)
    publish(zoo, "m", "1.0.0", [src / n for n in files], arch="x86_64", check=False)

    counter, faults = [0], []
    handler = type("H", (_FaultyStaticHandler,), {"counter": counter, "faults": faults})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(tmp_path)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    host, port = server.server_address[:2]
    try:
        for name, data in files.items():
            got = zoostore.fetch("m", "1.0.0", name, arch="x86_64", store=f"http://{host!s}:{port}/store",
                                 cache=tmp_path / "cache")
            assert got.read_bytes() == data
    finally:
        server.shutdown()
        server.server_close()
    assert {"503", "truncate", "reset"} <= set(faults), faults
