"""Reading files of many segments: bytegroup frames decoded into the segment buffer (any
offset, exact lengths), pack ranges read into reused buffers, the whole file hashed as it is
written, segment buffers reused, segments read on the reading thread (a local store) or by the
reader threads (a remote one); and
every safety property of the read path kept on that path (each chunk verified, the whole file
verified, nothing at the destination after a failure, memory bounded by the look-ahead)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from zoostore.core.atomic import TEMP_PREFIX
from zoostore.core.digest import Digest
from zoostore.core import cancel
from zoostore.core.errors import FormatError, IntegrityError, Interrupted, RemoteError
from zoostore.core.progress import NullProgress
from zoostore.repository import Store, init_store
from zoostore.storage import blobs, codec, frames_into, segments
from zoostore.storage.blobs import BlobStore
from zoostore.storage.local_index import partial_chunks
from zoostore.storage.pack import pack_key
from zoostore.storage.recipe import ChunkRef, Recipe

SEGMENT = 64 * 1024  # small segments make a 2 MB file take the many-segment path


def weights(n: int, seed: int) -> bytes:
    """Float32-like bytes (a skewed exponent byte every 4) that byte-grouping compresses."""
    rng = random.Random(seed)
    out = bytearray(rng.randbytes(n))
    out[3::4] = bytes(rng.choice((0x3C, 0x3D, 0xBC, 0xBD)) for _ in range(len(out[3::4])))
    return bytes(out)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 1001, 65537])
def test_bytegroup_decode_into_writes_exactly_its_bytes_at_any_offset(n: int) -> None:
    raw = weights(n, n)
    frame = codec.encode(raw, codec.BYTEGROUP, level=1)
    out = bytearray(b"\xaa" * (n + 20))
    assert frames_into.decode_into(frame, out, 7) == n
    assert out[7 : 7 + n] == raw and out[:7] == b"\xaa" * 7 and out[7 + n :] == b"\xaa" * 13
    assert codec.decode(frame) == raw


def _bytegroup(payload: bytes, n: int) -> bytes:
    return codec.HEADER.pack(codec.BYTEGROUP, n) + payload


def test_bytegroup_decode_into_refuses_payloads_of_the_wrong_length() -> None:
    planes = bytes(range(256)) * 4  # 1,024 bytes of planes
    undeclared = zstandard.ZstdCompressor(write_content_size=False).compress(planes)
    declared = zstandard.ZstdCompressor(write_content_size=True).compress(planes)
    out = bytearray(2048)
    with pytest.raises(FormatError, match="decodes to 1024"):
        frames_into.decode_into(_bytegroup(undeclared, 1028), out, 0)
    with pytest.raises(FormatError, match="longer than the 1020"):
        frames_into.decode_into(_bytegroup(undeclared, 1020), out, 0)
    with pytest.raises(FormatError, match="declares 1024"):
        frames_into.decode_into(_bytegroup(declared, 1020), out, 0)
    with pytest.raises(FormatError):
        frames_into.decode_into(_bytegroup(declared[: len(declared) // 2], 1024), out, 0)
    with pytest.raises(FormatError, match="more than the 100 expected"):
        frames_into.decode_into(_bytegroup(declared, 1024), bytearray(100), 0)
    assert frames_into.decode_into(_bytegroup(declared, 1024), out, 0) == 1024


def test_bytegroup_bomb_without_a_size_fills_only_the_frame() -> None:
    comp = zstandard.ZstdCompressor(level=1, write_content_size=False).compressobj()
    bomb = b"".join([comp.compress(bytes(1 << 20)) for _ in range(64)] + [comp.flush()])
    with pytest.raises(FormatError, match="longer than the 1000"):
        frames_into.decode_into(_bytegroup(bomb, 1000), bytearray(1000), 0)


def test_buffers_are_reused_while_reading_and_kept_up_to_their_limit() -> None:
    pool = segments.SegmentBuffers(keep=2)
    with pool.reading():
        first = pool.take(100)
        assert len(first) == 100
        pool.give(first)
        assert pool.take(60) is first and len(first) == 100  # never resized: the caller uses 60
        pool.give(memoryview(first)[:60])  # a view gives its buffer back
        bigger = pool.take(300)
        assert bigger is not first and len(bigger) == 300
        for buf in (bytearray(1), bytearray(2), bytearray(3)):
            pool.give(buf)
        assert len(pool._free) == 2
    assert pool._free == []  # the last read dropped the spares


def test_buffers_over_a_quarter_segment_get_a_whole_one_and_none_are_kept_when_idle() -> None:
    pool = segments.SegmentBuffers(keep=2)
    quarter = segments.MAX_SEGMENT // 4
    with pool.reading():
        assert len(pool.take(quarter)) == quarter
        big = pool.take(quarter + 1)
        assert len(big) == segments.MAX_SEGMENT
        pool.give(big)
        assert pool.take(segments.MAX_SEGMENT) is big
        assert len(pool.take(segments.MAX_SEGMENT + 5)) == segments.MAX_SEGMENT + 5
    # Outside a read: exactly the size asked for, and nothing given back is kept.
    assert len(pool.take(quarter + 1)) == quarter + 1
    pool.give(big)
    assert pool._free == []


def test_nested_reads_keep_the_spares_until_the_last_one_ends() -> None:
    pool = segments.SegmentBuffers(keep=4)
    with pool.reading():
        with pool.reading():
            buf = pool.take(10)
            pool.give(buf)
        assert pool._free == [buf]
    assert pool._free == []


@pytest.fixture(params=["inline", "threads"])
def zoo(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A local store, read both ways: on the reading thread (a local store's way) and through
    the reader threads (a remote store's way, which the local directory stands in for)."""
    monkeypatch.setattr(segments, "MAX_SEGMENT", SEGMENT)
    monkeypatch.setattr(segments, "LOCAL_SEGMENT", SEGMENT)   # this store is a local one
    store, _ = init_store(tmp_path / "store")
    store.blobs._inline = request.param == "inline"
    return store


