"""Carry the few-shot rows of the previous split file over to the republished one, after
checking that the two files differ only in fields few-shot adaptation never reads.

The published greedy file was regenerated to add the paired differences (``vs_previous`` on
splits 2..K, ``uncertainty.paired_bootstraps``); its classes, episodes, distances, seed and
intervals are unchanged, so its sha256 changed (78ee1521... -> b5c1fd65...) and the few-shot
rows measured on the old file no longer match it. oodml/train reads neither field, and the
zero-shot rerun on the new file reproduced all 1632 zero-shot values of the old file bit for
bit, so the few-shot rows are what a rerun would give; this script relabels them (their
``splitfile_sha256``) instead of spending the ~15 CPU-minutes of episodes again, and refuses
if the files differ in anything else.

Usage: python reports/cpu_study/relabel_fewshot.py OLD_SPLITFILE OLD_RESULTS OUT_DIR
OLD_SPLITFILE: ``git show ba58f5a^:splits/<the greedy file>`` (its version before the paired
fields), OLD_RESULTS: ``git show 21ea170:reports/cpu_study/results.parquet``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from oodml.results import merge_results, read_results, write_run
from oodml.splits.splitfile import load_splitfile

NEW = Path("splits/omniglot_small1_efficientnet-lite0_class-means_greedy.json")
IGNORED_TOP, IGNORED_SPLIT = {"uncertainty", "sha256"}, {"vs_previous"}


def stripped(path: Path) -> dict:
    doc = json.loads(path.read_text())
    out = {k: v for k, v in doc.items() if k not in IGNORED_TOP}
    out["ladder"] = [{k: v for k, v in s.items() if k not in IGNORED_SPLIT}
                     for s in doc["ladder"]]
    return out


old_file, old_results, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
if stripped(old_file) != stripped(NEW):
    sys.exit(f"{old_file} and {NEW} differ beyond the paired fields; rerun the few-shot runs")
old_sha, new_sha = load_splitfile(old_file).sha256, load_splitfile(NEW).sha256
df = read_results(old_results).drop(columns="source")
df = df[df["protocol"] == "fewshot"]
if set(df["splitfile_sha256"]) != {old_sha}:
    sys.exit(f"{old_results}: few-shot rows not all measured on {old_sha[:12]}")
n = 0
for (method, sid, seed, shots), rows in df.groupby(["method", "split_id", "seed", "shots"]):
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
               for r in rows.to_dict("records")]
    for r in records:
        r["splitfile_sha256"] = new_sha
    key = f"{method}/fewshot/split{sid:03d}_seed{seed}_shots{shots}"
    write_run(out, key, records[0]["config"], records)
    n += 1
merge_results(out)
print(f"{n} few-shot runs relabelled {old_sha[:12]} -> {new_sha[:12]} into {out}/runs")
