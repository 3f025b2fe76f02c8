"""The blob writer: files in, recipes and packs out, for one publish.

    file --BLAKE3--> blob id: a blob the store holds costs one HEAD (and a freshen, handshake.py)
         --FastCDC--> chunks --hash, encode (threads)--> frames --> packs (upload threads)
    close(): last pack (with the publish's file list), settle check, then recipes

FastCDC cuts the memory-mapped file; a thread pool hashes each chunk and, unless the chunk is
already known (an earlier version of the same model, or earlier in this publish), encodes it
(chunks travel in batches of about ENCODE_BATCH bytes; the first new chunk of a batch is tried
with every codec and, with the file's probe history, picks the codec for the rest of the batch:
zoostore.storage.codec); the main thread
appends frames to a pack in file order and hands full packs to upload threads, which join, hash
and store them. blake3, zstandard and the FastCDC cut loop release the GIL, so this uses every
core. Recipes are written only after every pack they name is stored, so a visible recipe is
always readable.

Delta frames (stores with `[codecs] delta = true`, docs/format.md): a file given the blob id of
its previous version (`add(previous=...)`) has its new chunks encoded against similar chunks of
that version where clearly smaller, on the encoder threads (zoostore.storage.delta_bases).
Files without a previous version do no delta work.

Recipe edits (format-3 stores, docs/format.md): a file with a previous version is stored as
edits of the previous version's recipe (of that recipe's own base when it is edits itself:
chain depth one) when that is clearly smaller (recipe.edits_if_smaller); its file list in
the footer is then edits of the base's too. The base recipe is freshened like a reused object.

Each file is hashed once: by the caller (publish hashes every file to plan, and passes the ids
on as `Hashed`) or by `add` itself, before chunking. A file that changes between its hash and
its chunking would get a recipe that does not match its id; a stat stamp (size, mtime in ns,
inode: what git and rsync trust) taken before the hash and again after chunking catches that,
and the file is refused (readers verify every assembled file against its id as well).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import blake3

from zoostore.core import cancel
from zoostore.core.digest import Digest, hash_file
from zoostore.core.errors import UsageError, ZooError
from zoostore.core.progress import Progress
from zoostore.core.records import dataclass
from zoostore.storage import codec
from zoostore.storage.backends.base import Backend
from zoostore.storage.delta_bases import Batch, DeltaBases, Encoded
from zoostore.storage.handshake import Handshake
from zoostore.storage.pack import FileList, PackSlot, pack_key
from zoostore.storage.pack_stream import PackStream
from zoostore.storage.params import CODE_MAGIC_LEN, StorageParams
from zoostore.storage.edits import Run
from zoostore.storage.recipe import ChunkRef, Recipe, blob_key, edits_if_smaller

#: Chunks in flight while writing, and their raw bytes at most (2 MiB code chunks would
#: otherwise hold 512 MiB; 256 chunks of a store's other files hold at most 64 MiB anyway).
WRITE_WINDOW = 256
WRITE_WINDOW_BYTES = 64 * 1024 * 1024
#: Raw bytes per encoding task while writing.
ENCODE_BATCH = 1024 * 1024
#: Files with batches in flight (each keeps its memory map, and so a descriptor, open).
FILES_IN_FLIGHT = 64

#: (chunk, raw length, pack id or the slot of a pack being built, offset, frame length, the
#: base when the frame is a delta frame)
Entry = tuple[Digest, int, "Digest | PackSlot", int, int, "ChunkRef | None"]


class RecipeSource(Protocol):
    """What the writer needs of a BlobStore (zoostore.storage.blobs)."""

    backend: Backend
    config: StorageParams
    workers: int

    def has_blob(self, blob: Digest) -> bool: ...
    def recipe(self, blob: Digest) -> Recipe: ...
    def forget(self, blob: Digest | None = None) -> None: ...
    def remember(self, recipe: Recipe) -> None: ...
    def chunk_bytes(self, refs: Sequence[ChunkRef], *, blob: Digest) -> dict[Digest, bytes]: ...


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What a file's stat says about its bytes: a new size, mtime or inode means new bytes."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileStamp:
        st = os.stat(path)
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True, slots=True)
class Hashed:
    """A file its caller has hashed already: the blob id, and the stamp taken before hashing."""

    blob: Digest
    stamp: FileStamp


@dataclass(slots=True)
class PutResult:
    """What storing one file did: its blob id and size, whether its recipe is new, and its chunks' counts."""

    path: Path
    blob: Digest
    size: int
    new: bool  # a new recipe was written
    chunks: int = 0
    new_chunks: int = 0
    new_raw_bytes: int = 0
    new_stored_bytes: int = 0
    delta_chunks: int = 0  # new chunks stored as delta frames


