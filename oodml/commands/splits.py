"""CLI: ``oodml splits`` generates, shows, verifies, plots, imports and exports split ladders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from oodml.commands.common import EXTRACT_DEVICE, SKIP_BAD, report_skipped
from oodml.errors import ConfigError, SplitFileError
from oodml.fileio import check_writable

splits_app = typer.Typer(
    name="splits",
    help="Difficulty-graded train/test class split ladders and their split files.",
    no_args_is_help=True,
)

CACHE_HELP = "Feature cache folder (default: $OODML_CACHE or ~/.cache/oodml)."


def parse_targets(text: str | None) -> list[float] | None:
    """'20,40,80' -> [20.0, 40.0, 80.0]."""
    if not text:
        return None
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        msg = f"--targets {text!r} must be comma-separated numbers, e.g. 20,40,80"
        raise ConfigError(msg) from None


def parse_shots(text: str) -> list[int]:
    """'2,5,10' -> [2, 5, 10]."""
    try:
        shots = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        msg = f"--shots {text!r} must be comma-separated integers, e.g. 2,5,10"
        raise ConfigError(msg) from None
    if not shots or min(shots) < 1:
        raise ConfigError(f"--shots {text!r} must list positive integers, e.g. 2,5,10")
    return shots


def parse_params(items: list[str]) -> dict[str, Any]:
    """['swaps_per_iter=2', 'history=5'] -> {'swaps_per_iter': 2, 'history': 5} (JSON values)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r} must look like NAME=VALUE, e.g. history=5")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def ladder_table(sf: Any) -> Table:
    """id, distance, class counts and the start marker of every split."""
    fp = (sf.dataset_fingerprint or "unknown")[:12]
    table = Table(
        title=f"{sf.dataset_name} ({fp}) · {sf.extractor} · {sf.distance_mode} · {sf.procedure}",
        caption=f"split file sha256 {sf.sha256[:16]}...",
    )
    for name in ("id", "distance", "#train", "#test", "#removed", "#val", "start"):
        table.add_column(name, justify="left" if name == "start" else "right")
    for s in sf.ladder:
        table.add_row(
            str(s.id),
            f"{s.distance:.4f}",
            str(len(s.train)),
            str(len(s.test)),
            str(len(s.removed)),
            str(len(s.val)),
            "start" if s.is_start else "",
        )
    return table


def _features(manifest: Any, extractor: str, cache: Path | None, device: str, weights: Any) -> Any:
    from oodml.features import get_features

    return get_features(
        manifest, extractor, cache_dir=cache, device=device, weights=weights, progress=True
    )


