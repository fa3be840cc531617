"""Progression figure: each metric against the split distance, one line per method.

Lines are the mean over seeds; the shaded band is mean ± one seed std (ddof=1), drawn only
when a series has at least two seeds. Few-shot series are dashed, in their zero-shot
method's colour and marker (hollow); train-size-controlled series (``[train/nN]``) dotted,
hollow, in the colour of their full-train method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

from oodml.report.style import DISTANCE_LABEL, FEWSHOT_DASHES, metric_label, style_for
from oodml.report.tables import curve, series_order, split_axis


def _series_styles(df: pd.DataFrame) -> dict[str, dict]:
    keys = df[["base", "protocol", "shots", "series"]].drop_duplicates()
    bases = sorted(keys["base"].unique())
    shots = sorted(keys.loc[keys["protocol"] == "fewshot", "shots"].unique())
    train = (df.groupby("series")["train"].first() if "train" in df.columns
             else pd.Series("all", index=keys["series"]))
    styles = {}
    for row in keys.itertuples(index=False):
        colour, marker = style_for(bases.index(row.base))
        few = row.protocol == "fewshot"
        controlled = train[row.series] != "all"
        styles[row.series] = {
            "color": colour,
            "marker": marker,
            "linestyle": FEWSHOT_DASHES[shots.index(row.shots) % len(FEWSHOT_DASHES)]
            if few else (":" if controlled else "-"),
            "markerfacecolor": "white" if few or controlled else colour,
        }
    return styles


def _split_ticks(ax, axis: pd.DataFrame, start_split: int | None) -> None:
    if len(axis) > 15:
        return
    top = ax.secondary_xaxis("top")
    labels = [f"{sid}*" if sid == start_split else str(sid) for sid in axis["split_id"]]
    top.set_xticks(axis["distance"].to_numpy(), labels=labels, fontsize=7)
    top.set_xlabel("split id (* = start)" if start_split is not None else "split id", fontsize=8)


def progression_figure(df: pd.DataFrame, metrics: Sequence[str], *,
                       start_split: int | None = None, x_label: str = DISTANCE_LABEL) -> Figure:
    """One subplot per metric; ``df`` is a validated table with ``series``/``base`` columns."""
    if not metrics:
        raise ValueError("progression_figure needs at least one metric")
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(4.3 * ncols, 3.4 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    styles = _series_styles(df)
    names = series_order(df)
    axis = split_axis(df)
    for ax, metric in zip(axes, metrics, strict=False):
        for name in names:
            if df[(df["series"] == name) & (df["metric"] == metric)].empty:
                continue
            c = curve(df, name, metric)
            st = styles[name]
            x, y = c["distance"].to_numpy(), c["mean"].to_numpy()
            ax.plot(x, y, label=name, markersize=5, linewidth=1.6, **st)
            if int(c["n"].iloc[0]) >= 2:
                sd = c["std"].to_numpy()
                alpha = 0.15 if st["linestyle"] == "-" else 0.07
                ax.fill_between(x, y - sd, y + sd, color=st["color"], alpha=alpha, linewidth=0)
        ax.set_ylabel(metric_label(metric))
        ax.grid(True, alpha=0.3)
        _split_ticks(ax, axis, start_split)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.supxlabel(x_label, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    for ax in axes[1:len(metrics)]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    ordered = [n for n in names if n in seen]
    fig.legend([seen[n] for n in ordered], ordered, loc="outside right upper", fontsize=8,
               frameon=False)
    n_seeds = df.groupby("series")["seed"].nunique()
    band = "band: mean ± seed std" if (n_seeds >= 2).any() else "single seed: no band"
    fig.suptitle(f"Metric vs shift (mean over seeds; {band})", fontsize=10)
    return fig

