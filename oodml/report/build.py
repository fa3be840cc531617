"""Assemble a report folder: figures (PNG + PDF), Markdown/CSV tables and ``index.html``.

The core (tables, figures) is pure; this module reads inputs, calls it, and writes files
atomically. Outputs are byte-reproducible for the same inputs.

A report folder holds a manifest (:data:`MANIFEST`) naming the files reports wrote there. A
rebuild replaces or removes only those; a non-empty folder without a manifest is refused
unless ``force``, and even then no file that no report wrote is ever removed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from oodml import __version__
from oodml.errors import OutputError, ResultsError
from oodml.fileio import (
    atomic_write_text,
    check_output_target,
    check_writable_dir,
    read_text,
    special_kind,
)
from oodml.report.embedding import embedding_figure
from oodml.report.html import Section, pivot_html, render_page
from oodml.report.intervals import (
    fewshot_gain,
    interval_methods,
    interval_table,
    method_order,
)
from oodml.report.ladder import plot_ladder, save_figure
from oodml.report.progression import progression_figure
from oodml.report.style import DISTANCE_LABEL, distance_label, metric_name
from oodml.report.tables import (
    PIVOT_STATS,
    coverage_notes,
    display_metrics,
    label_series,
    pivot_table,
    rank_table,
    series_order,
    summary_table,
    to_markdown,
    validity_table,
    with_size_controlled,
)
from oodml.report.trainsize import collapse_draws, share_sentences, train_size_table
from oodml.results import load_results, select_metrics, validate

ClassMeans = tuple[Sequence[str], np.ndarray]
MANIFEST = ".oodml-report.json"
"""The report folder's list of the files reports wrote there (the only ones a rebuild may
replace or remove)."""
MANIFEST_SCHEMA = "oodml-report-manifest/1"
SPREAD_NOTE = ("Spread is over seeds: std is the sample standard deviation (ddof=1) of each "
               "per-seed statistic; bands in the progression plot are mean ± that std.")
SIZE_NOTE = ("Size-controlled metrics (name/nN): computed on N test classes drawn at random "
             "from each split (averaged over draws), so splits with different test-set sizes "
             "are compared on equal terms; the progression plot and the pivot show them where "
             "they exist, the long table also lists the full-test values.")
VALIDITY_NOTE = ("slope/100: least-squares slope of the metric against the split distance, per "
                 "100 distance units (per seed, then averaged; slope_lo/slope_hi: 95% Student-t "
                 "interval over seeds); a ladder that grades difficulty gives negative slopes, "
                 "Spearman rho near -1 and a monotone fall. Positive slopes are in red.")
TRAIN_NOTE = ("Train-size-controlled series ([train/nN], dotted): every split trained on N "
              "classes drawn from its train classes (mean over the draws per seed) and "
              "evaluated on its full test set; the gap to the solid full-train line at a split "
              "is what its larger training set adds.")
TRAIN_SHARE_NOTE = ("share = (full_drop - controlled_drop) / full_drop, drops = easiest - "
                    "hardest split (means over seeds and draws); share_lo/hi: 95% percentile "
                    "bootstrap, seeds resampled (paired across both) and draws resampled per "
                    "split.")
INTERVAL_NOTE = ("95% intervals: a bootstrap over test classes (a class's queries stay together) "
                 "combined with the seeds; a drop between splits and a gap between methods are "
                 "paired (same test classes under test-fixed ladders, same seeds), Holm-adjusted "
                 "over a series' drops and over a pair of methods' splits. Size-controlled "
                 "metrics resample the classes within their fixed gallery draws; NMI has no "
                 "interval (see interval_methods).")
AUC_NOTE = ("AUC: area under metric vs distance, distances normalised to [0, 1] over the "
            "ladder's range (trapezoid rule); rel_drop = (easiest - hardest) / easiest.")


@dataclass
class ReportOutputs:
    """What a report build wrote, and the notes it shows the reader."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


SEMANTIC_LABEL = "share of test classes whose superclass is unseen in train"


