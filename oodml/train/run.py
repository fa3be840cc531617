"""Train and evaluate one method on every (split, seed) of a ladder, resumably.

Python API (used by ``oodml evaluate``/``fewshot`` and the sweep engine), over the typed
configs of :mod:`oodml.train.spec`:

- ``check_specs(specs)``: every error that can be found before training (fingerprint, names,
  arguments, sampler vs. data, device, a finished run with another config), raised before any
  run starts.
- ``run_one(spec, progress)`` trains and evaluates one run (or returns the stored rows when it
  already finished) and records it in ``RESULTS_DIR/runs/<key>.json`` (:mod:`oodml.results`).
- ``run_ladder(specs, progress)``: check, run each spec, merge the table; ``on_run(spec, rows,
  skipped)`` is told about each finished run.
- the few-shot counterpart, ``run_fewshot_ladder``, is in :mod:`oodml.train.fewshot` (which
  builds on this module; nothing here imports it).

Per-epoch checkpoints live in ``RESULTS_DIR/checkpoints/<key>.pt``; a killed run restarts from
its last finished epoch; few-shot adaptation reuses the final checkpoint. Progress is reported
through :class:`oodml.progress.Progress` (the CLI draws it; the default draws nothing).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oodml.data import load_dataset
from oodml.data.manifest import Manifest
from oodml.errors import ConfigError, SplitFileError, short
from oodml.features.extract import resolve_device
from oodml.metrics import METRICS, evaluate_embeddings
from oodml.metrics.intervals import class_bootstrap_interval
from oodml.metrics.knn import check_distance
from oodml.metrics.sizecontrol import (
    default_gallery_classes,
    retrieval_metrics,
    size_controlled_metrics,
)
from oodml.progress import NO_PROGRESS, Progress
from oodml.results import config_json, finished_rows, merge_results, write_run
from oodml.splits.splitfile import DEFAULT_SEED, Split, SplitFile, load_splitfile, seed_of
from oodml.train.loop import (
    Inputs,
    TensorInputs,
    embed,
    seed_everything,
    state_tag,
    train,
)
from oodml.train.losses import build_loss, loss_info, resolve_loss_args
from oodml.train.miners import build_miner, resolve_miner_args
from oodml.train.models import build_model
from oodml.train.samplers import build_sampler
from oodml.train.spec import RunSpec, method_name, run_key
from oodml.train.trainsize import run_train_classes

__all__ = [
    "check_specs",
    "run_ladder",
    "run_one",
    "trained_model",
]

RunCallback = Callable[[RunSpec, list[dict[str, Any]], bool], None]


def method_config(spec: RunSpec) -> dict[str, Any]:
    """What defines the method and its measurement (the ``config`` column): no split, seed,
    paths or device. The metric list is part of it, so a finished run is never reused for a
    request with other metrics."""
    return {
        "loss": spec.loss,
        "loss_args": resolve_loss_args(spec.loss, spec.loss_args),
        "miner": spec.miner,
        "miner_args": resolve_miner_args(spec.miner, spec.miner_args) if spec.miner else {},
        "backbone": spec.backbone,
        "head_only": spec.head_only,
        "extractor": spec.extractor if spec.head_only else None,
        "weights": None if spec.head_only else spec.weights,
        "embed_dim": spec.embed_dim,
        "hidden": spec.hidden,
        "image_size": None if spec.head_only else spec.image_size,
        "train": spec.train.to_dict(),
        "distance": spec.distance,
        "metrics": list(spec.metrics),
        "gallery": gallery_config(spec),
    }


GALLERY_SEED = DEFAULT_SEED
"""Seed of the size-controlled gallery draws and of the metric intervals' class draws for a
split file that records none (an imported ooDML pickle): the one fixed default of
:data:`oodml.splits.splitfile.DEFAULT_SEED` (also the distance intervals'), so every method and
seed of a split is measured on the same galleries; recorded in the run's config as
``gallery.seed``."""


def gallery_seed(sf: SplitFile) -> int:
    """The split file's seed, else GALLERY_SEED (:func:`oodml.splits.splitfile.seed_of`)."""
    return seed_of(sf)


def gallery_config(spec: RunSpec) -> dict[str, int]:
    """The ``gallery`` part of the config: N and R, and the seed when the split file has none
    (a file's own seed is already covered by its sha256; runs of such files keep their config)."""
    out = {"classes": gallery_classes(spec), "draws": spec.gallery_draws}
    sf = _splitfile(str(spec.splitfile))
    if sf.seed is None:
        out["seed"] = gallery_seed(sf)
    return out


def gallery_classes(spec: RunSpec) -> int:
    """N of the size-controlled metrics: the spec's, else the smallest test-class count of the
    ladder (so every split is measured on galleries of one size); 0 when off."""
    if spec.gallery_classes is not None:
        return spec.gallery_classes
    ladder = _splitfile(str(spec.splitfile)).ladder
    small = [s for s in ladder if len(s.test) < 2]
    if small:
        raise ConfigError(
            f"split {small[0].id} of {spec.splitfile} has {len(small[0].test)} test class(es), "
            "so no gallery of 2 or more classes fits every split of the ladder; pass "
            "--gallery-classes 0 to leave out the size-controlled metrics"
        )
    return default_gallery_classes(len(s.test) for s in ladder)


def check_sides(spec: RunSpec, split: Split) -> None:
    """A split to train and evaluate needs train classes and at least two test classes (with
    one, every neighbour is of the query's class and retrieval measures nothing)."""
    where = f"split {split.id} of {spec.splitfile}"
    if not split.train:
        raise SplitFileError(f"{where} has no train classes, so there is nothing to train on; "
                             "choose other splits (--splits) or fix the split file")
    if not split.test:
        raise SplitFileError(f"{where} has no test classes, so there is nothing to evaluate; "
                             "choose other splits (--splits) or fix the split file")
    if len(split.test) < 2:
        raise SplitFileError(
            f"{where} has a single test class ({short(split.test[0])}); retrieval needs at "
            "least 2 test classes: choose other splits (--splits) or fix the split file"
        )


def score_embeddings(
    spec: RunSpec, sf: SplitFile, emb: np.ndarray, labels: np.ndarray,
    by_class: dict | None = None,
) -> dict[str, float]:
    """Every metric of the spec on the test embeddings, plus the size-controlled retrieval
    metrics on ``gallery_classes`` drawn classes (draws seeded by ``gallery_seed(sf)``, so all
    methods and seeds of a split see the same galleries). ``by_class`` receives the retrieval
    metrics' per-class values (:func:`oodml.metrics.evaluate_embeddings`) and the
    size-controlled ones' per draw (:func:`oodml.metrics.sizecontrol.draw_values`)."""
    kwargs = {"distance": spec.distance, "device": metrics_device(spec)}
    scores = evaluate_embeddings(emb, labels, metrics=spec.metrics, seed=spec.seed,
                                 by_class=by_class, **kwargs)
    n = gallery_classes(spec)
    wanted = retrieval_metrics(spec.metrics)
    if n and wanted:
        scores.update(size_controlled_metrics(emb, labels, n, draws=spec.gallery_draws,
                                              seed=gallery_seed(sf), metrics=wanted,
                                              by_class=by_class, **kwargs))
    return scores


def metrics_device(spec: RunSpec) -> str:
    """Where the kNN search and k-means run: the run's GPU when it trains on one."""
    return str(resolve_device(spec.device))


@lru_cache(maxsize=8)
def _splitfile(path: str) -> SplitFile:
    return load_splitfile(path)


@lru_cache(maxsize=4)
def _manifest(dataset: str, root: str, skip_bad: bool = False) -> Manifest:
    return load_dataset(dataset, root, skip_bad=skip_bad)


@lru_cache(maxsize=4)
def _features(
    dataset: str, root: str, extractor: str, cache_dir: str | None, skip_bad: bool = False
) -> np.ndarray:
    from oodml.features import get_features

    manifest = _manifest(dataset, root, skip_bad)
    fs = get_features(manifest, extractor, cache_dir=cache_dir)
    return np.ascontiguousarray(fs.features, dtype=np.float32)


def warm_features(specs: Sequence[RunSpec], progress: Progress = NO_PROGRESS) -> None:
    """Extract (or find in the cache) the backbone features of every head-only spec once, up
    front, so the extraction is reported on ``progress`` rather than hidden inside a run."""
    from oodml.features import get_features

    seen = set()
    for spec in specs:
        resolved, _, manifest, _ = resolve(spec)
        key = (resolved.dataset, str(resolved.root), resolved.extractor, resolved.cache_dir,
               resolved.skip_bad)
        if resolved.head_only and key not in seen:
            seen.add(key)
            assert resolved.extractor is not None
            get_features(manifest, resolved.extractor, cache_dir=resolved.cache_dir,
                         progress=progress)


def spec_features(spec: RunSpec) -> np.ndarray:
    """The cached backbone features (float32, one row per manifest image) of a head-only spec."""
    assert spec.extractor is not None
    return _features(
        spec.dataset or "", str(spec.root), spec.extractor, spec.cache_dir, spec.skip_bad
    )


def resolve(spec: RunSpec) -> tuple[RunSpec, SplitFile, Manifest, Split]:
    """Fill defaults from the split file (dataset name, extractor) and check the dataset."""
    sf = _splitfile(str(spec.splitfile))
    spec = replace(
        spec,
        dataset=spec.dataset or sf.dataset_name,
        extractor=(spec.extractor or sf.extractor) if spec.head_only else spec.extractor,
    )
    manifest = _manifest(spec.dataset, str(spec.root), spec.skip_bad)
    sf.check_against(manifest)
    return spec, sf, manifest, sf.split(spec.split_id)


def class_labels(manifest: Manifest, indices: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Integer label per image: position of its class in sorted ``classes``."""
    pos = {c: i for i, c in enumerate(sorted(classes))}
    return np.array([pos[manifest.labels[i]] for i in indices], dtype=np.int64)


def make_inputs(
    spec: RunSpec, manifest: Manifest, indices: np.ndarray, labels: np.ndarray
) -> Inputs:
    if spec.head_only:
        assert spec.extractor is not None
        feats = spec_features(spec)
        return TensorInputs(feats[indices], labels)
    from oodml.train.images import ImageInputs

    return ImageInputs(
        manifest,
        indices,
        labels,
        backbone=spec.backbone or "",
        size=spec.image_size,
        num_workers=spec.train.num_workers,
        seed=spec.seed,
        cache=spec.train.image_cache,
        channels_last=spec.train.channels_last,
    )


def _input_dim(spec: RunSpec) -> int | None:
    if not spec.head_only:
        return None
    assert spec.extractor is not None
    return spec_features(spec).shape[1]


def checkpoint_path(spec: RunSpec, key: str | None = None) -> Path:
    return Path(spec.results_dir) / "checkpoints" / f"{key or run_key(spec)}.pt"


def check_specs(specs: Sequence[RunSpec], *, check_device: bool = True) -> None:
    """Raise every error that can be found without training, before any run starts, including
    a finished run in the results folder with another config or split file.

    ``check_device=False`` leaves the device to the machine that runs the spec (a Ray driver
    without a GPU submitting runs to GPU workers)."""
    twice = sorted(k for k, n in Counter(run_key(spec) for spec in specs).items() if n > 1)
    if twice:
        raise ConfigError(
            f"run {twice[0]} is listed twice (same method, split and seed); give each split "
            "and seed once"
        )
    for spec in specs:
        if check_device:
            resolve_device(spec.device)
        check_distance(spec.distance)
        for name in spec.metrics:
            METRICS.get(name)
        spec, sf, manifest, split = resolve(spec)
        check_sides(spec, split)
        train_classes = run_train_classes(spec, sf, split)[0]
        info = loss_info(spec.loss)
        build_loss(
            spec.loss,
            num_classes=max(len(train_classes), 2),
            embedding_size=spec.embed_dim,
            args=spec.loss_args,
        )
        build_miner(spec.miner, spec.miner_args)
        if spec.miner and not info.uses_miner:
            raise ConfigError(f"loss {spec.loss!r} does not use a miner; drop the miner")
        if info.equal_class_counts and spec.train.sampler != "m-per-class":
            raise ConfigError(f"loss {spec.loss!r} needs sampler='m-per-class'")
        if info.needs_pairs and spec.train.sampler == "m-per-class" and spec.train.m < 2:
            raise ConfigError(
                f"m={spec.train.m} puts one image per class in a batch, so the pair/triplet-based "
                f"loss {spec.loss!r} sees no positive pair and trains nothing; use --m 2 or more"
            )
        n = gallery_classes(spec)
        if n > len(split.test):
            raise ConfigError(f"gallery_classes={n} exceeds the {len(split.test)} test classes of "
                              f"split {split.id}; choose at most the smallest test-class count")
        idx = manifest.indices_of(train_classes)
        build_sampler(
            spec.train.sampler,
            class_labels(manifest, idx, train_classes),
            spec.train.batch_size,
            spec.seed,
            spec.train.m,
        )
        is_finished(spec)


def trained_model(
    spec: RunSpec, progress: Progress = NO_PROGRESS
) -> tuple[nn.Module, RunSpec, SplitFile, Manifest, Split, int]:
    """Train (or resume / reload from the checkpoint) the model of ``spec`` on its split's
    train classes (N drawn ones for a train-size-controlled run); returns the model and the
    resolved context and epochs run."""
    spec, sf, manifest, split = resolve(spec)
    device = resolve_device(spec.device)
    seed_everything(spec.seed)
    classes, _, draw = run_train_classes(spec, sf, split)
    idx = manifest.indices_of(classes)
    labels = class_labels(manifest, idx, classes)
    inputs = make_inputs(spec, manifest, idx, labels)
    model = build_model(
        spec.backbone,
        in_dim=_input_dim(spec),
        dim=spec.embed_dim,
        hidden=spec.hidden,
        weights=spec.weights,
    )
    loss_fn = build_loss(
        spec.loss, num_classes=len(classes), embedding_size=spec.embed_dim, args=spec.loss_args
    )
    miner = build_miner(spec.miner, spec.miner_args)
    sampler = build_sampler(
        spec.train.sampler, labels, spec.train.batch_size, spec.seed, spec.train.m
    )
    state = {"config": method_config(spec), "split": split.id, "seed": spec.seed, "sf": sf.sha256}
    if spec.train_draw is not None:
        state["train"] = {"seed": draw, "classes": list(classes)}
    tag = state_tag(state)
    result = train(
        model,
        loss_fn,
        miner,
        inputs,
        sampler,
        spec.train,
        device=device,
        checkpoint=checkpoint_path(spec) if spec.checkpoints else None,
        tag=tag,
        progress=progress,
        description=f"split {split.id} seed {spec.seed}{_draw_text(spec)}",
    )
    return model, spec, sf, manifest, split, result.epochs_run


def embed_classes(
    spec: RunSpec, model: nn.Module, manifest: Manifest, indices: np.ndarray, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and integer labels of manifest images ``indices``."""
    labels = class_labels(manifest, indices, classes)
    inputs = make_inputs(spec, manifest, indices, labels)
    emb = embed(
        model,
        inputs,
        device=resolve_device(spec.device),
        batch_size=spec.train.eval_batch_size,
        amp=spec.train.amp,
        channels_last=spec.train.channels_last,
    )
    return emb, labels


def device_label(device: str) -> str:
    d = resolve_device(device)
    if d.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(d)})"
    return d.type


