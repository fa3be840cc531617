"""Sweep configuration: a TOML file naming the split file, dataset, methods, seeds and splits.

Example::

    splitfile = "splits/omniglot_small1_efficientnet-lite0_class-means_greedy.json"
    root = "../shared/data/omniglot/images_background_small1.zip"
    results = "runs/omniglot_sweep"
    seeds = [0, 1, 2]
    splits = [1, 4, 8]            # optional; default every split of the ladder
    extractor = "efficientnet-lite0"   # head-only (default); or backbone = "resnet50"

    [train]                       # TrainConfig fields shared by all methods
    epochs = 5

    [[methods]]
    loss = "multisimilarity"
    miner = "multisimilarity"
    loss_args = { alpha = 2.0, beta = 50.0 }

Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oodml.errors import ConfigError
from oodml.train.loop import TrainConfig
from oodml.train.runner import RunSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_TOP_KEYS = {
    "splitfile", "root", "dataset", "results", "seeds", "splits", "methods", "train",
    "backbone", "extractor", "weights", "embed_dim", "hidden", "image_size", "metrics",
    "distance", "device", "cache_dir", "checkpoints", "skip_bad",
}  # fmt: skip
_METHOD_KEYS = {"name", "loss", "loss_args", "miner", "miner_args", "train", "embed_dim", "hidden"}
_TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}


@dataclass(frozen=True)
class Method:
    loss: str
    name: str | None = None
    loss_args: dict[str, Any] = field(default_factory=dict)
    miner: str | None = None
    miner_args: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    embed_dim: int | None = None
    hidden: int | None = None


@dataclass(frozen=True)
class SweepConfig:
    splitfile: str
    root: str
    results: str
    methods: tuple[Method, ...]
    seeds: tuple[int, ...] = (0,)
    splits: tuple[int, ...] | None = None
    train: dict[str, Any] = field(default_factory=dict)
    common: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def _unknown(keys: set[str], allowed: set[str], where: str) -> None:
    extra = sorted(keys - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {extra}; allowed: {sorted(allowed)}")


def _int_list(value: Any, key: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) for v in value):
        raise ConfigError(f"{where}: {key} must be a non-empty list of integers, got {value!r}")
    return tuple(value)


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep TOML file; every problem is a one-line ConfigError."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"sweep config {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sweep config {path} is not valid TOML: {exc}") from None
    where = f"sweep config {path}"
    _unknown(set(raw), _TOP_KEYS, where)
    for key in ("splitfile", "root", "results"):
        if not isinstance(raw.get(key), str):
            raise ConfigError(f"{where}: {key!r} (a path) is required")
    base = path.resolve().parent

    def rel(p: str) -> str:
        return str((base / p).resolve()) if not Path(p).is_absolute() else p

    methods_raw = raw.get("methods")
    if not isinstance(methods_raw, list) or not methods_raw:
        raise ConfigError(f"{where}: add at least one [[methods]] table with a 'loss'")
    methods = []
    for i, m in enumerate(methods_raw, 1):
        mwhere = f"{where}, method {i}"
        if not isinstance(m, dict) or not isinstance(m.get("loss"), str):
            raise ConfigError(f"{mwhere}: every [[methods]] table needs loss = \"NAME\"")
        _unknown(set(m), _METHOD_KEYS, mwhere)
        _unknown(set(m.get("train", {})), _TRAIN_KEYS, f"{mwhere} [train]")
        methods.append(Method(**m))
    names = [m.name or m.loss + (f"+{m.miner}" if m.miner else "") for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: two methods share a name {names}; give each a unique 'name'")
    train = raw.get("train", {})
    _unknown(set(train), _TRAIN_KEYS, f"{where} [train]")
    common = {k: v for k, v in raw.items() if k not in {
        "splitfile", "root", "results", "seeds", "splits", "methods", "train", "dataset",
    }}  # fmt: skip
    if "dataset" in raw:
        common["dataset"] = raw["dataset"]
    if isinstance(common.get("cache_dir"), str):
        common["cache_dir"] = rel(common["cache_dir"])
    if "metrics" in common:
        common["metrics"] = tuple(common["metrics"])
    return SweepConfig(
        splitfile=rel(raw["splitfile"]),
        root=rel(raw["root"]),
        results=rel(raw["results"]),
        methods=tuple(methods),
        seeds=_int_list(raw.get("seeds", [0]), "seeds", where),
        splits=_int_list(raw["splits"], "splits", where) if "splits" in raw else None,
        train=train,
        common=common,
        source=str(path),
    )


def expand(cfg: SweepConfig, split_ids: list[int]) -> list[RunSpec]:
    """The grid methods x splits x seeds as RunSpecs, in a fixed order."""
    chosen = list(cfg.splits) if cfg.splits is not None else split_ids
    missing = sorted(set(chosen) - set(split_ids))
    if missing:
        raise ConfigError(
            f"sweep config {cfg.source}: split id(s) {missing} not in {cfg.splitfile} "
            f"(it has {split_ids})"
        )
    specs = []
    for m in cfg.methods:
        train = TrainConfig(**{**cfg.train, **m.train})
        sizes = (("embed_dim", m.embed_dim), ("hidden", m.hidden))
        extra = {k: v for k, v in sizes if v is not None}
        for split_id in chosen:
            for seed in cfg.seeds:
                specs.append(
                    RunSpec(
                        splitfile=cfg.splitfile,
                        root=cfg.root,
                        split_id=split_id,
                        seed=seed,
                        loss=m.loss,
                        results_dir=cfg.results,
                        loss_args=dict(m.loss_args),
                        miner=m.miner,
                        miner_args=dict(m.miner_args),
                        method=m.name,
                        train=train,
                        **{**cfg.common, **extra},
                    )
                )
    return specs
