"""Ladder walks over integer class indices: the published ooDML procedure and our greedy one.

Pure functions: class vectors (C x D, used only to rank candidates), a split-distance callable
over index lists, the starting index lists and a parameter dataclass (:class:`OodmlParams`,
:class:`GreedyParams`) in; a list of :class:`~oodml.splits.trajectory.Step` over class indices
out. Names, modes and the registry live in :mod:`oodml.splits.ladder`.

Ranking (both procedures), for the current train list X and test list Y of class vectors with
means mu_train and mu_test (Euclidean norms):

* train position p: a_p = |x_p - mu_test| - |x_p - mu_train|  (small: looks like a test class)
* test position q:  b_q = |y_q - mu_train| - |y_q - mu_test|  (small: looks like a train class)

Moving the smallest-scored classes across makes the split harder; the easier direction uses
the reversed orders.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Protocol

import numpy as np

from oodml.config import MAX_STEPS, shown
from oodml.errors import ConfigError
from oodml.splits.ranking import Ranker
from oodml.splits.trajectory import Step
from oodml.stats.class_stats import SplitDistance, SplitLists

Progress = Callable[[], None]


def _check_int(name: str, value: Any, lo: int, optional: bool = False) -> int | None:
    """An integer parameter in [lo, :data:`~oodml.config.MAX_STEPS`] (iterations, steps,
    candidates and histories are all bounded by it)."""
    if optional and value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
            or not lo <= value <= MAX_STEPS):
        raise ConfigError(f"procedure parameter {name}={shown(value)} must be an integer >= "
                          f"{lo} and <= {MAX_STEPS}")
    return int(value)


def _check_fraction(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not 0.0 <= value <= 1.0
    ):
        raise ConfigError(f"procedure parameter {name}={value!r} must be a number in [0, 1]")
    return float(value)


REMOVAL_POLICIES: tuple[str, ...] = ("test-fixed", "balanced", "any", "none")


def removable_sides(policy: str, ratio: float, n_train: int, n_test: int) -> tuple[bool, bool]:
    """(train, test): whether removal ``policy`` lets the next removal come from each side.

    ``ratio`` is n_train / n_test of the start split; ``balanced`` allows a removal only when
    afterwards |n_train - ratio * n_test| <= 1 (a tolerance of 1e-9 absorbs float rounding).
    """
    if policy == "any":
        return True, True
    if policy == "test-fixed":
        return True, False
    if policy == "balanced":
        return (
            abs(n_train - 1 - ratio * n_test) <= 1 + 1e-9,
            abs(n_train - ratio * (n_test - 1)) <= 1 + 1e-9,
        )
    return False, False


class _Params:
    """Shared behaviour of the procedure parameter dataclasses."""

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def resolved(self, mode: str) -> Any:
        """A copy with every derived default (``None``) filled in for distance ``mode``."""
        raise NotImplementedError

    def record(self) -> dict[str, Any]:
        """The parameters as recorded in a split file (call on a resolved object)."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]


@dataclass(frozen=True)
class OodmlParams(_Params):
    """Parameters of the published ooDML walk (see :func:`oodml_procedure`).

    ``iterations`` N (25), ``swaps_per_iter`` s (2), ``history`` H (5); derived when None:
    ``removal_iterations`` N + 10, ``easier_iterations`` N, ``easier_history`` H (the study
    used N - 10 and 30 for CUB200). Resolution happens in :meth:`resolved`, so
    ``dataclasses.replace`` on a resolved object keeps the derived values it already has.
    """

    iterations: int = 25
    swaps_per_iter: int = 2
    history: int = 5
    removal_iterations: int | None = None
    easier_iterations: int | None = None
    easier_history: int | None = None

    def __post_init__(self) -> None:
        self._set("iterations", _check_int("iterations", self.iterations, 1))
        self._set("history", _check_int("history", self.history, 0))
        self._set("swaps_per_iter", _check_int("swaps_per_iter", self.swaps_per_iter, 1))
        for name, lo in (("removal_iterations", 0), ("easier_iterations", 1),
                         ("easier_history", 0)):
            self._set(name, _check_int(name, getattr(self, name), lo, optional=True))

    def resolved(self, mode: str = "class-means") -> OodmlParams:
        n = self.iterations
        return replace(
            self,
            removal_iterations=n + 10 if self.removal_iterations is None
            else self.removal_iterations,
            easier_iterations=n if self.easier_iterations is None else self.easier_iterations,
            easier_history=self.history if self.easier_history is None else self.easier_history,
        )

    def total(self) -> int:
        """Number of progress ticks :func:`oodml_procedure` makes (exact)."""
        r = self.resolved()
        return r.iterations + r.easier_iterations + r.removal_iterations


