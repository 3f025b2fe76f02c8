"""Hashing a publish's files on a background thread while the interpreter is still importing.

`zoostore publish` and `publish-release` spend their first 50-60 ms importing the store, the
writer, the codecs and the chunker, on one core, before the plan hashes every file (BLAKE3,
which releases the GIL) with the other core idle. `Prehash` starts at the command's first
line: one thread walks the given paths as `collect_files` does and hashes each regular file
while the imports run, and the plan takes each hash it finds (`take`), or hashes the file itself.

The thread takes the largest files first. Between two files it needs the GIL a few times (stat,
open, map, the shared state), and while the main thread imports, pure Python that keeps the
GIL until the interpreter's switch interval (5 ms) asks for it, each of those waits up to 5 ms:
in the order of the walk, release 1's first small files (README, JSON) took the thread most of
the import time, and hashing 260 MB took 95-120 ms against 51-63 ms alone (a file's bytes are
hashed without the GIL). Largest first, the imports overlap the long GIL-free hashes, and the
plan, which asks for files in its own order, hashes the small files the thread has not reached
yet itself (they are claimed, so never hashed twice). The module imports nothing that is not
needed before the thread starts (a `Digest` is made in `take`, on the main thread): the thread
now starts ~31 ms after the process, against 39-62 ms before. Planning release 1 (`publish-release
--dry-run`, 21 alternating rounds): 140 -> 136 ms; the phase is bound by CPU now (imports ~40 ms,
hashing 260 MB ~100-110 ms, on two cores).

A hash is used only for the file it was taken of: the thread opens each file once, keys the
hash by that descriptor's device and inode and keeps its stat from before hashing (size, mtime,
inode: `FileStamp`); the plan uses it only when its own stamp, also taken before hashing, is
the same. That is the promise the plan
makes anyway (the writer checks the stamp again after chunking). The plan and the thread
never hash one file twice: a file the thread has not reached is the plan's (the thread skips
it), and a file the thread is hashing is waited for. Nothing here decides what is published:
a file the thread hashed and the plan never asks for (a name the plan refuses, a hidden one)
cost only CPU, and the plan hashes whatever the thread missed.
"""

from __future__ import annotations

import mmap
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import blake3

if TYPE_CHECKING:   # imported by `take`: Digest is a record class, and zoostore.core.records
    # imports dataclasses with inspect (~6 ms) on the main thread, after the thread has started
    from zoostore.core.digest import Digest

#: A key's state: being hashed by the thread, claimed by the plan, or (stamp, digest).
_BUSY, _MINE = "busy", "mine"
Stamp = tuple[int, int, int]  # size, mtime_ns, inode (zoostore.storage.writer.FileStamp)


class Prehash:
    """See the module docstring. `start()` begins hashing; `take` answers per file; `stop()`
    ends the thread after the file it is hashing (a daemon: an exiting command does not wait)."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]], *, follow_symlinks: bool = False) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.follow = follow_symlinks
        self._state: dict[tuple[int, int], str | tuple[Stamp, str]] = {}   # str: the hex BLAKE3
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="zoo-prehash", daemon=True)
        self.hashed = 0  # files the thread hashed (for tests and the benchmark notes)

    def start(self) -> Prehash:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Hash no further file. Not waited for: the file being hashed is finished (a daemon
        thread: a failed or interrupted command exits without waiting for a large file)."""
        with self._cond:
            self._stop = True

    def wait(self) -> None:
        """Until the thread has hashed every file it will."""
        self._thread.join()

    def take(self, path: str | os.PathLike[str], stamp: Stamp) -> Digest | None:
        """The thread's hash of `path` when it hashed the file as `stamp` says it is now (waiting
        while it hashes it); None otherwise, and the thread then leaves the file alone."""
        try:
            st = os.stat(path)
        except OSError:
            return None   # the plan's own read says what is wrong
        key = (st.st_dev, st.st_ino)
        with self._cond:
            while self._state.get(key) == _BUSY:
                self._cond.wait()
            found = self._state.setdefault(key, _MINE)
        if isinstance(found, tuple) and found[0] == stamp:
            from zoostore.core.digest import Digest

            return Digest(found[1])
        return None

    def _run(self) -> None:
        try:
            for path, st in self._largest_first():
                if not self._hash(path, st):
                    return
        except Exception:   # a directory that vanished or cannot be read: the plan says so; the
            pass            # thread only saves time, so nothing it meets may fail the command
        finally:
            with self._cond:   # nothing stays busy, whatever stopped the thread
                for key, state in self._state.items():
                    if state == _BUSY:
                        self._state[key] = _MINE
                self._cond.notify_all()

    def _hash(self, path: str, st: os.stat_result | None = None) -> bool:
        """Hash one file unless the plan claimed it; False once stopped. The file is opened once:
        its key and stamp come from that descriptor and its bytes are read through it, so a path
        replaced meanwhile (an editor's or a build's atomic rename) never lends its new bytes'
        hash to the old inode, which a hard link or a renamed path may still publish. `st`: the
        path's stat from the walk, if it took one."""
        try:
            if not stat.S_ISREG((st or os.stat(path)).st_mode):
                return True
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))   # a FIFO swapped in never blocks
        except OSError:
            return True
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            with self._cond:
                if self._stop:
                    return False
                if key in self._state or not stat.S_ISREG(st.st_mode):
                    return True
                self._state[key] = _BUSY
            result: str | tuple[Stamp, str] = _MINE
            try:
                # All cores for a large file (the plan waits for it); a small one stays on one.
                hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
                if st.st_size:
                    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
                        hasher.update(mapped)
                result = ((st.st_size, st.st_mtime_ns, st.st_ino), hasher.hexdigest())
                self.hashed += 1
            except (OSError, ValueError):
                pass   # unreadable, or emptied meanwhile (mmap of 0 bytes): the plan says what is wrong
            finally:
                with self._cond:
                    self._state[key] = result
                    self._cond.notify_all()
            return True
        finally:
            os.close(fd)

    def _largest_first(self) -> list[tuple[str, os.stat_result | None]]:
        """`_files` with their stat, the largest first (see the module docstring); a file that
        cannot be stat'ed last (`_hash` skips it). Stops early once `stop()` was called."""
        sized: list[tuple[int, str, os.stat_result | None]] = []
        for path in self._files():
            if self._stop:
                break
            try:
                st = os.stat(path)
            except OSError:
                sized.append((1, path, None))
            else:
                sized.append((-st.st_size, path, st))
        sized.sort(key=lambda item: (item[0], item[1]))
        return [(path, st) for _, path, st in sized]

    def _files(self) -> Iterator[str]:
        """Regular files under the paths, in `collect_files`' order (hidden names skipped)."""
        for top in self.paths:
            if not os.path.isdir(top):
                if os.path.isfile(top):
                    yield top
                continue
            for root, dirs, files in os.walk(top, followlinks=self.follow):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    full = os.path.join(root, name)
                    if not name.startswith(".") and (self.follow or not os.path.islink(full)):
                        yield full


__all__ = ["Prehash"]
