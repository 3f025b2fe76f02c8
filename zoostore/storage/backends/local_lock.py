"""The local backend's manifest lock: `<key>.lock`, created whole (a hard link to a temp file
holding its writer's nonce), broken when stale.

    <root>/manifests/yolo.toml.lock                               "<host> <owner> <nonce>" of its writer
    <root>/manifests/.zoostore-tmp-<pid>-<start>-<machine>-<hex>.broken   a lock being broken

The rules (stale after STALE_LOCK_SECONDS or when its writer is gone, broken by an atomic rename,
a writer re-checks its nonce before replacing the object) are in zoostore.storage.backends.local,
whose `put_cas` is the only user.
"""

from __future__ import annotations

import errno
import os
import time
import warnings
from pathlib import Path

from zoostore.core.atomic import create_temp, host_name, owner, owner_gone, temp_name
from zoostore.core.errors import LockTimeoutError

#: Age after which a `.lock` file is considered abandoned and may be broken (see module doc).
STALE_LOCK_SECONDS = 30.0
#: How long a writer waits for a live lock holder before it says that it is waiting.
LOCK_NOTE_SECONDS = 1.0


class StaleLockWarning(UserWarning):
    """A manifest lock was broken (its writer was killed), or a writer is waiting for one."""


def holder(lock: Path) -> str:
    try:
        return holder_of(lock.read_text(errors="replace"))
    except OSError:
        return "a writer that just released it"


def holder_of(text: str) -> str:
    parts = text.split()
    pid = next((w.removeprefix("pid=") for w in parts if w.startswith("pid=")), None)
    if not parts or pid is None:
        return "an unknown writer"
    return f"process {pid} on {parts[0]}"


def acquire(lock: Path, key: str, *, root: Path, wait: float) -> str:
    """Create `lock` for `key` of the store at `root`, waiting up to `wait` seconds for a live
    holder and breaking a stale one; the nonce written into it (see `still_ours`)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    nonce = f"{host_name()} {owner()} {os.urandom(16).hex()}"   # what uuid4 holds, without importing uuid
    started = time.monotonic()
    deadline = started + wait
    delay = 0.001
    noted = False
    while True:
        try:
            create(lock, nonce)
        except FileExistsError:
            if break_if_stale(lock):
                continue
        else:
            return nonce
        now = time.monotonic()
        if now >= deadline:
            raise LockTimeoutError(
                f"{key!r} in {root} is locked by another writer ({lock} held for more "
                f"than {wait:.0f} s by {holder(lock)}); retry later. The lock is "
                f"broken automatically once its writer is gone or it is {STALE_LOCK_SECONDS:.0f} s "
                "old; delete it by hand only if no publisher is running"
            )
        if not noted and now - started >= LOCK_NOTE_SECONDS:
            noted = True
            warnings.warn(f"waiting for the lock {lock} on {key!r}, held by {holder(lock)} (running); "
                          f"giving up after {wait:.0f} s", StaleLockWarning, stacklevel=3)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def create(lock: Path, text: str) -> None:
    """Create `lock` holding `text`, or raise FileExistsError. An empty lock names no writer, so
    every later writer would wait STALE_LOCK_SECONDS for "an unknown writer": the lock never
    exists without its text. The text goes into a temp file first, which is hard-linked to the
    lock's name (link(2) fails if the name exists, as O_EXCL does); a writer killed in between
    leaves a temp file, which `zoostore gc` deletes. On a file system without hard links the
    lock is created with O_EXCL and then written, and removed if writing fails (a full disk);
    there a writer killed between the two leaves the empty lock."""
    path, fd = create_temp(lock.parent)
    tmp = Path(path)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.link(tmp, lock)
        return
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise   # FileExistsError included: the lock is taken
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise


def break_if_stale(lock: Path) -> bool:
    """Break `lock` if its writer is gone or it is too old; True if it was broken."""
    try:
        before = lock.stat()
        text = lock.read_text(errors="replace")
    except FileNotFoundError:
        return True  # released meanwhile: try again at once
    age = time.time() - before.st_mtime
    dead = owner_gone(text)
    if not dead and age <= STALE_LOCK_SECONDS:
        return False
    grabbed = lock.with_name(temp_name() + ".broken")
    try:
        os.rename(lock, grabbed)
    except FileNotFoundError:
        return True  # another writer broke or released it first
    try:
        after = grabbed.stat()
        if (after.st_ino, after.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
            # We renamed a fresh lock that replaced the stale one after our stat: put it
            # back unless yet another lock appeared meanwhile.
            try:
                os.link(grabbed, lock)
            except FileExistsError:
                pass
            return False
    finally:
        grabbed.unlink(missing_ok=True)
    why = "whose process is no longer running" if dead else f"{age:.0f} s old"
    warnings.warn(f"broke the stale lock {lock} left by {holder_of(text)}, {why} (a killed or "
                  "hung writer); its write either finished or left nothing visible", StaleLockWarning, stacklevel=4)
    return True


def still_ours(lock: Path, nonce: str) -> bool:
    try:
        return lock.read_text() == nonce
    except FileNotFoundError:
        return False
