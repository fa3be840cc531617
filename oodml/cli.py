"""The ``oodml`` command line: one typer app, each command group in ``oodml/commands/``."""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from oodml import __version__
from oodml.errors import OodmlError

COMMAND_MODULES = ("features", "fid", "splits", "evaluate", "report", "sweep")

app = typer.Typer(
    name="oodml",
    help="Difficulty-graded out-of-distribution split ladders for deep metric learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"oodml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Difficulty-graded out-of-distribution split ladders for deep metric learning."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"oodml.commands.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one red line and exit code 2, never a traceback."""
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool) and code:
            sys.exit(code)  # typer.Exit(n) comes back as a return value here
    except OodmlError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here with standalone_mode=False
        if isinstance(exc, _usage_errors()):
            exc.show()
            sys.exit(exc.exit_code)
        raise


def _usage_errors() -> tuple[type[Exception], ...]:
    """click's usage-error class, and the one of the click copy that newer typers bundle."""
    import click

    kinds: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException
    except ImportError:
        pass
    else:
        kinds.append(TyperClickException)
    return tuple(kinds)


if __name__ == "__main__":
    main()
