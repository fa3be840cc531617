"""Few-shot adaptation on a ladder split (the ooDML study's protocol).

For every episode of the split file (shots -> episodes -> class -> support images): copy the
model trained on the split's train classes, fine-tune it on the support images of the test
classes (by default only the embedding head, on frozen backbone features), embed the query
images (every other image of the episode's classes) and evaluate them with the usual DML
protocol among themselves: each query retrieves from the other queries, self-match excluded.
Support images are in neither role, so the score measures generalisation to unseen images of
classes seen only through their few support examples. Each shot count yields one row per
metric: mean and (population, ddof=0) std over episodes, ``protocol="fewshot"``, and, as for
zero-shot rows, a 95% class-bootstrap interval and the per-class values it comes from (each
class's mean over the episodes: :func:`oodml.metrics.intervals.mean_over_episodes`).

API: ``run_fewshot(spec, cfg, progress) -> rows`` for one spec, ``run_fewshot_ladder(specs, cfg,
progress)`` for a ladder (check every spec first, then run and merge the table per spec);
``FewshotConfig`` and ``fewshot_key`` live in :mod:`oodml.train.spec`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from torch import nn

from oodml.data.manifest import Manifest
from oodml.errors import ConfigError, SplitFileError, short
from oodml.features.extract import resolve_device
from oodml.metrics.intervals import mean_over_episodes
from oodml.progress import NO_PROGRESS, Progress
from oodml.results import config_json, finished_rows, merge_results, write_run
from oodml.splits.splitfile import Split
from oodml.train.loop import TensorInputs, embed, seed_everything, train
from oodml.train.losses import build_loss
from oodml.train.miners import build_miner
from oodml.train.models import EmbeddingModel, head_of
from oodml.train.run import (
    RunCallback,
    base_row,
    check_specs,
    class_labels,
    embed_classes,
    gallery_seed,
    interval_columns,
    make_inputs,
    method_config,
    resolve,
    score_embeddings,
    spec_features,
    trained_model,
    warm_features,
)
from oodml.train.samplers import MPerClassBatchSampler
from oodml.train.spec import FewshotConfig, RunSpec, fewshot_key


def fewshot_config(spec: RunSpec, cfg: FewshotConfig) -> str:
    ft = {"epochs": cfg.ft_epochs, "lr": cfg.ft_lr, "tune": cfg.tune,
          "max_episodes": cfg.max_episodes}
    return config_json({**method_config(spec), "fewshot": ft})


def check_fewshot(spec: RunSpec, cfg: FewshotConfig) -> None:
    """Every shot count must have episodes in the split (SplitFileError listing those it has);
    ``--tune all`` needs a backbone to tune."""
    if cfg.tune == "all" and spec.head_only:
        raise ConfigError("tune='all' fine-tunes the backbone, but a head-only run has none; "
                          "use tune='head' or give a backbone")
    _, sf, manifest, split = resolve(spec)
    for shots in cfg.shots:
        if not split.episodes.get(shots):
            have = ", ".join(str(s) for s in sorted(split.episodes)) or "none"
            raise SplitFileError(
                f"split {split.id} of {spec.splitfile} has no {shots}-shot episodes "
                f"(it has: {have}); choose shots from those"
            )
    check_support_classes(manifest, split, cfg.shots, spec.splitfile)


def check_support_classes(
    manifest: Manifest, split: Split, shots: Sequence[int], where: object
) -> None:
    """Every support image of the split's ``shots``-shot episodes is a dataset image of the
    class it supports (the loader has checked the counts; only the dataset knows the classes)."""
    label_of = dict(zip(manifest.paths, manifest.labels, strict=True))
    for k in shots:
        for e, episode in enumerate(split.episodes.get(k, [])):
            for cls, paths in episode.items():
                for p in paths:
                    if label_of.get(p, cls) != cls:
                        raise SplitFileError(
                            f"{where}: split {split.id}: {k}-shot episode {e}: support image "
                            f"{short(p)} of class {short(cls)} is an image of class "
                            f"{short(label_of[p])} in {manifest.root}; fix or regenerate the "
                            "split file"
                        )


def episode_indices(
    manifest: Manifest, split: Split, episode: dict[str, list[str]]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Support and query image indices of one episode, and its classes (sorted)."""
    pos = {p: i for i, p in enumerate(manifest.paths)}
    classes = sorted(episode)
    try:
        support = np.array(sorted(pos[p] for c in classes for p in episode[c]), dtype=np.int64)
    except KeyError as exc:
        raise SplitFileError(
            f"episode image {exc.args[0]!r} of split {split.id} is not in the dataset"
        ) from None
    taken = set(support.tolist())
    query = np.array([i for i in manifest.indices_of(classes) if i not in taken], dtype=np.int64)
    return support, query, classes


