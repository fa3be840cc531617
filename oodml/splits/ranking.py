"""The heads of the ladder procedures' candidate rankings, exact, without every norm.

Both procedures rank train position p by a_p = |x_p - mu_test| - |x_p - mu_train| and test
position q by b_q = |y_q - mu_train| - |y_q - mu_test| (:func:`scores`), but only ever look at
the first few entries of each order (oodml: s + H; greedy: the top ``removal_candidates``).
Computing every norm costs four passes over the C x D class means per step (0.8 s at SOP
scale), more than the exact distance. Below ``FULL_BELOW`` (16) classes a side, when the two
sides hold fewer than ``FULL_FRACTION`` (1/4) of the C classes (the one product below runs
over all C of them), and for vectors that are not float64 (the bounds below assume float64),
every score is computed. (Measured: 200 x 2048 means, 25-63 classes a side, the bounded
route 2-3x faster; 136 x 1280, 8-63 a side, even.)

:class:`Ranker` returns the same heads from one product per side, |x - mu|^2 = |x|^2 -
2 x.mu + |mu|^2 with |x|^2 computed once, and a rigorous bound E_p on how far that estimate
can be from the value :func:`scores` computes (float64 dot products of length D err by at
most (D + 2) u (|x| + |mu|)^2, u = 2^-53; the direct norm by (D + 2) u |x - mu|; both are
doubled for safety), plus the effect of its means: they are running sums moved from the
previous call's split, within ((n + U)^2 / n + n + 2) u |max_c |x_c|| of the ones
:func:`scores` computes (U class updates since the sums were built; every partial sum is at
most (n + U) max |x| in each coordinate). Every position whose interval [a^ - E, a^ + E]
can reach the K-th best upper end gets its score from direct norms, with its own bound; a
position left out has a score strictly worse than K others. The head is sorted from the
direct norms, and it is used only if every neighbouring pair in it is decided: the values
differ by more than both bounds, or the two vectors are identical (their scores then tie
exactly under any computation, and the tie rule decides). Otherwise (never seen outside
constructed near-ties) every score is computed as :func:`scores` does. So the head, ties
included, is the one the full sort gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

FULL_BELOW = 16
FULL_FRACTION = 0.25
_U = float(np.finfo(np.float64).eps) / 2


def scores(vectors: np.ndarray, train: Sequence[int], test: Sequence[int]):
    """(a, b): the ranking scores of every train and test position (the definition)."""
    x, y = vectors[list(train)], vectors[list(test)]
    mu_train, mu_test = x.mean(axis=0), y.mean(axis=0)
    a = np.linalg.norm(x - mu_test, axis=1) - np.linalg.norm(x - mu_train, axis=1)
    b = np.linalg.norm(y - mu_train, axis=1) - np.linalg.norm(y - mu_test, axis=1)
    return a, b


Tie = Callable[[int], object]


class Ranker:
    """Heads of the rankings of the splits of one set of class vectors (C x D).

    Keeps the per-side sums of the previous call and moves them to the next split's classes
    (rebuilt after ``REBUILD_UPDATES`` class updates), so a call costs one pass over the
    vectors (C x D times D x 2) instead of gathering both sides.
    """

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self.bounded = vectors.dtype == np.float64  # the error bounds assume float64
        self.sqnorms = np.einsum("ij,ij->i", vectors, vectors)
        self.norms = np.sqrt(self.sqnorms)
        self.colmax = float(np.linalg.norm(np.abs(vectors).max(axis=0))) if vectors.size else 0.0
        self._sums: list[tuple[set[int], np.ndarray]] | None = None
        self._updates = 0
        self.fallbacks = 0

    def heads(
        self,
        train: Sequence[int],
        test: Sequence[int],
        length: int,
        reverse: bool,
        ties: tuple[Tie, Tie] | None = None,
    ) -> tuple[list[int], list[int]]:
        """The first ``length`` positions of the train and the test order.

        Ascending by score (descending if ``reverse``); ties by ``ties[side](position)`` when
        given, else as numpy's stable argsort and its reversal order them (by position,
        descending when reversed).
        """
        tie_a, tie_b = ties if ties is not None else (None, None)
        small = len(train) + len(test) < FULL_FRACTION * len(self.vectors)
        if min(len(train), len(test)) < FULL_BELOW or small or not self.bounded:
            return self._full(train, test, length, reverse, tie_a, tie_b)
        mu_train, mu_test, e_mu = self._means(train, test)
        dots = self.vectors @ np.stack([mu_test, mu_train], axis=1)
        out = []
        for idx, near, far, cols, tie in ((train, mu_train, mu_test, (0, 1), tie_a),
                                          (test, mu_test, mu_train, (1, 0), tie_b)):
            rows = np.asarray(idx, dtype=np.int64)
            est, err = _estimate(self.sqnorms[rows], self.norms[rows], dots[rows][:, cols],
                                 far, near)
            err += 4.0 * e_mu
            cand = _reachable(est, err, length, reverse)
            sub = self.vectors[rows[cand]]
            d_far, d_near = np.linalg.norm(sub - far, axis=1), np.linalg.norm(sub - near, axis=1)
            value = d_far - d_near
            bound = 2.0 * (2.0 * e_mu + 2.0 * (sub.shape[1] + 2) * _U * (d_far + d_near)) + 1e-300
            head, order = _sorted_head(cand, value, length, reverse, tie)
            if not _decided(order, length, value, bound, sub):
                self.fallbacks += 1
                return self._full(train, test, length, reverse, tie_a, tie_b)
            out.append(head)
        return out[0], out[1]

    def _full(self, train, test, length, reverse, tie_a, tie_b) -> tuple[list[int], list[int]]:
        """The heads from every score, computed as :func:`scores` defines them."""
        a, b = scores(self.vectors, train, test)
        return (_sorted_head(np.arange(a.size), a, length, reverse, tie_a)[0],
                _sorted_head(np.arange(b.size), b, length, reverse, tie_b)[0])

    def _means(self, train, test) -> tuple[np.ndarray, np.ndarray, float]:
        """(mean of train, mean of test, bound on |mean - the mean :func:`scores` computes|)."""
        new = (set(train), set(test))
        if self._sums is not None:
            changes = [(sorted(n - o), sorted(o - n)) for n, (o, _) in zip(new, self._sums,
                                                                         strict=True)]
            moved = sum(len(j) + len(left) for j, left in changes)
            if moved > min(len(train), len(test)) or self._updates + moved > REBUILD_UPDATES:
                self._sums = None
        if self._sums is None:
            self._sums = [(m, self.vectors[sorted(m)].sum(axis=0)) for m in new]
            self._updates = 0
        else:
            for (joined, left), (_, total) in zip(changes, self._sums, strict=True):
                if joined:
                    total += self.vectors[joined].sum(axis=0)
                if left:
                    total -= self.vectors[left].sum(axis=0)
            self._sums = [(m, total) for m, (_, total) in zip(new, self._sums, strict=True)]
            self._updates += moved
        n, n_min = max(len(train), len(test)), min(len(train), len(test))
        e_mu = ((n + self._updates) ** 2 / n_min + n + 2) * _U * self.colmax
        return self._sums[0][1] / len(train), self._sums[1][1] / len(test), e_mu


REBUILD_UPDATES = 4096


def _estimate(
    sqnorms: np.ndarray, norms: np.ndarray, dots: np.ndarray, far: np.ndarray, near: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(|x - far| - |x - near| from dot products (columns of ``dots``: x.far, x.near), a bound
    on its distance to the direct computation with the same means)."""
    d = far.shape[0]
    parts, err = [], np.zeros(sqnorms.shape[0])
    for k, mu in enumerate((far, near)):
        mm = float(mu @ mu)
        q = sqnorms - 2.0 * dots[:, k] + mm
        e_q = 2.0 * (d + 2) * _U * (norms + np.sqrt(mm)) ** 2
        root = np.sqrt(np.maximum(q, 0.0))
        below = np.sqrt(np.maximum(q - e_q, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            e_root = np.minimum(np.sqrt(e_q), np.where(root + below > 0, e_q / (root + below),
                                                       np.inf))
        err += e_root + 2.0 * (d + 2) * _U * (root + e_root)
        parts.append(root)
    est = parts[0] - parts[1]
    return est, 2.0 * (err + _U * (parts[0] + parts[1])) + 1e-300


def _reachable(est: np.ndarray, err: np.ndarray, length: int, reverse: bool) -> np.ndarray:
    """Positions whose exact score can be among the best ``length`` (ascending order)."""
    if length >= est.size:
        return np.arange(est.size)
    if reverse:
        thr = np.partition(est - err, est.size - length)[est.size - length]
        return np.flatnonzero(est + err >= thr)
    thr = np.partition(est + err, length - 1)[length - 1]
    return np.flatnonzero(est - err <= thr)


def _decided(
    order: list[int], length: int, value: np.ndarray, bound: np.ndarray, rows: np.ndarray
) -> bool:
    """Whether the direct scores put the first ``length`` of ``order`` (indices into
    ``value``) first and in this order: each neighbouring pair of the head, and the head's
    last entry against every other candidate, differ by more than both bounds, or have
    identical vectors (their scores then tie exactly under any computation, and the tie rule
    decides either way)."""
    head, rest = order[:length], np.asarray(order[length:], dtype=np.int64)
    pairs = list(zip(head, head[1:], strict=False))
    if head and rest.size:
        last = head[-1]
        close = np.abs(value[rest] - value[last]) <= bound[rest] + bound[last]
        pairs += [(last, int(k)) for k in rest[close]]
    return all(
        abs(value[i] - value[j]) > bound[i] + bound[j] or np.array_equal(rows[i], rows[j])
        for i, j in pairs
    )


def _sorted_head(
    positions: np.ndarray, values: np.ndarray, length: int, reverse: bool, tie: Tie | None
) -> tuple[list[int], list[int]]:
    """(the first ``length`` positions, the order of all entries as indices into ``values``)."""
    pos = [int(p) for p in positions]
    if tie is not None:
        order = sorted(range(len(pos)),
                       key=lambda i: (-values[i] if reverse else values[i], tie(pos[i])))
    else:
        order = list(np.argsort(values, kind="stable"))
        if reverse:
            order = order[::-1]
    return [pos[i] for i in order[:length]], order
