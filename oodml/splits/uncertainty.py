"""Bootstrap confidence intervals of a split's distance, resampling whole classes.

A split's distance is a statistic of its train classes and its test classes; the classes are the
sample. One bootstrap replicate draws ``n_a`` train classes and ``n_b`` test classes with
replacement (``n_a``, ``n_b`` the split's counts) and recomputes the distance on the multiset, so
a class drawn twice counts twice. The 95% interval is the percentile interval of B replicates,
shifted by the bootstrap estimate of the bias (see :func:`interval_from_replicates`).

Class-means mode, fast and exact. A replicate is a pair of count vectors ``w_a`` (train classes)
and ``w_b`` (test classes), with sum(w_a) = n_a. The Gaussian of the resampled class means
y_i (rows, any common origin) has

    mu_a = sum_i w_i y_i / n_a,
    S_a  = sum_i w_i (y_i - mu_a)(y_i - mu_a)^T / (n_a - 1)        (unbiased, duplicates counted)
         = A_a A_a^T,   A_a = [sqrt(w_i / (n_a - 1)) (y_i - mu_a)]_{i: w_i > 0}   (d x k_a),

so duplicated rows never have to be materialised: the k_a distinct classes carry weights.
Writing Y for the rows of the k distinct classes of both sides, A_a = Y^T T_a with the k x k_a
coefficient matrix T_a = (E_a - (w_a / n_a) 1^T) diag(sqrt(w_a / (n_a - 1))) (E_a picks the
drawn train classes), and likewise for b. Everything the distance needs is an inner product of
these vectors, so it follows from the k x k Gram matrix G = Y Y^T of the class means:

* mean term: |mu_a - mu_b|^2 = v^T G v with v = w_a / n_a - w_b / n_b;
* K = [T_a T_b]^T G [T_a T_b] is the Gram matrix of the columns of M = [A_a A_b];
* with eps > 0 added to both covariances, the complement of span(M) contributes
  eps + eps - 2 sqrt(eps * eps) = 0, so only span(M) (dim k' <= k) matters. From
  K = V diag(l) V^T, B = diag(sqrt l) V^T gives M's coordinates in an orthonormal basis of
  span(M), and the distance is mean term + Fréchet(0, B_a B_a^T + eps I, 0, B_b B_b^T + eps I).

Each replicate is thus a ~k-dimensional problem (k ~ 0.63 (n_a + n_b) distinct classes) instead
of a D-dimensional one on duplicated rows: the Gram matrix of the split's class means is formed
once per split, a replicate costs one k x k eigendecomposition and one k'-dimensional Fréchet
distance. When the split has more classes than feature dimensions the same weights give S_a
directly in D dimensions (``_means_replicate_dense``).

Samples mode resamples whole classes with all their images: a class drawn w times adds w times
its image count, feature sum and Gram matrix to its side's pooled Gaussian (exact; each replicate
is one D-dimensional Fréchet distance, ~0.1-1 s at D = 1280).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.linalg as sla

from oodml.errors import ConfigError, SplitFileError, short
from oodml.splits.splitfile import DEFAULT_SEED, seed_of
from oodml.stats.blas_threads import blas_threads_for
from oodml.stats.class_stats import ClassRef, ClassStats
from oodml.stats.gaussian import frechet_distance, trace_sqrt_product
from oodml.stats.means_distance import CLASS_MEANS_EPS
from oodml.stats.modes import MODES

DEFAULT_BOOTSTRAPS = 200
DEFAULT_LEVEL = 0.95


def bootstrap_seed(splitfile: object, seed: int | None = None) -> int:
    """Seed of a ladder's bootstrap draws: ``seed`` when given, else the one the file records
    for its intervals (``uncertainty["bootstrap_seed"]``, written for files whose own seed is
    None or differs), else the file's seed, else :data:`oodml.splits.splitfile.DEFAULT_SEED`.
    So the intervals of a file without a seed (an imported ooDML pickle) are reproducible and
    say which draws made them."""
    if seed is not None:
        return int(seed)
    recorded = splitfile.uncertainty.get("bootstrap_seed")
    if recorded is None:
        return seed_of(splitfile)
    if isinstance(recorded, bool) or not isinstance(recorded, int) or not 0 <= recorded < 2**63:
        raise SplitFileError(f"uncertainty.bootstrap_seed={short(recorded)} must be an integer in "
                             "[0, 2**63); fix or remove it")
    return recorded


def seed_record(splitfile: object, seed: int) -> dict:
    """``splitfile.uncertainty`` with ``bootstrap_seed`` set when ``seed`` (the seed intervals
    were drawn with) is not the file's own; unchanged otherwise, so seeded files keep their
    bytes."""
    unc = dict(splitfile.uncertainty)
    if splitfile.seed is None or int(seed) != splitfile.seed:
        unc["bootstrap_seed"] = int(seed)
    return unc


def _seed_sequence(seed: int | None, split_id: int) -> np.random.SeedSequence:
    """Independent, reproducible stream per (ladder seed, split id); seed None counts as
    DEFAULT_SEED (0)."""
    return np.random.SeedSequence([DEFAULT_SEED if seed is None else int(seed), int(split_id)])


def draw_counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """``n_boot`` x ``n`` counts of n draws with replacement from n classes (rows sum to n)."""
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])


def _centring_factor(w: np.ndarray) -> np.ndarray:
    """F (k x (k-1)) with F F^T = (diag(w) - w w^T / n) / (n - 1), n = sum(w), all w > 0.

    The weighted centring matrix C has rank k - 1 and C 1 = 0, so C = E C11 E^T with
    E = [I; -1^T] and C11 its (positive definite) leading (k-1) block: F = E chol(C11).
    """
    k, n = len(w), float(w.sum())
    if k == 1:
        return np.zeros((1, 0))
    w1 = w[:-1].astype(np.float64)
    c11 = (np.diag(w1) - np.outer(w1, w1 / n)) / (n - 1.0)
    low = np.linalg.cholesky(c11)
    return np.vstack([low, -low.sum(axis=0, keepdims=True)])


class _MeansGram:
    """Class-means replicates of one split from the Gram matrix of its class means.

    Implementation of the module docstring with one saving: the centring factor of each side is
    taken with k_a - 1 columns (:func:`_centring_factor`) instead of k_a, which removes the two
    null directions of K, so K is positive definite for class means in general position and
    its Cholesky factor R (K = R^T R) directly gives M's coordinates in an orthonormal basis
    (M = Q R). The eigendecomposition route is the fallback for degenerate means.
    """

    def __init__(self, means_a: np.ndarray, means_b: np.ndarray, eps: float) -> None:
        y = np.concatenate([means_a, means_b]).astype(np.float64)
        y -= y.mean(axis=0)
        self.gram = y @ y.T
        self.na, self.nb = len(means_a), len(means_b)
        self.eps = eps

    def distance(self, wa: np.ndarray, wb: np.ndarray) -> float:
        ia, ib = np.flatnonzero(wa), np.flatnonzero(wb)
        return _gram_distance(self.gram, ia, wa[ia], self.na + ib, wb[ib], self.eps)


def _gram_distance(
    gram: np.ndarray, ia: np.ndarray, wa: np.ndarray, ib: np.ndarray, wb: np.ndarray,
    eps: float, tsp: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> float:
    """Class-means distance between the rows ``ia`` (weights ``wa`` > 0) and ``ib`` (``wb``)
    of the class means whose (centred) Gram matrix is ``gram`` (see :class:`_MeansGram`).
    ``tsp(sa, sb)``: tr sqrt(sa sb) (default ``trace_sqrt_product(sa, sb, "eig")``)."""
    pa, pb = wa / wa.sum(), wb / wb.sum()
    g_aa = gram[np.ix_(ia, ia)]
    g_ab = gram[np.ix_(ia, ib)]
    g_bb = gram[np.ix_(ib, ib)]
    mean_term = float(pa @ g_aa @ pa - 2.0 * pa @ g_ab @ pb + pb @ g_bb @ pb)
    fa, fb = _centring_factor(wa), _centring_factor(wb)
    k_ab = fa.T @ g_ab @ fb
    k_aa, k_bb = fa.T @ g_aa @ fa, fb.T @ g_bb @ fb
    tr = float(np.trace(k_aa) + np.trace(k_bb))
    if eps == 0.0:
        nuc = float(sla.svdvals(k_ab, check_finite=False).sum()) if k_ab.size else 0.0
        return mean_term + tr - 2.0 * nuc
    gram_m = np.block([[k_aa, k_ab], [k_ab.T, k_bb]])
    gram_m = (gram_m + gram_m.T) * 0.5
    try:
        coords = sla.cholesky(gram_m, lower=False, check_finite=False)
    except np.linalg.LinAlgError:
        lam, vec = sla.eigh(gram_m, check_finite=False, driver="evd")
        keep = lam > max(float(lam[-1]), 0.0) * len(lam) * np.finfo(np.float64).eps
        coords = np.sqrt(lam[keep])[:, None] * vec[:, keep].T
    p = fa.shape[1]
    ca, cb = coords[:, :p], coords[:, p:]
    sa, sb = ca @ ca.T, cb @ cb.T
    idx = np.diag_indices_from(sa)
    sa[idx] += eps
    sb[idx] += eps
    m = len(sa)
    root = trace_sqrt_product(sa, sb, "eig") if tsp is None else tsp(sa, sb)
    return mean_term + tr + 2.0 * m * eps - 2.0 * root


def _weighted_gaussian(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of the rows of ``x`` repeated ``w`` times."""
    n = w.sum()
    mu = w @ x / n
    xc = x - mu
    cov = (xc * w[:, None]).T @ xc / (n - 1)
    return mu, (cov + cov.T) * 0.5


