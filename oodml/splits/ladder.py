"""Split ladders: walk from a starting split to easier and harder train/test class splits.

Public API (pure: class names and statistics in, dataclasses out, no I/O):

* :func:`start_split` - the dataset's default split or a seeded random half/half.
* :func:`run_procedure` - one :class:`Trajectory` (start, easier steps, harder steps) from a
  procedure in :data:`PROCEDURES` (``"greedy"``, the default, or ``"oodml"``) and a distance
  mode (``"class-means"`` or ``"samples"``).
* :func:`select_ladder` - K evenly spaced (or target-nearest) steps of a trajectory.

Procedures (details in :mod:`oodml.splits.procedures`):

* ``oodml`` reproduces the ooDML study's published walk step by step (N=25 iterations of s=2
  swaps with history H=5, easier walk on the reversed orders, then N+10 removal iterations
  from one consistent final state). Its distances plateau and oscillate, and its removal
  phase alternates up and down, so the trajectory is not monotone.
* ``greedy`` (our default) ranks candidates the same way, considers every swap among the top
  ``candidates`` (5) train x test classes and applies the one with the largest distance gain,
  only if it strictly raises the distance (strictly lowers it on the easier walk). When no swap
  helps it removes the single class (among the top ``removal_candidates``, 15, per side) with
  the largest gain, keeping at least ``min_fraction`` (25%) of each side and removing at most
  ``max_removed_fraction`` (40%) of all classes; swaps are tried again after each removal.
  In class-means mode candidates are ranked by a batched eps-free low-rank estimate and the
  best ``verify`` (3) are checked with the exact distance; in samples mode every candidate
  gets the exact incremental distance (``candidates`` defaults to 2 there). Every step is
  strictly better than the last, so the trajectory is strictly increasing along its index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from oodml.classstats import CLASS_MEANS_EPS, MODES, ClassStats
from oodml.errors import ConfigError
from oodml.registry import Registry
from oodml.splits import procedures as P
from oodml.splits.select import select_ladder

__all__ = [
    "PROCEDURES",
    "Step",
    "Trajectory",
    "run_procedure",
    "select_ladder",
    "start_split",
]

PHASES = ("start", "easier", "harder", "removal")


def _single_blas_thread() -> AbstractContextManager:
    """Class-means matrices are ~C x C: one BLAS thread is fastest, and several threads on a
    busy machine make each tiny Cholesky/eigvalsh ~100x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1)


@dataclass(frozen=True)
class Step:
    """One split of a trajectory.

    ``index``: swaps (greedy: swaps and removals) made since the start, negative on the easier
    side. ``train``, ``test``, ``removed``: class names in the order the walk's state holds them.
    """

    index: int
    phase: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    removed: tuple[str, ...]
    distance: float

    @property
    def is_start(self) -> bool:
        return self.phase == "start"


@dataclass(frozen=True)
class Trajectory:
    """All recorded splits of a walk, sorted by ``index`` (easiest side first for greedy)."""

    procedure: str
    mode: str
    params: dict = field(hash=False)
    steps: tuple[Step, ...]

    @property
    def start(self) -> Step:
        return next(s for s in self.steps if s.is_start)

    @property
    def distances(self) -> np.ndarray:
        return np.array([s.distance for s in self.steps])

    @property
    def hardest(self) -> Step:
        return max(self.steps, key=lambda s: s.distance)

    @property
    def easiest(self) -> Step:
        return min(self.steps, key=lambda s: s.distance)

    @property
    def is_strictly_increasing(self) -> bool:
        """Whether distances strictly increase along ``index``."""
        return bool(np.all(np.diff(self.distances) > 0))


