"""Cost of the paired distance differences of a ladder (B = 200) next to the walk's own time,
and the coverage of the paired interval (synthetic Gaussian classes, known difference).

Sections (each prints its figures and the ratio paired / walk measured in this run):

* Omniglot: the published greedy ladder's walk (same data and parameters) and its paired
  bootstrap (``oodml.splits.paired.ladder_paired``) plus the marginal intervals for reference.
* CUB-sized: 200 classes x 2048-d seeded synthetic features (``bench_ladder_scale.synthetic``),
  the full default greedy walk, 8 levels, paired bootstrap: the exact route and the linear
  route (first-order expansion in the class weights, ``route="linear"``) on the same class
  draws, with the largest gap between their adjacent intervals (as a share of the exact
  interval's width). Goal: paired < 10% of the walk.
* ``--sop``: SOP-sized (22,634 classes x 2048-d, 11,318 a side): the default ``oodml`` walk
  and ``--sop-reps`` paired replicates of its 8-level ladder (dense route: each replicate forms
  the sides' weighted moments once and carries them across the ladder), scaled to B.
* ``--coverage``: 200 repetitions x B = 200 of ``tests/test_paired.coverage`` (nominal 95%,
  target [90%, 99%]), for the exact and the linear route.

    python benchmarks/bench_paired.py [--boots 200] [--sop] [--coverage]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from omniglot_args import add_ladder_args

from oodml.data import load_dataset
from oodml.features import get_features
from oodml.splits import load_splitfile
from oodml.splits.ladder import run_procedure, select_ladder
from oodml.splits.paired import PairedLadder, adjacent_diffs, ladder_paired, paired_seed
from oodml.splits.uncertainty import ladder_cis
from oodml.stats.class_stats import ClassStats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def paired_of(stats: ClassStats, steps, mode: str, boots: int, seed: int = 0,
              route: str = "auto"):
    engine = PairedLadder(stats, [(s.train, s.test) for s in steps], mode, route=route)
    return timed(lambda: engine.replicates(boots, np.random.default_rng(paired_seed(seed))))


def compare(steps, exact: np.ndarray, linear: np.ndarray) -> str:
    """Largest gap between the exact and linear adjacent intervals (share of the exact width),
    and the largest gap between their flip probabilities."""
    d = [s.distance for s in steps]
    ex, li = adjacent_diffs(d, exact), adjacent_diffs(d, linear)
    gap = max(max(abs(a.low - b.low), abs(a.high - b.high)) / (a.high - a.low)
              for a, b in zip(ex, li, strict=True))
    flip = max(abs(a.flip - b.flip) for a, b in zip(ex, li, strict=True))
    return (f"linear vs exact intervals: largest endpoint gap {100 * gap:.1f}% of the width, "
            f"flip probabilities within {flip:.3f}")


def omniglot(args: argparse.Namespace) -> None:
    sf = load_splitfile(args.splitfile)
    manifest = load_dataset(sf.dataset_name, args.root)
    fs = get_features(manifest, sf.extractor)
    stats = ClassStats.from_features(fs.features, fs.labels)
    start = next(s for s in sf.ladder if s.is_start)
    params = {k: v for k, v in sf.params.items() if k != "eps"}
    _, walk = timed(lambda: run_procedure(stats, start.train, start.test, mode=sf.distance_mode,
                                          procedure=sf.procedure, params=params))
    diffs, paired = timed(lambda: ladder_paired(stats, sf, n_boot=args.boots))
    steps = sf.ladder
    exact, _ = paired_of(stats, steps, sf.distance_mode, args.boots, seed=sf.seed)
    lin, linear = paired_of(stats, steps, sf.distance_mode, args.boots, seed=sf.seed,
                            route="linear")
    _, marginal = timed(lambda: ladder_cis(stats, sf, n_boot=args.boots))
    print(f"Omniglot ({len(stats.classes)} classes x {stats.dim}-d, {len(sf.ladder)} levels, "
          f"B = {args.boots}): walk {walk:.2f} s, paired {paired:.2f} s "
          f"({100 * paired / walk:.0f}% of the walk), linear route {linear:.3f} s "
          f"({100 * linear / walk:.1f}%), marginal {marginal:.2f} s")
    print("  " + compare(steps, exact, lin))
    print("  adjacent paired intervals: " + ", ".join(
        f"[{d.low:.1f}, {d.high:.1f}]" for d in diffs))


def cub(args: argparse.Namespace) -> None:
    from bench_ladder_scale import synthetic

    x, labels = synthetic(200, 2048, args.seed + 1)
    stats = ClassStats.from_features(x, labels)
    tr, te = stats.classes[:100], stats.classes[100:]
    walks = []
    for _ in range(3):
        fresh = ClassStats.from_features(x, labels)
        traj, dt = timed(lambda s=fresh: run_procedure(s, tr, te, mode="class-means",
                                                       procedure="greedy"))
        walks.append(dt)
    walk = min(walks)
    steps = select_ladder(traj, k=8)
    reps, paired = paired_of(stats, steps, "class-means", args.boots)
    lin, linear = paired_of(stats, steps, "class-means", args.boots, route="linear")
    per = paired / (args.boots * len(steps))
    print(f"CUB-sized (200 classes x 2048-d, {len(steps)} levels, B = {args.boots}): greedy walk "
          f"best of 3 {walk:.2f} s, paired exact {paired:.2f} s ({per * 1e3:.2f} ms per split "
          f"and replicate) = {100 * paired / walk:.0f}% of the walk; linear route "
          f"{linear:.3f} s = {100 * linear / walk:.1f}% of the walk (goal < 10%)")
    print("  " + compare(steps, reps, lin))


def sop(args: argparse.Namespace) -> None:
    from bench_ladder_scale import synthetic

    x, labels = synthetic(22634, 2048, args.seed)
    stats = ClassStats.from_features(x, labels)
    half = len(stats.classes) // 2
    tr, te = stats.classes[:half], stats.classes[half:]
    traj, walk = timed(lambda: run_procedure(stats, tr, te, mode="class-means",
                                             procedure="oodml"))
    steps = select_ladder(traj, k=8)
    _, dt = paired_of(stats, steps, "class-means", args.sop_reps)
    scaled = dt / args.sop_reps * args.boots
    print(f"SOP-sized (22634 classes x 2048-d, {len(steps)} levels): oodml walk {walk:.1f} s, "
          f"paired {args.sop_reps} replicates {dt:.1f} s -> B = {args.boots}: {scaled:.0f} s "
          f"({scaled / walk:.1f}x the walk)")


def coverage(args: argparse.Namespace) -> None:
    from test_paired import coverage as run

    for route in ("auto", "linear"):
        c, dt = timed(lambda r=route: run(200, 200, seed=args.seed + 11, route=r))
        ok = 0.90 <= c <= 0.99
        print(f"coverage of the nominal 95% paired interval ({route} route), 200 repetitions x "
              f"B = 200: {100 * c:.1f}% ({'within' if ok else 'OUTSIDE'} [90%, 99%]; {dt:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    add_ladder_args(ap)
    ap.add_argument("--boots", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sop", action="store_true")
    ap.add_argument("--sop-reps", type=int, default=2)
    ap.add_argument("--coverage", action="store_true")
    ap.add_argument("--skip-omniglot", action="store_true")
    args = ap.parse_args()
    if not args.skip_omniglot:
        omniglot(args)
    cub(args)
    if args.sop:
        sop(args)
    if args.coverage:
        coverage(args)


if __name__ == "__main__":
    main()
