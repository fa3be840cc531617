"""``kid``: the kernel distance (KID; Bińkowski et al. 2018), as torch-fidelity computes it.

MMD^2 with the cubic polynomial kernel k(x, y) = (x . y / d + 1)^3, unbiased estimator on
two subsets of equal size m:

    MMD^2_u = [sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j)] / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2,

averaged over ``subsets`` draws (each side drawn without replacement), reported as mean with
the std over draws (ddof 0) as its spread. The draws are torch-fidelity's (``metric_kid.py``):
one ``numpy.random.RandomState(seed)``, per subset first ``choice(n_a, m, replace=False)`` then
``choice(n_b, m, replace=False)``, so the same atoms in the same order give its numbers. Atoms
are ordered by class index (then by image row), so a split's value does not depend on the order
its classes are listed in.

The subset size adapts to small sides: m = min(max_subset_size, n_a, n_b) (torch-fidelity
refuses sides smaller than its fixed 1000); a side of m atoms is then used whole in every
draw. Cost: the three kernel matrices over all atoms ((n_a^2 + n_b^2 + n_a n_b) d multiply-adds)
when that is cheaper than per-subset kernels (3 subsets m^2 d), else per subset.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from oodml.stats.measures.base import Measure, MeasureValue, atoms

SUBSETS = 100
MAX_SUBSET_SIZE = 1000
SEED = 0
GATHER_ENTRIES = 1 << 22


def poly_kernel(x: np.ndarray, y: np.ndarray, dim: int) -> np.ndarray:
    """(x y^T / dim + 1)^3 (x @ x.T runs as one symmetric rank-k update)."""
    k = x @ x.T if y is x else x @ y.T
    k *= 1.0 / dim
    k += 1.0
    return k * k * k


def mmd2_unbiased(kxx: np.ndarray, kxy: np.ndarray, kyy: np.ndarray) -> float:
    """Unbiased MMD^2 from the three m x m kernel blocks (diagonals of kxx, kyy dropped)."""
    m = kxx.shape[0]
    sxx = kxx.sum() - np.trace(kxx)
    syy = kyy.sum() - np.trace(kyy)
    return float((sxx + syy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def kid_values(
    x: np.ndarray, y: np.ndarray, subsets: int = SUBSETS, subset_size: int | None = None,
    seed: int = SEED,
) -> np.ndarray:
    """The ``subsets`` MMD^2_u draws between rows of ``x`` and ``y`` (float64).

    ``subset_size`` None: min(MAX_SUBSET_SIZE, len(x), len(y)).
    """
    nx, ny, d = len(x), len(y), x.shape[1]
    m = min(MAX_SUBSET_SIZE, nx, ny) if subset_size is None else int(subset_size)
    rng = np.random.RandomState(seed)
    # RandomState.choice(n, m, replace=False) is permutation(n)[:m] (numpy's mtrand), the
    # same stream drawn without choice's per-call overhead
    draws = [(rng.permutation(nx)[:m], rng.permutation(ny)[:m]) for _ in range(subsets)]
    out = np.empty(subsets)
    if nx * nx + ny * ny + nx * ny <= 3 * subsets * m * m:
        kxx, kyy, kxy = poly_kernel(x, x, d), poly_kernel(y, y, d), poly_kernel(x, y, d)
        a_all = np.array([a for a, _ in draws]).reshape(subsets, m)
        b_all = np.array([b for _, b in draws]).reshape(subsets, m)
        step = max(1, GATHER_ENTRIES // (m * m))
        for lo in range(0, subsets, step):
            a, b = a_all[lo:lo + step], b_all[lo:lo + step]
            sxx = kxx[a[:, :, None], a[:, None, :]].sum(axis=(1, 2)) - kxx[a, a].sum(axis=1)
            syy = kyy[b[:, :, None], b[:, None, :]].sum(axis=(1, 2)) - kyy[b, b].sum(axis=1)
            sxy = kxy[a[:, :, None], b[:, None, :]].sum(axis=(1, 2))
            out[lo:lo + step] = (sxx + syy) / (m * (m - 1)) - 2.0 * sxy / (m * m)
    else:
        for i, (a, b) in enumerate(draws):
            xa, yb = x[a], y[b]
            out[i] = mmd2_unbiased(poly_kernel(xa, xa, d), poly_kernel(xa, yb, d),
                                   poly_kernel(yb, yb, d))
    return out


class Kid(Measure):
    name = "kid"
    help = ("kernel distance: unbiased MMD^2, cubic polynomial kernel, mean and std over "
            f"{SUBSETS} subsets of min({MAX_SUBSET_SIZE}, sides) atoms (torch-fidelity's KID)")
    spread_name = "std over subsets"
    stable_classes = 48  # reports/measure_sizes/thresholds.txt (25% tolerance)

    def __init__(self, subsets: int = SUBSETS, seed: int = SEED) -> None:
        self.subsets = subsets
        self.seed = seed

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "subsets": self.subsets, "max_subset_size": MAX_SUBSET_SIZE,
                "seed": self.seed, "kernel": "(x.y/d+1)^3"}

    def blas_size(self, n_a: int, n_b: int, dim: int) -> int | None:
        return min(n_a, n_b, MAX_SUBSET_SIZE)

    def _compute(self, stats, ia, ib, mode, eps) -> MeasureValue:
        v = kid_values(atoms(stats, np.sort(ia), mode), atoms(stats, np.sort(ib), mode),
                       self.subsets, seed=self.seed)
        return MeasureValue(float(v.mean()), float(v.std()))
