"""Packs streamed while they are built (zoostore.storage.pack_stream): the bytes and ids are
those of a pack joined in memory, a pack in progress is invisible, an abort leaves nothing
behind, a failed write fails the publish, and a publish's packs do not depend on threads."""

from __future__ import annotations

import errno
import os
import random
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from zoostore.core.atomic import TEMP_PREFIX
from zoostore.core.digest import Digest
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.publish import publish
from zoostore.repository import Store, init_store
from zoostore.storage.backends.base import ObjectWriter
from zoostore.storage.backends import local
from zoostore.storage.backends.local import LocalBackend
from zoostore.storage.pack import FileList, PackBuilder, pack_key, parse_footer, footer_span
from zoostore.storage.pack_stream import PackStream


class MemoryWriterBackend(LocalBackend):
    """A local store that takes the default ObjectWriter (pieces in memory, one put_if_absent),
    as S3 and HTTP stores do."""

    def object_writer(self, prefix: str) -> ObjectWriter:
        return ObjectWriter(self)


class FullDisk(ObjectWriter):
    def write(self, parts: Sequence[bytes]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


class FullDiskBackend(LocalBackend):
    def object_writer(self, prefix: str) -> ObjectWriter:
        return FullDisk(self)


def frames(seed: int, count: int) -> list[tuple[Digest, bytes]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        frame = rng.randbytes(rng.randrange(1, 5000))
        out.append((Digest.of(frame + b"raw"), frame))
    return out


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


@pytest.mark.parametrize("backend_type", [LocalBackend, MemoryWriterBackend])
def test_a_streamed_pack_is_byte_for_byte_the_pack_joined_in_memory(tmp_path: Path, backend_type: type[LocalBackend],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "SYNC_EVERY", 20_000)  # flushed to disk many times on the way
    backend = backend_type(tmp_path / "store")
    reference = PackBuilder()
    with ThreadPoolExecutor(2) as io:
        stream = PackStream(backend, target_size=1 << 30, io=io)
        for i, (chunk, frame) in enumerate(frames(1, 300)):
            slot, offset = stream.add(chunk, frame, len(frame) + 3)
            assert offset == reference.add(chunk, frame, len(frame) + 3)
            if i % 7 == 0:
                stream.send()  # frames reach the pack thread in several pieces
        files = [FileList(Digest.of(b"blob"), 10, ((Digest.of(b"c"), 10),))]
        stream.add_file_list(files)
        reference.add_file_list(files)
        stream.flush()
        stream.wait()
        stream.close()
    pack_id, data, _ = reference.finish()
    assert slot.id == pack_id
    assert backend.get(pack_key(pack_id)) == data
    assert stream.stored_bytes == len(data) and stream.packs_written == 1
    assert temps(tmp_path) == []


def test_a_pack_in_progress_is_invisible_and_an_abort_leaves_nothing(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    with ThreadPoolExecutor(2) as io:
        stream = PackStream(backend, target_size=1 << 30, io=io)
        for chunk, frame in frames(2, 50):
            stream.add(chunk, frame, len(frame))
        stream.send()
        stream.thread.submit(lambda: None).result()  # the frames are on disk by now
        assert len(temps(tmp_path)) == 1  # written to a temp file, not held in memory
        assert list(backend.list("packs/")) == []  # which no reader lists
        stream.abort()
    assert temps(tmp_path) == [] and list(backend.list("packs/")) == []


def test_a_failed_pack_write_fails_the_publish_and_commits_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(os.urandom(300_000))
    config = init_store(tmp_path / "store")[0].config
    zoo = Store(FullDiskBackend(tmp_path / "store"), config)
    with pytest.raises(OSError, match="No space left"):
        publish(zoo, "m", "1.0.0", [src], check=False)
    assert list(zoo.backend.list("packs/")) == [] and list(zoo.backend.list("blobs/")) == []
    assert "m" not in zoo.models()


def test_a_publishs_packs_do_not_depend_on_threads(tmp_path: Path) -> None:
    """Frames join packs in file order whatever thread finishes first: two publishes of the same
    files (many files, several packs, small files between large ones) write identical packs."""
    rng = random.Random(3)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        size = rng.choice([100, 5000, 300_000, 700_000])
        (src / f"f{i:02}.bin").write_bytes(rng.randbytes(size // 2) + bytes(size - size // 2))
    packs = []
    for n in range(2):
        zoo, _ = init_store(tmp_path / f"store{n}", config=StoreConfig(pack_target_size=1 << 20))
        publish(zoo, "m", "1.0.0", [src], check=False)
        listed = sorted(o.key for o in zoo.backend.list("packs/"))
        assert len(listed) > 3
        packs.append({key: zoo.backend.get(key) for key in listed})
    assert packs[0] == packs[1]
    for key, data in packs[0].items():
        start, end = footer_span(data[-12:], len(data), where=key)
        parse_footer(data[start:end], where=key, frames_end=start)
        assert key == pack_key(Digest.of(data))


def test_a_pack_write_that_fails_once_fails_the_publish_and_leaves_nothing(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame write fails (the disk was full for a moment) and later ones succeed: the pack is
    never committed (its id would not match its bytes), no temp file stays, and a second
    publish, once there is space, stores everything readable."""
    rng = random.Random(4)
    src = tmp_path / "src"
    src.mkdir()
    files = {f"f{i}.bin": rng.randbytes(600_000) for i in range(4)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    zoo, _ = init_store(tmp_path / "store", config=StoreConfig(pack_target_size=8 << 20))
    real, calls = os.writev, [0]

    def flaky(fd: int, buffers: Sequence[bytes]) -> int:
        calls[0] += 1
        if calls[0] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers)

    monkeypatch.setattr(os, "writev", flaky)
    with pytest.raises(OSError, match="No space left"):
        publish(zoo, "m", "1.0.0", [src], check=False)
    assert list(zoo.backend.list("packs/")) == [] and list(zoo.backend.list("blobs/")) == []
    assert temps(tmp_path / "store") == []
    monkeypatch.setattr(os, "writev", real)
    result = publish(zoo, "m", "1.0.0", [src], check=False)
    for name, entry in result.files.items():
        assert zoo.blobs.get_file(entry.blob, tmp_path / "out" / name).read_bytes() == files[name]


def test_a_file_changed_after_add_returned_is_refused_once_its_last_chunks_are_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`add` returns while the file's last batches still wait for an encoder (the window spans
    files); the file's stamp is checked when they are done, so a write in between is caught:
    no recipe names bytes that do not hash to its blob id, and no temp file stays."""
    from zoostore.core.errors import UsageError
    from zoostore.storage import writer as W
    from zoostore.storage.recipe import blob_key

    rng = random.Random(5)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(rng.randbytes(3_000_000))
    b.write_bytes(rng.randbytes(10_000))
    zoo, _ = init_store(tmp_path / "store")
    gate = threading.Event()
    real_work = W._FileChunker._work

    def held_work(self: W._FileChunker, batch: object, history: object, start: int) -> object:
        if history is not None:  # planned batches (after the probes): the encoders are behind
            gate.wait(10)
        return real_work(self, batch, history, start)  # type: ignore[arg-type]

    monkeypatch.setattr(W._FileChunker, "_work", held_work)
    with pytest.raises(UsageError, match="changed while it was being stored"):
        with zoo.blobs.writer() as w:
            ra = w.add(a)
            with open(a, "r+b") as f:  # rewritten in place, same size
                f.seek(2_500_000)
                f.write(b"\xff" * 100_000)
            gate.set()
            w.add(b)
    assert not zoo.backend.exists(blob_key(ra.blob))
    assert temps(tmp_path / "store") == []
