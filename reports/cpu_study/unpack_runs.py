"""Unpack the committed zero-shot table (results.parquet) into run files of another results
folder, so `oodml evaluate` there skips the finished full-train runs (it checks each one's
config and split file) and trains only what is new (the train-size-controlled draws).

Usage: python reports/cpu_study/unpack_runs.py reports/cpu_study/results.parquet OUT_DIR
"""

from __future__ import annotations

import sys

from oodml.results import read_results, write_run

table, out = sys.argv[1], sys.argv[2]
df = read_results(table).drop(columns="source")
df = df[(df["protocol"] == "zeroshot") & (df["train"] == "all")]
n = 0
for (method, sid, seed), rows in df.groupby(["method", "split_id", "seed"]):
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
               for r in rows.to_dict("records")]
    write_run(out, f"{method}/zeroshot/split{sid:03d}_seed{seed}", records[0]["config"], records)
    n += 1
print(f"{n} full-train runs unpacked into {out}/runs")