def start_split(
    classes: Sequence[str],
    default_train: Sequence[str],
    default_test: Sequence[str],
    seed: int | None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The starting (train, test) class names, each sorted.

    ``seed=None``: the dataset's default split (checked against ``classes``). Otherwise a random
    half/half of ``classes`` drawn with ``numpy.random.default_rng(seed)`` from the sorted class
    list; train gets the extra class when the count is odd.
    """
    known = sorted(set(classes))
    if len(known) != len(classes):
        raise ConfigError("the class list has duplicates; pass each class name once")
    if seed is None:
        train, test = tuple(sorted(default_train)), tuple(sorted(default_test))
        if not train or not test:
            raise ConfigError("this dataset has no default train/test split; pass a --seed")
        _check_split(known, train, test)
        return train, test
    if len(known) < 4:
        raise ConfigError(f"a random split needs at least 4 classes, got {len(known)}")
    perm = np.random.default_rng(seed).permutation(len(known))
    half = (len(known) + 1) // 2
    train = tuple(sorted(known[i] for i in perm[:half]))
    test = tuple(sorted(known[i] for i in perm[half:]))
    return train, test


def _check_split(classes: Sequence[str], train: Sequence[str], test: Sequence[str]) -> None:
    known = set(classes)
    for side, names in (("train", train), ("test", test)):
        if len(set(names)) != len(names):
            raise ConfigError(f"the {side} classes contain duplicates; list each class once")
        unknown = sorted(set(names) - known)
        if unknown:
            raise ConfigError(
                f"{side} class {unknown[0]!r} is not in the feature set "
                f"({len(unknown)} unknown); check the dataset and the split"
            )
    both = sorted(set(train) & set(test))
    if both:
        raise ConfigError(f"class {both[0]!r} is in both train and test; a split must be disjoint")
    if len(train) < 2 or len(test) < 2:
        raise ConfigError(
            f"a split needs at least 2 classes per side, got {len(train)} train and "
            f"{len(test)} test"
        )


class _SamplesAdapter:
    """Index-list distance over :class:`oodml.classstats.SamplesDistance`.

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


def split_distance(
    stats: ClassStats, mode: str, train: Sequence[int], test: Sequence[int], eps: float | None
) -> P.SplitDistance:
    """The fast index-list distance for ``mode`` (class-means or incremental samples)."""
    if mode == "class-means":
        md = stats.means_distance(CLASS_MEANS_EPS if eps is None else eps)
        return lambda a, b: md.distance(a, b)
    if mode == "samples":
        return _SamplesAdapter(stats, train, test, 0.0 if eps is None else eps)
    raise ConfigError(f"unknown distance mode {mode!r}; choose one of: {', '.join(MODES)}")


SCREEN_MAX_CLASSES = 2000


def screen_fits(stats: ClassStats) -> bool:
    """Whether the batched screen below is affordable: it holds a C x C Gram matrix and one
    n1 x n1 eigenproblem per candidate, fine for CUB200/CARS196-sized ladders, not for SOP's
    ~22k classes, where greedy ranks candidates by their exact distances instead."""
    return len(stats.classes) <= SCREEN_MAX_CLASSES


def means_screen(stats: ClassStats) -> P.Screen:
    """Batched estimate of class-means distances for greedy's candidate ranking.

    The eps-free Fréchet distance over class means by the low-rank route: with centred,
    scaled means A (n1 x D) and B (n2 x D), tr sqrt(S1 S2) is the nuclear norm of A B^T, whose
    singular values squared are the eigenvalues of (A B^T)(A B^T)^T. Everything comes from
    the C x C Gram matrix of the means, so a batch costs a gather and one stacked n1 x n1
    ``eigvalsh``. It differs from the exact eps=1e-8 distance by ~1e-3; every applied step
    is still checked with the exact distance.
    """
    m = stats.means - stats.means.mean(axis=0)
    gram = m @ m.T

    def screen(trains: list[list[int]], tests: list[list[int]]) -> np.ndarray:
        ia, ib = np.asarray(trains), np.asarray(tests)
        n1, n2 = ia.shape[1], ib.shape[1]
        kab = gram[ia[:, :, None], ib[:, None, :]]
        kaa = gram[ia[:, :, None], ia[:, None, :]]
        kbb = gram[ib[:, :, None], ib[:, None, :]]
        ra, cb, tot = kab.mean(axis=2, keepdims=True), kab.mean(axis=1, keepdims=True), kab.mean(
            axis=(1, 2), keepdims=True)
        g = (kab - ra - cb + tot) / np.sqrt((n1 - 1) * (n2 - 1))
        w = np.linalg.eigvalsh(g @ g.transpose(0, 2, 1))
        nuc = np.sqrt(np.clip(w, 0.0, None)).sum(axis=-1)
        saa, sbb = kaa.sum(axis=(1, 2)), kbb.sum(axis=(1, 2))
        mean_term = saa / n1**2 + sbb / n2**2 - 2.0 * tot[:, 0, 0]
        tr_a = (np.trace(kaa, axis1=1, axis2=2) - saa / n1) / (n1 - 1)
        tr_b = (np.trace(kbb, axis1=1, axis2=2) - sbb / n2) / (n2 - 1)
        return mean_term + tr_a + tr_b - 2.0 * nuc

    return screen


@dataclass(frozen=True)
class Procedure:
    """A registered walk: its defaults, how to resolve them, its tick count and its runner."""

    defaults: dict
    resolve: Callable[[dict, str, int, int], dict]
    total: Callable[[dict], int]
    run: Callable[..., list[P.RawStep]]


PROCEDURES: Registry[Procedure] = Registry("ladder procedure")


def _int_param(params: dict, key: str, lo: int) -> None:
    v = params[key]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ConfigError(f"procedure parameter {key}={v!r} must be an integer >= {lo}")
    params[key] = int(v)


def _resolve_oodml(params: dict, mode: str, n_train: int, n_test: int) -> dict:
    _int_param(params, "iterations", 1)
    _int_param(params, "history", 0)
    n = params["iterations"]
    params["removal_iterations"] = P.or_default(params["removal_iterations"], n + 10)
    params["easier_iterations"] = P.or_default(params["easier_iterations"], n)
    params["easier_history"] = P.or_default(params["easier_history"], params["history"])
    for key, lo in (
        ("swaps_per_iter", 1),
        ("removal_iterations", 0),
        ("easier_iterations", 1),
        ("easier_history", 0),
    ):
        _int_param(params, key, lo)
    return params


def _resolve_greedy(params: dict, mode: str, n_train: int, n_test: int) -> dict:
    if params["candidates"] is None:
        params["candidates"] = 5 if mode == "class-means" else 2
    _int_param(params, "candidates", 1)
    if params["removal_candidates"] is None:
        params["removal_candidates"] = 3 * params["candidates"]
    _int_param(params, "removal_candidates", 1)
    _int_param(params, "verify", 1)
    _int_param(params, "max_steps", 0)
    for key in ("min_fraction", "max_removed_fraction"):
        f = params[key]
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f <= 1.0:
            raise ConfigError(f"procedure parameter {key}={f!r} must be a number in [0, 1]")
        params[key] = float(f)
    if not isinstance(params["removal"], bool):
        raise ConfigError(f"procedure parameter removal={params['removal']!r} must be true/false")
    return params


PROCEDURES.add(
    "oodml",
    Procedure(
        P.OODML_DEFAULTS,
        _resolve_oodml,
        P.oodml_total,
        lambda vectors, names, dist, tr, te, params, tick, screen: P.oodml_procedure(
            vectors, dist, tr, te, params, tick
        ),
    ),
)
PROCEDURES.add(
    "greedy",
    Procedure(
        P.GREEDY_DEFAULTS,
        _resolve_greedy,
        lambda params: 2 * params["max_steps"],
        P.greedy_procedure,
    ),
)


def resolve_params(
    procedure: str, mode: str, params: dict | None, n_train: int = 0, n_test: int = 0
) -> dict:
    """The procedure's full parameter dict: defaults overridden by ``params``, validated."""
    proc = PROCEDURES.get(procedure)
    given = dict(params or {})
    given.pop("eps", None)
    unknown = sorted(set(given) - set(proc.defaults))
    if unknown:
        valid = ", ".join(sorted(proc.defaults))
        raise ConfigError(
            f"unknown parameter {unknown[0]!r} for procedure {procedure!r}; valid: {valid}, eps"
        )
    return proc.resolve({**proc.defaults, **given}, mode, n_train, n_test)


def run_procedure(
    stats: ClassStats,
    train: Sequence[str],
    test: Sequence[str],
    *,
    mode: str = "class-means",
    procedure: str = "greedy",
    params: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Trajectory:
    """Walk easier and harder from the split ``train`` vs ``test`` (class names, in order).

    Candidates are ranked with the class-mean vectors; distances use ``mode`` ("class-means":
    Fréchet over class means with eps 1e-8; "samples": Fréchet over all images, incremental).
    ``params`` overrides the procedure's defaults (``PROCEDURES.get(name).defaults``), plus an
    optional ``eps``. ``progress(done, total)`` is called after each walk iteration/step;
    ``total`` is an upper bound for greedy, and the last call has ``done == total``.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown distance mode {mode!r}; choose one of: {', '.join(MODES)}")
    proc = PROCEDURES.get(procedure)
    _check_split(stats.classes, list(train), list(test))
    full = resolve_params(procedure, mode, params, len(train), len(test))
    eps = (params or {}).get("eps")
    tr, te = [int(i) for i in stats.indices(train)], [int(i) for i in stats.indices(test)]
    dist = split_distance(stats, mode, tr, te, eps)
    total = proc.total(full)
    done = 0

    def tick() -> None:
        nonlocal done
        done = min(done + 1, total)
        if progress:
            progress(done, total)

    with _single_blas_thread() if mode == "class-means" else nullcontext():
        screen = means_screen(stats) if mode == "class-means" and screen_fits(stats) else None
        raw = proc.run(stats.means, stats.classes, dist, tr, te, full, tick, screen)
    if progress:
        progress(total, total)
    names = stats.classes
    steps = tuple(
        Step(
            r.index,
            r.phase,
            tuple(names[i] for i in r.train),
            tuple(names[i] for i in r.test),
            tuple(names[i] for i in r.removed),
            float(r.distance),
        )
        for r in sorted(raw, key=lambda r: r.index)
    )
    if eps is not None:
        full = {**full, "eps": eps}
    return Trajectory(procedure, mode, full, steps)
