"""Tables of the semantic study (printed as Markdown for README.md).

1. Both ladders side by side: the hierarchy ladder and the published greedy ladder, each split's
   Fréchet distance (95% interval) and semantic shift (share of test classes whose alphabet has
   no class in train; the greedy file does not store it, so it is computed here from the
   loader's alphabets, exactly as ``generate`` would record it).
2. Spearman rho between semantic level and distance over both ladders' 16 splits, with a 95%
   percentile bootstrap interval over splits (B = 2000, seed 0), and per ladder.
3. The head-only study on the hierarchy ladder (results in reports/semantic/results): Recall@1
   per level and method (mean ± std over seeds), and per method the Spearman rho of the seed-mean
   Recall@1 against the semantic level and against the distance over the 8 levels.

Usage (from the repository root): python reports/semantic/analysis.py [ROOT]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from oodml.data import hierarchy_of, load_dataset
from oodml.splits.semantic import semantic_shift
from oodml.splits.splitfile import load_splitfile

REPO = Path(__file__).resolve().parents[2]
HIER = REPO / "splits/omniglot_small1_efficientnet-lite0_class-means_hierarchy.json"
GREEDY = REPO / "splits/omniglot_small1_efficientnet-lite0_class-means_greedy.json"
RESULTS = REPO / "reports/semantic/results"


def rho_interval(x: np.ndarray, y: np.ndarray, n_boot: int = 2000, seed: int = 0
                 ) -> tuple[float, float, float]:
    """Spearman rho of (x, y) and its 95% percentile interval over resampled pairs."""
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if len(set(x[i])) < 2 or len(set(y[i])) < 2:
            continue
        reps.append(float(spearmanr(x[i], y[i]).statistic))
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return rho, float(lo), float(hi)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else
                Path(os.environ.get("OODML_DATA", REPO.parent / "shared" / "data"))
                / "omniglot" / "images_background_small1.zip")
    h = hierarchy_of(load_dataset("omniglot", root))
    hier, greedy = load_splitfile(HIER), load_splitfile(GREEDY)
    rows = []
    print("| ladder | split | distance [95% CI] | unseen alphabet share | #train/#test |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, sf in (("hierarchy", hier), ("greedy", greedy)):
        for s in sf.ladder:
            share = semantic_shift(h, s.train, s.test)["unseen_share"]
            if s.semantic is not None:
                assert abs(s.semantic["unseen_share"] - share) < 1e-9
            rows.append((name, s.id, s.distance, share))
            ci = f" [{s.distance_ci[0]:.1f}, {s.distance_ci[1]:.1f}]" if s.distance_ci else ""
            print(f"| {name} | {s.id} | {s.distance:.1f}{ci} | {share:.3f} | "
                  f"{len(s.train)}/{len(s.test)} |")
    print()
    for label, keep in (("both ladders (16 splits)", {"hierarchy", "greedy"}),
                        ("hierarchy ladder (8)", {"hierarchy"}), ("greedy ladder (8)",
                                                                  {"greedy"})):
        sel = [r for r in rows if r[0] in keep]
        x = np.array([r[3] for r in sel])
        y = np.array([r[2] for r in sel])
        rho, lo, hi = rho_interval(x, y)
        print(f"- Spearman rho(semantic level, distance), {label}: {rho:+.2f} "
              f"[{lo:+.2f}, {hi:+.2f}]")
    if not (RESULTS / "results.parquet").exists():
        return
    from oodml.results import load_results

    df = load_results([RESULTS], splitfile_sha256=hier.sha256)
    df = df[(df["metric"] == "recall@1") & (df["protocol"] == "zeroshot")]
    share = {s.id: s.semantic["unseen_share"] for s in hier.ladder}
    dist = {s.id: s.distance for s in hier.ladder}
    methods = sorted(df["method"].unique())
    print()
    print("| level | unseen share | distance | " + " | ".join(methods) + " |")
    print("| ---: | ---: | ---: | " + " | ".join("---:" for _ in methods) + " |")
    means = {}
    for sid in sorted(share):
        cells = []
        for m in methods:
            v = df[(df["method"] == m) & (df["split_id"] == sid)]["value"].to_numpy()
            if len(v) < 2:
                cells.append("-" if not len(v) else f"{v.mean():.3f} (1 seed)")
                continue
            means[(m, sid)] = v.mean()
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f} (n={len(v)})")
        print(f"| {sid} | {share[sid]:.3f} | {dist[sid]:.1f} | " + " | ".join(cells) + " |")
    print()
    for m in methods:
        ids = [i for i in sorted(share) if (m, i) in means]
        if len(ids) < 3:
            print(f"- {m}: fewer than 3 levels finished; no correlation")
            continue
        y = np.array([means[(m, i)] for i in ids])
        r_sem = spearmanr([share[i] for i in ids], y).statistic
        r_dist = spearmanr([dist[i] for i in ids], y).statistic
        drop = y[0] - y[-1]
        print(f"- {m} (levels {ids[0]}..{ids[-1]}): rho(recall@1, semantic level) "
              f"{r_sem:+.2f}, rho(recall@1, distance) {r_dist:+.2f}; first -> last finished "
              f"level drop {drop:+.3f}")


if __name__ == "__main__":
    main()