@dataclass(frozen=True)
class GreedyParams(_Params):
    """Parameters of the greedy walk (see :func:`greedy_procedure`).

    ``candidates`` per side (None: 5 in class-means mode, 2 in samples mode), ``verify`` (3)
    screened moves checked exactly, ``removal_candidates`` per side (None: 3 x candidates),
    ``max_steps`` (200) per direction, ``min_fraction`` (0.25) of each side always kept,
    ``max_removed_fraction`` (0.4) of all classes at most removed, ``removal``: which classes
    the harder walk may remove once no swap helps (one of :data:`REMOVAL_POLICIES`):

    * ``"test-fixed"`` (default): train classes only, so every split keeps the start's number
      of test classes and retrieval metrics stay comparable along the ladder;
    * ``"balanced"``: either side, as long as |n_train - r n_test| <= 1 after the removal,
      r = n_train / n_test of the start split (the study's two-sided removal, kept in ratio);
    * ``"any"``: either side, whichever raises the distance most (the behaviour before
      policies existed);
    * ``"none"``: no removal.

    Booleans are accepted for older split files and scripts: ``True`` is ``"any"`` (what it
    meant), ``False`` is ``"none"``.
    """

    candidates: int | None = None
    verify: int = 3
    removal_candidates: int | None = None
    max_steps: int = 200
    min_fraction: float = 0.25
    max_removed_fraction: float = 0.4
    removal: str = "test-fixed"

    def __post_init__(self) -> None:
        self._set("candidates", _check_int("candidates", self.candidates, 1, optional=True))
        self._set("removal_candidates",
                  _check_int("removal_candidates", self.removal_candidates, 1, optional=True))
        self._set("verify", _check_int("verify", self.verify, 1))
        self._set("max_steps", _check_int("max_steps", self.max_steps, 0))
        for name in ("min_fraction", "max_removed_fraction"):
            self._set(name, _check_fraction(name, getattr(self, name)))
        removal = self.removal
        if isinstance(removal, (bool, np.bool_)):
            removal = "any" if removal else "none"
        if removal not in REMOVAL_POLICIES:
            raise ConfigError(
                f"procedure parameter removal={self.removal!r} must be one of: "
                f"{', '.join(REMOVAL_POLICIES)}"
            )
        self._set("removal", removal)

    def resolved(self, mode: str = "class-means") -> GreedyParams:
        cand = self.candidates
        if cand is None:
            cand = 5 if mode == "class-means" else 2
        rc = 3 * cand if self.removal_candidates is None else self.removal_candidates
        return replace(self, candidates=cand, removal_candidates=rc)

    def total(self) -> int:
        """Upper bound of the progress ticks :func:`greedy_procedure` makes."""
        return 2 * self.max_steps


def _recent(history: list[int], h: int) -> list[int]:
    return history[max(0, len(history) - h) :] if h > 0 else []


def oodml_pick(
    order_a: np.ndarray,
    order_b: np.ndarray,
    k: int,
    hist_a: list[int],
    hist_b: list[int],
    history: int,
) -> tuple[int | None, int | None]:
    """The k-th swap's (train position, test position), as published.

    Walks both orders from offset k in lockstep (so at most min(len) - k entries of each are
    seen) and takes, independently per side, the first position not among that side's last
    ``history`` picks; each pick is appended to its side's history as soon as it is made.
    A side with no admissible position returns None. ``history=0`` means no history (the
    published script's ``hist[-0:]`` slice would instead block every earlier pick).
    """
    pa: int | None = None
    pb: int | None = None
    for j in range(k, min(len(order_a), len(order_b))):
        if pa is None and int(order_a[j]) not in _recent(hist_a, history):
            pa = int(order_a[j])
            hist_a.append(pa)
        if pb is None and int(order_b[j]) not in _recent(hist_b, history):
            pb = int(order_b[j])
            hist_b.append(pb)
        if pa is not None and pb is not None:
            break
    return pa, pb


