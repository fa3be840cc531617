"""First-order class-means distance estimates for ranking a greedy walk's moves at SOP scale."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from oodml.errors import ConfigError
from oodml.stats.class_stats import SplitLists
from oodml.stats.gaussian import require_two
from oodml.stats.means_distance import MeansDistance, SplitAnchor

Pair = tuple[np.ndarray, np.ndarray]


@dataclass
class _Expansion:
    """What the estimates expand around: one anchor split's moments per side (a, b) and its
    transport factors W_a, W_b (see :class:`MeansScreen`).

    ``members``, ``n``, ``s``, ``trace_g``: the anchor's classes, count, sum and tr G per side;
    ``w``: (W_a, W_b); ``ws``: (W_a s_a, W_b s_b); ``trace_t``: (tr T, tr T^-1); ``tau``:
    tr sqrt(S_a S_b); ``proj``: per class c, (W_a x_c, W_b x_c, |x_c|^2), filled on demand.
    """

    split: SplitAnchor
    members: tuple[frozenset[int], frozenset[int]]
    n: tuple[int, int]
    s: Pair
    trace_g: tuple[float, float]
    w: Pair
    ws: Pair
    trace_t: tuple[float, float]
    tau: float
    proj: dict[int, tuple[np.ndarray, np.ndarray, float]] = field(default_factory=dict)

    @classmethod
    def around(cls, split: SplitAnchor) -> _Expansion:
        wa, wb = split.frechet.transport_factors()
        return cls(split, split.members, split.n, split.s, split.trace_g, (wa, wb),
                   (wa @ split.s[0], wb @ split.s[1]), split.trace_t, split.frechet.tau)


class MeansScreen:
    """First-order estimates of class-means distances near an anchor split, for ranking the
    candidate moves of a greedy walk on large problems (r > 512, where the batched Gram screen
    of :func:`oodml.splits.ladder.means_screen` does not fit). Never recorded: every move it
    ranks is checked with the exact :class:`MeansDistance` before it is applied.

    Transport map. With S_a = L L^T (Cholesky) and M = L^T S_b L = Q diag(l) Q^T,
    tau = tr sqrt(S_a S_b) = sum sqrt(l). Its derivative is
    d tau = 1/2 tr(T dS_a) + 1/2 tr(T^-1 dS_b), with
    T = S_a^-1/2 (S_a^1/2 S_b S_a^1/2)^1/2 S_a^-1/2 the optimal-transport map. For any factor
    L, T = L^-T Q diag(l^1/2) Q^T L^-1 = W_a^T W_a with W_a = diag(l^1/4) Q^T L^-1, and
    T^-1 = W_b^T W_b with W_b = diag(l^-1/4) Q^T L^T.

    A move. It changes a side's moments (n, s, G) to (n', s', G + X_in^T X_in - X_out^T X_out).
    Writing G = (n - 1)(S - eps I) + s s^T / n, the covariance change is
    dS = c (S - eps I) + (s s^T / n + X_in^T X_in - X_out^T X_out - s' s'^T / n') / (n' - 1)
    with c = (n - 1) / (n' - 1) - 1, so
    tr(T dS_a) = c (tau - eps tr T)
    + (|W_a s|^2 / n + sum_in |W_a x|^2 - sum_out |W_a x|^2 - |W_a s'|^2 / n') / (n' - 1):
    O(k r) per candidate after O(r^2) per moved class.

    The estimate. d' = |s_a'/n_a' - s_b'/n_b'|^2 + tr S_a' + tr S_b' - 2 (tau + d tau); the
    mean term and the traces are exact.

    The anchor. It is the evaluator's (:meth:`MeansDistance.anchor_at`, shared with the exact
    distances). Once a batch's candidates differ from it in more than ``refresh`` classes it
    moves to the batch's first candidate (one move from the current split), and it follows
    the evaluator whenever that re-anchors elsewhere. Should no anchor be possible (a
    Cholesky failure), it ranks by exact distances (``exact``) from then on, so one walk
    never mixes the two kinds of value in a ranking after that point.

    Bias. tau is concave, so the neglected second-order term makes every estimate of a moved
    class too low by a similar amount: the estimates rank candidates but their gain over the
    current distance means nothing (``ranks_only``), and the walk verifies the best few.
    """

    def __init__(self, md: MeansDistance, refresh: int = 48) -> None:
        if not md.incremental:
            raise ConfigError("MeansScreen is for large problems (rank > 512); use the Gram screen")
        self.md = md
        self.refresh = refresh
        self._anchor: _Expansion | None = None
        self.anchors = 0
        self.exact = False

    @property
    def ranks_only(self) -> bool:
        """True: first-order estimates are biased low, so only their order is used."""
        return True

    def __call__(
        self, trains: Sequence[Sequence[int]], tests: Sequence[Sequence[int]],
        around: SplitLists | None = None,
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
        members = self._anchor.members
        return len(a ^ members[0]) + len(b ^ members[1]) > self.refresh

    def _use(self, split: SplitAnchor | None) -> None:
        """Estimate around ``split`` from now on (no-op for None or the current anchor)."""
        if split is None or (self._anchor is not None and self._anchor.split is split):
            return
        self._anchor = _Expansion.around(split)
        self.anchors += 1

    def _proj(self, c: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(W_a x_c, W_b x_c, |x_c|^2) for class c, cached per anchor."""
        an = self._anchor
        got = an.proj.get(c)
        if got is None:
            x = self.md.coords[c]
            got = (an.w[0] @ x, an.w[1] @ x, float(x @ x))
            an.proj[c] = got
        return got

    def _estimate(self, a: set[int], b: set[int]) -> float:
        """d' for the split ``a`` vs ``b`` (see the class docstring): per side, the moments
        after the move and tr(T dS) from the anchor's projections."""
        an = self._anchor
        eps, r = self.md.eps, self.md.rank
        coords = self.md.coords
        means, trace, dtau = [], 0.0, 0.0
        for k, new in enumerate((a, b)):
            old = an.members[k]
            add, rem = sorted(new - old), sorted(old - new)
            n, s = an.n[k], an.s[k]
            n_new = n + len(add) - len(rem)
            require_two(n_new, n_new, "classes")
            s_new = s + coords[add].sum(axis=0) - coords[rem].sum(axis=0) if add or rem else s
            ws_new = an.ws[k].copy()
            sq_in = sq_out = trace_change = 0.0
            for c, sign in [(c, 1.0) for c in add] + [(c, -1.0) for c in rem]:
                pa, pb, xx = self._proj(c)
                p = pa if k == 0 else pb
                ws_new += sign * p
                if sign > 0:
                    sq_in += float(p @ p)
                else:
                    sq_out += float(p @ p)
                trace_change += sign * xx
            means.append(s_new / n_new)
            trace_g_new = an.trace_g[k] + trace_change
            trace += (trace_g_new - float(s_new @ s_new) / n_new) / (n_new - 1) + r * eps
            c_scale = (n - 1) / (n_new - 1) - 1.0
            ws = an.ws[k]
            tr_t_ds = c_scale * (an.tau - eps * an.trace_t[k]) + (
                float(ws @ ws) / n + sq_in - sq_out - float(ws_new @ ws_new) / n_new
            ) / (n_new - 1)
            dtau += 0.5 * tr_t_ds
        diff = means[0] - means[1]
        return float(diff @ diff) + trace - 2.0 * (an.tau + dtau)
