"""``oodml splits``: generate, show, verify, plot, import and export split ladders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from oodml.config import field_help
from oodml.features.options import FeatureOptions
from oodml.fileio import STDOUT, check_writable
from oodml.splits.generate import LadderConfig
from oodml_cli.features import FEATURE_PARAMS, load
from oodml_cli.options import (
    SKIP_BAD,
    argument,
    build,
    field_params,
    option,
    out_file,
    out_path,
    with_params,
)
from oodml_cli.ui import Bars, say

app = typer.Typer(
    name="splits",
    help="Difficulty-graded train/test class split ladders and their split files.",
    no_args_is_help=True,
)
SPLITFILE = argument("path", Path, "Split file (JSON).")
SKIP = option("skip_bad", bool, False, "--skip-bad", help=SKIP_BAD.help)
FORCE_HELP = "Replace the split file if it exists."
FORCE = option("force", bool, False, "--force", help=FORCE_HELP)
EXTRACT = [p for p in FEATURE_PARAMS if p.name != "extractor"]


def ladder_table(sf: Any) -> Table:
    """id, distance, class counts and the start marker of every split."""
    fp = (sf.dataset_fingerprint or "unknown")[:12]
    table = Table(
        title=f"{sf.dataset_name} ({fp}) · {sf.extractor} · {sf.distance_mode} · {sf.procedure}",
        caption=f"split file sha256 {sf.sha256[:16]}...",
    )
    from oodml.splits.semantic import semantic_columns

    paired = any(s.vs_previous is not None for s in sf.ladder)
    sem = semantic_columns(sf)
    sem_names = {"unseen_share": "unseen", "tree_distance": "tree d."}
    names = ["id", "distance", "95% CI"] + (["Δ vs previous [95% CI]"] if paired else [])
    names += [sem_names[k] for k in sem]
    for name in (*names, "#tr/te/rm", "#val", "start"):
        table.add_column(name, justify="left" if name == "start" else "right",
                         min_width={"distance": 9, "start": 5}.get(name))
    for s in sf.ladder:
        ci = f"[{s.distance_ci[0]:.2f}, {s.distance_ci[1]:.2f}]" if s.distance_ci else "-"
        v = s.vs_previous
        delta = [f"{v.diff:+.2f} [{v.low:.2f}, {v.high:.2f}]" if v else "-"] if paired else []
        shift = [f"{(s.semantic or {})[k]:.3f}" if k in (s.semantic or {}) else "-"
                 for k in sem]
        table.add_row(str(s.id), f"{s.distance:.4f}", ci, *delta, *shift,
                      f"{len(s.train)}/{len(s.test)}/{len(s.removed)}", str(len(s.val)),
                      "start" if s.is_start else "")
    return table


def ladder_notes(sf: Any) -> list[str]:
    """What the intervals mean, and the paired test's statement over the adjacent pairs."""
    from oodml.splits.paired import ladder_test

    out = []
    if any(s.distance_ci is not None for s in sf.ladder):
        out.append("95% CI: each split's own distance with its classes resampled; adjacent "
                   "splits share most classes, so overlapping CIs do not make their order "
                   "uncertain (Δ is the paired test)")
    test = ladder_test(sf)
    if test is not None:
        out.append(test.statement(sf.uncertainty.get("paired_bootstraps")))
    if sf.hierarchy is not None:
        h = sf.hierarchy
        deeper = (", tree d.: mean tree distance from a test class to the nearest train class"
                  if h.get("levels", 1) > 1 else "")
        out.append(f"semantic shift measured with {h.get('source')} ({h.get('superclasses')} "
                   f"superclasses, {h.get('levels')} level(s)): unseen = the share of test "
                   f"classes whose superclass has no class in train{deeper}")
    if sf.procedure == "hierarchy":
        tests = {s.test for s in sf.ladder}
        fixed = (f"the same {len(sf.ladder[0].test)} test classes at every level"
                 if len(tests) == 1 else "test classes differ between levels (the hierarchy "
                 "does not allow fixing them)")
        out.append(f"hierarchy ladder ordered by semantic shift, not distance; {fixed}; the "
                   f"hierarchy supports {sf.selection.get('supported_levels')} distinct levels")
    if sf.procedure == "ssb":
        out.append("Semantic Shift Benchmark split: known classes train, levels ordered Easy, "
                   f"Medium, Hard by the benchmark ({sf.params.get('file')}), not by distance")
    if sf.selection.get("separation") is not None:
        out.append(f"levels picked for separation {sf.selection['separation']:g}: the walk "
                   f"supports {sf.selection.get('supported_levels')} such levels")
    return out


