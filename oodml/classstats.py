"""Per-class feature statistics, incremental pooled Gaussians and distances between class sets.

Two set distances (both Fréchet distances, see :mod:`oodml.frechet`):

* ``samples``: Gaussians over all images of the two class sets (the usual FID).
* ``class-means``: Gaussians over the class-mean vectors of the two sets, unbiased covariance
  with ``eps = 1e-8`` added to both diagonals, as the ooDML study computed it.

Fast evaluators for the split ladders, which call the distance thousands of times:

:class:`DistanceMode` (:func:`distance_mode`) holds each mode's default eps, its exact
distance (:meth:`ClassStats.distance`), the distance between two feature sets
(:func:`distance_between`, what ``oodml fid`` computes) and its fast evaluator:

* :class:`MeansDistance` answers class-means distances between index sets in the <= C-1
  dimensional span of the centred class means (exact, see its docstring); on large problems
  (rank > 512, e.g. SOP) it keeps running per-side moments updated by rank-k updates.
* :class:`MeansScreen` ranks greedy's candidate moves on large problems by a first-order
  expansion of tr sqrt(S_a S_b) around an anchor split (ranking only; never recorded).
* :class:`SamplesDistance` keeps a train and a test :class:`PooledGaussian`; moving or removing
  a class touches only that class's rows, and :meth:`SamplesDistance.peek` evaluates a
  candidate move without committing it.

Per-class Gram matrices ``X_c^T X_c`` are computed on demand from that class's rows (centred on
the global mean for numerical stability) and kept in a small LRU cache; C x D x D is never stored.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg as sla

from oodml.errors import ConfigError
from oodml.frechet import (
    blas_threads_for,
    frechet_distance,
    frechet_distance_samples,
    trace_sqrt_product,
)
from oodml.frechet_update import MAX_CONDITION, TransportAnchor

Mode = Literal["class-means", "samples"]
MODES: tuple[str, ...] = ("class-means", "samples")
CLASS_MEANS_EPS = 1e-8
SAMPLES_EPS = 0.0
ClassRef = str | int | np.integer
SplitDistance = Callable[[Sequence[int], Sequence[int]], float]
SplitLists = tuple[Sequence[int], Sequence[int]]
"""A (train, test) split as class index lists (what screens are told a batch came from)."""


class ClassStats:
    """Counts, means and on-demand Gram matrices of every class of a feature set.

    Build with :meth:`from_features`. ``classes`` is the sorted tuple of class names;
    ``counts[i]`` and ``means[i]`` (float64) belong to ``classes[i]``. Methods taking classes
    accept names or integer indices into ``classes``.
    """

    def __init__(
        self,
        features: np.ndarray,
        classes: tuple,
        rows: tuple[np.ndarray, ...],
        gram_cache_bytes: int = 256 * 2**20,
    ) -> None:
        self._features = features
        self.classes = classes
        self._rows = rows
        self._index = {c: i for i, c in enumerate(classes)}
        self.dim = int(features.shape[1])
        self.center = features.mean(axis=0, dtype=np.float64)
        self.counts = np.array([len(r) for r in rows], dtype=np.int64)
        self.sums = np.stack([self._centred(i).sum(axis=0) for i in range(len(classes))])
        self.means = self.center + self.sums / self.counts[:, None]
        self._gram_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._gram_cache_bytes = gram_cache_bytes
        self._means_distance: dict[float, MeansDistance] = {}

    @classmethod
    def from_features(
        cls, features: np.ndarray, labels: Sequence, *, gram_cache_bytes: int = 256 * 2**20
    ) -> ClassStats:
        """Statistics of ``features`` (N x D, any float dtype; not copied) grouped by ``labels``
        (one class name per row)."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[0] != len(labels):
            raise ConfigError(
                f"features of shape {features.shape} do not match {len(labels)} labels; "
                "pass one label per feature row"
            )
        if not np.isfinite(features).all():
            raise ConfigError("features contain NaN or inf; recompute them (oodml features)")
        classes = tuple(sorted(set(labels)))
        index = {c: i for i, c in enumerate(classes)}
        label_idx = np.fromiter((index[lab] for lab in labels), dtype=np.int64, count=len(labels))
        order = np.argsort(label_idx, kind="stable")
        bounds = np.searchsorted(label_idx[order], np.arange(len(classes) + 1))
        rows = tuple(order[bounds[i] : bounds[i + 1]] for i in range(len(classes)))
        return cls(features, classes, rows, gram_cache_bytes)

    def index(self, c: ClassRef) -> int:
        """Integer index of class ``c`` (a name, or an index that is passed through)."""
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= int(c) < len(self.classes):
                raise ConfigError(f"class index {c} out of range 0..{len(self.classes) - 1}")
            return int(c)
        try:
            return self._index[c]
        except KeyError:
            raise ConfigError(f"unknown class {c!r}; it is not in this feature set") from None

    def indices(self, classes: Iterable[ClassRef]) -> np.ndarray:
        """Integer indices (int64 array) of ``classes``."""
        return np.array([self.index(c) for c in classes], dtype=np.int64)

    def _centred(self, i: int) -> np.ndarray:
        return self._features[self._rows[i]].astype(np.float64) - self.center

    def gram(self, c: ClassRef) -> np.ndarray:
        """X_c^T X_c (D x D float64) of class ``c``'s rows centred on the global mean.

        Read-only: the array may be shared through the cache.
        """
        i = self.index(c)
        g = self._gram_cache.get(i)
        if g is not None:
            self._gram_cache.move_to_end(i)
            return g
        x = self._centred(i)
        g = x.T @ x
        g.flags.writeable = False
        if g.nbytes <= self._gram_cache_bytes:
            while (
                self._gram_cache and (len(self._gram_cache) + 1) * g.nbytes > self._gram_cache_bytes
            ):
                self._gram_cache.popitem(last=False)
            self._gram_cache[i] = g
        return g

    def pooled(self, classes: Iterable[ClassRef]) -> PooledGaussian:
        """A :class:`PooledGaussian` over all images of ``classes``."""
        return PooledGaussian(self, classes)

    @property
    def features(self) -> np.ndarray:
        """The N x D feature rows this object was built from (not copied; do not modify)."""
        return self._features

    def distance(
        self,
        a_classes: Iterable[ClassRef],
        b_classes: Iterable[ClassRef],
        mode: Mode = "class-means",
        eps: float | None = None,
    ) -> float:
        """Fréchet distance between the class sets ``a_classes`` and ``b_classes``.

        ``mode="class-means"``: Gaussians over the class-mean vectors, eps (default 1e-8)
        added to both diagonals. ``mode="samples"``: Gaussians over all images of each set,
        eps (default 0) added to both diagonals. See :class:`DistanceMode`.
        """
        return distance_mode(mode).distance(
            self, self.indices(a_classes), self.indices(b_classes), eps
        )

    def means_distance(self, eps: float = CLASS_MEANS_EPS) -> MeansDistance:
        """The (cached) fast class-means evaluator over this feature set's class means."""
        if eps not in self._means_distance:
            self._means_distance[eps] = MeansDistance(self.means, eps=eps)
        return self._means_distance[eps]

    def samples_distance(
        self, train: Iterable[ClassRef], test: Iterable[ClassRef], eps: float = 0.0
    ) -> SamplesDistance:
        """A new incremental samples-mode evaluator starting from ``train`` vs ``test``."""
        return SamplesDistance(self, train, test, eps=eps)