def semantic_axis(splitfile: object) -> dict[int, float] | None:
    """Split id -> unseen superclass share when every split of ``splitfile`` carries it."""
    if splitfile is None or not all(s.semantic for s in splitfile.ladder):
        return None
    return {s.id: float(s.semantic["unseen_share"]) for s in splitfile.ladder}


def class_means_for(splitfile, featureset) -> ClassMeans:
    """Per-class mean features for the embedding view, checked against the split file (same
    dataset version and extractor weights)."""
    if featureset.fingerprint != splitfile.dataset_fingerprint and splitfile.dataset_fingerprint:
        raise ResultsError("the features are for another version of the split file's dataset; "
                           "pass the dataset root the split file was made from")
    if splitfile.weights_sha256 and featureset.weights_sha256 != splitfile.weights_sha256:
        raise ResultsError(f"features were computed with weights "
                           f"{featureset.weights_sha256[:12]}… but the split file used "
                           f"{splitfile.weights_sha256[:12]}…; pass --weights")
    return featureset.class_means()


def _write_table(table: pd.DataFrame, stem: Path, heading: str, notes: Sequence[str]) -> list[Path]:
    csv = atomic_write_text(stem.with_suffix(".csv"),
                            table.to_csv(index=False, lineterminator="\n", float_format="%.10g"))
    lines = [f"# {heading}", "", *[f"- {n}" for n in notes], "", to_markdown(table)]
    md = atomic_write_text(stem.with_suffix(".md"), "\n".join(lines))
    return [csv, md]


def _save(fig: Figure, stem: Path) -> tuple[Path, Path]:
    png, pdf = save_figure(fig, stem.with_suffix(".png"), pdf=True)
    return png, pdf


def build_report(results: Sequence[str | os.PathLike] | pd.DataFrame, out_dir: str | os.PathLike,
                 *, splitfile=None, metrics: Sequence[str] | None = None,
                 rank_metric: str = "recall@1", class_means: ClassMeans | None = None,
                 embedding_skipped: str | None = None, title: str | None = None,
                 step: Callable[[str], None] | None = None,
                 rescored=None, force: bool = False) -> ReportOutputs:
    """Write the full report for ``results`` (paths or a results DataFrame) into ``out_dir``.

    ``splitfile`` (a loaded SplitFile) adds the ladder plot, the starting split and the
    embedding view (which also needs ``class_means``); without them the page says what was
    skipped and why. ``rescored`` (a :class:`oodml.splits.rescore.Rescore`, e.g. read with
    ``read_rescore_csv``) adds the agreement of the ladder's distances with another extractor
    or mode; it must be of ``splitfile`` (same split ids and distances) when both are given.
    ``step`` is called with a short description before each stage. An existing ``out_dir``
    must be empty or an earlier report's (it has :data:`MANIFEST`); ``force`` writes into any
    folder, replacing files of the report's names, but still removes only files a manifest
    lists.
    """
    def tick(what: str) -> None:
        if step is not None:
            step(what)

    if rescored is not None and splitfile is not None:
        ladder = [(s.id, float(s.distance)) for s in splitfile.ladder]
        if list(zip(rescored.split_ids, rescored.distance, strict=False)) != ladder:
            raise ResultsError(
                f"the rescored table{' ' + rescored.source if rescored.source else ''} lists "
                f"splits {list(rescored.split_ids)} with other ids or distances than the ladder of "
                "--splits; rescore that split file (`oodml splits rescore SPLITFILE ... --out`)"
            )
    final = Path(out_dir)
    if final.exists() and not final.is_dir():
        raise ResultsError(f"report folder {final} is a file; pass a folder for the report")
    previous = check_report_folder(final, force=force)
    final.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{final.name}.", dir=final.parent) as staging:
        report = _build(results, Path(staging), final, splitfile=splitfile, metrics=metrics,
                        rank_metric=rank_metric, class_means=class_means,
                        embedding_skipped=embedding_skipped, title=title, tick=tick,
                        rescored=rescored)
        return _swap_in(report, Path(staging), final, previous, force=force)


