"""Leftovers of killed writers: what a `kill -9` leaves in a store besides unreferenced objects.

    local store   <dir>/.zoostore-tmp-<pid>-<start>-<hex>[.broken]   a temp file or broken lock
                  <dir>/.<name>.<hex>.tmp|.broken                     the same, older zoostore
    object store  tmp/clock-<uuid>, tmp/cas-probe-<uuid>              a clock or CAS probe

Object stores have no partial objects (one PUT per object): a killed publish leaves only whole
packs and recipes that no manifest names, which the rest of gc deletes after the grace period.
A local store can also hold partial temp files; they are stale once their writer is gone
(pid and start time in the name, core.atomic) or older than the grace period (a writer on
another machine). Probes are stale when older than the grace period. `zoostore gc` deletes
stale leftovers, `zoostore verify` reports them.
"""

from __future__ import annotations

import re

from zoostore.core.errors import ObjectNotFoundError
from zoostore.core.units import human_bytes
from zoostore.repository import Store
from zoostore.storage.backends.base import ObjectInfo
from zoostore.storage.backends.local import LocalBackend

_PROBE = re.compile(r"tmp/(clock|cas-probe)-[0-9a-f]{32}")


def find_leftovers(zoo: Store, *, grace: float, now: float) -> list[ObjectInfo]:
    """Stale leftovers of killed writers (see the module docstring), by key."""
    backend = zoo.backend
    if isinstance(backend, LocalBackend):
        return backend.leftovers(older_than=grace, now=now)
    if not backend.capabilities.listing:
        return []
    return sorted((info for info in backend.list("tmp/")
                   if _PROBE.fullmatch(info.key) and info.mtime < now - grace), key=lambda i: i.key)


def delete_leftovers(zoo: Store, planned: tuple[ObjectInfo, ...], *, grace: float,
                     now: float) -> tuple[int, int]:
    """Delete the planned leftovers that are still stale (looked at again: a writer may have
    finished or renamed its temp file since the plan; `now` is the plan's clock); returns
    (count, bytes)."""
    if not planned:
        return 0, 0
    still = {info.key: info for info in find_leftovers(zoo, grace=grace, now=now)}
    gone = [info for info in planned if info.key in still]
    try:
        zoo.backend.delete([info.key for info in gone])
    except ObjectNotFoundError:
        pass
    return len(gone), sum(info.size for info in gone)


def describe(leftovers: list[ObjectInfo] | tuple[ObjectInfo, ...]) -> str:
    return (f"{len(leftovers)} leftover(s) of killed writers ({human_bytes(sum(i.size for i in leftovers))}; "
            f"partial temp files, broken locks or probes)")