def show_table(sf: Any) -> None:
    Console(markup=False).print(ladder_table(sf))
    for note in ladder_notes(sf):
        say(f"note: {note}")


LADDER_FIELDS = [
    "mode", "procedure", "levels", "targets", "seed", "start", "val_fraction", "shots",
    "episodes", "removal", "bootstrap", "measure", "train_size", "separation",
    "paired", "semantic",
]  # fmt: skip
HIERARCHY = option("hierarchy", Path | None, None, "--hierarchy", help="Class hierarchy CSV: "
                   "rows class,superclass[,deeper levels] (optional header row 'class,...'); "
                   "replaces the dataset's own superclasses (Omniglot alphabets, SOP "
                   "super-categories, CARS196 makes; CUB200 has none).")


@app.command("generate")
@with_params(
    [argument("dataset", str, "Dataset name (e.g. omniglot, cub200, cars196, sop).")],
    [option("root", Path, ..., "--root", help="Dataset root folder or zip archive."),
     out_file("Split file to write (JSON).", "split file"),
     *field_params(FeatureOptions, ["extractor"]),
     *field_params(LadderConfig, LADDER_FIELDS[:6]),
     option("param", list[str], [], "--param", help=field_help(LadderConfig, "params")),
     *field_params(LadderConfig, LADDER_FIELDS[6:]),
     HIERARCHY, FORCE, SKIP],
    EXTRACT,
)
def generate(**o) -> None:
    """Walk a ladder of ever harder train/test splits of DATASET and write its split file."""
    from oodml.splits.generate import check_generation_cost, generate_splitfile
    from oodml.splits.splitfile import save_splitfile

    config = build(LadderConfig, o, params=_params(o))
    feats = build(FeatureOptions, o)
    check_writable(o["out"], "split file", replace=o["force"])
    manifest = load(o["dataset"], o["root"], o["skip_bad"])
    hierarchy = None
    if o["hierarchy"] is not None:
        from oodml.data.hierarchy import read_hierarchy

        hierarchy = read_hierarchy(o["hierarchy"], manifest.classes)
    check_generation_cost(manifest, config)
    with Bars() as bars:
        fs = feats.get(manifest, bars)
        sf = generate_splitfile(manifest, fs, config, progress=bars, hierarchy=hierarchy)
    save_splitfile(sf, o["out"])
    show_table(sf)
    _generate_notes(sf, fs, config)
    say(f"wrote {o['out']}")


def _generate_notes(sf: Any, fs: Any, config: Any) -> None:
    """Warnings about sides too small for the measure, and a short ladder's note."""
    from oodml.splits.generate import size_warnings
    from oodml.stats.class_stats import ClassStats

    for w in size_warnings(sf, ClassStats.from_features(fs.features, fs.labels)):
        say(f"warning: {w}")
    if config.targets is None and config.levels and len(sf.ladder) < config.levels:
        say(f"note: {config.levels} levels asked for, but the walk has only {len(sf.ladder)} "
            "distinct splits; all of them are in the file")


def _params(o: dict[str, Any]) -> dict[str, Any]:
    from oodml.config import parse_kv_items

    return parse_kv_items(o.pop("param"), "--param")


@app.command("show")
def show(path: Path = typer.Argument(..., help="Split file (JSON).")) -> None:
    """Print the ladder of a split file as a table."""
    from oodml.splits.splitfile import load_splitfile

    show_table(load_splitfile(path))


