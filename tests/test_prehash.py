"""Publish's background hashing during start-up (zoostore.ops.prehash): a hash is used only for
the file it was taken of, unchanged since; no file is hashed twice; the CLI publishes with it."""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import blake3
import pytest
from helpers_store import count_hashes, write_dir

import zoostore.ops.prehash
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


def test_the_thread_hashes_the_files_collect_files_publishes_and_take_returns_their_ids(tmp_path: Path) -> None:
    src = write_dir(tmp_path / "m", {"a.bin": os.urandom(300_000), "sub/b.bin": b"b" * 1000, "empty": b"",
                                     ".hidden": b"x", ".git/config": b"y"})
    pre = Prehash([src]).start()
    pre.wait()
    assert pre.hashed == 3   # hidden files and folders are skipped, as publishing skips them
    for rel in ("a.bin", "sub/b.bin", "empty"):
        assert pre.take(src / rel, stamp(src / rel)) == hash_file(src / rel)
    assert pre.take(src / ".hidden", stamp(src / ".hidden")) is None


def test_the_thread_hashes_the_largest_files_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Between two files the thread needs the GIL, which a main thread busy importing holds for
    # up to 5 ms at a time: the long GIL-free hashes go first (zoostore.ops.prehash).
    src = write_dir(tmp_path / "m", {"a_small.json": b"{}", "b_large.bin": os.urandom(300_000),
                                     "sub/c_mid.bin": os.urandom(50_000), "z_tiny.txt": b"z"})
    order: list[str] = []
    hash_one = Prehash._hash

    def spy(self: Prehash, path: str, *rest: Any) -> bool:
        order.append(Path(path).name)
        return hash_one(self, path, *rest)

    monkeypatch.setattr(Prehash, "_hash", spy)
    pre = Prehash([src]).start()
    pre.wait()
    assert order == ["b_large.bin", "c_mid.bin", "a_small.json", "z_tiny.txt"]
    assert pre.hashed == 4
    for rel in ("a_small.json", "b_large.bin", "sub/c_mid.bin", "z_tiny.txt"):
        assert pre.take(src / rel, stamp(src / rel)) == hash_file(src / rel)


