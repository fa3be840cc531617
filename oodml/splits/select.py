"""Choose the K splits of a ladder from a trajectory.

Splits are picked from the trajectory's distinct distances (one step per distance: the start
if it has that distance, else the step nearest the start), so the result is strictly increasing
and always contains the starting split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from oodml.errors import ConfigError
from oodml.splits.trajectory import Step, Trajectory


def _distinct(steps: Sequence[Step]) -> list[Step]:
    """One step per distinct distance, ascending; the start wins its tie, then small |index|."""
    ranked = sorted(steps, key=lambda s: (s.distance, not s.is_start, abs(s.index), s.index))
    out: list[Step] = []
    for s in ranked:
        if out and s.distance == out[-1].distance:
            continue
        out.append(s)
    return out


def monotone_match(targets: np.ndarray, values: np.ndarray) -> list[int]:
    """Strictly increasing indices j_0 < j_1 < ... into sorted ``values``, one per sorted
    target, minimising sum |targets[i] - values[j_i]| (dynamic programming, O(len * len)).
    Needs len(values) >= len(targets); ties go to the smaller index."""
    m, n = len(targets), len(values)
    if m == 0:
        return []
    cost = np.abs(targets[:, None] - values[None, :])
    best = np.full((m, n), np.inf)
    arg = np.zeros((m, n), dtype=np.int64)
    best[0] = cost[0]
    for i in range(1, m):
        prev = best[i - 1]
        prefix = np.minimum.accumulate(prev)
        new_min = np.r_[True, prev[1:] < prefix[:-1]]
        where = np.maximum.accumulate(np.where(new_min, np.arange(n), 0))
        best[i, 1:] = prefix[:-1] + cost[i, 1:]
        arg[i, 1:] = where[:-1]
    picks = [int(np.argmin(best[m - 1]))]
    for i in range(m - 1, 0, -1):
        picks.append(int(arg[i, picks[-1]]))
    return picks[::-1]


def _forced_slots(k: int, n: int, start: int, values: np.ndarray) -> dict[int, int]:
    """Slot -> candidate pairs every ladder keeps: the easiest, the hardest and the start
    (in the interior slot nearest its distance, kept feasible)."""
    if k == 1:
        return {0: start}
    if k == 2:
        other = n - 1 if values[-1] - values[start] >= values[start] - values[0] else 0
        return dict(sorted({0: min(start, other), 1: max(start, other)}.items()))
    forced = {0: 0, k - 1: n - 1}
    if 0 < start < n - 1:
        even = np.linspace(values[0], values[-1], k)
        slot = int(np.argmin(np.abs(even[1:-1] - values[start]))) + 1
        forced[min(max(slot, k - (n - start)), start)] = start
    return forced


def select_ladder(
    trajectory: Trajectory, k: int = 8, targets: Sequence[float] | None = None
) -> list[Step]:
    """K steps of ``trajectory``, easiest first, strictly increasing in distance.

    Without ``targets``: the easiest and the hardest step, the start (in the slot nearest its
    distance), and in between the distinct distances closest (summed absolute error) to K evenly
    spaced values over that range. With ``targets`` (``k`` is then ignored): the start plus,
    for each target, the step of nearest distance; picks that coincide are kept once. Fewer
    than K steps come back only when the trajectory has fewer distinct distances.
    """
    cands = _distinct(trajectory.steps)
    start = next((i for i, s in enumerate(cands) if s.is_start), None)
    if start is None:
        raise ConfigError("the trajectory has no starting split; run the procedure again")
    values = np.array([s.distance for s in cands])
    if targets is not None:
        t = np.asarray(list(targets), dtype=np.float64)
        if t.ndim != 1 or not np.isfinite(t).all():
            raise ConfigError(f"targets {list(targets)!r} must be finite numbers, e.g. 20,40,80")
        picked = {start} | {int(np.argmin(np.abs(values - x))) for x in t}
        return [cands[i] for i in sorted(picked)]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"the number of ladder levels must be an integer >= 1, got {k!r}")
    n = len(cands)
    if k >= n:
        return cands
    even = np.linspace(values[0], values[-1], k)
    forced = sorted(_forced_slots(k, n, start, values).items())
    idx: list[int] = []
    for (s0, c0), (s1, c1) in zip(forced, forced[1:], strict=False):
        idx.append(c0)
        inner = monotone_match(even[s0 + 1 : s1], values[c0 + 1 : c1])
        idx.extend(c0 + 1 + j for j in inner)
    idx.append(forced[-1][1])
    return [cands[i] for i in idx]