@app.command("verify")
@with_params(
    [SPLITFILE],
    [option("root", Path, ..., "--root", help="Dataset root folder or zip archive."),
     option("dataset", str | None, None, "--dataset",
            help="Dataset name (default: the one in the split file)."),
     option("distances", bool, True, "--distances/--no-distances",
            help="Recompute distances from features."),
     SKIP],
    EXTRACT,
)
def verify(**o) -> None:
    """Check a split file against the dataset at --root; list every problem (checksum and
    structural ones included), exit 1 if any."""
    from dataclasses import replace

    from oodml.splits.splitfile import load_for_verify
    from oodml.splits.splitfile import verify as verify_splitfile

    path = o["path"]
    feats = build(FeatureOptions, o)
    sf, first = load_for_verify(path)
    manifest = load(o["dataset"] or sf.dataset_name, o["root"], o["skip_bad"])
    features = None
    if o["distances"] and sf.extractor == "unknown":
        say("extractor unknown (imported file): distances not checked")
    elif o["distances"]:
        with Bars() as bars:
            features = replace(feats, extractor=sf.extractor, amp=sf.precision == "fp16",
                               precision="bf16" if sf.precision == "bf16" else "fp32",
                               ).get(manifest, bars)
    problems = list(dict.fromkeys(first + verify_splitfile(sf, manifest, features)))
    for problem in problems:
        say(f"problem: {problem}")
    if problems:
        say(f"{path}: {len(problems)} problem(s)")
        raise typer.Exit(1)
    for note in ladder_notes(sf):
        say(f"note: {note}")
    say(f"{path}: OK ({len(sf.ladder)} splits)")


@app.command("rescore")
@with_params(
    [SPLITFILE],
    [option("root", Path, ..., "--root", help="Dataset root folder or zip archive."),
     option("dataset", str | None, None, "--dataset",
            help="Dataset name (default: the one in the split file)."),
     option("mode", str | None, None, "--mode",
            help="Distance mode to rescore with (default: the split file's)."),
     option("csv", Path | None, None, "-o", "--out", help="Write the rescored table (CSV; - "
            "for standard output, the table then goes to standard error; with --measure also "
            "its tau matrix as NAME.tau.csv).",
            parser=out_path("rescored table")),
     option("force", bool, False, "--force", help="Replace the CSV if it exists."),
     option("measure", str | None, None, "--measure", help="Measures to rescore with, e.g. "
            "kid,fid-inf,w2-classes (frechet, kid, fid-inf, w2-classes): every split under "
            "every measure x extractor (--extractor takes a list then), the Kendall tau matrix "
            "with bootstrap intervals and a one-line verdict."),
     option("bootstrap", int, 100, "--bootstrap", help="With --measure: class-bootstrap "
            "replicates for each tau's 95% interval (0: none)."),
     SKIP],
    FEATURE_PARAMS,
)
def rescore(**o) -> None:
    """Recompute every split's distance with another extractor or mode; print both columns,
    Kendall tau and Spearman rho between the orderings, and which adjacent levels swap.
    With --measure: every split under every measure x extractor and whether they agree."""
    from oodml.splits.rescore import rescore as do_rescore
    from oodml.splits.rescore import rescore_csv, rescore_rows, write_rescore_csv
    from oodml.splits.splitfile import load_splitfile
    from oodml.stats.class_stats import ClassStats

    if o["measure"] is not None or "," in (o["extractor"] or ""):
        return _rescore_measures(o)
    feats = build(FeatureOptions, o)
    if o["csv"] is not None:
        check_writable(o["csv"], "rescored table", replace=o["force"], stdout=True)
    to_stdout = o["csv"] is not None and str(o["csv"]) == STDOUT
    sf = load_splitfile(o["path"])
    manifest = load(o["dataset"] or sf.dataset_name, o["root"], o["skip_bad"])
    sf.check_against(manifest)
    with Bars() as bars:
        fs = feats.get(manifest, bars)
    result = do_rescore(sf, ClassStats.from_features(fs.features, fs.labels),
                        extractor=_feature_label(fs), mode=o["mode"])
    rows = rescore_rows(result)
    table = Table(title=f"{o['path']}: {sf.extractor}/{sf.distance_mode} vs "
                  f"{result.rescored_extractor}/{result.rescored_mode}")
    for name in ("split_id", "n_train", "n_test", "distance", "rescored_distance"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(str(r["split_id"]), str(r["n_train"]), str(r["n_test"]),
                      f"{r['distance']:.4f}", f"{r['rescored_distance']:.4f}")
    Console(markup=False, stderr=to_stdout).print(table)
    say(result.summary(), err=to_stdout)
    if to_stdout:
        typer.echo(rescore_csv(result), nl=False)
    elif o["csv"] is not None:
        say(f"wrote {write_rescore_csv(result, o['csv'])}")


def _feature_label(fs: Any) -> str:
    """The extractor's name, with the precision when the features are not fp32."""
    return fs.extractor if fs.precision == "fp32" else f"{fs.extractor}+{fs.precision}"


def _print_agreement(result: Any, path: Path, n_boot: int) -> None:
    """The value table and the tau matrix of a measure agreement."""
    from oodml.splits.agreement import value_rows

    table = Table(title=f"{path}: every split under every measure x extractor "
                  f"({result.columns[0].mode})")
    rows = value_rows(result)
    for name in rows[0]:
        table.add_column(str(name), justify="right")
    for r in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()))
    Console(markup=False).print(table)
    labels, tau, lo, hi = result.tau_matrix()
    mtable = Table(title="Kendall tau between columns [95% bootstrap interval, "
                   f"{n_boot} class resamples]")
    mtable.add_column("")
    for lab in labels:
        mtable.add_column(lab, justify="right")
    for i, lab in enumerate(labels):
        mtable.add_row(lab, *(f"{tau[i, j]:.2f} [{lo[i, j]:.2f}, {hi[i, j]:.2f}]" if i != j
                              else "1" for j in range(len(labels))))
    Console(markup=False).print(mtable)


