"""Full-backbone vs head-only on the same ladder: values with intervals, drops along the
ladder, whether the drop grows or shrinks when the backbone is trained, and the method order.

Intervals (95%) are the class bootstrap combined with the seeds of
:mod:`oodml.metrics.intervals`: splits of the greedy ``test-fixed`` ladder share their test
classes, so a drop is paired by class; the difference of drops between the two regimes is a
contrast of four cells sharing one class draw, with the seeds of each regime drawn separately.

    python reports/full_backbone/compare.py [FULL_RESULTS] [HEAD_RESULTS] > compare.md
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pandas as pd

from oodml.metrics.intervals import contrast_interval, value_interval
from oodml.report.intervals import cell
from oodml.results import read_results

HERE = Path(__file__).resolve().parent
FULL = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.parquet"
HEAD = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE.parent / "cpu_study" / "results.parquet"
SPLITS = (1, 3, 5, 8)
B = 2000


def zeroshot(path: Path) -> pd.DataFrame:
    df = read_results(path)
    df = df[(df["protocol"] == "zeroshot") & (df["train"] == "all")
            & df["split_id"].isin(SPLITS)].copy()
    df["series"] = df["method"]
    return df


def fmt(iv) -> str:
    return f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]"


def main() -> None:
    full, head = zeroshot(FULL), zeroshot(HEAD)
    methods = sorted(set(full["method"]) & set(head["method"]))
    for metric in ("recall@1", "map@r"):
        print(f"\n### {metric}: head-only vs full backbone (mean over seeds, 95% interval)\n")
        print("| method | split | distance | head-only | full backbone | full - head |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        cells = {}
        for m in methods:
            for s in SPLITS:
                h, f = cell(head, m, metric, s), cell(full, m, metric, s)
                if h is None or f is None:
                    continue
                cells[m, s] = (h, f)
                dist = float(full[full["split_id"] == s]["distance"].iloc[0])
                gap = contrast_interval([(1.0, f, "full"), (-1.0, h, "head")], n_boot=B,
                                        seed=s)
                print(f"| {m} | {s} | {dist:.1f} | {fmt(value_interval(h, n_boot=B))} | "
                      f"{fmt(value_interval(f, n_boot=B))} | {fmt(gap)} |")
        print(f"\n### {metric}: drop from split 1 to split 8 (paired by test class)\n")
        print("| method | drop head-only | drop full backbone | full - head (p) |")
        print("| --- | ---: | ---: | ---: |")
        for m in methods:
            if (m, 1) not in cells or (m, 8) not in cells:
                continue
            (h1, f1), (h8, f8) = cells[m, 1], cells[m, 8]
            dh = contrast_interval([(1.0, h1, "head"), (-1.0, h8, "head")], n_boot=B, seed=1)
            df_ = contrast_interval([(1.0, f1, "full"), (-1.0, f8, "full")], n_boot=B, seed=1)
            dd = contrast_interval([(1.0, f1, "full"), (-1.0, f8, "full"),
                                    (-1.0, h1, "head"), (1.0, h8, "head")], n_boot=B, seed=1)
            print(f"| {m} | {fmt(dh)} | {fmt(df_)} | {fmt(dd)} (p={dd.p:.3f}) |")
        print(f"\n### {metric}: method order per split (paired gaps between methods)\n")
        print("| split | head-only order | full-backbone order | pairs that swap |")
        print("| ---: | --- | --- | --- |")
        for s in SPLITS:
            present = [m for m in methods if (m, s) in cells]
            order_h = sorted(present, key=lambda m: -cells[m, s][0].estimate)
            order_f = sorted(present, key=lambda m: -cells[m, s][1].estimate)
            swaps = []
            for a, b in itertools.combinations(present, 2):
                gh = contrast_interval([(1.0, cells[a, s][0], "h"), (-1.0, cells[b, s][0], "h")],
                                       n_boot=B, seed=s)
                gf = contrast_interval([(1.0, cells[a, s][1], "f"), (-1.0, cells[b, s][1], "f")],
                                       n_boot=B, seed=s)
                if gh.estimate * gf.estimate < 0:
                    sep = ("both separated" if gh.excludes_zero and gf.excludes_zero
                           else "not both separated")
                    swaps.append(f"{a} vs {b} ({sep})")
            print(f"| {s} | {' > '.join(order_h)} | {' > '.join(order_f)} | "
                  f"{'; '.join(swaps) or 'none'} |")


def fewshot() -> None:
    """Few-shot rows hold the mean over episodes; the table gives mean ± std over seeds."""
    print("\n### recall@1 after few-shot adaptation (mean ± std over seeds of the episode "
          "means; zero-shot beside it)\n")
    print("| regime | method | split | zero-shot | 2-shot | 5-shot |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for regime, path in (("head-only", HEAD), ("full backbone", FULL)):
        df = read_results(path)
        df = df[(df["metric"] == "recall@1") & (df["train"] == "all")
                & df["split_id"].isin(SPLITS)]
        adapted = sorted(df.loc[df["protocol"] == "fewshot", "method"].unique())
        for m in adapted:
            for s in SPLITS:
                sub = df[(df["method"] == m) & (df["split_id"] == s)]
                cells = []
                for proto, shots in (("zeroshot", 0), ("fewshot", 2), ("fewshot", 5)):
                    v = sub[(sub["protocol"] == proto) & (sub["shots"] == shots)]["value"]
                    cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1
                                 else (f"{v.mean():.3f}" if len(v) else ""))
                print(f"| {regime} | {m} | {s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
    fewshot()