def base_row(spec: RunSpec, sf: SplitFile, split: Split, config: str) -> dict[str, Any]:
    _, train, train_seed = run_train_classes(spec, sf, split)
    return {
        "train": train,
        "train_seed": train_seed,
        "splitfile_sha256": sf.sha256,
        "dataset": spec.dataset,
        "split_id": split.id,
        "distance": split.distance,
        "method": method_name(spec),
        "config": config,
        "seed": spec.seed,
        "device": device_label(spec.device),
    }


def run_one(spec: RunSpec, progress: Progress = NO_PROGRESS) -> list[dict[str, Any]]:
    """Train on the split's train classes (N drawn ones when ``spec.train_draw`` is set),
    evaluate on its full test set, record the rows.

    A run that already finished with the same config and split file is not repeated: its
    rows are returned.
    """
    config, done = _previous_run(spec)
    if done is not None:
        return done
    start = time.perf_counter()
    model, resolved, sf, manifest, split, epochs = trained_model(spec, progress)
    idx = manifest.indices_of(split.test)
    emb, labels = embed_classes(resolved, model, manifest, idx, split.test)
    by_class: dict = {}
    scores = score_embeddings(resolved, sf, emb, labels, by_class)
    wall = time.perf_counter() - start
    base = base_row(resolved, sf, split, config)
    rows = [
        {
            **base,
            "protocol": "zeroshot",
            "shots": 0,
            "metric": metric,
            "value": float(value),
            "std": float("nan"),
            "n_episodes": 0,
            "wall_time_s": wall,
            "epochs": epochs,
            **interval_columns(by_class, metric, seed=gallery_seed(sf)),
        }
        for metric, value in scores.items()
    ]
    write_run(spec.results_dir, run_key(spec), config, rows)
    return rows


