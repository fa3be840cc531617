"""Print the CPU study's Markdown tables (mean ± std over seeds) from results.parquet."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
df = pd.read_parquet(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.parquet")
df = df[df["protocol"] == "zeroshot"]
methods = sorted(df["method"].unique())
for metric, title in (("recall@1", "Recall@1"), ("map@r", "mAP@R")):
    sub = df[df["metric"] == metric]
    stats = sub.groupby(["split_id", "distance", "method"])["value"].agg(["mean", "std", "count"])
    print(f"\n#### {title} (mean ± std over seeds)\n")
    print("| split | distance | " + " | ".join(methods) + " |")
    print("| ---: | ---: |" + " ---: |" * len(methods))
    for (sid, dist), block in stats.groupby(level=[0, 1]):
        cells = []
        for m in methods:
            row = (
                block.xs(m, level="method") if m in block.index.get_level_values("method") else None
            )
            cells.append(
                "" if row is None else f"{row['mean'].iloc[0]:.3f} ± {row['std'].iloc[0]:.3f}"
            )
        print(f"| {sid} | {dist:.1f} | " + " | ".join(cells) + " |")
seeds = [int(s) for s in sorted(df["seed"].unique())]
wall = df.groupby(["method", "split_id", "seed"])["wall_time_s"].first().sum()
n_runs = len(df) // df["metric"].nunique()
print(f"\n{n_runs} runs, seeds {seeds}, total training + evaluation wall time {wall:.0f} s")
