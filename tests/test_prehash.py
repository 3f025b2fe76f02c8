"""Publish's background hashing during start-up (zoostore.ops.prehash): a hash is used only for
the file it was taken of, unchanged since; no file is hashed twice; the CLI publishes with it."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers_store import write_dir

import zoostore.ops.publish
from zoostore.cli import main
from zoostore.core.digest import hash_file
from zoostore.ops.prehash import Prehash
from zoostore.ops.publish import plan_publish
from zoostore.repository import Store, init_store, open_store
from zoostore.storage.writer import FileStamp


@pytest.fixture
def zoo(tmp_path: Path) -> Store:
    store, _ = init_store(tmp_path / "store")
    return store


def stamp(path: Path) -> tuple[int, int, int]:
    s = FileStamp.of(path)
    return (s.size, s.mtime_ns, s.inode)


def counted_hashes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls: Counter[str] = Counter()

    def counted(path: Any) -> Any:
        calls[Path(path).name] += 1
        return hash_file(path)

    monkeypatch.setattr(zoostore.ops.publish, "hash_file", counted)
    return calls


def test_the_thread_hashes_the_files_collect_files_publishes_and_take_returns_their_ids(tmp_path: Path) -> None:
    src = write_dir(tmp_path / "m", {"a.bin": os.urandom(300_000), "sub/b.bin": b"b" * 1000, "empty": b"",
                                     ".hidden": b"x", ".git/config": b"y"})
    pre = Prehash([src]).start()
    pre.wait()
    assert pre.hashed == 3   # hidden files and folders are skipped, as publishing skips them
    for rel in ("a.bin", "sub/b.bin", "empty"):
        assert pre.take(src / rel, stamp(src / rel)) == hash_file(src / rel)
    assert pre.take(src / ".hidden", stamp(src / ".hidden")) is None


def test_a_file_changed_after_its_hash_is_not_taken_and_the_plan_hashes_it(zoo: Store, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_dir(tmp_path / "m", {"a.bin": b"old" * 1000, "b.bin": b"same" * 1000})
    pre = Prehash([src]).start()
    pre.wait()
    (src / "a.bin").write_bytes(b"new!" * 1000)   # another size: another stamp
    assert pre.take(src / "a.bin", stamp(src / "a.bin")) is None
    calls = counted_hashes(monkeypatch)
    plan = plan_publish(zoo, "net", "1.0.0", [src], prehash=pre)
    assert calls == Counter({"a.bin": 1})   # b.bin's hash came from the thread
    assert {rel: e.blob for rel, e in plan.entries.items()} == {"a.bin": hash_file(src / "a.bin"),
                                                               "b.bin": hash_file(src / "b.bin")}
    plan.execute()
    blob = plan.entries["a.bin"].blob
    assert open_store(zoo.url).blobs.read_range(blob, 0, 1 << 20) == b"new!" * 1000


def test_a_file_the_plan_claims_first_is_left_to_it(tmp_path: Path) -> None:
    src = write_dir(tmp_path / "m", {"a.bin": b"a" * 5000, "b.bin": b"b" * 5000})
    pre = Prehash([src])   # not started: the plan reaches a.bin first
    assert pre.take(src / "a.bin", stamp(src / "a.bin")) is None
    pre.start()
    pre.wait()
    assert pre.hashed == 1
    assert pre.take(src / "b.bin", stamp(src / "b.bin")) == hash_file(src / "b.bin")


def test_missing_paths_and_a_stopped_thread_leave_everything_to_the_plan(tmp_path: Path) -> None:
    src = write_dir(tmp_path / "m", {"a.bin": b"a" * 5000})
    pre = Prehash([tmp_path / "nowhere", src])
    pre.stop()   # before it hashed anything
    pre.start()
    pre.wait()
    assert pre.hashed == 0
    assert pre.take(src / "a.bin", stamp(src / "a.bin")) is None
    assert pre.take(tmp_path / "nowhere" / "x", (0, 0, 0)) is None


def test_publish_release_hashes_each_file_once_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_store(tmp_path / "store")
    a = write_dir(tmp_path / "rel" / "alpha", {"w.bin": os.urandom(200_000)})
    b = write_dir(tmp_path / "rel" / "beta", {"w2.bin": os.urandom(100_000)})
    calls = counted_hashes(monkeypatch)
    taken: list[str] = []
    take = Prehash.take

    def spy(self: Prehash, path: Any, st: tuple[int, int, int]) -> Any:
        found = take(self, path, st)
        taken.append(f"{Path(path).name}:{found is not None}")
        return found

    monkeypatch.setattr(Prehash, "take", spy)
    assert main(["publish-release", str(tmp_path / "store"), "1.0.0", str(a), f"b={b}", "-q"]) == 0
    # every file hashed once in all: by the thread (taken) or by the plan (counted)
    assert sorted(taken) == sorted(f"{n}:{n not in calls}" for n in ("w.bin", "w2.bin"))
    assert all(n == 1 for n in calls.values())
    store = open_store(tmp_path / "store")
    assert store.blobs.read_range(hash_file(a / "w.bin"), 0, 1 << 20) == (a / "w.bin").read_bytes()
    assert store.models() == ["alpha", "b"]


def test_publish_takes_the_threads_hashes_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_store(tmp_path / "store")
    src = write_dir(tmp_path / "m", {"w.bin": os.urandom(200_000), "cfg.json": "{}"})
    taken: list[bool] = []
    take = Prehash.take
    monkeypatch.setattr(Prehash, "take", lambda self, path, st: taken.append(True) or take(self, path, st))
    assert main(["publish", str(tmp_path / "store"), "net", "1.0.0", str(src), "-q"]) == 0
    assert len(taken) == 2
    assert open_store(tmp_path / "store").blobs.read_range(hash_file(src / "w.bin"), 0, 1 << 20) == (src / "w.bin").read_bytes()
