"""The sync's pool fills the largest files first, so that the longest file does not start last
and finish alone while the other threads are idle."""

from __future__ import annotations

import random
import threading
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
    """`ensure` fails on one blob, as a damaged pack would."""

    def __init__(self, bad: Digest) -> None:
        super().__init__()
        self.bad = bad

    def ensure(self, blobs: object, blob: Digest, **kw: object) -> Path:
        path = super().ensure(blobs, blob, **kw)
        if blob == self.bad:
            raise IntegrityError(f"chunk of {blob} is corrupt")
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
