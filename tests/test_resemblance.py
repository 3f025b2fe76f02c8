"""Delta bases by resemblance (zoostore.storage.resemblance): content that moved between two
versions of a file (a rebuilt library) finds its old chunk, where the chunk at the same offset
holds something else."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from zoostore.documents.store_config import Chunking, StoreConfig
from zoostore.ops.publish import publish
from zoostore.ops.verify import verify_store
from zoostore.repository import Store, init_store, open_store
from zoostore.storage import resemblance

HOUR = 3600.0
CONFIG = StoreConfig(chunking=Chunking(4096, 16384, 65536), pack_target_size=256 * 1024,
                     grace_seconds=HOUR, settle_seconds=0.0, delta=True)
WORDS = [f"{w}{s}" for w in ("mov", "call", "jmp", "push", "lea", "cmp", "ret", "xor") for s in ("q", "l", "b", "")]


def block(rng: random.Random, n: int) -> bytes:
    """Code-like text: compressible (about 40% with zstd) but unlike any other block."""
    out = bytearray()
    while len(out) < n:
        out += f"{rng.choice(WORDS)} %r{rng.randrange(16)}, 0x{rng.randrange(1 << 20):x}\n".encode()
    return bytes(out[:n])


def touch(data: bytes, rng: random.Random, every: int = 4096) -> bytes:
    """A byte changed every `every` bytes: no chunk of the result equals an old one."""
    out = bytearray(data)
    for pos in range(rng.randrange(every), len(out), every):
        out[pos] ^= 0x20
    return bytes(out)


def versions(seed: int = 1) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    blocks = [block(rng, 48 * 1024) for _ in range(16)]
    v1 = b"".join(blocks)
    # The sections move: reversed order, each slightly changed.
    v2 = b"".join(touch(b, rng) for b in reversed(blocks))
    return v1, v2


def publish_both(root: Path, v1: bytes, v2: bytes) -> tuple[Store, int, int]:
    zoo, _ = init_store(root / "store", config=CONFIG)
    assert isinstance(zoo, Store)
    sizes = []
    for version, data in (("1.0.0", v1), ("2.0.0", v2)):
        src = root / "src" / version
        src.mkdir(parents=True)
        (src / "lib.so").write_bytes(data)
        result = publish(zoo, "m", version, [src], check=False)
        sizes.append(result.new_stored_bytes)
    return zoo, sizes[1], 0


def test_moved_sections_find_their_old_chunks(tmp_path: Path) -> None:
    v1, v2 = versions()
    zoo, increment, _ = publish_both(tmp_path / "delta", v1, v2)
    plain, _ = init_store(tmp_path / "plain" / "store", config=StoreConfig(
        chunking=CONFIG.chunking, pack_target_size=CONFIG.pack_target_size, grace_seconds=HOUR, settle_seconds=0.0))
    assert isinstance(plain, Store)
    plain_sizes = []
    for version, data in (("1.0.0", v1), ("2.0.0", v2)):
        src = tmp_path / "plainsrc" / version
        src.mkdir(parents=True)
        (src / "lib.so").write_bytes(data)
        plain_sizes.append(publish(plain, "m", version, [src], check=False).new_stored_bytes)
    # Every chunk changed, so a plain store stores release 2 whole; delta frames against the
    # moved blocks cost a small fraction of that.
    assert increment < 0.25 * plain_sizes[1], (increment, plain_sizes)
    fresh = open_store(zoo.url)
    blob = fresh.manifest("m").versions["2.0.0"].files["any"]["lib.so"].blob
    recipe = fresh.blobs.recipe(blob)
    deltas = [r for r in recipe.chunks if r.base is not None]
    assert len(deltas) >= len(recipe.chunks) // 2
    assert all(d.base is not None and d.base.base is None for d in deltas)  # chain depth one
    assert fresh.blobs.read_range(blob, 0, len(v2)) == v2
    assert verify_store(fresh, read_data=True).ok


def test_same_files_give_the_same_packs(tmp_path: Path) -> None:
    v1, v2 = versions(seed=3)
    keys = []
    for run in range(2):
        zoo, _, _ = publish_both(tmp_path / f"run{run}", v1, v2)
        keys.append(sorted(i.key for i in zoo.backend.list("packs/")))
    assert keys[0] == keys[1]


def test_a_patched_file_with_an_insertion_never_builds_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Position bases share most features with a patched chunk: the previous version is not
    # read again to index it.
    built = []
    real = resemblance.ResemblanceIndex._build

    def counting(self: resemblance.ResemblanceIndex) -> dict[int, list[int]]:
        built.append(self.recipe.blob)
        return real(self)

    monkeypatch.setattr(resemblance.ResemblanceIndex, "_build", counting)
    v1, _ = versions(seed=5)
    patched = bytearray(v1)
    for pos in (1000, 300_000, 700_000):
        patched[pos] ^= 1
    patched[400_000:400_000] = b"inserted"  # a few bytes inserted: what follows shifts by 8
    zoo, increment, _ = publish_both(tmp_path, v1, bytes(patched))
    assert built == []
    blob = zoo.manifest("m").versions["2.0.0"].files["any"]["lib.so"].blob
    assert any(r.base is not None for r in open_store(zoo.url).blobs.recipe(blob).chunks)


def test_features_survive_a_shift_and_common_pieces_are_dropped() -> None:
    rng = random.Random(7)
    data = block(rng, 64 * 1024)
    moved = block(rng, 777) + data[:-777]
    feats = resemblance.features(data)
    assert len(feats & resemblance.features(moved)) > 0.8 * len(feats)
    assert len(feats & resemblance.features(block(rng, 64 * 1024))) < 0.05 * len(feats)
    assert resemblance.features(b"") == set()


def test_threads_wait_for_the_index_instead_of_skipping_it() -> None:
    # A second encoder thread asking while the first builds the index must get the same answer
    # (the packs must not depend on thread timing).
    import threading
    import time

    from zoostore.core.digest import Digest
    from zoostore.storage.recipe import ChunkRef, Recipe

    rng = random.Random(11)
    chunks = [block(rng, 16 * 1024) for _ in range(4)]
    refs = tuple(ChunkRef(Digest.of(c), len(c), Digest.of(b"pack"), 16 * 1024 * i, len(c)) for i, c in enumerate(chunks))
    recipe = Recipe(Digest.of(b"".join(chunks)), sum(len(c) for c in chunks), refs)
    started = threading.Event()

    def slow_read(group: object) -> dict[Digest, bytes]:
        started.set()
        time.sleep(0.3)
        return {r.chunk: c for r, c in zip(refs, chunks)}

    index = resemblance.ResemblanceIndex(recipe, slow_read)
    feats = resemblance.features(touch(chunks[2], rng))
    answers: list[object] = []
    first = threading.Thread(target=lambda: answers.append(index.similar(feats, 0)[0]))
    first.start()
    started.wait(5)
    second = index.similar(feats, 0)[0]
    first.join(5)
    assert answers == [refs[2]] and second == refs[2]
