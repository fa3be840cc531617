"""How many epochs until full-backbone Recall@1 stops rising: train one model epoch by epoch
(each epoch resumes the previous one's checkpoint) and score the split's test classes after
each. Writes a CSV of (epoch, train loss, metrics). Run from the repository root:

    python reports/full_backbone/epochs_probe.py --epochs 8 --out reports/full_backbone/epochs.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from dataclasses import replace
from pathlib import Path

from oodml.features.extract import resolve_device
from oodml.train.loop import TrainConfig, seed_everything, state_tag, train
from oodml.train.losses import build_loss
from oodml.train.miners import build_miner
from oodml.train.models import build_model
from oodml.train.run import class_labels, embed_classes, make_inputs, resolve, score_embeddings
from oodml.train.samplers import build_sampler
from oodml.train.spec import RunSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splitfile",
                    default="splits/omniglot_small1_efficientnet-lite0_class-means_greedy.json")
    ap.add_argument("--root", default=os.path.join(os.environ.get("OODML_DATA", "../shared/data"),
                                                   "omniglot/images_background_small1.zip"))
    ap.add_argument("--split", type=int, default=1)
    ap.add_argument("--loss", default="multisimilarity")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    cfg = TrainConfig(epochs=1, lr=a.lr, channels_last=True, image_cache=True)
    spec = RunSpec(splitfile=a.splitfile, root=a.root, loss=a.loss, split_id=a.split, seed=0,
                   backbone="efficientnet-lite0", image_size=a.size, train=cfg,
                   results_dir=str(a.out.parent), device="cpu")
    spec, sf, manifest, split = resolve(spec)
    seed_everything(spec.seed)
    idx = manifest.indices_of(split.train)
    labels = class_labels(manifest, idx, split.train)
    inputs = make_inputs(spec, manifest, idx, labels)
    model = build_model(spec.backbone, dim=spec.embed_dim, weights=spec.weights)
    loss_fn = build_loss(spec.loss, num_classes=len(split.train), embedding_size=spec.embed_dim)
    sampler = build_sampler("m-per-class", labels, cfg.batch_size, spec.seed, cfg.m)
    test = manifest.indices_of(split.test)
    ckpt = a.out.with_suffix(".pt")
    tag = state_tag({"probe": a.loss, "split": a.split, "size": a.size, "lr": a.lr})
    rows = []
    for k in range(0, a.epochs + 1):
        t = time.perf_counter()
        # resumes epoch k-1's checkpoint (same tag), so each call runs one epoch
        res = train(model, loss_fn, build_miner(None, None), inputs, sampler,
                    replace(cfg, epochs=k), device=resolve_device("cpu"), checkpoint=ckpt, tag=tag)
        took = time.perf_counter() - t
        emb, lab = embed_classes(spec, model, manifest, test, split.test)
        scores = score_embeddings(spec, sf, emb, lab)
        row = {"epoch": k, "train_loss": res.epoch_losses[-1] if res.epoch_losses else "",
               "train_s": round(took, 1), **{m: round(v, 4) for m, v in scores.items()}}
        rows.append(row)
        print(row, flush=True)
        with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
