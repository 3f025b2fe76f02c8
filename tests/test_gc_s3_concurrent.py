"""gc in a loop while other processes publish, on the loopback S3 server (moto).

Each publisher process publishes a few versions of its own model (each deduplicated against the
previous one, so old packs are reused and freshened), one version of a model every publisher
shares (compare-and-swap contention), a version that reuses a recipe it left behind in a
"crashed" publish, and leaves an aborted publish's packs as garbage. A publish that fails because
gc deleted something it reused is retried, as CI does. Meanwhile the test process runs gc with the
store's short grace period back to back. Afterwards every version a publisher reported is listed
and reads back verified, and gc did delete the garbage.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from test_gc import assert_all_readable, content, mutate, write_files
from zoostore.documents.store_config import Chunking, StoreConfig
from zoostore.ops.gc import plan_gc
from zoostore.repository import init_store, open_store

#: The store's grace period: long enough that every publish here finishes within G/2 even on
#: the serialised moto server, short enough that objects age out during the test.
GRACE = 6.0
SETTLE = 0.3
PUBLISHERS = 3
VERSIONS = 4
CONFIG = StoreConfig(chunking=Chunking(1024, 4096, 16384), pack_target_size=32 * 1024, grace_seconds=GRACE,
                     settle_seconds=SETTLE)


def _publisher(url: str, options: dict[str, Any], work: str, worker: int, out: str) -> None:
    from zoostore.core.errors import ConflictError
    from zoostore.ops.publish import publish

    zoo = open_store(url, storage_options=options)
    root = Path(work) / f"w{worker}"
    done: list[tuple[str, str]] = []

    def attempt(model: str, version: str, src: Path) -> None:
        for _ in range(5):  # CI retries a publish that lost a race with gc
            try:
                publish(zoo, model, version, [src], check=False)
                done.append((model, version))
                return
            except ConflictError:
                time.sleep(0.2)
        raise AssertionError(f"{model}@{version} failed five times")

    # Garbage: an aborted publish (packs, no recipe) and a crashed one (recipe, no manifest).
    aborted = write_files(root / "aborted", {"a.bin": content(9000 + worker, n=80_000)}) / "a.bin"
    writer = zoo.blobs.writer()
    try:
        writer.add(aborted)
    finally:
        writer.abort()
    crashed = content(8000 + worker, n=30_000)
    zoo.blobs.put_files([write_files(root / "crashed", {"c.bin": crashed}) / "c.bin"])

    data = content(100 + worker, n=60_000)
    for i in range(VERSIONS):
        data = mutate(data, i, size=8_000)
        attempt(f"m{worker}", f"1.{i}.0", write_files(root / f"v{i}", {"w.bin": data}))
        time.sleep(0.7)  # let objects age past G/2 so the next version freshens what it reuses
    attempt("shared", f"2.{worker}.0", write_files(root / "shared", {"s.bin": mutate(data, 99)}))
    attempt(f"m{worker}", "9.0.0", write_files(root / "again", {"c.bin": crashed}))
    Path(out).write_text(json.dumps(done))


@pytest.mark.slow
def test_gc_loop_while_publishing_on_s3(tmp_path: Path, s3_bucket: str, s3_storage_options: dict[str, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"s3://{s3_bucket}/zoo"
    zoo, _ = init_store(url, config=CONFIG, storage_options=s3_storage_options)
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"done-{w}.json" for w in range(PUBLISHERS)]
    procs = [ctx.Process(target=_publisher, args=(url, s3_storage_options, str(tmp_path), w, str(outs[w])))
             for w in range(PUBLISHERS)]
    for p in procs:
        p.start()
    runs = deleted = 0
    deadline = time.monotonic() + 90
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        result = plan_gc(zoo).execute()
        runs += 1
        deleted += result.recipes_deleted + result.packs_deleted
    for p in procs:
        p.join(30)
        assert p.exitcode == 0, f"publisher {p.name} failed (exit {p.exitcode})"
    # Let the garbage age past the grace period, then one more run.
    time.sleep(GRACE + 1.5)
    final = plan_gc(zoo).execute()
    deleted += final.recipes_deleted + final.packs_deleted

    print(f"gc runs {runs}, deleted {deleted}")
    published = [tuple(x) for out in outs for x in json.loads(out.read_text())]
    assert len(published) == PUBLISHERS * (VERSIONS + 2)
    check = open_store(url, storage_options=s3_storage_options)
    for model, version in published:
        assert version in check.manifest(model).versions, f"{model}@{version} was lost"
    assert assert_all_readable(url, tmp_path, storage_options=s3_storage_options) == len(published)
    assert runs >= 3, f"gc ran only {runs} times while publishers worked"
    assert deleted > 0, "gc never deleted the aborted and crashed publishes' objects"
    # No retained version lists a recipe the store lacks.
    assert not plan_gc(zoo, now=time.time() + 10 * GRACE).problems
