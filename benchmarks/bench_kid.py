"""KID (oodml.stats.measures.kid) against torch-fidelity's ``kid_features_to_metric`` on the
same features, same subsets (100 subsets of 1000, seed 0), in the same run.

Sizes: two sides of 2720 x 1280 (the Omniglot subset's image count, EfficientNet-Lite0's
dimension) and of 20,000 x 2048 (a CUB/SOP-sized image set, Inception's dimension); seeded
Gaussian features (float64, so both compute in float64 and agree to rounding). Prints both
times, the speed ratio and the relative difference of mean and std.

oodml forms the three kernel matrices over all points when that costs fewer multiply-adds than
the 3 x 100 per-subset kernels torch-fidelity forms (true at 2720 a side), else per subset like
torch-fidelity (with the symmetric blocks as rank-k updates).

    python benchmarks/bench_kid.py [--sizes 2720x1280,20000x2048]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from oodml.stats.measures.kid import kid_values


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2720x1280,20000x2048")
    args = ap.parse_args()
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kid_features_to_metric,
    )

    for spec in args.sizes.split(","):
        n, d = (int(v) for v in spec.split("x"))
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, d))
        y = rng.standard_normal((n, d)) * 1.05 + 0.02
        t = time.perf_counter()
        ref = kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(y), kid_subsets=100,
                                     kid_subset_size=1000, rng_seed=0, verbose=False)
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        ours = kid_values(x, y, subsets=100, subset_size=1000, seed=0)
        t_ours = time.perf_counter() - t
        dm = abs(ours.mean() - ref[KEY_METRIC_KID_MEAN]) / abs(ref[KEY_METRIC_KID_MEAN])
        ds = abs(ours.std() - ref[KEY_METRIC_KID_STD]) / abs(ref[KEY_METRIC_KID_STD])
        print(f"{n} x {d} a side: torch-fidelity {t_ref:.2f} s, oodml {t_ours:.2f} s "
              f"({t_ref / t_ours:.2f}x); KID {ours.mean():.6g} +- {ours.std():.3g}, relative "
              f"difference mean {dm:.1e}, std {ds:.1e}")


if __name__ == "__main__":
    main()
