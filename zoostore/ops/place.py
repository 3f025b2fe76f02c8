"""Placing verified files in a consumer's destination, and the state file that remembers them.

    {dest}/{model}/{arch}/{path}          files placed by sync (hard links into the cache)
    {dest}/.zoostore-state.json           what sync placed: path -> blob, size, mtime, inode;
                                          and the zoo.lock it placed (`zoostore.ops.sync_fast`)

Destination safety, the rules (docs/consumer.md repeats them):
- sync replaces or removes only what it placed: a path whose state entry still matches the
  file's stat, or whose bytes are those of the blob recorded or wanted. Anything else at a
  path sync wants (a user's file, a placed file edited since) is a conflict: reported and left
  alone, unless `force` says to replace it. A directory in the way is never deleted.
- Every state-file key and lockfile path is checked like a manifest path (relative, no `..`,
  no empty parts); an invalid one is ignored and reported, never deleted or written through.
  Directories are walked one component at a time and a symlinked or escaping one is refused.
- A file is placed through a temp name in its final directory (created with O_EXCL, a link or
  symlink that fails if the name exists: never following a planted symlink) and renamed over
  the target, so a crash never leaves a partial file; a link to an absent target is made at
  the target's name directly (it appears whole, and fails if the name was taken meanwhile). Temp names are short (core.atomic), so a
  file name up to the file system's limit fits. The temp files a killed sync left (its pid is
  in their names) are removed by the next sync that places files in that directory.

Light on purpose: sync's no-op path reads the state file through this module.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from zoostore.core.atomic import TEMP_PREFIX, atomic_write, blame, open_temp, stale_temp, temp_name
from zoostore.core.digest import Digest, hash_file
from zoostore.core.errors import DestinationConflictError, IntegrityError, InvalidPathError, UsageError
from zoostore.core.names import check_relpath
from zoostore.core.records import dataclass

STATE_NAME = ".zoostore-state.json"
LINK_MODES = ("auto", "hardlink", "copy", "symlink")
_STAT_KEYS = ("size", "mtime_ns", "ino")

#: One state-file entry: {"blob": "blake3:…", "size": …, "mtime_ns": …, "ino": …}.
StateEntry = Mapping[str, Any]


@dataclass
class State:
    """The state file, read: valid entries by path relative to dest, and what was ignored."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # "key: why", never acted upon
    #: What `files` is exactly the placement of (zoostore.ops.sync_fast): string fields only.
    lock: dict[str, str] | None = None


def stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def unchanged_since(target: Path, entry: StateEntry) -> bool:
    """Whether `target` still has the size, mtime and inode the state file recorded (and, for a
    symlink, still leads to a file: `cache prune` may have left it dangling)."""
    try:
        st = target.lstat()
    except OSError:
        return False
    if list(stat_key(st)) != [entry.get(k) for k in _STAT_KEYS]:
        return False
    return not stat.S_ISLNK(st.st_mode) or os.path.exists(target)


def state_entry(target: str | os.PathLike[str], blob: Digest) -> dict[str, Any]:
    return {"blob": str(blob), **dict(zip(_STAT_KEYS, stat_key(os.lstat(target))))}


def check_dest_relpath(rel: str) -> str:
    """A path relative to dest (zoo.toml's layout, by default `{model}/{arch}/{path}`):
    relative POSIX, no `..`, no empty or `.` parts, not the state file; else InvalidPathError."""
    check_relpath(rel, where="destination")
    if rel == STATE_NAME:
        raise InvalidPathError(f"destination: path {rel!r} is sync's own state file")
    return rel


def _entry_problem(rel: Any, entry: Any) -> str | None:
    if not isinstance(rel, str):
        return "key is not a string"
    try:
        check_dest_relpath(rel)
    except InvalidPathError as exc:
        return str(exc).split(": file paths")[0]
    if not isinstance(entry, dict) or not isinstance(entry.get("blob"), str):
        return "entry is not a table with a blob"
    if not all(type(entry.get(k)) is int for k in _STAT_KEYS):
        return f"entry lacks integer {', '.join(_STAT_KEYS)}"
    return None


