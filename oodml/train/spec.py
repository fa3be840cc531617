"""The typed configs of a training study: one run (:class:`RunSpec`) and few-shot adaptation
(:class:`FewshotConfig`), with the names that identify a run in the results folder.

The CLI flags (``oodml evaluate``/``fewshot``), the TOML keys of a sweep and the Python API are
all derived from these fields (their ``help`` metadata is what ``--help`` prints), and their
checks run in ``__post_init__``, before any feature extraction or training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from oodml.config import (
    MAX_DRAWS,
    MAX_EPISODES,
    MAX_EPOCHS,
    MAX_IDS,
    MAX_IMAGE_SIZE,
    MAX_LR,
    MAX_SEEDS,
    MAX_SHOT_COUNTS,
    MAX_SHOTS,
    MAX_WIDTH,
    check_choice,
    check_float,
    check_int,
    check_seed,
)
from oodml.errors import ConfigError
from oodml.metrics import DEFAULT_METRICS
from oodml.metrics.knn import DISTANCES
from oodml.train.loop import TrainConfig

TUNE = ("head", "all")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,99}")


def _opt(default: Any, help: str, **meta: Any) -> Any:
    if isinstance(default, (dict, TrainConfig)):
        factory = (lambda d=default: dict(d)) if isinstance(default, dict) else TrainConfig
        return field(default_factory=factory, metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


def check_method_name(name: str) -> str:
    """A method name is one safe path component (its runs live in ``runs/<name>/``)."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or name in (".", ".."):
        shown = name if not isinstance(name, str) or len(name) <= 40 else name[:37] + "..."
        raise ConfigError(
            f"method={shown!r} must be 1-100 letters, digits or ._+=- starting with a letter or "
            "digit (it names the method's folder of run files)"
        )
    return name


