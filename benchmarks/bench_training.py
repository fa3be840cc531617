"""Full-backbone training throughput on the CPU (or a GPU): oodml's training loop against a
plain PyTorch loop written here, same model, same batches' size, same loss, in the same run.

The plain loop is what a user writes first: an image folder read by a standard ``DataLoader``
(PIL decode, RandomResizedCrop, flip, ToTensor, Normalize per image), fp32, contiguous memory,
``model(x)``, loss, ``backward``, ``step``. oodml's loop (:func:`oodml.train.loop.train`) runs
in the settings below; each prints images/s of steady-state training, the share of step time
spent waiting for data, and the ratio to the plain loop. Settings are interleaved round-robin
(``--rounds``) so drifting load on a shared machine hits all alike; the best round counts.

- ``oodml``: today's defaults (PIL DataLoader, fp32);
- ``+cl``: ``--channels-last``;
- ``+cl+cache``: ``--channels-last --image-cache`` (decode once; tensor augmentation);
- ``+cl+fold``, ``+cl+cache+fold``: the same with ``--fold-bn`` (frozen BatchNorm folded into
  its convolutions; both loops run the backbones' frozen BN, so the function is the same);
- ``+cl+cache+amp``: the same with ``--amp`` (bf16 autocast on CPU).

The decode-once cost (paid once per run, before the first epoch) is printed separately.

    python benchmarks/bench_training.py --sizes 112,224 --steps 6
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from oodml.data import load_dataset
from oodml.features.extract import resolve_device
from oodml.train.images import ImageInputs, normalisation
from oodml.train.loop import TrainConfig, seed_everything, train
from oodml.train.losses import build_loss
from oodml.train.models import build_model
from oodml.train.samplers import BatchSampler

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("OODML_DATA", REPO.parent / "shared" / "data"))
WEIGHTS = ["imagenet"]
SETTINGS = {
    "oodml": {},
    "+cl": {"channels_last": True},
    "+cl+cache": {"channels_last": True, "image_cache": True},
    "+cl+fold": {"channels_last": True, "fold_bn": True},
    "+cl+cache+fold": {"channels_last": True, "image_cache": True, "fold_bn": True},
    "+cl+cache+amp": {"channels_last": True, "image_cache": True, "amp": True},
}


class FixedBatches(BatchSampler):
    """The same index batches every epoch (both loops see equal batch sizes)."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._b = batches

    def batches(self, epoch: int):  # type: ignore[override]
        return iter(self._b)


class Folder(Dataset):
    def __init__(self, paths: list[Path], labels: np.ndarray, tf) -> None:
        self.paths, self.labels, self.tf = paths, labels, tf

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as im:
            return self.tf(im.convert("RGB")), int(self.labels[i])


def plain_loop(paths, labels, batches, size, backbone, workers, device) -> dict:
    mean, std = normalisation(backbone)
    tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(mean, std)])
    loader = DataLoader(Folder(paths, labels, tf), batch_sampler=[b.tolist() for b in batches],
                        num_workers=workers)
    seed_everything(0)
    model = build_model(backbone, weights=WEIGHTS[0]).to(device).train()
    loss_fn = build_loss("multisimilarity", num_classes=int(labels.max()) + 1, embedding_size=128)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    it = iter(loader)
    waited = 0.0
    x, y = next(it)  # warm-up step, not timed
    loss_fn(model(x.to(device)), y.to(device)).backward()
    opt.step()
    began, images = time.perf_counter(), 0
    while True:
        t = time.perf_counter()
        batch = next(it, None)
        waited += time.perf_counter() - t
        if batch is None:
            break
        x, y = batch
        loss = loss_fn(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        images += len(y)
    took = time.perf_counter() - began
    return {"ips": images / took, "data": waited / took}


def oodml_loop(manifest, idx, labels, batches, size, backbone, setting, device) -> dict:
    opts = SETTINGS[setting]
    seed_everything(0)
    inputs = ImageInputs(manifest, idx, labels, backbone=backbone, size=size,
                         cache=opts.get("image_cache", False),
                         channels_last=opts.get("channels_last", False))
    decode = 0.0
    if inputs.cache:
        t = time.perf_counter()
        inputs.decoded()
        decode = time.perf_counter() - t
    model = build_model(backbone, weights=WEIGHTS[0])
    loss_fn = build_loss("multisimilarity", num_classes=int(labels.max()) + 1, embedding_size=128)
    cfg = TrainConfig(epochs=1, lr=1e-4, **opts)
    # warm-up: one batch, not timed
    train(model, loss_fn, None, inputs, FixedBatches(batches[:1]), cfg, device=device)
    res = train(model, loss_fn, None, inputs, FixedBatches(batches[1:]), cfg, device=device)
    return {"ips": res.images / res.seconds, "data": res.data_seconds / res.seconds,
            "decode_s": decode}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="112,224")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per setting and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--workers", type=int, default=2, help="plain loop's DataLoader workers")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", default="imagenet",
                    help="imagenet or random (throughput does not depend on the values)")
    a = ap.parse_args()
    WEIGHTS[0] = a.weights
    device = resolve_device(a.device)
    tmp = Path(tempfile.mkdtemp(prefix="oodml-bench-training-"))
    try:
        with zipfile.ZipFile(DATA / "omniglot" / "images_background_small1.zip") as z:
            z.extractall(tmp)
        root = next(p for p in tmp.iterdir() if p.is_dir())
        manifest = load_dataset("omniglot", root)
        rng = np.random.default_rng(0)
        n = a.batch_size * (a.steps + 1)
        idx = np.sort(rng.choice(len(manifest), size=n, replace=False))
        names = sorted({manifest.labels[i] for i in idx})
        pos = {c: k for k, c in enumerate(names)}
        labels = np.array([pos[manifest.labels[i]] for i in idx])
        order = rng.permutation(n)
        batches = [order[k : k + a.batch_size] for k in range(0, n, a.batch_size)]
        paths = [root / manifest.paths[i] for i in idx]
        print(f"{a.backbone}, batch {a.batch_size}, {a.steps} timed steps x {a.rounds} rounds, "
              f"{device}, torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}")
        settings = a.settings.split(",")
        for size in [int(s) for s in a.sizes.split(",")]:
            best: dict[str, dict] = {}
            for _ in range(a.rounds):
                for name in ["plain", *settings]:
                    if name == "plain":
                        r = plain_loop(paths, labels, batches, size, a.backbone, a.workers, device)
                    else:
                        r = oodml_loop(manifest, idx, labels, batches, size, a.backbone, name,
                                       device)
                    if name not in best or r["ips"] > best[name]["ips"]:
                        best[name] = r
            ref = best["plain"]["ips"]
            print(f"\nsize {size} (load {os.getloadavg()[0]:.1f})")
            print(f"{'loop':<16}{'images/s':>10}{'data wait':>11}{'ratio':>8}{'decode once':>13}")
            for name, r in best.items():
                dec = f"{r['decode_s']:.1f} s" if r.get("decode_s") else ""
                print(f"{name:<16}{r['ips']:>10.1f}{r['data']:>10.0%}{r['ips'] / ref:>7.2f}x"
                      f"{dec:>13}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
