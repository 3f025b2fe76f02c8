"""A cold sync of many small files: filled on the syncing thread from a local store, each chunk
and each file still verified, nothing partial left on failure, one file created in the cache per
file (no recipe, no stamp), the models/ hint appended once per model, links made at absent
targets directly."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers_store import project_dir, published_store, write_dir

from zoostore.core.atomic import TEMP_PREFIX
from zoostore.core.digest import Digest, hash_file
from zoostore.core.errors import IntegrityError
from zoostore.documents.project import load_project
from zoostore.ops.place import place_file
from zoostore.ops.publish import publish
from zoostore.ops.sync import sync_project
from zoostore.repository import Store, init_store
from zoostore.storage.blobs import BlobStore
from zoostore.storage.cache import Cache
from zoostore.storage.recipe import ChunkRef, Recipe

FILES = {f"f{i:02}.bin": os.urandom(3000 + i) for i in range(12)}


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    return published_store(tmp_path, FILES)


def project(tmp_path: Path, name: str) -> Path:
    return project_dir(tmp_path, name, store=str(tmp_path / "store"))


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_small_files_skip_the_reader_pool_and_are_verified(zoo: Store, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BlobStore, "get_file", lambda *a, **k: pytest.fail("reader pool used for a small file"))
    stamps: Counter[Digest] = Counter()
    real_stamp = Cache._write_stamp

    def counting(self: Cache, blob: Digest, key: str) -> None:
        stamps[blob] += 1
        real_stamp(self, blob, key)

    monkeypatch.setattr(Cache, "_write_stamp", counting)
    report = sync_project(load_project(project(tmp_path, "a")))
    assert len(report.placed) == len(FILES)
    cache = Cache()
    for rel in report.placed:
        placed = tmp_path / "a/models" / rel
        assert placed.read_bytes() == FILES[placed.name]
        blob = hash_file(placed)
        assert cache.blob_path(blob).stat().st_mode & 0o777 == 0o444
        assert os.path.samefile(placed, cache.blob_path(blob))
        # one file creation per small file: no recipe (a single chunk is its own), no stamp
        assert not cache.recipe_path(blob).exists() and not cache.stamp_path(blob).exists()
        recipe = cache.cached_recipe(blob)   # the file as one chunk, its id the blob id
        assert recipe is not None and [(r.chunk, r.raw_length) for r in recipe.chunks] == [(blob, len(FILES[placed.name]))]
        assert not cache.stamp_holds(blob) and cache.check(blob) == "ok"   # hashed instead
    assert stamps == Counter()
    assert sorted(cache.model_blobs("m")) == sorted(hash_file(tmp_path / "a/models" / r) for r in report.placed)
    assert (cache.root / "models/m").read_text().count("\n") == len(FILES)   # once each
    assert temps(tmp_path) == []


def test_a_corrupt_chunk_leaves_nothing_in_cache_or_dest(zoo: Store, tmp_path: Path) -> None:
    packs = [p for p in (tmp_path / "store/packs").rglob("*") if p.is_file()]
    for pack in packs:
        data = bytearray(pack.read_bytes())
        data[20] ^= 0xFF   # inside the first frame
        pack.chmod(0o644)
        pack.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        sync_project(load_project(project(tmp_path, "a")))
    blobs = tmp_path / "cache/blobs"
    cached = [p for p in blobs.rglob("*") if p.is_file()] if blobs.exists() else []
    for p in cached:   # whatever got in is verified
        assert hash_file(p).hex == p.name
    assert len(cached) < len(FILES) and temps(tmp_path) == []


def test_a_damaged_chunk_of_a_batched_small_file_is_named(zoo: Store, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The batched read hashes files, not chunks: a file that hashes wrong is read again alone,
    each chunk verified, and the error names the damaged chunk and pack, not the recipe."""
    hashed: list[int] = []
    real_put = Cache.put_small

    def put_small(self: Cache, recipe: Recipe, data: bytes) -> Path:
        hashed.append(len(data))
        return real_put(self, recipe, data)

    monkeypatch.setattr(Cache, "put_small", put_small)
    pack = next(p for p in (tmp_path / "store/packs").rglob("*") if p.is_file())
    data = bytearray(pack.read_bytes())
    data[20] ^= 0xFF   # inside the first frame: random bytes are stored raw, so it decodes, wrongly
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"chunk blake3:\w+ in pack blake3:\w+ at offset \d+ is corrupt") as err:
        sync_project(load_project(project(tmp_path, "a")))
    assert "recipe" not in str(err.value)
    # Advice that works: plain verify does not read packs, and a republish reuses the chunk.
    assert "run 'zoostore verify --read-data'" in str(err.value) and "restore that pack" in str(err.value)
    assert hashed and temps(tmp_path) == []   # the batch ran; the damaged file went no further
    for p in (tmp_path / "cache/blobs").rglob("*"):
        assert not p.is_file() or hash_file(p).hex == p.name