def read_state(dest: Path) -> State:
    """The state file; empty when absent or unreadable (sync then re-examines every file, which
    is slow but correct: a file whose bytes are the wanted ones is adopted, others conflict).
    Invalid entries (a planted `../../x`, an absolute key) are ignored and listed."""
    state = State()
    try:
        doc = json.loads((dest / STATE_NAME).read_text())
    except (OSError, ValueError):
        return state
    files = doc.get("files", {}) if isinstance(doc, dict) and doc.get("format") == 1 else {}
    if not isinstance(files, dict):
        return state
    record = doc.get("lock") if isinstance(doc, dict) else None
    if isinstance(record, dict) and all(isinstance(v, str) for v in record.values()):
        state.lock = record
    for rel, entry in files.items():
        problem = _entry_problem(rel, entry)
        if problem:
            state.ignored.append(f"{rel!r}: {problem}")
        else:
            state.files[rel] = entry
    return state


def write_state(dest: Path, state: Mapping[str, StateEntry], *, lock: Mapping[str, str] | None = None) -> None:
    """Write the state file atomically; its temp file is created with O_EXCL|O_NOFOLLOW and a
    symlink planted at the state file's name is replaced, never written through. `lock`
    records which zoo.lock `state` is exactly the placement of (zoostore.ops.sync_fast)."""
    dest.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"format": 1, "files": {k: dict(v) for k, v in sorted(state.items())}}
    if lock is not None:
        doc["lock"] = dict(lock)
    # no indent: the C encoder (indent falls back to the Python one: 6 ms for 2,000 files)
    atomic_write(dest / STATE_NAME, json.dumps(doc).encode())


def _inside(dest_real: str, directory: Path) -> bool:
    real = os.path.realpath(directory)
    return real == dest_real or real.startswith(dest_real + os.sep)


def resolves_inside(dest: Path, rel: str) -> bool:
    """Whether dest/rel's directory, symlinks resolved, is inside dest (the file itself is
    never followed: it is lstat-ed, unlinked or renamed over)."""
    return _inside(os.path.realpath(dest), (dest / rel).parent)


def owned(target: Path, entry: StateEntry | None, blobs: tuple[Digest, ...]) -> bool:
    """Whether what is at `target` is sync's to replace: it matches its state entry, or its
    bytes (a symlink: its cache target's name) are one of `blobs`. Absent counts as owned, and
    so does a directory: both are judged when placing, after stale files have left
    (`safe_parent`, `clear_target`)."""
    try:
        st = target.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return True
    if stat.S_ISDIR(st.st_mode):
        return True
    if entry is not None and list(stat_key(st)) == [entry.get(k) for k in _STAT_KEYS]:
        return True
    if stat.S_ISLNK(st.st_mode):
        name = os.path.basename(os.readlink(target))
        return any(name == b.hex for b in blobs)
    if stat.S_ISREG(st.st_mode):
        return hash_file(target) in blobs
    return False


def already_placed(target: str, blob: Digest, size: int, link: str, cached: Path) -> dict[str, Any] | None:
    """A state entry for `target` if it already holds `blob` as sync would place it though no
    state entry says so (a sync whose state file did not fit on a full disk), else None.
    Placing it again would copy it again (`--link copy`, or `cached`, the cache file, on another
    file system) or link the same file: needless, and a copy needs room for a second one
    beside it, which the full disk lacked. A symlink, or a copy where a hard link could be
    made instead, is placed again."""
    try:
        st = os.lstat(target)
        if link == "symlink" or not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return None
        if link != "copy":
            source = os.stat(cached)
            if (source.st_dev, source.st_ino) != (st.st_dev, st.st_ino) and (link == "hardlink" or source.st_dev == st.st_dev):
                return None
        if hash_file(target) != blob:
            return None
        return state_entry(target, blob)
    except OSError:
        return None


def safe_parent(dest: Path, target: Path, *, force: bool = False) -> None:
    """Create target's parent directories, refusing any that is a symlink or resolves outside
    dest. A file in the way (a path that was a file in an older version) is a conflict, unless
    `force`, which replaces it by the directory."""
    dest_real = os.path.realpath(dest)
    d = dest
    for part in target.parent.relative_to(dest).parts:
        d = d / part
        if d.is_symlink() or (d.exists() and not _inside(dest_real, d)):
            raise UsageError(f"{d} is a symlink or leaves {dest}; sync never writes through it. Remove it and sync again")
        if d.exists() and not d.is_dir():
            if not force:
                raise DestinationConflictError(f"{d} is a file where sync needs a directory", paths=[str(d)])
            d.unlink()
        d.mkdir(exist_ok=True)