def _agreement_sections(result) -> list[Section]:
    """The tau matrix (with intervals and the verdict) and every split's value under every
    measure x extractor (a :class:`oodml.splits.agreement.MeasureAgreement`)."""
    from oodml.splits.agreement import solver_notes, value_rows

    labels, tau, lo, hi = result.tau_matrix()
    n_boot = max((t.n_boot for t in result.taus), default=0)
    matrix = pd.DataFrame(
        [[("1" if i == j else f"{tau[i, j]:.2f} [{lo[i, j]:.2f}, {hi[i, j]:.2f}]")
          for j in range(len(labels))] for i in range(len(labels))],
        index=labels, columns=labels).reset_index(names="measure/extractor")
    text = (f"Kendall tau between the ladder's splits ordered by each measure x extractor, "
            f"with 95% intervals from {n_boot} paired class-bootstrap replicates. "
            f"Verdict: {result.verdict()}.")
    notes = [f"solver: {n}" for n in solver_notes(result)]
    return [Section("Agreement across measures", text, table=matrix, notes=notes),
            Section("Every split under every measure",
                    "Values in each measure's own unit (distance: the split file's).",
                    table=pd.DataFrame(value_rows(result)))]


def check_report_folder(folder: str | os.PathLike, *, force: bool = False) -> set[str]:
    """Names of the files earlier reports wrote in ``folder`` (its manifest), the only files a
    rebuild may replace or remove. A folder that cannot be written, or a non-empty one without
    a manifest (unless ``force``: then nothing in it counts as a report's), is an
    OutputError. Creates nothing, so the CLI calls it before any long work."""
    folder = check_writable_dir(folder, "report folder")
    if not folder.is_dir():
        return set()
    manifest = folder / MANIFEST
    if not os.path.lexists(manifest):
        foreign = sorted(os.listdir(folder))
        if foreign and not force:
            raise OutputError(
                f"report folder {folder} holds files no oodml report wrote (e.g. "
                f"{foreign[0][:80]!r}); choose a new or empty folder, or pass --force to write "
                "the report beside them (files no report wrote are never removed)")
        return set()
    text = read_text(manifest, "report manifest", 2**20, error=OutputError)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        doc = None
    names = doc.get("files") if isinstance(doc, dict) else None
    if (not isinstance(doc, dict) or doc.get("schema") != MANIFEST_SCHEMA
            or not isinstance(names, list) or not all(map(_plain_name, names))):
        raise OutputError(f"report manifest {manifest} is not one oodml wrote; delete it and "
                          "the report files you no longer want, or choose another folder")
    return set(names)


def _plain_name(name: object) -> bool:
    """A file name directly in the folder (no path, not the manifest itself)."""
    return (isinstance(name, str) and name not in ("", ".", "..", MANIFEST)
            and "/" not in name and "\\" not in name and "\0" not in name)


def _write_manifest(final: Path, names: set[str]) -> None:
    doc = {"schema": MANIFEST_SCHEMA, "files": sorted(names)}
    atomic_write_text(final / MANIFEST, json.dumps(doc, indent=1) + "\n",
                      what="report manifest")


def _swap_in(report: ReportOutputs, staging: Path, final: Path, previous: set[str], *,
             force: bool) -> ReportOutputs:
    """Move every staged file over its final name (index.html last), then remove the files
    an earlier report wrote that this build did not make, so the folder never mixes two
    builds' pages and plots. The manifest lists the union while files move, so a build killed
    halfway leaves every report file listed."""
    staged = sorted(report.files, key=lambda p: p.name == "index.html")
    names = {str(p.relative_to(staging)) for p in staged}
    for name in sorted(names):
        target = check_output_target(final / name, "report file")
        if not force and name not in previous and target.exists():
            raise OutputError(f"report folder {final} holds {name!r}, which no oodml report "
                              "wrote; move it away, or pass --force to replace it")
    _write_manifest(final, previous | names)
    moved = []
    for path in staged:
        target = check_output_target(final / path.relative_to(staging), "report file")
        os.replace(path, target)
        moved.append(target)
    for name in sorted(previous - names):
        stale = final / name
        if special_kind(stale) is None and stale.exists():
            stale.unlink()
    _write_manifest(final, names)
    return ReportOutputs(out_dir=final, files=moved, notes=report.notes)


