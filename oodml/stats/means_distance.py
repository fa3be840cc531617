"""The class-means Fréchet distance between subsets of C fixed class means, fast and exact.

:class:`MeansDistance` answers class-means distances between index sets in the <= C-1
dimensional span of the centred class means; on large problems (rank > 512, e.g. SOP) it keeps
running per-side moments (:class:`Moments`) updated by rank-k updates and gets
tr sqrt(S_a S_b) from an anchor split (:class:`SplitAnchor`) through low-rank updates of its
decomposition (:class:`oodml.stats.transport_anchor.TransportAnchor`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg as sla

from oodml.errors import ConfigError
from oodml.stats.blas_threads import blas_threads_for
from oodml.stats.gaussian import (
    frechet_distance_samples,
    moments_cov,
    require_two,
    trace_sqrt_product,
)
from oodml.stats.transport_anchor import MAX_CONDITION, TransportAnchor

CLASS_MEANS_EPS = 1e-8
"""eps added to both covariance diagonals in class-means mode, as the ooDML study did."""
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
    (unbiased covariance + eps*I) of ``means[idx_a]`` and ``means[idx_b]``.

    Why it is exact. Every mean difference and covariance column lies in
    V = span{m_c - m_ref}, dim r <= C-1; on the complement both covariances are eps*I,
    contributing eps + eps - 2 sqrt(eps*eps) = 0. So the distance is computed on
    r-dimensional coordinates ``coords`` (C x r) with the same inner products as the centred
    means (from the eigendecomposition of their C x C Gram matrix; the distance depends on the
    points only through these inner products). With more classes than dimensions (C > D)
    the centred means are used as they are (r = D).

    Running moments. Large problems (r > 512, e.g. SOP: 22,634 classes in 2048-d) keep
    moments per side instead of refitting each Gaussian from its rows. For a side with rows
    x_c (c in A): n = |A|, s = sum x_c, G = sum x_c x_c^T, mean s / n and unbiased covariance
    (G - s s^T / n) / (n - 1). A walk changes a split by a few classes per call, so
    ``distance`` moves the moments from the previous call's sets to the new ones: n, s and
    tr G at once (O(k r)), G itself by one rank-k update, G += X_in^T X_in - X_out^T X_out,
    deferred until an anchor needs it. Coordinates are centred on the mean of all class
    means, which keeps G - s s^T / n free of large cancellations.

    Rebuilds. Rounding accumulates with the updates, so the moments are rebuilt from the rows
    after every 4096 class updates, whenever a call differs from the previous one in more
    classes than it keeps, and whenever the rows that passed through a side weigh more than
    ``MOMENTS_MAX_CANCELLATION`` (64) times what it holds (sum |x|^2 against tr G: an outlier
    class that left would otherwise leave its rounding behind in G).

    Anchors. The mean term and the traces come from the moments; tr sqrt(S_a S_b) from an
    *anchor* (:class:`SplitAnchor`): one split whose pair of covariances was decomposed
    (:class:`oodml.stats.transport_anchor.TransportAnchor`, O(r^3)). A split that differs
    from the anchor in at most ``ANCHOR_MAX_RANK`` - 2 classes gets tr sqrt(S_a S_b) from the
    anchor in O(r^2 m): exact for swaps, and for removals within a proven bound of at most
    ``ANCHOR_MAX_ERROR`` (1e-10) of the distance (see :class:`SplitAnchor`); any other split
    becomes the new anchor.

    Dense route. A split that cannot be an anchor (eps = 0, or S_a S_b with a condition
    number above 1e8) takes the dense O(r^3) route, and so do the next ``ANCHOR_RETRY`` (8)
    dense calls before an anchor is tried again. A side with no more classes than r
    dimensions is singular but for eps, which G - s s^T / n would drown in rounding: such a
    split is refit from its rows before any anchor is consulted.
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
        self.anchor: SplitAnchor | None = None
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
        require_two(ia.size, ib.size, "classes")
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

    def anchor_at(self, idx_a: np.ndarray, idx_b: np.ndarray) -> SplitAnchor:
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
        return SplitAnchor(a, b, self.eps, frechet)

    def _dense_tau(self, a: _Moments, b: _Moments) -> float:
        """tr sqrt(S_a S_b) from the covariances; the split becomes the anchor if it can."""
        self._try_anchor(a, b)
        if self.anchor is not None:
            return self.anchor.frechet.tau
        return trace_sqrt_product(a.cov(self.eps), b.cov(self.eps))

    def _try_anchor(self, a: _Moments, b: _Moments) -> TransportAnchor | None:
        """Decompose the split and make it the anchor when S_a S_b is conditioned well enough
        (``transport_anchor.MAX_CONDITION``); returns the decomposition (usable for screening
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
            self.anchor = SplitAnchor(a, b, self.eps, frechet)
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
        cov = moments_cov(self.n, self.s, self.g)
        cov[np.diag_indices_from(cov)] += eps
        return cov

    def trace(self, eps: float, dim: int) -> float:
        """tr of the unbiased covariance + eps I, from the moments."""
        return (self.trace_g - float(self.s @ self.s) / self.n) / (self.n - 1) + dim * eps


class SplitAnchor:
    """A split whose covariance pair was decomposed, and tr sqrt(S_a' S_b') of splits near it.

    The change as a low-rank term. A side's covariance does not change when every row is
    shifted by the anchor side's mean c = s0 / n0, and in shifted rows x~ = x - c the
    anchor's sum is 0. So after classes X_in join and X_out leave (n0 -> n rows),
    S' = alpha S0 + (1 - alpha) eps I + (X~_in^T X~_in - X~_out^T X~_out - s~ s~^T / n) / (n - 1)
    with alpha = (n0 - 1) / (n - 1) and s~ = sum X~_in - sum X~_out (no large sums that
    cancel, however far the side's mean lies from the origin), i.e.
    S' = alpha (S0 + U C U^T) + delta I with U = [X~_in^T, X~_out^T, s~] (k + 1 columns),
    C = diag(1, -1, -1/n) / (n0 - 1) and delta = (1 - alpha) eps.

    Swaps. tr sqrt(alpha_a X alpha_b Y) = sqrt(alpha_a alpha_b) tr sqrt(X Y), and the
    low-rank part is exact up to rounding (:meth:`TransportAnchor.after`). Swaps keep n, so
    delta = 0 and the result is exact. The rounding grows with the spread rho_hi / rho_lo of
    the change (a class that dominated a direction leaving), so a split whose spread exceeds
    ``ANCHOR_MAX_SPREAD`` (100; walks see 1.03 .. 14) re-anchors.

    Removals. They leave delta = (1 - alpha) eps (SOP: about -1e-12 per class removed) times
    I, a full-rank change. It enters through the first-order term
    tau(delta) ~ tau(0) + delta_a / 2 tr T + delta_b / 2 tr T^-1, with the anchor's transport
    map T (scaled by sqrt(alpha_b / alpha_a)) standing in for the one of the changed pair.

    The error bound. Along the path s delta (s in [0, 1]) the transport map T_s lies (Loewner
    order) between lo T and hi T, where [rho_lo, rho_hi] bounds the low-rank change
    (:meth:`TransportAnchor.after`) and the path moves each A_s = alpha X + s delta I by at
    most a factor 1 +- e, e = |delta| / (eps - delta) (A_0 >= (eps - delta) I since the
    covariance of the means is PSD), so lo = rho_lo sqrt((1 - e_b) / (1 + e_a)) and
    hi = rho_hi sqrt((1 + e_b) / (1 - e_a)). Hence |tr T_s - tr T| <= max(hi - 1, 1 - lo) tr T
    (the same for T^-1 with 1/hi, 1/lo) and the error of tau is at most
    |delta_a| / 2 tr T max(hi - 1, 1 - lo) + |delta_b| / 2 tr T^-1 max(1/lo - 1, 1 - 1/hi).

    Use. :meth:`tau` returns the bound with tau; :class:`MeansDistance` keeps the result only
    when twice the bound is at most ``ANCHOR_MAX_ERROR`` (1e-10) of the distance (SOP walks:
    bounds near 1e-11, measured errors near 1e-15) and otherwise re-anchors. Changes of more
    than ``ANCHOR_MAX_RANK`` columns (k + 1 per changed side), or more than d / 2, return None.
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
