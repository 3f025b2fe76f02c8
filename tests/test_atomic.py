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
