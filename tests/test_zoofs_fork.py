"""zoo:// in forked children (multiprocessing's fork workers, torch DataLoader workers): an
instance the parent used, and one made in the child, both read, whatever the parent's other
threads held at the instant of the fork."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from helpers_store import published_store
from zoostore.repository import Store, open_store
from zoostore.zoofs import ZooFileSystem

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")

DATA = os.urandom(6 << 20)   # several segments: a whole read goes through the store's reader threads
PATH = "m@^1.0/any/w.bin"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    published_store(tmp_path, {"w.bin": DATA}, arch="any")
    return str(tmp_path / "store")


def _in_child(read: Any, timeout: float = 20) -> int:
    """Fork; the child runs `read()` and exits 0 if it returned True (killed by SIGALRM if it
    hangs); the parent waits (never forever) and returns the child's wait status."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(int(timeout))
            code = 0 if read() else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


@pytest.mark.parametrize("given", ["url", "Store object"])
def test_a_used_instance_reads_in_a_child_forked_while_other_threads_held_its_locks(
        store_url: str, given: str) -> None:
    """A lock another thread of the parent holds at the fork stays held in the child for good:
    the instance's own lock (a manifest being cached) and the store's decode slots (a read in
    flight; two on a 2-core machine) hung the child's first read. Held here on purpose, as a
    busy parent's threads hold them by chance (a hang in 1 of 4 runs of 10 forks)."""
    store: str | Store = store_url if given == "url" else open_store(store_url)
    fs = ZooFileSystem(store=store, cache=False, manifest_ttl=0, skip_instance_cache=True)
    assert fs.cat_file(PATH) == DATA    # the parent used it: reader threads started
    blobs = fs.zoo.blobs
    held = [fs._lock] + [blobs._decode_slots] * blobs.workers
    for lock in held:
        lock.acquire()
    try:
        status = _in_child(lambda: fs.cat_file(PATH) == DATA and fs.cat_file(PATH, 5, 50) == DATA[5:50])
    finally:
        for lock in held:
            lock.release()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, \
        f"the forked child hung or failed (wait status {status})"
    assert fs.cat_file(PATH, 0, 100) == DATA[:100]   # the parent's instance is untouched


def test_a_child_opens_zoo_paths_after_the_parent_used_the_filesystem(store_url: str, tmp_path: Path) -> None:
    """The DataLoader pattern: the parent reads (fsspec caches the instance), then each worker
    opens zoo:// paths itself, through fsspec's instance cache and through the inherited one."""
    import fsspec

    opts = {"store": store_url, "cache": str(tmp_path / "cache")}
    parent = fsspec.filesystem("zoo", **opts)
    assert parent.cat_file(PATH, 0, 10) == DATA[:10]

    def read() -> bool:
        with fsspec.open(f"zoo://{PATH}", "rb", **opts) as f:
            f.seek(1 << 20)
            ok = f.read(100) == DATA[1 << 20 : (1 << 20) + 100]
        return ok and parent.cat_file(PATH) == DATA

    statuses = [_in_child(read) for _ in range(3)]
    assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses), statuses


def test_a_store_used_directly_reads_in_a_child_forked_while_other_threads_held_its_slots(
        store_url: str, tmp_path: Path) -> None:
    """The same for code that forks while holding its own Store and reads through it (no
    zoo://): every BlobStore starts over in a forked child (core.forks)."""
    from zoostore.core.digest import Digest

    zoo = open_store(store_url)
    blob = Digest.of(DATA)
    assert zoo.blobs.read_range(blob, 0, 10) == DATA[:10]
    blobs = zoo.blobs
    held = [blobs._recipes_lock, blobs._readers_lock, blobs.stats._lock]
    held += [blobs._decode_slots] * blobs.workers + [blobs._segment_slots] * (2 * blobs._reader_count)
    for lock in held:
        lock.acquire()
    try:
        def read() -> bool:
            out = blobs.get_file(blob, tmp_path / "child.bin")
            return out.read_bytes() == DATA and blobs.read_range(blob, 5, 50) == DATA[5:50]

        status = _in_child(read, timeout=10)
    finally:
        for lock in held:
            lock.release()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, \
        f"the forked child hung or failed (wait status {status})"
    assert blobs.read_range(blob, 0, 100) == DATA[:100]


def test_a_store_over_http_reads_in_a_forked_child_on_connections_of_its_own(
        tmp_path: Path, serve_directory: Any) -> None:
    """An HTTP store's pooled keep-alive connections are the parent's: a child that reused
    them would share sockets with the parent (two processes reading one response stream), and
    one whose connection pool another parent thread held at the fork (a request being
    started) hung. The backend starts over in the child with connections of its own."""
    from zoostore.core.digest import Digest
    from zoostore.storage.backends.http import HttpBackend

    published_store(tmp_path / "pub", {"w.bin": DATA}, arch="any")
    served = serve_directory(tmp_path / "pub")
    zoo = open_store(served.url + "/store")
    blob = Digest.of(DATA)
    assert zoo.blobs.read_range(blob, 0, 10) == DATA[:10]   # connections pooled now
    backend = zoo.backend
    assert isinstance(backend, HttpBackend)
    pool = backend._connections.for_url(served.url + "/store").connection_from_url(served.url + "/store")
    pool.pool.mutex.acquire()
    try:
        status = _in_child(lambda: zoo.blobs.read_range(blob, 5, 50) == DATA[5:50], timeout=10)
    finally:
        pool.pool.mutex.release()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, \
        f"the forked child hung or failed (wait status {status})"
    assert zoo.blobs.read_range(blob, 0, 100) == DATA[:100]


def test_a_store_on_s3_used_directly_reads_in_a_forked_child(tmp_path: Path, moto_endpoint: str) -> None:
    """s3fs refuses to run in a forked child ('This class is not fork-safe', a RuntimeError
    with a traceback): the S3 backend starts over there with a client of its own."""
    import uuid

    import boto3

    from conftest import moto_options
    from helpers_store import write_dir
    from zoostore.core.digest import Digest
    from zoostore.ops.publish import publish
    from zoostore.repository import init_store

    bucket = f"zoo-{uuid.uuid4().hex[:20]}"
    boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    zoo, _ = init_store(f"s3://{bucket}/zoo", storage_options=moto_options(moto_endpoint))
    data = DATA[: 1 << 20]
    publish(zoo, "m", "1.0.0", [write_dir(tmp_path / "src", {"w.bin": data})], arch="any", check=False)
    blob = Digest.of(data)
    assert zoo.blobs.read_range(blob, 0, 10) == data[:10]   # the parent's client is in use
    status = _in_child(lambda: zoo.blobs.read_range(blob, 5, 50) == data[5:50], timeout=20)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, \
        f"the forked child hung or failed (wait status {status})"
    assert zoo.blobs.read_range(blob, 0, 100) == data[:100]