def test_a_whole_file_mismatch_is_refused(zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = BlobStore.read_range
    monkeypatch.setattr(BlobStore, "read_range", lambda self, blob, start, end: real(self, blob, start, end)[::-1])
    real_spans = BlobStore.chunk_spans   # the batched read of a sync's small files (ops.sync_fill)

    @contextlib.contextmanager
    def reversed_spans(self: BlobStore, refs: list[ChunkRef], **kw: Any) -> Iterator[dict[Digest, Any]]:
        with real_spans(self, refs, **kw) as spans:
            yield {chunk: (memoryview(bytes(seg[a:b])[::-1]), 0, b - a) for chunk, (seg, a, b) in spans.items()}

    monkeypatch.setattr(BlobStore, "chunk_spans", reversed_spans)
    with pytest.raises(IntegrityError, match="hashes to"):
        sync_project(load_project(project(tmp_path, "a")))
    assert not any(p.is_file() for p in (tmp_path / "cache/blobs").rglob("*")) and temps(tmp_path) == []
    assert not (tmp_path / "a/models/m/x86_64").exists() or not any((tmp_path / "a/models/m/x86_64").iterdir())


@pytest.mark.parametrize("link", ["auto", "symlink"])
def test_links_to_absent_targets_are_made_in_place_and_never_follow_a_planted_one(tmp_path: Path, link: str) -> None:
    cached = tmp_path / "cached.bin"
    cached.write_bytes(b"verified bytes")
    blob = hash_file(cached)
    target = tmp_path / "dest/file.bin"
    target.parent.mkdir()
    place_file(cached, target, blob, link)
    assert target.read_bytes() == b"verified bytes" and temps(tmp_path) == []
    if link == "auto":
        assert os.path.samefile(target, cached)
    # a symlink planted at the name is replaced (through a temp name), its target untouched
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target.unlink()
    target.symlink_to(victim)
    place_file(cached, target, blob, link)
    assert victim.read_text() == "keep me" and target.read_bytes() == b"verified bytes"
    assert temps(tmp_path) == []


def test_a_small_delta_upgrade_reads_its_bases_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    from zoostore.documents.store_config import Chunking, StoreConfig

    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    config = StoreConfig(chunking=Chunking(256, 1024, 4096), pack_target_size=16 * 1024, delta=True)
    zoo, _ = init_store(tmp_path / "store", config=config)
    # one chunk (below the minimum chunk size), changed: a delta frame whose base only the
    # cached 1.0.0 file holds, so no chunk of 2.0.0 is in the cache but its base is
    v1 = random.Random(11).randbytes(250)
    v2 = bytearray(v1)
    v2[100] ^= 0x5A
    for version, data in (("1.0.0", v1), ("2.0.0", bytes(v2))):
        src = tmp_path / "src" / version
        src.mkdir(parents=True)
        (src / "lib.so").write_bytes(data)
        publish(zoo, "m", version, [src], check=False)
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "zoo.toml").write_text('store = "../store"\narchs = ["x86_64"]\n[models]\nm = "1.0.0"\n')
    sync_project(load_project(proj))
    (proj / "zoo.toml").write_text('store = "../store"\narchs = ["x86_64"]\n[models]\nm = "2.0.0"\n')
    up = sync_project(load_project(proj))
    assert (proj / "models/m/x86_64/lib.so").read_bytes() == bytes(v2)
    recipe = zoo.blobs.recipe(zoo.manifest("m").versions["2.0.0"].files["any"]["lib.so"].blob)
    assert recipe.chunks[0].base is not None
    assert up.bytes_reused == 250, up.to_dict()   # the base came from the cache, not the store