@dataclass(slots=True)
class _Pending:
    """A file the writer cut, waiting for its packs to be stored before its recipe is written."""

    blob: Digest
    size: int
    entries: list[Entry]
    edit_base: Recipe | None = None  # a whole recipe of the previous version (recipe edits)
    #: Set by close() when the file is stored as edits of edit_base: (runs, new chunk indices).
    diff: tuple[list[Run], list[int]] | None = None


class BlobWriter:
    """One publish's worth of files sharing packs. Use as a context manager; recipes become
    visible at `close()`, after their packs."""

    def __init__(self, store: RecipeSource, *, known: Mapping[Digest, ChunkRef], progress: Progress) -> None:
        self.store = store
        self.backend = store.backend
        self.config = store.config
        self.known = known
        self.progress = progress
        self.handshake = Handshake(store.backend, grace=store.config.grace_seconds,
                                   settle=store.config.settle_seconds, recipe=store.recipe, forget=store.forget)
        self.session: dict[Digest, tuple[Digest | PackSlot, int, int, ChunkRef | None]] = {}
        self.pending: list[_Pending] = []
        self.done: dict[Digest, PutResult] = {}
        self.cpu = ThreadPoolExecutor(max_workers=store.workers, thread_name_prefix="zoo-encode")
        self.io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="zoo-upload")
        self.packs = PackStream(store.backend, store.config.pack_target_size, self.io)
        # Encoding batches of every file, in file order: a file's last batches are still being
        # encoded while the next file is cut (no idle encoder at each file's end).
        self.window: deque[tuple[Future[Encoded], Batch, _FileChunker]] = deque()
        self.inflight = 0  # chunks in `window`
        self.inflight_bytes = 0  # their raw bytes
        self.files_inflight = 0  # files with batches in `window`
        self._closed = False

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort_after(exc)

    def add(self, path: Path, *, hashed: Hashed | None = None, previous: Digest | None = None) -> PutResult:
        """Store one file (see the module docstring). With `hashed` the file is not hashed
        again; UsageError if it changed since that hash, or while it was chunked. `previous`
        is the blob of the file's previous version: its chunks are delta bases (delta stores).
        The result's chunk and byte counts are complete once `close()` returns."""
        path = Path(path)
        stamp = hashed.stamp if hashed is not None else FileStamp.of(path)
        size = stamp.size
        task = f"put {path.name}"
        self.progress.start(task, size)
        try:
            blob = hashed.blob if hashed is not None else hash_file(path)
            if blob in self.done:
                self.progress.advance(task, size)
                return PutResult(path, blob, size, new=False)
            if self.store.has_blob(blob) and self.handshake.freshen_blob(blob):
                result = PutResult(path, blob, size, new=False)
                self.done[blob] = result
                self.progress.advance(task, size)
                return result
            base = self._base_recipe(previous, blob)
            result = _FileChunker(self, path, blob, stamp, task, base).run()
            self.pending[-1].edit_base = self._edit_base(base)
            self.done[blob] = result
            return result
        finally:
            self.progress.done(task)

    def _base_recipe(self, previous: Digest | None, blob: Digest) -> Recipe | None:
        """The previous version's recipe when this store makes delta frames, else None."""
        if not self.config.delta or previous is None or previous == blob:
            return None
        try:
            return self.store.recipe(previous)
        except ZooError:
            return None  # no delta bases then: the file is stored as without delta frames

    def _edit_base(self, base: Recipe | None) -> Recipe | None:
        """The whole recipe a new recipe may be stored as edits of (format-3 stores)."""
        try:
            whole = base if base is None or base.against is None else self.store.recipe(base.against)
        except ZooError:
            return None
        return whole if self.config.recipe_edits and whole is not None and whole.against is None else None

    @property
    def full(self) -> bool:
        """Whether the window holds WRITE_WINDOW chunks or WRITE_WINDOW_BYTES (then drain first)."""
        return self.inflight >= WRITE_WINDOW or self.inflight_bytes >= WRITE_WINDOW_BYTES

    def drain(self) -> None:
        """Add the oldest encoding batch's chunks to packs and to its file's entries."""
        fut, batch, chunker = self.window.popleft()
        self.inflight -= len(batch)
        self.inflight_bytes -= sum(map(len, batch))
        chunker.batches -= 1
        if not chunker.batches:
            self.files_inflight -= 1
        chunker.accept(fut.result(), batch)
        if not chunker.batches and chunker.cut_done:
            # Its last chunks are encoded: the file must still be what was hashed and read.
            chunker.check_unchanged()
        self.packs.send()

    def append_frame(self, chunk: Digest, frame: bytes, raw_len: int, base: ChunkRef | None = None) -> Entry:
        """Put a new frame into the pack being built (flushing it when full)."""
        slot, offset = self.packs.add(chunk, frame, raw_len)
        self.session[chunk] = (slot, offset, len(frame), base)
        entry: Entry = (chunk, raw_len, slot, offset, len(frame), base)
        if self.packs.full:
            self.packs.flush()
        return entry

    def close(self) -> None:
        """Drain, store the last pack, then write the recipes. On any failure (a file changed,
        a pack write failed, Ctrl-C) it aborts instead: nothing half-written stays behind."""
        if self._closed:
            return
        try:
            self._finish()
        except BaseException as exc:
            self._abort_after(exc)
            raise
        self._closed = True
        self.cpu.shutdown(wait=True)
        self.packs.close()
        self.io.shutdown(wait=True)

    def _finish(self) -> None:
        while self.window:
            self.drain()
        if self.pending:
            # The publish's last pack lists the files it added, so that `verify --repair`
            # can rebuild their recipes from packs alone (see zoostore.storage.pack).
            self.packs.add_file_list([self._file_list(p) for p in self.pending])
        self.packs.flush()
        self.packs.wait()
        for key in self.packs.found:  # stored already: reused, so freshened like any reused pack
            self.handshake.freshen_if_old(key)
        self.handshake.settle()
        self._write_recipes()

    def _file_list(self, p: _Pending) -> FileList:
        """The footer's list of `p`'s chunks; decides (once, here) whether its recipe is stored as
        edits, and then freshens the base recipe (a reused object: handshake.py)."""
        chunks = tuple((c, n) for c, n, *_ in p.entries)
        found = edits_if_smaller(p.edit_base, chunks) if p.edit_base is not None else None
        if found is None or p.edit_base is None or not self.handshake.freshen_blob(p.edit_base.blob):
            return FileList(p.blob, p.size, chunks)
        p.diff = runs, new = found
        return FileList(p.blob, p.size, tuple(chunks[i] for i in new), p.edit_base.blob, tuple(runs))

    def _write_recipes(self) -> None:
        recipes, stored = [], []
        for p in self.pending:
            chunks = []
            for chunk, raw_len, pack, offset, length, base in p.entries:
                pid = pack if isinstance(pack, Digest) else pack.id
                assert pid is not None
                chunks.append(ChunkRef(chunk, raw_len, pid, offset, length, base))
            whole = Recipe(p.blob, p.size, tuple(chunks))
            if p.diff is not None and p.edit_base is not None:
                edited = whole.as_edits(p.edit_base, p.diff)  # what the footer's file list says
                stored.append(edited.encode())
                whole = edited.resolve(p.edit_base)
            else:
                stored.append(whole.encode())
            recipes.append(whole)
        # A recipe naming a missing pack (handshake.damaged) is overwritten with this one; any
        # other existing recipe of the same blob is as good as this one and stays.
        futures = [self.io.submit(self.backend.put if r.blob in self.handshake.damaged else
                                  self.backend.put_if_absent, blob_key(r.blob), data)
                   for r, data in zip(recipes, stored)]
        for f in futures:
            f.result()
        for r in recipes:
            self.store.remember(r)

    def _abort_after(self, exc: object) -> None:
        """`abort()` after `exc`; after a Ctrl-C with the stop flag set meanwhile, so that uploads
        and encodes not started yet are skipped (core.cancel.while_unwinding)."""
        if isinstance(exc, KeyboardInterrupt):
            with cancel.while_unwinding():
                self.abort()
        else:
            self.abort()

    def abort(self) -> None:
        """Stop without writing recipes. Packs already uploaded stay as garbage for gc."""
        self._closed = True
        self.cpu.shutdown(wait=True, cancel_futures=True)
        self.packs.abort()
        self.io.shutdown(wait=True, cancel_futures=True)


