"""Time report building on a paper-sized synthetic results table, and Kendall tau vs scipy.

Run: .venv/bin/python benchmarks/bench_report.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import pandas as pd
from scipy import stats

from oodml.report.build import build_report
from oodml.report.tables import kendall_tau
from oodml.results import METRIC_ORDER


def synthetic_results(methods: int = 8, splits: int = 10, seeds: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for m in range(methods):
        for s in range(1, splits + 1):
            for seed in range(seeds):
                for metric in METRIC_ORDER:
                    rows.append({
                        "splitfile_sha256": "0" * 64, "dataset": "synthetic", "split_id": s,
                        "distance": 10.0 * s, "method": f"m{m}", "config": "{}", "seed": seed,
                        "protocol": "zeroshot", "shots": 0, "metric": metric,
                        "value": float(np.clip(0.9 - 0.05 * s + 0.02 * rng.normal(), 0, 1)),
                        "std": float("nan"), "n_episodes": 0, "wall_time_s": 1.0,
                        "device": "cpu", "epochs": 10,
                    })
    return pd.DataFrame(rows)


def main() -> None:
    df = synthetic_results()
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        build_report(df, out)
        t_report = time.perf_counter() - t0
    print(f"build_report: {len(df)} rows (8 methods x 10 splits x 5 seeds x 8 metrics): "
          f"{t_report:.2f} s")
    rng = np.random.default_rng(1)
    pairs = [(rng.normal(size=12), rng.normal(size=12)) for _ in range(2000)]
    t0 = time.perf_counter()
    ours = [kendall_tau(x, y) for x, y in pairs]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = [stats.kendalltau(x, y).statistic for x, y in pairs]
    t_ref = time.perf_counter() - t0
    assert np.allclose(ours, ref)
    print(f"kendall_tau (12 methods, 2000 rankings): ours {t_ours * 1e3:.1f} ms, "
          f"scipy {t_ref * 1e3:.1f} ms, ratio ours/scipy {t_ours / t_ref:.2f}")


if __name__ == "__main__":
    main()