def test_missing_small_files_are_read_in_a_few_ranged_reads(zoo: Store, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from zoostore.storage.backends.local import LocalBackend

    ranges: list[str] = []
    real = LocalBackend.get_range_into

    def counting(self: LocalBackend, key: str, start: int, buf: bytearray) -> int:
        ranges.append(key)
        return real(self, key, start, buf)

    monkeypatch.setattr(LocalBackend, "get_range_into", counting)
    report = sync_project(load_project(project(tmp_path, "a")))
    assert len(report.placed) == len(FILES)
    packs = [p for p in (tmp_path / "store/packs").rglob("*") if p.is_file()]
    assert 0 < len(ranges) <= len(packs) < len(FILES)   # not one read per file
    for rel in report.placed:
        assert (tmp_path / "a/models" / rel).read_bytes() == FILES[Path(rel).name]
    assert sorted(Cache().model_blobs("m")) == sorted(hash_file(tmp_path / "a/models" / r) for r in report.placed)


def test_small_files_from_a_local_store_are_read_in_batches_of_local_batch_bytes(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoostore.ops import sync_fill

    batches: list[int] = []
    real = sync_fill._read_batch

    def counting(cache: Cache, blobs: BlobStore, batch: list[Recipe], *args: Any) -> None:
        batches.append(sum(r.size for r in batch))
        real(cache, blobs, batch, *args)

    monkeypatch.setattr(sync_fill, "_read_batch", counting)
    monkeypatch.setattr(sync_fill, "LOCAL_BATCH_BYTES", 6_000)   # two of FILES' files
    report = sync_project(load_project(project(tmp_path, "a")))
    assert len(report.placed) == len(FILES)
    full = [n for n in batches if n]
    assert sum(full) == sum(map(len, FILES.values())) and len(full) == 6
    assert all(n < 6_000 + 3100 for n in full)   # closed at the first file that reached the bound
    for rel in report.placed:
        assert (tmp_path / "a/models" / rel).read_bytes() == FILES[Path(rel).name]


def test_a_small_file_whose_recipe_is_gone_is_named(zoo: Store, tmp_path: Path) -> None:
    from zoostore.core.errors import NotFoundError

    proj = project(tmp_path, "a")
    sync_project(load_project(proj), dest=str(tmp_path / "first"))   # writes zoo.lock
    gone = hash_file(tmp_path / "first/m/x86_64/f03.bin")
    (tmp_path / "store/blobs" / gone.hex[:2] / gone.hex).unlink()
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(NotFoundError, match=r"m@1\.0\.0 x86_64/f03\.bin .*is gone from the store"):
        sync_project(load_project(proj))


def test_batched_small_files_of_several_chunks_shared_chunks_and_delta_frames(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    from zoostore.documents.store_config import Chunking, StoreConfig

    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    config = StoreConfig(chunking=Chunking(256, 1024, 4096), pack_target_size=16 * 1024, delta=True)
    zoo, _ = init_store(tmp_path / "store", config=config)
    rng = random.Random(5)
    base = rng.randbytes(20_000)
    edited = bytearray(base)
    edited[10_000] ^= 0x55
    versions = {"1.0.0": {"a.bin": base, "c.bin": base, "empty.bin": b""},
                # several chunks each; b shares most chunks with a; c is a, edited (delta frames)
                "2.0.0": {"a.bin": base, "b.bin": base[:12_000] + rng.randbytes(3_000), "c.bin": bytes(edited),
                          "empty.bin": b"", "same-as-a.bin": base}}
    for version, files in versions.items():
        src = tmp_path / "src" / version
        src.mkdir(parents=True)
        for name, data in files.items():
            (src / name).write_bytes(data)
        publish(zoo, "m", version, [src], check=False)
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "zoo.toml").write_text('store = "../store"\narchs = ["x86_64"]\n[models]\nm = "2.0.0"\n')
    batched: list[Digest] = []
    given: dict[Digest, type] = {}
    real_put = Cache.put_small

    def put_small(self: Cache, recipe: Recipe, data: bytes | memoryview) -> Path:
        batched.append(recipe.blob)
        given[recipe.blob] = type(data)
        return real_put(self, recipe, data)

    monkeypatch.setattr(Cache, "put_small", put_small)
    report = sync_project(load_project(proj))   # a cold cache: no 1.0.0 file to take chunks from
    assert len(report.placed) == 5
    # the file with a delta frame is read alone (Cache.ensure: its base from the cached a.bin),
    # the others in the batch
    placed = {name: hash_file(proj / "models/m/x86_64" / name) for name in versions["2.0.0"]}
    assert sorted(batched) == sorted({blob for name, blob in placed.items() if name != "c.bin"})
    # a file whose chunks sit back to back in the batch's read is handed over as a view of it;
    # b.bin's first chunks are a.bin's, read once, so its bytes are joined
    # b.bin's first chunks are a.bin's, read once: its bytes are joined, not a view
    assert given[placed["b.bin"]] is bytes
    cache = Cache()
    for name, data in versions["2.0.0"].items():
        placed = proj / "models/m/x86_64" / name
        assert placed.read_bytes() == data
        blob = hash_file(placed)
        assert os.path.samefile(placed, cache.blob_path(blob))
        stored = zoo.blobs.recipe(blob)
        assert cache.recipe_path(blob).exists() == (len(stored.chunks) > 1)
        recipe = cache.cached_recipe(blob)
        assert recipe is not None and [r.chunk for r in recipe.chunks] == [r.chunk for r in stored.chunks]
    assert any(r.base is not None for r in zoo.blobs.recipe(hash_file(proj / "models/m/x86_64/c.bin")).chunks)
    assert temps(tmp_path) == []


def _s3_store_of_small_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: str,
                             options: dict[str, object], n: int) -> tuple[str, dict[str, bytes]]:
    """An S3 store holding m@1.0.0 (x86_64) of `n` small files, and the environment a project
    syncing from it needs; (its URL, the files)."""
    import json

    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOOSTORE_STORE_OPTIONS", json.dumps(options))
    url = f"s3://{bucket}/zoo"
    files = {f"f{i:02}.bin": os.urandom(2000 + i) for i in range(n)}
    zoo = init_store(url, storage_options=options)[0]
    publish(zoo, "m", "1.0.0", [write_dir(tmp_path / "src", files)], arch="x86_64", check=False)
    return url, files


def test_small_files_from_s3_fetch_recipes_together_and_chunks_in_a_few_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_bucket: str, s3_storage_options: dict[str, object]) -> None:
    """From a remote store each small file costs its recipe request, made RECIPE_FETCHES at a
    time, and its chunks come in a few ranged reads of the packs (before: a recipe and a ranged
    read per file, SYNC_FILES_IN_FLIGHT files at a time)."""
    import threading
    import time

    from zoostore.ops.sync_fill import SYNC_FILES_IN_FLIGHT
    from zoostore.storage.backends.s3 import S3Backend

    url, files = _s3_store_of_small_files(tmp_path, monkeypatch, s3_bucket, s3_storage_options, 40)
    lock = threading.Lock()
    state = {"now": 0, "most": 0, "ranges": 0}
    real_get, real_range = S3Backend.get, S3Backend.get_range_into

    def get(self: S3Backend, key: str) -> bytes:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            time.sleep(0.02)   # a network's latency: requests made together overlap
            return real_get(self, key)
        finally:
            with lock:
                state["now"] -= 1

    def get_range_into(self: S3Backend, key: str, start: int, buf: bytearray) -> int:
        with lock:
            state["ranges"] += 1
        return real_range(self, key, start, buf)

    monkeypatch.setattr(S3Backend, "get", get)
    monkeypatch.setattr(S3Backend, "get_range_into", get_range_into)
    report = sync_project(load_project(project_dir(tmp_path, "a", store=url)))
    assert len(report.placed) == len(files)
    for rel in report.placed:
        assert (tmp_path / "a/models" / rel).read_bytes() == files[Path(rel).name]
    assert state["most"] > SYNC_FILES_IN_FLIGHT
    assert 0 < state["ranges"] < len(files)



