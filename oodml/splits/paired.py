"""Paired bootstrap of distance differences between the splits of a ladder.

Which unit is resampled, and why. The dataset's classes are the sample: they are draws from a
population of classes, and every split of a ladder is a fixed assignment of those same classes
to train, test or removed. One replicate draws C classes with replacement from the dataset's C
classes (count vector ``w``, sum C) and gives that one draw to *every* split: a split's train
side is its train classes with their counts, its test side likewise. Each split's distance is
recomputed on its weighted classes and the differences are taken replicate by replicate.
Because adjacent splits share almost all their classes, most of the resampling noise moves
both distances together and cancels in the difference; resampling each split separately (the
marginal intervals of :mod:`oodml.splits.uncertainty`) keeps that shared noise in each
interval, so overlapping marginal intervals say nothing about the order of two splits. The
splits themselves are held fixed (conditional on the walk's assignment of classes); a
replicate in which some side of some split holds fewer than two distinct classes is drawn
again (probability about n^(1-n) for a side of n classes).

From B replicates of the difference Delta = d_j - d_i:

* the interval is the bias-corrected percentile interval of
  :func:`oodml.splits.uncertainty.interval_from_replicates`;
* the flip probability is the share of bias-corrected replicates Delta + (Delta*_r - mean
  Delta*) on the other side of zero from Delta (<= 0 when Delta > 0): the bootstrap
  probability that the order flips. Its double is a two-sided p-value of "no difference",
  consistent with the interval (p < 1 - level exactly when the interval excludes 0, up to the
  quantile interpolation). With B replicates the smallest non-zero value is 1 / B.
* :func:`holm` adjusts the K - 1 adjacent pairs' p-values for multiplicity (Holm 1979:
  step-down Bonferroni, family-wise error <= alpha under any dependence).

Cost. Class-means mode (a ladder whose splits hold no more classes than feature dimensions):
the Gram matrix G = Y Y^T of the dataset's centred class means is formed once; per replicate
and split the weighted centred cross-products of each side are sub-blocks of G reduced by the
weighted centring factor (:func:`oodml.splits.uncertainty._gram_distance`), so a replicate of
one split is a k-dimensional problem (k ~ 0.63 x the split's classes) whatever the feature
dimension. Otherwise (samples mode; class-means with more classes than dimensions, e.g. SOP)
each side's weighted moments n = sum w_c n_c, s = sum w_c s_c, M = sum w_c X_c^T X_c are
formed for the first split of a replicate and carried to the next split by adding and
subtracting only the classes that changed side (the ladder's splits differ by few classes),
then one D-dimensional Fréchet distance per split.

Linear route (``route="linear"``; class-means, Gram-sized ladders). The exact replicates cost
one k-dimensional eigendecomposition per split and replicate (k ~ 63 a side at CUB size), a
floor of several times the greedy walk's own time at B = 200. The linear route replaces each
replicate by the first-order expansion of the distance in the class weights about w = 1 (the
delta method in bootstrap form; Efron's "infinitesimal jackknife"):

    d*(w) = d + sum_c (w_c - 1) IF_c,   IF_c = dd/dw_c at w = 1,

on the *same* class draws, so the pairing, the interval, the flip probability and Holm are
computed exactly as for the exact replicates. The influences come from one SVD per split
(:func:`influences`). What it leaves out: the second-order terms of the expansion, i.e. the
curvature that gives the exact replicates their bias (removed anyway by the bias-corrected
interval) and part of their skewness. Its coverage is checked like the exact route's
(``tests/test_paired.py`` and ``benchmarks/bench_paired.py --coverage``), and the benchmark
prints both routes' intervals on the same draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from oodml.errors import ConfigError
from oodml.splits.splitfile import DEFAULT_SEED, PairedDiff
from oodml.splits.uncertainty import (
    DEFAULT_BOOTSTRAPS,
    DEFAULT_LEVEL,
    _gram_distance,
    bootstrap_seed,
    interval_from_replicates,
    seed_record,
)
from oodml.stats.blas_threads import blas_threads_for
from oodml.stats.class_stats import ClassStats
from oodml.stats.gaussian import _trace_sqrt_product, frechet_distance
from oodml.stats.means_distance import CLASS_MEANS_EPS
from oodml.stats.modes import MODES

LINEAR_MAX_CLASSES = 4096
"""Most dataset classes the linear route takes (its Gram matrix: 128 MiB at 4096)."""
PAIRED_STREAM = 0x7061697265
"""Second word of the paired bootstrap's seed sequence ([seed, PAIRED_STREAM]); the marginal
intervals use [seed, split id], so the streams never coincide."""
MAX_REDRAWS = 1000


Sides = tuple[Sequence, Sequence]


class PairedLadder:
    """Paired class-bootstrap replicates of the distances of several splits of one dataset.

    ``splits``: (train classes, test classes) per split (names or indices of ``stats``). All
    replicates share one class universe, the dataset's classes (``stats.classes``).
    ``route``: "auto" (the Gram route in class-means mode when no split holds more classes
    than feature dimensions, else dense), "gram" or "dense" (both exact; for tests), or
    "linear" (first-order expansion in the class weights; module docstring; class-means, at
    most LINEAR_MAX_CLASSES classes).
    """

    def __init__(
        self, stats: ClassStats, splits: Sequence[Sides], mode: str = "class-means",
        eps: float | None = None, route: str = "auto",
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown distance mode {mode!r}; choose one of: {', '.join(MODES)}")
        self.stats, self.mode = stats, mode
        self.eps = float(eps) if eps is not None else (CLASS_MEANS_EPS if mode == "class-means"
                                                        else 0.0)
        self.sides = [(stats.indices(a), stats.indices(b)) for a, b in splits]
        for ia, ib in self.sides:
            if len(ia) < 2 or len(ib) < 2:
                raise ConfigError(
                    f"a paired bootstrap needs at least 2 classes per side, got {len(ia)} and "
                    f"{len(ib)}"
                )
        most = max(len(ia) + len(ib) for ia, ib in self.sides)
        if route not in ROUTES or (route in ("gram", "linear") and mode != "class-means"):
            raise ConfigError(f"route={route!r} must be auto, dense or (class-means) gram or "
                              "linear")
        if route == "linear" and len(stats.classes) > LINEAR_MAX_CLASSES:
            raise ConfigError(f"route='linear' forms the {len(stats.classes)}-class Gram "
                              f"matrix; it takes at most {LINEAR_MAX_CLASSES} classes, use "
                              "route='auto'")
        self.linear = route == "linear"
        self.gram_route = route in ("gram", "linear") or (
            route == "auto" and mode == "class-means" and most <= stats.dim)
        if self.gram_route:
            y = stats.means - stats.means.mean(axis=0)
            self.gram = y @ y.T
        self.work_dim = min(most, stats.dim) if self.gram_route else stats.dim
        self._changes = [
            [(np.setdiff1d(new, old), np.setdiff1d(old, new))
             for new, old in zip(self.sides[k], self.sides[k - 1], strict=True)]
            for k in range(1, len(self.sides))
        ]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One class count vector over the dataset's classes in which every side of every
        split holds at least two distinct classes (redrawn otherwise)."""
        c = len(self.stats.classes)
        for _ in range(MAX_REDRAWS):
            w = np.bincount(rng.integers(0, c, c), minlength=c)
            if all(np.count_nonzero(w[ia]) >= 2 and np.count_nonzero(w[ib]) >= 2
                   for ia, ib in self.sides):
                return w
        raise ConfigError("the paired bootstrap cannot draw two distinct classes on every side; "
                          "give each side more classes")

    def distances(self, w: np.ndarray) -> np.ndarray:
        """Every split's distance on the classes weighted by ``w`` (one replicate)."""
        if self.gram_route:
            out = np.empty(len(self.sides))
            for k, (ia, ib) in enumerate(self.sides):
                wa, wb = w[ia], w[ib]
                ka, kb = wa > 0, wb > 0
                out[k] = _gram_distance(self.gram, ia[ka], wa[ka], ib[kb], wb[kb], self.eps,
                                        _eig_root)
            return out
        return self._dense_distances(w)

    def _side_moments(self, idx: np.ndarray, w: np.ndarray) -> list:
        """[n, s, M] of the classes ``idx`` weighted by ``w``, about the global centre: their
        images (samples mode) or their means (class-means)."""
        st = self.stats
        keep = idx[w[idx] > 0]
        wk = w[keep].astype(np.float64)
        if not len(keep):
            return [0.0, np.zeros(st.dim), np.zeros((st.dim, st.dim))]
        if self.mode == "samples":
            n = float(wk @ st.counts[keep])
            rows = np.concatenate([st._rows[c] for c in keep])
            row_w = np.repeat(wk, st.counts[keep])
            x = st.features[rows].astype(np.float64) - st.center
            s = row_w @ x
            m = (x * row_w[:, None]).T @ x
        else:
            y = st.means[keep] - st.center
            n = float(wk.sum())
            s = wk @ y
            m = (y * wk[:, None]).T @ y
        return [n, s, m]

    def _dense_distances(self, w: np.ndarray) -> np.ndarray:
        out = np.empty(len(self.sides))
        ia, ib = self.sides[0]
        state = [self._side_moments(ia, w), self._side_moments(ib, w)]
        for k in range(len(self.sides)):
            for side, (added, dropped) in enumerate(self._changes[k - 1] if k else ()):
                plus, minus = self._side_moments(added, w), self._side_moments(dropped, w)
                state[side] = [x + p - q for x, p, q in zip(state[side], plus, minus,
                                                             strict=True)]
            gauss = []
            for n, s, m in state:
                cov = (m - np.outer(s, s / n)) / (n - 1.0)
                cov = (cov + cov.T) * 0.5
                cov[np.diag_indices_from(cov)] += self.eps
                gauss.append((s / n, cov))
            (mu_a, sa), (mu_b, sb) = gauss
            out[k] = frechet_distance(mu_a, sa, mu_b, sb)
        return out

    def replicates(
        self, n_boot: int = DEFAULT_BOOTSTRAPS,
        rng: np.random.Generator | int | np.random.SeedSequence | None = None,
        tick: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """``n_boot`` x K replicates (row r: every split's distance under resample r)."""
        if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
            raise ConfigError(f"the number of bootstrap replicates must be >= 1, got {n_boot}")
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        if self.linear:
            return self._linear_replicates(n_boot, gen, tick)
        out = np.empty((n_boot, len(self.sides)))
        with blas_threads_for(self.work_dim):
            for r in range(n_boot):
                out[r] = self.distances(self.draw(gen))
                if tick:
                    tick()
        return out


    def influences(self) -> tuple[np.ndarray, np.ndarray]:
        """(distances at w = 1, C x K influences IF of every class on every split's
        distance); :func:`influences`."""
        c, k = len(self.stats.classes), len(self.sides)
        est, infl = np.empty(k), np.zeros((c, k))
        with blas_threads_for(self.work_dim):
            for j, (ia, ib) in enumerate(self.sides):
                est[j], infl[ia, j], infl[ib, j] = influences(self.gram, ia, ib, self.eps)
        return est, infl

    def _linear_replicates(
        self, n_boot: int, gen: np.random.Generator, tick: Callable[[], None] | None
    ) -> np.ndarray:
        est, infl = self.influences()
        w = np.empty((n_boot, len(self.stats.classes)))
        for r in range(n_boot):
            w[r] = self.draw(gen)
            if tick:
                tick()
        return est[None, :] + (w - 1.0) @ infl


ROUTES = ("auto", "gram", "dense", "linear")
RANK_TOL = 1e3 * np.finfo(np.float64).eps
"""Singular values of X below sigma_max x max(shape) x RANK_TOL count as zero (the linear
route's numerical rank)."""
PAIRED_ROUTES = ("exact", "linear")
"""What ``splits generate --paired`` offers: the exact replicates (route "auto") or the
linear ones."""


def paired_route(name: str) -> str:
    """The :class:`PairedLadder` route of a ``--paired`` choice."""
    return "linear" if name == "linear" else "auto"


def influences(
    gram: np.ndarray, ia: np.ndarray, ib: np.ndarray, eps: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """The class-means distance of train rows ``ia`` vs test rows ``ib`` of the centred Gram
    matrix ``gram`` (all weights 1) and its derivatives IF_a, IF_b in each class's weight.

    With weights w the distance is d(w) = m(w) + tr S_a + tr S_b - 2 ||X||_* (eps-free; the
    eps-regularised value, returned as the distance, differs by O(sqrt eps)), where p_a =
    w_a / n_a, m = |mu_a - mu_b|^2 = v^T G v (v = p_a - p_b), S_a the weighted unbiased
    covariance (tr S_a = (sum_i w_i |y_i - mu_a|^2) / (n_a - 1)) and X = diag(sqrt w_a) Ghat
    diag(sqrt w_b) / s, s = sqrt((n_a - 1)(n_b - 1)), Ghat the weighted double centring of
    G_ab, so that ||X||_* = tr sqrt(S_a S_b) (:mod:`oodml.splits.uncertainty`). At w = 1, for
    a train class c (derivatives of the weighted means vanish against the centred sums):

        dm/dw_c       = 2 v^T G (e_c - p_a) / n_a,
        dtr S_a/dw_c  = (|y_c - mu_a|^2 - tr S_a) / (n_a - 1),
        d||X||_*/dw_c = (1/2) sum_j (Z o X)_cj - ||X||_* / (2 (n_a - 1)) - (X Z^T 1)_c / n_a,

    with Z = U V^T from the SVD X = U diag(sigma) V^T over its non-zero singular values
    (d||X||_* = tr(Z^T dX); with more classes than feature dimensions X = A_a^T A_b has rank
    <= D, but every dX a weight change makes keeps X's column and row spaces, those of A_a^T
    and A_b^T for means in general position, where the zero singular values add nothing to
    first order), and the three
    terms are the sqrt(w_c) row scale, the normaliser s, and dGhat_ij/dw_c = -Ghat_cj / n_a
    (the same for every row i). Test classes alike with X^T and the signs of v reversed."""
    pa = np.zeros(len(gram))
    pb = np.zeros(len(gram))
    na, nb = len(ia), len(ib)
    pa[ia], pb[ib] = 1.0 / na, 1.0 / nb
    v = pa - pb
    gv, ga, gb = gram @ v, gram @ pa, gram @ pb
    diag = np.diag(gram)
    dev_a = diag[ia] - 2.0 * ga[ia] + pa @ ga
    dev_b = diag[ib] - 2.0 * gb[ib] + pb @ gb
    tr_a, tr_b = dev_a.sum() / (na - 1.0), dev_b.sum() / (nb - 1.0)
    g_ab = gram[np.ix_(ia, ib)]
    ghat = g_ab - g_ab.mean(axis=0, keepdims=True) - g_ab.mean(axis=1, keepdims=True) + g_ab.mean()
    x = ghat / np.sqrt((na - 1.0) * (nb - 1.0))
    u, sig, vt = sla.svd(x, full_matrices=False, check_finite=False, lapack_driver="gesdd")
    rank = int(np.count_nonzero(sig > sig[0] * max(x.shape) * RANK_TOL)) if sig.size else 0
    z = u[:, :rank] @ vt[:rank]
    nuc = float(sig.sum())
    zx = z * x
    d_nuc_a = 0.5 * zx.sum(axis=1) - nuc / (2.0 * (na - 1.0)) - x @ z.sum(axis=0) / na
    d_nuc_b = 0.5 * zx.sum(axis=0) - nuc / (2.0 * (nb - 1.0)) - z.sum(axis=1) @ x / nb
    if_a = (2.0 * (gv[ia] - v @ ga) / na + (dev_a - tr_a) / (na - 1.0) - 2.0 * d_nuc_a)
    if_b = (-2.0 * (gv[ib] - v @ gb) / nb + (dev_b - tr_b) / (nb - 1.0) - 2.0 * d_nuc_b)
    distance = _gram_distance(gram, ia, np.ones(na), ib, np.ones(nb), eps, _eig_root)
    return distance, if_a, if_b


def _eig_root(sa: np.ndarray, sb: np.ndarray) -> float:
    """tr sqrt(sa sb) as ``trace_sqrt_product(sa, sb, "eig")`` computes it, without taking
    the BLAS thread limit again (:meth:`PairedLadder.replicates` holds it once)."""
    return _trace_sqrt_product(sa, sb, "eig") if len(sa) else 0.0


def paired_seed(seed: int | None) -> np.random.SeedSequence:
    """The paired bootstrap's reproducible stream for a ladder seed (None counts as
    DEFAULT_SEED, 0)."""
    return np.random.SeedSequence([DEFAULT_SEED if seed is None else int(seed), PAIRED_STREAM])


def paired_diff(
    estimate: float, replicates: np.ndarray, level: float = DEFAULT_LEVEL
) -> PairedDiff:
    """Interval and flip probability of a difference from its replicates (module docstring)."""
    reps = np.asarray(replicates, dtype=np.float64)
    lo, hi = interval_from_replicates(estimate, reps, level)
    centred = estimate + (reps - reps.mean())
    if estimate > 0:
        flip = float(np.mean(centred <= 0.0))
    elif estimate < 0:
        flip = float(np.mean(centred >= 0.0))
    else:
        flip = 0.5
    return PairedDiff(float(estimate), lo, hi, flip)


def adjacent_diffs(
    distances: Sequence[float], replicates: np.ndarray, level: float = DEFAULT_LEVEL
) -> list[PairedDiff]:
    """Paired differences d_{k+1} - d_k of consecutive splits (K - 1 of them) from the
    ``replicates`` (B x K) of :meth:`PairedLadder.replicates`."""
    d = np.asarray(distances, dtype=np.float64)
    return [
        paired_diff(float(d[k + 1] - d[k]), replicates[:, k + 1] - replicates[:, k], level)
        for k in range(len(d) - 1)
    ]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (same order): sorted ascending, the i-th (from 0) becomes
    max over j <= i of min(1, (m - j) p_(j))."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        adj[i] = running
    return adj.tolist()


def ladder_paired(
    stats: ClassStats,
    splitfile: object,
    *,
    n_boot: int = DEFAULT_BOOTSTRAPS,
    seed: int | None = None,
    level: float = DEFAULT_LEVEL,
    tick: Callable[[], None] | None = None,
    route: str | None = None,
) -> list[PairedDiff]:
    """Paired differences of every split of ``splitfile`` against the split before it.

    Uses the file's distance mode, ``params["eps"]`` when set, the stored distances as the
    estimates, and :func:`oodml.splits.uncertainty.bootstrap_seed` (``seed``, else the
    recorded or file's seed, else the fixed default: a file without a seed still gets
    reproducible draws). ``route``: a :class:`PairedLadder` route (None: the one the file
    records, ``uncertainty["paired_route"]``, else "auto")."""
    ladder = splitfile.ladder
    if len(ladder) < 2:
        return []
    if route is None:
        route = paired_route(str(splitfile.uncertainty.get("paired_route", "exact")))
    engine = PairedLadder(stats, [(s.train, s.test) for s in ladder], splitfile.distance_mode,
                          splitfile.params.get("eps"), route=route)
    s = bootstrap_seed(splitfile, seed)
    reps = engine.replicates(n_boot, np.random.default_rng(paired_seed(s)), tick)
    return adjacent_diffs([sp.distance for sp in ladder], reps, level)


@dataclass(frozen=True)
class LadderTest:
    """The paired test over a ladder's adjacent pairs: Holm-adjusted p-values and, for each
    pair (ids a, b), whether it is separated at ``level``."""

    pairs: list[tuple[int, int]]
    adjusted: list[float]
    level: float
    route: str = "exact"

    @property
    def separated(self) -> list[bool]:
        return [p < 1.0 - self.level for p in self.adjusted]

    @property
    def all_separated(self) -> bool:
        return all(self.separated)

    def statement(self, n_boot: int | None = None) -> str:
        """One line: which adjacent splits the paired test separates (Holm over the pairs)."""
        b = f", B = {n_boot}" if n_boot else ""
        b += ", linear" if self.route == "linear" else ""
        how = (f"paired class bootstrap{b}, Holm over {len(self.pairs)} adjacent pair"
               f"{'s' if len(self.pairs) != 1 else ''}")
        pct = f"{100 * self.level:g}%"
        if self.all_separated:
            return f"every adjacent pair of splits differs at {pct} ({how})"
        bad = [f"{a}-{b} (p {p:.2g})" for (a, b), p, ok in
               zip(self.pairs, self.adjusted, self.separated, strict=True) if not ok]
        return f"adjacent splits {', '.join(bad)} are not separated at {pct} ({how})"


def ladder_test(splitfile: object, level: float = DEFAULT_LEVEL) -> LadderTest | None:
    """Holm's test over the stored paired differences, or None when the file has none."""
    pairs, ps = [], []
    for a, b in zip(splitfile.ladder[:-1], splitfile.ladder[1:], strict=True):
        if b.vs_previous is None:
            return None
        pairs.append((a.id, b.id))
        ps.append(b.vs_previous.p_value)
    if not pairs:
        return None
    return LadderTest(pairs, holm(ps), level,
                      str(splitfile.uncertainty.get("paired_route", "exact")))


def with_paired(
    splitfile: object, diffs: Sequence[PairedDiff], n_boot: int, seed: int | None = None,
    route: str = "exact",
) -> object:
    """A copy of ``splitfile`` whose splits 2..K carry ``vs_previous`` (and which records the
    paired bootstrap's replicate count, its seed where that is not the file's own: ``seed``,
    None meaning :func:`oodml.splits.uncertainty.bootstrap_seed` of the file, and
    ``paired_route`` when ``route`` (a PAIRED_ROUTES name) is not "exact")."""
    from dataclasses import replace

    if len(diffs) != max(len(splitfile.ladder) - 1, 0):
        raise ConfigError(f"{len(diffs)} differences for a ladder of {len(splitfile.ladder)}")
    ladder = [splitfile.ladder[0]] + [
        replace(sp, vs_previous=d) for sp, d in zip(splitfile.ladder[1:], diffs, strict=True)
    ]
    unc = {**seed_record(splitfile, bootstrap_seed(splitfile, seed)),
           "paired_bootstraps": int(n_boot)}
    unc.pop("paired_route", None)
    if route != "exact":
        unc["paired_route"] = route
    return replace(splitfile, ladder=ladder, uncertainty=unc)


SEPARATION_CANDIDATES = 64
"""Trajectory steps (evenly spread in distance) among which ``--separation`` picks levels."""


def pair_p_values(distances: Sequence[float], replicates: np.ndarray) -> np.ndarray:
    """T x T matrix of two-sided paired p-values min(1, 2 flip) for every pair i < j of
    ascending ``distances`` (upper triangle; 1 elsewhere)."""
    d = np.asarray(distances, dtype=np.float64)
    t = len(d)
    out = np.ones((t, t))
    for i in range(t - 1):
        diff = replicates[:, i + 1:] - replicates[:, [i]]
        est = d[i + 1:] - d[i]
        centred = est[None, :] + (diff - diff.mean(axis=0))
        flip = np.where(est > 0, (centred <= 0).mean(axis=0), (centred >= 0).mean(axis=0))
        flip = np.where(est == 0, 0.5, flip)
        out[i, i + 1:] = np.minimum(1.0, 2.0 * flip)
    return out


def _longest_chain(sep: np.ndarray) -> int:
    """Most nodes in a chain i_1 < i_2 < ... with sep[i_k, i_(k+1)] for every link."""
    t = len(sep)
    best = np.ones(t, dtype=np.int64)
    for j in range(1, t):
        prev = best[:j][sep[:j, j]]
        if prev.size:
            best[j] = int(prev.max()) + 1
    return int(best.max()) if t else 0


def supported_levels(p: np.ndarray, level: float) -> int:
    """The most levels whose adjacent pairs all have p < (1 - level) / (levels - 1): a chain
    Bonferroni separates, which Holm then separates too (Holm rejects whatever Bonferroni
    rejects)."""
    t = len(p)
    alpha = 1.0 - level
    m = 1
    for k in range(2, t + 1):
        if _longest_chain(p < alpha / (k - 1)) >= k:
            m = k
    return m


def separated_chain(distances: Sequence[float], p: np.ndarray, level: float, k: int) -> list[int]:
    """Indices of ``k`` ascending candidates whose adjacent pairs all have p below the
    Bonferroni threshold (1 - level) / (k - 1), chosen to maximise the smallest distance gap
    between adjacent levels (dynamic programming over chain length; [] if none exists)."""
    d = np.asarray(distances, dtype=np.float64)
    t = len(d)
    if k == 1:
        return [int(np.argmax(d))] if t else []
    sep = p < (1.0 - level) / (k - 1)
    gap = d[None, :] - d[:, None]
    best = np.full((k + 1, t), -np.inf)
    arg = np.full((k + 1, t), -1, dtype=np.int64)
    best[1] = np.inf
    for n in range(2, k + 1):
        for j in range(t):
            cand = np.where(sep[:j, j], np.minimum(best[n - 1, :j], gap[:j, j]), -np.inf)
            if cand.size and cand.max() > -np.inf:
                i = int(np.argmax(cand))
                best[n, j], arg[n, j] = cand[i], i
    end = int(np.argmax(best[k]))
    if best[k, end] == -np.inf:
        return []
    picks = [end]
    for n in range(k, 1, -1):
        picks.append(int(arg[n, picks[-1]]))
    return picks[::-1]
