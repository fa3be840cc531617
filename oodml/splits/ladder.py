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
* ``greedy`` (our default) ranks candidates the same way; each step is strictly better than
  the last, so the trajectory is strictly increasing along its index.

  - Swaps: every swap among the top ``candidates`` (5) train x test classes is considered,
    and the one with the largest distance gain is applied only if it strictly raises the
    distance (strictly lowers it on the easier walk).
  - Removals: when no swap helps, the single class (among the top ``removal_candidates``,
    15, per side) with the largest gain is removed, keeping at least ``min_fraction`` (25%)
    of each side and removing at most ``max_removed_fraction`` (40%) of all classes; swaps
    are tried again after each removal.
  - Removal policy: which side may lose classes: ``test-fixed`` (default: train only, so the
    test set keeps its size), ``balanced`` (both, within one class of the start's
    train/test ratio), ``any`` (whichever helps most), ``none``.
  - Screening: in class-means mode candidates are ranked by a batched eps-free low-rank
    estimate (:class:`oodml.splits.screen.GramScreen`; above 2000 classes a first-order
    estimate around the current split, :class:`oodml.stats.means_screen.MeansScreen`) and
    the best ``verify`` (3) are checked with the exact distance; in samples mode every
    candidate gets the exact incremental distance (``candidates`` defaults to 2 there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from oodml.errors import ConfigError
from oodml.registry import Registry
from oodml.splits import procedures as P
from oodml.splits.hierarchy import HierarchyParams
from oodml.splits.procedures import GreedyParams, OodmlParams
from oodml.splits.screen import GramScreen
from oodml.splits.select import select_ladder
from oodml.splits.trajectory import Step, Trajectory
from oodml.stats.blas_threads import blas_threads_for
from oodml.stats.class_stats import ClassStats
from oodml.stats.means_screen import MeansScreen
from oodml.stats.modes import DistanceMode, distance_mode

__all__ = [
    "PROCEDURES",
    "GreedyParams",
    "OodmlParams",
    "Params",
    "Step",
    "Trajectory",
    "params_from_mapping",
    "run_procedure",
    "select_ladder",
    "start_split",
]

Params = GreedyParams | OodmlParams | HierarchyParams


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


SCREEN_MAX_CLASSES = 2000


def screen_fits(stats: ClassStats) -> bool:
    """Whether the batched Gram screen is affordable: it holds the C x C Gram matrix of the
    class means and decomposes one ~min(n1, n2)-sized matrix per split the walk moves from
    (candidates it cannot update get a dense eigenproblem each): fine for CUB200/CARS196 and
    Omniglot, not for SOP's ~22k classes, where :class:`MeansScreen` ranks instead."""
    return len(stats.classes) <= SCREEN_MAX_CLASSES


def means_screen(stats: ClassStats) -> P.Screen:
    """Batched eps-free class-means distances for greedy's candidate ranking: a
    :class:`oodml.splits.screen.GramScreen` over the class means (low-rank updates of one
    eigendecomposition per split the walk moves from; see that module for the maths)."""
    return GramScreen(stats.means)


def candidate_screen(stats: ClassStats, dm: DistanceMode, eps: float | None) -> P.Screen | None:
    """How greedy ranks candidate moves in mode ``dm``: the batched Gram screen up to
    ``SCREEN_MAX_CLASSES`` classes; above, the first-order :class:`MeansScreen` when the
    class-means problem is large (rank > 512) and eps > 0 (its transport map needs positive
    definite covariances); else None (exact distances rank)."""
    if not dm.screens:
        return None
    if screen_fits(stats):
        return means_screen(stats)
    md = stats.means_distance(dm.eps(eps))
    return MeansScreen(md) if md.incremental and md.eps > 0 else None


@dataclass(frozen=True)
class Procedure:
    """A registered walk: its parameter dataclass and its runner
    ``run(vectors, names, dist, train, test, params, tick, screen) -> list[Step]``."""

    params_type: type
    run: Callable[..., list[Step]]


PROCEDURES: Registry[Procedure] = Registry("ladder procedure")
PROCEDURES.add(
    "oodml",
    Procedure(
        OodmlParams,
        lambda vectors, names, dist, tr, te, params, tick, screen: P.oodml_procedure(
            vectors, dist, tr, te, params, tick
        ),
    ),
)
PROCEDURES.add("greedy", Procedure(GreedyParams, P.greedy_procedure))


def _not_a_walk(*args: Any) -> list[Step]:
    raise ConfigError("the hierarchy procedure is no distance walk; build it with "
                      "oodml.splits.generate.generate_splitfile (it needs a class hierarchy)")


PROCEDURES.add("hierarchy", Procedure(HierarchyParams, _not_a_walk))


def params_from_mapping(procedure: str, mode: str, mapping: Mapping[str, Any] | None) -> Params:
    """The resolved parameter dataclass of ``procedure`` for distance ``mode``, built from
    ``mapping`` (parsed Python values: ints, floats, bools, strings, None) over the defaults.

    Unknown keys raise a :class:`ConfigError` that lists the valid ones.
    """
    proc = PROCEDURES.get(procedure)
    distance_mode(mode)
    given = dict(mapping or {})
    valid = proc.params_type.field_names()
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown parameter {unknown[0]!r} for procedure {procedure!r}; "
            f"valid: {', '.join(sorted(valid))}"
        )
    return proc.params_type(**given).resolved(mode)


