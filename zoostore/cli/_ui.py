"""Terminal output shared by commands: progress bars on a TTY, silence otherwise."""

from __future__ import annotations

import _thread
import argparse
import os
import sys
import time
from typing import Any, TextIO

from zoostore.core.units import human_bytes

__all__ = ["JSON_SCHEMA", "TerminalProgress", "add_json", "add_quiet", "human_bytes", "ljust", "print_json"]


#: Set to 1 to turn progress bars off everywhere (CI logs), like `--no-progress`.
NO_PROGRESS_ENV = "ZOOSTORE_NO_PROGRESS"


def _eta(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class TerminalProgress:
    """Progress on stderr like uv's and huggingface_hub's: the current task's name with a bar
    for all the work started so far (bytes done of bytes known, rate, ETA) and a count of tasks
    done, redrawn at most 10 times a second. Nothing when stderr is not a terminal (CI logs stay
    clean: commands print a one-line summary instead), with `quiet`, with `--no-progress` or with
    ZOOSTORE_NO_PROGRESS=1. Warnings (`note`) always go to stderr."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = (not quiet and self.stream.isatty() and os.environ.get("TERM") != "dumb"
                       and os.environ.get(NO_PROGRESS_ENV, "") in ("", "0"))
        self.enabled = enabled
        self.quiet = quiet
        self.tasks: dict[str, list[Any]] = {}
        # threading.Lock is _thread.allocate_lock; importing threading costs a no-op sync ~1 ms.
        self.lock = _thread.allocate_lock()
        self.last = 0.0
        self.notes: list[str] = []
        # Totals over every task started so far, finished ones included.
        self.started_at: float | None = None
        self.done_bytes = 0
        self.known_total = 0
        self.finished = 0
        self.count = 0

    @classmethod
    def for_args(cls, args: argparse.Namespace, *, quiet: bool = False) -> TerminalProgress:
        """Bars as a command's `-q`/`--no-progress`/`--json` options ask."""
        off = quiet or getattr(args, "quiet", False) or getattr(args, "json", False)
        return cls(quiet=off, enabled=False if getattr(args, "no_progress", False) else None)

    def start(self, task: str, total: int | None = None, *, unit: str = "B") -> None:
        with self.lock:
            if self.started_at is None:
                self.started_at = time.monotonic()
            self.tasks[task] = [0, total, unit, time.monotonic()]
            self.count += 1
            if unit == "B" and total:
                self.known_total += total
            self._draw(force=True)

    def advance(self, task: str, amount: int = 1) -> None:
        with self.lock:
            t = self.tasks.get(task)
            if t is None:
                return
            t[0] += amount
            if t[2] == "B":
                self.done_bytes += amount
            self._draw()

    def done(self, task: str) -> None:
        with self.lock:
            if self.tasks.pop(task, None) is not None:
                self.finished += 1
            self._draw(force=True)

    def note(self, message: str) -> None:
        if message in self.notes:  # said once is enough (publish-release plans N models on one store)
            return
        self.notes.append(message)
        with self.lock:
            self._clear()
            print(f"zoostore: warning: {message}", file=self.stream)
            self._draw(force=True)

    def _clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def line(self, now: float) -> str:
        """The status line (without terminal control characters)."""
        if not self.tasks:
            return ""
        name, (done, total, unit, _) = next(reversed(self.tasks.items()))
        elapsed = max(now - (self.started_at or now), 1e-6)
        head = ljust(tail(name, 40), 40)  # a file's name, possibly CJK: the bar stays in place
        head = f"[{self.finished}/{self.count}] {head}" if self.count > 1 else head
        if unit != "B":
            return f"{head} {done}/{total}" if total else f"{head} {done}"
        rate = self.done_bytes / elapsed
        total_bytes = max(self.known_total, self.done_bytes)
        if not total_bytes:
            return f"{head} {human_bytes(self.done_bytes)} {human_bytes(rate)}/s"
        frac = min(self.done_bytes / total_bytes, 1.0)
        width = 20
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        eta = f" ETA {_eta((total_bytes - self.done_bytes) / rate)}" if rate > 0 and frac < 1 else ""
        return (f"{head} [{bar}] {human_bytes(self.done_bytes)}/{human_bytes(total_bytes)} "
                f"{human_bytes(rate)}/s{eta}")

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        text = self.line(now)
        self.stream.write("\r\x1b[2K" + text[:120])
        self.stream.flush()


def _columns(char: str) -> int:
    """Terminal columns of one character: an East Asian wide or fullwidth one (Unicode UAX #11
    classes W and F: CJK) takes two, a combining mark none."""
    import unicodedata  # only for non-ASCII text

    return 0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1


def ljust(text: str, width: int) -> str:
    """`text` padded with spaces to `width` terminal columns, for columns of paths that may hold
    CJK names: `f"{text:40}"` counts code points, so a wide name pushed the next column right."""
    if text.isascii():
        return f"{text:{width}}"
    return text + " " * (width - sum(map(_columns, text)))


def tail(text: str, width: int) -> str:
    """The end of `text` that fits in `width` terminal columns (`text[-width:]` for ASCII)."""
    if text.isascii():
        return text[-width:]
    used, start = 0, len(text)
    while start > 0 and used + _columns(text[start - 1]) <= width:
        start -= 1
        used += _columns(text[start])
    return text[start:]


#: The version of every `--json` document (docs/json.md). A new key is a compatible change;
#: removing or retyping one bumps it.
JSON_SCHEMA = 1


def add_json(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as one JSON document on stdout (schema: docs/json.md); no bars")


def print_json(document: dict[str, Any]) -> None:
    """One `--json` document on stdout, `"schema"` first."""
    import json

    print(json.dumps({"schema": JSON_SCHEMA, **document}, indent=2, default=str))


def add_quiet(parser: argparse.ArgumentParser, *, what: str = "no progress bars, only errors and results") -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help=what)
    parser.add_argument("--no-progress", action="store_true",
                        help=f"no progress bars (also: {NO_PROGRESS_ENV}=1); summaries still print")