def _rescore_measures(o: dict[str, Any]) -> None:
    """``rescore --measure``: the measure x extractor table, tau matrix and verdict."""
    from dataclasses import replace

    from oodml.errors import ConfigError
    from oodml.splits.agreement import (
        measure_agreement,
        solver_notes,
        tau_path,
        write_agreement,
    )
    from oodml.splits.splitfile import load_splitfile
    from oodml.stats.class_stats import ClassStats
    from oodml.stats.measures import parse_measures

    sf = load_splitfile(o["path"])
    measures = parse_measures(o["measure"] or sf.measure_name)
    extractors = [e.strip() for e in (o["extractor"] or sf.extractor).split(",") if e.strip()]
    feats = [replace(build(FeatureOptions, {**o, "extractor": e}), extractor=e)
             for e in dict.fromkeys(extractors)]
    if o["csv"] is not None:
        if str(o["csv"]) == STDOUT:
            raise ConfigError("--out - (standard output) does not go with --measure, which "
                              "writes two tables (NAME.csv and NAME.tau.csv); give a file name")
        check_writable(o["csv"], "rescored table", replace=o["force"])
        check_writable(tau_path(o["csv"]), "tau table", replace=o["force"])
    manifest = load(o["dataset"] or sf.dataset_name, o["root"], o["skip_bad"])
    sf.check_against(manifest)
    with Bars() as bars:
        stats = {}
        for f in feats:
            fs = f.get(manifest, bars)
            stats[_feature_label(fs)] = ClassStats.from_features(fs.features, fs.labels)
        n = len(sf.ladder) * (len(stats) * len(measures) + o["bootstrap"])
        task = bars.task("rescoring (measures x extractors, bootstrap)", n)
        result = measure_agreement(sf, stats, measures, mode=o["mode"], n_boot=o["bootstrap"],
                                   tick=task.advance)
        task.close()
    _print_agreement(result, o["path"], o["bootstrap"])
    for note in solver_notes(result):
        say(f"solver: {note}")
    say(result.verdict())
    if o["csv"] is not None:
        values, taus = write_agreement(result, o["csv"])
        say(f"wrote {values} and {taus}")


