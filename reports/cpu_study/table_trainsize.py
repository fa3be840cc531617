"""Tables of the train-size-controlled rerun (reports/cpu_study/train_size/): Recall@1 per split
trained on all train classes and on 17 drawn ones, and the share of each method's drop from
split 1 to split 8 that the training size explains (oodml.report.trainsize: paired bootstrap
over seeds and draws).

Usage: python reports/cpu_study/table_trainsize.py [reports/cpu_study/train_size]
"""

from __future__ import annotations

import sys

from oodml.report.trainsize import train_size_table
from oodml.results import load_results

folder = sys.argv[1] if len(sys.argv) > 1 else "reports/cpu_study/train_size"
df = load_results([folder])
zs = df[df["protocol"] == "zeroshot"]
methods = sorted(zs["method"].unique())
trains = sorted(set(zs["train"]) - {"all"})
for metric in ("recall@1", "map@r"):
    print(f"#### {metric}, zero-shot: all train classes vs {', '.join(trains)} drawn "
          "(mean ± std over seeds; controlled: per-seed mean over draws)\n")
    cols = [f"{m} {t}" for m in methods for t in ("all", *trains)]
    print("| split | distance | " + " | ".join(cols) + " |")
    print("| ---: | ---: | " + " | ".join("---:" for _ in cols) + " |")
    sub = zs[zs["metric"] == metric]
    for sid, at in sub.groupby("split_id"):
        cells = []
        for m in methods:
            for t in ("all", *trains):
                v = at[(at["method"] == m) & (at["train"] == t)]
                per_seed = v.groupby("seed")["value"].mean().to_numpy()
                cells.append(f"{per_seed.mean():.3f} ± {per_seed.std(ddof=1):.3f}"
                             if len(per_seed) > 1 else "–")
        print(f"| {sid} | {at['distance'].iloc[0]:.1f} | " + " | ".join(cells) + " |")
    print()
table = train_size_table(df, ["recall@1", "map@r"])
print("#### Share of the split 1 -> 8 drop explained by the training size\n")
print("| method | metric | full-train drop | drop at 17 classes | share (95% interval) "
      "| seeds x draws |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for r in table.itertuples(index=False):
    print(f"| {r.method} | {r.metric} | {r.full_drop:.3f} | {r.controlled_drop:.3f} | "
          f"{100 * r.share:.0f}% [{100 * r.share_lo:.0f}%, {100 * r.share_hi:.0f}%] | "
          f"{r.n_seeds} x {r.n_draws} |")
ctrl = zs[zs["train"] != "all"]
runs = ctrl.groupby(["method", "split_id", "seed", "train_seed"])["wall_time_s"].first()
print(f"\n{len(runs)} controlled runs ({runs.sum():.0f} s training + evaluation on a busy "
      "2-core CPU), seeds " + str(sorted(int(s) for s in zs["seed"].unique())))