def with_drop_intervals(pivot: pd.DataFrame, intervals: pd.DataFrame, df: pd.DataFrame,
                        metrics: Sequence[str]) -> pd.DataFrame:
    """The pivot plus, per metric, the easiest-to-hardest drop's paired interval relative to
    the easiest value ("lo–hi" as text) and the count of significant adjacent drops."""
    from oodml.metrics.intervals import difference_interval
    from oodml.report.intervals import cell

    out = pivot.copy()
    for metric in metrics:
        ci, sig = [], []
        for series in out["series"]:
            sub = intervals[(intervals["series"] == series) & (intervals["metric"] == metric)]
            if len(sub) < 2:
                ci.append(np.nan)
                sig.append(np.nan)
                continue
            first, last = int(sub["split_id"].iloc[0]), int(sub["split_id"].iloc[-1])
            ref = float(sub["value"].iloc[0])
            gap = difference_interval(cell(df, series, metric, last),
                                      cell(df, series, metric, first))
            ci.append(f"{100 * gap.low / ref:.1f}–{100 * gap.high / ref:.1f}%" if ref else
                      np.nan)
            sig.append(f"{int(sub['drop_significant'].sum())}/{len(sub) - 1}")
        out[f"{metric} drop 95% CI"] = ci
        out[f"{metric} sig. drops"] = sig
    return out


