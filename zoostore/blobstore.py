"""Files in, files out: chunk, hash, compress and pack on write; fetch, verify and assemble
on read. Everything content-addressed lives here; manifests live a layer up.

    <store>/packs/<aa>/<pack id>   chunk frames + footer        (zoostore.pack)
    <store>/blobs/<aa>/<blob id>   recipe: file size + chunk refs (zoostore.recipe)

Write path (`BlobWriter`): BLAKE3 of the whole file first (memory-mapped, multi-threaded), and
a file whose recipe exists costs one HEAD. Otherwise FastCDC cuts the mapped file; a thread pool
hashes each chunk and, unless the chunk is already known (an earlier version of the same model,
or earlier in this publish), encodes it with the smallest codec; the main thread appends frames
to a pack in file order and hands full packs to upload threads. blake3, zstandard and the
FastCDC cut loop release the GIL, so this uses every core. Recipes are written only after every
pack they name is stored, so a visible recipe is always readable.

Read path: a recipe's chunks are grouped into segments: runs of chunks that sit close together
in one pack become one ranged read ("coalescing"), and chunks that a local cached file already
holds are read from it instead. Segments are fetched and decoded concurrently with a bounded
look-ahead (memory does not grow with file size), each chunk is verified against its id, the
file is written to a temp file beside the destination, the whole is verified against the blob
id, and only then renamed into place.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from zoostore import codec
from zoostore.backend.base import Backend
from zoostore.config import StoreConfig
from zoostore.digest import Digest, hash_file
from zoostore.errors import BlobNotFoundError, FormatError, IntegrityError, ObjectNotFoundError
from zoostore.pack import FileList, PackBuilder, pack_key
from zoostore.progress import NullProgress, Progress
from zoostore.recipe import ChunkRef, Recipe, blob_key

#: Two frames of one pack closer than this are fetched in one ranged read (the gap is wasted).
COALESCE_GAP = 256 * 1024
#: Upper bound of one ranged read, which also bounds memory per in-flight segment.
MAX_SEGMENT = 16 * 1024 * 1024
#: Segments in flight while reading; memory is at most about LOOKAHEAD × MAX_SEGMENT.
LOOKAHEAD = 8
#: Chunks in flight while writing.
WRITE_WINDOW = 256


def _cpu_workers() -> int:
    return max(2, os.cpu_count() or 2)


@dataclass(frozen=True, slots=True)
class LocalChunk:
    """A chunk held by a verified local file (the sync cache): read it instead of fetching."""

    path: Path
    offset: int
    length: int


@dataclass(slots=True)
class PutResult:
    path: Path
    blob: Digest
    size: int
    new: bool  # a new recipe was written
    chunks: int = 0
    new_chunks: int = 0
    new_raw_bytes: int = 0
    new_stored_bytes: int = 0


@dataclass(slots=True)
class ReadStats:
    """What reads cost; counters are cumulative per BlobStore (thread-safe)."""

    requests: int = 0
    bytes_fetched: int = 0
    chunks_fetched: int = 0
    chunks_local: int = 0
    bytes_local: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, requests: int = 0, fetched: int = 0, chunks: int = 0, local_chunks: int = 0,
            local_bytes: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.bytes_fetched += fetched
            self.chunks_fetched += chunks
            self.chunks_local += local_chunks
            self.bytes_local += local_bytes


class _Slot:
    """A pack being built: its id is known only when it is finished."""

    __slots__ = ("id",)

    def __init__(self) -> None:
        self.id: Digest | None = None


@dataclass(slots=True)
class _Pending:
    blob: Digest
    size: int
    # (chunk, raw_length, pack id or slot, offset, frame length)
    entries: list[tuple[Digest, int, Digest | _Slot, int, int]]


class BlobStore:
    """Blobs over one backend. Thread-safe; recipes are cached in memory (they are immutable)."""

    def __init__(self, backend: Backend, config: StoreConfig, *, workers: int | None = None) -> None:
        self.backend = backend
        self.config = config
        self.workers = workers or _cpu_workers()
        self.stats = ReadStats()
        self._recipes: OrderedDict[Digest, Recipe] = OrderedDict()
        self._recipes_lock = threading.Lock()

    # ------------------------------------------------------------------ recipes
    def has_blob(self, blob: Digest) -> bool:
        return blob in self._recipes or self.backend.exists(blob_key(blob))

    def recipe(self, blob: Digest) -> Recipe:
        with self._recipes_lock:
            cached = self._recipes.get(blob)
            if cached is not None:
                self._recipes.move_to_end(blob)
                return cached
        try:
            data = self.backend.get(blob_key(blob))
        except ObjectNotFoundError:
            raise BlobNotFoundError(
                f"blob {blob} is not in the store {self.backend.url} (no recipe at "
                f"{blob_key(blob)}): it was never published here, or gc deleted it",
                key=blob_key(blob),
            ) from None
        self.stats.add(requests=1, fetched=len(data))
        recipe = Recipe.decode(blob, data)
        self.remember(recipe)
        return recipe

    def remember(self, recipe: Recipe) -> None:
        with self._recipes_lock:
            self._recipes[recipe.blob] = recipe
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
        return BlobWriter(self, known=known or {}, progress=progress or NullProgress())

    def put_files(self, paths: Iterable[str | os.PathLike[str]], *,
                  known: Mapping[Digest, ChunkRef] | None = None,
                  progress: Progress | None = None) -> list[PutResult]:
        with self.writer(known=known, progress=progress) as w:
            results = [w.add(Path(p)) for p in paths]
        return results

    # ------------------------------------------------------------------ reading
    def _segments(self, recipe: Recipe, indices: range,
                  local: Mapping[Digest, LocalChunk] | None) -> Iterator[tuple[str, list[int]]]:
        """Group chunk indices into ('local', [i]) and ('remote', [i, j, ...]) runs."""
        run: list[int] = []
        run_start = run_end = 0
        run_pack: Digest | None = None
        for i in indices:
            ref = recipe.chunks[i]
            if local is not None and ref.chunk in local:
                if run:
                    yield "remote", run
                    run, run_pack = [], None
                yield "local", [i]
                continue
            if (run and ref.pack == run_pack and run_end <= ref.offset <= run_end + COALESCE_GAP
                    and ref.offset + ref.length - run_start <= MAX_SEGMENT):
                run.append(i)
                run_end = ref.offset + ref.length
                continue
            if run:
                yield "remote", run
            run, run_pack = [i], ref.pack
            run_start, run_end = ref.offset, ref.offset + ref.length
        if run:
            yield "remote", run

    def _load_segment(self, recipe: Recipe, kind: str, idx: list[int],
                      local: Mapping[Digest, LocalChunk] | None) -> list[bytes]:
        refs = [recipe.chunks[i] for i in idx]
        if kind == "local":
            assert local is not None
            ref = refs[0]
            loc = local[ref.chunk]
            try:
                with open(loc.path, "rb") as f:
                    f.seek(loc.offset)
                    data = f.read(loc.length)
            except OSError:
                data = b""
            if len(data) == ref.raw_length and blake3.blake3(data).digest() == ref.chunk.raw:
                self.stats.add(local_chunks=1, local_bytes=len(data))
                return [data]
            # The cached copy changed under us: fall back to the store.
            kind = "remote"
        start = refs[0].offset
        end = refs[-1].offset + refs[-1].length
        key = pack_key(refs[0].pack)
        try:
            buf = self.backend.get_range(key, start, end)
        except ObjectNotFoundError:
            raise IntegrityError(
                f"pack {refs[0].pack} is missing from the store {self.backend.url} but blob "
                f"{recipe.blob} needs it (chunk {refs[0].chunk.short}): the store is damaged; "
                f"run 'zoostore verify' and republish the file",
                obj=key, expected="present", actual="missing",
            ) from None
        self.stats.add(requests=1, fetched=len(buf), chunks=len(refs))
        if len(buf) != end - start:
            raise IntegrityError(
                f"pack {refs[0].pack} is truncated: blob {recipe.blob} needs bytes {start}-{end} "
                f"(chunk {refs[0].chunk.short}) but the store returned {len(buf)} of "
                f"{end - start}; run 'zoostore verify' and republish the file",
                obj=key, expected=str(end - start), actual=str(len(buf)),
            )
        out = []
        view = memoryview(buf)
        for ref in refs:
            frame = view[ref.offset - start : ref.offset - start + ref.length]
            where = f"pack {ref.pack} chunk {ref.chunk}"
            try:
                data = codec.decode(frame, where=where)
            except FormatError as exc:
                raise IntegrityError(
                    f"{exc}; blob {recipe.blob} cannot be read: run 'zoostore verify' and "
                    f"republish the file", obj=where,
                ) from exc
            actual = blake3.blake3(data).digest()
            if actual != ref.chunk.raw:
                raise IntegrityError(
                    f"chunk {ref.chunk} in pack {ref.pack} at offset {ref.offset} is corrupt: "
                    f"expected hash {ref.chunk.hex} but got {actual.hex()}; blob {recipe.blob} "
                    f"cannot be read: run 'zoostore verify' and republish the file",
                    obj=where, expected=ref.chunk.hex, actual=actual.hex(),
                )
            out.append(data)
        return out

    def iter_chunks(self, recipe: Recipe, indices: range | None = None, *,
                    local: Mapping[Digest, LocalChunk] | None = None) -> Iterator[bytes]:
        """Verified chunk bytes in file order, fetched concurrently with bounded look-ahead."""
        if indices is None:
            indices = range(len(recipe.chunks))
        segments = self._segments(recipe, indices, local)
        with ThreadPoolExecutor(max_workers=max(4, self.workers * 2)) as pool:
            inflight: deque[Future[list[bytes]]] = deque()
            try:
                for kind, idx in segments:
                    inflight.append(pool.submit(self._load_segment, recipe, kind, idx, local))
                    if len(inflight) >= LOOKAHEAD:
                        yield from inflight.popleft().result()
                while inflight:
                    yield from inflight.popleft().result()
            finally:
                for fut in inflight:
                    fut.cancel()

    def read_range(self, blob: Digest, start: int, end: int) -> bytes:
        """File bytes `[start, end)` of a blob (clipped to its size), fetching only the chunks
        that hold them, each verified."""
        recipe = self.recipe(blob)
        start, end = max(0, start), min(end, recipe.size)
        if start >= end:
            return b""
        indices = recipe.covering(start, end)
        first = recipe.starts[indices.start]
        data = b"".join(self.iter_chunks(recipe, indices))
        return data[start - first : end - first]

    def get_file(self, blob: Digest, dest: str | os.PathLike[str], *,
                 local: Mapping[Digest, LocalChunk] | None = None,
                 progress: Progress | None = None, mode: int | None = None) -> Path:
        """Write the blob to `dest`, verified; `dest` appears only when complete and correct.
        On any failure nothing is left at `dest` (an existing file there stays untouched)."""
        progress = progress or NullProgress()
        dest = Path(dest)
        recipe = self.recipe(blob)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.zoostore-{os.getpid()}-{threading.get_ident()}.tmp"
        hasher = blake3.blake3()
        task = f"get {dest.name}"
        progress.start(task, recipe.size)
        try:
            with open(tmp, "wb") as out:
                for data in self.iter_chunks(recipe, local=local):
                    out.write(data)
                    hasher.update(data)
                    progress.advance(task, len(data))
            actual = hasher.hexdigest()
            if actual != blob.hex:
                raise IntegrityError(
                    f"assembled file for blob {blob} hashes to blake3:{actual}: expected "
                    f"{blob.hex}; the recipe {blob_key(blob)} is wrong. Nothing was written to "
                    f"{dest}; run 'zoostore verify --repair'",
                    obj=blob_key(blob), expected=blob.hex, actual=actual,
                )
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            progress.done(task)
        return dest


class BlobWriter:
    """One publish's worth of files sharing packs. Use as a context manager; recipes become
    visible at `close()`, after their packs."""

    def __init__(self, store: BlobStore, *, known: Mapping[Digest, ChunkRef], progress: Progress) -> None:
        self.store = store
        self.backend = store.backend
        self.config = store.config
        self.known = known
        self.progress = progress
        self.session: dict[Digest, tuple[Digest | _Slot, int, int]] = {}
        self.builder = PackBuilder()
        self.slot = _Slot()
        self.pending: list[_Pending] = []
        self.done: dict[Digest, PutResult] = {}
        self.cpu = ThreadPoolExecutor(max_workers=store.workers, thread_name_prefix="zoo-encode")
        self.io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="zoo-upload")
        self.uploads: list[Future[None]] = []
        self.freshened: set[str] = set()
        self.packs_written = 0
        self.stored_bytes = 0
        self._cutoff_cache: float | None = None
        self._closed = False

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- freshen rule (docs/gc.md): reused objects older than grace/2 get a new mtime.
    def _cutoff(self) -> float:
        if self._cutoff_cache is None:
            self._cutoff_cache = self.backend.now() - self.config.grace_seconds / 2
        return self._cutoff_cache

    def _freshen_if_old(self, key: str) -> None:
        if key in self.freshened or not self.backend.capabilities.writes:
            return
        self.freshened.add(key)
        try:
            if self.backend.stat(key).mtime < self._cutoff():
                self.backend.freshen(key)
        except ObjectNotFoundError:
            pass

    def _freshen_blob(self, blob: Digest) -> None:
        self._freshen_if_old(blob_key(blob))
        try:
            recipe = self.store.recipe(blob)
        except (BlobNotFoundError, FormatError, IntegrityError):
            return
        for p in recipe.packs:
            self._freshen_if_old(pack_key(p))

    # -- the write pipeline
    def add(self, path: Path) -> PutResult:
        path = Path(path)
        size = path.stat().st_size
        task = f"put {path.name}"
        self.progress.start(task, size)
        try:
            blob = hash_file(path)
            if blob in self.done:
                self.progress.advance(task, size)
                return PutResult(path, blob, size, new=False)
            if self.store.has_blob(blob):
                self._freshen_blob(blob)
                result = PutResult(path, blob, size, new=False)
                self.done[blob] = result
                self.progress.advance(task, size)
                return result
            result = self._chunk_file(path, blob, size, task)
            self.done[blob] = result
            return result
        finally:
            self.progress.done(task)

    def _chunk_file(self, path: Path, blob: Digest, size: int, task: str) -> PutResult:
        from pyfastcdc import FastCDC

        ch = self.config.chunking
        cdc = FastCDC(ch.avg_size, min_size=ch.min_size, max_size=ch.max_size)
        chooser = codec.CodecChooser(self.config.codecs)
        level = self.config.zstd_level
        known, session = self.known, self.session
        result = PutResult(path, blob, size, new=True)
        entries: list[tuple[Digest, int, Digest | _Slot, int, int]] = []

        def work(data: memoryview, plan: tuple[int, ...]) -> tuple[bytes, bytes | None]:
            cid = blake3.blake3(data).digest()
            d = Digest.from_bytes(cid)
            if d in known or d in session:
                return cid, None
            return cid, codec.encode_best(data, plan, level=level)

        window: deque[tuple[Future[tuple[bytes, bytes | None]], int]] = deque()

        def drain_one() -> None:
            fut, raw_len = window.popleft()
            cid, frame = fut.result()
            chunk = Digest.from_bytes(cid)
            result.chunks += 1
            self.progress.advance(task, raw_len)
            ref = known.get(chunk)
            if ref is not None:
                self._freshen_if_old(pack_key(ref.pack))
                entries.append((chunk, raw_len, ref.pack, ref.offset, ref.length))
                return
            seen = session.get(chunk)
            if seen is not None:
                entries.append((chunk, raw_len, *seen))
                return
            # A worker skips encoding only for chunks in `known` (immutable) or `session`
            # (which only grows), so a frame is always present here.
            assert frame is not None
            chooser.record(codec.frame_codec(frame))
            offset = self.builder.add(chunk, frame, raw_len)
            session[chunk] = (self.slot, offset, len(frame))
            entries.append((chunk, raw_len, self.slot, offset, len(frame)))
            result.new_chunks += 1
            result.new_raw_bytes += raw_len
            result.new_stored_bytes += len(frame)
            if self.builder.size >= self.config.pack_target_size:
                self._flush_pack()

        if size:
            # pyfastcdc maps the file itself and keeps the mapping alive while chunk views exist.
            try:
                for i, c in enumerate(cdc.cut_file(str(path))):
                    window.append((self.cpu.submit(work, c.data, chooser.plan(i)), c.length))
                    if len(window) >= WRITE_WINDOW:
                        drain_one()
                while window:
                    drain_one()
            finally:
                for fut, _ in window:
                    fut.cancel()
        self.pending.append(_Pending(blob, size, entries))
        return result

    def _flush_pack(self) -> None:
        if not len(self.builder):
            return
        slot = self.slot
        pack_id, data, _ = self.builder.finish()
        slot.id = pack_id
        self.slot = _Slot()
        self.packs_written += 1
        self.stored_bytes += len(data)
        # Bound memory: at most a few packs wait for upload.
        while sum(1 for u in self.uploads if not u.done()) >= 3:
            next(u for u in self.uploads if not u.done()).result()
        self.uploads.append(self.io.submit(self.backend.put_if_absent, pack_key(pack_id), data))  # type: ignore[arg-type]

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self.pending:
                # The publish's last pack lists the files it added, so that `verify --repair`
                # can rebuild their recipes from packs alone (see zoostore.pack).
                self.builder.add_file_list([
                    FileList(p.blob, p.size, tuple((c, n) for c, n, *_ in p.entries))
                    for p in self.pending
                ])
            self._flush_pack()
            for u in self.uploads:
                u.result()
            recipes = []
            for p in self.pending:
                chunks = []
                for chunk, raw_len, pack, offset, length in p.entries:
                    pid = pack if isinstance(pack, Digest) else pack.id
                    assert pid is not None
                    chunks.append(ChunkRef(chunk, raw_len, pid, offset, length))
                recipes.append(Recipe(p.blob, p.size, tuple(chunks)))
            futures = [self.io.submit(self.backend.put_if_absent, blob_key(r.blob), r.encode()) for r in recipes]
            for f in futures:
                f.result()
            for r in recipes:
                self.store.remember(r)
        finally:
            self._closed = True
            self.cpu.shutdown(wait=True)
            self.io.shutdown(wait=True)

    def abort(self) -> None:
        """Stop without writing recipes. Packs already uploaded stay as garbage for gc."""
        self._closed = True
        self.cpu.shutdown(wait=True, cancel_futures=True)
        self.io.shutdown(wait=True, cancel_futures=True)


__all__ = ["BlobStore", "BlobWriter", "LocalChunk", "PutResult", "ReadStats"]