def _ranker(vectors: np.ndarray | Ranker) -> Ranker:
    return vectors if isinstance(vectors, Ranker) else Ranker(vectors)


def _oodml_swaps(ranker, train, test, s, history, hist_a, hist_b, reverse):
    """Make the s picks of one iteration and exchange them in place; returns the picks.

    The picks only look at the first s + history entries of each order (at most ``history``
    of them are blocked), so only those heads are computed (:class:`Ranker`).
    """
    order_a, order_b = ranker.heads(train, test, s + history + 1, reverse)
    picks_a, picks_b = [], []
    for k in range(s):
        pa, pb = oodml_pick(np.asarray(order_a), np.asarray(order_b), k, hist_a, hist_b, history)
        if pa is None or pb is None:
            continue
        train[pa], test[pb] = test[pb], train[pa]
        picks_a.append(pa)
        picks_b.append(pb)
    return picks_a, picks_b


def oodml_swap_walk(
    vectors: np.ndarray,
    dist: SplitDistance,
    train: list[int],
    test: list[int],
    *,
    iterations: int,
    swaps_per_iter: int,
    history: int,
    reverse: bool,
    phase: str,
    tick: Progress | None = None,
) -> list[Step]:
    """The published swap phase: iteration i records the split under key +-i*s, then swaps.

    ``train`` and ``test`` are updated in place to the final state (after the last
    iteration's swaps, which is not recorded here).
    """
    ranker = _ranker(vectors)
    hist_a: list[int] = []
    hist_b: list[int] = []
    sign = -1 if reverse else 1
    out = []
    for i in range(iterations):
        d = dist(train, test)
        out.append(Step(sign * i * swaps_per_iter, phase, tuple(train), tuple(test), (), d))
        _oodml_swaps(ranker, train, test, swaps_per_iter, history, hist_a, hist_b, reverse)
        if tick:
            tick()
    return out


def oodml_removal_walk(
    vectors: np.ndarray,
    dist: SplitDistance,
    train: list[int],
    test: list[int],
    *,
    iterations: int,
    swaps_per_iter: int,
    history: int,
    first_index: int,
    tick: Progress | None = None,
) -> list[Step]:
    """The published removal phase, from one consistent state (fresh pick histories).

    Each iteration records the split, makes and applies the s picks, and computes the distance
    after. As published (and as issue 3 words it): if that distance is NOT LOWER than before
    (after >= before), the swaps are undone and the picked entries are deleted from both lists
    instead (each position once, highest first); if it is lower, the swaps are kept. So removal
    happens exactly when the swapped classes would have raised (or kept) the distance, and
    iterations where the swaps lowered it keep the lower split: the phase alternates.

    Guards the published script lacks: a pick that finds no admissible position is skipped,
    and the phase stops early instead of leaving a side with fewer than 2 classes.
    """
    ranker = _ranker(vectors)
    hist_a: list[int] = []
    hist_b: list[int] = []
    removed: list[int] = []
    out = []
    before = dist(train, test)
    for i in range(iterations):
        out.append(
            Step(
                first_index + i * swaps_per_iter,
                "removal",
                tuple(train),
                tuple(test),
                tuple(removed),
                before,
            )
        )
        old_train, old_test = list(train), list(test)
        picks_a, picks_b = _oodml_swaps(
            ranker, train, test, swaps_per_iter, history, hist_a, hist_b, False
        )
        after = dist(train, test)
        if after >= before:
            train[:], test[:] = old_train, old_test
            if min(len(train) - len(set(picks_a)), len(test) - len(set(picks_b))) < 2:
                break
            for side, picks in ((train, picks_a), (test, picks_b)):
                for p in sorted(set(picks), reverse=True):
                    removed.append(side.pop(p))
            after = dist(train, test)
        before = after
        if tick:
            tick()
    return out


