"""The no-op sync without parsing zoo.lock: the state file remembers which lock it placed.

    {dest}/.zoostore-state.json
        "files": path -> blob, size, mtime_ns, ino      (zoostore.ops.place)
        "lock":  {"lock":    BLAKE3 of zoo.lock's bytes,
                  "select":  the layout and --arch selection the paths were made with,
                  "project": BLAKE3 of zoo.toml's requirements, when zoo.lock was up to date
                             with them ("" when it was not checked: --frozen)}

Every CI build runs a sync that has nothing to do, and parsing zoo.lock with tomllib was most
of its time (about 15 µs per locked file). A sync that placed exactly the lock's files (no
conflict, no ignored entry) records what it placed them from. The next sync hashes zoo.lock's
bytes (BLAKE3: microseconds for a lock of thousands of files), compares the record, and when
it holds, the lock's files are the state file's entries, so it only stats them. Anything else
(another lock, another selection, zoo.toml changed, --verify, a file that moved) takes the full
path, which parses zoo.lock and writes a new record.

The fingerprint is the hash of the bytes, not size and mtime: a `git checkout` that rewrites
zoo.lock with the same bytes keeps the fast path, and a lock edited within one mtime tick
cannot pass for the old one.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import blake3

from zoostore.documents.project import Project
from zoostore.ops.place import State, unchanged_since


def lock_digest(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def selection(project: Project, archs: Iterable[str] | None) -> str:
    """What, besides zoo.lock, decides the paths: the layout and the archs asked for."""
    return f"{project.layout.template}\0{','.join(sorted(archs)) if archs else ''}"


def requirements(project: Project) -> str:
    """BLAKE3 of what `ops.lock.out_of_date_reasons` compares zoo.lock with: the same lock
    bytes and the same requirements give the same answer."""
    reqs = sorted((r.name, r.spec, tuple(r.archs), tuple(r.files)) for r in project.models.values())
    key = repr((project.store, sorted(project.runtime.items()), reqs))
    return blake3.blake3(key.encode("utf-8")).hexdigest()


def record(project: Project, lock: str, archs: Iterable[str] | None, *, up_to_date: bool) -> dict[str, str]:
    """The state file's "lock" entry for a placement made from zoo.lock bytes hashing to `lock`;
    `up_to_date`: it was checked against zoo.toml and matched."""
    return {"lock": lock, "select": selection(project, archs), "project": requirements(project) if up_to_date else ""}


def unchanged(project: Project, dest: Path, state: State, *, archs: Iterable[str] | None,
              frozen: bool, link: str = "auto") -> int | None:
    """The number of placed files when the destination is exactly what the state file recorded
    for this zoo.lock and nothing moved (nothing to do); None when the full sync must look."""
    rec = state.lock
    if rec is None or state.ignored or not state.files:
        return None
    try:
        data = project.lock_path.read_bytes()
    except OSError:
        return None
    if rec.get("lock") != lock_digest(data) or rec.get("select") != selection(project, archs):
        return None
    if not frozen and (not rec.get("project") or rec.get("project") != requirements(project)):
        return None
    return len(state.files) if all_unchanged(dest, state.files, link) else None


def all_unchanged(dest: Path, files: Mapping[str, Mapping[str, Any]], link: str = "auto") -> bool:
    """`place.unchanged_since` for every entry (read_state checked their keys and fields), as a
    tight loop over string paths: this loop is most of a no-op sync of thousands of files."""
    base = f"{dest}{os.sep}"
    for rel, entry in files.items():
        try:
            st = os.lstat(base + rel)
        except OSError:
            return False
        if st.st_size != entry["size"] or st.st_mtime_ns != entry["mtime_ns"] or st.st_ino != entry["ino"]:
            return False
        if stat.S_ISLNK(st.st_mode) and not unchanged_since(dest / rel, entry):
            return False
        if link != "auto" and stat.S_ISLNK(st.st_mode) != (link == "symlink"):
            return False   # placed as a symlink, now asked for copies or hard links (or the reverse)
    return True