def _build(results, out: Path, final: Path, *, splitfile, metrics, rank_metric, class_means,
           embedding_skipped, title, tick, rescored) -> ReportOutputs:
    sha = splitfile.sha256 if splitfile is not None else None
    tick("reading results")
    if isinstance(results, pd.DataFrame):
        df = validate(results, splitfile_sha256=sha)
    else:
        df = load_results(results, splitfile_sha256=sha)
    mets = select_metrics(df, metrics)
    if rank_metric not in set(df["metric"]):
        raise ResultsError(f"rank metric {rank_metric!r} is not in the results; choose one of "
                           f"{', '.join(select_metrics(df, None))} as the rank metric")
    mets = with_size_controlled(df, mets)
    shown = display_metrics(df, mets)
    per_draw = df
    df = label_series(collapse_draws(df[df["metric"].isin([*mets, rank_metric])]))
    if splitfile is not None:
        known = {s.id: s.distance for s in splitfile.ladder}
        unknown = sorted(set(df["split_id"]) - set(known))
        if unknown:
            raise ResultsError(f"results name split(s) {unknown} that the split file lacks")
    start = next((s.id for s in splitfile.ladder if s.is_start), None) if splitfile else None
    report = ReportOutputs(out_dir=out)
    sections: list[Section] = []

    tick("metric intervals")
    intervals = interval_table(df, shown)
    tick("progression plot")
    x_label = (distance_label(splitfile.distance_mode, splitfile.extractor)
               if splitfile is not None else DISTANCE_LABEL)
    dcis = ({s.id: s.distance_ci for s in splitfile.ladder if s.distance_ci is not None}
            if splitfile is not None else None)
    fig = progression_figure(df, shown, start_split=start, x_label=x_label,
                             intervals=intervals, distance_cis=dcis)
    png, pdf = _save(fig, out / "progression")
    report.files += [png, pdf]
    prog_notes = [INTERVAL_NOTE if len(intervals) else SPREAD_NOTE]
    if dcis:
        prog_notes.append("Grey bars along the bottom: each split's 95% distance interval "
                          "(its classes resampled).")
    if any("/n" in m for m in shown):
        prog_notes.append(SIZE_NOTE)
    controlled = bool((df["train"] != "all").any())
    if controlled:
        prog_notes.append(TRAIN_NOTE)
    sections.append(Section("Progression", "Each metric against the train-test Fréchet "
                            "distance of the split; solid: zero-shot, dashed: few-shot.",
                            image=png, notes=prog_notes, links=[pdf]))

    semantic = semantic_axis(splitfile)
    if semantic is not None:
        tick("semantic progression plot")
        sdf = df.assign(distance=df["split_id"].map(semantic).astype(float))
        fig = progression_figure(sdf, shown, start_split=start, x_label=SEMANTIC_LABEL,
                                 intervals=intervals)
        png, pdf = _save(fig, out / "progression_semantic")
        report.files += [png, pdf]
        sections.append(Section(
            "Progression against semantic shift",
            "The same metrics against the split's semantic shift (the share of its test "
            "classes whose superclass has no class in train; the split file's hierarchy: "
            f"{splitfile.hierarchy.get('source') if splitfile.hierarchy else '?'}), the "
            "second axis beside the Fréchet distance.",
            image=png, notes=[INTERVAL_NOTE if len(intervals) else SPREAD_NOTE], links=[pdf]))

    report.notes += coverage_notes(df, mets)

    tick("summary table")
    summary = summary_table(df, mets)
    validity = validity_table(df, mets)
    pivot = pivot_table(summary, validity, shown)
    labels = [lab for _, lab in PIVOT_STATS]
    pivot_text = ("Per method (rows) and metric (columns): normalised AUC, relative drop from "
                  "the easiest to the hardest split, and slope per 100 distance units (seed "
                  "means). Size-controlled metrics replace the full-test ones where present.")
    if len(intervals):
        pivot = with_drop_intervals(pivot, intervals, df, shown)
        labels += ["drop 95% CI", "sig. drops"]
        pivot_text += (" drop 95% CI: paired interval of the easiest minus the hardest value "
                       "(relative to the easiest); sig. drops: adjacent drops significant at "
                       "95% (Holm) out of the ladder's.")
    report.files += _write_table(pivot, out / "pivot", "Validity pivot",
                                 [pivot_text, VALIDITY_NOTE])
    sections.insert(0, Section(
        "Validity at a glance", pivot_text,
        raw_html=pivot_html(pivot, shown, labels, [metric_name(m) for m in shown]),
        notes=[VALIDITY_NOTE], links=[out / "pivot.csv", out / "pivot.md"]))
    validity_text = ("Does each metric track the distance? Slope per 100 distance units with its "
                     "seed interval, Spearman rho between distance and the seed-mean metric, "
                     "and whether the metric falls at every harder split.")
    report.files += _write_table(validity, out / "validity", "Validity",
                                 [validity_text, VALIDITY_NOTE])
    single = sorted(summary.loc[summary["n_seeds"] == 1, "series"].unique())
    if single:
        report.notes.append(f"single seed (no band, no std): {', '.join(single)}")
    report.files += _write_table(summary, out / "summary", "Summary",
                                 [SPREAD_NOTE, AUC_NOTE, *report.notes])
    sections.append(Section("Summary", AUC_NOTE, table=summary, notes=list(report.notes),
                            links=[out / "summary.csv", out / "summary.md"]))
    compact = validity.drop(columns=["method", "protocol", "shots", "size_controlled",
                                     "n_splits"])
    sections.append(Section("Validity per series", validity_text, table=compact,
                            notes=[VALIDITY_NOTE],
                            links=[out / "validity.csv", out / "validity.md"]))

    if controlled:
        tick("training size")
        sizes = train_size_table(per_draw, [rank_metric, *[m for m in shown if m != rank_metric]])
        lines = share_sentences(sizes[sizes["metric"] == rank_metric])
        size_text = ("How much of each method's drop from the easiest to the hardest split "
                     "comes from training on fewer classes: the full-train drop against the "
                     "drop with every split trained on N drawn classes.")
        report.files += _write_table(sizes, out / "train_size", "Training size vs shift",
                                     [size_text, TRAIN_SHARE_NOTE, *lines])
        sections.insert(1, Section("Training size vs shift", size_text, table=sizes,
                                   notes=[*lines, TRAIN_SHARE_NOTE],
                                   links=[out / "train_size.csv", out / "train_size.md"]))

    tick("rank table")
    ranks = rank_table(df[df["train"] == "all"], rank_metric, start_split=start)
    report.notes += ranks.notes
    rank_text = (f"Rank of each zero-shot method at every split by {rank_metric} (1 = best, "
                 "seed means, ties averaged) and Kendall tau-b between each split's ranking "
                 f"and the starting split's (split {ranks.start_split}).")
    report.files += _write_table(ranks.table, out / "ranks", "Ranks", [rank_text, *ranks.notes])
    sections.append(Section("Ranks", rank_text, table=ranks.table, notes=ranks.notes,
                            links=[out / "ranks.csv", out / "ranks.md"]))

    methods = interval_methods(df, shown)
    methods_text = ("How each metric's 95% interval is obtained, or why it has none "
                    "(oodml.metrics.intervals).")
    report.files += _write_table(methods, out / "interval_methods", "Interval per metric",
                                 [methods_text])
    sections.append(Section("Interval per metric", methods_text, table=methods,
                            links=[out / "interval_methods.csv", out / "interval_methods.md"]))
    if len(intervals):
        report.files += _write_table(intervals, out / "intervals", "Metric intervals",
                                     [INTERVAL_NOTE])
        sections.append(Section("Metric intervals", INTERVAL_NOTE, table=intervals,
                                links=[out / "intervals.csv", out / "intervals.md"]))
        order_table, lines = method_order(df, rank_metric)
        if lines:
            text = (f"Where on the ladder each pair of zero-shot methods is ordered by "
                    f"{rank_metric} at 95% (paired gap over the same test classes and seeds, "
                    "Holm over the splits).")
            report.files += _write_table(order_table, out / "method_order", "Method order",
                                         [text, *lines])
            sections.append(Section("Method order", text, notes=lines, table=order_table,
                                    links=[out / "method_order.csv", out / "method_order.md"]))
        gain_table, lines = fewshot_gain(df, rank_metric)
        if lines:
            text = (f"What few-shot adaptation adds to {rank_metric} on each split: the "
                    "few-shot value minus the zero-shot one of the model it adapts, paired over "
                    "the same test classes and seeds, Holm over the splits.")
            report.files += _write_table(gain_table, out / "fewshot_gain", "Few-shot gain",
                                         [text, *lines])
            sections.append(Section("Few-shot gain", text, notes=lines, table=gain_table,
                                    links=[out / "fewshot_gain.csv", out / "fewshot_gain.md"]))

    tick("ladder plot")
    if splitfile is not None:
        png, pdf = _save(plot_ladder(splitfile), out / "ladder")
        report.files += [png, pdf]
        sections.append(Section("Ladder", "Distance of each split and its class counts.",
                                image=png, links=[pdf]))
    else:
        note = "ladder plot skipped: no split file given (pass --splits)"
        report.notes.append(note)
        sections.append(Section("Ladder", notes=[note]))

    if rescored is not None and hasattr(rescored, "taus"):
        sections += _agreement_sections(rescored)
    elif rescored is not None:
        from oodml.splits.rescore import rescore_rows

        text = ("The ladder's distances recomputed with another extractor or distance mode: "
                + rescored.summary() + ".")
        sections.append(Section("Agreement across extractors", text,
                                table=pd.DataFrame(rescore_rows(rescored))))

    tick("embedding view")
    if splitfile is not None and class_means is not None:
        classes, means = class_means
        png, pdf = _save(embedding_figure(classes, means, splitfile.ladder),
                                out / "embedding")
        report.files += [png, pdf]
        sections.append(Section("Embedding view", "2-D PCA of the per-class mean features; "
                                "one projection shared by all panels.", image=png, links=[pdf]))
    else:
        why = embedding_skipped or ("no split file given (pass --splits)" if splitfile is None
                                    else "no class means (pass --root to read the features)")
        note = f"embedding view skipped: {why}"
        report.notes.append(note)
        sections.append(Section("Embedding view", notes=[note]))

    tick("index.html")
    meta = [
        ("dataset", ", ".join(sorted(df["dataset"].unique()))),
        ("split file sha256", str(df["splitfile_sha256"].iloc[0])),
        ("methods", ", ".join(series_order(df))),
        ("seeds", ", ".join(str(s) for s in sorted(df["seed"].unique()))),
        ("metrics", ", ".join(mets)),
        ("splits", str(df["split_id"].nunique())),
        ("generated by", f"oodml {__version__}"),
    ]
    page = render_page(title or f"oodml report: {final.name}", meta, sections, out)
    report.files.append(atomic_write_text(out / "index.html", page))
    return report
