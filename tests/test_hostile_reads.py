"""Hostile stores: length fields and zstd frames that would make a reader allocate gigabytes.

A consumer reads recipes, packs and frames someone else wrote; a broken or compromised mirror
must get a clean ZooError, and memory bounded by the store's largest chunk (issue 13). Every
hostile object here is hand-made and internally consistent (valid checksums, pack named by its
hash), so only the length limits stand between it and the reader.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zstandard

from zoostore.cli import main as cli
from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError, IntegrityError, ZooError
from zoostore.documents.store_config import MAX_CHUNK, StoreConfig
from zoostore.ops.publish import publish
from zoostore.ops.verify import verify_store
from zoostore.repository import init_store, open_store
from zoostore.storage import codec, frames_into
from zoostore.storage.pack import PackBuilder, pack_key, parse_footer
from zoostore.storage.recipe import ChunkRef, Recipe, blob_key

GIB = 1 << 30
FILE_SIZE = 200_000  # one chunk of the default chunking (max 256 KiB)


def _bomb(*, content_size: bool) -> bytes:
    """A zstd frame of 1 GiB of zeros (~32 KB), built by streaming 1 MiB at a time."""
    comp = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
    obj = comp.compressobj(size=GIB if content_size else -1)
    zeros = bytes(1 << 20)
    parts = [obj.compress(zeros) for _ in range(1024)]
    parts.append(obj.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def bombs() -> dict[bool, bytes]:
    return {True: _bomb(content_size=True), False: _bomb(content_size=False)}


def _put(store_dir: Path, key: str, data: bytes) -> None:
    path = store_dir / key
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.chmod(0o644)
        path.unlink()
    path.write_bytes(data)


def _hostile(tmp_path: Path, kind: str, bombs: dict[bool, bytes]) -> dict[str, Any]:
    """A store with model m 1.0.0 (one 200 KB file) whose recipe or pack is then replaced by
    a hostile one, and a project locked to it."""
    store_dir = tmp_path / "store"
    zoo, _ = init_store(store_dir, config=StoreConfig())
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(FILE_SIZE)
    (src / "weights.bin").write_bytes(data)
    publish(zoo, "m", "1.0.0", [src], check=False)
    blob = Digest.of(data)
    if kind == "recipe":
        # One chunk claiming 4 GiB - 1 raw bytes (the u32 maximum) and a file of that size.
        old = Recipe.decode(blob, (store_dir / blob_key(blob)).read_bytes())
        ref = old.chunks[0]
        huge = (1 << 32) - 1
        bad = Recipe(blob, huge, (ChunkRef(ref.chunk, huge, ref.pack, ref.offset, ref.length),))
        _put(store_dir, blob_key(blob), bad.encode())
    else:
        frame = codec.HEADER.pack(codec.ZSTD, FILE_SIZE) + bombs[kind == "bomb"]
        builder = PackBuilder()
        builder.add(blob, frame, FILE_SIZE)  # one chunk: the whole file, chunk id = blob id
        pack, pack_bytes, _ = builder.finish()
        _put(store_dir, pack_key(pack), pack_bytes)
        recipe = Recipe(blob, FILE_SIZE, (ChunkRef(blob, FILE_SIZE, pack, 0, len(frame)),))
        _put(store_dir, blob_key(blob), recipe.encode())
    project = tmp_path / "project"
    project.mkdir()
    (project / "zoo.toml").write_text(f'store = "{store_dir.as_posix()}"\narchs = ["x86_64"]\n[models]\nm = "1.0.0"\n')
    assert cli(["lock", "--project", str(project), "-q"]) == 0
    return {"store": store_dir, "project": project, "blob": blob}


KINDS = ["recipe", "bomb", "bomb-no-size"]


@pytest.mark.parametrize("kind", KINDS)
def test_sync_and_verify_fail_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str,
                                      bombs: dict[bool, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    h = _hostile(tmp_path, kind, bombs)
    capsys.readouterr()
    rc = cli(["sync", "--project", str(h["project"]), "-q"])
    err = capsys.readouterr().err
    assert rc not in (0, 1), err  # a ZooError's exit code, not success nor an internal error
    assert "Traceback" not in err and h["blob"].hex[:12] in err
    assert not (h["project"] / "models/m/any/weights.bin").exists()
    assert not (h["project"] / "models/m/x86_64/weights.bin").exists()

    report = verify_store(open_store(h["store"]), read_data=True)
    kinds = {p.kind for p in report.problems}
    assert not report.ok
    assert kinds == ({"bad-recipe"} if kind == "recipe" else {"bad-chunk"}), report.problems
    rc = cli(["verify", str(h["store"]), "--read-data", "-q"])
    out = capsys.readouterr()
    assert rc != 0 and "Traceback" not in out.err


def test_a_truncated_recipe_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           bombs: dict[bool, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    """A recipe cut short (a damaged disk, a bad mirror copy) is named and the fix given."""
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    h = _hostile(tmp_path, "bomb", bombs)
    key = blob_key(h["blob"])
    _put(h["store"], key, (h["store"] / key).read_bytes()[:8])
    capsys.readouterr()
    assert cli(["sync", "--project", str(h["project"]), "-q"]) == 5
    err = capsys.readouterr().err
    assert f"recipe {key}: truncated (8 bytes): the recipe is damaged; run 'zoostore verify --repair'" in err, err
    assert "Traceback" not in err


def test_recipe_lengths_are_capped_by_the_store_chunk_size(tmp_path: Path, bombs: dict[bool, bytes]) -> None:
    h = _hostile(tmp_path, "recipe", bombs)
    data = (h["store"] / blob_key(h["blob"])).read_bytes()
    with pytest.raises(FormatError, match=r"claims 4294967295 raw bytes, more than the store's largest chunk \(262144"):
        Recipe.decode(h["blob"], data, max_chunk=256 * 1024)
    with pytest.raises(FormatError, match="more than the store's largest chunk"):
        Recipe.decode(h["blob"], data)  # the format's own cap applies without a store
    with pytest.raises(FormatError):
        open_store(h["store"]).blobs.recipe(h["blob"])
    # A frame longer than its chunk stored raw, and an offset past any pack, are refused too.
    d = Digest.of(b"x")
    for ref in (ChunkRef(d, 10, d, 0, codec.HEADER_SIZE + 11), ChunkRef(d, 10, d, 2**63, 15)):
        with pytest.raises(FormatError, match="chunk #0"):
            Recipe.decode(d, Recipe(d, 10, (ref,)).encode())


def test_frame_never_decodes_to_more_than_it_declares(bombs: dict[bool, bytes]) -> None:
    for has_size, bomb in bombs.items():
        frame = codec.HEADER.pack(codec.ZSTD, 1000) + bomb
        with pytest.raises(FormatError, match="declares 1073741824" if has_size else "longer than the 1000"):
            codec.decode(frame)
        out = bytearray(1000)
        with pytest.raises(FormatError):
            frames_into.decode_into(frame, out, 0)
        group = codec.HEADER.pack(codec.BYTEGROUP, 1000) + bomb
        with pytest.raises(FormatError):
            codec.decode(group)
    # A header claiming more than the store's chunk is refused before decoding anything.
    with pytest.raises(FormatError, match="more than the store's largest chunk"):
        codec.decode(codec.HEADER.pack(codec.ZSTD, GIB) + bombs[True], max_raw=256 * 1024)
    # n = 0 means "no limit" to python-zstandard: it must not decompress anything.
    with pytest.raises(FormatError):
        codec.decode(codec.HEADER.pack(codec.ZSTD, 0) + bombs[False])
    assert codec.decode(codec.encode(b"", codec.ZSTD)) == b""
    assert codec.MAX_RAW == MAX_CHUNK


def test_pack_footer_lengths_are_capped() -> None:
    d = Digest.of(b"x")
    builder = PackBuilder()
    builder.add(d, codec.encode(b"x" * 100, codec.RAW), 100)
    _, data, _ = builder.finish()
    footer = data[105:-12]  # after the one 105-byte frame, before the 12-byte trailer
    assert parse_footer(footer, where="packs/x", max_chunk=100, frames_end=105).entries[0].raw_length == 100
    with pytest.raises(FormatError, match="largest chunk"):
        parse_footer(footer, where="packs/x", max_chunk=99)
    with pytest.raises(FormatError, match="past the frames"):
        parse_footer(footer, where="packs/x", frames_end=104)


_MEASURE = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_kib(code: str, cwd: Path, env: dict[str, str]) -> tuple[int, int]:
    """Peak RSS (KiB, Linux) of `python -c code`, measured by a fresh wrapper process whose only
    child it is: RUSAGE_CHILDREN of pytest itself would include every earlier subprocess.
    Returns (exit code, peak RSS)."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-c", code], cwd=cwd, env=env,
                         capture_output=True, text=True, check=True).stdout
    rc, rss = out.split()
    return int(rc), int(rss)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