@pytest.fixture
def threaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A local store read through the reader threads, as a remote one is."""
    monkeypatch.setattr(segments, "MAX_SEGMENT", SEGMENT)
    monkeypatch.setattr(segments, "LOCAL_SEGMENT", SEGMENT)
    store, _ = init_store(tmp_path / "store")
    store.blobs._inline = False
    return store


def test_a_local_store_reads_and_decodes_on_the_reading_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "LOCAL_SEGMENT", SEGMENT)
    store, _ = init_store(tmp_path / "store")
    data = weights(2_000_000, 21)
    blob = _publish(store, tmp_path, data)
    recipe = store.blobs.recipe(blob)
    assert len(list(segments.plan_segments(recipe, range(len(recipe.chunks)), None, SEGMENT))) > 3
    loaded_on: set[str] = set()
    real = BlobStore._load_segment

    def spy(self: BlobStore, *args: object) -> memoryview:
        loaded_on.add(threading.current_thread().name)
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(BlobStore, "_load_segment", spy)
    assert store.blobs.get_file(blob, tmp_path / "out" / "w.bin").read_bytes() == data
    assert store.blobs.read_range(blob, 100, 1_500_000) == data[100:1_500_000]
    assert loaded_on == {threading.current_thread().name} and store.blobs._readers is None


def _publish(zoo: Store, tmp_path: Path, data: bytes) -> Digest:
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    return zoo.blobs.put_files([src])[0].blob


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_a_many_segment_file_is_read_through_reused_buffers(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = weights(6_000_000, 1)
    blob = _publish(zoo, tmp_path, data)
    fresh: list[int] = []

    class Counting(segments.SegmentBuffers):
        def take(self, n: int) -> bytearray:
            fresh.append(len(self._free) == 0)
            return super().take(n)

    monkeypatch.setattr(zoo.blobs, "_segment_buffers", Counting(blobs.LOOKAHEAD + 2))
    out = zoo.blobs.get_file(blob, tmp_path / "out" / "w.bin")
    assert out.read_bytes() == data
    recipe = zoo.blobs.recipe(blob)
    runs = len(list(segments.plan_segments(recipe, range(len(recipe.chunks)), None)))
    assert runs > 3 * (blobs.LOOKAHEAD + 2)
    # Buffers are taken once per segment, mostly reused: new ones while the look-ahead fills up
    # and when the writer lags (only two spares are kept, so how many depends on timing).
    assert len(fresh) == runs and sum(fresh) <= runs // 2


def test_a_corrupt_chunk_mid_file_leaves_nothing_and_no_thread_busy(zoo: Store, tmp_path: Path) -> None:
    data = weights(2_000_000, 2)
    blob = _publish(zoo, tmp_path, data)
    recipe = zoo.blobs.recipe(blob)
    ref = recipe.chunks[len(recipe.chunks) // 2]
    pack = tmp_path / "store" / pack_key(ref.pack)
    damaged = bytearray(pack.read_bytes())
    damaged[ref.offset + ref.length - 3] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(damaged))
    dest = tmp_path / "out" / "w.bin"
    with pytest.raises(IntegrityError, match="cannot be read"):
        zoo.blobs.get_file(blob, dest)
    assert not dest.exists() and _temps(tmp_path / "out") == []
    # The reader threads are free again: a following read of another file works.
    other = _publish(zoo, tmp_path, weights(1_000_000, 3))
    assert zoo.blobs.get_file(other, tmp_path / "out" / "o.bin").read_bytes() == weights(1_000_000, 3)


def test_a_whole_file_mismatch_on_the_many_segment_path_is_refused(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = _publish(zoo, tmp_path, weights(2_000_000, 4))
    real = BlobStore._load_segment
    passes: list[bool] = []

    def swap_one(self: BlobStore, recipe: Recipe, kind: str, idx: list[int], *args: object) -> memoryview:
        data: memoryview = real(self, recipe, kind, idx, *args)  # type: ignore[arg-type]
        if idx[0] == 0:
            passes.append(bool(args[-1]))  # check: each chunk verified
        if 5 in idx:  # a bug after verification: bytes swapped inside a segment, on every read
            data[0], data[1] = data[1] ^ 1, data[0]
        return data

    monkeypatch.setattr(BlobStore, "_load_segment", swap_one)
    dest = tmp_path / "out" / "w.bin"
    with pytest.raises(IntegrityError, match="hashes to"):
        zoo.blobs.get_file(blob, dest)
    assert not dest.exists() and _temps(tmp_path / "out") == []
    # Read first without per-chunk hashes, then again (after the mismatch) with them.
    assert passes == [False, True]


def test_a_file_that_hashes_wrong_once_is_read_again_chunk_by_chunk(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first read hashes only the whole file; a mismatch (here bytes that go wrong once, as
    # a cached chunk edited through a hard link would) makes a second read, each chunk verified.
    data = weights(2_000_000, 4)
    blob = _publish(zoo, tmp_path, data)
    real = BlobStore._load_segment
    checks: list[bool] = []

    def once(self: BlobStore, recipe: Recipe, kind: str, idx: list[int], *args: object) -> memoryview:
        out: memoryview = real(self, recipe, kind, idx, *args)  # type: ignore[arg-type]
        checks.append(bool(args[-1]))
        if len(checks) == 2:
            out[0] ^= 1
        return out

    monkeypatch.setattr(BlobStore, "_load_segment", once)
    dest = tmp_path / "out" / "w.bin"
    full = _slots_free(zoo.blobs)
    progress = _Recorder()
    assert zoo.blobs.get_file(blob, dest, progress=progress).read_bytes() == data
    assert not any(checks[:2]) and checks[-1] and _temps(tmp_path / "out") == []
    # Both reads give back every slot and buffer; the bar goes to the file's size once.
    assert _slots_free(zoo.blobs) == full
    assert zoo.blobs._segment_buffers._free == [] and zoo.blobs._range_buffers._free == []
    assert progress.events == [("start", len(data)), ("advanced", len(data)), ("done", 0)]


class _Recorder(NullProgress):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int]] = []

    def start(self, task: str, total: int | None = None, *, unit: str = "B") -> None:
        self.events.append(("start", total or 0))

    def advance(self, task: str, amount: int = 1) -> None:
        if self.events[-1][0] == "advanced":
            self.events[-1] = ("advanced", self.events[-1][1] + amount)
        else:
            self.events.append(("advanced", amount))

    def done(self, task: str) -> None:
        self.events.append(("done", 0))


def test_a_buffer_given_back_while_a_view_of_it_lives_is_reused_as_it_is() -> None:
    # Buffers are never resized, so a view still alive (say in a traceback) never blocks reuse.
    pool = segments.SegmentBuffers(2)
    with pool.reading():
        buf = pool.take(100)
        view = memoryview(buf)[10:20]
        pool.give(buf)
        assert pool.take(50) is buf and len(buf) == 100 and len(view) == 10


def test_segment_buffers_keep_only_their_spares() -> None:
    # What bounds memory: buffers in flight (the look-ahead) plus `keep` spares; more given
    # back are dropped.
    pool = segments.SegmentBuffers(2)
    with pool.reading():
        taken = [pool.take(1024) for _ in range(5)]
        for buf in taken:
            pool.give(buf)
        assert len(pool._free) == 2
        again = [pool.take(1024) for _ in range(3)]
        assert again[0] is taken[1] and again[1] is taken[0] and all(again[2] is not b for b in taken)


def test_a_full_pool_keeps_the_larger_buffer() -> None:
    # Buffers of small reads given back first must not push out the segment-sized ones that
    # come back later: each of those dropped was a fresh buffer, page-faulted in again.
    pool = segments.SegmentBuffers(2)
    with pool.reading():
        small, mid, big = bytearray(10), bytearray(100), bytearray(1000)
        for buf in (small, mid, big, bytearray(50)):
            pool.give(buf)
        assert sorted(map(len, pool._free)) == [100, 1000]
        assert pool.take(500) is big and pool.take(100) is mid


def test_a_take_gets_the_smallest_spare_that_fits() -> None:
    # A small read taking a segment-sized spare would leave the next segment a fresh buffer.
    pool = segments.SegmentBuffers(4)
    with pool.reading():
        big, small, other_small = bytearray(1000), bytearray(100), bytearray(100)
        for buf in (small, other_small, big):
            pool.give(buf)
        assert pool.take(50) is other_small   # of equal ones, the most recently given
        assert pool.take(50) is small and pool.take(900) is big


def _counting_unfilled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    fresh: list[int] = []
    real = segments.unfilled

    def counting(n: int) -> bytearray:
        fresh.append(n)
        return real(n)

    monkeypatch.setattr(segments, "unfilled", counting)
    return fresh


def test_reads_inside_keeping_buffers_reuse_the_buffers_of_the_reads_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "LOCAL_SEGMENT", SEGMENT)
    store, _ = init_store(tmp_path / "store")
    data = weights(1_000_000, 31)
    blob = _publish(store, tmp_path, data)
    fresh = _counting_unfilled(monkeypatch)
    store.blobs.get_file(blob, tmp_path / "a.bin")
    alone = len(fresh)
    store.blobs.get_file(blob, tmp_path / "b.bin")
    assert alone > 0 and len(fresh) == 2 * alone   # each read alone: its own buffers
    del fresh[:]
    with store.blobs.keeping_buffers():
        for name in ("c.bin", "d.bin", "e.bin"):
            assert store.blobs.get_file(blob, tmp_path / name).read_bytes() == data
    assert len(fresh) == alone   # the later reads took the first one's buffers
    assert store.blobs._segment_buffers._free == [] and store.blobs._range_buffers._free == []


def test_a_sync_fill_reads_its_files_through_one_pool_of_buffers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoostore.core.progress import NullProgress
    from zoostore.ops import sync_fill
    from zoostore.storage.cache import SMALL_FILE, Cache

    monkeypatch.setattr(sync_fill, "LOCAL_FILES_IN_FLIGHT", 0)   # one thread: a count, not a race
    store, _ = init_store(tmp_path / "store")
    files = {_publish(store, tmp_path, weights(SMALL_FILE + 200_000, seed)): seed for seed in range(4)}
    needed = {blob: sync_fill.Need("m", f"file {seed}", False, SMALL_FILE + 200_000) for blob, seed in files.items()}
    fresh = _counting_unfilled(monkeypatch)
    first = next(iter(files))
    store.blobs.get_file(first, tmp_path / "alone.bin")
    alone = len(fresh)
    del fresh[:]
    out = sync_fill.fill_cache(Cache(tmp_path / "cache"), store, needed, set(needed), lock=None,  # type: ignore[arg-type]
                               progress=NullProgress())
    assert set(out) == set(files) and out[first].read_bytes() == weights(SMALL_FILE + 200_000, 0)
    # Per file the pool emptied between files and each took fresh buffers (4 × alone).
    assert 0 < alone and len(fresh) < 2 * alone


def _slots_free(store: BlobStore) -> int:
    return store._segment_slots._value  # type: ignore[attr-defined,no-any-return]


def test_segment_slots_are_all_given_back_after_reads_that_succeed_or_fail(threaded: Store, tmp_path: Path) -> None:
    zoo = threaded
    full = _slots_free(zoo.blobs)
    good = _publish(zoo, tmp_path, weights(2_000_000, 5))
    zoo.blobs.get_file(good, tmp_path / "out" / "good.bin")
    assert _slots_free(zoo.blobs) == full
    bad = _publish(zoo, tmp_path, weights(2_000_000, 6))
    ref = zoo.blobs.recipe(bad).chunks[5]
    pack = tmp_path / "store" / pack_key(ref.pack)
    damaged = bytearray(pack.read_bytes())
    damaged[ref.offset + ref.length - 3] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError):
        zoo.blobs.get_file(bad, tmp_path / "out" / "bad.bin")
    assert _slots_free(zoo.blobs) == full
    assert zoo.blobs._segment_buffers._free == [] and zoo.blobs._range_buffers._free == []


def test_concurrent_reads_share_one_segment_slot_without_deadlock(
        threaded: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = threaded
    # A read with nothing in flight waits for a slot; one with segments in flight yields its
    # oldest instead: with a single slot for four reads, all of them still finish.
    monkeypatch.setattr(zoo.blobs, "_segment_slots", threading.BoundedSemaphore(1))
    files = {i: weights(1_000_000 + i, 10 + i) for i in range(4)}
    blobs_ = {i: _publish(zoo, tmp_path, data) for i, data in files.items()}
    errors: list[BaseException] = []

    def read(i: int) -> None:
        try:
            out = zoo.blobs.get_file(blobs_[i], tmp_path / "out" / f"{i}.bin")
            assert out.read_bytes() == files[i]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and errors == []
    assert _slots_free(zoo.blobs) == 1


def test_only_reader_threads_decode_within_the_decode_slots(threaded: Store, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = threaded
    # An inline read (read_range on the caller's thread) never waits for a slot the reader
    # threads hold: with every slot taken, it still completes; a many-segment read uses them.
    small = _publish(zoo, tmp_path, weights(30_000, 7))
    big = _publish(zoo, tmp_path, weights(1_000_000, 8))
    for _ in range(zoo.blobs.workers):
        zoo.blobs._decode_slots.acquire()
    try:
        assert zoo.blobs.read_range(small, 0, 30_000) == weights(30_000, 7)
    finally:
        for _ in range(zoo.blobs.workers):
            zoo.blobs._decode_slots.release()
    used: list[str] = []
    real = zoo.blobs._decode_slots

    class Spy:
        def __enter__(self) -> None:
            used.append(threading.current_thread().name)
            real.acquire()

        def __exit__(self, *exc: object) -> None:
            real.release()

    monkeypatch.setattr(zoo.blobs, "_decode_slots", Spy())
    assert zoo.blobs.get_file(big, tmp_path / "out" / "big.bin").read_bytes() == weights(1_000_000, 8)
    assert used and all(name.startswith("zoo-read") for name in used)


@pytest.mark.parametrize("check", [True, False])
def test_a_frame_of_the_wrong_length_names_the_hash_it_decoded_to_with_or_without_chunk_hashes(
        check: bool) -> None:
    # A recipe expects 1,001 bytes, the frame holds 1,000: refused whether or not the read
    # hashes chunks (get_file's first read does not), and the error's "got" is the hash of
    # what the frame decoded to, never the expected hash repeated.
    data = random.Random(7).randbytes(1000)
    want = Digest.of(data + b"\0")
    frame = codec.encode(data, codec.RAW)
    ref = ChunkRef(want, 1001, Digest.of(b"pack"), 0, len(frame))
    with pytest.raises(IntegrityError, match=f"got {Digest.of(data).hex} \\(1000 bytes\\)") as exc:
        frames_into.decode_run(Digest.of(b"file"), [ref], bytearray(frame), 0, bytearray(1001), 0, {},
                               check=check)
    assert exc.value.expected == want.hex and exc.value.actual == Digest.of(data).hex


def _stop(how: str) -> None:
    """A read that stops here: a network failure, or Ctrl-C (a stop request, as `cancel` sees it)."""
    if how == "network":
        raise RemoteError("connection reset by peer (simulated)")
    cancel.request()


@pytest.fixture
def stops() -> Iterator[None]:
    yield
    cancel.reset()


def _faulty_reads(monkeypatch: pytest.MonkeyPatch, how: str, *, flip: Callable[[bool, list[int]], bool],
                  stop: Callable[[bool, list[int]], bool]) -> Callable[..., memoryview]:
    """Patch BlobStore._load_segment: a segment for which `flip(checked, chunk indices)` holds
    gets its byte 0 flipped, and one for which `stop(...)` holds stops the read (`_stop(how)`);
    `checked` says whether the read verifies each chunk. Returns the real method."""
    real = BlobStore._load_segment

    def load(self: BlobStore, recipe: Recipe, kind: str, idx: list[int], *args: object) -> memoryview:
        out: memoryview = real(self, recipe, kind, idx, *args)  # type: ignore[arg-type]
        checked = bool(args[-1])
        if flip(checked, idx):
            out[0] ^= 1
        if stop(checked, idx):
            _stop(how)
        return out

    monkeypatch.setattr(BlobStore, "_load_segment", load)
    return real


@pytest.mark.parametrize("how", ["network", "interrupt"])
def test_a_second_read_that_stops_keeps_only_its_verified_prefix_and_resumes_from_it(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stops: None, how: str) -> None:
    data = weights(2_000_000, 5)
    blob = _publish(zoo, tmp_path, data)
    recipe = zoo.blobs.recipe(blob)
    middle = len(recipe.chunks) // 2
    real = _faulty_reads(monkeypatch, how,
                         flip=lambda checked, idx: not checked and idx[0] == 0,  # the first read goes wrong at byte 0
                         stop=lambda checked, idx: checked and middle in idx)    # the second stops half way
    dest, partial = tmp_path / "out" / "w.bin", tmp_path / "partial" / "w.bin"
    full = _slots_free(zoo.blobs)
    with pytest.raises(RemoteError if how == "network" else Interrupted):
        zoo.blobs.get_file(blob, dest, partial=partial)
    assert not dest.exists() and _temps(tmp_path / "out") == [] and _slots_free(zoo.blobs) == full
    kept = partial.read_bytes()   # the second read's prefix: verified, byte 0 right again
    assert 0 < len(kept) < len(data) and kept == data[: len(kept)]
    cancel.reset()
    monkeypatch.setattr(BlobStore, "_load_segment", real)
    before = zoo.blobs.stats.bytes_local
    assert zoo.blobs.get_file(blob, dest, local=partial_chunks(partial, recipe), partial=partial).read_bytes() == data
    assert not partial.exists() and zoo.blobs.stats.bytes_local - before == len(kept)


def test_a_partial_kept_by_a_stopped_first_read_may_hold_a_wrong_chunk_and_the_resume_heals_it(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stops: None) -> None:
    # The first read hashes no chunk, so a prefix it keeps when stopped is not verified chunk by
    # chunk (here a wrong byte, as a cached chunk edited through a hard link would give). The
    # resume takes the partial's chunks unhashed, the file hashes wrong, and the second read
    # verifies each: the wrong chunk comes from the store and does not count as reused.
    data = weights(2_000_000, 6)
    blob = _publish(zoo, tmp_path, data)
    recipe = zoo.blobs.recipe(blob)
    middle = len(recipe.chunks) // 2
    real = _faulty_reads(monkeypatch, "interrupt", flip=lambda checked, idx: idx[0] == 0,
                         stop=lambda checked, idx: middle in idx)
    dest, partial = tmp_path / "out" / "w.bin", tmp_path / "partial" / "w.bin"
    with pytest.raises(Interrupted):
        zoo.blobs.get_file(blob, dest, partial=partial)
    kept = partial.read_bytes()
    assert len(kept) > recipe.starts[1] and kept[0] != data[0] and kept[1:] == data[1 : len(kept)]
    cancel.reset()
    monkeypatch.setattr(BlobStore, "_load_segment", real)
    whole = sum(1 for start, ref in zip(recipe.starts, recipe.chunks) if start + ref.raw_length <= len(kept))
    before = zoo.blobs.stats.bytes_local
    assert zoo.blobs.get_file(blob, dest, local=partial_chunks(partial, recipe), partial=partial).read_bytes() == data
    reused = sum(ref.raw_length for ref in recipe.chunks[1:whole])
    assert not partial.exists() and zoo.blobs.stats.bytes_local - before == reused


def test_a_flipped_byte_in_a_raw_frame_is_named_by_pack_chunk_and_both_hashes(zoo: Store, tmp_path: Path) -> None:
    # A raw frame decodes whatever its bytes: only hashes see the damage. The first read (the
    # file's hash only) fails, and the second names the pack, the chunk, and both hashes.
    data = random.Random(8).randbytes(2_000_000)   # incompressible: every frame raw
    blob = _publish(zoo, tmp_path, data)
    recipe = zoo.blobs.recipe(blob)
    i = len(recipe.chunks) // 2
    ref = recipe.chunks[i]
    pack = tmp_path / "store" / pack_key(ref.pack)
    damaged = bytearray(pack.read_bytes())
    assert damaged[ref.offset] == codec.RAW
    damaged[ref.offset + ref.length - 3] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(damaged))
    bad = bytearray(data[recipe.starts[i] : recipe.starts[i] + ref.raw_length])
    bad[-3] ^= 0xFF
    dest = tmp_path / "out" / "w.bin"
    with pytest.raises(IntegrityError) as exc:
        zoo.blobs.get_file(blob, dest)
    message = str(exc.value)
    assert f"chunk {ref.chunk} in pack {ref.pack}" in message and f"expected hash {ref.chunk.hex}" in message
    assert f"got {Digest.of(bytes(bad)).hex}" in message
    assert (exc.value.expected, exc.value.actual) == (ref.chunk.hex, Digest.of(bytes(bad)).hex)
    assert not dest.exists() and _temps(tmp_path / "out") == []


def test_a_local_store_reads_in_smaller_segments_than_a_remote_one(tmp_path: Path) -> None:
    """Local reads are copies from the page cache: 1 MiB segments (less memory in flight); over
    the network 4 MiB ranged reads spread each request's latency (segments.LOCAL_SEGMENT)."""
    from zoostore.storage.backends.memory import MemoryBackend
    from zoostore.storage.blobs import BlobStore

    local, _ = init_store(tmp_path / "store")
    assert local.blobs._segment == segments.LOCAL_SEGMENT < segments.MAX_SEGMENT
    remote = BlobStore(MemoryBackend("memory://bucket/zoo"), local.config)
    assert remote._segment == segments.MAX_SEGMENT
    data = weights(3 * segments.LOCAL_SEGMENT, 2)
    blob = _publish(local, tmp_path, data)
    recipe = local.blobs.recipe(blob)
    runs = list(segments.plan_segments(recipe, range(len(recipe.chunks)), None, local.blobs._segment))
    assert len(runs) >= 3 and all(sum(recipe.chunks[i].raw_length for i in idx) <= segments.LOCAL_SEGMENT
                                  or len(idx) == 1 for _, idx in runs)
    out = tmp_path / "out.bin"
    local.blobs.get_file(blob, out)
    assert out.read_bytes() == data