def _need(na: int, nb: int, what: str) -> None:
    if na < 2 or nb < 2:
        raise ConfigError(
            f"a Fréchet distance needs at least 2 {what} per side, got {na} and {nb}; "
            "give each side more classes"
        )


BULK_MIN_CLASSES = 64
BULK_ROWS = 4096


class PooledGaussian:
    """Mean and unbiased covariance of all images of a changing set of classes.

    ``add(c)`` / ``remove(c)`` update a running count, sum and Gram matrix with that class's
    statistics only. ``n``, ``mean`` and ``cov`` are read on demand.
    """

    def __init__(self, stats: ClassStats, classes: Iterable[ClassRef] = ()) -> None:
        self.stats = stats
        self.members: set[int] = set()
        self.n = 0
        self._sum = np.zeros(stats.dim)
        self._gram = np.zeros((stats.dim, stats.dim))
        classes = list(classes)
        if len(classes) > BULK_MIN_CLASSES:
            self._add_bulk(classes)
        else:
            for c in classes:
                self.add(c)

    def _add_bulk(self, classes: list[ClassRef]) -> None:
        """Add many classes with one Gram product over all their rows (in chunks), instead of
        one D x D Gram and one D x D addition per class: SOP's 11k classes a side would
        otherwise move ~10^11 bytes through memory before the first distance."""
        idx = [self.stats.index(c) for c in classes]
        if len(set(idx)) != len(idx) or self.members.intersection(idx):
            raise ConfigError("a class is listed twice or is already in this set")
        rows = np.concatenate([self.stats._rows[i] for i in idx])
        for start in range(0, rows.size, BULK_ROWS):
            x = self.stats._features[rows[start : start + BULK_ROWS]].astype(np.float64)
            x -= self.stats.center
            self._gram += x.T @ x
        self.members.update(idx)
        self.n += int(self.stats.counts[idx].sum())
        self._sum += self.stats.sums[idx].sum(axis=0)

    def add(self, c: ClassRef) -> None:
        """Add class ``c`` (name or index); it must not already be a member."""
        i = self.stats.index(c)
        if i in self.members:
            raise ConfigError(f"class {self.stats.classes[i]!r} is already in this set")
        self.members.add(i)
        self.n += int(self.stats.counts[i])
        self._sum += self.stats.sums[i]
        self._gram += self.stats.gram(i)

    def remove(self, c: ClassRef) -> None:
        """Remove member class ``c`` (name or index)."""
        i = self.stats.index(c)
        if i not in self.members:
            raise ConfigError(f"class {self.stats.classes[i]!r} is not in this set")
        self.members.remove(i)
        self.n -= int(self.stats.counts[i])
        self._sum -= self.stats.sums[i]
        self._gram -= self.stats.gram(i)
        if not self.members:
            self._sum[:] = 0.0
            self._gram[:] = 0.0

    @property
    def classes(self) -> tuple:
        """Member class names, sorted."""
        return tuple(self.stats.classes[i] for i in sorted(self.members))

    @property
    def mean(self) -> np.ndarray:
        if self.n == 0:
            raise ConfigError("the mean of an empty class set is undefined; add a class first")
        return self.stats.center + self._sum / self.n

    @property
    def cov(self) -> np.ndarray:
        _need(self.n, self.n, "images")
        return _cov(self.n, self._sum, self._gram)

    def copy(self) -> PooledGaussian:
        out = PooledGaussian.__new__(PooledGaussian)
        out.stats, out.members, out.n = self.stats, set(self.members), self.n
        out._sum, out._gram = self._sum.copy(), self._gram.copy()
        return out


