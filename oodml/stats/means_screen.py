"""First-order class-means distance estimates for ranking a greedy walk's moves at SOP scale."""

from __future__ import annotations

import numpy as np

from oodml.errors import ConfigError
from oodml.stats.class_stats import SplitLists
from oodml.stats.gaussian import require_two
from oodml.stats.means_distance import MeansDistance, SplitAnchor


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

    def _use(self, split: SplitAnchor | None) -> None:
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
            require_two(n2, n2, "classes")
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
