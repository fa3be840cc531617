"""``oodml report``: results tables (and a split file) into a report folder."""

from __future__ import annotations

from pathlib import Path

import typer

from oodml_cli.options import out_path
from oodml_cli.ui import Bars, say

STAGES = 7


def report(
    results: list[Path] = typer.Argument(
        ..., help="Results tables (.parquet/.csv, or folders holding results.parquet) from "
        "`oodml evaluate` / `oodml fewshot`, all made with the same split file."),
    out: Path = typer.Option(..., "-o", "--out", help="Report folder to write, e.g. reports/NAME "
                             "(new, empty, or an earlier report's).",
                             parser=out_path("report folder")),
    splits: Path | None = typer.Option(
        None, "--splits", help="Split file the results were made with: adds the ladder plot, "
        "the starting split for Kendall tau and (with --root) the embedding view."),
    metrics: str | None = typer.Option(
        None, "--metrics", help="Comma-separated metrics to plot and tabulate "
        "(default: all in the results), e.g. recall@1,map@r,nmi."),
    rank_metric: str = typer.Option("recall@1", "--rank-metric",
                                    help="Metric that ranks methods in the rank table."),
    root: Path | None = typer.Option(
        None, "--root", help="Dataset root (folder or zip) for the embedding view's class means; "
        "needs --splits."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset loader name (default: the split file's dataset)."),
    cache: Path | None = typer.Option(
        None, "--cache", help="Feature cache folder (default: $OODML_CACHE or ~/.cache/oodml).",
        parser=out_path("feature cache")),
    weights: Path | None = typer.Option(None, "--weights",
                                        help="Extractor weights file, if not the default."),
    title: str | None = typer.Option(None, "--title", help="Page title of index.html."),
    rescored: Path | None = typer.Option(
        None, "--rescored", help="A table from `oodml splits rescore --out`: adds the agreement "
        "across extractors (with --measure: the tau matrix across measures x extractors)."),
    force: bool = typer.Option(
        False, "--force", help="Write into a non-empty folder that holds no earlier report "
        "(files of the report's names are replaced; files no report wrote are never removed)."),
) -> None:
    """Write progression/ladder/embedding plots, summary and rank tables, and index.html."""
    from oodml.report.build import build_report, check_report_folder
    from oodml.results import load_results
    from oodml.splits.splitfile import load_splitfile

    check_report_folder(out, force=force)
    sf = load_splitfile(splits) if splits is not None else None
    table = load_results(results, splitfile_sha256=sf.sha256 if sf is not None else None)
    agreement = _read_rescored(rescored) if rescored is not None else None
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    with Bars() as bars:
        means, skipped = _class_means(sf, root, dataset, cache, weights, bars)
        task = bars.task("report", total=STAGES)

        def step(what: str) -> None:
            task.update(description=what)
            task.advance()

        outputs = build_report(table, out, splitfile=sf, metrics=wanted,
                               rank_metric=rank_metric, class_means=means,
                               embedding_skipped=skipped, title=title, step=step,
                               rescored=agreement, force=force)
    for note in outputs.notes:
        say(f"note: {note}", err=True)
    say(f"wrote {len(outputs.files)} files; open {out / 'index.html'}", err=True)


def _read_rescored(path: Path):
    """A rescored table: one across measures (``rescore --measure``) or the two-column one."""
    from oodml.splits.agreement import is_agreement_csv, read_agreement
    from oodml.splits.rescore import read_rescore_csv

    return read_agreement(path) if is_agreement_csv(path) else read_rescore_csv(path)


def _class_means(sf, root, dataset, cache, weights, bars):
    """The embedding view's class means from the feature cache, or why the view is skipped."""
    from oodml.features.options import FeatureOptions
    from oodml.report.build import class_means_for
    from oodml_cli.features import load

    if root is None:
        why = "no dataset root given (pass --root to read class means from the feature cache)"
        return None, why if sf is not None else None
    if sf is None:
        return None, "--root given without --splits: the view needs the split file's classes"
    manifest = load(dataset or sf.dataset_name, root, False)
    sf.check_against(manifest)
    feats = FeatureOptions(extractor=sf.extractor, weights=str(weights) if weights else None,
                           cache_dir=str(cache) if cache else None)
    return class_means_for(sf, feats.get(manifest, bars)), None


def register(app: typer.Typer) -> None:
    app.command("report")(report)
