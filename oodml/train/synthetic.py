"""A small synthetic study on disk (image folder, cached features, split file) for fast tests
and demos of the runner without decoding or embedding real images.

Features are class centres plus Gaussian noise, written into the feature cache under the real
extractor's name and weights hash, so ``oodml.features.get_features`` serves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from oodml.data import load_dataset
from oodml.features import EXTRACTORS, FeatureSet
from oodml.features.cache import save_features
from oodml.features.extractors import sha256_file
from oodml.splits.splitfile import Split, SplitFile, save_splitfile


@dataclass(frozen=True)
class SyntheticStudy:
    root: Path
    cache_dir: Path
    splitfile: Path
    features: np.ndarray
    extractor: str


def make_synthetic_study(
    base: str | Path,
    *,
    n_classes: int = 12,
    per_class: int = 10,
    dim: int = 32,
    n_splits: int = 2,
    shots: tuple[int, ...] = (2,),
    n_episodes: int = 2,
    noise: float = 2.0,
    seed: int = 0,
    extractor: str = "efficientnet-lite0",
) -> SyntheticStudy:
    """Write an ``imagefolder`` dataset, its cached features and a ladder of ``n_splits``
    splits (train = half the classes, shifted by one class per rung) under ``base``."""
    base = Path(base)
    rng = np.random.default_rng(seed)
    root = base / "data"
    classes = [f"class{c:02d}" for c in range(n_classes)]
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixel = rng.integers(0, 255, size=(4, 4, 3), dtype=np.uint8)
            Image.fromarray(pixel).save(root / c / f"img{i:02d}.png")
    manifest = load_dataset("imagefolder", root)
    centres = rng.normal(size=(n_classes, dim))
    features = (
        centres[manifest.label_index] + noise * rng.normal(size=(len(manifest), dim))
    ).astype(np.float32)
    spec = EXTRACTORS.get(extractor)
    weights_sha = sha256_file(spec.locate_weights())
    cache_dir = base / "cache"
    save_features(
        FeatureSet(
            features,
            manifest.labels,
            manifest.paths,
            extractor,
            weights_sha,
            manifest.fingerprint,
            manifest.content_id,
        ),
        cache_dir,
    )
    paths_of = {c: [manifest.paths[i] for i in manifest.indices_of([c])] for c in classes}
    ladder = []
    half = n_classes // 2
    for k in range(n_splits):
        order = classes[k:] + classes[:k]
        train, test = tuple(sorted(order[:half])), tuple(sorted(order[half:]))
        episodes = {
            s: [
                {c: sorted(rng.choice(paths_of[c], size=s, replace=False).tolist()) for c in test}
                for _ in range(n_episodes)
            ]
            for s in shots
        }
        ladder.append(
            Split(
                id=k + 1,
                distance=float(10 * (k + 1)),
                is_start=k == 0,
                train=train,
                test=test,
                val_train=train[: len(train) - 2],
                val=train[len(train) - 2 :],
                episodes=episodes,
            )
        )
    sf = SplitFile(
        dataset_name="imagefolder",
        dataset_fingerprint=manifest.fingerprint,
        class_counts=dict(manifest.class_counts),
        extractor=extractor,
        weights_sha256=weights_sha,
        distance_mode="class-means",
        procedure="synthetic",
        params={},
        seed=seed,
        ladder=ladder,
    )
    path = save_splitfile(sf, base / "ladder.json")
    return SyntheticStudy(root, cache_dir, path, features, extractor)
