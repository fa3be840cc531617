"""Greedy removal policies on the shared Omniglot subset and on a seeded half of its classes.

For each policy (``test-fixed``, ``balanced``, ``any``, ``none``) and the published ``oodml``
walk, class-means mode, 8 levels: the selected ladder's distance range, the classes removed
and the train/test class counts at the top, whether the ladder and the whole trajectory are
strictly increasing, and the wall time.

Cases: ``full`` = all 136 classes from the dataset's default split (first 68 train);
``half`` = 68 classes drawn with ``numpy.random.default_rng(SEED).choice(136, 68)``, each
keeping its side of the default split.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_ladder_removal.py [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from oodml.data import load_dataset
from oodml.features import get_features
from oodml.splits.ladder import run_procedure, select_ladder, start_split
from oodml.splits.procedures import REMOVAL_POLICIES
from oodml.stats.class_stats import ClassStats


def omniglot():
    root = Path(os.environ.get("OODML_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
    manifest = load_dataset("omniglot", root / "omniglot" / "images_background_small1.zip")
    fs = get_features(manifest, "efficientnet-lite0")
    return manifest, fs


def subset(manifest, fs, classes):
    keep = set(classes)
    rows = np.array([lab in keep for lab in fs.labels])
    stats = ClassStats.from_features(fs.features[rows], [x for x in fs.labels if x in keep])
    train = [c for c in manifest.default_train if c in keep]
    test = [c for c in manifest.default_test if c in keep]
    return stats, start_split(stats.classes, train, test, None)


def report(case: str, name: str, traj, seconds: float) -> None:
    ladder = select_ladder(traj, k=8)
    top = ladder[-1]
    d = [s.distance for s in ladder]
    print(
        f"  {case:4s} {name:10s} ladder {d[0]:7.2f} .. {d[-1]:7.2f} (start "
        f"{traj.start.distance:6.2f})  top: {len(top.train):3d} train / {len(top.test):3d} test, "
        f"{len(top.removed):3d} removed  ladder increasing {bool(np.all(np.diff(d) > 0))}  "
        f"trajectory increasing {traj.is_strictly_increasing}  {seconds:6.2f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="seed of the half-subset draw")
    args = ap.parse_args()
    manifest, fs = omniglot()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")
    classes = sorted(set(fs.labels))
    half = sorted(np.random.default_rng(args.seed).choice(len(classes), 68, replace=False))
    cases = {"full": classes, "half": [classes[i] for i in half]}
    for case, names in cases.items():
        stats, (train, test) = subset(manifest, fs, names)
        print(f"{case}: {len(stats.classes)} classes, start {len(train)} train / {len(test)} test")
        for policy in REMOVAL_POLICIES:
            t0 = time.perf_counter()
            traj = run_procedure(stats, train, test, params={"removal": policy})
            report(case, policy, traj, time.perf_counter() - t0)
        t0 = time.perf_counter()
        traj = run_procedure(stats, train, test, procedure="oodml")
        report(case, "oodml", traj, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
