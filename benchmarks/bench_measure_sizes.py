"""How many classes does each measure need? Bias and spread against the number of classes,
on the real Omniglot features (efficientnet-lite0, the default train/test split, 68 + 68
classes, 1280-d).

For n classes a side (``--sizes``), ``--draws`` seeded draws pick n of the 68 train and n of
the 68 test classes (without replacement) and compute every measure on them. Against the
value on all 68 + 68 classes (the reference), each size gets

    relative bias   = (mean over draws - reference) / |reference|,
    relative spread = std over draws / |reference|.

Class-means mode subsamples classes; samples mode subsamples classes (all their images) and,
at all 68 + 68 classes, images per class (``--images``). A measure is called *stable* from
the smallest n from which every larger size keeps |bias| and spread within ``--tolerance``
(default 10%; also printed at 2.5 times it); that n is printed, and
``Measure.stable_classes`` (what ``splits generate`` warns below) is set from this study.
The reference is itself a 68-class value, so the bias is relative to what the full Omniglot
split gives (not to an infinite-class limit).

Writes ``--out`` (default reports/measure_sizes/): sizes.csv, sizes.png (bias and spread per
measure, class-means and samples mode) and thresholds.txt.

    python benchmarks/bench_measure_sizes.py [--draws 20] [--samples-draws 5]
    python benchmarks/bench_measure_sizes.py --replot   # sizes.png again from sizes.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

from oodml.data import load_dataset
from oodml.features import get_features
from oodml.stats.class_stats import ClassStats
from oodml.stats.measures import MEASURES, get_measure

ROOT = Path(__file__).resolve().parents[1]
SIZES = (3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 68)
SAMPLES_SIZES = (4, 8, 16, 32, 68)
IMAGES = (2, 5, 10, 20)


def stable_from(sizes, bias, spread, tol: float) -> int | None:
    """Smallest size from which every larger size has |bias| <= tol and spread <= tol."""
    ok = [abs(b) <= tol and s <= tol for b, s in zip(bias, spread, strict=True)]
    for i in range(len(sizes)):
        if all(ok[i:]):
            return sizes[i]
    return None


def study(st: ClassStats, train: np.ndarray, test: np.ndarray, names, mode: str,
          sizes, draws: int, seed: int, rows: list, image_sub: int | None = None):
    """Append (mode, measure, n, images, bias, spread, seconds) rows; return per-measure
    (bias list, spread list)."""
    out = {}
    for name in names:
        m = get_measure(name)
        ref = m(st, train, test, mode).value
        biases, spreads = [], []
        sizes = [n for n in sizes if n >= m.min_atoms(mode)]
        for n in sizes:
            rng = np.random.default_rng([seed, n])
            vals, t = [], time.perf_counter()
            for _ in range(draws if n < min(len(train), len(test)) else 1):
                a = np.sort(rng.choice(train, n, replace=False))
                b = np.sort(rng.choice(test, n, replace=False))
                vals.append(m(st, a, b, mode).value)
            sec = (time.perf_counter() - t) / len(vals)
            bias = (np.mean(vals) - ref) / abs(ref)
            spread = np.std(vals) / abs(ref)
            biases.append(bias)
            spreads.append(spread)
            rows.append([mode, name, n, image_sub or "all", ref, np.mean(vals), bias, spread,
                         len(vals), sec])
            print(f"  {mode:11s} {name:11s} n={n:3d} bias {bias:+.3f} spread {spread:.3f} "
                  f"({len(vals)} draws, {sec:.2f} s each)", flush=True)
        out[name] = (sizes, biases, spreads)
    return out


def images_study(features, labels, classes_train, classes_test, names, draws, seed, rows):
    """Samples mode at all classes with k images a class: bias and spread vs k."""
    lab = np.asarray(labels)
    full = ClassStats.from_features(features, labels)
    ia, ib = full.indices(classes_train), full.indices(classes_test)
    refs = {n: get_measure(n)(full, ia, ib, "samples").value for n in names}
    for k in IMAGES:
        vals: dict[str, list[float]] = {n: [] for n in names}
        for r in range(draws):
            rng = np.random.default_rng([seed, k, r])
            keep = np.concatenate([rng.choice(np.flatnonzero(lab == c), k, replace=False)
                                   for c in full.classes])
            sub = ClassStats.from_features(features[keep], lab[keep].tolist())
            for n in names:
                vals[n].append(get_measure(n)(sub, sub.indices(classes_train),
                                              sub.indices(classes_test), "samples").value)
        for n in names:
            bias = (np.mean(vals[n]) - refs[n]) / abs(refs[n])
            spread = np.std(vals[n]) / abs(refs[n])
            rows.append(["samples-images", n, len(classes_train), k, refs[n], np.mean(vals[n]),
                         bias, spread, draws, float("nan")])
            print(f"  images/class {k:2d} {n:11s} bias {bias:+.3f} spread {spread:.3f}",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    data = os.environ.get("OODML_DATA", str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--root", type=Path,
                    default=Path(data) / "omniglot" / "images_background_small1.zip")
    ap.add_argument("--extractor", default="efficientnet-lite0")
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--samples-draws", type=int, default=5)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "measure_sizes")
    ap.add_argument("--no-samples", action="store_true")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw sizes.png from the sizes.csv already in --out")
    args = ap.parse_args()
    if args.replot:
        plot(read_curves(args.out / "sizes.csv"), args.out / "sizes.png", args.tolerance,
             args.extractor)
        return
    import ot  # noqa: F401  (import once, outside the timings)

    manifest = load_dataset("omniglot", args.root)
    fs = get_features(manifest, args.extractor)
    st = ClassStats.from_features(fs.features, fs.labels)
    train, test = st.indices(sorted(manifest.default_train)), st.indices(
        sorted(manifest.default_test))
    names = ["frechet", *[m for m in MEASURES.names() if m != "frechet"]]
    rows: list = []
    print(f"{args.extractor}: {len(train)} + {len(test)} classes, {st.dim}-d", flush=True)
    res = {"class-means": (SIZES, study(st, train, test, names, "class-means", SIZES,
                                        args.draws, args.seed, rows))}
    if not args.no_samples:
        samples_names = [n for n in names if n != "fid-inf"]  # 15 1280-d FIDs a value: slow
        res["samples"] = (SAMPLES_SIZES, study(st, train, test, samples_names, "samples",
                                               SAMPLES_SIZES, args.samples_draws, args.seed,
                                               rows))
        images_study(np.asarray(fs.features), list(fs.labels), sorted(manifest.default_train),
                     sorted(manifest.default_test), ["frechet", "kid"], args.samples_draws,
                     args.seed, rows)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "sizes.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["mode", "measure", "classes_per_side", "images_per_class", "reference",
                    "mean", "rel_bias", "rel_spread", "draws", "seconds_per_value"])
        w.writerows(rows)
    lines = []
    for mode, (_, per) in res.items():
        for name, (sizes, b, s) in per.items():
            for tol in (args.tolerance, 2.5 * args.tolerance):
                n = stable_from(sizes, b, s, tol)
                lines.append(f"{mode} {name}: |bias| and spread <= {tol:.0%} from "
                             f"{n if n is not None else 'more than ' + str(sizes[-2])} "
                             "classes a side")
    (args.out / "thresholds.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(res, args.out / "sizes.png", args.tolerance, args.extractor)


def read_curves(path: Path) -> dict:
    """The class-count curves of a written sizes.csv, shaped as ``main`` passes them to
    ``plot`` (mode -> (sizes, measure -> (sizes, bias, spread))); image-count rows are left
    out, as in the plot."""
    res: dict = {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["images_per_class"] != "all":
                continue
            per = res.setdefault(r["mode"], ((), {}))[1]
            sizes, b, s = per.setdefault(r["measure"], ([], [], []))
            sizes.append(int(r["classes_per_side"]))
            b.append(float(r["rel_bias"]))
            s.append(float(r["rel_spread"]))
    return {mode: (tuple(sorted({n for c in per.values() for n in c[0]})), per)
            for mode, (_, per) in res.items()}


def plot(res, path: Path, tol: float, extractor: str) -> None:
    """Bias and spread against classes a side; the x ticks are the measured sizes, labelled
    in plain numbers (log axes otherwise label minor ticks as 3 x 10^0, which overlap)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig = Figure(figsize=(10, 3.6 * len(res)))
    axes = fig.subplots(len(res), 2, squeeze=False)
    for row, (mode, (_, per)) in enumerate(res.items()):
        for name, (sizes, b, s) in per.items():
            axes[row, 0].plot(sizes, b, marker="o", label=name)
            axes[row, 1].plot(sizes, s, marker="o", label=name)
        for col, what in enumerate(("relative bias", "relative spread (std)")):
            ax = axes[row, col]
            ax.set_xscale("log")
            ticks = sorted({n for sizes, _, _ in per.values() for n in sizes})
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
            ax.tick_params(axis="x", labelsize=8)
            ax.axhline(tol, color="grey", lw=0.8, ls="--")
            if col == 0:
                ax.axhline(-tol, color="grey", lw=0.8, ls="--")
                ax.set_yscale("symlog", linthresh=0.1)
            else:
                ax.set_yscale("symlog", linthresh=0.1)
            ax.set_xlabel("classes a side")
            ax.set_title(f"{mode}: {what}")
            ax.legend(fontsize=8)
    fig.suptitle(f"Omniglot small1, {extractor}: measure vs its 68 + 68-class value")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
