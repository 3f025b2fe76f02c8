"""Local-directory backend: the embedded default store, also safe on NFS.

    <root>/zoostore.toml
    <root>/packs/3f/3fa9...e1                    one key = one regular file
    <root>/packs/3f/.zoostore-tmp-<pid>-<start>-<machine>-<hex>          a write in progress
    <root>/manifests/yolo.toml
    <root>/manifests/yolo.toml.lock              compare-and-swap lock
    <root>/manifests/.zoostore-tmp-<pid>-<start>-<machine>-<hex>.broken  a lock being broken

Names whose last part ends in `.lock`, starts with `.zoostore-tmp-` (core.atomic.TEMP_PREFIX),
or starts with "." and ends in `.tmp` / `.broken` (the temp names of earlier zoostore
versions, still recognised) are reserved for this bookkeeping: `list` skips them and writes to
them raise `InvalidPathError`. A temp name says which process of which machine wrote it, so
`leftovers` can tell the files of a killed writer (`zoostore gc` removes them, `zoostore
verify` reports them).

put_if_absent: write a unique temp file in the target directory (fsync'd unless `fsync=False`),
then `os.link(temp, final)`, which fails with `FileExistsError` when the key exists, then unlink
the temp file. Readers never see a partial object, and a lost race returns False. On a file
system without hard links (some SMB/FUSE mounts) it falls back to "exists? else os.replace":
still never partial, but two racing writers may both return True (harmless for content-addressed
keys, whose racing writers hold identical bytes). `fsync=True` (the default) flushes file data
before the link, so a crash never leaves a visible object with missing bytes; directory entries
are not fsync'd (a crash may lose a just-written object, which is then simply absent).

put_cas: no `flock`/`fcntl` (unreliable on NFS and Lustre). The writer creates `<key>.lock` with
`os.open(O_CREAT | O_EXCL)` (atomic on local disks and NFSv3+), writes its nonce into it, reads the
current object, compares tokens, writes a temp file and `os.replace`s it over the key, then removes
the lock. The CAS token is the BLAKE3 hex digest of the object's bytes.

Stale locks: the lock file holds its writer's host, pid and start time. A lock written on this
host by a process that is no longer running (killed: its pid is gone or was reused) is broken
at once, with a `StaleLockWarning` saying so. Any other lock whose mtime is more than
`STALE_LOCK_SECONDS` (30 s) older than this machine's clock belongs to a crashed or hung writer
(possibly on another NFS client) and is broken too; while it waits for a live holder, a writer
says so once (`StaleLockWarning`) after `LOCK_NOTE_SECONDS`. Breaking a lock: it is renamed to
a unique `.broken` name (atomic, so only one breaker wins), checked to still be the same stale file (same inode and
mtime), then deleted. A writer re-reads its own nonce from the lock just before `os.replace` and
gives up with `ConflictError` if its lock was broken meanwhile. Holders finish in milliseconds
(manifests are small), so the rule only fires after a crash, or with clocks skewed by more than
30 s between NFS clients and server. A writer that finds the lock held retries with backoff for
up to `lock_wait` seconds (default 10), then raises `ConflictError`. The lock itself lives in
zoostore.storage.backends.local_lock.
"""

from __future__ import annotations

import builtins
import errno
import itertools
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import blake3

from zoostore.storage.backends.base import LIST_PAGE, Backend, Capabilities, ObjectInfo, ObjectWriter, Versioned
from zoostore.core.atomic import TEMP_PREFIX, blame, stale_temp, temp_name
from zoostore.core.errors import ConflictError, InvalidPathError, ObjectNotFoundError, ReadOnlyError
from zoostore.storage.backends.local_lock import STALE_LOCK_SECONDS, StaleLockWarning, acquire, still_ours

