"""Progress reporting without a UI library: the library reports, the CLI draws.

Long work (feature extraction, ladder walks, training epochs, few-shot episodes, sweeps) takes
an optional :class:`Progress`. The CLI passes one backed by rich progress bars; the Python API
passes nothing (:data:`NO_PROGRESS`) or its own object with the same two methods.
"""

from __future__ import annotations

from typing import Protocol


class Task(Protocol):
    """One bar: ``advance`` by finished units, ``update`` its text or totals, ``close`` it."""

    def advance(self, n: int = 1) -> None: ...

    def update(
        self,
        *,
        description: str | None = None,
        completed: int | None = None,
        total: int | None = None,
    ) -> None: ...

    def close(self) -> None: ...


class Progress(Protocol):
    """Opens bars (``total=None``: unknown) and prints a line above them."""

    def task(self, description: str, total: int | None = None, completed: int = 0) -> Task: ...

    def log(self, line: str) -> None: ...


class _NullTask:
    def advance(self, n: int = 1) -> None:
        return None

    def update(
        self,
        *,
        description: str | None = None,
        completed: int | None = None,
        total: int | None = None,
    ) -> None:
        return None

    def close(self) -> None:
        return None


class NullProgress:
    """Reports nothing (the default of every library call)."""

    def task(self, description: str, total: int | None = None, completed: int = 0) -> Task:
        return _NullTask()

    def log(self, line: str) -> None:
        return None


NO_PROGRESS: Progress = NullProgress()


def tick_callback(progress: Progress, description: str):
    """A ``tick(done, total)`` callback (the form ladder walks report in) drawn as one bar."""
    task = progress.task(description, None)

    def tick(done: int, total: int) -> None:
        task.update(completed=done, total=total)

    return tick, task


def format_duration(seconds: float) -> str:
    """Seconds as ``1h02m`` (an hour or more) or ``3m07s``, for ETAs in progress lines."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"
