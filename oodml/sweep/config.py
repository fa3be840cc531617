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

    [fewshot]                     # optional: also adapt every run few-shot (FewshotConfig)
    shots = [2, 5]

    [[methods]]
    loss = "multisimilarity"
    miner = "multisimilarity"
    loss_args = { alpha = 2.0, beta = 50.0 }

The keys are not listed by hand: the top level takes every field of
:class:`oodml.train.spec.RunSpec` that is not per run or per method (:data:`COMMON_KEYS`);
``[train]`` the fields of :class:`oodml.train.loop.TrainConfig`; ``[fewshot]`` those of
:class:`oodml.train.spec.FewshotConfig`; each ``[[methods]]`` table ``name`` (the method name),
``loss``, ``loss_args``, ``miner``, ``miner_args``, its own ``[train]`` overrides and any common
key. Values are type-checked against those dataclasses, so a bad value is a one-line error
naming the file, the table and the field. Relative paths are resolved against the config
file's folder.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oodml.config import MAX_LEVELS, coerce_value, from_mapping
from oodml.errors import ConfigError
from oodml.fileio import read_text
from oodml.train.loop import TrainConfig
from oodml.train.spec import FewshotConfig, RunSpec, check_seeds, method_name
from oodml.train.trainsize import run_grid

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PER_RUN = ("splitfile", "root", "split_id", "seed", "results_dir", "train_draw")
METHOD_FIELDS = ("loss", "loss_args", "miner", "miner_args")
COMMON_KEYS = tuple(
    f.name
    for f in dataclasses.fields(RunSpec)
    if f.name not in (*PER_RUN, *METHOD_FIELDS, "method", "train")
)
TOP_KEYS = ("splitfile", "root", "results", "seeds", "splits", "methods", "train", "fewshot",
            *COMMON_KEYS)
METHOD_KEYS = ("name", *METHOD_FIELDS, "train", *COMMON_KEYS)
PATH_KEYS = ("cache_dir",)
MAX_CONFIG_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Method:
    """One ``[[methods]]`` table: the method's fields, its ``[train]`` overrides and any
    common keys it overrides."""

    loss: str
    name: str | None = None
    loss_args: dict[str, Any] = field(default_factory=dict)
    miner: str | None = None
    miner_args: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    common: dict[str, Any] = field(default_factory=dict)


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
    fewshot: FewshotConfig | None = None
    source: str = ""

    def __post_init__(self) -> None:
        where = f"sweep config {self.source}" if self.source else "sweep config"
        check_seeds(self.seeds, f"{where}: seeds")
        if self.splits is not None and len(self.splits) > MAX_LEVELS:
            raise ConfigError(f"{where}: splits lists {len(self.splits):,} split ids; at most "
                              f"{MAX_LEVELS:,}")


def _unknown(keys: set[str], allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(keys - set(allowed))
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r}; valid keys: {', '.join(allowed)}")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of key = value pairs, got {value!r}")
    return dict(value)


def _read(path: Path) -> dict[str, Any]:
    """The TOML document; the file is read through :func:`oodml.fileio.read_text` (a regular
    file of at most :data:`MAX_CONFIG_BYTES`: a FIFO or /dev/zero is refused, never read)."""
    return _parse(read_text(path, "sweep config", MAX_CONFIG_BYTES), path)