__all__ = ["STALE_LOCK_SECONDS", "LocalBackend", "StaleLockWarning"]
#: fdatasync where the system has it (Linux), else fsync (macOS).
_fdatasync = getattr(os, "fdatasync", os.fsync)
#: A streamed object is flushed to disk every this many bytes (_TempFileWriter).
SYNC_EVERY = 4 * 1024 * 1024
#: Pieces per writev call (below every system's IOV_MAX).
_IOV_BATCH = 512
#: Store keys whose paths a LocalBackend remembers for reads (`_read_path`; a few hundred bytes each).
READ_PATHS = 4096

_LOCK_SUFFIX = ".lock"
#: How a write fails in a folder we may only read (a read-only mount, a store shared read-only).
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _token(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def _is_reserved(name: str) -> bool:
    """Bookkeeping names that are never keys (temp files, locks, broken locks)."""
    return name.endswith(_LOCK_SUFFIX) or name.startswith(TEMP_PREFIX) or (
        name.startswith(".") and (name.endswith(".tmp") or name.endswith(".broken"))
    )


class LocalBackend(Backend):
    """A `Backend` over a directory. `root` need not exist yet: writes create it."""

    capabilities = Capabilities(fresh_listing=True)

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True, lock_wait: float = 10.0) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = self.root.as_uri()
        self._fsync = fsync
        self._lock_wait = lock_wait
        self._read_paths: dict[str, str] = {}   # `_read_path`'s memory

    # -- paths -----------------------------------------------------------------------------

    def _read_path(self, key: str) -> str:
        """`_path(key)` as a string, remembered for up to READ_PATHS keys: building and checking
        a Path took ~19 of the ~85 µs of an uncached random 4 KiB zoo:// read (one ranged read
        of a pack per read). A key always names the same path; which file is there is still
        the file system's answer at each open."""
        path = self._read_paths.get(key)
        if path is None:
            if len(self._read_paths) >= READ_PATHS:
                self._read_paths.clear()
            path = self._read_paths[key] = str(self._path(key))
        return path

    def _path(self, key: str, *, writing: bool = False) -> Path:
        # Keys come from zoostore itself, but a key that escapes the root would be a write
        # anywhere on disk: refuse anything but plain relative POSIX paths.
        parts = key.split("/")
        if (
            not key
            or key.startswith("/")
            or "\\" in key
            or "\x00" in key
            or any(part in ("", ".", "..") for part in parts)
            or (len(parts[0]) == 2 and parts[0][1] == ":")
        ):
            raise InvalidPathError(
                f"invalid store key {key!r}: expected a relative POSIX path without '', '.', "
                "'..', backslash or drive parts"
            )
        if writing and _is_reserved(parts[-1]):
            raise InvalidPathError(
                f"invalid store key {key!r}: names ending in '.lock', or starting with '.' and "
                f"ending in '.tmp'/'.broken', are reserved for {type(self).__name__} bookkeeping"
            )
        return self.root.joinpath(*parts)

    def _missing(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"object {key!r} not found in {self.root}", key=key)

    def _write_failed(self, exc: OSError, where: Path) -> NoReturn:
        """Raise `ReadOnlyError` (exit 8) where the store's folder cannot be written (readers
        never write to it), else `exc` naming `where` (a full disk's write names no file)."""
        if exc.errno in _NOT_WRITABLE:
            fix = ("its file system is mounted read-only, so run them where it is mounted read-write"
                   if exc.errno == errno.EROFS else "ask the store's owner for write access to its folders")
            raise ReadOnlyError(
                f"cannot write to the store {self.root}: {exc.strerror} ({where}). Commands that change a store "
                f"(publish, tag, yank, meta, config, gc, verify --repair) need write access: {fix}, or use a store "
                "you can write; sync, get, ls and verify only read it") from exc
        raise blame(exc, where)

    def _temp_for(self, path: Path) -> Path:
        return path.with_name(temp_name())

    def _write_temp(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._temp_for(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        path = self._read_path(key)
        try:
            # unbuffered: one read of the whole file, no buffer object (a sync of thousands of
            # small files reads as many recipes)
            with open(path, "rb", buffering=0) as f:
                return f.readall()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._missing(key) from None

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end}) for {key!r}")
        path = self._read_path(key)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read(end - start)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._missing(key) from None

    def get_range_into(self, key: str, start: int, buf: bytearray) -> int:
        # os.preadv fills the caller's buffer: no fresh (page-faulted) bytes object per range,
        # which cost ~1 ms per 4 MiB read segment of a large file.
        if start < 0:
            raise ValueError(f"invalid byte range start {start} for {key!r}")
        path = self._read_path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._missing(key) from None
        try:
            got = 0
            with memoryview(buf) as view:
                while got < len(buf):
                    n = os.preadv(fd, [view[got:]], start + got)
                    if n == 0:
                        break
                    got += n
            return got
        except IsADirectoryError:
            raise self._missing(key) from None
        finally:
            os.close(fd)

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(key) from None
        if not path.is_file():
            raise self._missing(key)
        return ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime)

    def get_versioned(self, key: str) -> Versioned:
        data = self.get(key)
        return Versioned(data=data, token=_token(data))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk the deepest directory the prefix names, then filter on the full prefix, so
        # "packs/3" also works (though callers pass directory-like prefixes).
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(base) if base else self.root
        yield from self._walk(start, base + "/" if base else "", prefix)

    def list_pages(self, prefix: str) -> Iterator[builtins.list[ObjectInfo]]:
        """Pages of 1,000 objects: the walk stats each file when it reaches it, so a page's
        mtimes are all read while the caller advances to it."""
        walk = self.list(prefix)
        while page := list(itertools.islice(walk, LIST_PAGE)):
            yield page

    def _walk(self, directory: Path, rel: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            key = rel + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if key.startswith(prefix) or prefix.startswith(key + "/"):
                        yield from self._walk(Path(entry.path), key + "/", prefix)
                elif entry.is_file() and not _is_reserved(entry.name) and key.startswith(prefix):
                    st = entry.stat()
                    yield ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime)
            except FileNotFoundError:
                continue  # deleted while we walked

    # -- writes ----------------------------------------------------------------------------

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key, writing=True)
        if path.exists():
            return False  # cheap early exit; the link below is what decides races
        try:
            return self._link_temp(self._write_temp(path, data), path)
        except OSError as exc:
            self._write_failed(exc, path.parent)

    def _link_temp(self, tmp: Path, path: Path) -> bool:
        """Make the written temp file `tmp` the object at `path` unless it exists (the link
        decides races); the temp file is gone afterwards."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                # No hard links here: see the module docstring for what this fallback gives up.
                if path.exists():
                    return False
                os.replace(tmp, path)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def object_writer(self, prefix: str) -> ObjectWriter:
        return _TempFileWriter(self, self._path(prefix))

    def put_cas(self, key: str, data: bytes, *, expected: str | None) -> str:
        path = self._path(key, writing=True)
        try:
            return self._put_cas(path, key, data, expected=expected)
        except OSError as exc:
            self._write_failed(exc, path)

    def _put_cas(self, path: Path, key: str, data: bytes, *, expected: str | None) -> str:
        lock = path.with_name(path.name + _LOCK_SUFFIX)
        nonce = self._acquire(lock, key)
        try:
            try:
                current: str | None = _token(path.read_bytes())
            except FileNotFoundError:
                current = None
            if current != expected:
                raise ConflictError(
                    f"compare-and-swap on {key!r} in {self.root} lost: expected "
                    f"{'no object' if expected is None else 'token ' + expected} but found "
                    f"{'no object' if current is None else 'token ' + current}; "
                    "re-read the object, re-apply the change and retry"
                )
            tmp = self._write_temp(path, data)
            try:
                if not still_ours(lock, nonce):
                    raise ConflictError(
                        f"the lock {lock} on {key!r} was broken as stale (held > "
                        f"{STALE_LOCK_SECONDS:.0f} s) before this write finished; nothing was "
                        "written: re-read the object and retry"
                    )
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            return _token(data)
        finally:
            if still_ours(lock, nonce):
                lock.unlink(missing_ok=True)

    def _acquire(self, lock: Path, key: str) -> str:
        return acquire(lock, key, root=self.root, wait=self._lock_wait)

    # -- leftovers of killed writers ---------------------------------------------------------

    def leftovers(self, *, older_than: float, now: float | None = None) -> builtins.list[ObjectInfo]:
        """Temp files and broken-lock files that no running writer will finish: written by a
        process of this machine that is gone, or older than `older_than` seconds (written from
        another machine, or by an older zoostore whose temp names carry no pid). Keys are
        relative to the root; `delete` removes them."""
        now = time.time() if now is None else now
        out = []
        for directory, _, files in os.walk(self.root):
            for name in files:
                if not _is_reserved(name) or name.endswith(_LOCK_SUFFIX):
                    continue
                path = Path(directory) / name
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    continue
                if (stale_temp(name, st.st_mtime, now=now, older_than=older_than)
                        or (not name.startswith(TEMP_PREFIX) and now - st.st_mtime > older_than)):
                    out.append(ObjectInfo(key=path.relative_to(self.root).as_posix(), size=st.st_size,
                                          mtime=st.st_mtime))
        return sorted(out, key=lambda info: info.key)

    def delete(self, keys: Iterable[str]) -> None:
        # Empty directories stay: removing them would race with a writer creating a file there.
        for key in keys:
            try:
                self._path(key).unlink()
            except (FileNotFoundError, NotADirectoryError):
                pass
            except OSError as exc:
                self._write_failed(exc, self._path(key))

    def freshen(self, key: str) -> None:
        try:
            os.utime(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(key) from None
        except OSError as exc:
            self._write_failed(exc, self._path(key))

    def now(self) -> float:
        return time.time()


class _TempFileWriter(ObjectWriter):
    """Pieces go straight to a temp file in `directory` (a reserved name: `list` skips it and
    `leftovers` finds it after a crash); `commit` fsyncs it and links it into place like
    `put_if_absent`. A pack is never held in memory whole. Every SYNC_EVERY bytes it flushes
    what it wrote so far (fdatasync), so that the fsync at `commit`, which the caller waits
    for, has little left to do."""

    def __init__(self, backend: LocalBackend, directory: Path) -> None:
        super().__init__(backend)
        self._local = backend
        self._dir = directory
        self._tmp: Path | None = None
        self._fd = -1
        self._unsynced = 0
        self._dropped = False  # discarded: later writes go nowhere (no second temp file)

    def _open(self) -> int:
        if self._dropped:
            raise OSError(errno.ECANCELED, "write to a discarded object")
        if self._fd < 0:
            self._dir.mkdir(parents=True, exist_ok=True)
            tmp = self._dir / temp_name()
            self._fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            self._tmp = tmp
        return self._fd

    def write(self, parts: Sequence[bytes]) -> None:
        try:
            fd = self._open()
            for i in range(0, len(parts), _IOV_BATCH):
                batch = parts[i : i + _IOV_BATCH]
                done, total = os.writev(fd, batch), sum(len(p) for p in batch)
                if done < total:  # a short write (rare on regular files): the rest one by one
                    rest = memoryview(b"".join(batch))[done:]
                    while rest:
                        rest = rest[os.write(fd, rest):]
                self._unsynced += total
            if self._local._fsync and self._unsynced >= SYNC_EVERY:
                _fdatasync(fd)
                self._unsynced = 0
        except OSError as exc:
            self._local._write_failed(exc, self._dir)

    def commit(self, key: str) -> bool:
        try:
            return self._commit(key)
        except OSError as exc:
            self._local._write_failed(exc, self._local._path(key))

    def _commit(self, key: str) -> bool:
        fd = self._open()
        self._fd = -1
        try:
            try:
                if self._local._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            self.discard()
            raise
        tmp, self._tmp = self._tmp, None
        assert tmp is not None
        return self._local._link_temp(tmp, self._local._path(key, writing=True))

    def discard(self) -> None:
        self._dropped = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