def _means_replicate_dense(
    means_a: np.ndarray, means_b: np.ndarray, wa: np.ndarray, wb: np.ndarray, eps: float
) -> float:
    """The same replicate computed in the D feature dimensions (for splits with C > D)."""
    mu_a, sa = _weighted_gaussian(means_a, wa.astype(np.float64))
    mu_b, sb = _weighted_gaussian(means_b, wb.astype(np.float64))
    idx = np.diag_indices_from(sa)
    sa[idx] += eps
    sb[idx] += eps
    return frechet_distance(mu_a, sa, mu_b, sb)


def _samples_replicate(
    stats: ClassStats, ia: np.ndarray, ib: np.ndarray, wa: np.ndarray, wb: np.ndarray,
    eps: float,
) -> float:
    parts = []
    for idx, w in ((ia, wa), (ib, wb)):
        n, s, g = 0, np.zeros(stats.dim), np.zeros((stats.dim, stats.dim))
        for c, k in zip(idx[w > 0], w[w > 0], strict=True):
            n += int(k * stats.counts[c])
            s += k * stats.sums[c]
            g += k * stats.gram(int(c))
        cov = (g - np.outer(s, s / n)) / (n - 1)
        cov = (cov + cov.T) * 0.5
        if eps:
            cov[np.diag_indices_from(cov)] += eps
        parts.append((s / n, cov))
    (mu_a, sa), (mu_b, sb) = parts
    return frechet_distance(mu_a, sa, mu_b, sb)


