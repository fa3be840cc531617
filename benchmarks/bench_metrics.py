"""Time oodml.metrics against pytorch-metric-learning's AccuracyCalculator on the same data.

Synthetic clustered data (fixed seed): class centres N(0, I) plus 3x that noise, rows
L2-normalised; metric set precision_at_1 / r_precision / mAP@R / NMI, Euclidean distance.
Default: 20k x 512, 1000 classes x 20. ``--sop``: Stanford Online Products test scale,
11,316 classes of 6 or 7 rows (73,554 x 512). Each side runs in its own child process, so
its wall time and peak resident memory (ru_maxrss) are its own; the sides alternate for
``--repeats`` rounds (the machine is shared) and the best time of each is compared. Both
use faiss's k-means procedure with the same seed, so the values should agree.

Both sides spend most of their time in float32 matrix products, and this VM's product speed
drifts by up to half between minutes. So each child also times a reference product
(2048 x 512 x 2048, best of 10) just before and after its work, and the report gives, next
to the plain ratio of best times, the ratio at equal machine speed: the median over each
side's runs of its time scaled by the run's reference rate (GFLOP/s) relative to the mean
rate of all runs. The reference is a short sample of a drifting machine, so treat that
ratio as a cross-check, not a replacement.

    .venv/bin/python benchmarks/bench_metrics.py [--sop] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

PAIRS = {
    "recall@1": "precision_at_1",
    "r_precision": "r_precision",
    "map@r": "mean_average_precision_at_r",
    "nmi": "NMI",
}
SOP_CLASSES = 11_316


def make_data(n_classes: int, per_class: int, dim: int, seed: int) -> tuple[np.ndarray, ...]:
    """``per_class`` rows per class; 0 means SOP-like sizes (6 and 7 alternating)."""
    rng = np.random.default_rng(seed)
    sizes = np.where(np.arange(n_classes) % 2 == 0, 6, 7) if per_class == 0 else per_class
    labels = np.repeat(np.arange(n_classes), sizes)
    centers = rng.standard_normal((n_classes, dim)).astype(np.float32)
    x = centers[labels] + 3.0 * rng.standard_normal((len(labels), dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def gemm_rate() -> float:
    """GFLOP/s of a 2048 x 512 x 2048 float32 product on this machine now (best of 10)."""
    import torch

    a, b = torch.rand(2048, 512), torch.rand(512, 2048)
    best = min(_timed(lambda: a @ b) for _ in range(10))
    return 2 * 2048 * 512 * 2048 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def child(side: str, n_classes: int, per_class: int, dim: int) -> None:
    import torch

    x, labels = make_data(n_classes, per_class, dim, seed=0)
    rate_before = gemm_rate()
    t = time.perf_counter()
    if side == "oodml":
        from oodml.metrics import evaluate_embeddings

        out = evaluate_embeddings(x, labels, metrics=tuple(PAIRS), distance="euclidean",
                                  seed=1234)
    else:
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calc = AccuracyCalculator(include=tuple(PAIRS.values()), k="max_bin_count",
                                  device=torch.device("cpu"))
        ref = calc.get_accuracy(x, labels)
        out = {name: float(ref[pml]) for name, pml in PAIRS.items()}
    seconds = time.perf_counter() - t
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    rate = (rate_before + gemm_rate()) / 2
    print(json.dumps({"seconds": seconds, "rss_gb": rss_gb, "values": out, "gflops": rate,
                      "threads": torch.get_num_threads(), "n": len(x)}))


def run_side(side: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--side", side, "--n-classes", str(args.n_classes),
           "--per-class", str(args.per_class), "--dim", str(args.dim)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-classes", type=int, default=1000)
    ap.add_argument("--per-class", type=int, default=20, help="0: SOP-like sizes 6-7")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--sop", action="store_true", help="11,316 classes of 6-7 rows")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--side", choices=("oodml", "pml"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sop:
        args.n_classes, args.per_class = SOP_CLASSES, 0
    if args.side:
        child(args.side, args.n_classes, args.per_class, args.dim)
        return
    runs: dict[str, list[dict]] = {"oodml": [], "pml": []}
    for _ in range(args.repeats):
        for side in runs:
            runs[side].append(run_side(side, args))
    ours, ref = runs["oodml"][-1], runs["pml"][-1]
    print(f"data: {ours['n']} x {args.dim}, {args.n_classes} classes (synthetic, clustered), "
          f"torch threads {ours['threads']}, load average {os.getloadavg()[0]:.1f}")
    for name in PAIRS:
        a, b = ours["values"][name], ref["values"][name]
        print(f"{name:12s} oodml {a:.10f}  pml {b:.10f}  diff {abs(a - b):.1e}")
    every = [r for rs in runs.values() for r in rs]
    mean_rate = sum(r["gflops"] for r in every) / len(every)
    best = {side: min(r["seconds"] for r in rs) for side, rs in runs.items()}
    scaled = {side: float(np.median([r["seconds"] * r["gflops"] / mean_rate for r in rs]))
              for side, rs in runs.items()}
    for side, rs in runs.items():
        times = ", ".join(f"{r['seconds']:.1f} s at {r['gflops']:.0f}" for r in rs)
        print(f"{side:6s} best {best[side]:.1f} s, at equal speed (median) {scaled[side]:.1f} s  "
              f"(runs, with reference GFLOP/s: {times}), peak memory "
              f"{max(r['rss_gb'] for r in rs):.2f} GB")
    print(f"speed-up (pml / oodml, best of {args.repeats}): {best['pml'] / best['oodml']:.2f}x; "
          f"at equal machine speed: {scaled['pml'] / scaled['oodml']:.2f}x")


if __name__ == "__main__":
    main()
