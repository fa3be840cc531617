"""``fid-inf``: the Fréchet distance extrapolated to infinitely many atoms (FID_inf).

FID_N, the Fréchet distance between Gaussians fitted to N atoms a side, is biased upward by
a term that falls like 1/N (Chong & Forsyth 2020: E[FID_N] = FID_inf + k / N + o(1/N)). A
train/test shift has two finite sides, so both are subsampled: at each size N of ``SIZES``
(fractions of the smaller side, n = min(n_a, n_b)), ``DRAWS`` pairs of N-atom subsets are drawn
without replacement (seeded), FID_N is their mean, and the least-squares line
FID_N = FID_inf + k / N over the sizes gives the intercept FID_inf (the value) and the RMS of
the fit's residuals (the spread: large when FID_N is not linear in 1/N over these sizes).
Class-means mode uses the Fréchet distance of that mode (eps 1e-8 on both diagonals).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from oodml.stats.gaussian import frechet_distance_samples
from oodml.stats.measures.base import Measure, MeasureValue, atoms
from oodml.stats.modes import distance_mode

FRACTIONS = (0.5, 0.625, 0.75, 0.875, 1.0)
DRAWS = 3
SEED = 0
MIN_SIZE = 3


def fit_sizes(n: int) -> list[int]:
    """The distinct subset sizes for a smaller side of ``n`` atoms (each >= MIN_SIZE)."""
    return sorted({max(MIN_SIZE, int(round(f * n))) for f in FRACTIONS if f * n >= MIN_SIZE - 0.5})


def fid_inf(x: np.ndarray, y: np.ndarray, eps: float, draws: int = DRAWS,
            seed: int = SEED) -> tuple[float, float, list[tuple[int, float]]]:
    """(FID_inf, RMS residual, [(N, mean FID_N)]) between the rows of ``x`` and ``y``."""
    n = min(len(x), len(y))
    x, y = _span_coordinates(x, y)
    rng = np.random.default_rng(seed)
    points = []
    for size in fit_sizes(n):
        vals = []
        for _ in range(draws):
            a = np.sort(rng.choice(len(x), size, replace=False))
            b = np.sort(rng.choice(len(y), size, replace=False))
            vals.append(frechet_distance_samples(x[a], y[b], eps=eps))
        points.append((size, float(np.mean(vals))))
    inv = np.array([1.0 / s for s, _ in points])
    f = np.array([v for _, v in points])
    design = np.stack([np.ones_like(inv), inv], axis=1)
    coef, *_ = np.linalg.lstsq(design, f, rcond=None)
    resid = f - design @ coef
    return float(coef[0]), float(np.sqrt(np.mean(resid**2))), points


def _span_coordinates(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` in an orthonormal basis of a space holding the span of all their rows
    centred on their common mean, when there are fewer rows than feature dimensions.

    Every subset's mean difference and covariances lie in that span V (rank r <= n_a + n_b
    - 1), so in a basis [Q, Q_perp] both covariances are block diagonal with eps I on V's
    complement, which adds eps + eps - 2 sqrt(eps eps) = 0 to the distance: FID_N is the same
    computed in n_a + n_b dimensions (Fréchet distances are translation invariant), and each
    of the fit's distances costs an (n_a + n_b)-sized problem instead of a d-sized one.

    The basis is the Householder QR factorisation of the centred rows' transpose, Z^T = Q R
    (d x n times n x n): the rows' coordinates Z Q are R^T. Only R is formed, a quarter of
    the thin SVD's cost at CUB size (200 x 2048; benchmarks/bench_measures.py); directions
    the rows do not reach (rank r < n) carry zero variance on both sides and add nothing.
    """
    z = np.concatenate([x, y])
    if len(z) >= z.shape[1]:
        return x, y
    p = np.linalg.qr((z - z.mean(axis=0)).T, mode="r").T
    return p[:len(x)], p[len(x):]


class FidInf(Measure):
    name = "fid-inf"
    help = ("Fréchet distance extrapolated to 1/N -> 0 from both sides subsampled at "
            f"{len(FRACTIONS)} sizes (intercept, with the fit's RMS residual)")
    spread_name = "fit residual (RMS)"
    stable_classes = 68  # reports/measure_sizes/thresholds.txt (25% tolerance)

    def __init__(self, draws: int = DRAWS, seed: int = SEED) -> None:
        self.draws = draws
        self.seed = seed

    def min_atoms(self, mode: str) -> int:
        return 5  # three distinct sizes >= MIN_SIZE (3, 4, 5), so the line has a residual

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "fractions": list(FRACTIONS), "draws": self.draws,
                "seed": self.seed}

    def blas_size(self, n_a: int, n_b: int, dim: int) -> int | None:
        return min(2 * min(n_a, n_b), dim)

    def _compute(self, stats, ia, ib, mode, eps) -> MeasureValue:
        value, resid, _ = fid_inf(atoms(stats, np.sort(ia), mode), atoms(stats, np.sort(ib), mode),
                                  distance_mode(mode).eps(eps), self.draws, self.seed)
        return MeasureValue(value, resid)