@dataclass(frozen=True)
class RunSpec:
    """One (method, split, seed) training run; ``backbone=None`` means head-only."""

    splitfile: str
    root: str
    split_id: int
    seed: int
    loss: str = _opt(
        "", "Loss name (e.g. multisimilarity, triplet, proxyanchor, softmax) or an import path "
        "'package.module:Class' of a torch.nn.Module subclass (importing it runs that module's "
        "code). See `oodml losses`.", required=True)
    results_dir: str = _opt("", "Results folder (results.parquet, results.csv, runs/).")
    loss_args: dict[str, Any] = _opt({}, "Loss arguments, e.g. 'alpha=2,beta=50'.")
    miner: str | None = _opt(
        None, "Miner name (e.g. triplet-semihard, batch-hard) or an import path "
        "'package.module:Class' of a torch.nn.Module subclass (e.g. a pytorch-metric-learning "
        "BaseMiner; importing it runs that module's code).")
    miner_args: dict[str, Any] = _opt({}, "Miner arguments, e.g. 'margin=0.1'.")
    method: str | None = _opt(None, "Method name in the results (default: loss[+miner]).")
    dataset: str | None = _opt(None, "Dataset loader name (default: the split file's).")
    backbone: str | None = _opt(
        None, "Train the full network: resnet50, efficientnet-lite0 or any torchvision model "
        "name (default: head-only on cached features).")
    extractor: str | None = _opt(
        None, "Feature extractor for head-only training (default: the split file's).")
    weights: str | None = _opt(
        "imagenet", "Backbone weights: imagenet (hub cache), a file, or random.",
        flag="backbone-weights")
    embed_dim: int = _opt(128, f"Embedding dimension (at most {MAX_WIDTH:,}).")
    hidden: int = _opt(0, f"Hidden width of an MLP head (0: linear head; at most {MAX_WIDTH:,}).")
    image_size: int = _opt(
        224, f"Crop size for full-backbone training (at most {MAX_IMAGE_SIZE:,}).")
    train: TrainConfig = _opt(TrainConfig(), "Optimisation settings.")
    metrics: tuple[str, ...] = _opt(DEFAULT_METRICS, "Metrics to compute (default: all).")
    distance: str = _opt("cosine", "Retrieval distance: cosine or euclidean.")
    device: str = _opt("auto", "Where to train: auto (a GPU if present), cpu, cuda or cuda:N.")
    cache_dir: str | None = _opt(
        None, "Feature cache folder (default: $OODML_CACHE or ~/.cache/oodml).", flag="cache")
    gallery_classes: int | None = _opt(
        None, "Also evaluate every retrieval metric on this many test classes drawn at random "
        "(size-controlled, named <metric>/n<N>); default: the smallest test-class count of the "
        "ladder; 0: off.")
    gallery_draws: int = _opt(
        10, f"Random draws of the size-controlled gallery (averaged; at most {MAX_DRAWS:,}).")
    train_classes: int | str | None = _opt(
        None, "Also train on N classes drawn at random from each split's train classes "
        "(train-size-controlled rows, train=n<N>, next to the full-train ones; evaluated on the "
        "split's full test set): an integer >= 2, or 'min' for the ladder's smallest train set; "
        "default: off.")
    train_draws: int = _opt(3, "Random draws of the N train classes per split and seed, each "
                            "a seeded training run of its own (one where N is the whole train "
                            "set).")
    train_draw: int | None = _opt(
        None, "Which draw of N train classes this run trains on (0-based; set by the run grid, "
        "see expand_train_draws); None: the split's whole train set.")
    checkpoints: bool = _opt(True, "Write per-epoch checkpoints (resume a killed run).")
    skip_bad: bool = _opt(False, "Leave out images that cannot be decoded (listed).")

    def __post_init__(self) -> None:
        check_int("split_id", self.split_id, 1, MAX_IDS)
        check_seed("seed", self.seed)
        if not isinstance(self.loss, str) or not self.loss.strip():
            raise ConfigError("loss is required: a loss name (see `oodml losses`) or an import "
                              "path 'package.module:Class'")
        if not isinstance(self.results_dir, str) or not self.results_dir:
            raise ConfigError("results_dir is required: the folder that holds the results")
        if self.method is not None:
            check_method_name(self.method)
        check_int("embed_dim", self.embed_dim, 1, MAX_WIDTH)
        check_int("hidden", self.hidden, 0, MAX_WIDTH)
        check_int("image_size", self.image_size, 32, MAX_IMAGE_SIZE)
        check_choice("distance", self.distance, DISTANCES)
        if self.gallery_classes is not None and self.gallery_classes != 0:
            check_int("gallery_classes", self.gallery_classes, 2, MAX_IDS)
        check_int("gallery_draws", self.gallery_draws, 1, MAX_DRAWS)
        object.__setattr__(self, "train_classes", check_train_classes(self.train_classes))
        check_int("train_draws", self.train_draws, 1, MAX_DRAWS)
        if self.train_draw is not None:
            check_int("train_draw", self.train_draw, 0, self.train_draws - 1)
            if not isinstance(self.train_classes, int):
                raise ConfigError(
                    "train_draw needs an integer train_classes (a run grid resolves 'min' to "
                    "the ladder's smallest train set: oodml.train.trainsize.expand_train_draws)"
                )
        if not self.metrics or not all(isinstance(m, str) and m for m in self.metrics):
            raise ConfigError(f"metrics={self.metrics!r} must list at least one metric name")
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("train must be a TrainConfig (a [train] table in a sweep)")
        if self.backbone is None and self.train.fold_bn:
            raise ConfigError(
                "fold_bn=true (--fold-bn) folds a backbone's frozen BatchNorm; head-only "
                "training has none, so give a backbone or drop it"
            )
        if self.backbone is None and self.weights != "imagenet":
            given = "random" if self.weights is None else self.weights
            raise ConfigError(
                f"weights={given!r} (--backbone-weights) is for training a backbone; "
                "head-only training uses the extractor's cached features, so give a backbone "
                "or drop it"
            )

    @property
    def head_only(self) -> bool:
        return self.backbone is None


