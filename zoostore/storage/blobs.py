"""Blobs over one backend: recipes (cached), and the read path. The write path is
zoostore.storage.writer; the publish/gc handshake zoostore.storage.handshake.

    <store>/packs/<aa>/<pack id>   chunk frames + footer        (zoostore.storage.pack)
    <store>/blobs/<aa>/<blob id>   recipe: file size + chunk refs (zoostore.storage.recipe)

Read path: a recipe's chunks are grouped into segments (zoostore.storage.segments): chunks close
together in one pack are one ranged read, and chunks a local cached file holds are read from it.
From a remote store segments are fetched by reader threads (alive as long as the BlobStore) and
decoded, one per core, into one buffer each, with a bounded look-ahead; from a local store each is
read and decoded on the reading thread (a copy from the page cache: a hop to a thread cost more).
Each chunk is verified against its id (`get_file`: after a whole-file mismatch), the file goes to
a temp file beside the destination, is verified against the blob id, then renamed into place.

Delta frames (docs/format.md): their bases (named by the recipe; from a cached file or from the
store, neighbouring ones in one read) are loaded and verified first; the decoded chunk is verified
like every chunk. A recipe stored as edits of its previous one (format 3) is resolved when read.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import blake3

from zoostore.storage import segments
from zoostore.storage.backends.base import Backend
from zoostore.storage.params import StorageParams
from zoostore.core import cancel, forks
from zoostore.core.atomic import blame, keep_or_drop_partial, open_temp
from zoostore.core.digest import Digest
from zoostore.core.errors import (DAMAGED_PACK_ADVICE, BlobNotFoundError, FormatError, IntegrityError,
                                   ObjectNotFoundError, ZooError)
from zoostore.storage.pack import pack_key
from zoostore.core.progress import NullProgress, Progress
from zoostore.storage.recipe import ChunkRef, Recipe, RecipeEdits, blob_key, decode_stored
from zoostore.storage.segments import (LocalChunk, ReadStats, SegmentBuffers, in_order, plan_segments,
                                       reader_threads)

if TYPE_CHECKING:  # the writer (FastCDC, delta bases) is imported when something writes: sync never does
    from concurrent.futures import ThreadPoolExecutor   # reader threads: remote stores only (~3 ms)

    from zoostore.storage.writer import BlobWriter, Hashed, PutResult

#: Segments in flight while reading; memory is at most about 2 × LOOKAHEAD × the segment size.
LOOKAHEAD = 8


_reader = threading.local()


def _reader_thread() -> None:
    _reader.slot = True  # decodes within `_decode_slots` (see _fetch_into)


def _cpu_workers() -> int:
    return max(2, os.cpu_count() or 2)


class BlobStore:
    """Blobs over one backend. Thread-safe; recipes are cached in memory (they are immutable)."""

    def __init__(self, backend: Backend, config: StorageParams, *, workers: int | None = None) -> None:
        self.backend = backend
        self.config = config
        self.workers = workers or _cpu_workers()
        self.stats = ReadStats()
        local = backend.url.startswith("file:")
        self._reader_count = reader_threads(self.workers, local=local)
        self._segment = segments.segment_size(local=local)
        # A local store's segments are read and decoded on the reading thread (`_iter_segments`).
        self._inline = local
        # blob -> (recipe, monotonic time it was read). Entries expire after half the gc grace
        # period: `gc --repack` rewrites recipes and deletes the old packs a grace period later.
        self._recipes: OrderedDict[Digest, tuple[Recipe, float]] = OrderedDict()
        self.start_over()
        forks.start_over_after_fork(self)

    def start_over(self) -> None:
        """Locks, slots, buffers and threads as new: at creation, and in a forked child (where
        a lock or slot another parent thread held at the fork would stay taken for ever)."""
        self.stats._lock = threading.Lock()
        self._recipes_lock = threading.Lock()
        self._decode_slots = threading.BoundedSemaphore(self.workers)
        # Segments submitted, not yet taken (in_order); reused buffers (get_file): ranges, one per
        # reader and two for callers' own reads; segments, those in the slots and one per read.
        self._segment_slots = threading.BoundedSemaphore(2 * self._reader_count)
        self._range_buffers = SegmentBuffers(self._reader_count + 2, self._segment)
        self._segment_buffers = SegmentBuffers(2 * self._reader_count + 4, self._segment)
        # Reader threads live as long as this BlobStore (sync reads many files through one):
        # starting 4 threads per file cost more than decoding a small file. The pool's idle
        # threads exit when it is garbage-collected with the BlobStore.
        self._readers: ThreadPoolExecutor | None = None
        self._readers_pid = 0
        self._readers_lock = threading.Lock()

    # ------------------------------------------------------------------ recipes
    def _cached(self, blob: Digest) -> Recipe | None:
        with self._recipes_lock:
            entry = self._recipes.get(blob)
            if entry is None:
                return None
            if time.monotonic() - entry[1] > self.config.grace_seconds / 2:
                del self._recipes[blob]
                return None
            self._recipes.move_to_end(blob)
            return entry[0]

    def forget(self, blob: Digest | None = None) -> None:
        """Drop one cached recipe, or all of them (None)."""
        with self._recipes_lock:
            if blob is None:
                self._recipes.clear()
            else:
                self._recipes.pop(blob, None)

    def has_blob(self, blob: Digest) -> bool:
        return self._cached(blob) is not None or self.backend.exists(blob_key(blob))

    def recipe(self, blob: Digest) -> Recipe:
        """The blob's whole recipe; one stored as edits (format 3) is resolved against its base
        recipe, which is fetched (or taken from memory) once and remembered too."""
        cached = self._cached(blob)
        if cached is not None:
            return cached
        stored = self._stored(blob)
        if isinstance(stored, RecipeEdits):
            base: Recipe | RecipeEdits | None = self._cached(stored.against)
            if base is None:
                try:
                    base = self._stored(stored.against)
                except BlobNotFoundError:
                    raise IntegrityError(
                        f"recipe {blob_key(blob)} is stored as edits of recipe {blob_key(stored.against)}, which "
                        f"is not in the store {self.backend.url}: the store is damaged; run 'zoostore verify "
                        f"--repair'", obj=blob_key(blob), expected="present", actual="missing") from None
                if isinstance(base, Recipe):
                    self.remember(base)
            recipe = stored.resolve(base)  # base is not None: _stored raised otherwise
        else:
            recipe = stored
        self.remember(recipe)
        return recipe

    def _stored(self, blob: Digest) -> Recipe | RecipeEdits:
        try:
            data = self.backend.get(blob_key(blob))
        except ObjectNotFoundError:
            raise BlobNotFoundError(
                f"blob {blob} is not in the store {self.backend.url} (no recipe at "
                f"{blob_key(blob)}): it was never published here, or gc deleted it",
                key=blob_key(blob),
            ) from None
        self.stats.add(requests=1, fetched=len(data))
        return decode_stored(blob, data, max_chunk=self.config.chunking.largest)

    def remember(self, recipe: Recipe) -> None:
        with self._recipes_lock:
            self._recipes[recipe.blob] = (recipe, time.monotonic())
            self._recipes.move_to_end(recipe.blob)
            while len(self._recipes) > 4096:
                self._recipes.popitem(last=False)

    def known_chunks(self, blobs: Iterable[Digest]) -> dict[Digest, ChunkRef]:
        """Chunk id -> location for every chunk of these blobs (publish dedups against them).
        Blobs whose recipe is gone are skipped."""
        index: dict[Digest, ChunkRef] = {}
        for blob in blobs:
            try:
                recipe = self.recipe(blob)
            except (BlobNotFoundError, FormatError, IntegrityError):
                continue
            for ref in recipe.chunks:
                index.setdefault(ref.chunk, ref)
        return index

    # ------------------------------------------------------------------ writing
    def writer(self, *, known: Mapping[Digest, ChunkRef] | None = None,
               progress: Progress | None = None) -> BlobWriter:
        from zoostore.storage.writer import BlobWriter

        return BlobWriter(self, known=known or {}, progress=progress or NullProgress())

    def put_files(self, paths: Iterable[str | os.PathLike[str]], *,
                  known: Mapping[Digest, ChunkRef] | None = None,
                  progress: Progress | None = None,
                  hashed: Sequence[Hashed | None] | None = None,
                  previous: Sequence[Digest | None] | None = None) -> list[PutResult]:
        """Store files; `hashed[i]` (optional) is what the caller knows of `paths[i]` already, so
        that it is not hashed twice, and `previous[i]` the blob of its previous version, whose
        chunks are delta bases in a delta store (BlobWriter.add)."""
        paths = list(paths)
        given = list(hashed) if hashed is not None else [None] * len(paths)
        prev = list(previous) if previous is not None else [None] * len(paths)
        with self.writer(known=known, progress=progress) as w:
            results = [w.add(Path(p), hashed=h, previous=b)
                       for p, h, b in zip(paths, given, prev, strict=True)]
        return results

    # ------------------------------------------------------------------ reading
    def _load_segment(self, recipe: Recipe, kind: str, idx: list[int],
                      local: Mapping[Digest, LocalChunk] | None,
                      buffers: SegmentBuffers | None = None, tally: ReadStats | None = None,
                      check: bool = True) -> memoryview:
        """The raw bytes of the run `idx` (consecutive chunks of the file), each verified unless
        `check` is false (decode_run): a view of a buffer from `buffers` when given (`give` takes
        the view). Chunks from local files count in `tally` (default: this BlobStore's stats)."""
        cancel.check()  # a stopped read starts no new request
        refs = [recipe.chunks[i] for i in idx]
        size = sum(ref.raw_length for ref in refs)
        out = buffers.take(size) if buffers is not None else segments.unfilled(size)
        if kind == "remote":
            self._fetch_into(recipe, refs, out, 0, local, check)
            return memoryview(out)[:size]
        assert local is not None
        first = local[refs[0].chunk]
        try:
            with open(first.path, "rb") as f, memoryview(out) as whole:
                f.seek(first.offset)
                got = f.readinto(whole[:size])
        except OSError:
            got = 0
        stale: list[tuple[ChunkRef, int]] = []
        pos = reused = 0
        with memoryview(out) as view:
            for ref in refs:
                end = pos + ref.raw_length
                if end <= got and (not check or blake3.blake3(view[pos:end]).digest() == ref.chunk.raw):
                    reused += 1
                else:
                    stale.append((ref, pos))
                pos = end
        (self.stats if tally is None else tally).add(
            local_chunks=reused, local_bytes=size - sum(r.raw_length for r, _ in stale))
        for ref, pos in stale:
            # The cached copy changed under us: fetch this chunk from the store.
            self._fetch_into(recipe, [ref], out, pos, None, check)
        return memoryview(out)[:size]

    def chunk_bytes(self, refs: Sequence[ChunkRef], *, blob: Digest,
                    local: Mapping[Digest, LocalChunk] | None = None, check: bool = True) -> dict[Digest, bytes]:
        """Chunk id -> raw bytes of `refs` (`blob` names the file in errors), neighbouring frames
        in one read, on this thread; verified unless `check` is false."""
        with self.chunk_spans(refs, blob=blob, local=local, check=check) as spans:
            return {chunk: bytes(seg[start:end]) for chunk, (seg, start, end) in spans.items()}

    @contextlib.contextmanager
    def chunk_spans(self, refs: Sequence[ChunkRef], *, blob: Digest, local: Mapping[Digest, LocalChunk] | None = None,
                    check: bool = True) -> Iterator[dict[Digest, tuple[memoryview, int, int]]]:
        """Chunk id -> (segment, start, end): the raw bytes of each of `refs` are
        segment[start:end], read as `chunk_bytes` reads them but not copied out; chunks read
        together sit back to back in one segment, in the order of `refs`. The segments are
        valid inside the block only (their buffers go back to the pool after it)."""
        unique = tuple(dict.fromkeys(refs))
        spans: dict[Digest, tuple[memoryview, int, int]] = {}
        taken: list[memoryview] = []
        buffers = self._segment_buffers
        # Buffers pooled meanwhile: each segment's read buffer serves the next one, instead of
        # a fresh allocation whose every page faults on its first write.
        with self.keeping_buffers():
            if unique:
                sub = Recipe(blob, sum(r.raw_length for r in unique), unique)
                for kind, idx in plan_segments(sub, range(len(unique)), local, self._segment):
                    data = self._load_segment(sub, kind, idx, local, buffers, check=check)
                    taken.append(data)
                    pos = 0
                    for i in idx:
                        spans[unique[i].chunk] = (data, pos, pos + unique[i].raw_length)
                        pos += unique[i].raw_length
            yield spans
            for data in taken:   # not after an error: a view in its traceback may still read one
                buffers.give(data)

    @contextlib.contextmanager
    def keeping_buffers(self) -> Iterator[None]:
        """Reuse read buffers across the reads made inside (sync's files), not only within one."""
        with self._range_buffers.reading(), self._segment_buffers.reading():
            yield

    def _read_relocated(self, blob: Digest, refs: list[ChunkRef], out: bytearray, pos: int,
                        local: Mapping[Digest, LocalChunk] | None) -> bool:
        """Read `refs` into `out` from where the store's recipe of `blob` places them now, if
        elsewhere; False if not. A recipe kept in memory (up to G/2) can name a pack gc deleted
        after dropping the version, while a publish stored the same file again (new recipe, new
        packs): chunks are content-addressed, so the bytes are the same (verified again)."""
        self.forget(blob)
        try:
            where = {r.chunk: r for r in self.recipe(blob).chunks}
        except ZooError:
            return False
        moved = [where.get(r.chunk) for r in refs]
        if any(m is None for m in moved) or moved == refs:
            return False  # the store's recipe names the same places: the pack is really missing
        fresh = self.chunk_bytes([m for m in moved if m is not None], blob=blob, local=local)
        for ref in refs:
            out[pos : pos + ref.raw_length] = fresh[ref.chunk]
            pos += ref.raw_length
        return True

    def _fetch_into(self, recipe: Recipe, refs: list[ChunkRef], out: bytearray, pos: int,
                    local: Mapping[Digest, LocalChunk] | None, check: bool = True) -> None:
        """Fetch frames that sit close together in one pack in one ranged read, decode them
        into `out` from `pos` on, and verify each chunk (unless `check` is false: decode_run).
        Delta frames' bases are loaded first (always verified)."""
        bases = [r.base for r in refs if r.base is not None]
        if any(b.base is not None for b in bases):
            raise IntegrityError(
                f"recipe {blob_key(recipe.blob)} names a delta frame as the base of another (chain "
                f"depth is one): the recipe is damaged or hostile; run 'zoostore verify'",
                obj=blob_key(recipe.blob))
        base_bytes = self.chunk_bytes(bases, blob=recipe.blob, local=local) if bases else {}
        start = refs[0].offset
        end = refs[-1].offset + refs[-1].length
        key = pack_key(refs[0].pack)
        buf = self._range_buffers.take(end - start)
        try:
            with memoryview(buf) as whole:  # get_range_into takes any writable buffer of the range's length
                got = self.backend.get_range_into(key, start, cast(bytearray, whole[: end - start]))
        except ObjectNotFoundError:
            if self._read_relocated(recipe.blob, refs, out, pos, local):
                return
            raise IntegrityError(
                f"pack {refs[0].pack} is missing from the store {self.backend.url} but blob "
                f"{recipe.blob} needs it (chunk {refs[0].chunk.short}): the store is damaged; "
                f"run 'zoostore verify' and republish the file",
                obj=key, expected="present", actual="missing",
            ) from None
        self.stats.add(requests=1, fetched=got, chunks=len(refs))
        if got != end - start:
            raise IntegrityError(
                f"pack {refs[0].pack} is truncated: blob {recipe.blob} needs bytes {start}-{end} "
                f"(chunk {refs[0].chunk.short}) but the store returned {got} of "
                f"{end - start}; {DAMAGED_PACK_ADVICE}",
                obj=key, expected=str(end - start), actual=str(got),
            )
        # Reader threads fetch freely (latency) but decode one per core: otherwise every segment
        # in flight progresses at a fraction of a core and the first one, which the writer waits
        # for, finishes last. A caller's own inline read (read_range) takes no slot: waiting for
        # one behind the readers made sync's small files, read inline, the last to finish.
        from zoostore.storage.frames_into import decode_run  # reads only: publish never decodes

        with self._decode_slots if getattr(_reader, "slot", False) else contextlib.nullcontext():
            decode_run(recipe.blob, refs, buf, start, out, pos, base_bytes, check=check)
        self._range_buffers.give(buf)  # not on errors: a view in a traceback may still read it

    def _iter_segments(self, recipe: Recipe, indices: range,
                       local: Mapping[Digest, LocalChunk] | None, buffers: SegmentBuffers | None = None,
                       tally: ReadStats | None = None, check: bool = True) -> Iterator[tuple[list[int], memoryview]]:
        """(chunk indices, their raw bytes, verified if `check`) per run, in file order (into
        buffers from `buffers` when given). From a remote store the runs are loaded by the reader
        threads with a bounded look-ahead, within this BlobStore's segment slots
        (`segments.in_order`): that hides each request's latency. From a local store each run is
        read and decoded on this thread when it is wanted: a read is then a copy from the page
        cache, and a hop to a reader thread and back per segment cost more than it overlapped
        (a 512 MB file: 1.0 s of CPU against 0.57 s; docs/design-decisions.md, "Local reads stay
        on the reading thread"); a sync's files in flight keep the cores busy."""
        if self._inline:
            return ((idx, self._load_segment(recipe, kind, idx, local, buffers, tally, check))
                    for kind, idx in plan_segments(recipe, indices, local, self._segment))
        pool = self._reader_pool()
        return in_order(plan_segments(recipe, indices, local, self._segment),
                        lambda kind, idx: pool.submit(self._load_segment, recipe, kind, idx, local, buffers,
                                                      tally, check),
                        lookahead=LOOKAHEAD, slots=self._segment_slots if buffers is not None else None)

    def close(self) -> None:
        """Stop the reader threads (started again by the next read)."""
        with self._readers_lock:
            pool, self._readers = self._readers, None
        if pool is not None and self._readers_pid == os.getpid():
            pool.shutdown(wait=True)

    def _reader_pool(self) -> ThreadPoolExecutor:
        from concurrent.futures import ThreadPoolExecutor

        with self._readers_lock:
            # A forked child inherits the pool object but not its threads: start a new one.
            if self._readers is None or self._readers_pid != os.getpid():
                self._readers = ThreadPoolExecutor(max_workers=self._reader_count, initializer=_reader_thread,
                                                   thread_name_prefix="zoo-read")
                self._readers_pid = os.getpid()
            return self._readers

    def iter_chunks(self, recipe: Recipe, indices: range | None = None, *,
                    local: Mapping[Digest, LocalChunk] | None = None) -> Iterator[bytes]:
        """Verified chunk bytes in file order, fetched concurrently with bounded look-ahead."""
        if indices is None:
            indices = range(len(recipe.chunks))
        for idx, data in self._iter_segments(recipe, indices, local):
            pos = 0
            with memoryview(data) as view:
                for i in idx:
                    n = recipe.chunks[i].raw_length
                    yield bytes(view[pos : pos + n])
                    pos += n

    def read_range(self, blob: Digest, start: int, end: int) -> bytes:
        """File bytes `[start, end)` of a blob (clipped to its size), fetching only the chunks
        that hold them, each verified."""
        recipe = self.recipe(blob)
        start, end = max(0, start), min(end, recipe.size)
        if start >= end:
            return b""
        indices = recipe.covering(start, end)
        first = recipe.starts[indices.start]
        runs = list(plan_segments(recipe, indices, None, self._segment))
        if len(runs) == 1:  # the usual small read: decoded inline, no thread-pool hop
            kind, idx = runs[0]
            data = self._load_segment(recipe, kind, idx, None)
            return bytes(memoryview(data)[start - first : end - first])
        parts = [data for _, data in self._iter_segments(recipe, indices, None)]
        whole = parts[0] if len(parts) == 1 else memoryview(bytearray().join(parts))
        return bytes(whole[start - first : end - first])

    def _write_hashed(self, recipe: Recipe, out: BinaryIO, local: Mapping[Digest, LocalChunk] | None,
                      advance: Callable[[int], None], name: str, check: bool,
                      tally: ReadStats | None = None) -> str:
        """Write the blob's chunks to `out` in order, each verified if `check`, local ones
        counted in `tally`; the hex BLAKE3 of all of it.

        Each segment is written, then hashed on this thread (from a remote store the reader
        threads fetch and decode the next ones meanwhile): a hash thread of its own cost more
        than it overlapped (docs/design-decisions.md, "Local reads stay on the reading thread")."""
        hasher = blake3.blake3()
        buffers = self._segment_buffers
        for _, data in self._iter_segments(recipe, range(len(recipe.chunks)), local, buffers, tally, check):
            out.write(data)
            hasher.update(data)
            buffers.give(data)
            advance(len(data))
            cancel.check(f"reading {name}")
        return hasher.hexdigest()

    def _write_verified(self, recipe: Recipe, out: BinaryIO, local: Mapping[Digest, LocalChunk] | None,
                        advance: Callable[[int], None], name: str) -> str:
        """Write the blob to the empty `out`; the hex BLAKE3 of what it then holds. The file's hash
        covers every byte, so the first read hashes no chunk; after a mismatch `out` is emptied and
        the file read again, each chunk verified: that names a damaged pack, or takes from the store
        a chunk whose cached copy changed. Local bytes count as reused once, by the read that held."""
        first = ReadStats()   # the first read's local bytes: some may be what hashed wrong
        try:
            actual = self._write_hashed(recipe, out, local, advance, name, check=False, tally=first)
            if actual == recipe.blob.hex:
                return actual
            first = ReadStats()   # the second read counts the ones it verified
        finally:   # also for a stopped read: what it took from local files is in the partial
            self.stats.add(local_chunks=first.chunks_local, local_bytes=first.bytes_local)
        out.seek(0)
        out.truncate()
        return self._write_hashed(recipe, out, local, lambda n: None, name, check=True)

    def get_file(self, blob: Digest, dest: str | os.PathLike[str], *,
                 local: Mapping[Digest, LocalChunk] | None = None,
                 progress: Progress | None = None, mode: int | None = None,
                 partial: Path | None = None, task: str | None = None) -> Path:
        """Write the blob to `dest`, verified; `dest` appears only when complete and correct.
        On any failure nothing is left at `dest` (an existing file there stays untouched). With
        `partial`, a stopped or failed read keeps what it wrote there (a prefix of decoded chunks)
        when that is more than `partial` held, so the next read can resume from it (the caller
        offers its chunks as `local`, checked again: `_write_verified`). `task` names the
        progress task (default "get <dest name>")."""
        progress = progress or NullProgress()
        dest = Path(dest)
        recipe = self.recipe(blob)
        dest.parent.mkdir(parents=True, exist_ok=True)
        task = task or f"get {dest.name}"
        progress.start(task, recipe.size)
        tmp, out = open_temp(dest.parent)
        try:
            # No fsync, as before: a crash may lose the file but never leaves a partial one at dest.
            with out, self.keeping_buffers():
                actual = self._write_verified(recipe, out, local, lambda n: progress.advance(task, n), dest.name)
                if actual != blob.hex:
                    raise IntegrityError(
                        f"assembled file for blob {blob} hashes to blake3:{actual}: expected "
                        f"{blob.hex}; the recipe {blob_key(blob)} is wrong. Nothing was written to "
                        f"{dest}; run 'zoostore verify --repair'",
                        obj=blob_key(blob), expected=blob.hex, actual=actual,
                    )
                if mode is not None:
                    os.fchmod(out.fileno(), mode)
            os.replace(tmp, dest)
            if partial is not None:
                partial.unlink(missing_ok=True)
        except BaseException as exc:
            keep_or_drop_partial(tmp, partial, keep=not isinstance(exc, IntegrityError))
            raise blame(exc, dest) if isinstance(exc, OSError) else exc   # a full disk's write names no file
        finally:
            progress.done(task)
        return dest


__all__ = ["BlobStore", "LocalChunk", "ReadStats"]