@pytest.mark.parametrize("kind", KINDS)
def test_peak_rss_of_hostile_sync_stays_near_baseline(tmp_path: Path, kind: str, bombs: dict[bool, bytes]) -> None:
    h = _hostile(tmp_path, kind, bombs)
    env = {**os.environ, "ZOOSTORE_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    # Baseline: the same interpreter with sync's whole stack imported, doing nothing.
    _, baseline = _peak_rss_kib("import zoostore.cli, zoostore.ops.sync, zoostore.ops.verify, zoostore.storage.blobs, "
                             "zstandard, blake3, fsspec", h["project"], env)
    rc, sync = _peak_rss_kib("import sys; from zoostore.cli import main; sys.exit(main(['sync', '-q']))",
                             h["project"], env)
    assert rc not in (0, 1)  # failed with a ZooError's exit code, not a traceback
    max_chunk_kib = StoreConfig().chunking.max_size // 1024
    # Readers, a decompression context and one chunk's buffers: a small multiple of the chunk
    # size (the unfixed reader took 1 GiB for the bomb, 4 GiB for the recipe).
    print(f"peak RSS {kind}: baseline {baseline} KiB, sync {sync} KiB")
    assert sync - baseline < 16 * max_chunk_kib, (kind, baseline, sync)


def test_a_recipe_whose_chunk_ids_lie_about_a_file_that_hashes_right(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A recipe whose frames give the file's bytes but which names one chunk by another file's
    chunk id. A whole-file read hashes only the file, which is right, so sync places it (right
    bytes); range reads hash each chunk and refuse it. The cache keeps the lying
    recipe: a later sync of the other file, offered that chunk from the cached file, hashes
    wrong, reads again with every chunk verified and still gets its own bytes."""
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    store_dir = tmp_path / "store"
    zoo, _ = init_store(store_dir, config=StoreConfig())
    a, b = os.urandom(1_500_000), os.urandom(1_500_000)   # over SMALL_FILE: read by get_file
    for version, data in (("1.0.0", a), ("1.1.0", b)):
        src = tmp_path / f"src{version}"
        src.mkdir()
        (src / "w.bin").write_bytes(data)
        publish(zoo, "m", version, [src], check=False)
    real_a, real_b = (Recipe.decode(Digest.of(d), (store_dir / blob_key(Digest.of(d))).read_bytes()) for d in (a, b))
    lie = real_a.chunks[1]
    lying = Recipe(real_a.blob, real_a.size, (real_a.chunks[0], ChunkRef(real_b.chunks[1].chunk, lie.raw_length, lie.pack,
                                                                          lie.offset, lie.length)) + real_a.chunks[2:])
    _put(store_dir, blob_key(real_a.blob), lying.encode())
    projects = {}
    for name, version in (("a", "1.0.0"), ("b", "1.1.0")):
        p = projects[name] = tmp_path / name
        p.mkdir()
        (p / "zoo.toml").write_text(f'store = "{store_dir.as_posix()}"\narchs = ["x86_64"]\n[models]\nm = "{version}"\n')
    assert cli(["sync", "--project", str(projects["a"]), "-q"]) == 0
    assert (projects["a"] / "models/m/x86_64/w.bin").read_bytes() == a
    with pytest.raises(IntegrityError, match="is corrupt"):
        open_store(store_dir).blobs.read_range(real_a.blob, real_a.starts[1], real_a.starts[1] + 10)
    from zoostore.documents.project import load_project
    from zoostore.ops.sync import sync_project

    from zoostore.storage.blobs import BlobStore

    checks: list[bool] = []
    real = BlobStore._write_hashed

    def counting(self: BlobStore, *args: Any, **kwargs: Any) -> str:
        checks.append(kwargs["check"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(BlobStore, "_write_hashed", counting)
    r = sync_project(load_project(projects["b"]))
    assert (projects["b"] / "models/m/x86_64/w.bin").read_bytes() == b and r.bytes_reused == 0
    assert checks == [False, True]   # offered the lied-about chunk from a's cached file: read again
