"""FeatureSet: the pooled features of every image of a dataset, with what produced them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRECISIONS = ("fp32", "bf16")
"""Precisions a user can ask for (``FeatureOptions.precision``); ``fp32`` is the default and
what published files used. A FeatureSet's ``precision`` may also be ``fp16`` (``amp`` on CUDA)."""


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Row ``i`` of ``features`` (float32, N x D) belongs to manifest image ``i``."""

    features: np.ndarray
    labels: tuple[str, ...]
    paths: tuple[str, ...]
    extractor: str
    weights_sha256: str
    fingerprint: str
    content_id: str = ""
    """The manifest's ``content_id`` the features were computed from ("" when unknown)."""
    precision: str = "fp32"
    """What the network computed in: ``fp32`` (the default), ``bf16`` or ``fp16`` (autocast)."""

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.features.ndim != 2 or self.features.shape[0] != n or len(self.paths) != n:
            raise ValueError(
                f"features {self.features.shape} do not match {n} labels / {len(self.paths)} paths"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels)))

    def class_means(self) -> tuple[tuple[str, ...], np.ndarray]:
        """Sorted class names and the float64 mean feature of each (C x D)."""
        if len(self) == 0:
            return (), np.zeros((0, self.dim))
        classes, index = np.unique(np.asarray(self.labels, dtype=str), return_inverse=True)
        order = np.argsort(index, kind="stable")
        counts = np.bincount(index, minlength=len(classes))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sums = np.add.reduceat(self.features[order].astype(np.float64), starts, axis=0)
        return tuple(str(c) for c in classes), sums / counts[:, None]
