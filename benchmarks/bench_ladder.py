"""Benchmark the split-ladder procedures on Omniglot-subset features (136 classes, 1280-d).

Reports, for ``--procedure oodml`` and ``greedy``:
* class-means ladder wall time (every per-step distance included) and the ratio against a
  straightforward implementation that calls ``scipy.linalg.sqrtm`` on the 1280-d covariances
  for every distance (timed on a few calls in the same run, extrapolated to the same count);
* samples-mode ladder (all ~2700 images): seconds per step and the total, and how many
  per-class Gram matrices were computed (never all features per step);
* distance range reached, classes removed at the hardest level, strictly increasing or not.

Features: ``--features FILE.npz`` (arrays ``features`` N x D and ``labels``), else the
features module (efficientnet-lite0 on ``$OODML_DATA``/omniglot, cached), else a clearly
labelled synthetic 136 x 20 x 1280 set.

    .venv/bin/python benchmarks/bench_ladder.py [--features F.npz] [--samples-steps 4]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import scipy.linalg as sla

from oodml.splits.ladder import run_procedure, select_ladder, start_split
from oodml.stats.class_stats import ClassStats
from oodml.stats.samples_distance import SamplesDistance


def load(features: str | None) -> tuple[np.ndarray, list[str], str]:
    if features:
        z = np.load(features, allow_pickle=False)
        return z["features"], [str(s) for s in z["labels"]], f"file {features}"
    root = Path(os.environ.get("OODML_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
    zip_path = root / "omniglot" / "images_background_small1.zip"
    try:
        from oodml.data import load_dataset
        from oodml.features import get_features

        fs = get_features(load_dataset("omniglot", zip_path), "efficientnet-lite0")
        return fs.features, list(fs.labels), f"efficientnet-lite0 features of {zip_path}"
    except Exception as exc:  # noqa: BLE001 - any failure means: fall back, and say why
        print(f"features module unavailable ({type(exc).__name__}: {exc})")
    rng = np.random.default_rng(0)
    means = rng.standard_normal((136, 1280)) * 0.3
    x = np.concatenate([m + 0.2 * rng.standard_normal((20, 1280)) for m in means])
    labels = [f"class{c:03d}" for c in range(136) for _ in range(20)]
    return x.astype(np.float32), labels, "SYNTHETIC 136 x 20 x 1280 (not real features)"


def sqrtm_fd(x: np.ndarray, y: np.ndarray, eps: float = 1e-8) -> float:
    """The straightforward route: np.cov + eps, scipy.linalg.sqrtm of the D x D product."""
    s1 = np.cov(x, rowvar=False) + eps * np.eye(x.shape[1])
    s2 = np.cov(y, rowvar=False) + eps * np.eye(x.shape[1])
    covmean = sla.sqrtm(s1 @ s2).real
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def summary(name: str, traj, seconds: float, evals: int, cpu: float) -> None:
    h = traj.hardest
    print(
        f"  {name:7s} {seconds:7.2f} s wall ({cpu:.2f} s CPU)  steps {len(traj.steps):4d}  "
        f"distance evals {evals:5d}  "
        f"range {traj.easiest.distance:8.3f} .. {h.distance:8.3f} (start "
        f"{traj.start.distance:.3f})  removed at hardest {len(h.removed):3d}  "
        f"strictly increasing {traj.is_strictly_increasing}"
    )


def count_evals(stats: ClassStats, mode: str):
    """Wrap the evaluator that ``mode`` uses so its calls can be counted."""
    counter = {"n": 0}
    if mode == "class-means":
        md = stats.means_distance()
        orig = md.distance

        def counted(a, b):
            counter["n"] += 1
            return orig(a, b)

        md.distance = counted
    else:
        inner = SamplesDistance.distance

        def counted_samples(self):
            counter["n"] += 1
            return inner(self)

        SamplesDistance.distance = counted_samples
    return counter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--features", help="npz with 'features' (N x D) and 'labels'")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random half/half start")
    ap.add_argument("--sqrtm-calls", type=int, default=2, help="sqrtm reference calls to time")
    ap.add_argument("--samples-steps", type=int, default=4,
                    help="samples mode: greedy max_steps per direction / oodml iterations")
    ap.add_argument("--no-samples", action="store_true", help="skip the samples-mode ladders")
    args = ap.parse_args()

    x, labels, source = load(args.features)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times on a "
          "shared machine; CPU time = this process)")
    print(f"features: {source}; {x.shape[0]} images, {len(set(labels))} classes, {x.shape[1]}-d")
    stats = ClassStats.from_features(x, labels)
    train, test = start_split(stats.classes, (), (), seed=args.seed)

    print("class-means ladders (all per-step distances included):")
    trajs = {}
    for proc in ("oodml", "greedy"):
        counter = count_evals(stats, "class-means")
        t0, c0 = time.perf_counter(), time.process_time()
        trajs[proc] = run_procedure(stats, train, test, mode="class-means", procedure=proc)
        dt = time.perf_counter() - t0
        summary(proc, trajs[proc], dt, counter["n"], time.process_time() - c0)
        trajs[proc + "_time"], trajs[proc + "_evals"] = dt, counter["n"]
    n_rm = len(trajs["oodml"].hardest.removed)
    reach = max(s.distance for s in trajs["greedy"].steps if len(s.removed) <= n_rm)
    print(f"  greedy's farthest split with <= {n_rm} classes removed (oodml's hardest): "
          f"{reach:.3f} vs oodml {trajs['oodml'].hardest.distance:.3f}")
    ladder = select_ladder(trajs["greedy"], k=8)
    print("  greedy ladder (K=8): " + ", ".join(
        f"{s.distance:.2f}{'*' if s.is_start else ''}" for s in ladder) + "  (* = start)")

    print(f"reference: scipy.linalg.sqrtm per distance on {x.shape[1]}-d covariances "
          f"({args.sqrtm_calls} timed calls):")
    means = stats.means
    steps = trajs["oodml"].steps[: args.sqrtm_calls]
    t0 = time.perf_counter()
    for s in steps:
        ref = sqrtm_fd(means[stats.indices(s.train)], means[stats.indices(s.test)])
        assert abs(ref - s.distance) <= 1e-3 * max(1.0, abs(s.distance)), (ref, s.distance)
    per_call = (time.perf_counter() - t0) / len(steps)
    for proc in ("oodml", "greedy"):
        ref_total = per_call * trajs[proc + "_evals"]
        print(f"  {proc:7s} {per_call:.3f} s/call x {trajs[proc + '_evals']} calls = "
              f"{ref_total:.1f} s (extrapolated); ours {trajs[proc + '_time']:.2f} s; "
              f"ratio {ref_total / trajs[proc + '_time']:.0f}x")

    if args.no_samples:
        return
    print(f"samples-mode ladders ({x.shape[0]} images; short walks: --samples-steps "
          f"{args.samples_steps}):")
    grams = {"n": 0}
    orig_gram = stats.gram

    def counted_gram(c):
        grams["n"] += 1
        return orig_gram(c)

    stats.gram = counted_gram
    for proc, params in (("greedy", {"max_steps": args.samples_steps}),
                         ("oodml", {"iterations": args.samples_steps})):
        grams["n"] = 0
        counter = count_evals(stats, "samples")
        t0, c0 = time.perf_counter(), time.process_time()
        traj = run_procedure(stats, train, test, mode="samples", procedure=proc, params=params)
        dt = time.perf_counter() - t0
        summary(proc, traj, dt, counter["n"], time.process_time() - c0)
        print(f"          {dt / max(1, len(traj.steps)):.2f} s per recorded step, "
              f"{dt / max(1, counter['n']):.2f} s per distance; class Gram updates "
              f"{grams['n']} (vs {len(stats.classes)} per distance if recomputed from all "
              f"features: {len(stats.classes) * counter['n']})")


if __name__ == "__main__":
    main()