def _parse(text: str, path: Path) -> dict[str, Any]:
    """The TOML document of ``text``. A leading byte-order mark (editors on Windows write one)
    is dropped; a number too long for Python to read (over 4300 digits) is a one-line error."""
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"sweep config {path} is not valid TOML: {msg}") from None
    except ValueError as exc:  # int() refusing a number of more than 4300 digits
        if "digits" not in str(exc):
            raise
        raise ConfigError(
            f"sweep config {path} holds a number too long to read (over 4300 digits); check "
            "the values"
        ) from None


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep TOML file; every problem is a one-line ConfigError."""
    path = Path(path)
    raw = _read(path)
    where = f"sweep config {path}"
    _unknown(set(raw), TOP_KEYS, where)
    for key in ("splitfile", "root", "results"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{where}: {key!r} (a path) is required")
    base = path.resolve().parent

    def rel(p: str) -> str:
        return str((base / p).resolve()) if not Path(p).is_absolute() else p

    def common_of(table: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: table[k] for k in COMMON_KEYS if k in table}
        for k in PATH_KEYS:
            if isinstance(out.get(k), str):
                if not out[k].strip():
                    raise ConfigError(f"{where}: {k!r} is an empty path; give a folder name "
                                      "(. for the config's folder) or leave it out")
                out[k] = rel(out[k])
        return out

    methods_raw = raw.get("methods")
    if not isinstance(methods_raw, list) or not methods_raw:
        raise ConfigError(f"{where}: add at least one [[methods]] table with a 'loss'")
    methods = []
    for i, m in enumerate(methods_raw, 1):
        mwhere = f"{where}, method {i}"
        m = _table(m, mwhere)
        if not isinstance(m.get("loss"), str):
            raise ConfigError(f"{mwhere}: every [[methods]] table needs loss = \"NAME\"")
        _unknown(set(m), METHOD_KEYS, mwhere)
        own = {k: m[k] for k in ("name", *METHOD_FIELDS) if k in m}
        train = _table(m.get("train", {}), f"{mwhere} [train]")
        methods.append(Method(**own, train=train, common=common_of(m)))
    seeds = coerce_value(tuple[int, ...], raw.get("seeds", [0]), "seeds", where)
    splits = None
    if "splits" in raw:
        splits = coerce_value(tuple[int, ...], raw["splits"], "splits", where)
    if not seeds or (splits is not None and not splits):
        raise ConfigError(f"{where}: seeds and splits must be non-empty lists of integers")
    fewshot = None
    if "fewshot" in raw:
        fewshot = from_mapping(FewshotConfig, _table(raw["fewshot"], f"{where} [fewshot]"),
                               f"{where} [fewshot]")
    cfg = SweepConfig(
        splitfile=rel(raw["splitfile"]),
        root=rel(raw["root"]),
        results=rel(raw["results"]),
        methods=tuple(methods),
        seeds=seeds,
        splits=splits,
        train=_table(raw.get("train", {}), f"{where} [train]"),
        common=common_of(raw),
        fewshot=fewshot,
        source=str(path),
    )
    names = [method_name(s) for s in _methods(cfg, 1, cfg.seeds[0])]
    if len(set(names)) != len(names):
        dup = sorted(n for n in set(names) if names.count(n) > 1)[0]
        raise ConfigError(f"{where}: two methods are both named {dup!r}; give each a unique "
                          "'name'")
    return cfg


def _methods(cfg: SweepConfig, split_id: int, seed: int) -> list[RunSpec]:
    """One RunSpec per method (at ``split_id``, ``seed``): the templates of the grid."""
    specs = []
    for i, m in enumerate(cfg.methods, 1):
        mwhere = f"sweep config {cfg.source}, method {i}"
        train = from_mapping(TrainConfig, {**cfg.train, **m.train}, f"{mwhere} [train]")
        values = {
            **cfg.common,
            **m.common,
            "loss": m.loss,
            "loss_args": m.loss_args,
            "miner": m.miner,
            "miner_args": m.miner_args,
            "method": m.name,
        }
        specs.append(
            from_mapping(
                RunSpec, values, mwhere,
                splitfile=cfg.splitfile, root=cfg.root, results_dir=cfg.results,
                split_id=split_id, seed=seed, train=train,
            )
        )
    return specs


def expand(cfg: SweepConfig, split_ids: list[int]) -> list[RunSpec]:
    """The grid methods x splits x seeds as RunSpecs, in a fixed order, with the
    train-size-controlled draws after each when ``train_classes`` is set (:func:`run_grid`)."""
    where = f"sweep config {cfg.source}: {cfg.splitfile}: "
    if not split_ids:
        raise ConfigError(f"{where}the ladder has no splits")
    return run_grid(_methods(cfg, split_ids[0], cfg.seeds[0]), split_ids, cfg.splits, cfg.seeds,
                    where=where)
