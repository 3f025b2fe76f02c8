"""Terminal output shared by commands: progress bars on a TTY, silence otherwise."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any, TextIO

from zoostore.core.units import human_bytes

__all__ = ["TerminalProgress", "add_quiet", "human_bytes"]


class TerminalProgress:
    """Progress bars on stderr, redrawn at most 10 times a second; nothing when not a TTY
    (CI logs stay clean) or when `quiet`. Warnings (`note`) always go to stderr."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = not quiet and self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.quiet = quiet
        self.tasks: dict[str, list[Any]] = {}
        self.lock = threading.Lock()
        self.last = 0.0
        self.notes: list[str] = []

    def start(self, task: str, total: int | None = None, *, unit: str = "B") -> None:
        with self.lock:
            self.tasks[task] = [0, total, unit, time.monotonic()]
            self._draw(force=True)

    def advance(self, task: str, amount: int = 1) -> None:
        with self.lock:
            t = self.tasks.get(task)
            if t is None:
                return
            t[0] += amount
            self._draw()

    def done(self, task: str) -> None:
        with self.lock:
            self.tasks.pop(task, None)
            self._draw(force=True)

    def note(self, message: str) -> None:
        self.notes.append(message)
        with self.lock:
            self._clear()
            print(f"zoostore: warning: {message}", file=self.stream)

    def _clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        if not self.tasks:
            self._clear()
            return
        name, (done, total, unit, started) = next(reversed(self.tasks.items()))
        width = 24
        rate = done / max(now - started, 1e-6)
        if total:
            frac = min(done / total, 1.0)
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            amount = f"{human_bytes(done)}/{human_bytes(total)}" if unit == "B" else f"{done}/{total}"
            text = f"{name[:40]:40} [{bar}] {amount}"
        else:
            text = f"{name[:40]:40} {human_bytes(done) if unit == 'B' else done}"
        if unit == "B":
            text += f" {human_bytes(rate)}/s"
        self.stream.write("\r\x1b[2K" + text[: 120])
        self.stream.flush()


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only errors and results")
