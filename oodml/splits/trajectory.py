"""The one step type of a ladder walk and the trajectory that collects them.

Procedures (:mod:`oodml.splits.procedures`) record :class:`Step` objects over integer class
indices; :func:`oodml.splits.ladder.run_procedure` maps them to class names with
:meth:`Step.named` and sorts them into a :class:`Trajectory`; :mod:`oodml.splits.select`
picks the ladder from it. This module imports nothing from its neighbours, so the three form
no cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def is_strictly_increasing(values: Iterable[float]) -> bool:
    """Whether each value is larger than the one before (True for fewer than two)."""
    v = list(values)
    return all(a < b for a, b in zip(v[:-1], v[1:], strict=True))


@dataclass(frozen=True)
class Step:
    """One split of a walk.

    ``index``: swaps (greedy: swaps and removals) made since the start, negative on the easier
    side. ``phase``: ``"start"``, ``"easier"``, ``"harder"`` or ``"removal"``. ``train``,
    ``test``, ``removed``: classes (integer indices inside a procedure, names in a
    :class:`Trajectory`) in the order the walk's state holds them.
    """

    index: int
    phase: str
    train: tuple[Any, ...]
    test: tuple[Any, ...]
    removed: tuple[Any, ...]
    distance: float

    @property
    def is_start(self) -> bool:
        return self.phase == "start"

    def named(self, names: Sequence[str]) -> Step:
        """The same step with integer class indices replaced by ``names[i]``."""
        return Step(
            self.index,
            self.phase,
            tuple(names[i] for i in self.train),
            tuple(names[i] for i in self.test),
            tuple(names[i] for i in self.removed),
            float(self.distance),
        )


@dataclass(frozen=True)
class Trajectory:
    """All recorded splits of a walk, sorted by ``index`` (easiest side first for greedy).

    ``params``: the procedure's resolved parameters as recorded in split files.
    """

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
        return is_strictly_increasing(self.distances)