def resolve_params(procedure: str, mode: str, params: Params | Mapping[str, Any] | None) -> Params:
    """``params`` as the resolved dataclass of ``procedure`` (a mapping goes through
    :func:`params_from_mapping`; a dataclass must be of the procedure's type)."""
    proc = PROCEDURES.get(procedure)
    if params is None or isinstance(params, Mapping):
        return params_from_mapping(procedure, mode, params)
    if not isinstance(params, proc.params_type):
        raise ConfigError(
            f"procedure {procedure!r} takes {proc.params_type.__name__}, "
            f"got {type(params).__name__}"
        )
    return params.resolved(mode)


def run_procedure(
    stats: ClassStats,
    train: Sequence[str],
    test: Sequence[str],
    *,
    mode: str = "class-means",
    procedure: str = "greedy",
    params: Params | Mapping[str, Any] | None = None,
    eps: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    measure: str = "frechet",
) -> Trajectory:
    """Walk easier and harder from the split ``train`` vs ``test`` (class names, in order).

    Candidates are ranked with the class-mean vectors; distances use ``mode`` ("class-means":
    Fréchet over class means with eps 1e-8; "samples": Fréchet over all images, incremental).
    ``params``: the procedure's dataclass (:class:`GreedyParams`, :class:`OodmlParams`) or a
    mapping of overrides (an ``eps`` key there is accepted for compatibility). ``eps``: added
    to both covariance diagonals (None: the mode's default). ``progress(done, total)`` is
    called after each walk iteration/step; ``total`` is exact for oodml and an upper bound for
    greedy, and the last call has ``done == total``. ``measure``: what the walk maximises
    (:mod:`oodml.stats.measures`; another than ``frechet`` ranks every candidate by its exact
    value, no screen).
    """
    dm = distance_mode(mode)
    proc = PROCEDURES.get(procedure)
    _check_split(stats.classes, list(train), list(test))
    if isinstance(params, Mapping) and "eps" in params:
        params = dict(params)
        given_eps = params.pop("eps")
        if eps is not None and given_eps != eps:
            raise ConfigError(f"eps given twice ({eps!r} and params eps={given_eps!r})")
        eps = given_eps
    if eps is not None:
        dm.eps(eps)
    full = resolve_params(procedure, mode, params)
    tr, te = [int(i) for i in stats.indices(train)], [int(i) for i in stats.indices(test)]
    if measure == "frechet":
        dist = dm.evaluator(stats, tr, te, eps)
    else:
        from oodml.stats.measures import get_measure

        dist = get_measure(measure).evaluator(stats, tr, te, mode, eps)
    total = full.total()
    done = 0

    def tick() -> None:
        nonlocal done
        done = min(done + 1, total)
        if progress:
            progress(done, total)

    with blas_threads_for(dm.work_dim(stats, eps)):
        screen = candidate_screen(stats, dm, eps) if measure == "frechet" else None
        raw = proc.run(stats.means, stats.classes, dist, tr, te, full, tick, screen)
    if progress:
        progress(total, total)
    steps = tuple(r.named(stats.classes) for r in sorted(raw, key=lambda r: r.index))
    record = full.record()
    if eps is not None:
        record["eps"] = eps
    return Trajectory(procedure, mode, record, steps)
