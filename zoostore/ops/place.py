"""Placing verified files in a consumer's destination, and the state file that remembers them.

    {dest}/{model}/{arch}/{path}          files placed by sync (hard links into the cache)
    {dest}/.zoostore-state.json           what sync placed: path -> blob, size, mtime, inode

Destination safety: a file is placed through a temp name in its final directory and renamed
over the target, so a crash never leaves a partial file; a directory that resolves outside
`dest` (a symlink planted there) is refused; files sync did not place are never touched, and a
placed file is removed only while its stat still matches the state file.

Light on purpose: sync's no-op path reads the state file through this module.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoostore.core.atomic import atomic_write, temp_name
from zoostore.core.digest import Digest, hash_file
from zoostore.core.errors import IntegrityError, UsageError

STATE_NAME = ".zoostore-state.json"
LINK_MODES = ("auto", "hardlink", "copy", "symlink")
_STAT_KEYS = ("size", "mtime_ns", "ino")

#: One state-file entry: {"blob": "blake3:…", "size": …, "mtime_ns": …, "ino": …}.
StateEntry = Mapping[str, Any]


def stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def unchanged_since(target: Path, entry: StateEntry) -> bool:
    """Whether `target` still has the size, mtime and inode the state file recorded."""
    try:
        key = stat_key(target.lstat())
    except OSError:
        return False
    return list(key) == [entry.get(k) for k in _STAT_KEYS]


def state_entry(target: Path, blob: Digest) -> dict[str, Any]:
    return {"blob": str(blob), **dict(zip(_STAT_KEYS, stat_key(target.lstat())))}


def read_state(dest: Path) -> dict[str, dict[str, Any]]:
    """The state file's entries by path relative to dest; empty when absent or unreadable
    (sync then re-examines every file, which is slow but correct)."""
    try:
        doc = json.loads((dest / STATE_NAME).read_text())
        files = doc.get("files", {})
        return files if isinstance(files, dict) and doc.get("format") == 1 else {}
    except (OSError, ValueError):
        return {}


def write_state(dest: Path, state: Mapping[str, StateEntry]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    doc = {"format": 1, "files": {k: dict(v) for k, v in sorted(state.items())}}
    atomic_write(dest / STATE_NAME, json.dumps(doc, indent=1).encode())


def _inside(dest_real: str, directory: Path) -> bool:
    real = os.path.realpath(directory)
    return real == dest_real or real.startswith(dest_real + os.sep)


def safe_parent(dest: Path, target: Path) -> None:
    """Create target's parent directories, refusing any that resolve outside dest."""
    dest_real = os.path.realpath(dest)
    d = dest
    for part in target.parent.relative_to(dest).parts:
        d = d / part
        if d.is_symlink() or (d.exists() and not _inside(dest_real, d)):
            raise UsageError(f"{d} is a symlink or leaves {dest}; sync never writes through it. Remove it and sync again")
        d.mkdir(exist_ok=True)


def place_file(cache_file: Path, target: Path, blob: Digest, link: str) -> None:
    """Put the verified cache file at target (hard link, copy or symlink, see LINK_MODES),
    through a temp name and a rename; a copy is hashed again before it becomes visible."""
    # A short temp name (core.atomic): a target name of up to the file system's limit fits.
    tmp = target.parent / temp_name()
    try:
        if link == "symlink":
            os.symlink(cache_file, tmp)
        elif link in ("auto", "hardlink"):
            try:
                os.link(cache_file, tmp)
            except OSError:
                if link == "hardlink":
                    raise UsageError(f"cannot hard-link {cache_file} to {target} (different filesystems?); use --link copy") from None
                link = "copy"
        if link == "copy":
            shutil.copyfile(cache_file, tmp)
            actual = hash_file(tmp)
            if actual != blob:
                raise IntegrityError(f"copy of {cache_file} hashes to {actual}, expected {blob}; the cache is damaged: "
                                     f"delete {cache_file} and sync again", obj=str(cache_file), expected=blob.hex, actual=actual.hex)
            os.chmod(tmp, 0o444)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
