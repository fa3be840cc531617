"""``oodml weights`` and ``oodml datasets``: what oodml can load, and whether a copy matches."""

from __future__ import annotations

from pathlib import Path

import typer

from oodml_cli.ui import say

datasets_app = typer.Typer(
    name="datasets", help="Published facts of the datasets, and checks of a local copy.",
    no_args_is_help=True,
)


def weights(
    backbone: list[str] = typer.Option(
        [], "--backbone", help="Also list this torchvision backbone (repeatable)."),
    no_hash: bool = typer.Option(False, "--no-hash", help="Skip hashing present files."),
    cache: Path | None = typer.Option(None, "--cache", help="Feature cache folder (converted "
                                      "Inception weights live under it)."),
) -> None:
    """List each extractor/backbone's weights: source, present, sha256 (* = used by default)."""
    from oodml.features.weights import list_weights

    for e in list_weights(backbone, cache_dir=cache, hash_files=not no_hash):
        mark = "*" if e.default else " "
        say(f"{mark} {e.name} ({e.kind}): {'present' if e.present else 'missing'}, sha256 "
            f"{e.sha256 or '-'}")
        say(f"    source: {e.source}")
        say(f"    path:   {e.path or '-'}")
        if e.note:
            say(f"    note:   {e.note}")


@datasets_app.command("info")
def info(name: str | None = typer.Argument(None, help="Dataset (default: list them).")) -> None:
    """Where a dataset is published and the layout oodml expects."""
    from oodml.data.check import dataset_names, info_lines

    for line in info_lines(name) if name else dataset_names():
        say(line)


@datasets_app.command("check")
def check(
    name: str = typer.Argument(..., help="Dataset (see `oodml datasets info`); `omniglot` "
                               "recognises which published archive the copy is."),
    root: Path = typer.Option(..., "--root", help="Dataset root folder or zip archive."),
) -> None:
    """Compare a dataset copy with the published class and image counts (exit 1 if it
    differs)."""
    from oodml.data.check import check_dataset

    report = check_dataset(name, root)
    if report.observed:
        say(", ".join(f"{k}: {v}" for k, v in report.observed.items()))
    for problem in report.problems:
        say(f"problem: {problem}")
    for note in report.notes:
        say(f"note: {note}")
    if not report.ok:
        raise typer.Exit(1)
    say(f"{root}: matches the published facts of {report.name}")


def register(app: typer.Typer) -> None:
    app.command("weights")(weights)
    app.add_typer(datasets_app, name="datasets")