@dataclass(frozen=True)
class FewshotConfig:
    """Few-shot fine-tuning settings; ``ft_lr=None`` reuses the training LR,
    ``max_episodes=None`` uses every episode of the split file."""

    shots: tuple[int, ...] = _opt(
        (2, 5), f"Shot counts to adapt with, e.g. 2,5 (at most {MAX_SHOT_COUNTS} counts, each at "
        f"most {MAX_SHOTS:,}).")
    ft_epochs: int = _opt(20, f"Fine-tuning epochs per episode (at most {MAX_EPOCHS:,}).")
    ft_lr: float | None = _opt(
        None, f"Fine-tuning learning rate (default: the training lr; at most {MAX_LR:g}).")
    tune: str = _opt("head", "What to fine-tune: head or all.")
    max_episodes: int | None = _opt(
        None, f"Use at most this many episodes per shot count (at most {MAX_EPISODES:,}).")

    def __post_init__(self) -> None:
        check_choice("tune", self.tune, TUNE)
        if not self.shots:
            raise ConfigError("shots must list at least one shot count, e.g. 2,5")
        if len(self.shots) > MAX_SHOT_COUNTS:
            raise ConfigError(f"shots lists {len(self.shots)} shot counts; at most "
                              f"{MAX_SHOT_COUNTS}")
        for s in self.shots:
            check_int("shots", s, 1, MAX_SHOTS)
        if len(set(self.shots)) != len(self.shots):
            raise ConfigError(
                f"shots={list(self.shots)!r} lists a shot count twice; give each once"
            )
        check_int("ft_epochs", self.ft_epochs, 1, MAX_EPOCHS)
        if self.ft_lr is not None:
            check_float("ft_lr", self.ft_lr, positive=True, hi=MAX_LR)
        if self.max_episodes is not None:
            check_int("max_episodes", self.max_episodes, 1, MAX_EPISODES)


def check_seeds(seeds: tuple[int, ...] | list[int], where: str = "seeds") -> tuple[int, ...]:
    """The seeds of one grid: 1 to :data:`~oodml.config.MAX_SEEDS` valid seeds."""
    seeds = tuple(seeds)
    if not seeds:
        raise ConfigError(f"{where} must list at least one seed, e.g. 0,1,2")
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"{where} lists {len(seeds):,} seeds; at most {MAX_SEEDS:,} (each "
                          "trains a model per split)")
    for seed in seeds:
        check_seed("seed", seed)
    return seeds


def check_train_classes(value: Any) -> int | str | None:
    """``train_classes`` as None, ``"min"`` or an int >= 2 (digit strings from the CLI become
    ints); anything else is a ConfigError naming the field."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "min":
            return "min"
        if not text.isdigit():
            raise ConfigError(f"train_classes={value!r} must be an integer >= 2 or 'min' (the "
                              "ladder's smallest train set)")
        value = int(text[:20])
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"train_classes={value!r} must be an integer >= 2 or 'min'")
    if value < 2:
        raise ConfigError(f"train_classes={value} must be >= 2 (a metric is learned from at least "
                          "two classes) or 'min' (the ladder's smallest train set)")
    return check_int("train_classes", value, 2, MAX_IDS)


def train_suffix(spec: RunSpec) -> str:
    """What a train-size-controlled run adds to its key (empty for a full-train run)."""
    if spec.train_draw is None:
        return ""
    return f"_train{spec.train_classes}_draw{spec.train_draw}"


def method_name(spec: RunSpec) -> str:
    """``spec.method`` or ``loss[+miner]`` (an import path's unsafe characters as ``_``)."""
    if spec.method:
        return spec.method
    name = spec.loss + (f"+{spec.miner}" if spec.miner else "")
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", name).lstrip(".") or "method"


def run_key(spec: RunSpec) -> str:
    return f"{method_name(spec)}/zeroshot/split{spec.split_id:03d}_seed{spec.seed}" + train_suffix(
        spec)


def fewshot_key(spec: RunSpec, shots: int) -> str:
    return (f"{method_name(spec)}/fewshot/split{spec.split_id:03d}_seed{spec.seed}"
            f"{train_suffix(spec)}_shots{shots}")