def oodml_procedure(
    vectors: np.ndarray,
    dist: SplitDistance,
    train: Sequence[int],
    test: Sequence[int],
    params: OodmlParams,
    tick: Progress | None = None,
) -> list[Step]:
    """Easier swaps, harder swaps, then removal from the final harder state, as published.

    ``params`` (:class:`OodmlParams`, resolved here): N iterations of s swaps with history H;
    the easier walk uses ``easier_iterations`` and ``easier_history``, removal
    ``removal_iterations``. Keys: easier -i*s, harder +i*s, removal N*s + i*s.
    """
    params = params.resolved()
    n, s, h = params.iterations, params.swaps_per_iter, params.history
    vectors = _ranker(vectors)
    easy = oodml_swap_walk(
        vectors,
        dist,
        list(train),
        list(test),
        iterations=params.easier_iterations,
        swaps_per_iter=s,
        history=params.easier_history,
        reverse=True,
        phase="easier",
        tick=tick,
    )
    tr, te = list(train), list(test)
    hard = oodml_swap_walk(
        vectors,
        dist,
        tr,
        te,
        iterations=n,
        swaps_per_iter=s,
        history=h,
        reverse=False,
        phase="harder",
        tick=tick,
    )
    removal = oodml_removal_walk(
        vectors,
        dist,
        tr,
        te,
        iterations=params.removal_iterations,
        swaps_per_iter=s,
        history=h,
        first_index=n * s,
        tick=tick,
    )
    d0 = hard[0].distance if hard else dist(list(train), list(test))
    start = Step(0, "start", tuple(train), tuple(test), (), d0)
    return [*reversed(easy[1:]), start, *hard[1:], *removal]


