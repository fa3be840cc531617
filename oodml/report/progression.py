"""Progression figure: each metric against the split distance, one line per method.

Lines are the mean over seeds. The shaded band is the 95% interval of the value (bootstrap
over test classes combined with the seeds, :mod:`oodml.report.intervals`) where the runs
stored per-class values; otherwise mean ± one seed std (ddof=1), drawn only when a series has
at least two seeds. A small downward triangle under a point marks a drop from the previous
split that is significant (paired, Holm over the series' drops). Horizontal bars along the
bottom show each split's 95% distance interval when the split file has them. Few-shot series
are dashed, in their zero-shot method's colour and marker (hollow); train-size-controlled
series (``[train/nN]``) dotted, hollow, in the colour of their full-train method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
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


def _distance_bars(ax, distance_cis: dict[int, tuple[float, float]], axis: pd.DataFrame) -> None:
    dist = dict(zip(axis["split_id"], axis["distance"], strict=True))
    ids = [sid for sid in axis["split_id"] if sid in distance_cis]
    if not ids:
        return
    x = np.array([dist[s] for s in ids])
    lo = x - np.array([distance_cis[s][0] for s in ids])
    hi = np.array([distance_cis[s][1] for s in ids]) - x
    ax.errorbar(x, np.full(len(x), 0.02), xerr=[lo, hi], fmt="|", color="#777777",
                elinewidth=1.0, capsize=2, markersize=4, transform=ax.get_xaxis_transform(),
                zorder=1)


def progression_figure(df: pd.DataFrame, metrics: Sequence[str], *,
                       start_split: int | None = None, x_label: str = DISTANCE_LABEL,
                       intervals: pd.DataFrame | None = None,
                       distance_cis: dict[int, tuple[float, float]] | None = None) -> Figure:
    """One subplot per metric; ``df`` is a validated table with ``series``/``base`` columns.
    ``intervals``: :func:`oodml.report.intervals.interval_table` (bands and significant drops);
    ``distance_cis``: split id -> 95% distance interval (bars along the distance axis)."""
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
            iv = None
            if intervals is not None and len(intervals):
                iv = intervals[(intervals["series"] == name) & (intervals["metric"] == metric)]
                iv = iv.set_index("split_id").reindex(c["split_id"])
                if iv["ci_low"].isna().any():
                    iv = None
            if iv is not None:
                alpha = 0.15 if st["linestyle"] == "-" else 0.07
                ax.fill_between(x, iv["ci_low"].to_numpy(), iv["ci_high"].to_numpy(),
                                color=st["color"], alpha=alpha, linewidth=0)
                sig = iv["drop_significant"].fillna(False).to_numpy(dtype=bool)
                if sig.any():
                    ax.plot(x[sig], iv["ci_low"].to_numpy()[sig], linestyle="none", marker="v",
                            markersize=4, color=st["color"])
            elif int(c["n"].iloc[0]) >= 2:
                sd = c["std"].to_numpy()
                alpha = 0.15 if st["linestyle"] == "-" else 0.07
                ax.fill_between(x, y - sd, y + sd, color=st["color"], alpha=alpha, linewidth=0)
        ax.set_ylabel(metric_label(metric))
        ax.grid(True, alpha=0.3)
        _split_ticks(ax, axis, start_split)
        if distance_cis:
            _distance_bars(ax, distance_cis, axis)
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
    if intervals is not None and len(intervals):
        band = "band: 95% interval over test classes and seeds; ▼ significant drop"
    else:
        band = "band: mean ± seed std" if (n_seeds >= 2).any() else "single seed: no band"
    fig.suptitle(f"Metric vs shift (mean over seeds; {band})", fontsize=10)
    return fig

