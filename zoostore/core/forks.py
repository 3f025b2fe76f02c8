"""Objects that start over in a forked child (multiprocessing's fork workers, DataLoader
workers, a script that forks): a lock or semaphore another thread of the parent held at the
fork stays taken for ever in the child, whose only thread is the one that forked, and the
parent's worker threads do not exist there. A registered object's `start_over()` makes its
locks, slots and thread pools anew in the child; the registry holds it weakly."""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class StartsOver(Protocol):
    def start_over(self) -> None: ...


_LIVE: weakref.WeakSet[StartsOver] = weakref.WeakSet()


def start_over_after_fork(obj: StartsOver) -> None:
    """Call `obj.start_over()` in every child forked while `obj` is alive."""
    _LIVE.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_LIVE):
        obj.start_over()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
