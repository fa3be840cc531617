"""The one interface every train/test shift measure implements, and what it returns.

Modelled on pytorch-metric-learning's distances: one small class per measure, one base class,
one registry (:data:`oodml.stats.measures.MEASURES`). A measure compares two class sets of one
:class:`~oodml.stats.class_stats.ClassStats`, given as integer class-index arrays (duplicates
allowed: a class drawn twice by a bootstrap counts twice), in one of two modes:

* ``class-means``: the atoms are the class-mean vectors (one per class);
* ``samples``: the atoms are the images of the classes.

Every measure says how many atoms a side needs (:meth:`Measure.min_atoms`; fewer is a one-line
:class:`~oodml.errors.ConfigError`, never NaN) and how many classes it needs to be stable
(:attr:`Measure.stable_classes`, from ``benchmarks/bench_measure_sizes.py``), so a ladder
generator can warn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from oodml.errors import ConfigError
from oodml.stats.blas_threads import blas_threads_for
from oodml.stats.class_stats import ClassStats
from oodml.stats.modes import MODES

SplitDistance = Callable[[Sequence[int], Sequence[int]], float]


@dataclass(frozen=True)
class MeasureValue:
    """One measured shift: ``value`` (what ladders order by), ``spread`` (the measure's own
    uncertainty: KID's std over subsets, FID-inf's fit residual; None when it has none),
    ``solver`` (which solver produced it, for the OT measures) and ``n_a``/``n_b`` (atoms a
    side)."""

    value: float
    spread: float | None = None
    solver: str | None = None
    n_a: int = 0
    n_b: int = 0


class Measure:
    """A train/test shift measure between two class sets.

    Subclasses set ``name``, ``help``, ``modes`` and ``spread_name`` and implement
    :meth:`_compute` on the atoms of each side. ``__call__`` checks the mode and the sizes,
    computes, and refuses a non-finite result with a one-line error.
    """

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    modes: ClassVar[tuple[str, ...]] = MODES
    spread_name: ClassVar[str | None] = None
    stable_classes: ClassVar[int] = 2
    """Classes a side needs for a stable value (measured in benchmarks/bench_measure_sizes.py):
    a ladder with a smaller side gets a one-line warning."""

    def min_atoms(self, mode: str) -> int:
        """Fewest atoms (classes in class-means mode, images in samples mode) a side needs."""
        return 2

    def record(self) -> dict[str, Any]:
        """The settings that determine this measure's values (written into split files)."""
        return {"name": self.name}

    def check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown distance mode {mode!r}; choose one of: {', '.join(MODES)}")
        if mode not in self.modes:
            raise ConfigError(
                f"measure {self.name!r} has no {mode!r} mode; use one of: {', '.join(self.modes)}"
            )

    def __call__(
        self,
        stats: ClassStats,
        ia: Sequence[int],
        ib: Sequence[int],
        mode: str = "class-means",
        eps: float | None = None,
    ) -> MeasureValue:
        """The measure between classes ``ia`` and ``ib`` (index arrays into ``stats``)."""
        self.check_mode(mode)
        ia = np.asarray(ia, dtype=np.int64)
        ib = np.asarray(ib, dtype=np.int64)
        na, nb = atom_count(stats, ia, mode), atom_count(stats, ib, mode)
        need = self.min_atoms(mode)
        if na < need or nb < need:
            unit = "classes" if mode == "class-means" else "images"
            raise ConfigError(
                f"measure {self.name!r} needs at least {need} {unit} per side in {mode} mode, "
                f"got {na} and {nb}; give each side more classes or use another measure"
            )
        size = self.blas_size(na, nb, stats.dim)
        with nullcontext() if size is None else blas_threads_for(size):
            out = self._compute(stats, ia, ib, mode, eps)
        if not math.isfinite(out.value) or (out.spread is not None
                                            and not math.isfinite(out.spread)):
            raise ConfigError(
                f"measure {self.name!r} gave a non-finite value on {na} vs {nb} atoms; the "
                "features may be degenerate (all equal): check them or use another measure"
            )
        return MeasureValue(out.value, out.spread, out.solver, na, nb)

    def blas_size(self, n_a: int, n_b: int, dim: int) -> int | None:
        """The size that sets the BLAS thread count
        (:func:`oodml.stats.blas_threads.blas_threads_for`: one thread up to 512, where a busy
        machine makes multi-threaded small products ~100x slower); None leaves them alone."""
        return max(n_a, n_b)

    def _compute(
        self, stats: ClassStats, ia: np.ndarray, ib: np.ndarray, mode: str, eps: float | None
    ) -> MeasureValue:
        raise NotImplementedError

    def evaluator(
        self,
        stats: ClassStats,
        train: Sequence[int],
        test: Sequence[int],
        mode: str = "class-means",
        eps: float | None = None,
    ) -> SplitDistance:
        """The index-list callable a ladder walk calls for every candidate split (starting
        from ``train`` vs ``test``; the default recomputes each split from scratch)."""
        self.check_mode(mode)
        return lambda a, b: self(stats, a, b, mode, eps).value

    def size_warnings(self, n_a: int, n_b: int, mode: str, dim: int,
                      images: tuple[int, int] = (0, 0)) -> list[str]:
        """One-line warnings for sides of ``n_a`` and ``n_b`` classes (``images``: their image
        counts) in features of dimension ``dim``."""
        if min(n_a, n_b) < self.stable_classes:
            return [
                f"a side has {min(n_a, n_b)} classes; measure {self.name!r} needs about "
                f"{self.stable_classes} for a stable value (benchmarks/bench_measure_sizes.py)"
            ]
        return []


def atom_count(stats: ClassStats, idx: np.ndarray, mode: str) -> int:
    """Classes (class-means) or images (samples) of the multiset ``idx``."""
    if mode == "class-means":
        return int(len(idx))
    return int(stats.counts[idx].sum()) if len(idx) else 0


def class_rows(stats: ClassStats, idx: np.ndarray) -> np.ndarray:
    """Feature-row indices of the images of classes ``idx`` (repeated classes repeat)."""
    rows = stats._rows  # noqa: SLF001 - the per-class row index ClassStats keeps
    if not len(idx):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([rows[int(i)] for i in idx])


def atoms(stats: ClassStats, idx: np.ndarray, mode: str) -> np.ndarray:
    """The atoms of one side as float64 rows: class means or image features."""
    if mode == "class-means":
        return stats.means[idx]
    return np.asarray(stats.features[class_rows(stats, idx)], dtype=np.float64)
