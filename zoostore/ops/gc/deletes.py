"""gc's checked deletes: look at every candidate again right before its delete request, and send
the request within the settle window of that look (docs/gc.md, "Safety", case 3).

Two ways to look, the same guarantee:

    stat     one HEAD per candidate, DELETE_BATCH candidates at a time (16 in parallel)
    listing  the candidates' prefix (blobs/ or packs/) page by page, 1,000 objects per request;
             after each page, one delete of the candidates it showed old

A look shows a candidate old (mtime < cutoff: delete it), fresh (a publisher freshened or
re-uploaded it since the plan: keep it, and its packs), or absent (gone already: nothing to do).
The settle window counts from the instant *before* the look was requested (the stats of a batch,
a page request: `Backend.list_pages` reads no page ahead), so every observation in it is later.
A look that took more than half the window is not trusted: a batch of stats is split and looked
at again, a page's old candidates are stat-ed instead.

A listing is used when the backend's listings are as fresh as its stats
(`Capabilities.fresh_listing`) and it takes fewer requests: ceil(objects under the prefix /
1,000) pages against one stat per candidate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import field

from zoostore.core.errors import ObjectNotFoundError
from zoostore.core.progress import Progress
from zoostore.core.records import dataclass
from zoostore.ops.gc.results import GcResult
from zoostore.storage.backends.base import LIST_PAGE, Backend, ObjectInfo

#: Candidates stat-ed and deleted per request: small enough that a batch's stats and its delete
#: fit in the settle window on a slow link; S3 allows 1,000 keys per DeleteObjects.
DELETE_BATCH = 100

#: Concurrent stats.
STAT_WORKERS = 16


@dataclass(slots=True)
class Deletion:
    """What one checked delete did: keys deleted, and keys kept because they turned out fresh."""

    deleted: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)


def delete_checked(backend: Backend, keys: Sequence[str], *, prefix: str, listed: int, cutoff: float,
                   window: float, task: str, progress: Progress, result: GcResult) -> Deletion:
    """Delete the `keys` (all under `prefix`, under which the survey listed `listed` objects)
    that a look right before the request still shows older than `cutoff`."""
    out = Deletion()
    progress.start(task, len(keys), unit="objects")
    try:
        if use_listing(backend, len(keys), listed):
            late = _by_listing(backend, keys, prefix, cutoff, window, out, progress, task, result)
        else:
            late = list(keys)
        _by_stat(backend, late, cutoff, window, out, progress, task, result)
    finally:
        progress.done(task)
    return out


def use_listing(backend: Backend, candidates: int, listed: int) -> bool:
    """A listing takes fewer requests than a stat per candidate (and is as fresh)."""
    return backend.capabilities.fresh_listing and math.ceil(listed / LIST_PAGE) < candidates


def _by_listing(backend: Backend, keys: Sequence[str], prefix: str, cutoff: float, window: float,
                out: Deletion, progress: Progress, task: str, result: GcResult) -> list[str]:
    """Walk `prefix` page by page; after each page delete the candidates it showed old. Returns
    the old candidates whose page took too long to trust (the caller stats them)."""
    wanted = set(keys)
    late: list[str] = []
    pages = backend.list_pages(prefix)
    while wanted:
        asked = time.monotonic()  # every object in the next page was observed after this
        page = next(pages, None)
        if page is None:
            break  # the candidates not seen are gone already
        seen = [info for info in page if info.key in wanted]
        wanted.difference_update(info.key for info in seen)
        old = [info.key for info in seen if info.mtime < cutoff]
        out.fresh.extend(info.key for info in seen if info.mtime >= cutoff)
        if old and time.monotonic() - asked > window / 2:
            late.extend(old)  # not advanced here: _by_stat does
            progress.advance(task, len(seen) - len(old))
            continue
        if old:
            backend.delete(old)
            out.deleted.extend(old)
            _check_window(asked, window, result)
        progress.advance(task, len(seen))
    return late


def _by_stat(backend: Backend, keys: Sequence[str], cutoff: float, window: float, out: Deletion,
             progress: Progress, task: str, result: GcResult) -> None:
    """Stat `keys` in batches; delete each batch's old ones at once. A batch whose stats took
    more than half the window is split and stat-ed again."""

    def stat(key: str) -> ObjectInfo | None:
        try:
            return backend.stat(key)
        except ObjectNotFoundError:
            return None

    def run(batch: Sequence[str], pool: ThreadPoolExecutor) -> None:
        asked = time.monotonic()
        infos = list(pool.map(stat, batch))
        if time.monotonic() - asked > window / 2:
            if len(batch) > 1:
                half = len(batch) // 2
                run(batch[:half], pool)
                run(batch[half:], pool)
            else:
                out.fresh.extend(batch)
                result.notes.append(f"kept {batch[0]}: stat-ing it took longer than half the "
                                    f"settle window ({window:g} s)")
            return
        old = [k for k, info in zip(batch, infos) if info is not None and info.mtime < cutoff]
        out.fresh.extend(k for k, info in zip(batch, infos) if info is not None and info.mtime >= cutoff)
        if old:
            backend.delete(old)
            out.deleted.extend(old)
            _check_window(asked, window, result)
        progress.advance(task, len(batch))

    if not keys:
        return
    with ThreadPoolExecutor(max_workers=STAT_WORKERS) as pool:
        for start in range(0, len(keys), DELETE_BATCH):
            run(keys[start : start + DELETE_BATCH], pool)


def _check_window(asked: float, window: float, result: GcResult) -> None:
    elapsed = time.monotonic() - asked
    if elapsed > window:
        result.notes.append(
            f"a delete request went out {elapsed:.1f} s after the stats or listing that showed its "
            f"objects old, beyond the "
            f"{window:g} s settle window: a publish racing it may have reused a deleted "
            f"object; run 'zoostore verify'"
        )
