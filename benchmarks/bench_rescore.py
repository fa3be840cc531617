"""Time rescoring a ladder (oodml.splits.rescore) against a direct recomputation.

Default: the published Omniglot ladder rescored in ``--mode`` (default samples) with the
cached features of ``--extractor`` (default the file's). The direct route fits a Gaussian to
each split's train and test rows (``gaussian.fit_gaussian``) and calls ``frechet_distance``;
the library route uses ``ClassStats`` (per-class statistics shared by all splits, or the
class-means evaluator). Both must give the same distances. Prints the times and the ratio.

On a machine shared by many processes, multi-threaded BLAS can be 10x slower than one thread
for the 1280-d eigenproblems; run with OPENBLAS_NUM_THREADS=1 to see the single-thread figure.

    python benchmarks/bench_rescore.py [--splitfile F] [--root ZIP] [--extractor E] [--mode M]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from omniglot_args import add_ladder_args

from oodml.data import load_dataset
from oodml.features import get_features
from oodml.splits import load_splitfile
from oodml.splits.rescore import rescore
from oodml.stats.class_stats import ClassStats
from oodml.stats.gaussian import fit_gaussian, frechet_distance


def main() -> None:
    ap = argparse.ArgumentParser()
    add_ladder_args(ap)
    ap.add_argument("--extractor", default=None)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--mode", default="samples")
    args = ap.parse_args()

    sf = load_splitfile(args.splitfile)
    manifest = load_dataset(sf.dataset_name, args.root)
    extractor = args.extractor or sf.extractor
    t = time.perf_counter()
    fs = get_features(manifest, extractor, weights=args.weights)
    t_feat = time.perf_counter() - t

    t = time.perf_counter()
    stats = ClassStats.from_features(fs.features, fs.labels)
    result = rescore(sf, stats, extractor=extractor, mode=args.mode)
    t_lib = time.perf_counter() - t

    labels = np.asarray(fs.labels)
    t = time.perf_counter()
    direct = []
    for s in sf.ladder:
        if args.mode == "samples":
            ga = fit_gaussian(fs.features[np.isin(labels, s.train)])
            gb = fit_gaussian(fs.features[np.isin(labels, s.test)])
        else:
            means = dict(zip(*fs.class_means(), strict=True))
            ga = fit_gaussian(np.stack([means[c] for c in s.train]))
            gb = fit_gaussian(np.stack([means[c] for c in s.test]))
            eps = 1e-8 * np.eye(len(ga[0]))
            ga, gb = (ga[0], ga[1] + eps), (gb[0], gb[1] + eps)
        direct.append(frechet_distance(ga[0], ga[1], gb[0], gb[1]))
    t_direct = time.perf_counter() - t
    worst = max(abs(a - b) / abs(b) for a, b in zip(result.rescored, direct, strict=True))

    print(f"ladder {args.splitfile.name} ({len(sf.ladder)} splits) rescored with {extractor} "
          f"{args.mode}; BLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}")
    print(result.summary())
    for sid, d, r in zip(result.split_ids, result.distance, result.rescored, strict=True):
        print(f"  split {sid}: stored {d:9.3f}  rescored {r:9.3f}")
    print(f"features from the cache: {t_feat:.2f} s")
    print(f"rescore (ClassStats + distances): {t_lib:.2f} s")
    print(f"direct per-split Gaussian fits: {t_direct:.2f} s; ratio direct / rescore "
          f"{t_direct / t_lib:.2f}; max relative difference {worst:.1e}")


if __name__ == "__main__":
    main()
