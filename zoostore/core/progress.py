"""How core operations report progress: a tiny protocol, implemented by the CLI's bars.

Core code never prints. It calls `progress.start(task, total)`, `advance(task, n)` and
`done(task)`; `NullProgress` ignores everything, and `note` carries warnings to the user.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, task: str, total: int | None = None, *, unit: str = "B") -> None: ...
    def advance(self, task: str, amount: int = 1) -> None: ...
    def done(self, task: str) -> None: ...
    def note(self, message: str) -> None: ...


class NullProgress:
    """Progress that goes nowhere; warnings are kept so callers and tests can read them."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def start(self, task: str, total: int | None = None, *, unit: str = "B") -> None:
        pass

    def advance(self, task: str, amount: int = 1) -> None:
        pass

    def done(self, task: str) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)
