"""Larger chunks for code (store format 4, `[chunking.code]`; docs/design-decisions.md): files
that start like an executable, shared library or static archive are cut with the code sizes and
their frames are not boosted; every other file is cut as before; the config round-trips, needs
format 4, and an older zoostore refuses it; `zoostore init` makes such stores and leaves
existing stores as they are; the golden format-4 store reads forever."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from zoostore.cli import main as cli
from zoostore.core.errors import FormatError, NewerFormatError
from zoostore.documents import store_config
from zoostore.documents.store_config import Chunking, StoreConfig
from zoostore.ops.verify import verify_store
from zoostore.repository import init_store, open_store
from zoostore.storage import codec
from zoostore.storage.params import CODE_MAGIC, CODE_SIZES

from test_codec_level import CODECS, template_code, weights

GOLDEN = Path(__file__).parent / "golden" / "format4"
SMALL = Chunking(256, 1024, 4096, code=(2048, 8192, 32768))
ELF = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HH", 3, 62) + bytes(44)  # an x86_64 shared object


def chunk_lengths(zoo: object, blob: object) -> list[int]:
    return [c.raw_length for c in zoo.blobs.recipe(blob).chunks]  # type: ignore[attr-defined]


def test_code_sizes_need_format_4_and_round_trip() -> None:
    c = StoreConfig(chunking=Chunking(code=CODE_SIZES), delta=True)
    text = c.to_toml()
    assert c.format == 4 and "[chunking.code]" in text and "avg_size = 524288" in text
    assert StoreConfig.from_toml(text) == c
    assert StoreConfig(chunking=Chunking(code=CODE_SIZES)).format == 4  # even without delta frames
    with pytest.raises(FormatError, match=r"\[chunking.code\] needs format = 4"):
        StoreConfig.from_toml(text.replace("format = 4", "format = 3"))
    with pytest.raises(FormatError, match=r"chunking.code sizes must satisfy"):
        StoreConfig.from_toml(text.replace("avg_size = 524288", "avg_size = 4096"))
    with pytest.raises(FormatError, match=r"chunking.code.max_size must be an integer"):
        StoreConfig.from_toml(text.replace("max_size = 2097152", 'max_size = "2MiB"'))
    with pytest.raises(FormatError, match=r"\[chunking.code\] must be a table"):
        StoreConfig.from_toml(text.replace("[chunking.code]", "[chunking.other]").replace(
            'algorithm = "fastcdc-2020"', 'algorithm = "fastcdc-2020"\ncode = 5'))


def test_older_zoostores_refuse_a_format_4_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_config, "FORMAT", 3)  # a zoostore before code chunking
    with pytest.raises(NewerFormatError, match="upgrade zoostore"):
        open_store(GOLDEN / "store")


def test_which_files_are_cut_as_code() -> None:
    # The magic numbers are part of format 4 (docs/format.md): never change them.
    assert CODE_MAGIC == (b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                          b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"MZ", b"!<arch>\n", b"\x00asm")
    assert all(SMALL.cuts_as_code(m + bytes(8)) for m in CODE_MAGIC)
    for head in (b"\x08\x07\x12\x04", b"GGUF\x03\x00\x00\x00", struct.pack("<Q", 1234), b"", b"\x7fEL"):
        assert not SMALL.cuts_as_code(head)
    assert not Chunking().cuts_as_code(ELF), "stores before format 4 cut code like any file"
    assert SMALL.sizes(True) == (2048, 8192, 32768) and SMALL.sizes(False) == (256, 1024, 4096)
    assert SMALL.largest == 32768 and Chunking().largest == 256 * 1024


def test_code_gets_larger_chunks_and_both_read_back(tmp_path: Path) -> None:
    zoo, _ = init_store(tmp_path / "s", config=StoreConfig(chunking=SMALL, pack_target_size=64 * 1024))
    src = tmp_path / "src"
    src.mkdir()
    lib = ELF + template_code(400_000, seed=2)
    data = weights(100_000)
    (src / "lib.so").write_bytes(lib)
    (src / "weights.bin").write_bytes(data)
    (src / "notes.txt").write_bytes(ELF[1:] + template_code(200_000, seed=3))  # code-like bytes, no magic
    results = {p.name: r for p, r in zip(sorted(src.iterdir()), zoo.blobs.put_files(sorted(src.iterdir())))}
    code = chunk_lengths(zoo, results["lib.so"].blob)
    assert max(code) > 4096 and all(2048 <= n <= 32768 for n in code[:-1]), code
    for name in ("weights.bin", "notes.txt"):
        assert max(chunk_lengths(zoo, results[name].blob)) <= 4096
    # Code chunks are plain level-1 frames (not boosted); code-like bytes without magic are boosted.
    for name, boosted in (("lib.so", False), ("notes.txt", True)):
        recipe, raw = zoo.blobs.recipe(results[name].blob), (src / name).read_bytes()
        pieces = [raw[s:s + c.raw_length] for s, c in zip(recipe.starts, recipe.chunks)]
        plain = [min(len(codec.encode(p, codec.ZSTD, level=1)), codec.HEADER_SIZE + len(p)) for p in pieces]
        stored = [c.length for c in recipe.chunks]
        assert (stored == plain) != boosted
    fresh = open_store(zoo.url)
    for name, r in results.items():
        assert fresh.blobs.read_range(r.blob, 0, (src / name).stat().st_size) == (src / name).read_bytes()
    assert verify_store(fresh, read_data=True).ok


def test_a_rebuilt_library_gets_delta_frames_of_code_chunks_that_verify(tmp_path: Path) -> None:
    zoo, _ = init_store(tmp_path / "s", config=StoreConfig(chunking=SMALL, delta=True, pack_target_size=64 * 1024))
    v1 = ELF + template_code(400_000, seed=2)
    v2 = bytearray(v1)
    for i in range(50):
        v2[1000 + i * 7919:1004 + i * 7919] = bytes([i, 255 - i, 7, i ^ 0x5A])
    (tmp_path / "v1.so").write_bytes(v1)
    (tmp_path / "v2.so").write_bytes(bytes(v2))
    with zoo.blobs.writer() as w:
        r1 = w.add(tmp_path / "v1.so")
    with zoo.blobs.writer() as w:
        r2 = w.add(tmp_path / "v2.so", previous=r1.blob)
    deltas = [c.raw_length for c in zoo.blobs.recipe(r2.blob).chunks if c.base]
    assert deltas and max(deltas) > 4096, "delta frames of chunks longer than the other files' max_size"
    fresh = open_store(zoo.url)
    assert fresh.blobs.read_range(r2.blob, 0, len(v2)) == bytes(v2)
    assert verify_store(fresh, read_data=True).ok


def test_the_same_library_gives_the_same_chunks_in_the_same_store(tmp_path: Path) -> None:
    zoo, _ = init_store(tmp_path / "s", config=StoreConfig(chunking=SMALL))
    lib = ELF + template_code(300_000, seed=4)
    for name in ("a.so", "b.so"):
        (tmp_path / name).write_bytes(lib + name.encode())  # different files, one shared body
    ra, rb = zoo.blobs.put_files([tmp_path / "a.so", tmp_path / "b.so"])
    shared = {c.chunk for c in zoo.blobs.recipe(ra.blob).chunks} & {c.chunk for c in zoo.blobs.recipe(rb.blob).chunks}
    assert len(shared) >= len(zoo.blobs.recipe(ra.blob).chunks) - 1
    assert rb.new_stored_bytes < ra.new_stored_bytes / 5


def test_code_chunks_are_not_boosted_and_other_chunks_still_are() -> None:
    data = template_code(64 * 1024)
    plain = codec.encode(data, codec.ZSTD, level=1)
    for history in (None, ((codec.RAW, 1.0), (codec.ZSTD, 0.3), (codec.BYTEGROUP, 0.5))):
        off = codec.BatchEncoder(CODECS, history, level=1, boostable=False)
        assert [off.encode(data)[0] for _ in range(3)] == [plain] * 3
        on = codec.BatchEncoder(CODECS, history, level=1)
        assert len(on.encode(data)[0]) < len(plain)


def test_init_makes_format_4_stores_and_keeps_existing_ones(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["init", str(tmp_path / "new")]) == 0
    assert open_store(tmp_path / "new").config.chunking.code == CODE_SIZES
    capsys.readouterr()
    assert cli(["config", str(tmp_path / "new"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["format"] == 4 and shown["chunking"]["code"] == dict(zip(("min_size", "avg_size", "max_size"), CODE_SIZES))
    init_store(tmp_path / "old", config=StoreConfig(delta=True))  # a format-3 store made before
    for flags in ([], ["--delta"]):
        assert cli(["init", str(tmp_path / "old"), *flags]) == 0
    assert open_store(tmp_path / "old").config.format == 3 and open_store(tmp_path / "old").config.chunking.code is None
    assert cli(["init", str(tmp_path / "plain"), "--no-delta"]) == 0
    assert open_store(tmp_path / "plain").config.format == 1


def test_format4_golden_store_still_reads(tmp_path: Path) -> None:
    zoo = open_store(GOLDEN / "store")
    assert zoo.config.format == 4 and zoo.config.chunking.code == (2048, 8192, 32768)
    files = zoo.manifest("golden").versions["1.0.0"].files["x86_64"]
    for name, entry in files.items():
        out = zoo.blobs.get_file(entry.blob, tmp_path / name)
        assert out.read_bytes() == (GOLDEN / "expected" / name).read_bytes()
    assert max(chunk_lengths(zoo, files["lib.so"].blob)) > 4096 >= max(chunk_lengths(zoo, files["weights.bin"].blob))
    assert verify_store(zoo, read_data=True).ok
