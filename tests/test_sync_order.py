"""The sync's pool fills the largest files first, so that the longest file does not start last
and finish alone while the other threads are idle."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from zoostore.core.digest import Digest
from zoostore.core.errors import IntegrityError
from zoostore.core.progress import NullProgress
from zoostore.ops import sync_fill
from zoostore.ops.sync_fill import SYNC_FILES_IN_FLIGHT, Need, fill_cache
from zoostore.storage.cache import SMALL_FILE


class RecordingCache:
    """Records the order in which `ensure` starts on each blob (what the pool picked first)."""

    def __init__(self) -> None:
        self.started: list[Digest] = []
        self.lock = threading.Lock()

    def local_index(self, batch: bool) -> Any:
        class Index:
            def flush(self) -> None:
                pass
        return Index()

    def ensure(self, blobs: object, blob: Digest, **_: object) -> Path:
        with self.lock:
            self.started.append(blob)
        return Path("/nonexistent") / blob.hex


def test_the_largest_files_are_filled_first(monkeypatch: Any) -> None:
    sizes = [SMALL_FILE + 1 + i * 1000 for i in range(16)]
    random.Random(7).shuffle(sizes)
    needed = {Digest.of(str(i).encode()): Need("m", f"file {i}", False, size) for i, size in enumerate(sizes)}
    cache = RecordingCache()
    out = fill_cache(cache, None, needed, set(needed), lock=None, progress=NullProgress())  # type: ignore[arg-type]
    assert set(out) == set(needed)
    by_size = sorted(needed, key=lambda b: -needed[b].size)
    # Threads take the queue in order: a file starts at most SYNC_FILES_IN_FLIGHT places early or late.
    assert cache.started[0] in by_size[:SYNC_FILES_IN_FLIGHT]
    assert cache.started[-1] in by_size[-SYNC_FILES_IN_FLIGHT:]
    assert sync_fill.SYNC_FILES_IN_FLIGHT < len(sizes) // 2


class FailingCache(RecordingCache):
    """`ensure` fails on one blob, as a damaged pack would; every other file takes `delay` s."""

    def __init__(self, bad: Digest, delay: float = 0.0) -> None:
        super().__init__()
        self.bad, self.delay = bad, delay

    def ensure(self, blobs: object, blob: Digest, **kw: object) -> Path:
        path = super().ensure(blobs, blob, **kw)
        if blob == self.bad:
            raise IntegrityError(f"chunk of {blob} is corrupt")
        time.sleep(self.delay)
        return path


def test_a_large_file_failing_on_a_fill_thread_is_raised_by_the_sync() -> None:
    # From a local store the large files are filled by plain threads (sync_fill._Drainers), not
    # a pool whose futures re-raise: a failure there must still reach the caller, whichever
    # thread met it, and every thread has stopped when it does.
    sizes = [SMALL_FILE + 1 + i * 1000 for i in range(12)]
    needed = {Digest.of(str(i).encode()): Need("m", f"file {i}", False, size) for i, size in enumerate(sizes)}
    for bad in (max(needed, key=lambda b: needed[b].size), min(needed, key=lambda b: needed[b].size)):
        cache = FailingCache(bad)
        before = threading.active_count()
        with pytest.raises(IntegrityError, match=f"chunk of {bad} is corrupt"):
            fill_cache(cache, None, needed, set(needed), lock=None, progress=NullProgress())  # type: ignore[arg-type]
        assert bad in cache.started
        assert threading.active_count() == before


def test_a_failure_on_the_syncing_thread_stops_the_fill_threads_taking_more() -> None:
    # Joining the fill threads after the syncing thread's own failure waits for the files they
    # are on, not for the whole queue of large files.
    large = {Digest.of(f"large {i}".encode()): Need("m", f"large {i}", False, SMALL_FILE + 1 + i) for i in range(40)}
    small = Digest.of(b"small")
    needed = {**large, small: Need("m", "small", False, 10)}
    cache = FailingCache(small, delay=0.02)   # the small file fails at once, on the syncing thread
    with pytest.raises(IntegrityError, match=f"chunk of {small} is corrupt"):
        fill_cache(cache, None, needed, set(needed), lock=None, progress=NullProgress())  # type: ignore[arg-type]
    started = [b for b in cache.started if b in large]
    assert len(started) < len(large) // 4, f"{len(started)} of {len(large)} large files were still started"


def test_ctrl_c_while_the_fill_threads_start_stops_and_joins_the_started_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    # A KeyboardInterrupt can land in Thread.start (it waits for the new thread): the threads
    # already started are stopped (the stop request) and joined before the interrupt goes on.
    large = {Digest.of(f"large {i}".encode()): Need("m", f"large {i}", False, SMALL_FILE + 1 + i) for i in range(40)}
    cache = FailingCache(Digest.of(b"no such file"), delay=0.02)
    start, starts = threading.Thread.start, []

    def interrupted_second_start(self: threading.Thread) -> None:
        starts.append(self.name)
        if len(starts) == 2:
            raise KeyboardInterrupt
        start(self)

    before = threading.active_count()
    monkeypatch.setattr(threading.Thread, "start", interrupted_second_start)
    with pytest.raises(KeyboardInterrupt):
        fill_cache(cache, None, large, set(large), lock=None, progress=NullProgress())  # type: ignore[arg-type]
    monkeypatch.undo()
    assert threading.active_count() == before
    assert 1 <= len(cache.started) < len(large) // 4
    from zoostore.core import cancel
    assert not cancel.requested()   # the request lasted while the interrupted fill unwound
