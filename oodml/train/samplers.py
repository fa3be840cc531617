"""Batch samplers over integer labels: m-per-class (classes drawn, m images each) and random.

Each epoch's batches are a pure function of (labels, seed, epoch), so a resumed run sees the
same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from oodml.errors import ConfigError
from oodml.registry import Registry


class BatchSampler:
    """Base: ``batches(epoch)`` yields index arrays; ``len`` is batches per epoch."""

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        if self.batch_size < 2:
            raise ConfigError(f"batch size {batch_size} is too small; use at least 2")
        if len(self.labels) < self.batch_size:
            raise ConfigError(
                f"batch size {batch_size} is larger than the {len(self.labels)} training images; "
                "lower batch_size"
            )

    def rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def batches(self, epoch: int) -> Iterator[np.ndarray]:
        raise NotImplementedError


class RandomBatchSampler(BatchSampler):
    """Shuffled images, last incomplete batch dropped."""

    def batches(self, epoch: int) -> Iterator[np.ndarray]:
        order = self.rng(epoch).permutation(len(self.labels))
        for b in range(len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]


class MPerClassBatchSampler(BatchSampler):
    """Batches of ``batch_size // m`` distinct classes with ``m`` distinct images each.

    Checks up front that the batch holds whole groups of m, at least two classes, no more
    classes than exist, and that every class has at least m images.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int, m: int = 4) -> None:
        super().__init__(labels, batch_size, seed)
        self.m = int(m)
        if self.m < 1:
            raise ConfigError(f"m-per-class m={m} must be at least 1")
        if self.batch_size % self.m:
            raise ConfigError(
                f"batch size {batch_size} cannot hold m={m} samples per class: "
                f"use a multiple of {m}"
            )
        self.classes_per_batch = self.batch_size // self.m
        classes, counts = np.unique(self.labels, return_counts=True)
        if self.classes_per_batch < 2:
            raise ConfigError(
                f"batch size {batch_size} with m={m} holds only one class; "
                f"use a batch size of at least {2 * self.m}"
            )
        if self.classes_per_batch > len(classes):
            raise ConfigError(
                f"batch size {batch_size} with m={m} needs {self.classes_per_batch} classes but "
                f"the training set has {len(classes)}; lower batch_size or raise m"
            )
        small = classes[counts < self.m]
        if len(small):
            raise ConfigError(
                f"{len(small)} training class(es) have fewer than m={m} images "
                f"(smallest: {counts.min()}); lower m"
            )
        self.by_class = [np.flatnonzero(self.labels == c) for c in classes]

    def batches(self, epoch: int) -> Iterator[np.ndarray]:
        rng = self.rng(epoch)
        pools = [rng.permutation(idx) for idx in self.by_class]
        cursor = [0] * len(pools)
        for _ in range(len(self)):
            chosen = rng.choice(len(pools), size=self.classes_per_batch, replace=False)
            batch = []
            for c in chosen:
                if cursor[c] + self.m > len(pools[c]):
                    pools[c] = rng.permutation(self.by_class[c])
                    cursor[c] = 0
                batch.append(pools[c][cursor[c] : cursor[c] + self.m])
                cursor[c] += self.m
            yield np.concatenate(batch)


SAMPLERS: Registry[type[BatchSampler]] = Registry("sampler")
SAMPLERS.add("m-per-class", MPerClassBatchSampler)
SAMPLERS.add("random", RandomBatchSampler)


def build_sampler(
    name: str, labels: np.ndarray, batch_size: int, seed: int, m: int = 4
) -> BatchSampler:
    """Build the named sampler; bad settings raise ConfigError before any training."""
    cls = SAMPLERS.get(name)
    if cls is MPerClassBatchSampler:
        return MPerClassBatchSampler(labels, batch_size, seed, m=m)
    return cls(labels, batch_size, seed)
