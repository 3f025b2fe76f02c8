"""Filling the local cache for a sync: which needed files it lacks, and fetching them.

    needed blobs  ->  check: absent, damaged (dropped) or ok (hashed unless its stamp holds)
    missing small files: their recipes (from a remote store RECIPE_FETCHES requests at a time),
        then their chunks in a few ranged reads (files published together sit back to back in
        one pack), each file verified and put into the cache on this thread
    the rest: `Cache.ensure` per file, a few at a time

A cold sync of thousands of small files is mostly this: read per file, the batch costs one
recipe read and one file creation; before, each file also had its own open, read and close of
its pack, and from a remote store its own ranged request, four files at a time (2,000 files of
4 KiB from radosgw on loopback: 9.8 s before, 4.7 s now; docs/remote-stores.md).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from zoostore.core.digest import Digest
from zoostore.core.errors import BlobNotFoundError, IntegrityError, NotFoundError, OfflineError, ZooError
from zoostore.core.progress import Progress
from zoostore.core.records import dataclass

if TYPE_CHECKING:
    from concurrent.futures import Future

    from zoostore.documents.lockfile import Lock
    from zoostore.repository import Store
    from zoostore.storage.blobs import BlobStore
    from zoostore.storage.cache import Cache
    from zoostore.storage.local_index import LocalIndex
    from zoostore.storage.segments import LocalChunk
    from zoostore.storage.recipe import ChunkRef, Recipe

#: Files fetched into the cache concurrently by one sync from a remote store (each waits on
#: requests), and from a local one, where each file's thread reads, decodes, writes and hashes
#: on its own (zoostore.storage.blobs) and more threads than cores only trade the GIL: a first
#: sync of release 1 took 385 against 422 ms with 2 instead of 4 (11 alternating rounds), 437
#: against 447 and 404 against 432 (15 rounds; CPU 590 against 637 ms) in two more runs.
SYNC_FILES_IN_FLIGHT = 4
LOCAL_FILES_IN_FLIGHT = 2

#: Raw bytes of small files read in one batch (ranged reads of up to a segment each); a batch
#: is held twice while it is split into files (segment buffers, then each chunk's bytes).
BATCH_BYTES = 8 * 1024 * 1024
#: The same from a local store, where a batch's reads wait on no request. A batch holds all its
#: segments until its files are written, more than the buffer pool keeps spare, so a larger one
#: takes buffers touched for the first time (a page fault per 4 KiB, ~3 µs each on the 2-core
#: VM): a first sync of release 1 made 8,600 page faults with 2 MiB batches against 11,000 with
#: 8 MiB (user time 307 against 342 ms); 2,000 small files took 288 against 290 ms.
LOCAL_BATCH_BYTES = 2 * 1024 * 1024
#: From a remote store, the recipes of this many small files are fetched ahead at once, by
#: RECIPE_FETCHES threads (one request each: latency, not bandwidth); the BlobStore remembers
#: 4,096 recipes, so a sync of more small files fetches them part by part.
RECIPES_AHEAD = 1024
RECIPE_FETCHES = 16
#: Rounds in which sync fetches again the cached files a concurrent `zoostore cache prune`
#: removed before they were placed (`refill_gone`).
REFILLS = 3


@dataclass(frozen=True, slots=True)
class Need:
    """A blob the cache must hold, and whether its cached copy must be re-hashed even when its
    verified stamp holds (`--verify`). Without it a cached copy is re-hashed when its stat moved
    (`Cache.check`): a write through a project's hard link changes the shared inode's ctime."""

    model: str
    what: str
    suspect: bool
    size: int = 0


def check_cache(cache: Cache, needed: Mapping[Digest, Need], warn: Callable[[str], None]) -> set[Digest]:
    """The needed blobs the cache must fetch: absent ones, and damaged ones, which `Cache.check`
    dropped (`warn` is told). A cached file is hashed unless its verified stamp still matches
    its stat; a suspect one (see Need) always."""
    if needed and not os.path.isdir(cache.root / "blobs"):
        return set(needed)   # no blobs/ folder: a cold cache, one stat instead of one per file
    missing = set()
    for blob, need in needed.items():
        found = cache.check(blob, recheck=need.suspect)
        if found == "damaged":
            warn(f"the cached file for {need.what} ({cache.blob_path(blob)}) no longer hashes to {blob}: "
                 f"dropped it and fetching it again")
        if found != "ok":
            missing.add(blob)
    return missing


def fill_cache(cache: Cache, zoo: Store | None, needed: Mapping[Digest, Need], missing: set[Digest], *,
               lock: Lock, progress: Progress, sizes: dict[Digest, int] | None = None) -> dict[Digest, Path]:
    """Every needed blob in the cache, a few files at a time: small files are latency-bound,
    and one file's decode leaves cores idle while its next segment is fetched. From a local
    store the missing small files are read in batches on this thread instead (`_fill_small`),
    while the pool does the large ones: there nothing waits on latency, and threads creating
    files side by side only contend (with 4 of them each file creation cost 7× as much, and
    the GIL hand-offs more than the work). `sizes` gets the size of each file written here,
    as verified (a placer need not stat it again)."""
    from zoostore.core import cancel
    from zoostore.storage.cache import SMALL_FILE

    index = cache.local_index(batch=True)  # one per sync: each cached recipe is read at most once

    def fill(blob: Digest) -> Path:
        need = needed[blob]
        cancel.check()  # after Ctrl-C, files not started yet are skipped
        try:
            return cache.ensure(zoo.blobs if zoo else None, blob, model=need.model, progress=progress,
                                what=need.what, verify=False, index=index)
        except BlobNotFoundError:
            raise NotFoundError(f"{need.what} (blob {blob}) is gone from the store {lock.store}: it was deleted "
                                f"(gc?) or never published. Run 'zoostore lock --upgrade {need.model}' to move to a "
                                f"version the store has") from None

    local = zoo is None or zoo.blobs.backend.url.startswith("file:")
    here = [blob for blob, need in needed.items() if need.size <= SMALL_FILE]
    # Largest first: the longest file starts at once instead of finishing last, alone.
    pooled = sorted((blob for blob in needed if needed[blob].size > SMALL_FILE), key=lambda blob: -needed[blob].size)
    out: dict[Digest, Path] = {}
    try:
        queue = _Queue(pooled)
        pool: _Drainers | _Remote = _Drainers() if local else _Remote()
        with contextlib.ExitStack() as stack:
            if zoo is not None and local:
                # One pool of read buffers for all the files: per file, the pool emptied whenever
                # no read was under way and each new buffer's pages faulted in again (~1,500 more
                # page faults per first sync of release 1, ~3 µs each on the 2-core VM). Remote
                # syncs keep their four files' reads in flight, and their pool with them.
                stack.enter_context(zoo.blobs.keeping_buffers())
            stack.enter_context(cancel.on_interrupt(pool))
            stack.enter_context(queue.stopped_by_errors())
            # Started inside: a Ctrl-C while a thread starts still stops and joins the others.
            pool.start(queue, fill)
            if zoo is not None:
                out = _fill_small(cache, zoo.blobs, [b for b in here if b in missing], needed, index,
                                  {} if sizes is None else sizes, fetch_ahead=not local, progress=progress)
            rest = [blob for blob in here if blob not in out]
            # The rest one by one: from a local store on this thread (creating files side by side
            # only contends), from a remote one on the pool (each waits on requests).
            out.update(zip(rest, pool.map(fill, rest)))
            if local:
                # This thread takes large files too once its small ones are done (the last ~45%
                # of a first sync of release 1 it only waited for the pool).
                out.update(queue.drain(fill))
            for done in pool.results():
                out.update(done)
            return out
    finally:
        index.flush()


class _Drainers:
    """From a local store: LOCAL_FILES_IN_FLIGHT threads draining the queue of large files
    (`map` runs on the calling thread: creating files side by side only contends). Plain
    threads: a ThreadPoolExecutor would import concurrent.futures and logging, ~3 ms of a
    first sync's start on one core, for nothing a pool does here."""

    def __init__(self) -> None:
        self._done: list[dict[Digest, Path]] = []
        self._failed: list[BaseException] = []
        self._threads: list[threading.Thread] = []   # the started ones

    def start(self, queue: _Queue, fill: Callable[[Digest], Path]) -> None:
        for i in range(LOCAL_FILES_IN_FLIGHT):
            thread = threading.Thread(target=self._drain, args=(queue, fill), name=f"zoo-fill-{i}")
            thread.start()
            self._threads.append(thread)

    def _drain(self, queue: _Queue, fill: Callable[[Digest], Path]) -> None:
        try:
            self._done.append(queue.drain(fill))
        except BaseException as exc:   # raised by `results`, on the thread that waits for them
            self._failed.append(exc)

    def map(self, fill: Callable[[Digest], Path], blobs: list[Digest]) -> Iterator[Path]:
        return map(fill, blobs)

    def results(self) -> list[dict[Digest, Path]]:
        """What each thread filled, once all are done; the first failure raised instead."""
        self.shutdown()
        if self._failed:
            raise self._failed[0]
        return self._done

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Wait for the threads, always (`wait` is for the `Joinable` shape: `on_interrupt`
        waits anyway); each finishes the file it is on, and a stop request or a failure
        (`_Queue`) ends what they take."""
        for thread in self._threads:
            thread.join()


class _Remote:
    """From a remote store: SYNC_FILES_IN_FLIGHT pool threads draining the queue of large
    files, the same pool then taking the small files left over (`map`: each waits on requests)."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=SYNC_FILES_IN_FLIGHT)
        self._drains: list[Future[dict[Digest, Path]]] = []

    def start(self, queue: _Queue, fill: Callable[[Digest], Path]) -> None:
        self._drains += [self._pool.submit(queue.drain, fill) for _ in range(SYNC_FILES_IN_FLIGHT)]

    def map(self, fill: Callable[[Digest], Path], blobs: list[Digest]) -> Iterator[Path]:
        return self._pool.map(fill, blobs)

    def results(self) -> list[dict[Digest, Path]]:
        return [drain.result() for drain in self._drains]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


