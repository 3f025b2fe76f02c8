"""Which projects use the local cache, so `cache prune` keeps what they placed.

    {cache}/projects/{sha256 of dest}     one line: the absolute path of a sync destination

Sync registers its destination whenever it places files. `cache prune` reads each registered
destination's state file (`.zoostore-state.json`) and keeps the blobs it lists: a project that
was synced and not yet deleted keeps its files in the cache (a later sync into a new checkout
then links them instead of downloading). A destination without a state file is forgotten.
"""

from __future__ import annotations

from pathlib import Path

from zoostore.core.atomic import atomic_write
from zoostore.core.digest import Digest
from zoostore.core.errors import ZooError
from zoostore.ops.place import STATE_NAME, read_state
from zoostore.storage.cache import Cache


def _sha256(data: bytes) -> str:
    """hashlib.sha256's hex digest, from CPython's builtin module: importing hashlib loads
    OpenSSL's _hashlib, ~2.5 ms of every sync's start-up (as core.atomic.machine avoids)."""
    try:
        from _sha2 import sha256  # Python 3.12+
    except ImportError:
        try:
            from _sha256 import sha256  # 3.11
        except ImportError:  # pragma: no cover - an interpreter without the builtin modules
            from hashlib import sha256
    return sha256(data).hexdigest()  # type: ignore[no-any-return]


def _entry(cache: Cache, dest: Path) -> Path:
    key = _sha256(str(dest).encode("utf-8", "surrogateescape"))[:32]
    return cache.root / "projects" / key


def register_dest(cache: Cache, dest: Path) -> None:
    """Remember `dest` as a user of `cache` (idempotent; a cheap stat when already known).
    Best effort: a cache this user may only read (a shared or read-only mounted one that holds
    every file) still serves the sync; its owner's `cache prune` then just does not know dest."""
    cache.check_format()   # nothing written into a cache of a newer format
    dest = dest.resolve()
    entry = _entry(cache, dest)
    try:
        if entry.exists():
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        # No fsync: an entry lost in a crash costs `cache prune` keeping less (the next sync that
        # places files registers dest again), never a wrong file; two fsyncs per first sync do.
        atomic_write(entry, (str(dest) + "\n").encode("utf-8", "surrogateescape"), fsync=False)
    except OSError:
        pass


def project_pins(cache: Cache, *, forget_missing: bool = True) -> tuple[set[Digest], list[Path]]:
    """The blobs the state files of every registered destination list, and those destinations.
    Registered destinations whose state file is gone are forgotten (unless `forget_missing`
    is false: a dry run changes nothing)."""
    pins: set[Digest] = set()
    live: list[Path] = []
    base = cache.root / "projects"
    for entry in sorted(base.iterdir()) if base.is_dir() else []:
        try:
            dest = Path(entry.read_text("utf-8", "surrogateescape").strip())
        except OSError:
            continue
        if entry.name != _entry(cache, dest).name or not (dest / STATE_NAME).is_file():
            if forget_missing:
                entry.unlink(missing_ok=True)
            continue
        live.append(dest)
        for item in read_state(dest).files.values():
            try:
                pins.add(Digest.parse(str(item.get("blob"))))
            except (ZooError, AttributeError):
                continue  # a damaged entry pins nothing; sync re-examines that file anyway
    return pins, live
