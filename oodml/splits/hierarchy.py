"""The ``hierarchy`` procedure: a ladder graded by meaning, from no semantic shift to BREEDS' "bad".

Construction (seeded; class names in, (unseen superclasses, train, test, removed) per level out):

1. Test superclasses. Of the S superclasses, ``m = round(test_superclasses * S)`` (at least 1,
   at most S - 1, only superclasses with two or more classes) are drawn. Every other
   superclass is the *pool* P: its classes are never test classes.
2. Test classes. In each test superclass j with c_j classes, ``n_j = round(test_share * c_j)``
   (1 .. c_j - 1) classes are drawn as test classes; the rest are *held back* (H_j). The test
   set T = union of the drawn classes is the same at every level.
3. Levels. A level is a set U of test superclasses made *unseen*: its train set is P plus the
   held-back classes of the test superclasses not in U. Its semantic shift is the share of test
   classes in U, sum_{j in U} n_j / |T|. Level 0 is U = {} (every test class has its held-back
   siblings in train: its superclass is well represented), the top level U = all test
   superclasses (test superclasses disjoint from train). Every subset of the test superclasses
   is a candidate (up to 16 of them; beyond, the prefixes of a seeded order); one subset per
   distinct share (the smallest, then the first by name), and K levels are picked as the
   shares nearest K evenly spaced targets in [0, 1] with both ends kept
   (:func:`oodml.splits.select.monotone_match`). The number of distinct shares bounds K; the
   split file says how many the hierarchy supports.
4. ``fixed_train`` (default): every level trains on |P| classes (the top level's train set):
   the held-back classes of the seen test superclasses plus a seeded draw of the pool, so the
   levels differ in *which* classes they train on, not how many. (If the held-back classes
   outnumber |P|, a draw of them keeping one per seen superclass.)

Test classes are fixed by construction; a hierarchy whose superclasses all have one class
cannot give a level 0 and is refused.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oodml.data.hierarchy import Hierarchy
from oodml.errors import ConfigError
from oodml.splits.procedures import _Params
from oodml.splits.select import monotone_match

HIERARCHY_STREAM = 0x68696572
"""Second word of the procedure's seed sequence ([seed, HIERARCHY_STREAM, ...])."""
MAX_ENUMERATED = 16


def _fraction(name: str, value: object) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not 0.0 < float(value) < 1.0):
        raise ConfigError(f"procedure parameter {name}={value!r} must be a number in (0, 1)")
    return float(value)


@dataclass(frozen=True)
class HierarchyParams(_Params):
    """Parameters of the hierarchy ladder (module docstring): ``test_superclasses`` (share of
    superclasses holding test classes), ``test_share`` (share of a test superclass's classes
    that are test classes), ``fixed_train`` (every level trains on the same number of
    classes)."""

    test_superclasses: float = 0.5
    test_share: float = 0.5
    fixed_train: bool = True

    def __post_init__(self) -> None:
        self._set("test_superclasses", _fraction("test_superclasses", self.test_superclasses))
        self._set("test_share", _fraction("test_share", self.test_share))
        if not isinstance(self.fixed_train, bool):
            raise ConfigError(f"procedure parameter fixed_train={self.fixed_train!r} must be "
                              "true or false")

    def resolved(self, mode: str) -> HierarchyParams:
        return self

    def total(self) -> int:
        return 1


@dataclass(frozen=True)
class Level:
    """One level: the unseen test superclasses and the class sides."""

    unseen: tuple[str, ...]
    share: float
    train: tuple[str, ...]
    test: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class HierarchyLadder:
    """The levels, easiest first, and what the file records about them."""

    levels: list[Level]
    test_superclasses: tuple[str, ...]
    supported_levels: int


def _round(x: float) -> int:
    return int(np.floor(x + 0.5))


def _draw(rng: np.random.Generator, names: Sequence[str], k: int) -> list[str]:
    ordered = sorted(names)
    if k >= len(ordered):
        return ordered
    return sorted(ordered[int(i)] for i in rng.choice(len(ordered), size=k, replace=False))