def _draw_text(spec: RunSpec) -> str:
    if spec.train_draw is None:
        return ""
    return f" train {spec.train_classes} classes draw {spec.train_draw}"


def interval_columns(by_class: dict, metric: str, seed: int = 0) -> dict[str, Any]:
    """``ci_low``, ``ci_high`` and ``class_values`` of one metric row from the per-class values
    of a run (NaN and "" for metrics without them: NMI, :data:`oodml.metrics.intervals.
    NO_INTERVAL`); a size-controlled metric's are per gallery draw."""
    if metric not in by_class:
        return {"ci_low": float("nan"), "ci_high": float("nan"), "class_values": ""}
    doc = by_class[metric]
    if isinstance(doc, dict):
        lo, hi = class_bootstrap_interval(doc["n"], doc["v"], seed=seed, draws=doc["draws"])
        return {"ci_low": lo, "ci_high": hi,
                "class_values": json.dumps(doc, separators=(",", ":"), allow_nan=False)}
    n = by_class["n"]
    v = [0.0 if c == 0 else float(f"{x:.10g}") for c, x in zip(n, by_class[metric], strict=True)]
    lo, hi = class_bootstrap_interval(n, v, seed=seed)
    doc = {"classes": by_class["classes"], "n": n, "v": v}
    return {"ci_low": lo, "ci_high": hi,
            "class_values": json.dumps(doc, separators=(",", ":"), allow_nan=False)}