def _cov(n: int, s: np.ndarray, g: np.ndarray) -> np.ndarray:
    cov = g - np.outer(s, s / n)
    cov /= n - 1
    cov += cov.T
    cov *= 0.5
    return cov


def _pooled_distance(
    na: int,
    sa: np.ndarray,
    ga: np.ndarray,
    nb: int,
    sb: np.ndarray,
    gb: np.ndarray,
    eps: float | None,
) -> float:
    _need(na, nb, "images")
    ca, cb = _cov(na, sa, ga), _cov(nb, sb, gb)
    if eps:
        idx = np.diag_indices_from(ca)
        ca[idx] += eps
        cb[idx] += eps
    return frechet_distance(sa / na, ca, sb / nb, cb)


MOMENTS_MIN_RANK = 512
MOMENTS_REBUILD_UPDATES = 4096
MOMENTS_MAX_CANCELLATION = 64.0
ANCHOR_MAX_RANK = 64
ANCHOR_MAX_ERROR = 1e-10
ANCHOR_MAX_SPREAD = 100.0
ANCHOR_RETRY = 8


class MeansDistance:
    """Fast exact class-means Fréchet distances between subsets of C fixed class means.

    ``distance(idx_a, idx_b)`` equals the d-dimensional Fréchet distance between the Gaussians
    (unbiased covariance + eps*I) of ``means[idx_a]`` and ``means[idx_b]``. Why it is exact:
    every mean difference and covariance column lies in V = span{m_c - m_ref}, dim r <= C-1;
    on the complement both covariances are eps*I, contributing eps + eps - 2 sqrt(eps*eps) = 0.
    So the distance is computed on r-dimensional coordinates ``coords`` (C x r) with the same
    inner products as the centred means (from the eigendecomposition of their C x C Gram
    matrix; the distance depends on the points only through these inner products). With more
    classes than dimensions (C > D) the centred means are used as they are (r = D).

    Large problems (r > 512, e.g. SOP: 22,634 classes in 2048-d) keep running moments per side
    instead of refitting each Gaussian from its rows. For a side with rows x_c (c in A):
    n = |A|, s = sum x_c, G = sum x_c x_c^T, mean s / n and unbiased covariance
    (G - s s^T / n) / (n - 1). A walk changes a split by a few classes per call, so
    ``distance`` moves the moments from the previous call's sets to the new ones: n, s and
    tr G at once (O(k r)), G itself by one rank-k update, G += X_in^T X_in - X_out^T X_out,
    deferred until an anchor needs it. Rounding accumulates with the updates, so the moments
    are rebuilt from the rows after every 4096 class updates, whenever a call differs from
    the previous one in more classes than it keeps, and whenever the rows that passed through
    a side weigh more than ``MOMENTS_MAX_CANCELLATION`` (64) times what it holds (sum |x|^2
    against tr G: an outlier class that left would otherwise leave its rounding behind in G).
    Coordinates are centred on the mean of all class means, which keeps G - s s^T / n free of
    large cancellations.

    The mean term and the traces come from the moments; tr sqrt(S_a S_b) from an *anchor*
    (:class:`_SplitAnchor`): one split whose pair of covariances was decomposed
    (:class:`oodml.frechet_update.TransportAnchor`, O(r^3)). A split that differs from the
    anchor in at most ``ANCHOR_MAX_RANK`` - 2 classes gets tr sqrt(S_a S_b) from the anchor in
    O(r^2 m): exact for swaps, and for removals within a proven bound of at most
    ``ANCHOR_MAX_ERROR`` (1e-10) of the distance (see :class:`_SplitAnchor`); any other split
    becomes the new anchor. A split that cannot be an anchor (eps = 0, or S_a S_b with a
    condition number above 1e8) takes the dense O(r^3) route, and so do the next
    ``ANCHOR_RETRY`` (8) dense calls before an anchor is tried again. A side with no more
    classes than r dimensions is singular but for eps, which G - s s^T / n would drown in
    rounding: such a split is refit from its rows before any anchor is consulted.
    """

    def __init__(self, means: np.ndarray, eps: float = CLASS_MEANS_EPS) -> None:
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 2 or means.shape[0] < 2:
            raise ConfigError(f"need at least 2 class means, got shape {means.shape}")
        if eps < 0:
            raise ConfigError(f"eps must be >= 0, got {eps}")
        self.eps = float(eps)
        self._sides: list[_Moments] | None = None
        self._updates = 0
        self.anchor: _SplitAnchor | None = None
        self.anchors_built = 0
        self._anchor_retry_in = 0
        centred = means - means.mean(axis=0)
        c, d = centred.shape
        if c > d:
            # More classes than dimensions (SOP: ~22k classes): the centred means themselves are
            # the coordinates; a C x C Gram matrix would be gigabytes and its eigh O(C^3).
            self.coords = np.ascontiguousarray(centred)
            self.rank = d
            return
        gram = centred @ centred.T
        with blas_threads_for(gram.shape[0]):
            lam, u = sla.eigh(gram, check_finite=False, driver="evd")
        lam, u = lam[::-1], u[:, ::-1]
        tol = max(float(lam[0]), 0.0) * gram.shape[0] * np.finfo(np.float64).eps
        r = int((lam > tol).sum())
        self.coords = np.ascontiguousarray(u[:, :r] * np.sqrt(lam[:r]))
        self.rank = r

    @property
    def incremental(self) -> bool:
        """Whether distances come from running moments (r > 512) rather than refits."""
        return self.rank > MOMENTS_MIN_RANK

    def distance(
        self, idx_a: Sequence[int] | np.ndarray, idx_b: Sequence[int] | np.ndarray
    ) -> float:
        """Class-means Fréchet distance between the classes at integer indices ``idx_a`` and
        ``idx_b`` (each at least 2 classes)."""
        ia = np.asarray(idx_a, dtype=np.int64)
        ib = np.asarray(idx_b, dtype=np.int64)
        _need(ia.size, ib.size, "classes")
        if not self.incremental:
            return frechet_distance_samples(self.coords[ia], self.coords[ib], eps=self.eps)
        a, b = self._moments_for(ia, ib)
        if min(a.n, b.n) <= self.rank:
            # a side with no more classes than dimensions: its covariance is singular but for
            # eps, which G - s s^T / n (and any low-rank update of it) would drown in
            # rounding; refit from the rows instead, anchored or not
            return frechet_distance_samples(self.coords[ia], self.coords[ib], eps=self.eps)
        diff = a.s / a.n - b.s / b.n
        rest = float(diff @ diff) + a.trace(self.eps, self.rank) + b.trace(self.eps, self.rank)
        if self.anchor is not None:
            with blas_threads_for(self.rank):
                anchored = self.anchor.tau(self.coords, a, b)
            if anchored is not None:
                tau, error = anchored
                distance = rest - 2.0 * tau
                if 2.0 * error <= ANCHOR_MAX_ERROR * abs(distance):
                    return distance
        with blas_threads_for(self.rank):
            tau = self._dense_tau(a, b)
        return rest - 2.0 * tau

    def anchor_at(self, idx_a: np.ndarray, idx_b: np.ndarray) -> _SplitAnchor:
        """An anchor at the split ``idx_a`` vs ``idx_b``: it becomes the evaluator's anchor when
        the split allows one; else one kept only for first-order screening (no conditioning
        limit, never used for exact distances)."""
        a, b = self._moments_for(np.asarray(idx_a), np.asarray(idx_b))
        if self.anchor is not None and self.anchor.members == (a.members, b.members):
            return self.anchor
        with blas_threads_for(self.rank):
            frechet = self._try_anchor(a, b)
            if self.anchor is not None:
                return self.anchor
            if frechet is None:
                frechet = TransportAnchor(a.cov(self.eps), b.cov(self.eps),
                                          max(self.eps, 1e-300), max_condition=None)
        return _SplitAnchor(a, b, self.eps, frechet)

    def _dense_tau(self, a: _Moments, b: _Moments) -> float:
        """tr sqrt(S_a S_b) from the covariances; the split becomes the anchor if it can."""
        self._try_anchor(a, b)
        if self.anchor is not None:
            return self.anchor.frechet.tau
        return trace_sqrt_product(a.cov(self.eps), b.cov(self.eps))

    def _try_anchor(self, a: _Moments, b: _Moments) -> TransportAnchor | None:
        """Decompose the split and make it the anchor when S_a S_b is conditioned well enough
        (``frechet_update.MAX_CONDITION``); returns the decomposition (usable for screening
        either way), or None when none was made: eps = 0, a failed Cholesky factor, or within
        ``ANCHOR_RETRY`` dense calls of a refusal (an ill-conditioned split's neighbours
        usually are too, and each try costs an eigendecomposition)."""
        self.anchor = None
        if self.eps <= 0:
            return None
        if self._anchor_retry_in > 0:
            self._anchor_retry_in -= 1
            return None
        try:
            frechet = TransportAnchor(a.cov(self.eps), b.cov(self.eps), self.eps / 2,
                                      max_condition=None)
        except np.linalg.LinAlgError:
            self._anchor_retry_in = ANCHOR_RETRY
            return None
        if frechet.condition <= MAX_CONDITION:
            self.anchor = _SplitAnchor(a, b, self.eps, frechet)
            self.anchors_built += 1
        else:
            self._anchor_retry_in = ANCHOR_RETRY
        return frechet

    def _moments_for(self, ia: np.ndarray, ib: np.ndarray) -> list[_Moments]:
        new = [set(ia.tolist()), set(ib.tolist())]
        if len(new[0]) != ia.size or len(new[1]) != ib.size or new[0] & new[1]:
            raise ConfigError("the two class index sets must be disjoint and without repeats")
        if self._sides is not None:
            changes = [(sorted(n - o.members), sorted(o.members - n))
                       for n, o in zip(new, self._sides, strict=True)]
            moved = sum(len(add) + len(rem) for add, rem in changes)
            kept = sum(len(n & o.members) for n, o in zip(new, self._sides, strict=True))
            if moved <= kept and self._updates + moved <= MOMENTS_REBUILD_UPDATES:
                for side, (add, rem) in zip(self._sides, changes, strict=True):
                    side.update(self.coords, add, rem)
                self._updates += moved
                if all(side.mass <= MOMENTS_MAX_CANCELLATION * side.trace_g
                       for side in self._sides):
                    return self._sides
        self._sides = [_Moments.of(self.coords, sorted(m)) for m in new]
        self._updates = 0
        return self._sides


