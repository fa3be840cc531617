"""Full-backbone training and evaluation throughput on one ladder split (GPU machines).

Trains the backbone + embedding head (frozen BatchNorm, m-per-class batches, RandomResizedCrop
+ flip) on the split's train classes and embeds its test classes, twice in the same run:
AMP + channels-last (ours) and plain fp32 (the reference), and prints images/s of training and
of evaluation, peak GPU memory, and the ratios. Without CUDA it says so and exits (use
``--cpu-smoke`` to exercise the code path on a few CPU batches; those figures are not GPU ones).

    python benchmarks/bench_gpu_training.py --backbone efficientnet-lite0 --split 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from oodml.data import load_dataset
from oodml.splits.splitfile import load_splitfile
from oodml.train.images import ImageInputs
from oodml.train.loop import TrainConfig, embed, seed_everything, train
from oodml.train.losses import build_loss
from oodml.train.models import build_model
from oodml.train.run import class_labels
from oodml.train.samplers import build_sampler

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("OODML_DATA", REPO.parent / "shared" / "data"))
SPLITS = REPO / "splits" / "omniglot_small1_efficientnet-lite0_class-means_greedy.json"


def classes_of(args: argparse.Namespace, manifest) -> tuple[list[str], list[str], str]:
    if Path(args.splitfile).is_file():
        sf = load_splitfile(args.splitfile)
        sf.check_against(manifest)
        s = sf.split(args.split)
        return list(s.train), list(s.test), f"split {s.id} (distance {s.distance:.4g})"
    half = len(manifest.classes) // 2
    return list(manifest.classes[:half]), list(manifest.classes[half:]), "first/second half"


def one_setting(args, manifest, train_cls, test_cls, device, amp: bool, cl: bool) -> dict:
    seed_everything(0)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        m=4,
        amp=amp,
        channels_last=cl,
        num_workers=args.workers,
        lr=1e-4,
        optimizer="adamw",
    )
    weights = "imagenet" if args.backbone == "efficientnet-lite0" else None
    model = build_model(args.backbone, dim=128, weights=weights)
    tr_idx = manifest.indices_of(train_cls)
    if args.max_train:
        tr_idx = tr_idx[: args.max_train]
    tr_labels = class_labels(manifest, tr_idx, sorted(set(manifest.labels[i] for i in tr_idx)))
    inputs = ImageInputs(
        manifest,
        tr_idx,
        tr_labels,
        backbone=args.backbone,
        size=args.size,
        num_workers=args.workers,
        seed=0,
    )
    sampler = build_sampler("m-per-class", tr_labels, args.batch_size, 0, 4)
    loss_fn = build_loss(
        "multisimilarity", num_classes=int(tr_labels.max()) + 1, embedding_size=128
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    warm = replace(cfg, epochs=1)
    train(model, loss_fn, None, inputs, sampler, warm, device=device)  # warm-up epoch
    sync(device)
    t0 = time.perf_counter()
    train(model, loss_fn, None, inputs, sampler, cfg, device=device)
    sync(device)
    train_s = time.perf_counter() - t0
    n_train = len(sampler) * args.batch_size * cfg.epochs
    te_idx = manifest.indices_of(test_cls)
    if args.max_train:
        te_idx = te_idx[: args.max_train]
    te = ImageInputs(
        manifest,
        te_idx,
        np.zeros(len(te_idx), dtype=np.int64),
        backbone=args.backbone,
        size=args.size,
        num_workers=args.workers,
    )
    sync(device)
    t0 = time.perf_counter()
    emb = embed(model, te, device=device, batch_size=256, amp=amp, channels_last=cl)
    sync(device)
    eval_s = time.perf_counter() - t0
    assert np.isfinite(emb).all()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {
        "train_img_s": n_train / train_s,
        "eval_img_s": len(te_idx) / eval_s,
        "peak_gib": peak,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(DATA / "omniglot" / "images_background_small1.zip"))
    p.add_argument("--dataset", default="omniglot")
    p.add_argument("--splitfile", default=str(SPLITS))
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--backbone", default="efficientnet-lite0")
    p.add_argument("--batch-size", type=int, default=112)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--max-train", type=int, default=0, help="cap images per side (smoke runs)")
    p.add_argument("--cpu-smoke", action="store_true", help="run a few CPU batches, no GPU figures")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("CUDA is not available on this machine: no GPU figures measured.")
        if not args.cpu_smoke:
            sys.exit(0)
        args.batch_size, args.epochs, args.size, args.max_train = 16, 1, 96, 64
        args.workers = 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (smoke run)"
    manifest = load_dataset(args.dataset, args.root)
    train_cls, test_cls, which = classes_of(args, manifest)
    print(
        f"device {name}; backbone {args.backbone}; {which}; batch {args.batch_size}; "
        f"{args.size}px; {args.epochs} timed epoch(s) after 1 warm-up; workers {args.workers}"
    )
    ours = one_setting(args, manifest, train_cls, test_cls, device, amp=True, cl=True)
    ref = one_setting(args, manifest, train_cls, test_cls, device, amp=False, cl=False)
    for label, r in (("AMP + channels-last", ours), ("fp32 reference", ref)):
        print(
            f"{label:22s} train {r['train_img_s']:8.1f} img/s  eval {r['eval_img_s']:8.1f} "
            f"img/s  peak GPU memory {r['peak_gib']:.2f} GiB"
        )
    print(
        f"ratio AMP/fp32: train {ours['train_img_s'] / ref['train_img_s']:.2f}x, "
        f"eval {ours['eval_img_s'] / ref['eval_img_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
