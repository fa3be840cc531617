"""Image inputs for full-backbone training: decode from the manifest, augment, batch.

Training: RandomResizedCrop + horizontal flip; evaluation: resize + centre crop (standard DML
augmentation). DataLoader workers are seeded from (seed, epoch, worker) so runs repeat.

Two routes give the batches:

- per batch (default): every image is decoded and transformed with PIL in a DataLoader;
- decoded once (``image_cache``): every image is decoded once, its shorter side resized to the
  evaluation resize, and kept as uint8 in memory; each training batch is then cropped, resized
  (bilinear, antialiased), flipped and normalised as tensors in the main process. Evaluation
  batches are bit-identical to the PIL route (the same PIL resize, then a centre slice); training
  crops are taken from the resized image rather than the original, so they are the same
  augmentation family, not the same pixels. ``benchmarks/bench_training.py`` measures both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision import transforms as T

from oodml.data.manifest import Manifest
from oodml.errors import DataError
from oodml.features.extract import CollateOrError, load_transformed, planned_short_side
from oodml.train.loop import one_thread
from oodml.train.samplers import BatchSampler

IMAGE_CACHE_BYTES = 8 * 2**30
"""Most memory the decoded-once images may take; past it the rest are decoded per batch (with
a warning), so a large dataset is slower, never an out-of-memory kill."""

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


def eval_resize(size: int) -> int:
    """The shorter side evaluation resizes to before its centre crop (256 for 224)."""
    return int(round(size * 256 / 224))


class _Decoded(Dataset):
    """Image ``indices[i]`` decoded, shorter side resized to ``short``, as a uint8 3 x H x W
    tensor (or the one-line message naming it)."""

    def __init__(self, manifest: Manifest, indices: np.ndarray, short: int) -> None:
        self.manifest, self.indices, self.short = manifest, indices, short
        self.tf = T.Compose([T.Resize(short), T.PILToTensor()])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor | str:
        return load_transformed(self.manifest, int(self.indices[i]), self.tf, self.short)


def _first(items: list[torch.Tensor | str]) -> torch.Tensor | str:
    return items[0]


class DecodedImages:
    """Every image decoded once (uint8, shorter side ``short``), at most ``budget`` bytes of
    them; the rest are decoded again when asked for."""

    def __init__(
        self,
        manifest: Manifest,
        indices: np.ndarray,
        short: int,
        *,
        num_workers: int = 0,
        budget: int = IMAGE_CACHE_BYTES,
    ) -> None:
        self.source = _Decoded(manifest, indices, short)
        self.images: list[torch.Tensor] = []
        used = 0
        loader = DataLoader(self.source, batch_size=None, num_workers=num_workers,
                            collate_fn=_first if num_workers else None)
        for item in loader:
            img = _batch(item)
            used += img.numel()
            if used > budget:
                import warnings

                warnings.warn(
                    f"decoded images need more than {budget / 2**30:.1f} GiB; images from "
                    f"{len(self.images)} on are decoded per batch (slower)",
                    stacklevel=2,
                )
                break
            self.images.append(img)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> torch.Tensor:
        if i < len(self.images):
            return self.images[i]
        return _batch(self.source[i])


def crop_box(
    height: int,
    width: int,
    gen: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop, RandomResizedCrop's rule: up to 10 tries
    of an area share uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``; when
    none fits, the centre crop with the aspect ratio clamped to ``ratio``."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(3, generator=gen).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
            return top, left, h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crops(images: list[torch.Tensor], size: int, gen: torch.Generator
                         ) -> torch.Tensor:
    """A float batch (B x 3 x size x size, values in [0, 1]) of random resized crops of uint8
    images, each flipped horizontally with probability 1/2; all draws come from ``gen``."""
    with one_thread():
        return _random_resized_crops(images, size, gen)


def _random_resized_crops(images: list[torch.Tensor], size: int, gen: torch.Generator
                          ) -> torch.Tensor:
    out = torch.empty(len(images), 3, size, size)
    for k, img in enumerate(images):
        top, left, h, w = crop_box(img.shape[-2], img.shape[-1], gen)
        crop = img[None, :, top : top + h, left : left + w].float()
        out[k] = torch.nn.functional.interpolate(
            crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )[0]
    flip = torch.rand(len(images), generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out.clamp_(0, 255).div_(255)


def centre_crops(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """Float batch of centre crops in [0, 1], the offsets torchvision's CenterCrop takes."""
    from torchvision.transforms.functional import center_crop

    with one_thread():
        return torch.stack([center_crop(img, [size, size]) for img in images]).float().div_(255)


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
        cache: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.manifest = manifest
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_workers = num_workers
        self.seed = seed
        self.size = size
        self.cache = cache
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.train_tf = train_transform(size, backbone)
        self.eval_tf = eval_transform(size, backbone)
        mean, std = normalisation(backbone)
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self._decoded: DecodedImages | None = None

    def decoded(self) -> DecodedImages:
        """The decoded-once images, built on first use."""
        if self._decoded is None:
            self._decoded = DecodedImages(
                self.manifest, self.indices, eval_resize(self.size), num_workers=self.num_workers
            )
        return self._decoded

    def _finish(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = x.sub_(self.mean).div_(self.std).contiguous(memory_format=self.memory_format)
        return x.to(device, non_blocking=True)

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
        if self.cache:
            images = self.decoded()
            gen = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            for idx in batches:
                x = random_resized_crops([images[int(i)] for i in idx], self.size, gen)
                yield self._finish(x, device), labels[torch.as_tensor(idx)].to(device)
            return
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
        if self.cache:
            images = self.decoded()
            for idx in batches:
                x = centre_crops([images[int(i)] for i in idx], self.size)
                yield self._finish(x, device)
            return
        for x in self._loader(batches, self.eval_tf, self.seed):
            yield _batch(x).contiguous(memory_format=self.memory_format).to(
                device, non_blocking=True)
