"""The train-size-controlled protocol: train on N classes drawn from each split's train set.

On a test-fixed ladder the hard splits are reached by removing train classes, so a metric's
fall along the ladder mixes the shift with a model trained on fewer classes. With
``RunSpec.train_classes = N`` every split is also trained on N of its train classes (by
default the ladder's smallest train set, so every split trains on the same number of
classes) and evaluated on its full, unchanged test set; the rows carry ``train="n<N>"`` and
the draw's seed in ``train_seed`` (:mod:`oodml.results`).

Draw ``r`` of split ``s`` uses the seed :func:`draw_seed` (split file seed, s, N, r): the same
classes for every method and training seed, so methods compare on the same draws and a
draw is reproducible from its recorded seed alone (:func:`draw_classes`). Where N is the
whole train set every draw would be the same, so there is one draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from oodml.config import MAX_SEED
from oodml.errors import ConfigError
from oodml.results import train_label
from oodml.splits.splitfile import Split, SplitFile, load_splitfile
from oodml.train.spec import RunSpec

__all__ = [
    "check_train_size",
    "draw_classes",
    "draw_seed",
    "draws_at",
    "expand_train_draws",
    "resolve_train_classes",
    "run_train_classes",
    "smallest_train_set",
]

_TAG = 0x747261696E  # "train": keeps these streams apart from other seeded draws


def draw_seed(splitfile_seed: int | None, split_id: int, n: int, draw: int) -> int:
    """The seed of draw ``draw`` of ``n`` train classes at split ``split_id`` (in [0, 2**63))."""
    words = np.random.SeedSequence([_TAG, splitfile_seed or 0, split_id, n, draw]).generate_state(
        2, np.uint64)
    return int(words[0]) & MAX_SEED


def draw_classes(train: Sequence[str], n: int, seed: int) -> tuple[str, ...]:
    """``n`` of the classes ``train`` without replacement, drawn by ``default_rng(seed)`` from
    the sorted class names; returned sorted."""
    pool = sorted(train)
    if not 1 <= n <= len(pool):
        raise ConfigError(f"cannot draw {n} of {len(pool)} train classes")
    picked = np.random.default_rng(seed).choice(len(pool), size=n, replace=False)
    return tuple(sorted(pool[int(i)] for i in picked))


def smallest_train_set(sf: SplitFile) -> int:
    """The smallest train-class count over the ladder (the default N)."""
    return min(len(s.train) for s in sf.ladder)


def resolve_train_classes(spec: RunSpec, sf: SplitFile, path: str = "") -> int | None:
    """N of ``spec`` on the ladder ``sf`` (``'min'`` -> the smallest train set), None when the
    protocol is off; a ladder with a split that has no train classes is a ConfigError."""
    if spec.train_classes is None:
        return None
    empty = [s.id for s in sf.ladder if not s.train]
    if empty:
        raise ConfigError(
            f"train_classes needs train classes at every split, but split(s) {empty} of "
            f"{path or spec.splitfile} have none (an imported file without train sides?); "
            "drop --train-classes for this file"
        )
    if spec.train_classes == "min":
        return smallest_train_set(sf)
    assert isinstance(spec.train_classes, int)
    return spec.train_classes


def check_train_size(n: int, split: Split, path: str) -> None:
    """N must fit in the split's train set."""
    if n > len(split.train):
        raise ConfigError(
            f"train_classes={n} exceeds the {len(split.train)} train classes of split "
            f"{split.id} of {path}; choose at most the ladder's smallest train set "
            "(train_classes='min')"
        )


def draws_at(split: Split, n: int, draws: int) -> int:
    """How many draws split ``split`` gets: ``draws``, or one where N is its whole train set."""
    return 1 if n == len(split.train) else draws


def expand_train_draws(specs: Sequence[RunSpec]) -> list[RunSpec]:
    """Each spec with ``train_classes`` (and no ``train_draw`` yet) followed by its controlled
    runs: one spec per draw with ``train_classes`` resolved to an int. The full-train spec
    stays (the controlled rows sit next to its rows). Every error is raised here, before any
    training: N larger than the spec's split's train set, a split without train classes."""
    out: list[RunSpec] = []
    files: dict[str, SplitFile] = {}
    for spec in specs:
        if spec.train_classes is None or spec.train_draw is not None:
            out.append(spec)
            continue
        path = str(spec.splitfile)
        sf = files.setdefault(path, load_splitfile(path))
        n = resolve_train_classes(spec, sf, path)
        assert n is not None
        split = sf.split(spec.split_id)
        check_train_size(n, split, path)
        out.append(spec)
        out.extend(replace(spec, train_classes=n, train_draw=r)
                   for r in range(draws_at(split, n, spec.train_draws)))
    return out


def run_train_classes(spec: RunSpec, sf: SplitFile, split: Split
                      ) -> tuple[tuple[str, ...], str, int]:
    """The classes the run of ``spec`` trains on, its ``train`` label and its draw seed (-1 for
    the whole train set)."""
    if spec.train_draw is None:
        return tuple(split.train), train_label(None), -1
    n = resolve_train_classes(spec, sf)
    assert n is not None
    check_train_size(n, split, str(spec.splitfile))
    seed = draw_seed(sf.seed, split.id, n, spec.train_draw)
    return draw_classes(split.train, n, seed), train_label(n), seed


def run_grid(
    methods: Sequence[RunSpec],
    ladder: Sequence[int],
    splits: Sequence[int] | None = None,
    seeds: Sequence[int] = (0,),
    *,
    where: str = "",
) -> list[RunSpec]:
    """The study's grid: one run per (method, split, seed), in that order, each followed by
    its train-size-controlled draws when the method sets ``train_classes``.

    ``methods`` are templates (their ``split_id`` and ``seed`` are replaced); ``ladder`` the
    split ids of the split file; ``splits`` the chosen ids (None: all of ``ladder``). A chosen
    id the ladder lacks is a ConfigError naming the ids it has (prefixed by ``where``, the
    source of the choice), raised before any run, as are the train-size errors of
    :func:`expand_train_draws` (which resolves ``train_classes`` and
    adds ``train_draws`` runs per spec). ``oodml evaluate``/``fewshot`` and a sweep both
    build their runs here.
    """

    chosen = list(ladder) if splits is None else list(splits)
    missing = [sid for sid in chosen if sid not in set(ladder)]
    if missing:
        ids = ", ".join(str(i) for i in ladder)
        which = f"split id {missing[0]} is" if len(missing) == 1 else f"split ids {missing} are"
        raise ConfigError(f"{where}{which} not in the ladder; choose from: {ids}")
    if not seeds:
        raise ConfigError(f"{where}seeds must list at least one seed")
    return expand_train_draws([
        replace(m, split_id=sid, seed=seed) for m in methods for sid in chosen for seed in seeds
    ])
