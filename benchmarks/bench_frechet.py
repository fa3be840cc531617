"""Fréchet distance speed vs pytorch-fid, measured in the same run on the same inputs.

(1) 2048-d full-rank covariances: ``frechet_distance`` vs ``calculate_frechet_distance``.
(2) 100 vs 100 class means in 2048-d (class-means mode, eps=1e-8 on both diagonals):
    ``MeansDistance.distance`` and ``distance_within`` vs pytorch-fid on the same covariances.

Usage: python benchmarks/bench_frechet.py [--dim 2048] [--repeats 3] [--blas-threads N]
(--blas-threads applies to both sides; on a busy shared machine 1 thread is the steadier.)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
from pytorch_fid.fid_score import calculate_frechet_distance as pfid

from oodml.stats.class_stats import ClassStats
from oodml.stats.gaussian import fit_gaussian, frechet_distance
from oodml.stats.modes import distance_within


def best_time(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """(best wall time in seconds, value) over ``repeats`` calls."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def report(name: str, ours: tuple[float, float], ref: tuple[float, float]) -> None:
    rel = abs(ours[1] - ref[1]) / abs(ref[1])
    print(
        f"{name}: ours {ours[0] * 1e3:.2f} ms, pytorch-fid {ref[0] * 1e3:.1f} ms, "
        f"speed-up {ref[0] / ours[0]:.1f}x; values {ours[1]:.10g} vs {ref[1]:.10g} "
        f"(relative difference {rel:.2e})"
    )


def full_rank(dim: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    n = 2 * dim
    x1 = rng.standard_normal((n, dim)) * rng.uniform(0.2, 2.0, dim)
    x2 = rng.standard_normal((n, dim)) @ (np.eye(dim) + 0.05 * rng.standard_normal((dim, dim)))
    m1, s1 = fit_gaussian(x1)
    m2, s2 = fit_gaussian(x2 + 0.1)
    ours = best_time(lambda: frechet_distance(m1, s1, m2, s2), repeats)
    ref = best_time(lambda: pfid(m1, s1, m2, s2), 1)
    report(f"(1) full-rank {dim}-d covariances", ours, ref)


def class_means(dim: int, n_classes: int, repeats: int) -> None:
    rng = np.random.default_rng(1)
    per_class = 3
    centres = rng.standard_normal((2 * n_classes, dim)) * rng.uniform(0.1, 1.0, dim)
    labels = [f"c{i:03d}" for i in range(2 * n_classes) for _ in range(per_class)]
    feats = np.repeat(centres, per_class, axis=0) + 0.1 * rng.standard_normal(
        (2 * n_classes * per_class, dim)
    )
    stats = ClassStats.from_features(feats.astype(np.float32), labels)
    ia, ib = np.arange(n_classes), np.arange(n_classes, 2 * n_classes)
    eye = np.eye(dim) * 1e-8
    m1, s1 = fit_gaussian(stats.means[ia])
    m2, s2 = fit_gaussian(stats.means[ib])
    s1 += eye
    s2 += eye
    t0 = time.perf_counter()
    md = stats.means_distance()
    setup = time.perf_counter() - t0
    ref = best_time(lambda: pfid(m1, s1, m2, s2), 1)
    fast = best_time(lambda: md.distance(ia, ib), repeats * 10)
    direct = best_time(lambda: distance_within(stats, ia, ib, mode="class-means"), repeats)
    full = best_time(lambda: frechet_distance(m1, s1, m2, s2), repeats)
    tag = f"{n_classes} vs {n_classes} class means, {dim}-d"
    print(f"(2) {tag}: MeansDistance set-up (once per feature set) {setup * 1e3:.1f} ms")
    report(f"(2) {tag}, MeansDistance.distance", fast, ref)
    report(f"(2) {tag}, distance_within (low-rank)", direct, ref)
    report(f"(2) {tag}, frechet_distance on d x d", full, ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--blas-threads", type=int, default=None)
    args = ap.parse_args()
    limit = nullcontext()
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(args.blas_threads)
    with limit:
        full_rank(args.dim, args.repeats)
        class_means(args.dim, args.classes, args.repeats)


if __name__ == "__main__":
    main()