class FrozenFeatures:
    """Backbone features of a split's test images, computed once per trained model: with the
    head alone fine-tuned the backbone never changes, so every episode's support and query
    features are rows of this table (evaluation transforms are deterministic)."""

    def __init__(self, spec: RunSpec, model: nn.Module, manifest: Manifest,
                 indices: np.ndarray) -> None:
        self.row = {int(i): k for k, i in enumerate(indices)}
        self.features = _frozen_features(spec, model, manifest, np.asarray(indices))

    def take(self, indices: np.ndarray) -> np.ndarray:
        return self.features[[self.row[int(i)] for i in indices]]


def _frozen_features(
    spec: RunSpec, model: nn.Module, manifest: Manifest, indices: np.ndarray,
    memo: FrozenFeatures | None = None,
) -> np.ndarray:
    """Backbone features (head inputs) of the images: cached ones in head-only mode."""
    if spec.head_only:
        return spec_features(spec)[indices]
    if memo is not None:
        return memo.take(indices)
    assert isinstance(model, EmbeddingModel)
    inputs = make_inputs(spec, manifest, indices, np.zeros(len(indices), dtype=np.int64))
    return embed(
        model.backbone,
        inputs,
        device=resolve_device(spec.device),
        batch_size=spec.train.eval_batch_size,
        amp=spec.train.amp,
        channels_last=spec.train.channels_last,
    ).reshape(len(indices), -1)


