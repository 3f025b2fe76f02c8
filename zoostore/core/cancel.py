"""Stopping promptly on Ctrl-C: one process-wide flag that long-running loops check.

Python delivers SIGINT to the main thread only, as KeyboardInterrupt, while worker threads
(downloads, uploads, encoders) keep going and `ThreadPoolExecutor.__exit__` waits for them.
So the code that waits on a pool wraps the wait in `on_interrupt(pool)`: the flag is set before the
pool is joined, every worker's next `check()` raises `Interrupted`, pending work is skipped,
and the command stops within about one request's time. A stop request made that way lasts while
the interrupted operation unwinds (`while_unwinding`): a library caller that catches the
KeyboardInterrupt and carries on (a notebook cell interrupted, the next one run) starts its next
operation without a stale request, which would stop it at its first check. The CLI's SIGINT
handler sets the flag itself, for good: the process is ending. What a stopped sync has read stays
usable (the cache keeps the decoded prefix of a partial file, checked again when resumed; see
`storage.cache`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from zoostore.core.errors import Interrupted


class Joinable(Protocol):
    """What `on_interrupt` stops: a `concurrent.futures.Executor`, or threads of one's own with
    the same `shutdown` (sync's local fill: zoostore.ops.sync_fill)."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...


_requested = threading.Event()


def request() -> None:
    """Ask every loop that checks to stop."""
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def reset() -> None:
    """Clear the flag (a long-lived process, or a test, that carries on after an interrupt)."""
    _requested.clear()


def check(what: str = "") -> None:
    """Raise `Interrupted` once a stop was requested."""
    if _requested.is_set():
        raise Interrupted(f"interrupted{': ' + what if what else ''}")


@contextmanager
def while_unwinding() -> Iterator[None]:
    """The flag set while the block runs (it joins workers after a KeyboardInterrupt), and
    cleared after it unless it was set before (by the CLI's SIGINT handler, or an operation
    unwinding around this one)."""
    mine = not _requested.is_set()
    _requested.set()
    try:
        yield
    finally:
        if mine:
            _requested.clear()


@contextmanager
def on_interrupt(pool: Joinable) -> Iterator[None]:
    """Run the block, then shut `pool` down (waiting for its workers); a KeyboardInterrupt in
    the block first becomes a stop request for them while they are joined (`while_unwinding`),
    and their pending work is dropped."""
    try:
        yield
    except KeyboardInterrupt:
        with while_unwinding():
            pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
