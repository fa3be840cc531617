"""The ``oodml`` command line (installed as the package ``oodml_cli``).

Only typer and printing live here: each command parses its options, builds one typed config
of the library, calls the library and prints. Every command group is imported statically
below. :func:`main` is the single place that turns errors into one line: an
:class:`oodml.errors.OodmlError` prints its message (exit 2), anything unexpected prints its
type and first line with a hint to rerun with ``--debug`` (exit 1), which shows the traceback.
"""

from __future__ import annotations

import errno
import os
import resource
import sys
import warnings

import typer

from oodml import __version__
from oodml.errors import OodmlError, first_line
from oodml.hub import set_default_progress
from oodml_cli import evaluate, features, fid, report, splits, sweep, weights
from oodml_cli.options import rewrite_aliases
from oodml_cli.ui import ascii_safe_output, download_bar

app = typer.Typer(
    name="oodml",
    help="Difficulty-graded out-of-distribution split ladders for deep metric learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
COMMANDS = ("features", "fid", "splits", "evaluate", "fewshot", "losses", "report", "sweep",
            "weights", "datasets")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"oodml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show the Python traceback of an error (also: OODML_DEBUG=1)."
    ),
    offline: bool = typer.Option(
        False, "--offline", help="Never download weights (also OODML_OFFLINE=1); a missing "
        "file is an error naming where to put it."),
) -> None:
    """Difficulty-graded out-of-distribution split ladders for deep metric learning."""
    if offline:
        os.environ["OODML_OFFLINE"] = "1"  # inherited by decoding workers and subprocesses


features.register(app)
fid.register(app)
app.add_typer(splits.app, name="splits")
evaluate.register(app)
report.register(app)
sweep.register(app)
weights.register(app)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> None:
    """Entry point: errors become one line on stderr, never a traceback unless ``--debug``."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("OODML_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    args, notes = rewrite_aliases(args)
    ascii_safe_output()
    set_default_progress(download_bar)
    if not debug:
        warnings.showwarning = _warning_line
    for note in notes:
        typer.echo(note, err=True)
    try:
        code = app(args=args, standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool) and code:
            sys.exit(code)  # typer.Exit(n) comes back as a return value here
    except SystemExit:
        raise
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except OodmlError as exc:
        if debug:
            raise
        typer.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(2)
    except Exception as exc:
        if _out_of_file_descriptors(exc) and not debug:
            typer.echo(f"error: {_fd_limit_line()}", err=True)
            sys.unraisablehook = _quiet  # half-built objects (a DataLoader) fail to clean up
            sys.exit(2)
        if isinstance(exc, USAGE_ERRORS):
            if debug:
                exc.show()
            elif exc.format_message().strip():  # empty: the help was printed instead
                typer.echo(f"error: {_usage_line(exc)}", err=True)
            sys.exit(exc.exit_code)
        if debug:
            raise
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {_one_line(first_line(exc))[:300]} "
            "(rerun with --debug for the traceback)",
            err=True,
        )
        sys.exit(1)


def _out_of_file_descriptors(exc: BaseException) -> bool:
    """Whether ``exc`` or an error it wraps (a DataLoader's, an import's) is EMFILE/ENFILE."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            return True
        if "Too many open files" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _quiet(unraisable: object) -> None:
    """``sys.unraisablehook`` once the error is reported: no 'Exception ignored in' tracebacks
    from destructors that cannot run without file descriptors."""


def _fd_limit_line() -> str:
    """The one line for running out of file descriptors: the limit and how to raise it (built
    without opening a file: nothing can be opened now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    return (
        f"too many open files: this process may have {limit} open at once (ulimit -n); raise "
        "the limit, e.g. `ulimit -n 4096`, or use fewer --num-workers"
    )


def _usage_line(exc: Exception) -> str:
    """click's usage error as one line, pointing at the command's --help."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return _one_line(exc.format_message()) + hint  # type: ignore[attr-defined]


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A library warning as one 'warning:' line on stderr (no source line, no location)."""
    typer.echo(f"warning: {_one_line(str(message))}", err=True)


def _usage_errors() -> tuple[type[Exception], ...]:
    """click's usage-error class, and the one of the click copy that newer typers bundle
    (imported when the CLI loads: an error handler that imports can fail itself, e.g. with no
    file descriptor left)."""
    import click

    kinds: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException
    except ImportError:
        pass
    else:
        kinds.append(TyperClickException)
    return tuple(kinds)


USAGE_ERRORS = _usage_errors()
