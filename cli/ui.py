"""Terminal output: rich progress bars behind the library's Progress protocol, and plain lines."""

from __future__ import annotations

import codecs
import io
import sys
import unicodedata

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

ASCII_FOR = {
    "\u00b7": ".", "\u00b1": "+/-", "\u2013": "-", "\u2014": "--", "\u2026": "...",
    "\u00d7": "x", "\u2192": "->", "\u2190": "<-", "\u2264": "<=", "\u2265": ">=",
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00b5": "u",
    "\u2022": "*", "\u2248": "~", "\u2212": "-",
}
"""ASCII stand-ins of the characters oodml's own messages and tables use."""
SAFE_PREFIX = "oodml-safe-"
_ERRORS = "oodml-ascii"


def _ascii_standin(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: each character the stream cannot encode becomes its ASCII stand-in
    (:data:`ASCII_FOR`), its letters without accents (é -> e), or '?'."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = []
    for ch in exc.object[exc.start : exc.end]:
        text = ASCII_FOR.get(ch)
        if text is None:
            text = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode() or "?"
        out.append(text)
    return "".join(out), exc.end


def _safe_codec(name: str) -> codecs.CodecInfo | None:
    """``oodml-safe-<encoding>``: that encoding, with :func:`_ascii_standin` for what it cannot
    encode. A codec of its own name (not just an ``errors`` setting) so click does not swap an
    ASCII stream for a UTF-8 one, and rich, seeing a non-UTF encoding, draws ASCII tables."""
    prefix = SAFE_PREFIX.replace("-", "_")
    if not name.startswith(prefix):
        return None
    base = codecs.lookup(name[len(prefix) :])

    def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
        return codecs.encode(text, base.name, _ERRORS), len(text)

    class Encoder(codecs.IncrementalEncoder):
        def encode(self, text: str, final: bool = False) -> bytes:
            return codecs.encode(text, base.name, _ERRORS)

    return codecs.CodecInfo(
        encode, base.decode, name=SAFE_PREFIX + base.name, incrementalencoder=Encoder,
        incrementaldecoder=base.incrementaldecoder,
    )


codecs.register_error(_ERRORS, _ascii_standin)
codecs.register(_safe_codec)


def ascii_safe_output() -> None:
    """Make stdout and stderr degrade to ASCII stand-ins when their encoding is not a Unicode
    one (``PYTHONIOENCODING=ascii``, a latin-1 locale): every line the CLI prints, through
    typer or rich, then reaches the stream instead of raising UnicodeEncodeError. Called once
    by the entry point."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "utf-8").lower()
        if not isinstance(stream, io.TextIOWrapper) or encoding.startswith(("utf", "oodml")):
            continue
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            continue
        if name.startswith("utf"):
            continue
        stream.flush()
        stream.reconfigure(encoding=SAFE_PREFIX + name)


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
