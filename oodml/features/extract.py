"""Batched feature extraction over a manifest, with a cache in front of it.

Decoding and preprocessing run in DataLoader worker processes; the network runs in the main
process under ``torch.inference_mode``, in fp32 unless asked otherwise (``precision="bf16"``:
bf16 autocast on CPU or CUDA; ``amp`` on CUDA: fp16 autocast). The precision used is part of
the feature cache key, so features of different precisions are never mixed.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from oodml.data.manifest import Manifest, content_id_of
from oodml.errors import ConfigError, DataError
from oodml.features.cache import CacheMiss, default_cache_dir, load_features, save_features
from oodml.features.extractors import EXTRACTORS, Collate, Extractor, Transform, sha256_file
from oodml.features.featureset import PRECISIONS, FeatureSet
from oodml.fileio import check_writable_dir, output_arg
from oodml.hub import Progress as DownloadProgress
from oodml.progress import NO_PROGRESS, Progress


class ManifestImages(Dataset):
    """Decoded, preprocessed image ``i`` of a manifest; a decode failure is returned as its
    message (worker exceptions would otherwise arrive wrapped in a traceback)."""

    def __init__(self, manifest: Manifest, transform: Transform) -> None:
        self.manifest = manifest
        self.transform = transform
        self.resize_to = planned_short_side(transform)

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, i: int) -> torch.Tensor | str:
        return load_transformed(self.manifest, i, self.transform, self.resize_to)


def load_transformed(
    manifest: Manifest, i: int, transform: Transform, resize_to: int | None
) -> torch.Tensor | str:
    """Image ``i`` decoded (its resize checked against ``resize_to``) and transformed, or the
    one-line message naming it when that fails (sent back from a DataLoader worker as is)."""
    try:
        return transform(manifest.load_image(i, resize_to))
    except DataError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read image {Path(manifest.root) / manifest.paths[i]}: {exc}"


def planned_short_side(transform: Transform) -> int | None:
    """The shorter side the first ``Resize(int)`` of ``transform`` (a torchvision ``Compose``
    or one transform) scales an image to, or None when no step scales it to an unbounded size
    (no resize, a fixed (h, w) resize, or a random resized crop)."""
    from torchvision import transforms as T

    for step in getattr(transform, "transforms", [transform]):
        if isinstance(step, T.RandomResizedCrop):
            return None
        if isinstance(step, T.Resize):
            size = step.size
            if isinstance(size, int):
                return size
            if isinstance(size, (list, tuple)) and len(size) == 1:
                return int(size[0])
            return None
    return None


class CollateOrError:
    """Batch collation that passes the first per-image error message through unchanged."""

    def __init__(self, collate: Collate) -> None:
        self.collate = collate

    def __call__(self, items: list[torch.Tensor | str]) -> torch.Tensor | str:
        for item in items:
            if isinstance(item, str):
                return item
        return self.collate(items)  # type: ignore[arg-type]


def resolve_device(device: str) -> torch.device:
    """Check that ``device`` exists here; a missing GPU is a one-line error, not a crash.
    ``auto`` is the first GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} requested but CUDA is not available; use device 'cpu' or "
                "'auto'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or auto")
    return dev


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def feature_precision(precision: str, amp: bool, device: torch.device) -> str:
    """The precision extraction runs in: ``bf16`` when asked for, ``fp16`` for ``amp`` on CUDA
    (autocast), else ``fp32`` (``amp`` on a CPU changes nothing, as before)."""
    check_precision(precision)
    if precision == "bf16":
        if amp:
            raise ConfigError("amp (fp16 autocast on CUDA) and precision='bf16' exclude each "
                              "other; choose one")
        return "bf16"
    return "fp16" if amp and device.type == "cuda" else "fp32"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware (CUDA compute capability 8+; on a CPU
    oneDNN's own check: AVX512-BF16 or AMX). Elsewhere bf16 is emulated and slower than fp32
    (benchmarks/bench_extraction.py --precision bf16)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context running a network in ``precision`` (a feature precision)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


CPU_BATCH = 8
CUDA_BATCH = 64


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def default_batch_size(device: torch.device) -> int:
    """64 images on a GPU; 8 on a CPU, where larger batches overflow the caches and run the
    network up to 2x slower per image."""
    return CUDA_BATCH if device.type == "cuda" else CPU_BATCH


def check_run_options(
    device: str, batch_size: int | None, num_workers: int | None
) -> tuple[torch.device, int, int]:
    """Validate the run options up front: the device, batch size and worker count to use."""
    dev = resolve_device(device)
    batch = default_batch_size(dev) if batch_size is None else batch_size
    if batch < 1:
        raise ConfigError(f"batch size {batch} must be at least 1")
    workers = default_workers() if num_workers is None else num_workers
    if workers < 0:
        raise ConfigError(f"num_workers={workers} must be 0 or more")
    return dev, batch, workers


def inference_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` made ready for fast eval-only forward passes on ``device``: BatchNorm folded
    into convolutions where the network offers it (``fused_for_inference``), channels-last
    memory layout (oneDNN on CPU, tensor cores on GPU). The caller's module is not changed."""
    fuse = getattr(model, "fused_for_inference", None)
    net = fuse() if callable(fuse) else copy.deepcopy(model)
    return net.to(device).eval().to(memory_format=torch.channels_last)


def iter_batches(
    manifest: Manifest,
    transform: Transform,
    collate: Collate,
    *,
    batch_size: int,
    num_workers: int,
    pin_memory: bool,
) -> Iterator[torch.Tensor]:
    """Preprocessed batches in manifest order; an undecodable image raises a DataError."""
    loader = DataLoader(
        ManifestImages(manifest, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=CollateOrError(collate),
        pin_memory=pin_memory,
    )
    for batch in loader:
        if isinstance(batch, str):
            raise DataError(batch)
        yield batch


def compute_features(
    manifest: Manifest,
    extractor: Extractor,
    *,
    device: str = "cpu",
    batch_size: int | None = None,
    num_workers: int | None = None,
    amp: bool = False,
    precision: str = "fp32",
    progress: Progress = NO_PROGRESS,
) -> np.ndarray:
    """Run ``extractor`` over every image of ``manifest``: float32 array, N x dim.

    ``batch_size`` None: 64 on CUDA, 8 on CPU. ``precision`` ``bf16`` runs the network under
    bf16 autocast (outputs cast back to float32); see :func:`feature_precision`."""
    dev, batch_size, workers = check_run_options(device, batch_size, num_workers)
    autocast = autocast_for(feature_precision(precision, amp, dev), dev)
    model = inference_model(extractor.model, dev)
    out = np.empty((len(manifest), extractor.dim), dtype=np.float32)
    batches = iter_batches(
        manifest,
        extractor.transform,
        extractor.collate,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
    )
    start = 0
    task = progress.task(f"{extractor.name} features", total=len(manifest))
    with torch.inference_mode(), autocast:
        for batch in batches:
            x = batch.to(dev, non_blocking=True)
            feats = model(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)
            n = feats.shape[0]
            out[start : start + n] = feats.float().cpu().numpy()
            start += n
            task.advance(n)
    task.close()
    return out


def get_features(
    manifest: Manifest,
    extractor: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    num_workers: int | None = None,
    weights: str | os.PathLike | None = None,
    amp: bool = False,
    precision: str = "fp32",
    progress: Progress = NO_PROGRESS,
    offline: bool | None = None,
    download_progress: DownloadProgress | None = None,
) -> FeatureSet:
    """Features of every manifest image from the cache, or computed and then cached.

    The cache key is (dataset fingerprint, dataset content id, extractor, weights sha256,
    feature precision: see :func:`feature_precision`); an unusable entry is recomputed with a
    warning. ``bf16`` on a device without native bf16 warns that it is slower there. The
    content id is read again after extraction; if an image changed meanwhile the features are
    returned but not cached. Missing default weights are downloaded unless ``offline`` (or
    ``$OODML_OFFLINE=1``); ``download_progress(done, total)`` follows a download.
    """
    dev, _, _ = check_run_options(device, batch_size, num_workers)
    used = feature_precision(precision, amp, dev)
    spec = EXTRACTORS.get(extractor)
    weights_path = spec.locate_weights(weights, offline=offline, progress=download_progress)
    weights_sha = sha256_file(weights_path)
    root = output_arg(cache_dir, "feature cache") if cache_dir is not None else default_cache_dir()
    try:
        return load_features(
            root,
            manifest.fingerprint,
            spec.name,
            weights_sha,
            manifest.labels,
            manifest.paths,
            manifest.content_id,
            used,
        )
    except CacheMiss as miss:
        if "no cache entry" not in str(miss):
            warnings.warn(f"{miss}; recomputing", RuntimeWarning, stacklevel=2)
    check_writable_dir(root, "feature cache")
    if used == "bf16" and not native_bf16(dev):
        warnings.warn(
            f"{dev} has no native bf16 (no AVX512-BF16/AMX; CUDA before compute capability "
            "8): bf16 extraction is emulated here and slower than fp32",
            RuntimeWarning,
            stacklevel=2,
        )
    net = spec.build(weights_path, cache_dir=root)
    features = compute_features(
        manifest,
        net,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        amp=amp,
        precision=precision,
        progress=progress,
    )
    fs = FeatureSet(
        features=features,
        labels=manifest.labels,
        paths=manifest.paths,
        extractor=spec.name,
        weights_sha256=net.weights_sha256,
        fingerprint=manifest.fingerprint,
        content_id=manifest.content_id,
        precision=used,
    )
    if content_id_of(manifest.source, manifest.labels, manifest.paths) != manifest.content_id:
        warnings.warn(
            f"images under {manifest.root} changed during feature extraction; "
            "the features were not cached",
            RuntimeWarning,
            stacklevel=2,
        )
        return fs
    save_features(fs, root)
    return fs
