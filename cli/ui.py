"""Terminal output: rich progress bars behind the library's Progress protocol, and plain lines."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


def download_bar(done: int, total: int | None) -> None:
    """A weights download's progress on stderr: one updating line on a terminal, a line per
    10% (and the end) otherwise."""
    mb = done / 2**20
    text = f"downloading weights: {mb:.1f} MB" + (f" of {total / 2**20:.1f} MB" if total else "")
    if sys.stderr.isatty():
        sys.stderr.write("\r" + text + ("\n" if total and done >= total else ""))
        sys.stderr.flush()
    elif total and (done >= total or int(10 * done / total) != int(10 * (done - 1) / total)):
        typer.echo(text, err=True)


def say(line: str, *, err: bool = False) -> None:
    """One plain line (no markup: a message may hold ``[train]`` or ``[[methods]]``)."""
    typer.echo(line, err=err)


class _Task:
    def __init__(self, bars: Progress, task_id) -> None:
        self._bars, self._id = bars, task_id

    def advance(self, n: int = 1) -> None:
        self._bars.advance(self._id, n)

    def update(self, *, description=None, completed=None, total=None) -> None:
        kwargs = {k: v for k, v in (("description", description), ("completed", completed),
                                    ("total", total)) if v is not None}
        self._bars.update(self._id, **kwargs)

    def close(self) -> None:
        self._bars.remove_task(self._id)


class Bars:
    """The library's :class:`oodml.progress.Progress` drawn as rich bars on stderr (with an
    ETA); ``with Bars() as progress: library_call(..., progress=progress)``."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._bars = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not sys.stderr.isatty(),
        )

    def __enter__(self) -> Bars:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def task(self, description: str, total: int | None = None, completed: int = 0) -> _Task:
        return _Task(self._bars, self._bars.add_task(description, total=total, completed=completed))

    def log(self, line: str) -> None:
        self.console.print(Text(line), soft_wrap=True)