def summary_line(spec: RunSpec, rows: list[dict[str, Any]]) -> str:
    vals = {r["metric"]: r["value"] for r in rows if r["protocol"] == "zeroshot"}
    shown = ", ".join(f"{m} {vals[m]:.4f}" for m in ("recall@1", "map@r") if m in vals)
    wall = rows[0]["wall_time_s"] if rows else 0.0
    return (
        f"{method_name(spec)} split {spec.split_id} (distance {rows[0]['distance']:.4g}) "
        f"seed {spec.seed}{_draw_text(spec)}: {shown} [{wall:.1f}s]"
        if rows
        else f"{method_name(spec)} split {spec.split_id} seed {spec.seed}: no rows"
    )


def run_ladder(
    specs: Sequence[RunSpec],
    progress: Progress = NO_PROGRESS,
    *,
    on_run: RunCallback | None = None,
    check_device: bool = True,
) -> list[dict[str, Any]]:
    """Check all specs, run the unfinished ones (finished ones are skipped), merge the table
    after each run; ``on_run(spec, rows, skipped)`` hears about each."""
    check_specs(specs, check_device=check_device)
    warm_features(specs, progress)
    rows: list[dict[str, Any]] = []
    overall = progress.task("runs", total=len(specs))
    for spec in specs:
        skipped = is_finished(spec)
        out = run_one(spec, progress)
        rows.extend(out)
        if on_run is not None:
            on_run(spec, out, skipped)
        overall.advance()
        merge_results(spec.results_dir)
    overall.close()
    return rows


def _previous_run(spec: RunSpec) -> tuple[str, list[dict[str, Any]] | None]:
    """The run's config JSON and the rows it finished with before (None if it has not); a
    finished run with another config or split file is a ConfigError."""
    resolved, sf, _, _ = resolve(spec)
    config = config_json(method_config(resolved))
    return config, finished_rows(spec.results_dir, run_key(spec), config, sf.sha256)


def is_finished(spec: RunSpec) -> bool:
    """Whether the run of ``spec`` has finished before with the same config and split file (a
    finished run with another config or split file is a ConfigError, not a skip)."""
    return _previous_run(spec)[1] is not None