class _Queue:
    """Large files for several threads to fill, in order (largest first); the first failure
    stops the others taking more (each finishes the file it is on) and is raised by the thread
    that met it."""

    def __init__(self, blobs: list[Digest]) -> None:
        self._todo = list(reversed(blobs))   # pop() takes the first
        self._lock = threading.Lock()
        self._failed = False

    def drain(self, fill: Callable[[Digest], Path]) -> dict[Digest, Path]:
        done: dict[Digest, Path] = {}
        while True:
            with self._lock:
                if self._failed or not self._todo:
                    return done
                blob = self._todo.pop()
            try:
                done[blob] = fill(blob)
            except BaseException:
                self._failed = True
                raise

    @contextlib.contextmanager
    def stopped_by_errors(self) -> Iterator[None]:
        """A failure in the block (the calling thread's own files) also stops the threads
        taking more: joining them then waits for the files they are on, not the whole queue."""
        try:
            yield
        except BaseException:
            self._failed = True
            raise


def _fill_small(cache: Cache, blobs: BlobStore, todo: list[Digest], needed: Mapping[Digest, Need],
                index: LocalIndex, sizes: dict[Digest, int], *, fetch_ahead: bool = False,
                progress: Progress | None = None) -> dict[Digest, Path]:
    """Cache the small files of `todo` that take no chunk from a cached file and have no delta
    frame and no partial file, their chunks read in batches (`_read_batch`); the cached paths.
    The others, and files whose recipe or batch failed, are left to `Cache.ensure`, which
    reads each alone and says what is wrong with it. With `fetch_ahead` (a remote store) the
    recipes are fetched RECIPE_FETCHES at a time, RECIPES_AHEAD files ahead, each advancing
    the task "fetch small files" (the bar of "sync files" moves only as files are placed)."""
    out: dict[Digest, Path] = {}
    # partial/: without the folder (most caches) no file has one, and no stat per file
    partials = bool(todo) and os.path.isdir(cache.root / "partial")
    batch: list[Recipe] = []
    chunks: dict[str, Mapping[Digest, LocalChunk]] = {}
    size = 0
    fetcher = None
    if fetch_ahead:
        from concurrent.futures import ThreadPoolExecutor

        fetcher = ThreadPoolExecutor(max_workers=RECIPE_FETCHES, thread_name_prefix="zoo-recipes")
    task = "fetch small files"

    def remember(blob: Digest) -> None:
        _remembered(blobs, blob)
        if progress is not None:
            progress.advance(task)

    if fetcher is not None and progress is not None and todo:
        progress.start(task, len(todo), unit="files")
    try:
        for start in range(0, len(todo), RECIPES_AHEAD):
            if fetcher is not None:
                list(fetcher.map(remember, todo[start:start + RECIPES_AHEAD]))
            batch, size = _batch_small(cache, blobs, todo[start:start + RECIPES_AHEAD], needed, index, out, sizes,
                                       BATCH_BYTES if fetch_ahead else LOCAL_BATCH_BYTES,
                                       chunks, partials, batch, size)
    finally:
        if fetcher is not None:
            fetcher.shutdown(wait=True, cancel_futures=True)
            if progress is not None and todo:
                progress.done(task)
    _read_batch(cache, blobs, batch, needed, index, out, sizes)
    return out


