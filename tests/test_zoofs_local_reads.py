"""zoo:// reads of a cached file: one open descriptor, each chunk hashed once per open file, and
a cached copy written to in place is noticed and read from the store instead."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec
import pytest

from zoostore.ops.publish import publish
from zoostore.repository import init_store
from zoostore.zoofs import reading

DATA = os.urandom(3 << 20)


@pytest.fixture
def fs(tmp_path: Path) -> Any:
    zoo, _ = init_store(tmp_path / "store")
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(DATA)
    publish(zoo, "m", "1.0.0", [src], check=False)
    zfs = fsspec.filesystem("zoo", store=str(tmp_path / "store"), cache=str(tmp_path / "cache"),
                            skip_instance_cache=True)
    zfs.cat_file("m@1.0.0/any/w.bin")  # the whole file lands in the cache
    return zfs


def test_each_chunk_is_hashed_once_per_open_file(fs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[int] = []
    real = reading.blake3.blake3

    def counting(data: Any = b"") -> Any:
        hashed.append(len(data))
        return real(data)

    monkeypatch.setattr(reading.blake3, "blake3", counting)
    # The cache's verified stamp holds (cat_file hashed the whole file): no chunk is hashed.
    with fs.open("m@1.0.0/any/w.bin", "rb", block_size=0) as f:
        for off in (0, 100_000, 2_000_000):
            f.seek(off)
            assert f.read(4096) == DATA[off : off + 4096]
            assert fs.cat_file("m@1.0.0/any/w.bin", off, off + 4096) == DATA[off : off + 4096]
    assert hashed == []
    # Without the stamp, each covering chunk is hashed once per open file.
    blob = fs.info("m@1.0.0/any/w.bin")["blob"]
    from zoostore.core.digest import Digest

    fs.cache.stamp_path(Digest.parse(blob)).unlink()
    rounds = []
    with fs.open("m@1.0.0/any/w.bin", "rb", block_size=0) as f:
        for _ in range(3):
            for off in (0, 100_000, 2_000_000):
                f.seek(off)
                assert f.read(4096) == DATA[off : off + 4096]
            rounds.append(len(hashed))
    assert 1 <= rounds[0] <= 6 and rounds[0] == rounds[1] == rounds[2]  # the covering chunks, once each


def test_a_cached_copy_changed_while_open_is_not_trusted(fs: Any) -> None:
    with fs.open("m@1.0.0/any/w.bin", "rb", block_size=0) as f:
        local = f._local
        assert local is not None
        os.chmod(local, 0o644)
        with open(local, "r+b") as w:  # a hard-linked copy written to in place
            w.seek(1_000_000)
            w.write(b"\x00" * 16)
        f.seek(999_990)
        assert f.read(64) == DATA[999_990 : 999_990 + 64]  # from the store, verified
        assert f._local is None
