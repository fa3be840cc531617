"""Per-split sub-splits: a seeded train/validation split of the train classes and few-shot episodes.

Pure functions of their inputs and a ``numpy.random.Generator``; classes and image paths are
sorted before sampling, so the result does not depend on input order.

Few-shot rule: an episode with ``shots`` support images per test class needs at least
``shots + 1`` images of a class (one query at least). A class with fewer images is left out of
every episode of that shot count and listed in the returned ``skipped`` mapping (stored in the
split file as ``episodes_skipped``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from oodml.errors import ConfigError

DEFAULT_VAL_FRACTION = 0.25
DEFAULT_SHOTS = (2, 5, 10)
DEFAULT_EPISODES = 10


def split_rng(seed: int, split_id: int, stream: int) -> np.random.Generator:
    """An independent generator per (seed, split, purpose): 0 = validation, 1 = episodes."""
    return np.random.default_rng(np.random.SeedSequence([seed, split_id, stream]))


def train_val_split(
    train: Iterable[str], val_fraction: float, rng: np.random.Generator
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split the train classes into (val_train, val), both sorted.

    ``round(n * val_fraction)`` classes (half rounded up) go to validation, clipped so that both
    parts keep at least one class when there are two or more.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"validation fraction {val_fraction} must be in [0, 1); e.g. 0.25")
    classes = sorted(train)
    n = len(classes)
    n_val = math.floor(n * val_fraction + 0.5)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    chosen = set(rng.choice(n, size=n_val, replace=False).tolist()) if n_val else set()
    val = tuple(c for i, c in enumerate(classes) if i in chosen)
    val_train = tuple(c for i, c in enumerate(classes) if i not in chosen)
    return val_train, val


def paths_by_class(labels: Sequence[str], paths: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Class name -> its image paths, sorted."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for cls, path in zip(labels, paths, strict=True):
        grouped[cls].append(path)
    return {c: tuple(sorted(p)) for c, p in sorted(grouped.items())}


def few_shot_episodes(
    test: Iterable[str],
    class_paths: Mapping[str, Sequence[str]],
    shots: Sequence[int],
    episodes: int,
    rng: np.random.Generator,
) -> tuple[dict[int, list[dict[str, list[str]]]], dict[int, tuple[str, ...]]]:
    """Sample support sets: shots -> episodes -> test class -> sorted support paths.

    The query set of a class in an episode is every other image of that class. Returns the
    episodes and, per shot count, the classes skipped for having fewer than ``shots + 1`` images.
    """
    if episodes < 1:
        raise ConfigError(f"number of episodes {episodes} must be at least 1")
    shot_list = sorted(set(int(s) for s in shots))
    if any(s < 1 for s in shot_list):
        raise ConfigError(f"shot counts {list(shots)} must all be at least 1")
    classes = sorted(test)
    missing = [c for c in classes if c not in class_paths]
    if missing:
        raise ConfigError(f"test class {missing[0]!r} has no images in the dataset")
    pools = {c: sorted(class_paths[c]) for c in classes}
    out: dict[int, list[dict[str, list[str]]]] = {}
    skipped: dict[int, tuple[str, ...]] = {}
    for s in shot_list:
        usable = [c for c in classes if len(pools[c]) >= s + 1]
        too_small = tuple(c for c in classes if len(pools[c]) < s + 1)
        if too_small:
            skipped[s] = too_small
        out[s] = [{c: _sample(pools[c], s, rng) for c in usable} for _ in range(episodes)]
    return out, skipped


def _sample(pool: list[str], k: int, rng: np.random.Generator) -> list[str]:
    picks = np.sort(rng.choice(len(pool), size=k, replace=False))
    return [pool[i] for i in picks]