def test_small_files_from_a_remote_store_show_progress_while_they_download(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_bucket: str, s3_storage_options: dict[str, object]) -> None:
    """A cold sync of 500 small files from S3 (3.7 s behind 50 ms of latency) showed 'sync files
    0/502' the whole time, then finished: that counter moves only as files are placed, after
    every download. The recipe requests, where the time goes, now advance a counter of their own."""
    url, files = _s3_store_of_small_files(tmp_path, monkeypatch, s3_bucket, s3_storage_options, 30)
    events: list[tuple[str, str, int | None]] = []

    class Recording:
        def start(self, task: str, total: int | None = None, *, unit: str = "B") -> None:
            events.append(("start", task, total))

        def advance(self, task: str, amount: int = 1) -> None:
            events.append(("advance", task, amount))

        def done(self, task: str) -> None:
            events.append(("done", task, None))

        def note(self, message: str) -> None:
            pass

    sync_project(load_project(project_dir(tmp_path, "a", store=url)), progress=Recording())
    placing = events.index(("advance", "sync files", 1))
    fetching = [e for e in events[:placing] if e[1] != "sync files"]
    assert fetching and fetching[0][0] == "start" and fetching[0][2] == len(files), events[:placing]
    task = fetching[0][1]
    assert sum(e[2] or 0 for e in fetching if e[0] == "advance" and e[1] == task) == len(files)
    assert ("done", task, None) in fetching