@splits_app.command("generate")
def generate(
    dataset: str = typer.Argument(..., help="Dataset name (e.g. omniglot, cub200, cars196, sop)."),
    root: Path = typer.Option(..., "--root", help="Dataset root folder or zip archive."),
    output: Path = typer.Option(..., "-o", "--output", help="Split file to write (JSON)."),
    extractor: str = typer.Option("efficientnet-lite0", "--extractor", help="Feature extractor."),
    mode: str = typer.Option("class-means", "--mode", help="Distance: class-means or samples."),
    procedure: str = typer.Option("greedy", "--procedure", help="Ladder walk: greedy or oodml."),
    levels: int = typer.Option(8, "--levels", help="Number of ladder splits K."),
    targets: str | None = typer.Option(
        None, "--targets", help="Pick the splits nearest these distances, e.g. 20,40,80."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed: random start split and sub-splits."),
    start: str = typer.Option(
        "auto", "--start", help="Start split: auto (default if any), default or random."
    ),
    param: list[str] = typer.Option(
        [], "--param", help="Procedure parameter NAME=VALUE (repeatable), e.g. history=5."
    ),
    val_fraction: float = typer.Option(
        0.25, "--val-fraction", help="Share of train classes in the validation sub-split."
    ),
    shots: str = typer.Option("2,5,10", "--shots", help="Few-shot support sizes."),
    episodes: int = typer.Option(10, "--episodes", help="Few-shot episodes per shot count."),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    device: str = EXTRACT_DEVICE,
    weights: Path | None = typer.Option(None, "--weights", help="Extractor weights file."),
    skip_bad: bool = SKIP_BAD,
) -> None:
    """Walk a ladder of ever harder train/test splits of DATASET and write its split file."""
    from rich.progress import Progress

    from oodml.data import load_dataset
    from oodml.splits.generate import generate_splitfile
    from oodml.splits.splitfile import save_splitfile

    check_writable(output, "split file")
    manifest = load_dataset(dataset, root, skip_bad=skip_bad)
    report_skipped(manifest)
    fs = _features(manifest, extractor, cache, device, weights)
    console = Console()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"{procedure} walk ({mode})", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        sf = generate_splitfile(
            manifest,
            fs,
            mode=mode,
            procedure=procedure,
            levels=levels,
            targets=parse_targets(targets),
            seed=seed,
            params=parse_params(param),
            val_fraction=val_fraction,
            shots=parse_shots(shots),
            episodes=episodes,
            start=start,
            progress=tick,
        )
    save_splitfile(sf, output)
    console.print(ladder_table(sf))
    console.print(f"wrote {output}", highlight=False)


@splits_app.command("show")
def show(path: Path = typer.Argument(..., help="Split file (JSON).")) -> None:
    """Print the ladder of a split file as a table."""
    from oodml.splits.splitfile import load_splitfile

    Console().print(ladder_table(load_splitfile(path)))


@splits_app.command("verify")
def verify(
    path: Path = typer.Argument(..., help="Split file (JSON)."),
    root: Path = typer.Option(..., "--root", help="Dataset root folder or zip archive."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset name (default: the one in the split file)."
    ),
    distances: bool = typer.Option(
        True, "--distances/--no-distances", help="Recompute distances from features."
    ),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    device: str = EXTRACT_DEVICE,
    weights: Path | None = typer.Option(None, "--weights", help="Extractor weights file."),
    skip_bad: bool = SKIP_BAD,
) -> None:
    """Check a split file against the dataset at --root; list every problem, exit 1 if any."""
    from oodml.data import load_dataset
    from oodml.splits.splitfile import load_splitfile
    from oodml.splits.splitfile import verify as verify_splitfile

    first: list[str] = []
    try:
        sf = load_splitfile(path)
    except SplitFileError as exc:
        if "checksum mismatch" not in str(exc):
            raise
        first.append(str(exc))
        sf = load_splitfile(path, check_sha=False)
    manifest = load_dataset(dataset or sf.dataset_name, root, skip_bad=skip_bad)
    report_skipped(manifest)
    console = Console()
    features = None
    if distances and sf.extractor == "unknown":
        console.print("extractor unknown (imported file): distances not checked")
    elif distances:
        features = _features(manifest, sf.extractor, cache, device, weights)
    problems = first + verify_splitfile(sf, manifest, features)
    for problem in problems:
        console.print(f"[red]problem:[/red] {problem}", highlight=False, soft_wrap=True)
    if problems:
        console.print(f"{path}: {len(problems)} problem(s)", highlight=False)
        raise typer.Exit(1)
    console.print(f"{path}: OK ({len(sf.ladder)} splits)", highlight=False)


@splits_app.command("import-oodml")
def import_oodml(
    pickle_path: Path = typer.Argument(..., help="ooDML study split pickle (.pkl)."),
    output: Path = typer.Option(..., "-o", "--output", help="Split file to write (JSON)."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset name, to fill the fingerprint (needs --root)."
    ),
    root: Path | None = typer.Option(None, "--root", help="Dataset root folder or zip archive."),
) -> None:
    """Convert a published ooDML split pickle (loaded safely, no code runs) to a split file."""
    from oodml.data import load_dataset
    from oodml.splits.oodml_pickle import import_oodml as do_import
    from oodml.splits.splitfile import save_splitfile

    if (dataset is None) != (root is None):
        raise ConfigError("--dataset and --root go together; pass both or neither")
    manifest = load_dataset(dataset, root) if dataset and root else None
    sf = do_import(pickle_path, dataset_name=dataset, manifest=manifest)
    save_splitfile(sf, output)
    console = Console()
    console.print(ladder_table(sf))
    console.print(f"wrote {output}", highlight=False)


@splits_app.command("export-oodml")
def export_oodml(
    path: Path = typer.Argument(..., help="Split file (JSON)."),
    output: Path = typer.Option(..., "-o", "--output", help="Pickle to write (.pkl)."),
    basenames: bool = typer.Option(
        False, "--basenames", help="Bare image file names instead of paths in the episodes."
    ),
) -> None:
    """Write a split file in the ooDML study's pickle layout."""
    from oodml.splits.oodml_pickle import export_oodml as do_export
    from oodml.splits.splitfile import load_splitfile

    do_export(load_splitfile(path), output, basenames=basenames)
    typer.echo(f"wrote {output}")


@splits_app.command("plot")
def plot(
    path: Path = typer.Argument(..., help="Split file (JSON)."),
    output: Path = typer.Option(..., "-o", "--output", help="PNG to write."),
    pdf: bool = typer.Option(False, "--pdf", help="Also write a PDF beside the PNG."),
) -> None:
    """Plot distance per ladder split and the train/test/removed class counts."""
    from oodml.splits.plot import plot_ladder, save_figure
    from oodml.splits.splitfile import load_splitfile

    for written in save_figure(plot_ladder(load_splitfile(path)), output, pdf=pdf):
        typer.echo(f"wrote {written}")


def register(app: typer.Typer) -> None:
    """Add the ``splits`` command group to the main app."""
    app.add_typer(splits_app, name="splits")
