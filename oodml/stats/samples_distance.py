"""The incremental samples-mode distance (Gaussians over all images of two class sets).

:class:`SamplesDistance` keeps a train and a test :class:`oodml.stats.class_stats.PooledGaussian`;
moving or removing a class touches only that class's rows, and :meth:`SamplesDistance.peek`
evaluates a candidate move without committing it. :class:`SamplesAdapter` is the index-list
callable the ladder walks call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from oodml.errors import ConfigError
from oodml.stats.class_stats import ClassRef, ClassStats, PooledGaussian, pooled_distance

SAMPLES_EPS = 0.0
"""eps added to both covariance diagonals in samples mode (none: the usual FID)."""


class SamplesDistance:
    """Incremental samples-mode distance between a train and a test set of classes.

    Every class of ``stats`` is in exactly one of ``train``, ``test`` or ``removed``.
    ``move(c, to)`` puts class ``c`` on side ``to`` ("train" or "test", from wherever it is),
    ``remove(c)`` takes it out of both; each touches only that class's statistics.
    ``distance()`` is the current distance (cached until the next change);
    ``peek(c, to)`` is the distance after a move (``to=None``: a removal) without applying it;
    ``copy()`` gives an independent evaluator.
    """

    def __init__(
        self,
        stats: ClassStats,
        train: Iterable[ClassRef],
        test: Iterable[ClassRef],
        eps: float = 0.0,
    ) -> None:
        self.stats = stats
        self.eps = float(eps)
        self._sides = {"train": PooledGaussian(stats, train), "test": PooledGaussian(stats, test)}
        if self._sides["train"].members & self._sides["test"].members:
            raise ConfigError("a class cannot be in both train and test")
        self._cached: float | None = None

    @property
    def train(self) -> tuple:
        return self._sides["train"].classes

    @property
    def test(self) -> tuple:
        return self._sides["test"].classes

    @property
    def removed(self) -> tuple:
        used = self._sides["train"].members | self._sides["test"].members
        return tuple(c for i, c in enumerate(self.stats.classes) if i not in used)

    def side_of(self, c: ClassRef) -> str | None:
        """ "train", "test", or None when class ``c`` is removed."""
        i = self.stats.index(c)
        for name, side in self._sides.items():
            if i in side.members:
                return name
        return None

    def _check_side(self, to: str | None) -> None:
        if to is not None and to not in self._sides:
            raise ConfigError(f"unknown side {to!r}; choose 'train' or 'test'")

    def move(self, c: ClassRef, to: str) -> None:
        """Put class ``c`` on side ``to`` ("train" | "test")."""
        self._check_side(to)
        if to is None:
            raise ConfigError("move needs to='train' or to='test'; use remove() to drop a class")
        src = self.side_of(c)
        if src == to:
            return
        if src is not None:
            self._sides[src].remove(c)
        self._sides[to].add(c)
        self._cached = None

    def remove(self, c: ClassRef) -> None:
        """Take class ``c`` out of train and test."""
        src = self.side_of(c)
        if src is not None:
            self._sides[src].remove(c)
            self._cached = None

    def distance(self) -> float:
        if self._cached is None:
            a, b = self._sides["train"], self._sides["test"]
            self._cached = pooled_distance(*a.moments, *b.moments, self.eps)
        return self._cached

    def peek(self, c: ClassRef, to: str | None) -> float:
        """Distance if class ``c`` were moved to ``to`` (None = removed); nothing changes."""
        self._check_side(to)
        i = self.stats.index(c)
        src = self.side_of(i)
        if src == to:
            return self.distance()
        n_i, s_i, g_i = int(self.stats.counts[i]), self.stats.sums[i], self.stats.gram(i)
        parts = {}
        for name, side in self._sides.items():
            n, s, g = side.moments
            if name == src:
                n, s, g = n - n_i, s - s_i, g - g_i
            elif name == to:
                n, s, g = n + n_i, s + s_i, g + g_i
            parts[name] = (n, s, g)
        return pooled_distance(*parts["train"], *parts["test"], self.eps)

    def copy(self) -> SamplesDistance:
        out = SamplesDistance.__new__(SamplesDistance)
        out.stats, out.eps, out._cached = self.stats, self.eps, self._cached
        out._sides = {k: v.copy() for k, v in self._sides.items()}
        return out


class SamplesAdapter:
    """Index-list distance over :class:`SamplesDistance`.

    Each call moves the incremental evaluator from its last state to the requested one, so
    consecutive calls touch only the few classes that differ (never all features).
    """

    def __init__(self, stats: ClassStats, train, test, eps: float) -> None:
        self._sd = SamplesDistance(stats, train, test, eps=eps)
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