@app.command("import-oodml")
def import_oodml(
    pickle_path: Path = typer.Argument(..., help="ooDML study split pickle (.pkl)."),
    out: Path = typer.Option(..., "-o", "--out", help="Split file to write (JSON).",
                             parser=out_path("split file")),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset name, to fill the fingerprint (needs --root)."
    ),
    root: Path | None = typer.Option(None, "--root", help="Dataset root folder or zip archive."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Convert a published ooDML split pickle (loaded safely, no code runs) to a split file."""
    from oodml.errors import ConfigError
    from oodml.splits.oodml_pickle import import_oodml as do_import
    from oodml.splits.splitfile import save_splitfile

    if (dataset is None) != (root is None):
        raise ConfigError("--dataset and --root go together; pass both or neither")
    check_writable(out, "split file", replace=force)
    manifest = load(dataset, root, False) if dataset and root else None
    sf = do_import(pickle_path, dataset_name=dataset, manifest=manifest)
    save_splitfile(sf, out)
    show_table(sf)
    say(f"wrote {out}")


SSB_FIELDS = ["mode", "seed", "val_fraction", "shots", "episodes", "bootstrap", "semantic"]


@app.command("import-ssb")
@with_params(
    [argument("ssb_file", Path, "SSB split JSON (SSB/splits/cub_ssb_splits.json or "
              "scars_ssb_splits.json).")],
    [option("dataset", str, ..., "--dataset", help="cub200 (or cub) or cars196."),
     option("root", Path, ..., "--root", help="Dataset root folder."),
     out_file("Split file to write (JSON).", "split file"),
     *field_params(FeatureOptions, ["extractor"]),
     option("class_names", Path | None, None, "--class-names", help="Class names, one a line "
            "in the dataset's class-id order (CARS196 folders without '001.' ids need it)."),
     *field_params(LadderConfig, SSB_FIELDS),
     HIERARCHY, FORCE, SKIP],
    EXTRACT,
)
def import_ssb(**o) -> None:
    """Make a split file of the Semantic Shift Benchmark's split: known classes train, and
    one test level each for its Easy, Medium and Hard unknown classes."""
    from oodml.splits.splitfile import save_splitfile
    from oodml.splits.ssb import import_ssb as do_import
    from oodml.splits.ssb import read_class_names, ssb_sides

    dataset = {"cub": "cub200"}.get(o["dataset"], o["dataset"])
    if dataset not in ("cub200", "cars196"):
        from oodml.errors import ConfigError

        raise ConfigError(f"--dataset {o['dataset']!r}: SSB splits exist for cub200 (cub) and "
                          "cars196")
    config = build(LadderConfig, o)
    feats = build(FeatureOptions, o)
    check_writable(o["out"], "split file", replace=o["force"])
    manifest = load(dataset, o["root"], o["skip_bad"])
    names = read_class_names(o["class_names"]) if o["class_names"] is not None else None
    ssb_sides(o["ssb_file"], manifest, names)
    hierarchy = None
    if o["hierarchy"] is not None:
        from oodml.data.hierarchy import read_hierarchy

        hierarchy = read_hierarchy(o["hierarchy"], manifest.classes)
    with Bars() as bars:
        fs = feats.get(manifest, bars)
        sf = do_import(o["ssb_file"], manifest, fs, config, class_names=names,
                       hierarchy=hierarchy, progress=bars)
    save_splitfile(sf, o["out"])
    show_table(sf)
    say(f"wrote {o['out']}")


@app.command("export-oodml")
def export_oodml(
    path: Path = typer.Argument(..., help="Split file (JSON)."),
    out: Path = typer.Option(..., "-o", "--out", help="Pickle to write (.pkl).",
                             parser=out_path("pickle")),
    basenames: bool = typer.Option(
        False, "--basenames", help="Bare image file names instead of paths in the episodes."
    ),
    force: bool = typer.Option(False, "--force", help="Replace the pickle if it exists."),
) -> None:
    """Write a split file in the ooDML study's pickle layout."""
    from oodml.splits.oodml_pickle import export_oodml as do_export
    from oodml.splits.splitfile import load_splitfile

    check_writable(out, "pickle", replace=force)
    do_export(load_splitfile(path), out, basenames=basenames)
    say(f"wrote {out}")


@app.command("plot")
def plot(
    path: Path = typer.Argument(..., help="Split file (JSON)."),
    out: Path = typer.Option(..., "-o", "--out", help="PNG to write.", parser=out_path("plot")),
    pdf: bool = typer.Option(False, "--pdf", help="Also write a PDF beside the PNG."),
    force: bool = typer.Option(False, "--force", help="Replace the PNG (and PDF) if they exist."),
) -> None:
    """Plot distance per ladder split and the train/test/removed class counts."""
    from oodml.report.ladder import plot_ladder, save_figure
    from oodml.splits.splitfile import load_splitfile

    check_writable(out, "plot", replace=force)
    if pdf:
        check_writable(out.with_suffix(".pdf"), "plot", replace=force)
    for written in save_figure(plot_ladder(load_splitfile(path)), out, pdf=pdf):
        say(f"wrote {written}")
