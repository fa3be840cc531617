"""The ladder figure: distance per split (with its bootstrap interval as error bars when the
split file has ``distance_ci``) and train/test/removed class counts.

Readable in greyscale (markers and line styles differ, not only colours); legends sit outside
the data area. ``save_figure`` writes PNG at 150 dpi (and optionally PDF) atomically, without
timestamps, so the same figure gives the same bytes.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from matplotlib.figure import Figure

from oodml.fileio import atomic_write
from oodml.report.style import distance_label
from oodml.splits.paired import ladder_test
from oodml.splits.splitfile import SplitFile

DPI = 150
_COUNT_STYLES = (
    ("train", "#222222", "-", "o"),
    ("test", "#666666", "--", "s"),
    ("removed", "#999999", ":", "^"),
)


def plot_ladder(sf: SplitFile, title: str | None = None) -> Figure:
    """Two stacked panels over the ladder split ids: distance, and class counts per side."""
    ids = [s.id for s in sf.ladder]
    fig = Figure(figsize=(7.0, 5.2), layout="constrained")
    ax_d, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    ax_d.plot(ids, [s.distance for s in sf.ladder], color="black", marker="o", label="distance")
    with_ci = [s for s in sf.ladder if s.distance_ci is not None]
    if with_ci:
        lower = [s.distance - s.distance_ci[0] for s in with_ci]
        upper = [s.distance_ci[1] - s.distance for s in with_ci]
        ax_d.errorbar(
            [s.id for s in with_ci], [s.distance for s in with_ci], yerr=[lower, upper],
            fmt="none", ecolor="#555555", elinewidth=1.0, capsize=4,
            label="95% bootstrap interval\n(classes resampled)",
        )
    test = ladder_test(sf)
    if test is not None:
        ax_d.set_title(textwrap.fill(test.statement(sf.uncertainty.get("paired_bootstraps")), 90),
                       fontsize=8, loc="left")
    starts = [s for s in sf.ladder if s.is_start]
    if starts:
        ax_d.plot(
            [s.id for s in starts],
            [s.distance for s in starts],
            linestyle="none",
            marker="*",
            markersize=14,
            markerfacecolor="white",
            markeredgecolor="black",
            label="start split",
        )
    ax_d.set_ylabel(distance_label(sf.distance_mode, sf.extractor, lines=True), fontsize=9)
    ax_d.grid(True, color="#dddddd", linewidth=0.6)
    ax_d.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    for side, color, style, marker in _COUNT_STYLES:
        counts = [len(getattr(s, side)) for s in sf.ladder]
        ax_n.plot(ids, counts, color=color, linestyle=style, marker=marker, label=side)
    ax_n.set_ylabel("classes")
    ax_n.set_xlabel("ladder split id (easiest to hardest)")
    ax_n.set_xticks(ids)
    ax_n.set_ylim(bottom=0)
    ax_n.grid(True, color="#dddddd", linewidth=0.6)
    ax_n.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(
        title or f"{sf.dataset_name} ladder: {sf.procedure}, {sf.extractor}", fontsize="medium"
    )
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, *, pdf: bool = False) -> list[Path]:
    """Write ``path`` as PNG (150 dpi) and, with ``pdf``, the same name with .pdf."""
    png = Path(path)
    out = [atomic_write(png, lambda p: fig.savefig(p, format="png", dpi=DPI), what="plot")]
    if pdf:
        target = png.with_suffix(".pdf")
        out.append(
            atomic_write(
                target,
                lambda p: fig.savefig(p, format="pdf", metadata={"CreationDate": None}),
                what="plot",
            )
        )
    return out