class _Moments:
    """Count n, sum s and second moment G of a set of rows of ``coords`` (see MeansDistance).

    G is needed only to build an anchor, so class changes are queued and applied to G in one
    product when it is read; tr G is kept up to date on every change.
    """

    def __init__(self, coords: np.ndarray, members: set[int], n: int, s: np.ndarray,
                 g: np.ndarray) -> None:
        self.coords = coords
        self.members, self.n, self.s, self._g = members, n, s, g
        self.trace_g = float(np.trace(g))
        self.mass = self.trace_g  # sum of |x|^2 over every row ever added or taken away
        self._pending: dict[int, int] = {}

    @classmethod
    def of(cls, coords: np.ndarray, idx: list[int]) -> _Moments:
        x = coords[idx]
        return cls(coords, set(idx), len(idx), x.sum(axis=0), x.T @ x)

    @property
    def g(self) -> np.ndarray:
        if self._pending:
            rows = sorted(self._pending)
            signs = np.array([self._pending[c] for c in rows], dtype=np.float64)
            x = self.coords[rows]
            self._g += x.T @ (signs[:, None] * x)
            self._pending.clear()
        return self._g

    def update(self, coords: np.ndarray, add: list[int], rem: list[int]) -> None:
        for rows, sign in ((add, 1), (rem, -1)):
            if not rows:
                continue
            x = coords[rows]
            self.s += sign * x.sum(axis=0)
            squares = float(np.einsum("ij,ij->", x, x))
            self.trace_g += sign * squares
            self.mass += squares
            for c in rows:
                net = self._pending.get(c, 0) + sign
                if net:
                    self._pending[c] = net
                else:
                    del self._pending[c]
        self.members.update(add)
        self.members.difference_update(rem)
        self.n += len(add) - len(rem)

    def cov(self, eps: float) -> np.ndarray:
        cov = _cov(self.n, self.s, self.g)
        cov[np.diag_indices_from(cov)] += eps
        return cov

    def trace(self, eps: float, dim: int) -> float:
        """tr of the unbiased covariance + eps I, from the moments."""
        return (self.trace_g - float(self.s @ self.s) / self.n) / (self.n - 1) + dim * eps


