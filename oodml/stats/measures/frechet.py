"""``frechet``: today's Fréchet distance (the default), bit for bit.

Between two Gaussians N(mu_a, S_a) and N(mu_b, S_b) fitted to the atoms of each side,
|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) (= FID in samples mode; over
class means with eps = 1e-8 on both diagonals in class-means mode, as the ooDML study). Sets
of distinct classes go through the same routes as before the measure registry existed
(:class:`~oodml.stats.modes.DistanceMode`), so every published number is unchanged;
multisets (bootstrap draws) through :func:`~oodml.stats.gaussian.frechet_distance_samples` on
the repeated atoms.
"""

from __future__ import annotations

import numpy as np

from oodml.stats.blas_threads import blas_threads_for
from oodml.stats.gaussian import frechet_distance_samples
from oodml.stats.measures.base import Measure, MeasureValue, SplitDistance, atoms
from oodml.stats.modes import distance_mode


class Frechet(Measure):
    name = "frechet"
    help = "Fréchet distance between Gaussians fitted to each side (the default; FID)"
    stable_classes = 32  # reports/measure_sizes/thresholds.txt (25% tolerance)

    def blas_size(self, n_a: int, n_b: int, dim: int) -> int | None:
        return None  # today's routes set their own thread counts (same bits as before)

    def _compute(self, stats, ia, ib, mode, eps) -> MeasureValue:
        dm = distance_mode(mode)
        distinct = len(np.unique(ia)) == len(ia) and len(np.unique(ib)) == len(ib)
        if distinct and mode == "class-means":
            value = stats.means_distance(dm.eps(eps)).distance(ia, ib)
        elif distinct:
            value = dm.distance(stats, ia, ib, eps)
        else:
            with blas_threads_for(len(ia) + len(ib) if mode == "class-means" else stats.dim):
                value = frechet_distance_samples(
                    atoms(stats, ia, mode), atoms(stats, ib, mode), eps=dm.eps(eps)
                )
        return MeasureValue(float(value))

    def evaluator(self, stats, train, test, mode="class-means", eps=None) -> SplitDistance:
        self.check_mode(mode)
        return distance_mode(mode).evaluator(stats, train, test, eps)

    def size_warnings(self, n_a, n_b, mode, dim, images=(0, 0)) -> list[str]:
        out = super().size_warnings(n_a, n_b, mode, dim, images)
        if mode == "samples" and 0 < min(images) < dim:
            out.append(
                f"a side has {min(images)} images in {dim} dimensions: its samples-mode "
                "covariance is singular and the Fréchet distance is biased; use more images, "
                "class-means mode or another measure (kid)"
            )
        return out