def _candidates(test_supers: Sequence[str], n_test: dict[str, int], total: int,
                rng: np.random.Generator) -> list[tuple[float, tuple[str, ...]]]:
    """(share, unseen subset) per distinct share, ascending."""
    if len(test_supers) <= MAX_ENUMERATED:
        subsets = (c for r in range(len(test_supers) + 1)
                   for c in itertools.combinations(test_supers, r))
    else:
        order = [test_supers[int(i)] for i in rng.permutation(len(test_supers))]
        subsets = (tuple(sorted(order[:r])) for r in range(len(order) + 1))
    best: dict[int, tuple[str, ...]] = {}
    for sub in subsets:
        count = sum(n_test[s] for s in sub)
        if count not in best or (len(sub), sub) < (len(best[count]), best[count]):
            best[count] = sub
    return [(count / total, best[count]) for count in sorted(best)]


def pick_levels(shares: Sequence[float], k: int) -> list[int]:
    """Indices of ``k`` of the ascending ``shares``: both ends, and between them the shares
    nearest evenly spaced targets (all of them when ``k`` >= their number)."""
    n = len(shares)
    if k >= n:
        return list(range(n))
    if k == 1:
        return [n - 1]
    targets = np.linspace(shares[0], shares[-1], k)
    inner = monotone_match(targets[1:-1], np.asarray(shares[1:-1], dtype=np.float64))
    return [0, *(1 + j for j in inner), n - 1]


def hierarchy_ladder(hierarchy: Hierarchy, classes: Sequence[str], params: HierarchyParams,
                     seed: int, levels: int) -> HierarchyLadder:
    """The hierarchy ladder over ``classes`` (module docstring)."""
    h = hierarchy.restricted(sorted(classes))
    groups = h.superclasses()
    eligible = [s for s, cl in groups.items() if len(cl) >= 2]
    if len(groups) < 2 or not eligible:
        raise ConfigError(
            f"the hierarchy ({h.source}) has {len(groups)} superclass(es), "
            f"{len(eligible)} with two or more classes; a hierarchy ladder needs at least two "
            "superclasses, one of them with two or more classes (pass --hierarchy FILE.csv)")
    rng = np.random.default_rng([int(seed), HIERARCHY_STREAM])
    m = min(max(_round(params.test_superclasses * len(groups)), 1), len(groups) - 1,
            len(eligible))
    test_supers = tuple(sorted(eligible[int(i)] for i in rng.permutation(len(eligible))[:m]))
    test: list[str] = []
    held: dict[str, list[str]] = {}
    n_test: dict[str, int] = {}
    for s in test_supers:
        cl = groups[s]
        n = min(max(_round(params.test_share * len(cl)), 1), len(cl) - 1)
        picked = _draw(rng, cl, n)
        test.extend(picked)
        held[s] = sorted(set(cl).difference(picked))
        n_test[s] = n
    pool = sorted(c for s, cl in groups.items() if s not in test_supers for c in cl)
    cands = _candidates(test_supers, n_test, len(test), rng)
    picks = pick_levels([c[0] for c in cands], levels)
    out = []
    all_classes = sorted(h.classes)
    test_set = set(test)
    for k, i in enumerate(picks):
        share, unseen = cands[i]
        seen = [s for s in test_supers if s not in unseen]
        held_seen = sorted(c for s in seen for c in held[s])
        lrng = np.random.default_rng([int(seed), HIERARCHY_STREAM, k])
        if not params.fixed_train:
            train = sorted([*pool, *held_seen])
        elif len(held_seen) <= len(pool):
            train = sorted([*held_seen, *_draw(lrng, pool, len(pool) - len(held_seen))])
        else:
            first = [_draw(lrng, held[s], 1)[0] for s in seen]
            others = sorted(set(held_seen).difference(first))
            rest = _draw(lrng, others, max(len(pool) - len(first), 0))
            train = sorted([*first, *rest])
        removed = sorted(set(all_classes).difference(train).difference(test_set))
        out.append(Level(tuple(unseen), share, tuple(train), tuple(sorted(test)),
                         tuple(removed)))
    return HierarchyLadder(out, test_supers, len(cands))
