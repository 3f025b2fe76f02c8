"""Packs written while they are built: a publish's frames reach the backend as it encodes.

    writer thread:  add frames --send()--> pack thread: hash (BLAKE3 of the pack) + write
                    flush() --> pack thread: footer --> upload thread: commit (fsync + link, or PUT)

The writer appends frames to the pack being built (PackBuilder) on its own thread and, after
each encoded batch, hands the new frames to one pack thread, which hashes them in order (a pack's
id is the BLAKE3 of its bytes) and writes them to the backend's ObjectWriter: a temp file next to
the packs in a local store, memory for an S3 or HTTP store (one PUT at the end, as before). A full
pack gets its footer on the pack thread and is committed on an upload thread, while the next
pack's frames keep flowing; at most MAX_COMMITS commits wait at once, which bounds memory.

Before this, a pack was joined in memory, hashed and written after its last frame: for the last
pack of a publish (every publish has one) the encoders sat idle meanwhile, tens of milliseconds
per publish (docs/design-decisions.md, "Packs are streamed").
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import blake3

from zoostore.core import cancel
from zoostore.core.digest import Digest
from zoostore.storage.backends.base import Backend, ObjectWriter
from zoostore.storage.pack import FileList, PackBuilder, PackSlot, pack_key

#: Finished packs whose commit may be pending at once (each may hold a pack in memory).
MAX_COMMITS = 3


def _write(hasher: blake3.blake3, sink: ObjectWriter, parts: Sequence[bytes]) -> None:
    sink.write(parts)
    for part in parts:  # only bytes that reached the sink count towards the pack's id
        hasher.update(part)


class PackStream:
    """The packs of one writer; `close()` once every pack is committed, or `abort()`."""

    def __init__(self, backend: Backend, target_size: int, io: ThreadPoolExecutor) -> None:
        self.backend = backend
        self.target_size = target_size
        self.io = io
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-pack")
        self.commits: list[Future[None]] = []
        self.sinks: list[ObjectWriter] = []  # every writer opened (abort discards them)
        self.packs_written = 0
        self.stored_bytes = 0
        #: Keys of packs that were already stored, byte for byte (a retry of a failed publish):
        #: reused rather than written, so the writer freshens them (handshake.py).
        self.found: list[str] = []
        self._lock = threading.Lock()
        self._new()

    def _new(self) -> None:
        self.builder, self.slot = PackBuilder(), PackSlot()
        self.hasher = blake3.blake3()
        self.sink = self.backend.object_writer("packs")
        self.sinks.append(self.sink)
        self.writes: list[Future[None]] = []  # of this pack: a pack with a failed write is never committed

    @property
    def full(self) -> bool:
        return self.builder.size >= self.target_size

    def add(self, chunk: Digest, frame: bytes, raw_length: int) -> tuple[PackSlot, int]:
        """Append a frame to the pack being built: its slot and offset there."""
        return self.slot, self.builder.add(chunk, frame, raw_length)

    def add_file_list(self, files: list[FileList]) -> None:
        self.builder.add_file_list(files)

    def send(self) -> None:
        """Hand the frames added since the last call to the pack thread."""
        frames = self.builder.take_frames()
        if frames:
            self.writes.append(self.thread.submit(_write, self.hasher, self.sink, frames))

    def flush(self) -> None:
        """End the pack being built (if it holds anything) and start its commit."""
        if not len(self.builder):
            return
        self.send()
        builder, slot, hasher, sink, writes = self.builder, self.slot, self.hasher, self.sink, self.writes
        self._new()
        while sum(1 for c in self.commits if not c.done()) >= MAX_COMMITS:
            next(c for c in self.commits if not c.done()).result()
        for c in self.commits:
            if c.done():
                c.result()  # a failed pack fails the publish now, not after everything is encoded
        footer = builder.footer()
        writes.append(self.thread.submit(_write, hasher, sink, [footer]))
        self.packs_written += 1
        self.commits.append(self.io.submit(self._commit, writes, hasher, sink, slot, builder.size + len(footer)))

    def _commit(self, writes: list[Future[None]], hasher: blake3.blake3, sink: ObjectWriter, slot: PackSlot,
                size: int) -> None:
        try:
            for w in writes:  # every byte of the pack, footer last, written and hashed
                w.result()
            cancel.check()
            pack_id = Digest(hasher.hexdigest())
            written = sink.commit(pack_key(pack_id))
        except BaseException:
            sink.discard()
            raise
        slot.id = pack_id
        with self._lock:
            self.stored_bytes += size
            if not written:
                self.found.append(pack_key(pack_id))

    def wait(self) -> None:
        """Until every ended pack is stored; raises what a write or commit raised."""
        for c in self.commits:
            c.result()

    def close(self) -> None:
        self.thread.shutdown(wait=True)

    def abort(self) -> None:
        """Stop writing; packs not committed are dropped (committed ones stay for gc)."""
        self.thread.shutdown(wait=True, cancel_futures=True)
        for c in self.commits:
            c.cancel()
        for c in self.commits:
            if not c.cancelled():
                c.exception()  # wait: a commit running now must not race the discards below
        for sink in self.sinks:
            sink.discard()


__all__ = ["PackStream", "MAX_COMMITS"]
