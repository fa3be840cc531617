"""Time the bootstrap intervals of every split of a ladder against a naive recomputation.

Default: the published Omniglot ladder (class-means, efficientnet-lite0 features from the
cache, B = 200 per split). The fast route (oodml.splits.uncertainty) works on the Gram matrix
of each split's class means with resampling counts as weights; the naive route materialises
the resampled class list (duplicates included) and calls the project's fast class-means evaluator
``ClassStats.means_distance(eps).distance`` on it (rank <= C-1 coordinates of the class means);
``--full`` also times ``distance_within`` in the D-dimensional feature space. The naive
routes are timed on ``--naive-reps`` replicates per split and scaled to B; both routes are run
on the same draws for the first replicates, whose distances must agree.

    python benchmarks/bench_bootstrap.py [--splitfile F] [--root ZIP] [--boots 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from omniglot_args import add_ladder_args

from oodml.data import load_dataset
from oodml.features import get_features
from oodml.splits import load_splitfile
from oodml.splits.uncertainty import _seed_sequence, bootstrap_distances, draw_counts, ladder_cis
from oodml.stats.class_stats import ClassStats
from oodml.stats.modes import distance_within


def main() -> None:
    ap = argparse.ArgumentParser()
    add_ladder_args(ap)
    ap.add_argument("--boots", type=int, default=200)
    ap.add_argument("--naive-reps", type=int, default=10)
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args()

    sf = load_splitfile(args.splitfile)
    if sf.distance_mode != "class-means":
        raise SystemExit(f"{args.splitfile}: this benchmark times class-means ladders only")
    manifest = load_dataset(sf.dataset_name, args.root)
    fs = get_features(manifest, sf.extractor)
    stats = ClassStats.from_features(fs.features, fs.labels)
    eps = sf.params.get("eps")

    t = time.perf_counter()
    cis = ladder_cis(stats, sf, n_boot=args.boots)
    fast = time.perf_counter() - t

    means = stats.means_distance(1e-8 if eps is None else eps)
    naive_per_rep, full_per_rep, worst = [], [], 0.0
    for sp in sf.ladder:
        ia, ib = stats.indices(sp.train), stats.indices(sp.test)
        rng = np.random.default_rng(_seed_sequence(sf.seed, sp.id))
        wa = draw_counts(rng, len(ia), args.boots)[: args.naive_reps]
        wb = draw_counts(rng, len(ib), args.boots)[: args.naive_reps]
        t = time.perf_counter()
        naive = [
            means.distance(np.repeat(ia, wa[r]), np.repeat(ib, wb[r]))
            for r in range(args.naive_reps)
        ]
        naive_per_rep.append((time.perf_counter() - t) / args.naive_reps)
        if args.full:
            t = time.perf_counter()
            for r in range(args.naive_reps):
                distance_within(stats, np.repeat(ia, wa[r]), np.repeat(ib, wb[r]), eps=eps)
            full_per_rep.append((time.perf_counter() - t) / args.naive_reps)
        same = bootstrap_distances(stats, sp.train, sp.test, mode=sf.distance_mode, eps=eps,
                                   n_boot=args.boots,
                                   rng=np.random.default_rng(_seed_sequence(sf.seed, sp.id)))
        worst = max(worst, float(np.max(np.abs(same[: args.naive_reps] - naive) / np.abs(naive))))
    naive_total = sum(naive_per_rep) * args.boots

    print(f"ladder {args.splitfile.name}: {len(sf.ladder)} splits, {sf.distance_mode}, "
          f"B = {args.boots}")
    for sp, (lo, hi) in zip(sf.ladder, cis, strict=True):
        print(f"  split {sp.id}: {sp.distance:8.3f}  95% CI [{lo:8.3f}, {hi:8.3f}]  "
              f"({len(sp.train)} train / {len(sp.test)} test classes)")
    print(f"fast bootstrap, all splits: {fast:.2f} s")
    print(f"naive recomputation with MeansDistance on duplicated rows (scaled from "
          f"{args.naive_reps} replicates/split): {naive_total:.1f} s")
    if full_per_rep:
        print(f"naive distance_within in {stats.dim} dimensions (scaled): "
              f"{sum(full_per_rep) * args.boots:.1f} s")
    print(f"speed-up: {naive_total / fast:.1f}x; max relative difference on shared draws "
          f"{worst:.1e}")


if __name__ == "__main__":
    main()
