"""Stopping promptly on Ctrl-C: one process-wide flag that long-running loops check.

Python delivers SIGINT to the main thread only, as KeyboardInterrupt, while worker threads
(downloads, uploads, encoders) keep going and `ThreadPoolExecutor.__exit__` waits for them.
So the code that waits on a pool wraps the wait in `on_interrupt()`: the flag is set before the
pool is joined, every worker's next `check()` raises `Interrupted`, pending work is skipped,
and the command stops within about one request's time. What a stopped sync has read stays
usable (the cache keeps the decoded prefix of a partial file, checked again when resumed; see
`storage.cache`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from zoostore.core.errors import Interrupted

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
def on_interrupt() -> Iterator[None]:
    """Turn a KeyboardInterrupt in the waiting thread into a stop request for the workers."""
    try:
        yield
    except KeyboardInterrupt:
        request()
        raise
