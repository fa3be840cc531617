"""Generate a split file: class statistics -> ladder procedure -> selection -> sub-splits.

Seeds: the procedure gets ``seed`` (used for a random starting split); the sub-splits of ladder
split ``k`` use independent generators derived from ``(seed, k)`` (see ``subsplits.split_rng``),
so the same inputs and seed always give the same SplitFile and the same bytes on disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oodml import __version__
from oodml.classstats import MODES, ClassStats
from oodml.config import check_choice, check_float, check_int, check_seed
from oodml.errors import ConfigError
from oodml.progress import NO_PROGRESS, Progress, tick_callback
from oodml.splits.ladder import (
    PROCEDURES,
    resolve_params,
    run_procedure,
    select_ladder,
    start_split,
)
from oodml.splits.splitfile import Split, SplitFile
from oodml.splits.subsplits import (
    DEFAULT_EPISODES,
    DEFAULT_SHOTS,
    DEFAULT_VAL_FRACTION,
    few_shot_episodes,
    paths_by_class,
    split_rng,
    train_val_split,
)

START_CHOICES = ("auto", "default", "random")


def build_split(
    split_id: int,
    distance: float,
    is_start: bool,
    train: Sequence[str],
    test: Sequence[str],
    removed: Sequence[str],
    *,
    class_paths: Mapping[str, Sequence[str]],
    seed: int,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    shots: Sequence[int] = DEFAULT_SHOTS,
    episodes: int = DEFAULT_EPISODES,
) -> Split:
    """One ladder split with its seeded validation sub-split and few-shot episodes."""
    val_train, val = train_val_split(train, val_fraction, split_rng(seed, split_id, 0))
    eps, skipped = few_shot_episodes(
        test, class_paths, shots, episodes, split_rng(seed, split_id, 1)
    )
    return Split(
        id=split_id,
        distance=float(distance),
        is_start=bool(is_start),
        train=tuple(sorted(train)),
        test=tuple(sorted(test)),
        removed=tuple(sorted(removed)),
        val_train=val_train,
        val=val,
        episodes=eps,
        episodes_skipped=skipped,
    )


@dataclass(frozen=True)
class LadderConfig:
    """Every ladder-generation option, checked on construction (before any extraction)."""

    mode: str = "class-means"
    procedure: str = "greedy"
    levels: int = 8
    targets: tuple[float, ...] | None = None
    seed: int = 0
    start: str = "auto"
    params: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = DEFAULT_VAL_FRACTION
    shots: tuple[int, ...] = tuple(DEFAULT_SHOTS)
    episodes: int = DEFAULT_EPISODES

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_choice("procedure", self.procedure, tuple(PROCEDURES.names()))
        check_choice("start", self.start, START_CHOICES)
        check_int("levels", self.levels, 1)
        check_seed("seed", self.seed)
        check_float("val_fraction", self.val_fraction, 0.0, hi=0.9)
        check_int("episodes", self.episodes, 0)
        if not self.shots:
            raise ConfigError("shots must list at least one shot count, e.g. 2,5,10")
        for s in self.shots:
            check_int("shots", s, 1)
        for t in self.targets or ():
            check_float("targets", t, 0.0)
        if self.params.get("eps") is not None:
            check_float("eps", self.params["eps"], 0.0)
        resolve_params(self.procedure, self.mode, dict(self.params))


def generate_splitfile(
    manifest: Any,
    featureset: Any,
    config: LadderConfig = LadderConfig(),
    progress: Progress = NO_PROGRESS,
) -> SplitFile:
    """Walk the ladder procedure on ``featureset`` and package the selected splits."""
    c = config
    if featureset.fingerprint != manifest.fingerprint:
        raise ConfigError(
            f"features are for another version of dataset {manifest.name!r} "
            f"({featureset.fingerprint[:12]}... vs {manifest.fingerprint[:12]}...); recompute them"
        )
    stats = ClassStats.from_features(featureset.features, featureset.labels)
    train, test = start_classes(manifest, c.start, c.seed)
    tick, task = tick_callback(progress, f"{c.procedure} walk ({c.mode})")
    trajectory = run_procedure(
        stats,
        train,
        test,
        mode=c.mode,
        procedure=c.procedure,
        params=dict(c.params),
        progress=tick,
    )
    task.close()
    targets = list(c.targets) if c.targets else None
    steps = select_ladder(trajectory, k=c.levels, targets=targets)
    class_paths = paths_by_class(manifest.labels, manifest.paths)
    ladder = [
        build_split(
            i,
            step.distance,
            step.is_start,
            step.train,
            step.test,
            step.removed,
            class_paths=class_paths,
            seed=c.seed,
            val_fraction=c.val_fraction,
            shots=c.shots,
            episodes=c.episodes,
        )
        for i, step in enumerate(steps, start=1)
    ]
    return SplitFile(
        dataset_name=manifest.name,
        dataset_fingerprint=manifest.fingerprint,
        class_counts=dict(manifest.class_counts),
        extractor=featureset.extractor,
        weights_sha256=featureset.weights_sha256,
        distance_mode=c.mode,
        procedure=c.procedure,
        params=dict(trajectory.params),
        seed=c.seed,
        ladder=ladder,
        oodml_version=__version__,
        selection={"levels": c.levels, "targets": targets, "start": c.start},
        subsplits={"val_fraction": c.val_fraction, "shots": sorted(c.shots),
                   "episodes": c.episodes},
    )


def start_classes(manifest: Any, start: str, seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The starting split: ``default`` (the dataset's), ``random`` (seeded halves) or ``auto``
    (default when the dataset has one, else random)."""
    if start not in START_CHOICES:
        raise ConfigError(f"unknown start {start!r}; choose one of: {', '.join(START_CHOICES)}")
    has_default = bool(manifest.default_train and manifest.default_test)
    use_default = start == "default" or (start == "auto" and has_default)
    return start_split(
        manifest.classes,
        manifest.default_train,
        manifest.default_test,
        None if use_default else seed,
    )
