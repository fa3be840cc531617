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

from oodml.progress import format_duration


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


LOG_AFTER_S = 10.0


class _Task:
    def __init__(self, bars: Progress, task_id, log: bool = False, start: float = 0) -> None:
        self._bars, self._id = bars, task_id
        self._log, self._tenth, self._start = log, 0, start

    def advance(self, n: int = 1) -> None:
        self._bars.advance(self._id, n)
        self._line()

    def update(self, *, description=None, completed=None, total=None) -> None:
        kwargs = {k: v for k, v in (("description", description), ("completed", completed),
                                    ("total", total)) if v is not None}
        self._bars.update(self._id, **kwargs)
        self._line()

    def _line(self) -> None:
        """Off a terminal (a log file, CI) no bar is drawn: a line per tenth of the total
        instead, with the time so far and the remaining time it implies, once the task has run
        ``LOG_AFTER_S`` (quick work stays quiet)."""
        if not self._log:
            return
        task = next((t for t in self._bars.tasks if t.id == self._id), None)
        if task is None or not task.total:
            return
        if task.completed < self._start:  # the task was reset: start over
            self._start, self._tenth = task.completed, 0
        tenth = min(10, int(10 * task.completed / task.total))
        spent, done_here = task.elapsed or 0.0, task.completed - self._start
        if tenth <= self._tenth or spent < LOG_AFTER_S or done_here <= 0:
            return
        self._tenth = tenth
        left = spent * max(0.0, task.total - task.completed) / done_here
        typer.echo(f"{task.description}: {task.completed:g}/{task.total:g} after "
                   f"{format_duration(spent)}, about {format_duration(left)} left", err=True)

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
        task_id = self._bars.add_task(description, total=total, completed=completed)
        return _Task(self._bars, task_id, log=self._bars.disable, start=completed)

    def log(self, line: str) -> None:
        self.console.print(Text(line), soft_wrap=True)