class _FileChunker:
    """Chunk one new file: cut, hash and encode in batches on the encoder threads, then add
    the chunks in file order on the caller's thread."""

    def __init__(self, writer: BlobWriter, path: Path, blob: Digest, stamp: FileStamp, task: str,
                 base_recipe: Recipe | None = None) -> None:
        self.w = writer
        self.bases = (DeltaBases(base_recipe, writer.store.chunk_bytes, level=writer.config.zstd_level)
                      if base_recipe is not None else None)
        self.offset = 0  # file offset of the next batch
        self.path, self.blob, self.stamp, self.task = path, blob, stamp, task
        self.size = stamp.size
        self.chooser = codec.CodecChooser(writer.config.codecs)
        self.result = PutResult(path, blob, self.size, new=True)
        self.entries: list[Entry] = []
        self.submitted = 0
        self.batches = 0  # in the writer's window
        self.probed = False  # the probes' votes are in the chooser
        self.code = False  # cut with the store's code sizes (known once cutting starts)
        self.cut_done = False

    def run(self) -> PutResult:
        """Cut the file and hand its batches to the encoders. Its chunks join packs and
        `entries` (and the result's counts) as the writer drains them: by `close()`."""
        if self.size:
            while self.w.files_inflight >= FILES_IN_FLIGHT:
                self.w.drain()
            self._cut()
        self.cut_done = True
        if not self.batches:
            self.check_unchanged()
        self.w.pending.append(_Pending(self.blob, self.size, self.entries))
        return self.result

    def check_unchanged(self) -> None:
        try:
            now: FileStamp | str = FileStamp.of(self.path)
        except OSError as exc:
            now = f"gone ({exc.strerror})"
        if now != self.stamp:
            raise UsageError(
                f"{self.path} changed while it was being stored: before it was hashed (as {self.blob}) it "
                f"had {self.stamp}, after it was read {now}. Its recipe was not written; store it again "
                f"once nothing writes to it")

    def _cut(self) -> None:
        from pyfastcdc import FastCDC

        ch = self.w.config.chunking
        if ch.code is not None:
            try:
                with open(self.path, "rb") as f:
                    self.code = ch.cuts_as_code(f.read(CODE_MAGIC_LEN))
            except OSError:
                self.check_unchanged()  # gone or replaced: says so
                raise
        low, avg, high = ch.sizes(self.code)
        cdc = FastCDC(avg, min_size=low, max_size=high)
        batch: Batch = []
        lengths: list[int] = []
        batch_bytes = 0
        w = self.w
        # pyfastcdc maps the file itself and keeps the mapping alive while chunk views exist.
        for i, c in enumerate(cdc.cut_file(str(self.path))):
            batch.append(c.data)
            lengths.append(c.length)
            batch_bytes += c.length
            # A file's first PROBE chunks (tried with every codec) go one per task, so that
            # every encoder thread works on them while this thread waits for their votes.
            if batch_bytes < ENCODE_BATCH and i >= codec.PROBE:
                continue
            self._submit(batch, lengths, batch_bytes)
            batch, lengths, batch_bytes = [], [], 0
            cancel.check(f"publishing {self.path.name}")
            while w.window and w.full:
                w.drain()
        if batch:
            self._submit(batch, lengths, batch_bytes)
        while w.window and w.full:
            w.drain()

    def _submit(self, batch: Batch, lengths: list[int], nbytes: int) -> None:
        # The history is taken here, on the main thread, from the chunks drained so far (how
        # many is fixed by the window, not by thread timing): the same file always gets the
        # same frames. A file's first PROBE chunks are all probes.
        first = self.submitted
        self.submitted += len(lengths)
        if first >= codec.PROBE and not self.probed:
            # The chooser learns from the probes before the first batch is planned. Waiting here
            # rather than right after the probes lets this thread cut that batch meanwhile.
            while self.w.window:
                self.w.drain()
            self.probed = True
        history = None if first < codec.PROBE else self.chooser.history()
        self.w.window.append((self.w.cpu.submit(self._work, batch, history, self.offset), batch, self))
        if not self.batches:
            self.w.files_inflight += 1
        self.batches += 1
        self.offset += nbytes
        self.w.inflight += len(lengths)
        self.w.inflight_bytes += nbytes
        self.w.progress.advance(self.task, nbytes)

    def _work(self, batch: Batch, history: codec.History | None, start: int) -> Encoded:
        """On an encoder thread: hash each chunk, encode those the store does not hold (the
        batch starts at file offset `start`)."""
        known, session = self.w.known, self.w.session
        # Code cut into code-sized chunks needs no boost (docs/design-decisions.md).
        encoder = codec.BatchEncoder(self.chooser.codecs, history, level=self.w.config.zstd_level,
                                     boostable=not self.code)
        out: Encoded = []
        for data in batch:
            d = Digest.from_bytes(blake3.blake3(data).digest())
            # `session` grows while this runs, so it may skip only chunks that are not probes:
            # which chunks are probes must not depend on thread timing.
            if d in known or (encoder.planned and d in session):
                out.append((d, None, None, None))
            else:
                out.append((d, *encoder.encode(data), None))
        if self.bases is not None:
            self.bases.apply(batch, out, start)
        return out

    def accept(self, encoded: Encoded, batch: Batch) -> None:
        """On the writer's thread, in file order: one encoded batch of this file."""
        for (chunk, frame, probe, base), data in zip(encoded, batch):
            if probe is not None:
                self.chooser.record(probe)
            self._add_chunk(chunk, frame, data, base)

    def _add_chunk(self, chunk: Digest, frame: bytes | None, data: memoryview, base: ChunkRef | None) -> None:
        w, result = self.w, self.result
        raw_len = len(data)
        result.chunks += 1
        ref = w.known.get(chunk)
        if ref is not None and self._reusable(ref):
            self.entries.append((chunk, raw_len, ref.pack, ref.offset, ref.length, ref.base))
            return
        seen = w.session.get(chunk)
        if seen is not None:
            self.entries.append((chunk, raw_len, *seen))
            return
        if frame is None or (base is not None and not self._reusable(base)):
            # A known chunk (or a delta frame's base) in a pack that is missing: a damaged store
            # (or a gc deleted it a moment ago). The chunk is stored anew, on this thread: rare.
            frame = codec.encode_best(data, self.chooser.codecs, level=w.config.zstd_level, boost=None)
            base = None
        self.entries.append(w.append_frame(chunk, frame, raw_len, base))
        result.new_chunks += 1
        result.new_raw_bytes += raw_len
        result.new_stored_bytes += len(frame)
        if base is not None:
            result.delta_chunks += 1

    def _reusable(self, ref: ChunkRef) -> bool:
        """Whether a stored frame (a chunk, or a delta base) can be reused: its pack, and its
        base's, are present, and now freshened to outlive gc's grace (docs/gc.md)."""
        reusable = self.w.handshake.reusable
        return reusable(pack_key(ref.pack)) and (ref.base is None or reusable(pack_key(ref.base.pack)))


__all__ = ["BlobWriter", "FileStamp", "Hashed", "PutResult", "RecipeSource", "WRITE_WINDOW", "ENCODE_BATCH"]