def _adapt_episode(
    spec: RunSpec,
    cfg: FewshotConfig,
    base: nn.Module,
    manifest: Manifest,
    split: Split,
    episode: dict[str, list[str]],
    shots: int,
    episode_seed: int,
    memo: FrozenFeatures | None = None,
    by_class: dict | None = None,
) -> dict[str, float]:
    support, query, classes = episode_indices(manifest, split, episode)
    seed_everything(episode_seed)
    device = resolve_device(spec.device)
    model = copy.deepcopy(base)
    y = class_labels(manifest, support, classes)
    m = shots
    batch = m * min(max(spec.train.batch_size // m, 2), len(classes))
    if len(classes) < 2:
        raise SplitFileError(f"an episode of split {split.id} has fewer than 2 classes")
    sampler = MPerClassBatchSampler(y, batch, episode_seed, m=m)
    loss_fn = build_loss(
        spec.loss, num_classes=len(classes), embedding_size=spec.embed_dim, args=spec.loss_args
    )
    ft_train = replace(
        spec.train,
        epochs=cfg.ft_epochs,
        lr=spec.train.lr if cfg.ft_lr is None else cfg.ft_lr,
        schedule="none",
        batch_size=batch,
    )
    miner = build_miner(spec.miner, spec.miner_args)
    if cfg.tune == "head" or spec.head_only:
        head = head_of(model)
        feats = _frozen_features(spec, model, manifest, support, memo)
        head_train = replace(ft_train, fold_bn=False)
        train(head, loss_fn, miner, TensorInputs(feats, y), sampler, head_train, device=device)
        q_in = TensorInputs(
            _frozen_features(spec, model, manifest, query, memo),
            class_labels(manifest, query, classes),
        )
        emb = embed(head, q_in, device=device, batch_size=spec.train.eval_batch_size)
        q_labels = q_in.labels
    else:
        inputs = make_inputs(spec, manifest, support, y)
        train(model, loss_fn, miner, inputs, sampler, ft_train, device=device)
        emb, q_labels = embed_classes(spec, model, manifest, query, classes)
    _, sf, _, _ = resolve(spec)
    return score_embeddings(spec, sf, emb, q_labels, by_class)


def _finished(spec: RunSpec, cfg: FewshotConfig) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows of the shot counts that finished before, and the shot counts still to do."""
    resolved, sf, _, _ = resolve(spec)
    config = fewshot_config(resolved, cfg)
    rows: list[dict[str, Any]] = []
    todo = []
    for shots in cfg.shots:
        done = finished_rows(spec.results_dir, fewshot_key(spec, shots), config, sf.sha256)
        if done is None:
            todo.append(shots)
        else:
            rows.extend(done)
    return rows, todo


def fewshot_done(spec: RunSpec, cfg: FewshotConfig) -> bool:
    """Whether every shot count of ``cfg`` finished before with the same config."""
    return not _finished(spec, cfg)[1]


def run_fewshot(
    spec: RunSpec, cfg: FewshotConfig, progress: Progress = NO_PROGRESS
) -> list[dict[str, Any]]:
    """Few-shot rows for every shot count of ``cfg`` (finished shot counts are not redone)."""
    check_fewshot(spec, cfg)
    rows, todo = _finished(spec, cfg)
    if not todo:
        return rows
    base, resolved, sf, manifest, split, epochs = trained_model(spec, progress)
    config = fewshot_config(resolved, cfg)
    memo = None
    if cfg.tune == "head" and not resolved.head_only:
        memo = FrozenFeatures(resolved, base, manifest, manifest.indices_of(split.test))
    for shots in todo:
        start = time.perf_counter()
        episodes = split.episodes[shots][: cfg.max_episodes]
        task = progress.task(f"{shots}-shot episodes", total=len(episodes))
        scores, per_class = [], []
        for e, episode in enumerate(episodes):
            seed = resolved.seed * 1_000_003 + shots * 1009 + e
            per_class.append({})
            scores.append(_adapt_episode(resolved, cfg, base, manifest, split, episode, shots,
                                         seed, memo, per_class[-1]))
            task.advance()
        by_class = mean_over_episodes(per_class)
        task.close()
        wall = time.perf_counter() - start
        shot_rows = [
            {
                **base_row(resolved, sf, split, config),
                "protocol": "fewshot",
                "shots": shots,
                "metric": metric,
                "value": float(np.mean([s[metric] for s in scores])),
                "std": float(np.std([s[metric] for s in scores])),
                "n_episodes": len(scores),
                "wall_time_s": wall,
                "epochs": epochs,
                **interval_columns(by_class, metric, seed=gallery_seed(sf)),
            }
            for metric in scores[0]
        ]
        write_run(spec.results_dir, fewshot_key(spec, shots), config, shot_rows)
        rows.extend(shot_rows)
    return rows


def run_fewshot_ladder(
    specs: Sequence[RunSpec],
    cfg: FewshotConfig,
    progress: Progress = NO_PROGRESS,
    *,
    on_run: RunCallback | None = None,
    check_device: bool = True,
) -> list[dict[str, Any]]:
    """Few-shot adaptation of every spec's trained model (trained here when no checkpoint
    exists), every shot count of ``cfg``; rows are recorded and the table merged per spec."""
    check_specs(specs, check_device=check_device)
    for spec in specs:
        check_fewshot(spec, cfg)
    warm_features(specs, progress)
    rows: list[dict[str, Any]] = []
    for spec in specs:
        out = run_fewshot(spec, cfg, progress)
        rows.extend(out)
        merge_results(spec.results_dir)
        if on_run is not None:
            on_run(spec, out, False)
    return rows
