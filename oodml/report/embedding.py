"""Embedding view: 2-D PCA of per-class mean features, one panel per split.

One projection is fitted on all class means and shared by every panel, so panels are
comparable: the shift shows as train (filled circles) and test (triangles) clouds moving
apart; classes removed from a split are grey crosses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from oodml.errors import OodmlError
from oodml.report.style import COLOURS, GREY


class SplitLike(Protocol):
    id: int
    distance: float
    is_start: bool
    train: Sequence[str]
    test: Sequence[str]
    removed: Sequence[str]


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``x`` onto its first two principal components.

    Returns (coords N x 2, explained-variance ratio of the two axes). Component signs are
    fixed (largest-magnitude loading positive) so the picture is reproducible.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError("pca_2d needs a 2-D array with at least two rows")
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, vt.shape[0])
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
    comps = comps * signs[:, None]
    coords = centred @ comps.T
    total = float(np.sum(s**2))
    ratio = (s[:k] ** 2) / total if total > 0 else np.zeros(k)
    if k < 2:
        coords = np.hstack([coords, np.zeros((len(x), 1))])
        ratio = np.append(ratio, 0.0)
    return coords, ratio


def embedding_figure(classes: Sequence[str], means: np.ndarray,
                     ladder: Sequence[SplitLike]) -> Figure:
    """A grid of panels (one per split) of the PCA-projected class means by side."""
    index = {c: i for i, c in enumerate(classes)}
    for split in ladder:
        unknown = [c for c in (*split.train, *split.test, *split.removed) if c not in index]
        if unknown:
            raise OodmlError(f"split {split.id} names class {unknown[0]!r} that has no features; "
                             "the feature cache is for another dataset than the split file")
    coords, ratio = pca_2d(means)
    ncols = min(4, len(ladder))
    nrows = math.ceil(len(ladder) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 3.0 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    sides = (("removed", GREY, "x", GREY), ("train", COLOURS[1], "o", COLOURS[1]),
             ("test", COLOURS[4], "^", "white"))
    for ax, split in zip(axes, ladder, strict=False):
        for side, colour, marker, face in sides:
            pts = coords[[index[c] for c in getattr(split, side)]]
            if len(pts):
                edge = {} if marker == "x" else {"edgecolors": colour}
                ax.scatter(pts[:, 0], pts[:, 1], s=16, marker=marker, c=face, linewidths=0.9,
                           label=side, **edge)
        star = " (start)" if split.is_start else ""
        ax.set_title(f"split {split.id}{star}: FD {split.distance:.3g}", fontsize=8)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(ladder):]:
        ax.set_visible(False)
    for ax in axes[(nrows - 1) * ncols:]:
        ax.set_xlabel(f"PC 1 ({ratio[0]:.0%} of variance)", fontsize=8)
    for ax in axes[::ncols]:
        ax.set_ylabel(f"PC 2 ({ratio[1]:.0%} of variance)", fontsize=8)
    handles = [Line2D([], [], linestyle="none", marker=m, color=c, markerfacecolor=f,
                      label=f"{side} classes") for side, c, m, f in sides[1:] + sides[:1]]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Class means, 2-D PCA fitted on all classes (feature units)", fontsize=10)
    return fig
