"""The one atomic-write helper (zoostore.core.atomic)."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from zoostore.core.atomic import TEMP_PREFIX, atomic_write, atomic_writer, parse_temp_name, stale_temp, temp_name


def test_content_lands_and_nothing_else(tmp_path: Path) -> None:
    atomic_write(tmp_path / "f", b"one")
    atomic_write(tmp_path / "f", b"two")
    assert (tmp_path / "f").read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_leaves_target_untouched_and_no_temp(tmp_path: Path, exc: BaseException) -> None:
    (tmp_path / "f").write_bytes(b"old")
    with pytest.raises(type(exc)):
        with atomic_writer(tmp_path / "f") as f:
            f.write(b"partial")
            raise exc
    assert (tmp_path / "f").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_a_disk_full_or_read_only_failure_names_the_target_not_the_temp_file(tmp_path: Path) -> None:
    # A write's ENOSPC names no file, a refused create names the temp file: the user is told
    # the file being written (zoo.lock, the sync state file), which is where to make room.
    (tmp_path / "f").write_bytes(b"old")
    with pytest.raises(OSError) as full:
        with atomic_writer(tmp_path / "f"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert full.value.filename == str(tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]
    with pytest.raises(FileNotFoundError) as missing:
        atomic_write(tmp_path / "gone" / "f", b"x")
    assert missing.value.filename == str(tmp_path / "gone" / "f")
    with pytest.raises(OSError) as other:   # an error about another file keeps its name
        with atomic_writer(tmp_path / "f"):
            open(tmp_path / "no-such-source", "rb")
    assert other.value.filename == str(tmp_path / "no-such-source")


def test_a_planted_symlink_at_the_temp_name_is_never_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    work = tmp_path / "work"
    work.mkdir()
    names = iter(["planted", "fresh"])
    monkeypatch.setattr("zoostore.core.atomic.temp_name", lambda: next(names))
    (work / "planted").symlink_to(outside)
    atomic_write(work / "f", b"data")
    assert outside.read_bytes() == b"secret"
    assert (work / "f").read_bytes() == b"data"


def test_concurrent_writers_one_complete_winner(tmp_path: Path) -> None:
    payloads = [bytes([i]) * 100_000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write, args=(tmp_path / "f", p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert (tmp_path / "f").read_bytes() in payloads
    assert os.listdir(tmp_path) == ["f"]


def test_temp_names_are_short_and_say_who_wrote_them() -> None:
    name = temp_name()
    assert name.startswith(TEMP_PREFIX) and len(name) < 48
    pid, started = parse_temp_name(name)  # type: ignore[misc]
    assert pid == os.getpid() and abs(started - time.time()) < 86400 * 365
    assert not stale_temp(name, time.time())
    assert stale_temp(name, time.time() - 7200)
    assert stale_temp(f"{TEMP_PREFIX}999999999-0-abcd", time.time())  # no such process
    assert not stale_temp("model.bin", 0.0)


unnamed_files = pytest.mark.skipif(not (hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")),
                                   reason="O_TMPFILE and /proc are Linux's")


@unnamed_files
def test_write_unnamed_links_a_complete_file_and_never_names_a_temp(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from zoostore.core import atomic

    monkeypatch.setattr(atomic, "_unnamed", None)
    seen: list[list[str]] = []
    real_link = os.link

    def link(src: str, dst: str, **kwargs: object) -> None:
        seen.append(sorted(os.listdir(tmp_path)))   # just before the file gets its name
        real_link(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", link)
    target = tmp_path / "blob"
    assert atomic.write_unnamed(str(tmp_path), str(target), memoryview(b"x" * 5000), 0o444)
    assert target.read_bytes() == b"x" * 5000 and target.stat().st_mode & 0o777 == 0o444
    assert seen == [[]] and sorted(os.listdir(tmp_path)) == ["blob"]   # no name but the final one, ever
    # a file already there (another process won the race to the same content-addressed name) is kept
    assert atomic.write_unnamed(str(tmp_path), str(target), b"other", 0o444)
    assert target.read_bytes() == b"x" * 5000 and sorted(os.listdir(tmp_path)) == ["blob"]
    assert atomic._unnamed is True


def test_write_unnamed_declines_where_the_file_system_cannot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoostore.core import atomic

    monkeypatch.setattr(atomic, "_unnamed", None)
    real_open = os.open

    def open_(path: str, flags: int, *args: object) -> int:
        if hasattr(os, "O_TMPFILE") and flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", open_)
    assert not atomic.write_unnamed(str(tmp_path), str(tmp_path / "blob"), b"data", 0o444)
    assert atomic._unnamed is False and os.listdir(tmp_path) == []   # nothing written; not tried again
    assert not atomic.write_unnamed(str(tmp_path), str(tmp_path / "blob"), b"data", 0o444)


def test_a_small_cached_file_falls_back_to_a_temp_file_without_unnamed_files(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from zoostore.core import atomic
    from zoostore.core.digest import Digest
    from zoostore.storage.cache import Cache
    from zoostore.storage.recipe import ChunkRef, Recipe

    data = os.urandom(3000)
    blob = Digest.of(data)
    recipe = Recipe(blob, len(data), (ChunkRef(blob, len(data), Digest("0" * 64), 0, 0),))
    for unnamed in (None, False):
        monkeypatch.setattr(atomic, "_unnamed", unnamed)
        cache = Cache(tmp_path / f"cache-{unnamed}")
        path = cache.put_small(recipe, data)
        assert path.read_bytes() == data and path.stat().st_mode & 0o777 == 0o444
        assert [p.name for p in path.parent.iterdir()] == [blob.hex]