def _remembered(blobs: BlobStore, blob: Digest) -> None:
    """Fetch `blob`'s recipe into the BlobStore's memory; a failure is left for the caller's own
    read, which says what is wrong."""
    try:
        blobs.recipe(blob)
    except ZooError:
        pass


def _batch_small(cache: Cache, blobs: BlobStore, todo: list[Digest], needed: Mapping[Digest, Need],
                 index: LocalIndex, out: dict[Digest, Path], sizes: dict[Digest, int], batch_bytes: int,
                 chunks: dict[str, Mapping[Digest, LocalChunk]], partials: bool,
                 batch: list[Recipe], size: int) -> tuple[list[Recipe], int]:
    """Add the files of `todo` that `_fill_small` takes to `batch`, reading it whenever it holds
    `batch_bytes`; the batch still open and its size."""
    from zoostore.storage.cache import SMALL_FILE

    for blob in todo:
        try:
            recipe = blobs.recipe(blob)
        except ZooError:
            continue
        model = needed[blob].model
        known = chunks.get(model)
        if known is None:
            known = chunks[model] = index.chunks(model)   # live: files noted later join it
        if (recipe.size > SMALL_FILE or any(ref.base is not None or ref.chunk in known for ref in recipe.chunks)
                or (partials and os.path.exists(cache.partial_path(blob)))):
            continue
        batch.append(recipe)
        size += recipe.size
        if size >= batch_bytes:
            _read_batch(cache, blobs, batch, needed, index, out, sizes)
            batch, size = [], 0
    return batch, size


