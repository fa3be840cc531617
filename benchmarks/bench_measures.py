"""Time per split of every measure (oodml.stats.measures) at Omniglot, CUB and SOP sizes.

Seeded synthetic class-means problems shaped like the datasets (class means drawn around a
shared centre, image counts per class as published):

* Omniglot small1: 136 classes (68 a side), 1280-d, 20 images a class;
* CUB200/CARS196: 200 classes (100 a side), 2048-d, ~59 images a class;
* SOP: 22,634 classes (11,317 a side), 2048-d, ~5.3 images a class.

Each measure is timed on one split from scratch (best of ``--repeats``), against the Fréchet
distance (today's default, same split, same run) as the reference: the ratio is time /
Fréchet's time. Goal: every measure under 1 s per split at CUB size. At SOP size ``w2-classes``
needs a 11,317 x 11,317 cost matrix (1 GB) and the entropic solver: its time is measured for
``--sinkhorn-iters`` iterations on a quarter-size problem (5,658 x 5,659 classes) and
extrapolated linearly in cost entries and to the solver's cap of 2000 iterations (stated as
an estimate); ``--sop-full`` runs it for real.

    python benchmarks/bench_measures.py [--sizes omniglot,cub,sop] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from oodml.stats.class_stats import ClassStats
from oodml.stats.measures import MEASURES, get_measure
from oodml.stats.measures import w2_classes as W

SIZES = {
    "omniglot": (136, 1280, 20),
    "cub": (200, 2048, 59),
    "sop": (22634, 2048, 5),
}


def make_stats(n_classes: int, dim: int, per_class: int, seed: int = 0) -> ClassStats:
    """A ClassStats whose class means are the rows of a seeded Gaussian cloud (one image per
    class carries the mean; counts set as the dataset's)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n_classes, dim)) * 0.3 + rng.standard_normal(dim)
    labels = [f"c{i:05d}" for i in range(n_classes)]
    st = ClassStats.from_features(means.astype(np.float32), labels)
    st.counts = np.full(n_classes, per_class, dtype=np.int64)
    return st


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def sinkhorn_estimate(n: int, dim: int, iters: int) -> tuple[float, float]:
    """(seconds for ``iters`` entropic iterations on a quarter-size problem, extrapolated
    seconds for the full n x n problem at the 2000-iteration cap)."""
    import ot

    rng = np.random.default_rng(1)
    half, other = n // 4, n // 2 - n // 4
    x, y = rng.standard_normal((half, dim)), rng.standard_normal((other, dim))
    c = W.sq_costs(x, y)
    c /= c.max()
    a, b = np.full(half, 1 / half), np.full(other, 1 / other)
    t = time.perf_counter()
    ot.sinkhorn2(a, b, c, W.SINKHORN_REG, method="sinkhorn_log", numItermax=iters, stopThr=0.0)
    sec = time.perf_counter() - t
    scale = (n // 2) * (n - n // 2) / (half * other) * W.SINKHORN_MAX_ITER / iters
    return sec, sec * scale


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="omniglot,cub,sop")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sinkhorn-iters", type=int, default=10)
    ap.add_argument("--sop-full", action="store_true")
    args = ap.parse_args()
    import ot  # noqa: F401  (imported once, outside the timings)

    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)")
    for size in args.sizes.split(","):
        n, dim, per = SIZES[size]
        st = make_stats(n, dim, per)
        ia, ib = np.arange(n // 2), np.arange(n // 2, n)
        print(f"{size}: {n} classes ({len(ia)} / {len(ib)} a side), {dim}-d, class-means")
        ref = None
        for name in ["frechet", *[m for m in MEASURES.names() if m != "frechet"]]:
            m = get_measure(name)
            if name == "w2-classes" and n // 2 * (n - n // 2) > W.EXACT_MAX_PAIRS \
                    and not args.sop_full:
                sec, est = sinkhorn_estimate(n, dim, args.sinkhorn_iters)
                print(f"  {name:11s} entropic: {args.sinkhorn_iters} iterations on a quarter "
                      f"problem {sec:.2f} s; full problem at the {W.SINKHORN_MAX_ITER}-iteration "
                      f"cap ~{est:.0f} s (estimate, {est / ref:.0f}x frechet)")
                continue
            reps = 1 if size == "sop" else args.repeats
            sec, v = best_time(lambda m=m, st=st, ia=ia, ib=ib: m(st, ia, ib, "class-means"),
                               reps)
            if name == "frechet":
                ref = sec
            solver = f" [{v.solver}]" if v.solver else ""
            goal = f"  goal < 1 s: {'met' if sec < 1 else 'NOT met'}" if size == "cub" else ""
            print(f"  {name:11s} {sec:8.3f} s per split ({sec / ref:6.1f}x frechet)  "
                  f"value {v.value:.6g}{solver}{goal}")


if __name__ == "__main__":
    main()
