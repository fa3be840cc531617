"""The two set distances, one :class:`DistanceMode` each, used everywhere a mode is named.

Both are Fréchet distances (see :mod:`oodml.stats.gaussian`):

* ``samples``: Gaussians over all images of the two class sets (the usual FID).
* ``class-means``: Gaussians over the class-mean vectors of the two sets, unbiased covariance
  with ``eps = 1e-8`` added to both diagonals, as the ooDML study computed it.

A mode holds its default eps, its exact distance between two class sets of one feature set
(:func:`distance_within`), the distance between two feature sets (:func:`distance_between`,
what ``oodml fid`` computes) and its fast evaluator for the ladder walks, which call the
distance thousands of times (:class:`oodml.stats.means_distance.MeansDistance`,
:class:`oodml.stats.samples_distance.SamplesDistance`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from oodml.errors import ConfigError
from oodml.stats.class_stats import ClassRef, ClassStats, SplitDistance, pooled_distance
from oodml.stats.gaussian import frechet_distance_samples, require_two
from oodml.stats.means_distance import CLASS_MEANS_EPS
from oodml.stats.samples_distance import SAMPLES_EPS, SamplesAdapter

Mode = Literal["class-means", "samples"]
MODES: tuple[str, ...] = ("class-means", "samples")


@dataclass(frozen=True)
class DistanceMode:
    """One set distance: its name, default eps, unit, and its exact and incremental routes.

    ``distance`` is the exact distance between two class index sets of one feature set;
    ``between`` the distance between all classes of two feature sets (what ``oodml fid``
    computes for two folders); ``evaluator`` the fast index-list callable the ladder walks
    call thousands of times, starting from ``train`` vs ``test``; ``screens``: whether the
    batched class-means screen (:func:`oodml.splits.ladder.means_screen`) ranks candidates.
    Get one with :func:`distance_mode`.
    """

    name: str
    default_eps: float
    unit: str
    screens: bool

    def eps(self, eps: float | None) -> float:
        """``eps``, or this mode's default when None; must be a finite number >= 0."""
        if eps is None:
            return self.default_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)):
            raise ConfigError(f"eps={eps!r} must be a number >= 0")
        if not np.isfinite(eps) or eps < 0:
            raise ConfigError(f"eps={eps!r} must be a finite number >= 0")
        return float(eps)

    def distance(
        self, stats: ClassStats, ia: np.ndarray, ib: np.ndarray, eps: float | None = None
    ) -> float:
        raise NotImplementedError

    def between(self, a: ClassStats, b: ClassStats, eps: float | None = None) -> float:
        raise NotImplementedError

    def evaluator(
        self,
        stats: ClassStats,
        train: Sequence[int],
        test: Sequence[int],
        eps: float | None = None,
    ) -> SplitDistance:
        raise NotImplementedError

    def work_dim(self, stats: ClassStats, eps: float | None = None) -> int:
        """Size of the eigenproblems its evaluator solves (sets the BLAS-thread limit)."""
        raise NotImplementedError


class _ClassMeans(DistanceMode):
    def distance(self, stats, ia, ib, eps=None) -> float:
        require_two(len(ia), len(ib), "classes")
        return frechet_distance_samples(stats.means[ia], stats.means[ib], eps=self.eps(eps))

    def between(self, a, b, eps=None) -> float:
        n1, n2 = len(a.classes), len(b.classes)
        require_two(n1, n2, "classes")
        return frechet_distance_samples(a.means, b.means, eps=self.eps(eps))

    def evaluator(self, stats, train, test, eps=None) -> SplitDistance:
        md = stats.means_distance(self.eps(eps))
        return lambda x, y: md.distance(x, y)

    def work_dim(self, stats, eps=None) -> int:
        return stats.means_distance(self.eps(eps)).rank


class _Samples(DistanceMode):
    def distance(self, stats, ia, ib, eps=None) -> float:
        pa, pb = stats.pooled(ia), stats.pooled(ib)
        return pooled_distance(*pa.moments, *pb.moments, self.eps(eps))

    def between(self, a, b, eps=None) -> float:
        require_two(len(a.features), len(b.features), "images")
        return frechet_distance_samples(a.features, b.features, eps=self.eps(eps))

    def evaluator(self, stats, train, test, eps=None) -> SplitDistance:
        return SamplesAdapter(stats, train, test, self.eps(eps))

    def work_dim(self, stats, eps=None) -> int:
        return stats.dim


DISTANCE_MODES: dict[str, DistanceMode] = {
    "class-means": _ClassMeans("class-means", CLASS_MEANS_EPS, "classes", True),
    "samples": _Samples("samples", SAMPLES_EPS, "images", False),
}


def distance_mode(name: str) -> DistanceMode:
    """The :class:`DistanceMode` called ``name`` ("class-means" or "samples")."""
    try:
        return DISTANCE_MODES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown distance mode {name!r}; choose one of: {', '.join(MODES)}"
        ) from None


def distance_between(
    a: ClassStats, b: ClassStats, mode: Mode = "samples", eps: float | None = None
) -> float:
    """Fréchet distance between all classes of ``a`` and all classes of ``b`` (two feature
    sets, e.g. two image folders): ``samples`` over all their images, ``class-means`` over
    their class means."""
    return distance_mode(mode).between(a, b, eps)


def distance_within(
    stats: ClassStats,
    a_classes: Iterable[ClassRef],
    b_classes: Iterable[ClassRef],
    mode: Mode = "class-means",
    eps: float | None = None,
) -> float:
    """Fréchet distance between the class sets ``a_classes`` and ``b_classes`` of ``stats``.

    ``mode="class-means"``: Gaussians over the class-mean vectors, eps (default 1e-8)
    added to both diagonals. ``mode="samples"``: Gaussians over all images of each set,
    eps (default 0) added to both diagonals.
    """
    return distance_mode(mode).distance(stats, stats.indices(a_classes),
                                        stats.indices(b_classes), eps)
