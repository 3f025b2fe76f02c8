"""zoostore on a real S3 server, Ceph's radosgw 16: the behaviours moto does not have.

radosgw matches only bare ETags in `If-Match` on PutObject and answers some losers of racing
conditional PUTs with 500 instead of 412 (docs/radosgw.md). The conformance suite, the
concurrent-publisher test and the gc-concurrency test also run here, through the `s3_server`
fixture (tests/conftest.py); this file holds what is specific to radosgw.
"""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from zoostore.core.errors import ConflictError, ObjectNotFoundError
from zoostore.documents.store_config import Chunking, StoreConfig
from zoostore.ops.publish import publish
from zoostore.repository import init_store, open_store
from zoostore.storage.backends import Versioned, open_backend
from zoostore.storage.backends.s3 import S3Backend

SMALL = StoreConfig(chunking=Chunking(1024, 4096, 16384), pack_target_size=64 * 1024)


@pytest.fixture
def rgw_bucket(radosgw: Any) -> str:
    name = f"zoo-{uuid.uuid4().hex[:20]}"
    radosgw.make_bucket(name)
    return name


def _backend(radosgw: Any, bucket: str, **extra: Any) -> S3Backend:
    backend = open_backend(f"s3://{bucket}/zoo", storage_options={**radosgw.storage_options(), **extra})
    assert isinstance(backend, S3Backend)
    return backend


def test_server_still_refuses_quoted_etags_in_if_match(radosgw: Any, rgw_bucket: str) -> None:
    """The server behaviour this backend works around; if radosgw changes, this says so."""
    from botocore.exceptions import ClientError

    s3 = radosgw.client()
    etag = s3.put_object(Bucket=rgw_bucket, Key="k", Body=b"1")["ETag"]
    assert etag.startswith('"')
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=rgw_bucket, Key="k", Body=b"2", IfMatch=etag)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    s3.put_object(Bucket=rgw_bucket, Key="k", Body=b"2", IfMatch=etag.strip('"'))


def test_probe_finds_compare_and_swap_with_bare_etags(radosgw: Any, rgw_bucket: str) -> None:
    backend = _backend(radosgw, rgw_bucket)
    assert backend.cas_report is None  # nothing probed before the first manifest write
    assert backend.probe_cas() is True
    assert backend.capabilities.atomic_cas
    assert backend.cas_report is not None and "bare" in backend.cas_report
    assert list(backend.list("tmp/")) == []  # the probe cleans up after itself


def test_update_of_an_existing_manifest(radosgw: Any, rgw_bucket: str) -> None:
    """The reported failure: the second compare-and-swap (If-Match) of a key never succeeded."""
    backend = _backend(radosgw, rgw_bucket)
    first = backend.put_cas("manifests/m.toml", b"v1", expected=None)
    second = backend.put_cas("manifests/m.toml", b"v2", expected=first)
    third = backend.put_cas("manifests/m.toml", b"v3", expected=second)
    assert backend.get_versioned("manifests/m.toml") == Versioned(b"v3", third)
    with pytest.raises(ConflictError, match="412"):
        backend.put_cas("manifests/m.toml", b"stale", expected=second)


def test_publish_several_versions(radosgw: Any, rgw_bucket: str, tmp_path: Path) -> None:
    url = f"s3://{rgw_bucket}/zoo"
    options = radosgw.storage_options()
    zoo, created = init_store(url, config=SMALL, storage_options=options)
    assert created
    for i in range(3):
        src = tmp_path / f"v{i}"
        src.mkdir()
        (src / "weights.bin").write_bytes(os.urandom(20_000) + bytes([i]))
        publish(zoo, "m", f"1.{i}.0", [src / "weights.bin"], arch="x86_64", check=False)
    assert sorted(str(v) for v in open_store(url, storage_options=options).manifest("m").versions) == [
        "1.0.0", "1.1.0", "1.2.0",
    ]


def test_racing_compare_and_swap_without_client_retries(radosgw: Any, rgw_bucket: str) -> None:
    """With our retries off, radosgw's 500s for lost races reach put_cas: each must be a
    ConflictError (the caller re-reads), and no increment may be lost."""
    backend = _backend(radosgw, rgw_bucket, max_attempts=1)
    key = "manifests/counter.toml"
    threads, per_thread = 8, 6
    padding = b"#" * 2_000_000  # large bodies widen the race window, as in docs/radosgw.md
    barrier = threading.Barrier(threads)
    conflicts: list[str] = []
    lock = threading.Lock()

    def work(_: int) -> None:
        barrier.wait()
        done = 0
        while done < per_thread:
            try:
                current = backend.get_versioned(key)
                value, token = int(current.data.split(b"\n", 1)[0]), current.token
            except ObjectNotFoundError:
                value, token = 0, None
            try:
                backend.put_cas(key, str(value + 1).encode() + b"\n" + padding, expected=token)
            except ConflictError as e:
                with lock:
                    conflicts.append(str(e))
                continue
            done += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    assert int(backend.get(key).split(b"\n", 1)[0]) == threads * per_thread
    assert conflicts, "no race happened: the test proves nothing"
    print(f"{len(conflicts)} conflicts, {sum('500' in c for c in conflicts)} of them as HTTP 500")
