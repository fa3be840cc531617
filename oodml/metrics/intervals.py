"""Intervals of retrieval metrics: a bootstrap over test classes combined with the seeds.

Unit. A retrieval metric is a mean over queries, and the queries of one class are not
independent: they share the class's images, its difficulty and its neighbours. The test
classes are the sample (a draw from the population of classes a split could have been tested
on), so a replicate resamples whole classes and a class's queries stay together. A run stores,
per test class c, the number n_c of queries that count for retrieval metrics and the class's
mean value v_c, so the run's value is sum_c n_c v_c / sum_c n_c and a class-weighted replicate
with counts w_c is sum_c w_c n_c v_c / sum_c w_c n_c, without touching embeddings again.

Seeds. With S seeds (independent trainings on the same split) the reported value is the mean
over seeds, and a replicate also resamples the seeds with replacement (counts u_s):

    theta*(w, u) = sum_s u_s r_s(w) / sum_s u_s,   r_s(w) = sum_c w_c n_c v_sc / sum_c w_c n_c.

Classes and seeds are crossed (every seed is evaluated on every test class), so one class
draw and one seed draw are shared by all seeds and classes of a replicate. With one seed the
interval reflects class sampling only. The interval is the percentile interval of B replicates
(theta is a smooth ratio of class means; its bootstrap bias is O(1/C) and is not corrected).

Size-controlled metrics (``<metric>/n<N>``, :mod:`oodml.metrics.sizecontrol`). The value is
the mean over R fixed gallery draws D_1..D_R (N classes each, the same for every method and
seed of a split) of each draw's query-weighted mean, so a run stores each class's mean in each
draw (v_rc, its queries searched among the drawn classes only) and a replicate is

    r_s(w) = (1/R) sum_r [sum_{c in D_r} w_c n_c v_src / sum_{c in D_r} w_c n_c],

draws in which no drawn class is resampled left out of the mean. As for the full-test values
the draws and each class's neighbours are held fixed: classes are resampled as queries, the
galleries are not redrawn. With R = 1 and D_1 = all classes it is the full-test replicate.

NMI has no interval: it scores one k-means partition of the whole test set, not a mean over
queries or classes, so the unit a class bootstrap resamples would have to be re-clustered on
every replicate (and the run files keep no embeddings to do it later); reweighting the fixed
partition's contingency table instead would leave out the clustering's own variability, the
larger part of NMI's. Rows of NMI keep NaN intervals and no class values
(:data:`NO_INTERVAL`).

Paired differences. Two cells (two splits of a ``test-fixed`` ladder, or two methods on one
split) are compared on one shared draw of their classes: the counts w are drawn over the union
of their test classes and each cell uses the counts of its own classes; seeds with the same
number share their draw (two methods trained with the same seed on the same split, or the same
seed on two splits). Identical cells give a difference of 0 in every replicate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from oodml.errors import ConfigError

DEFAULT_METRIC_BOOTSTRAPS = 1000
DEFAULT_LEVEL = 0.95
NO_INTERVAL = {"nmi": "none: NMI scores one k-means partition of the whole test set, not a "
                      "mean over classes, so no class bootstrap without re-clustering"}
"""Metrics that get no interval, with the reason shown beside them."""


@dataclass(frozen=True)
class ClassValues:
    """Per-class values of one metric for several seeds of one (method, split).

    ``classes``: the test classes (C); ``n``: queries per class that count (C); ``values``:
    S x C class means (0 where n_c = 0); ``seeds``: the S seeds, in row order."""

    classes: tuple[str, ...]
    n: np.ndarray
    values: np.ndarray
    seeds: tuple[int, ...]
    draws: np.ndarray | None = None
    """Size-controlled values: R x C membership of each gallery draw; ``values`` is then
    S x R x C (each class's mean in each draw, 0 outside it)."""

    @property
    def estimate(self) -> float:
        """Mean over seeds of each seed's query-weighted value (for draws: of the mean over
        draws of each draw's query-weighted value)."""
        if self.draws is None:
            return float((self.values @ self.n / self.n.sum()).mean())
        wn = self.draws * self.n
        per_draw = (self.values * wn).sum(axis=2) / wn.sum(axis=1)
        return float(per_draw.mean(axis=1).mean())


def class_values(runs: Mapping[int, Mapping[str, tuple[int, float]]]) -> ClassValues:
    """Build :class:`ClassValues` from ``{seed: {class: (n, value)}}``; every seed must name the
    same classes with the same query counts (they share the split's test set)."""
    if not runs:
        raise ConfigError("no per-class values to build an interval from")
    seeds = tuple(sorted(runs))
    classes = tuple(sorted(runs[seeds[0]]))
    n = np.array([runs[seeds[0]][c][0] for c in classes], dtype=np.float64)
    rows = []
    for s in seeds:
        per = runs[s]
        if tuple(sorted(per)) != classes or any(per[c][0] != n[i] for i, c in enumerate(classes)):
            raise ConfigError(f"seed {s} was evaluated on other test classes than seed {seeds[0]}"
                              "; intervals need the same test set for every seed")
        rows.append([per[c][1] if per[c][0] > 0 else 0.0 for c in classes])
    if n.sum() <= 0:
        raise ConfigError("no test class has a query that counts; no interval")
    return ClassValues(classes, n, np.array(rows, dtype=np.float64), seeds)


def draw_class_values(docs: Mapping[int, Mapping]) -> ClassValues:
    """:class:`ClassValues` of a size-controlled metric from ``{seed: doc}``, each doc the
    run's ``{"classes", "n", "draws" (class indices per draw), "v" (R x C)}``; every seed must
    name the same classes, counts and draws (the draws are the split's, not the seed's)."""
    if not docs:
        raise ConfigError("no per-class values to build an interval from")
    seeds = tuple(sorted(docs))
    first = docs[seeds[0]]
    classes = tuple(str(c) for c in first["classes"])
    n = np.asarray(first["n"], dtype=np.float64)
    draws = np.zeros((len(first["draws"]), len(classes)), dtype=bool)
    for r, idx in enumerate(first["draws"]):
        draws[r, np.asarray(idx, dtype=np.int64)] = True
    values = []
    for s in seeds:
        doc = docs[s]
        if (tuple(str(c) for c in doc["classes"]) != classes
                or not np.array_equal(np.asarray(doc["n"], dtype=np.float64), n)
                or [list(d) for d in doc["draws"]] != [list(d) for d in first["draws"]]):
            raise ConfigError(f"seed {s} was evaluated on other test classes or galleries than "
                              f"seed {seeds[0]}; intervals need the same ones for every seed")
        v = np.asarray(doc["v"], dtype=np.float64)
        if v.shape != draws.shape:
            raise ConfigError(f"seed {s}: {v.shape} per-draw values for {draws.shape} draws")
        values.append(np.where(draws & (n > 0), v, 0.0))
    if not (draws * n).sum(axis=1).all():
        raise ConfigError("a gallery draw has no query that counts; no interval")
    return ClassValues(classes, n, np.array(values), seeds, draws)


def mean_over_episodes(per_episode: Sequence[Mapping]) -> dict:
    """One few-shot row's per-class values from its episodes' ``by_class`` dicts (as
    :func:`oodml.metrics.evaluate_embeddings` fills them; size-controlled metrics per draw).

    A few-shot row's value is the mean over E episodes of each episode's query-weighted mean.
    Every episode queries the same test classes, and class c's queries are its images less
    its ``shots`` support images, so n_c is the same in every episode and

        (1/E) sum_e sum_c n_c v_ec / sum_c n_c = sum_c n_c vbar_c / sum_c n_c,

    with vbar_c = (1/E) sum_e v_ec: the row is a query-weighted mean of per-class values like
    a zero-shot row, and :func:`class_bootstrap_interval` and the report's class bootstrap apply
    unchanged. The episodes (the split file's published support draws) are held fixed, as the
    gallery draws are; their spread is the row's ``std``. A metric whose episodes disagree on
    the classes, counts or draws is left out (no interval), never averaged across mismatches.
    """
    if not per_episode:
        return {}
    first = per_episode[0]
    classes, n = [str(c) for c in first.get("classes", [])], list(first.get("n", []))
    if not classes or any([str(c) for c in d.get("classes", [])] != classes or list(d["n"]) != n
                          for d in per_episode[1:]):
        return {}
    out: dict = {"classes": classes, "n": n}
    for name, doc in first.items():
        if name in ("classes", "n"):
            continue
        docs = [d.get(name) for d in per_episode]
        if isinstance(doc, Mapping):
            same = all(isinstance(d, Mapping) and d["classes"] == doc["classes"]
                       and d["n"] == doc["n"] and d["draws"] == doc["draws"] for d in docs)
            if same:
                v = np.mean([np.asarray(d["v"], dtype=np.float64) for d in docs], axis=0)
                out[name] = {**doc, "v": v.tolist()}
        elif all(d is not None and not isinstance(d, Mapping) and len(d) == len(n)
                 for d in docs):
            out[name] = np.mean([np.asarray(d, dtype=np.float64) for d in docs],
                                axis=0).tolist()
    return out


def _draws(rng: np.random.Generator, size: int, n_boot: int) -> np.ndarray:
    return rng.multinomial(size, np.full(size, 1.0 / size), size=n_boot).astype(np.float64)


def _replicates(cv: ClassValues, w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """theta*(w, u) for every replicate: ``w`` B x C class counts, ``u`` B x S seed counts."""
    if cv.draws is None:
        den = w @ cv.n
        ratios = (w * cv.n) @ cv.values.T / np.where(den > 0, den, np.nan)[:, None]
    else:
        per_draw = []
        for r, member in enumerate(cv.draws):
            wn = w * (cv.n * member)
            den = wn.sum(axis=1)
            per_draw.append(wn @ cv.values[:, r, :].T / np.where(den > 0, den, np.nan)[:, None])
        stack = np.stack(per_draw)
        counted = np.isfinite(stack).sum(axis=0)
        ratios = np.where(counted > 0, np.nansum(stack, axis=0) / np.maximum(counted, 1), np.nan)
    return (u * ratios).sum(axis=1) / u.sum(axis=1)


def _seed_counts(seeds: Sequence[int], union: Sequence[int], u: np.ndarray) -> np.ndarray:
    pos = {s: i for i, s in enumerate(union)}
    return u[:, [pos[s] for s in seeds]]


def _class_counts(classes: Sequence[str], union: Sequence[str], w: np.ndarray) -> np.ndarray:
    pos = {c: i for i, c in enumerate(union)}
    return w[:, [pos[c] for c in classes]]


def _percentile(reps: np.ndarray, level: float) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if not len(reps):
        return float("nan"), float("nan")
    lo, hi = np.quantile(reps, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval; for a difference, ``p`` is the two-sided bootstrap
    p-value of "no difference" (twice the share of centred replicates across zero)."""

    estimate: float
    low: float
    high: float
    p: float = float("nan")

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


def value_interval(
    cv: ClassValues, *, n_boot: int = DEFAULT_METRIC_BOOTSTRAPS, seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Interval:
    """95% (``level``) interval of the seed-averaged metric (module docstring)."""
    rng = np.random.default_rng(seed)
    w = _draws(rng, len(cv.classes), n_boot)
    u = _draws(rng, len(cv.seeds), n_boot)
    lo, hi = _percentile(_replicates(cv, w, u), level)
    return Interval(cv.estimate, lo, hi)


def difference_interval(
    a: ClassValues, b: ClassValues, *, n_boot: int = DEFAULT_METRIC_BOOTSTRAPS, seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Interval:
    """Paired interval of b - a: one draw of the union of their test classes and one draw of
    the union of their seeds, shared by both (module docstring)."""
    return contrast_interval([(-1.0, a, ""), (1.0, b, "")], n_boot=n_boot, seed=seed,
                             level=level)


def contrast_interval(
    terms: Sequence[tuple[float, ClassValues, str]], *, n_boot: int = DEFAULT_METRIC_BOOTSTRAPS,
    seed: int = 0, level: float = DEFAULT_LEVEL,
) -> Interval:
    """Paired interval of a linear contrast sum_k c_k theta_k of cells (c_k, cell, group).

    All cells share one draw of the union of their test classes. Seeds are drawn per group:
    cells of one group share the draw of the group's seeds (trainings with the same seed, as in
    :func:`difference_interval`), and groups are drawn independently (seeds of two training
    regimes have nothing in common but their number). A difference of drops, e.g. (full-backbone
    drop) - (head-only drop) from split 1 to split 8, is the contrast
    (+1 h8, -1 h1, -1 f8, +1 f1) with groups head and full (sign as written)."""
    rng = np.random.default_rng(seed)
    classes = sorted({c for _, cv, _ in terms for c in cv.classes})
    w = _draws(rng, len(classes), n_boot)
    group_seeds: dict[str, set[int]] = {}
    for _, cv, group in terms:
        group_seeds.setdefault(group, set()).update(cv.seeds)
    draws = {g: (sorted(ss), _draws(rng, len(ss), n_boot)) for g, ss in group_seeds.items()}
    reps = np.zeros(n_boot)
    est = 0.0
    for coef, cv, group in terms:
        union, u = draws[group]
        reps = reps + coef * _replicates(cv, _class_counts(cv.classes, classes, w),
                                         _seed_counts(cv.seeds, union, u))
        est += coef * cv.estimate
    lo, hi = _percentile(reps, level)
    reps = reps[np.isfinite(reps)]
    if not len(reps) or np.ptp(reps) == 0.0:
        p = 1.0 if est == 0.0 else 0.0
    else:
        centred = est + (reps - reps.mean())
        side = (centred <= 0.0) if est > 0 else (centred >= 0.0)
        p = min(1.0, 2.0 * float(side.mean())) if est != 0 else 1.0
    return Interval(est, lo, hi, p)


def class_bootstrap_interval(
    n: Sequence[float], values: Sequence, *, n_boot: int = DEFAULT_METRIC_BOOTSTRAPS,
    seed: int = 0, level: float = DEFAULT_LEVEL, draws: Sequence[Sequence[int]] | None = None,
) -> tuple[float, float]:
    """Interval of one run's value from its per-class counts and means (classes resampled);
    with ``draws`` (class indices of each gallery draw), ``values`` is R x C per-draw means of
    a size-controlled metric."""
    names = tuple(str(i) for i in range(len(n)))
    if draws is None:
        cv = ClassValues(names, np.asarray(n, dtype=np.float64),
                         np.asarray([values], dtype=np.float64), (0,))
    else:
        cv = draw_class_values({0: {"classes": names, "n": list(n), "draws": draws,
                                    "v": values}})
    iv = value_interval(cv, n_boot=n_boot, seed=seed, level=level)
    return iv.low, iv.high