def bootstrap_distances(
    stats: ClassStats,
    train: Sequence[ClassRef],
    test: Sequence[ClassRef],
    *,
    mode: str = "class-means",
    eps: float | None = None,
    n_boot: int = DEFAULT_BOOTSTRAPS,
    rng: np.random.Generator | int | np.random.SeedSequence | None = None,
    tick: Callable[[], None] | None = None,
    measure: object | None = None,
) -> np.ndarray:
    """``n_boot`` bootstrap replicates of the ``train`` vs ``test`` distance (float64 array);
    ``tick()`` is called after each replicate. ``measure`` (an
    :class:`oodml.stats.measures.base.Measure`; None: Fréchet) recomputes each replicate's
    value on the drawn class multisets.

    Each replicate resamples the train classes and the test classes with replacement (whole
    classes; see the module docstring for the exact fast computation). ``eps`` defaults as in
    :func:`oodml.stats.modes.distance_within` (1e-8 for class-means, 0 for samples).
    """
    if mode not in MODES:
        raise ConfigError(f"unknown distance mode {mode!r}; choose one of: {', '.join(MODES)}")
    if n_boot < 1:
        raise ConfigError(f"the number of bootstrap replicates must be >= 1, got {n_boot}")
    ia, ib = stats.indices(train), stats.indices(test)
    if len(ia) < 2 or len(ib) < 2:
        raise ConfigError(
            f"a bootstrap of the distance needs at least 2 classes per side, got {len(ia)} "
            f"and {len(ib)}"
        )
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    wa_all, wb_all = draw_counts(gen, len(ia), n_boot), draw_counts(gen, len(ib), n_boot)
    out = np.empty(n_boot)
    if measure is not None:
        for r in range(n_boot):
            out[r] = measure(stats, np.repeat(ia, wa_all[r]), np.repeat(ib, wb_all[r]), mode,
                             eps).value
            if tick:
                tick()
        return out
    if mode == "samples":
        e = 0.0 if eps is None else float(eps)
        for r in range(n_boot):
            out[r] = _samples_replicate(stats, ia, ib, wa_all[r], wb_all[r], e)
            if tick:
                tick()
        return out
    e = CLASS_MEANS_EPS if eps is None else float(eps)
    ma, mb = stats.means[ia], stats.means[ib]
    dense = len(ia) + len(ib) > stats.dim
    fast = None if dense else _MeansGram(ma, mb, e)
    with blas_threads_for(min(len(ia) + len(ib), stats.dim)):
        for r in range(n_boot):
            if fast is None:
                out[r] = _means_replicate_dense(ma, mb, wa_all[r], wb_all[r], e)
            else:
                out[r] = fast.distance(wa_all[r], wb_all[r])
            if tick:
                tick()
    return out