def test_a_large_file_s_progress_is_named_after_the_file_not_its_blob(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The byte bar of a 50 MB file read 'a4202c0d6be696508e5780ac71fbf0e23303d4fe [####...]':
    the tail of the cache path get_file writes, a blob id. It is named after the locked file."""
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    published_store(tmp_path, {"big.bin": os.urandom(3 << 20)})
    started: list[str] = []

    class Recording:
        def start(self, task: str, total: int | None = None, *, unit: str = "B") -> None:
            started.append(task)

        def advance(self, task: str, amount: int = 1) -> None:
            assert task in started

        def done(self, task: str) -> None:
            assert task in started

        def note(self, message: str) -> None:
            pass

    sync_project(load_project(project(tmp_path, "a")), progress=Recording())
    assert [t for t in started if t != "sync files"] == ["m@1.0.0 x86_64/big.bin"], started


def test_a_batched_file_whose_chunks_sit_back_to_back_is_written_from_the_read_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of several chunks published together sit back to back in one pack: each is handed
    to the cache as a view of the batch's read (no copy per chunk); one that shares a chunk
    with a file read before it is joined. Both come out right."""
    import random

    from zoostore.documents.store_config import Chunking, StoreConfig

    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    zoo, _ = init_store(tmp_path / "store", config=StoreConfig(chunking=Chunking(256, 1024, 4096)))
    rng = random.Random(7)
    files = {f"f{i}.bin": rng.randbytes(9_000 + 1_000 * i) for i in range(4)}
    files["g.bin"] = files["f0.bin"][:6_000] + rng.randbytes(2_000)   # shares f0.bin's first chunks
    publish(zoo, "m", "1.0.0", [write_dir(tmp_path / "src", files)], arch="x86_64", check=False)
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "zoo.toml").write_text('store = "../store"\narchs = ["x86_64"]\n[models]\nm = "1.0.0"\n')
    given: dict[Digest, type] = {}
    real_put = Cache.put_small

    def put_small(self: Cache, recipe: Recipe, data: bytes | memoryview) -> Path:
        given[recipe.blob] = type(data)
        return real_put(self, recipe, data)

    monkeypatch.setattr(Cache, "put_small", put_small)
    sync_project(load_project(proj))
    blobs = {name: hash_file(proj / "models/m/x86_64" / name) for name in files}
    for name, data in files.items():
        assert (proj / "models/m/x86_64" / name).read_bytes() == data
        assert len(zoo.blobs.recipe(blobs[name]).chunks) > 1
    assert {given[blobs[f"f{i}.bin"]] for i in range(4)} == {memoryview}
    assert given[blobs["g.bin"]] is bytes