class Screen(Protocol):
    """A cheap batched estimate of candidate splits' distances that ranks greedy's moves.

    Call: ``screen(trains, tests, around=None)`` gives one estimate per candidate split
    (``trains[i]`` vs ``tests[i]``, all of one shape). ``around`` is the split the candidates
    were made from; a screen may use it (the Gram screen updates one decomposition of it)
    or ignore it.

    ``ranks_only``: False when estimates are comparable with the estimate of the current
    split, so a move whose estimated gain is not positive is not verified; True when they
    are biased and only their order means something.
    """

    @property
    def ranks_only(self) -> bool: ...

    def __call__(
        self, trains: Sequence[Sequence[int]], tests: Sequence[Sequence[int]],
        around: SplitLists | None = None,
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class WalkParams:
    """What one greedy walk (one direction) may do; see :func:`greedy_walk`.

    ``candidates``: top-ranked positions per side whose swaps are considered; ``verify``:
    screened moves checked exactly per batch; ``removal_candidates``: positions per side
    considered for removal; ``max_steps``: steps at most; ``min_train``/``min_test``: classes
    a side always keeps; ``max_removed``: classes removed at most; ``removal``: the policy
    (:data:`REMOVAL_POLICIES`); ``ratio``: the start's n_train / n_test, for ``balanced``.
    """

    easier: bool
    candidates: int
    verify: int
    removal_candidates: int
    max_steps: int
    min_train: int
    min_test: int
    max_removed: int
    removal: str = "any"
    ratio: float = 1.0

    @property
    def sign(self) -> float:
        """+1 when a higher distance is better (the harder walk), -1 on the easier walk."""
        return -1.0 if self.easier else 1.0


@dataclass(frozen=True)
class Move:
    """One candidate move: the split after it, the class it removes (None for a swap), and
    the class names that break ties in its favour (smaller first)."""

    train: list[int]
    test: list[int]
    gone: int | None
    tie: tuple[str, str]


@dataclass(frozen=True)
class Screened:
    """A move ranked by the screen's ``estimate``; its exact distance is still to compute."""

    move: Move
    estimate: float

    def distance(self, dist: SplitDistance) -> float:
        return dist(self.move.train, self.move.test)


@dataclass(frozen=True)
class Measured:
    """A move ranked by its exact distance (no screen), computed while ranking."""

    move: Move
    exact: float

    def distance(self, dist: SplitDistance) -> float:
        return self.exact


Candidate = Screened | Measured


@dataclass(frozen=True)
class Heads:
    """The top positions of each side's ranking at one split (the candidates' source)."""

    train: Sequence[int]
    test: Sequence[int]


@dataclass(frozen=True)
class At:
    """Where a walk stands: the split, the classes removed so far, and ``base``, the
    screen's estimate of this split (None unless the screen's gains count)."""

    train: list[int]
    test: list[int]
    removed: list[int]
    base: float | None

    def after(self, move: Move, base: float | None) -> At:
        removed = self.removed if move.gone is None else [*self.removed, move.gone]
        return At(list(move.train), list(move.test), removed, base)


@dataclass(frozen=True)
class Taken:
    """The move a step applies, the candidate it came from, and its exact distance."""

    move: Move
    candidate: Candidate
    distance: float


class _GreedyWalker:
    """The moves of one greedy walk and how they are ranked and verified.

    Order of work per step (it fixes the calls to the exact evaluator and the screen, which
    keep state): the rankings' heads once; the swaps ranked as a batch and verified in
    order; only when none improves, the removals the same way.
    """

    def __init__(self, ranker: Ranker, names: Sequence[str], dist: SplitDistance,
                 params: WalkParams, screen: Screen | None) -> None:
        self.ranker, self.names, self.dist = ranker, names, dist
        self.params, self.screen = params, screen
        self.gains_count = screen is not None and not screen.ranks_only

    def start(self, train: list[int], test: list[int]) -> tuple[At, float]:
        """The walk's first position and its exact distance."""
        cur = self.dist(train, test)
        base = float(self.screen([list(train)], [list(test)])[0]) if self.gains_count else None
        return At(list(train), list(test), [], base), cur

    def step(self, at: At, cur: float) -> Taken | None:
        """The first candidate move from ``at`` that strictly improves on ``cur``, if any."""
        heads = self._heads(at)
        taken = self._first_improving(self._ranked(self._swaps(at, heads), at), cur)
        if taken is None and len(at.removed) < self.params.max_removed:
            taken = self._first_improving(self._ranked(self._removals(at, heads), at), cur)
        return taken

    def base_after(self, taken: Taken) -> float | None:
        """The screen's estimate of the split ``taken`` leads to, when gains count."""
        if self.gains_count and isinstance(taken.candidate, Screened):
            return taken.candidate.estimate
        return None

    def _heads(self, at: At) -> Heads:
        p, names = self.params, self.names
        train, test = at.train, at.test
        rank_a, rank_b = self.ranker.heads(
            train, test, max(p.candidates, p.removal_candidates), p.easier,
            ties=(lambda i: names[train[i]], lambda i: names[test[i]]),
        )
        return Heads(rank_a, rank_b)

    def _swaps(self, at: At, heads: Heads) -> list[Move]:
        """Every train x test swap among the top ``candidates`` positions of each side."""
        train, test, names, k = at.train, at.test, self.names, self.params.candidates
        swaps = []
        for pa in heads.train[:k]:
            for pb in heads.test[:k]:
                tr, te = list(train), list(test)
                tr[pa], te[pb] = test[pb], train[pa]
                swaps.append(Move(tr, te, None, (names[train[pa]], names[test[pb]])))
        return swaps

    def _removals(self, at: At, heads: Heads) -> list[Move]:
        """Removing one of the top ``removal_candidates`` positions of a side the policy
        allows and that keeps more than its floor."""
        p, names = self.params, self.names
        train, test = at.train, at.test
        allowed = removable_sides(p.removal, p.ratio, len(train), len(test))
        drops = []
        for which, side, ranked, floor in ((0, train, heads.train, p.min_train),
                                           (1, test, heads.test, p.min_test)):
            ok = allowed[which] and len(side) > floor
            for pos in ranked[:p.removal_candidates] if ok else []:
                lists = [list(train), list(test)]
                lists[which].pop(pos)
                drops.append(Move(lists[0], lists[1], side[pos], (names[side[pos]], "")))
        return drops

    def _ranked(self, moves: list[Move], at: At) -> list[Candidate]:
        """The moves to verify, in order (the first that strictly improves is taken).

        Without a screen: every move's exact distance ranks, and only the best is worth
        verifying (:class:`Measured`).

        With a screen: moves are ordered by their estimates (one batch per shape), and the
        top ``verify`` are verified (:class:`Screened`); when the screen's gains count, only
        those with an estimated gain over ``at.base`` > 0.
        """
        if not moves:
            return []
        sign, screen = self.params.sign, self.screen
        if screen is None:
            est = np.array([self.dist(m.train, m.test) for m in moves])
        else:
            est = np.empty(len(moves))
            for shape in {(len(m.train), len(m.test)) for m in moves}:
                group = [i for i, m in enumerate(moves) if (len(m.train), len(m.test)) == shape]
                est[group] = screen([moves[i].train for i in group],
                                    [moves[i].test for i in group], around=(at.train, at.test))
        order = sorted(range(len(moves)), key=lambda i: (-sign * est[i], moves[i].tie))
        if screen is None:
            return [Measured(moves[order[0]], float(est[order[0]]))]
        return [Screened(moves[i], float(est[i])) for i in order[:self.params.verify]
                if not self.gains_count or sign * (est[i] - at.base) > 0]

    def _first_improving(self, candidates: list[Candidate], cur: float) -> Taken | None:
        for candidate in candidates:
            d = candidate.distance(self.dist)
            if self.params.sign * (d - cur) > 0:
                return Taken(candidate.move, candidate, d)
        return None


def greedy_walk(
    vectors: np.ndarray | Ranker,
    names: Sequence[str],
    dist: SplitDistance,
    train: list[int],
    test: list[int],
    params: WalkParams,
    screen: Screen | None = None,
    tick: Progress | None = None,
) -> list[Step]:
    """Best-improvement walk; returns the steps after the start (each strictly better).

    Swaps: rank both sides as the ooDML procedure does, take the top ``candidates``
    positions of each and consider every train x test swap among them; apply the best one
    (higher distance; lower when ``easier``) if its gain is > 0.

    Removals: when no swap helps and fewer than ``max_removed`` classes are removed,
    consider removing each of the top ``removal_candidates`` of a side alone (never below
    ``min_train`` / ``min_test``, only from the sides the ``removal`` policy allows, see
    :func:`removable_sides`) the same way.

    Stop when nothing improves or after ``max_steps`` steps. Ties go to the smaller class
    names, so the walk is deterministic. Ranking and verification: :class:`_GreedyWalker`.
    """
    walker = _GreedyWalker(_ranker(vectors), names, dist, params, screen)
    at, cur = walker.start(train, test)
    phase = "easier" if params.easier else "harder"
    out: list[Step] = []
    for _ in range(params.max_steps):
        taken = walker.step(at, cur)
        if taken is None:
            break
        at, cur = at.after(taken.move, walker.base_after(taken)), taken.distance
        n = len(out) + 1
        out.append(Step(-n if params.easier else n,
                        phase if taken.move.gone is None else "removal",
                        tuple(at.train), tuple(at.test), tuple(at.removed), cur))
        if tick:
            tick()
    return out


def greedy_procedure(
    vectors: np.ndarray,
    names: Sequence[str],
    dist: SplitDistance,
    train: Sequence[int],
    test: Sequence[int],
    params: GreedyParams,
    tick: Progress | None = None,
    screen: Screen | None = None,
) -> list[Step]:
    """Start, greedy easier walk (swaps only), greedy harder walk (swaps, then removals).

    ``params`` must be resolved (:meth:`GreedyParams.resolved`) for the distance mode.
    """
    if params.candidates is None or params.removal_candidates is None:
        raise ConfigError("greedy_procedure needs resolved parameters; call params.resolved(mode)")
    common = WalkParams(
        easier=True,
        candidates=params.candidates,
        verify=params.verify,
        removal_candidates=params.removal_candidates,
        max_steps=params.max_steps,
        min_train=max(2, math.ceil(params.min_fraction * len(train))),
        min_test=max(2, math.ceil(params.min_fraction * len(test))),
        max_removed=0,
    )
    budget = math.floor(params.max_removed_fraction * (len(train) + len(test)))
    harder = replace(common, easier=False,
                     max_removed=0 if params.removal == "none" else budget,
                     removal=params.removal, ratio=len(train) / len(test))
    vectors = _ranker(vectors)
    start = Step(0, "start", tuple(train), tuple(test), (), dist(list(train), list(test)))
    easy = greedy_walk(vectors, names, dist, list(train), list(test), common, screen, tick)
    hard = greedy_walk(vectors, names, dist, list(train), list(test), harder, screen, tick)
    return [*reversed(easy), start, *hard]
