"""Print the CPU study's Markdown tables (mean ± std over seeds) from results.parquet."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
df = pd.read_parquet(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.parquet")
df["series"] = [
    m if p == "zeroshot" else f"{m} ({k}-shot)"
    for m, p, k in zip(df["method"], df["protocol"], df["shots"], strict=True)
]


def table(sub: pd.DataFrame, title: str) -> None:
    series = sorted(sub["series"].unique())
    stats = sub.groupby(["split_id", "distance", "series"])["value"].agg(["mean", "std"])
    print(f"\n#### {title} (mean ± std over seeds)\n")
    print("| split | distance | " + " | ".join(series) + " |")
    print("| ---: | ---: |" + " ---: |" * len(series))
    for (sid, dist), block in stats.groupby(level=[0, 1]):
        row = block.droplevel([0, 1])
        cells = [
            f"{row.loc[s, 'mean']:.3f} ± {row.loc[s, 'std']:.3f}" if s in row.index else ""
            for s in series
        ]
        print(f"| {sid} | {dist:.1f} | " + " | ".join(cells) + " |")


zs = df[df["protocol"] == "zeroshot"]
for metric, title in (("recall@1", "Recall@1"), ("map@r", "mAP@R")):
    table(zs[zs["metric"] == metric], f"{title}, zero-shot")
adapted = df[df["method"].isin(df.loc[df["protocol"] == "fewshot", "method"])]
table(adapted[adapted["metric"] == "recall@1"], "Recall@1 with few-shot adaptation")
seeds = [int(s) for s in sorted(df["seed"].unique())]
runs = zs.groupby(["method", "split_id", "seed"])["wall_time_s"].first()
fs = df[df["protocol"] == "fewshot"].groupby(["method", "split_id", "seed", "shots"])
print(
    f"\n{len(runs)} zero-shot runs ({runs.sum():.0f} s training + evaluation), "
    f"{fs.ngroups} few-shot run x shot cells ({fs['wall_time_s'].first().sum():.0f} s, "
    f"{int(fs['n_episodes'].first().sum())} episodes), seeds {seeds}"
)