class _SplitAnchor:
    """A split whose covariance pair was decomposed, and tr sqrt(S_a' S_b') of splits near it.

    A side's covariance does not change when every row is shifted by the anchor side's mean
    c = s0 / n0, and in shifted rows x~ = x - c the anchor's sum is 0. So after classes X_in
    join and X_out leave (n0 -> n rows), S' = alpha S0 + (1 - alpha) eps I + (X~_in^T X~_in
    - X~_out^T X~_out - s~ s~^T / n) / (n - 1) with alpha = (n0 - 1) / (n - 1) and
    s~ = sum X~_in - sum X~_out (no large sums that cancel, however far the side's mean lies
    from the origin), i.e. S' = alpha (S0 + U C U^T) + delta I with U = [X~_in^T, X~_out^T,
    s~] (k + 1 columns), C = diag(1, -1, -1/n) / (n0 - 1) and delta = (1 - alpha) eps.
    tr sqrt(alpha_a X alpha_b Y) = sqrt(alpha_a alpha_b) tr sqrt(X Y), and the low-rank part
    is exact up to rounding (:meth:`TransportAnchor.after`). That rounding grows with the
    spread rho_hi / rho_lo of the change (a class that dominated a direction leaving), so a
    split whose spread exceeds ``ANCHOR_MAX_SPREAD`` (100; walks see 1.03 .. 14) re-anchors.

    Swaps keep n, so delta = 0 and the result is exact. Removals leave delta = (1 - alpha) eps
    (SOP: about -1e-12 per class removed) times I, a full-rank change. It enters through the
    first-order term tau(delta) ~ tau(0) + delta_a / 2 tr T + delta_b / 2 tr T^-1, with the
    anchor's transport map T (scaled by sqrt(alpha_b / alpha_a)) standing in for the one of the
    changed pair. The error has a bound: along the path s delta (s in [0, 1]) the transport map
    T_s lies (Loewner order) between lo T and hi T, where [rho_lo, rho_hi] bounds the low-rank
    change (:meth:`TransportAnchor.after`) and the path moves each A_s = alpha X + s delta I by at
    most a factor 1 +- e, e = |delta| / (eps - delta) (A_0 >= (eps - delta) I since the
    covariance of the means is PSD), so lo = rho_lo sqrt((1 - e_b) / (1 + e_a)) and
    hi = rho_hi sqrt((1 + e_b) / (1 - e_a)). Hence |tr T_s - tr T| <= max(hi - 1, 1 - lo) tr T
    (the same for T^-1 with 1/hi, 1/lo) and the error of tau is at most
    |delta_a| / 2 tr T max(hi - 1, 1 - lo) + |delta_b| / 2 tr T^-1 max(1/lo - 1, 1 - 1/hi).
    :meth:`tau` returns it with tau; :class:`MeansDistance` keeps the result only when twice the
    bound is at most ``ANCHOR_MAX_ERROR`` (1e-10) of the distance (SOP walks: bounds near 1e-11,
    measured errors near 1e-15) and otherwise re-anchors. Changes of more than
    ``ANCHOR_MAX_RANK`` columns (k + 1 per changed side), or more than d / 2, return None.
    """

    def __init__(self, a: _Moments, b: _Moments, eps: float, frechet: TransportAnchor) -> None:
        self.members = (frozenset(a.members), frozenset(b.members))
        self.n = (a.n, b.n)
        self.s = (a.s.copy(), b.s.copy())
        self.trace_g = (a.trace_g, b.trace_g)
        self.eps = eps
        self.frechet = frechet
        self.trace_t = frechet.transport_traces()

    def changes(self, members: tuple[set[int], set[int]]) -> list[tuple[list[int], list[int]]]:
        """(joined, left) class indices per side, relative to the anchor."""
        return [(sorted(m - o), sorted(o - m)) for m, o in zip(members, self.members, strict=True)]

    def tau(
        self, coords: np.ndarray, a: _Moments, b: _Moments
    ) -> tuple[float, float] | None:
        """(tr sqrt(S_a S_b), a bound on its error) for the split with moments ``a``, ``b``, or
        None (re-anchor)."""
        changes = self.changes((a.members, b.members))
        columns = sum(len(j) + len(left) + 1 for j, left in changes if j or left)
        if columns > min(ANCHOR_MAX_RANK, coords.shape[1] // 2):
            return None  # beyond d / 2 columns the dense route is as cheap and better posed
        factors, alphas, deltas = [], [], []
        for (joined, left), side, n0, s0 in zip(changes, (a, b), self.n, self.s, strict=True):
            alpha = (n0 - 1) / (side.n - 1)
            alphas.append(alpha)
            deltas.append((1.0 - alpha) * self.eps)
            if not joined and not left:
                factors += [np.zeros((coords.shape[1], 0)), np.zeros(0)]
                continue
            centre = s0 / n0
            x_in, x_out = coords[joined] - centre, coords[left] - centre
            shift = x_in.sum(axis=0) - x_out.sum(axis=0)
            u = np.concatenate([x_in.T, x_out.T, shift[:, None]], axis=1)
            c = np.concatenate([np.ones(len(joined)), -np.ones(len(left)),
                                [-1.0 / side.n]]) / (n0 - 1)
            factors += [u, c]
        try:
            tau, rho_lo, rho_hi = self.frechet.after(*factors)
        except np.linalg.LinAlgError:
            return None
        if not (rho_lo > 0 and rho_hi <= ANCHOR_MAX_SPREAD * rho_lo):
            return None
        tau *= np.sqrt(alphas[0] * alphas[1])
        if not any(deltas):
            return float(tau), 0.0
        ratio = np.sqrt(alphas[1] / alphas[0])
        correction = 0.5 * (deltas[0] * ratio * self.trace_t[0]
                            + deltas[1] / ratio * self.trace_t[1])
        e_a, e_b = (abs(d) / (self.eps - d) for d in deltas)
        if max(e_a, e_b) >= 1.0:
            return None
        lo = rho_lo * np.sqrt((1.0 - e_b) / (1.0 + e_a))
        hi = rho_hi * np.sqrt((1.0 + e_b) / (1.0 - e_a))
        error = 0.5 * (abs(deltas[0]) * ratio * self.trace_t[0] * max(hi - 1.0, 1.0 - lo)
                       + abs(deltas[1]) / ratio * self.trace_t[1] * max(1.0 / lo - 1.0,
                                                                         1.0 - 1.0 / hi))
        return float(tau + correction), float(error)


class SamplesDistance:
    """Incremental samples-mode distance between a train and a test set of classes.

    Every class of ``stats`` is in exactly one of ``train``, ``test`` or ``removed``.
    ``move(c, to)`` puts class ``c`` on side ``to`` ("train" or "test", from wherever it is),
    ``remove(c)`` takes it out of both; each touches only that class's statistics.
    ``distance()`` is the current distance (cached until the next change);
    ``peek(c, to)`` is the distance after a move (``to=None``: a removal) without applying it;
    ``copy()`` gives an independent evaluator.
    """

    def __init__(
        self,
        stats: ClassStats,
        train: Iterable[ClassRef],
        test: Iterable[ClassRef],
        eps: float = 0.0,
    ) -> None:
        self.stats = stats
        self.eps = float(eps)
        self._sides = {"train": PooledGaussian(stats, train), "test": PooledGaussian(stats, test)}
        if self._sides["train"].members & self._sides["test"].members:
            raise ConfigError("a class cannot be in both train and test")
        self._cached: float | None = None

    @property
    def train(self) -> tuple:
        return self._sides["train"].classes

    @property
    def test(self) -> tuple:
        return self._sides["test"].classes

    @property
    def removed(self) -> tuple:
        used = self._sides["train"].members | self._sides["test"].members
        return tuple(c for i, c in enumerate(self.stats.classes) if i not in used)

    def side_of(self, c: ClassRef) -> str | None:
        """ "train", "test", or None when class ``c`` is removed."""
        i = self.stats.index(c)
        for name, side in self._sides.items():
            if i in side.members:
                return name
        return None

    def _check_side(self, to: str | None) -> None:
        if to is not None and to not in self._sides:
            raise ConfigError(f"unknown side {to!r}; choose 'train' or 'test'")

    def move(self, c: ClassRef, to: str) -> None:
        """Put class ``c`` on side ``to`` ("train" | "test")."""
        self._check_side(to)
        if to is None:
            raise ConfigError("move needs to='train' or to='test'; use remove() to drop a class")
        src = self.side_of(c)
        if src == to:
            return
        if src is not None:
            self._sides[src].remove(c)
        self._sides[to].add(c)
        self._cached = None

    def remove(self, c: ClassRef) -> None:
        """Take class ``c`` out of train and test."""
        src = self.side_of(c)
        if src is not None:
            self._sides[src].remove(c)
            self._cached = None

    def distance(self) -> float:
        if self._cached is None:
            a, b = self._sides["train"], self._sides["test"]
            self._cached = _pooled_distance(a.n, a._sum, a._gram, b.n, b._sum, b._gram, self.eps)
        return self._cached

    def peek(self, c: ClassRef, to: str | None) -> float:
        """Distance if class ``c`` were moved to ``to`` (None = removed); nothing changes."""
        self._check_side(to)
        i = self.stats.index(c)
        src = self.side_of(i)
        if src == to:
            return self.distance()
        n_i, s_i, g_i = int(self.stats.counts[i]), self.stats.sums[i], self.stats.gram(i)
        parts = {}
        for name, side in self._sides.items():
            n, s, g = side.n, side._sum, side._gram
            if name == src:
                n, s, g = n - n_i, s - s_i, g - g_i
            elif name == to:
                n, s, g = n + n_i, s + s_i, g + g_i
            parts[name] = (n, s, g)
        return _pooled_distance(*parts["train"], *parts["test"], self.eps)

    def copy(self) -> SamplesDistance:
        out = SamplesDistance.__new__(SamplesDistance)
        out.stats, out.eps, out._cached = self.stats, self.eps, self._cached
        out._sides = {k: v.copy() for k, v in self._sides.items()}
        return out


class _SamplesAdapter:
    """Index-list distance over :class:`SamplesDistance`.

    Each call moves the incremental evaluator from its last state to the requested one, so
    consecutive calls touch only the few classes that differ (never all features).
    """

    def __init__(self, stats: ClassStats, train, test, eps: float) -> None:
        self._sd = stats.samples_distance(train, test, eps=eps)
        self._train, self._test = set(train), set(test)

    def __call__(self, train: Sequence[int], test: Sequence[int]) -> float:
        new_train, new_test = set(train), set(test)
        for c in sorted(new_train - self._train):
            self._sd.move(c, "train")
        for c in sorted(new_test - self._test):
            self._sd.move(c, "test")
        for c in sorted((self._train | self._test) - (new_train | new_test)):
            self._sd.remove(c)
        self._train, self._test = new_train, new_test
        return self._sd.distance()


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
        _need(len(ia), len(ib), "classes")
        return frechet_distance_samples(stats.means[ia], stats.means[ib], eps=self.eps(eps))

    def between(self, a, b, eps=None) -> float:
        n1, n2 = len(a.classes), len(b.classes)
        _need(n1, n2, "classes")
        return frechet_distance_samples(a.means, b.means, eps=self.eps(eps))

    def evaluator(self, stats, train, test, eps=None) -> SplitDistance:
        md = stats.means_distance(self.eps(eps))
        return lambda x, y: md.distance(x, y)

    def work_dim(self, stats, eps=None) -> int:
        return stats.means_distance(self.eps(eps)).rank


class _Samples(DistanceMode):
    def distance(self, stats, ia, ib, eps=None) -> float:
        pa, pb = stats.pooled(ia), stats.pooled(ib)
        return _pooled_distance(
            pa.n, pa._sum, pa._gram, pb.n, pb._sum, pb._gram, self.eps(eps)
        )

    def between(self, a, b, eps=None) -> float:
        _need(len(a.features), len(b.features), "images")
        return frechet_distance_samples(a.features, b.features, eps=self.eps(eps))

    def evaluator(self, stats, train, test, eps=None) -> SplitDistance:
        return _SamplesAdapter(stats, train, test, self.eps(eps))

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


class MeansScreen:
    """First-order estimates of class-means distances near an anchor split, for ranking the
    candidate moves of a greedy walk on large problems (r > 512, where the batched Gram screen
    of :func:`oodml.splits.ladder.means_screen` does not fit). Never recorded: every move it
    ranks is checked with the exact :class:`MeansDistance` before it is applied.

    Maths. With S_a = L L^T (Cholesky) and M = L^T S_b L = Q diag(l) Q^T,
    tau = tr sqrt(S_a S_b) = sum sqrt(l). Its derivative is d tau = 1/2 tr(T dS_a) +
    1/2 tr(T^-1 dS_b), with T = S_a^-1/2 (S_a^1/2 S_b S_a^1/2)^1/2 S_a^-1/2 the optimal-transport
    map; for any factor L, T = L^-T Q diag(l^1/2) Q^T L^-1 = W_a^T W_a with
    W_a = diag(l^1/4) Q^T L^-1, and T^-1 = W_b^T W_b with W_b = diag(l^-1/4) Q^T L^T.
    A move changes a side's moments (n, s, G) to (n', s', G + X_in^T X_in - X_out^T X_out);
    writing G = (n - 1)(S - eps I) + s s^T / n, the covariance change is
    dS = c (S - eps I) + (s s^T / n + X_in^T X_in - X_out^T X_out - s' s'^T / n') / (n' - 1),
    c = (n - 1) / (n' - 1) - 1, so tr(T dS_a) = c (tau - eps tr T) + (|W_a s|^2 / n
    + sum_in |W_a x|^2 - sum_out |W_a x|^2 - |W_a s'|^2 / n') / (n' - 1): O(k r) per candidate
    after O(r^2) per moved class. The mean term and the traces are exact. The estimate is
    d' = |s_a'/n_a' - s_b'/n_b'|^2 + tr S_a' + tr S_b' - 2 (tau + d tau).

    The anchor is the evaluator's (:meth:`MeansDistance.anchor_at`, shared with the exact
    distances); once a batch's candidates differ from it in more than ``refresh`` classes it
    moves to the batch's first candidate (one move from the current split), and it follows the
    evaluator whenever that re-anchors elsewhere. Should no anchor be possible (a Cholesky
    failure), it ranks by exact distances (``exact``) from then on, so one walk never mixes
    the two kinds of value in a ranking after that point.

    tau is concave, so the neglected second-order term makes every estimate of a moved class
    too low by a similar amount: the estimates rank candidates but their gain over the current
    distance means nothing (``ranks_only``), and the greedy walk verifies the best few exactly.
    """

    ranks_only = True

    def __init__(self, md: MeansDistance, refresh: int = 48) -> None:
        if not md.incremental:
            raise ConfigError("MeansScreen is for large problems (rank > 512); use the Gram screen")
        self.md = md
        self.refresh = refresh
        self._anchor: dict | None = None
        self.anchors = 0
        self.exact = False

    def __call__(
        self, trains: list[list[int]], tests: list[list[int]], around: SplitLists | None = None
    ) -> np.ndarray:
        """Estimates for candidate splits (``around``, the split they came from, is not
        needed: the anchor plays its part)."""
        sets = [(set(a), set(b)) for a, b in zip(trains, tests, strict=True)]
        if not self.exact:
            self._use(self.md.anchor)
            if self._anchor is None or any(self._far(a, b) for a, b in sets):
                try:
                    self._use(self.md.anchor_at(np.asarray(trains[0]), np.asarray(tests[0])))
                except np.linalg.LinAlgError:
                    self.exact = True
        if self.exact:
            return np.array([self.md.distance(a, b) for a, b in zip(trains, tests, strict=True)])
        return np.array([self._estimate(a, b) for a, b in sets])

    def _far(self, a: set[int], b: set[int]) -> bool:
        an = self._anchor
        return len(a ^ an["sets"][0]) + len(b ^ an["sets"][1]) > self.refresh

    def _use(self, split: _SplitAnchor | None) -> None:
        """Estimate around ``split`` from now on (no-op for None or the current anchor)."""
        if split is None or (self._anchor is not None and self._anchor["split"] is split):
            return
        wa, wb = split.frechet.transport_factors()
        self._anchor = {
            "split": split,
            "sets": split.members,
            "n": split.n,
            "s": split.s,
            "trg": split.trace_g,
            "w": (wa, wb),
            "ws": (wa @ split.s[0], wb @ split.s[1]),
            "trw": split.trace_t,
            "tau": split.frechet.tau,
            "proj": {},
        }
        self.anchors += 1

    def _proj(self, c: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(W_a x_c, W_b x_c, |x_c|^2) for class c, cached per anchor."""
        an = self._anchor
        got = an["proj"].get(c)
        if got is None:
            x = self.md.coords[c]
            got = (an["w"][0] @ x, an["w"][1] @ x, float(x @ x))
            an["proj"][c] = got
        return got

    def _estimate(self, a: set[int], b: set[int]) -> float:
        an = self._anchor
        eps, r = self.md.eps, self.md.rank
        coords = self.md.coords
        means, trace, dtau = [], 0.0, 0.0
        for k, new in enumerate((a, b)):
            old = an["sets"][k]
            add, rem = sorted(new - old), sorted(old - new)
            n, s = an["n"][k], an["s"][k]
            n2 = n + len(add) - len(rem)
            _need(n2, n2, "classes")
            s2 = s + coords[add].sum(axis=0) - coords[rem].sum(axis=0) if add or rem else s
            ws2 = an["ws"][k].copy()
            sq_in = sq_out = trg = 0.0
            for c, sign in [(c, 1.0) for c in add] + [(c, -1.0) for c in rem]:
                pa, pb, xx = self._proj(c)
                p = pa if k == 0 else pb
                ws2 += sign * p
                if sign > 0:
                    sq_in += float(p @ p)
                else:
                    sq_out += float(p @ p)
                trg += sign * xx
            means.append(s2 / n2)
            trace += (an["trg"][k] + trg - float(s2 @ s2) / n2) / (n2 - 1) + r * eps
            c_scale = (n - 1) / (n2 - 1) - 1.0
            ws = an["ws"][k]
            dtr = c_scale * (an["tau"] - eps * an["trw"][k]) + (
                float(ws @ ws) / n + sq_in - sq_out - float(ws2 @ ws2) / n2
            ) / (n2 - 1)
            dtau += 0.5 * dtr
        diff = means[0] - means[1]
        return float(diff @ diff) + trace - 2.0 * (an["tau"] + dtau)
