"""How to get features: one typed config shared by every command that extracts them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from oodml.config import MAX_BATCH, MAX_WORKERS, check_int
from oodml.data.manifest import Manifest
from oodml.errors import ConfigError
from oodml.features.cache import default_cache_dir
from oodml.features.featureset import PRECISIONS, FeatureSet
from oodml.progress import NO_PROGRESS, Progress


def _opt(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class FeatureOptions:
    """Which extractor, which weights, where to run it and where to cache its output."""

    extractor: str = _opt("efficientnet-lite0", "Feature extractor: efficientnet-lite0, "
                          "inception or resnet50.")
    weights: str | None = _opt(None, "Extractor weights file (default: built-in or the torch "
                               "hub cache).")
    device: str = _opt("auto", "Where to extract: auto (a GPU if present), cpu, cuda or cuda:N.")
    batch_size: int | None = _opt(
        None, f"Images per batch (default: 64 on CUDA, 8 on CPU; at most {MAX_BATCH:,}).")
    num_workers: int | None = _opt(
        None, f"Decoding worker processes (default: min(4, CPUs); at most {MAX_WORKERS}).")
    amp: bool = _opt(False, "Mixed precision (CUDA only: fp16 autocast; cached apart).")
    precision: str = _opt(
        "fp32", "Network precision: fp32 (default; what published files used) or bf16 "
        "(autocast, opt-in: faster only where the hardware computes bf16, e.g. CPUs with "
        "AMX; slower elsewhere; see benchmarks/README.md). Cached and recorded apart from "
        "fp32 features.")
    cache_dir: str | None = _opt(None, "Feature cache folder (default: $OODML_CACHE or "
                                 "~/.cache/oodml).", flag="cache")

    def __post_init__(self) -> None:
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        if self.num_workers is not None:
            check_int("num_workers", self.num_workers, 0, MAX_WORKERS)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r} is not one of "
                              f"{', '.join(PRECISIONS)}")
        if self.amp and self.precision != "fp32":
            raise ConfigError("amp (fp16 autocast on CUDA) and precision="
                              f"{self.precision!r} exclude each other; choose one")

    @property
    def cache(self) -> os.PathLike | str:
        return self.cache_dir if self.cache_dir is not None else default_cache_dir()

    def get(self, manifest: Manifest, progress: Progress = NO_PROGRESS,
            cache_dir: str | os.PathLike | None = None) -> FeatureSet:
        """The features of every image of ``manifest`` (cached; ``cache_dir`` overrides)."""
        from oodml.features.extract import get_features

        return get_features(
            manifest,
            self.extractor,
            cache_dir=cache_dir if cache_dir is not None else self.cache,
            device=self.device,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            weights=self.weights,
            amp=self.amp,
            precision=self.precision,
            progress=progress,
        )