def remove_stale_temps(directory: Path) -> int:
    """Remove the temp files in `directory` (one a sync made safe: real, inside dest) that no
    running zoostore will finish: partial files of a killed sync (core.atomic.stale_temp).
    Never follows a link, never touches anything but a temp name. Returns how many went."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX) and not entry.is_dir(follow_symlinks=False):
            try:
                if stale_temp(entry.name, entry.stat(follow_symlinks=False).st_mtime):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def clear_target(target: Path) -> None:
    """Make room at target for a file: an empty directory (left by an older version whose files
    sync removed) goes; a non-empty one is a conflict, even with --force."""
    if target.is_dir() and not target.is_symlink():
        try:
            target.rmdir()
        except OSError:
            raise DestinationConflictError(f"{target} is a directory holding files sync did not place",
                                           paths=[str(target)]) from None


def _temp_link(parent: Path, make: Callable[[Path], None]) -> Path:
    """A fresh temp name in parent made by `make` (os.link or os.symlink), which fails rather
    than follow or reuse anything planted at that name."""
    for _ in range(16):
        tmp = parent / temp_name()
        try:
            make(tmp)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{parent}: could not create a unique temp name after 16 tries")


def _temp_copy(parent: Path, source: Path) -> Path:
    import shutil   # only here: it imports zlib, bz2 and lzma (~2 ms of a sync's start)

    tmp, f = open_temp(parent)
    try:
        with f, open(source, "rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def place_file(cache_file: Path, target: Path, blob: Digest, link: str) -> None:
    """Put the verified cache file at target (hard link, copy or symlink, see LINK_MODES),
    through a temp name and a rename; a copy is hashed again before it becomes visible. A link
    to an absent target is made in place: link(2) and symlink(2) create the name whole, with
    the complete verified file behind it, and fail if anything (a planted symlink) is there."""
    if link != "copy":
        try:
            (os.symlink if link == "symlink" else os.link)(cache_file, target)
            return
        except OSError:
            pass   # something is there (replaced through a rename below), or another file system
    tmp: Path | None = None
    try:
        if link == "symlink":
            tmp = _temp_link(target.parent, lambda t: os.symlink(cache_file, t))
        elif link in ("auto", "hardlink"):
            try:
                tmp = _temp_link(target.parent, lambda t: os.link(cache_file, t))
            except OSError as exc:
                if isinstance(exc, FileNotFoundError):
                    raise   # the cache file went (a concurrent prune): sync fetches it again
                if link == "hardlink":
                    raise UsageError(f"cannot hard-link {cache_file} to {target} (different filesystems?); use --link copy") from None
                link = "copy"
        if link == "copy":
            tmp = _temp_copy(target.parent, cache_file)
            actual = hash_file(tmp)
            if actual != blob:
                raise IntegrityError(f"copy of {cache_file} hashes to {actual}, expected {blob}; the cache is damaged: "
                                     f"delete {cache_file} and sync again", obj=str(cache_file), expected=blob.hex, actual=actual.hex)
            os.chmod(tmp, 0o444)
        assert tmp is not None
        os.replace(tmp, target)
        # rename(2) does nothing when both names are links to the same file (a re-run after a
        # killed sync re-links a file already linked from the cache): drop the temp name then.
        tmp.unlink(missing_ok=True)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            blame(exc, target)   # a full disk's write names no file
        raise


def remove_placed(dest: Path, target: Path, entry: StateEntry) -> bool | None:
    """Remove a file sync placed, and the directories it leaves empty, if it is unchanged since
    (True). False: it was modified, so it stays. None: it is already gone."""
    try:
        key = stat_key(target.lstat())
    except OSError:
        return None
    if list(key) != [entry.get(k) for k in _STAT_KEYS]:
        return False
    target.unlink()
    prune_dirs(dest, target.parent)
    return True


def prune_dirs(dest: Path, d: Path) -> None:
    while d != dest and dest in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent
