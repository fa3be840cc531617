"""Per-class feature statistics and incremental pooled Gaussians.

:class:`ClassStats` holds the counts, means and on-demand Gram matrices of every class of a
feature set; :class:`PooledGaussian` the mean and covariance of all images of a changing set
of classes, where adding or removing a class touches only that class's rows.

Per-class Gram matrices ``X_c^T X_c`` are computed on demand from that class's rows (centred on
the global mean for numerical stability) and kept in a small LRU cache; C x D x D is never stored.
The set distances built on them live in :mod:`oodml.stats.modes`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from oodml.errors import ConfigError
from oodml.stats.gaussian import frechet_distance, moments_cov, require_two
from oodml.stats.means_distance import CLASS_MEANS_EPS, MeansDistance

ClassRef = str | int | np.integer
SplitDistance = Callable[[Sequence[int], Sequence[int]], float]
SplitLists = tuple[Sequence[int], Sequence[int]]
"""A (train, test) split as class index lists (what screens are told a batch came from)."""


class ClassStats:
    """Counts, means and on-demand Gram matrices of every class of a feature set.

    Build with :meth:`from_features`. ``classes`` is the sorted tuple of class names;
    ``counts[i]`` and ``means[i]`` (float64) belong to ``classes[i]``. Methods taking classes
    accept names or integer indices into ``classes``.
    """

    def __init__(
        self,
        features: np.ndarray,
        classes: tuple,
        rows: tuple[np.ndarray, ...],
        gram_cache_bytes: int = 256 * 2**20,
    ) -> None:
        self._features = features
        self.classes = classes
        self._rows = rows
        self._index = {c: i for i, c in enumerate(classes)}
        self.dim = int(features.shape[1])
        self.center = features.mean(axis=0, dtype=np.float64)
        self.counts = np.array([len(r) for r in rows], dtype=np.int64)
        self.sums = np.stack([self._centred(i).sum(axis=0) for i in range(len(classes))])
        self.means = self.center + self.sums / self.counts[:, None]
        self._gram_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._gram_cache_bytes = gram_cache_bytes
        self._means_distance: dict[float, MeansDistance] = {}

    @classmethod
    def from_features(
        cls, features: np.ndarray, labels: Sequence, *, gram_cache_bytes: int = 256 * 2**20
    ) -> ClassStats:
        """Statistics of ``features`` (N x D, any float dtype; not copied) grouped by ``labels``
        (one class name per row)."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[0] != len(labels):
            raise ConfigError(
                f"features of shape {features.shape} do not match {len(labels)} labels; "
                "pass one label per feature row"
            )
        if not np.isfinite(features).all():
            raise ConfigError("features contain NaN or inf; recompute them (oodml features)")
        classes = tuple(sorted(set(labels)))
        index = {c: i for i, c in enumerate(classes)}
        label_idx = np.fromiter((index[lab] for lab in labels), dtype=np.int64, count=len(labels))
        order = np.argsort(label_idx, kind="stable")
        bounds = np.searchsorted(label_idx[order], np.arange(len(classes) + 1))
        rows = tuple(order[bounds[i] : bounds[i + 1]] for i in range(len(classes)))
        return cls(features, classes, rows, gram_cache_bytes)

    def index(self, c: ClassRef) -> int:
        """Integer index of class ``c`` (a name, or an index that is passed through)."""
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= int(c) < len(self.classes):
                raise ConfigError(f"class index {c} out of range 0..{len(self.classes) - 1}")
            return int(c)
        try:
            return self._index[c]
        except KeyError:
            raise ConfigError(f"unknown class {c!r}; it is not in this feature set") from None

    def indices(self, classes: Iterable[ClassRef]) -> np.ndarray:
        """Integer indices (int64 array) of ``classes``."""
        return np.array([self.index(c) for c in classes], dtype=np.int64)

    def _centred(self, i: int) -> np.ndarray:
        return self._features[self._rows[i]].astype(np.float64) - self.center

    def gram(self, c: ClassRef) -> np.ndarray:
        """X_c^T X_c (D x D float64) of class ``c``'s rows centred on the global mean.

        Read-only: the array may be shared through the cache.
        """
        i = self.index(c)
        g = self._gram_cache.get(i)
        if g is not None:
            self._gram_cache.move_to_end(i)
            return g
        x = self._centred(i)
        g = x.T @ x
        g.flags.writeable = False
        if g.nbytes <= self._gram_cache_bytes:
            while (
                self._gram_cache and (len(self._gram_cache) + 1) * g.nbytes > self._gram_cache_bytes
            ):
                self._gram_cache.popitem(last=False)
            self._gram_cache[i] = g
        return g

    def pooled(self, classes: Iterable[ClassRef]) -> PooledGaussian:
        """A :class:`PooledGaussian` over all images of ``classes``."""
        return PooledGaussian(self, classes)

    @property
    def features(self) -> np.ndarray:
        """The N x D feature rows this object was built from (not copied; do not modify)."""
        return self._features

    def means_distance(self, eps: float = CLASS_MEANS_EPS) -> MeansDistance:
        """The (cached) fast class-means evaluator over this feature set's class means."""
        if eps not in self._means_distance:
            self._means_distance[eps] = MeansDistance(self.means, eps=eps)
        return self._means_distance[eps]