def interval_from_replicates(
    estimate: float, replicates: np.ndarray, level: float = DEFAULT_LEVEL
) -> tuple[float, float]:
    """Bias-corrected percentile interval: the (1 - level)/2 and (1 + level)/2 quantiles of the
    replicates, shifted by the bootstrap bias mean(replicates) - estimate.

    Why the shift: a resample holds only ~63% distinct classes, which changes the spread of the
    class means and so the Fréchet distance in a consistent direction; the plain percentile
    interval of such a statistic can miss the estimate it is about. Subtracting the estimated
    bias centres the replicate distribution on the estimate, and the quantiles give the width.
    """
    if not 0.0 < level < 1.0:
        raise ConfigError(f"the interval level must be between 0 and 1, got {level}")
    reps = np.asarray(replicates, dtype=np.float64)
    bias = float(reps.mean()) - float(estimate)
    lo, hi = np.quantile(reps, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo) - bias, float(hi) - bias


def bootstrap_ci(
    stats: ClassStats,
    split: object,
    mode: str = "class-means",
    eps: float | None = None,
    n_boot: int = DEFAULT_BOOTSTRAPS,
    seed: int | None = 0,
    *,
    level: float = DEFAULT_LEVEL,
    estimate: float | None = None,
    tick: Callable[[], None] | None = None,
    measure: object | None = None,
) -> tuple[float, float]:
    """95% (``level``) bootstrap interval of ``split``'s distance (a :class:`Split`, or
    anything with ``id``, ``train``, ``test`` and ``distance``).

    The random stream is seeded from (``seed``, ``split.id``), so every split of a ladder gets
    its own reproducible draws. ``estimate`` defaults to ``split.distance``.
    """
    rng = np.random.default_rng(_seed_sequence(seed, int(split.id)))
    reps = bootstrap_distances(
        stats, list(split.train), list(split.test), mode=mode, eps=eps, n_boot=n_boot, rng=rng,
        tick=tick, measure=measure,
    )
    point = float(split.distance) if estimate is None else float(estimate)
    return interval_from_replicates(point, reps, level)


def ladder_cis(
    stats: ClassStats,
    splitfile: object,
    *,
    n_boot: int = DEFAULT_BOOTSTRAPS,
    seed: int | None = None,
    level: float = DEFAULT_LEVEL,
    tick: Callable[[], None] | None = None,
) -> list[tuple[float, float]]:
    """Bootstrap intervals of every split of ``splitfile``, in ladder order.

    Uses the file's distance mode, ``params["eps"]`` when set, and :func:`bootstrap_seed`
    (``seed``, else the recorded or file's seed, else the fixed default). ``tick()`` is called
    after each of the K x ``n_boot`` replicates (at SOP scale a class-means replicate is a
    dense 2048-d problem, about 2.5 s on 2 cores).
    """
    eps = splitfile.params.get("eps")
    s = bootstrap_seed(splitfile, seed)
    measure = None
    if getattr(splitfile, "measure", None) is not None:
        from oodml.stats.measures import get_measure

        measure = get_measure(splitfile.measure_name)
    return [
        bootstrap_ci(stats, sp, splitfile.distance_mode, eps, n_boot, s, level=level, tick=tick,
                     measure=measure)
        for sp in splitfile.ladder
    ]


def with_distance_cis(
    splitfile: object, cis: Sequence[tuple[float, float]], seed: int | None = None
) -> object:
    """A copy of ``splitfile`` whose splits carry ``distance_ci`` (same order as the ladder),
    recording the bootstrap's seed (``seed``; None: :func:`bootstrap_seed` of the file) where
    it is not the file's own (:func:`seed_record`)."""
    from dataclasses import replace

    if len(cis) != len(splitfile.ladder):
        raise ConfigError(f"{len(cis)} intervals for a ladder of {len(splitfile.ladder)} splits")
    ladder = [
        replace(sp, distance_ci=(float(lo), float(hi)))
        for sp, (lo, hi) in zip(splitfile.ladder, cis, strict=True)
    ]
    unc = seed_record(splitfile, bootstrap_seed(splitfile, seed))
    return replace(splitfile, ladder=ladder, uncertainty=unc)