def test_a_file_changed_after_its_hash_is_not_taken_and_the_plan_hashes_it(zoo: Store, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_dir(tmp_path / "m", {"a.bin": b"old" * 1000, "b.bin": b"same" * 1000})
    pre = Prehash([src]).start()
    pre.wait()
    (src / "a.bin").write_bytes(b"new!" * 1000)   # another size: another stamp
    assert pre.take(src / "a.bin", stamp(src / "a.bin")) is None
    calls = count_hashes(monkeypatch)
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
    calls = count_hashes(monkeypatch)
    taken: list[str] = []
    take = Prehash.take

    def spy(self: Prehash, path: Any, st: tuple[int, int, int]) -> Any:
        self.wait()   # the thread first: then it must have hashed every file, MODEL=DIR ones too
        found = take(self, path, st)
        taken.append(f"{Path(path).name}:{found is not None}")
        return found

    monkeypatch.setattr(Prehash, "take", spy)
    assert main(["publish-release", str(tmp_path / "store"), "1.0.0", str(a), f"b={b}", "-q"]) == 0
    assert sorted(taken) == ["w.bin:True", "w2.bin:True"]
    assert not calls   # and the plan hashed nothing itself
    store = open_store(tmp_path / "store")
    assert store.blobs.read_range(hash_file(a / "w.bin"), 0, 1 << 20) == (a / "w.bin").read_bytes()
    assert store.models() == ["alpha", "b"]


def test_publish_takes_the_threads_hashes_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_store(tmp_path / "store")
    src = write_dir(tmp_path / "m", {"w.bin": os.urandom(200_000), "cfg.json": "{}"})
    taken: list[bool] = []
    take = Prehash.take

    def spy(self: Prehash, path: Any, st: tuple[int, int, int]) -> Any:
        self.wait()
        found = take(self, path, st)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(Prehash, "take", spy)
    calls = count_hashes(monkeypatch)
    assert main(["publish", str(tmp_path / "store"), "net", "1.0.0", str(src), "-q"]) == 0
    assert taken == [True, True] and not calls
    assert open_store(tmp_path / "store").blobs.read_range(hash_file(src / "w.bin"), 0, 1 << 20) == (src / "w.bin").read_bytes()


class _Hasher:
    """blake3.blake3 whose first update waits for `gate` (and says so on `started`), or runs
    `before` first: to hold the thread inside one file's hash."""

    def __init__(self, gate: threading.Event | None = None, started: threading.Event | None = None,
                 before: Any = None) -> None:
        self.gate, self.started, self.before = gate, started, before

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        real = blake3.blake3(*args, **kwargs)
        gate, started, before = self.gate, self.started, self.before

        def hooks() -> None:
            if started is not None:
                started.set()
            if gate is not None:
                gate.wait(10)
            if before is not None:
                before()

        class Held:
            def update(self, data: Any) -> Any:
                hooks()
                return real.update(data)

            def update_mmap(self, path: Any) -> Any:   # the same hooks for a read by path
                hooks()
                return real.update_mmap(path)

            def hexdigest(self) -> str:
                return real.hexdigest()

        return Held()


def held(monkeypatch: pytest.MonkeyPatch, hasher: _Hasher) -> None:
    hasher.AUTO = blake3.blake3.AUTO  # type: ignore[attr-defined]
    monkeypatch.setattr(zoostore.ops.prehash, "blake3", type("Blake3", (), {"blake3": hasher}))


def test_the_plan_waits_for_the_file_the_thread_is_hashing_and_takes_its_hash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_dir(tmp_path / "m", {"a.bin": os.urandom(100_000)})
    gate, started = threading.Event(), threading.Event()
    held(monkeypatch, _Hasher(gate, started))
    pre = Prehash([src]).start()
    assert started.wait(10)
    got: list[Any] = []
    plan = threading.Thread(target=lambda: got.append(pre.take(src / "a.bin", stamp(src / "a.bin"))))
    plan.start()
    plan.join(0.3)
    assert plan.is_alive() and not got   # waiting, not hashing the file a second time
    gate.set()
    plan.join(10)
    assert got == [hash_file(src / "a.bin")] and pre.hashed == 1


def test_a_path_replaced_while_the_thread_reads_it_does_not_lend_its_hash_to_a_hard_link(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """a.bin and z.bin are one inode (bytes A). a.bin is replaced by an atomic rename (N, same
    size) after the thread opened it: the hash kept for that inode is A's, and z.bin, still that
    inode with that stamp, is published with A's id (review of s15)."""
    old, new = b"A" * 100_000, b"N" * 100_000
    src = write_dir(tmp_path / "m", {"a.bin": old})
    os.link(src / "a.bin", src / "z.bin")
    (tmp_path / "new.bin").write_bytes(new)
    held(monkeypatch, _Hasher(before=lambda: (tmp_path / "new.bin").exists()
                              and os.replace(tmp_path / "new.bin", src / "a.bin")))
    pre = Prehash([src]).start()
    pre.wait()
    assert (src / "a.bin").read_bytes() == new   # replaced while the thread hashed it
    plan = plan_publish(zoo, "net", "1.0.0", [src], prehash=pre)
    assert plan.entries["z.bin"].blob == hash_file(src / "z.bin")
    plan.execute()
    assert open_store(zoo.url).blobs.read_range(plan.entries["z.bin"].blob, 0, 1 << 20) == old


def test_a_same_size_rewrite_with_a_new_mtime_is_not_taken(tmp_path: Path) -> None:
    src = write_dir(tmp_path / "m", {"a.bin": b"x" * 5000})
    pre = Prehash([src]).start()
    pre.wait()
    (src / "a.bin").write_bytes(b"y" * 5000)   # same size, same inode
    st = os.stat(src / "a.bin")
    os.utime(src / "a.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert pre.take(src / "a.bin", stamp(src / "a.bin")) is None


def test_links_out_of_the_folder_are_hashed_only_when_followed(tmp_path: Path) -> None:
    outside = write_dir(tmp_path / "elsewhere", {"w.bin": b"w" * 5000})
    src = write_dir(tmp_path / "m", {"a.bin": b"a" * 5000})
    (src / "link.bin").symlink_to(outside / "w.bin")
    for follow, found in ((False, None), (True, hash_file(outside / "w.bin"))):
        pre = Prehash([src], follow_symlinks=follow).start()
        pre.wait()
        assert pre.take(src / "link.bin", stamp(src / "link.bin")) == found
