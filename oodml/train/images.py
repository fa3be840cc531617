"""Image inputs for full-backbone training: decode from the manifest, augment, batch.

Training: RandomResizedCrop + horizontal flip; evaluation: resize + centre crop (standard DML
augmentation). DataLoader workers are seeded from (seed, epoch, worker) so runs repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision import transforms as T

from oodml.data.manifest import Manifest
from oodml.errors import DataError
from oodml.features.extract import CollateOrError, load_transformed, planned_short_side
from oodml.train.samplers import BatchSampler

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def normalisation(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pixel normalisation the backbone's ImageNet weights were trained with."""
    return (
        (LITE_MEAN, LITE_STD)
        if backbone.startswith("efficientnet-lite")
        else (
            IMAGENET_MEAN,
            IMAGENET_STD,
        )
    )


def train_transform(size: int, backbone: str) -> Callable[[Image.Image], torch.Tensor]:
    mean, std = normalisation(backbone)
    return T.Compose(
        [T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
    )


def eval_transform(size: int, backbone: str) -> Callable[[Image.Image], torch.Tensor]:
    mean, std = normalisation(backbone)
    return T.Compose(
        [
            T.Resize(int(round(size * 256 / 224))),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


class _Images(Dataset):
    """Transformed image ``indices[i]``, or the one-line message naming it when it cannot be
    decoded (a worker's exception would arrive wrapped in a traceback)."""

    def __init__(self, manifest: Manifest, indices: np.ndarray, transform: Callable) -> None:
        self.manifest, self.indices, self.transform = manifest, indices, transform
        self.resize_to = planned_short_side(transform)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor | str:
        return load_transformed(self.manifest, int(self.indices[i]), self.transform,
                                self.resize_to)


def _batch(batch: torch.Tensor | str) -> torch.Tensor:
    if isinstance(batch, str):
        raise DataError(batch)
    return batch


def _seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    seed = int(info.seed) % 2**32 if info is not None else worker_id
    np.random.seed(seed)
    import random

    random.seed(seed)


class ImageInputs:
    """Images ``indices`` of ``manifest`` with integer ``labels`` (one per index)."""

    def __init__(
        self,
        manifest: Manifest,
        indices: np.ndarray,
        labels: np.ndarray,
        *,
        backbone: str,
        size: int = 224,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        self.manifest = manifest
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_workers = num_workers
        self.seed = seed
        self.train_tf = train_transform(size, backbone)
        self.eval_tf = eval_transform(size, backbone)

    def __len__(self) -> int:
        return len(self.indices)

    def _loader(self, batches: list[np.ndarray], transform: Callable, seed: int) -> DataLoader:
        gen = torch.Generator()
        gen.manual_seed(seed)
        return DataLoader(
            _Images(self.manifest, self.indices, transform),
            batch_sampler=[b.tolist() for b in batches],
            num_workers=self.num_workers,
            collate_fn=CollateOrError(default_collate),
            worker_init_fn=_seed_worker,
            generator=gen,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )

    def train_batches(
        self, sampler: BatchSampler, epoch: int, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = list(sampler.batches(epoch))
        labels = torch.as_tensor(self.labels)
        if self.num_workers == 0:
            torch.manual_seed(self.seed * 100003 + epoch)
        loader = self._loader(batches, self.train_tf, self.seed * 100003 + epoch)
        for idx, x in zip(batches, loader, strict=True):
            yield (
                _batch(x).to(device, non_blocking=True),
                labels[torch.as_tensor(idx)].to(device),
            )

    def eval_batches(self, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
        n = len(self.indices)
        batches = [np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
        for x in self._loader(batches, self.eval_tf, self.seed):
            yield _batch(x).to(device, non_blocking=True)