def _read_batch(cache: Cache, blobs: BlobStore, batch: list[Recipe], needed: Mapping[Digest, Need],
                index: LocalIndex, out: dict[Digest, Path], sizes: dict[Digest, int]) -> None:
    """The chunks of `batch` in pack order (neighbouring frames in one ranged read), then each
    file put into the cache (verified as a whole) and noted in `index`. A file that hashes
    wrong is left to `Cache.ensure`, whose read verifies each chunk and names a damaged one."""
    if not batch:
        return
    refs: dict[Digest, ChunkRef] = {}
    for recipe in batch:
        for ref in recipe.chunks:
            refs.setdefault(ref.chunk, ref)
    ordered = sorted(refs.values(), key=lambda r: (r.pack.hex, r.offset))
    with contextlib.ExitStack() as stack:
        try:
            # Chunks unhashed: each file is hashed whole as it is cached (`put_small`).
            spans = stack.enter_context(blobs.chunk_spans(ordered, blob=batch[0].blob, check=False))
        except ZooError:
            return   # each file alone then, through `Cache.ensure`
        for recipe in batch:
            try:
                out[recipe.blob] = path = cache.put_small(recipe, _file_bytes(recipe, spans))   # verified
            except IntegrityError:
                continue   # `Cache.ensure` reads it again, each chunk verified: that names a damaged one
            sizes[recipe.blob] = recipe.size
            index.note(needed[recipe.blob].model, recipe.blob, recipe, path=path)


def _file_bytes(recipe: Recipe, spans: Mapping[Digest, tuple[memoryview, int, int]]) -> bytes | memoryview:
    """A small file's bytes from its chunks' spans: a view of the segment where they sit back
    to back (a file's chunks do, unless another file of the batch shares one), else joined.
    Copying each chunk out and joining them made a small file cost twice a large one's CPU
    per byte (24 MB of release 1's small files: 68-82 ms on the syncing thread)."""
    parts = recipe.chunks
    if not parts:
        return b""
    seg, start, end = spans[parts[0].chunk]
    for ref in parts[1:]:
        other, a, b = spans[ref.chunk]
        if other is not seg or a != end:
            return b"".join(s[x:y] for s, x, y in (spans[r.chunk] for r in parts))
        end = b
    return seg[start:end]


def refill_gone(cache: Cache, needed: Mapping[Digest, Need], gone: dict[str, Digest],
                store: Callable[[], Store | None], place: Callable[[list[str], Mapping[Digest, Path]], dict[str, Digest]],
                *, lock: Lock, progress: Progress) -> None:
    """Fetch again, and `place`, the files (path -> blob) whose cached copy vanished between the
    fill and their placing: `zoostore cache prune` takes no lock (correctness never depends on
    one), so a file it removes may be one a running sync checked a moment ago. `store()` is the
    store, None offline. Up to REFILLS rounds, then an error; never a partial placement."""
    for _ in range(REFILLS):
        again = {blob: needed[blob] for blob in gone.values()}
        zoo = store()
        if zoo is None:
            raise OfflineError(f"{_gone_files(needed, gone)} vanished from the cache {cache.root} while this sync "
                               f"placed them (a 'zoostore cache prune' running beside it?) and offline mode forbids "
                               f"fetching them again; run the sync again (online, or once the cache holds them)")
        gone = place(list(gone), fill_cache(cache, zoo, again, set(again), lock=lock, progress=progress))
        if not gone:
            return
    raise ZooError(f"{_gone_files(needed, gone)} vanished from the cache {cache.root} each of {REFILLS} times this "
                   f"sync fetched them again before placing them: is 'zoostore cache prune' running in a loop? "
                   f"Run the sync again once it stopped")


def _gone_files(needed: Mapping[Digest, Need], gone: Mapping[str, Digest]) -> str:
    names = sorted({needed[blob].what for blob in gone.values()})
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