BULK_MIN_CLASSES = 64
BULK_ROWS = 4096


class PooledGaussian:
    """Mean and unbiased covariance of all images of a changing set of classes.

    ``add(c)`` / ``remove(c)`` update a running count, sum and Gram matrix with that class's
    statistics only. ``n``, ``mean`` and ``cov`` are read on demand.
    """

    def __init__(self, stats: ClassStats, classes: Iterable[ClassRef] = ()) -> None:
        self.stats = stats
        self.members: set[int] = set()
        self.n = 0
        self._sum = np.zeros(stats.dim)
        self._gram = np.zeros((stats.dim, stats.dim))
        classes = list(classes)
        if len(classes) > BULK_MIN_CLASSES:
            self._add_bulk(classes)
        else:
            for c in classes:
                self.add(c)

    def _add_bulk(self, classes: list[ClassRef]) -> None:
        """Add many classes with one Gram product over all their rows (in chunks), instead of
        one D x D Gram and one D x D addition per class: SOP's 11k classes a side would
        otherwise move ~10^11 bytes through memory before the first distance."""
        idx = [self.stats.index(c) for c in classes]
        if len(set(idx)) != len(idx) or self.members.intersection(idx):
            raise ConfigError("a class is listed twice or is already in this set")
        rows = np.concatenate([self.stats._rows[i] for i in idx])
        for start in range(0, rows.size, BULK_ROWS):
            x = self.stats._features[rows[start : start + BULK_ROWS]].astype(np.float64)
            x -= self.stats.center
            self._gram += x.T @ x
        self.members.update(idx)
        self.n += int(self.stats.counts[idx].sum())
        self._sum += self.stats.sums[idx].sum(axis=0)

    def add(self, c: ClassRef) -> None:
        """Add class ``c`` (name or index); it must not already be a member."""
        i = self.stats.index(c)
        if i in self.members:
            raise ConfigError(f"class {self.stats.classes[i]!r} is already in this set")
        self.members.add(i)
        self.n += int(self.stats.counts[i])
        self._sum += self.stats.sums[i]
        self._gram += self.stats.gram(i)

    def remove(self, c: ClassRef) -> None:
        """Remove member class ``c`` (name or index)."""
        i = self.stats.index(c)
        if i not in self.members:
            raise ConfigError(f"class {self.stats.classes[i]!r} is not in this set")
        self.members.remove(i)
        self.n -= int(self.stats.counts[i])
        self._sum -= self.stats.sums[i]
        self._gram -= self.stats.gram(i)
        if not self.members:
            self._sum[:] = 0.0
            self._gram[:] = 0.0

    @property
    def classes(self) -> tuple:
        """Member class names, sorted."""
        return tuple(self.stats.classes[i] for i in sorted(self.members))

    @property
    def mean(self) -> np.ndarray:
        if self.n == 0:
            raise ConfigError("the mean of an empty class set is undefined; add a class first")
        return self.stats.center + self._sum / self.n

    @property
    def cov(self) -> np.ndarray:
        require_two(self.n, self.n, "images")
        return moments_cov(self.n, self._sum, self._gram)

    @property
    def moments(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(n, s, G): the image count, sum and second moment of the members' rows (centred on
        the global mean); not copied."""
        return self.n, self._sum, self._gram

    def copy(self) -> PooledGaussian:
        out = PooledGaussian.__new__(PooledGaussian)
        out.stats, out.members, out.n = self.stats, set(self.members), self.n
        out._sum, out._gram = self._sum.copy(), self._gram.copy()
        return out


def pooled_distance(
    na: int,
    sa: np.ndarray,
    ga: np.ndarray,
    nb: int,
    sb: np.ndarray,
    gb: np.ndarray,
    eps: float | None,
) -> float:
    """Fréchet distance between the Gaussians of two moment triples (n, s, G), eps added to
    both covariance diagonals."""
    require_two(na, nb, "images")
    ca, cb = moments_cov(na, sa, ga), moments_cov(nb, sb, gb)
    if eps:
        idx = np.diag_indices_from(ca)
        ca[idx] += eps
        cb[idx] += eps
    return frechet_distance(sa / na, ca, sb / nb, cb)
