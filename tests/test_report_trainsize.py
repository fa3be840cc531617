"""Report of the train-size-controlled protocol: controlled series beside the full-train ones,
their slope/AUC/drop, and the share of the drop the training size explains (closed forms)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oodml.report.build import build_report
from oodml.report.trainsize import collapse_draws, share_sentences, train_size_table
from oodml.results import read_results, validate

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "reports" / "cpu_study" / "results.parquet"


def with_controlled(df: pd.DataFrame, gap: dict[int, float], draws: int = 2) -> pd.DataFrame:
    """Full-train zero-shot rows plus controlled copies, value - gap[split] + a draw offset
    (+-0.01, so draws average back to value - gap)."""
    zs = df[df["protocol"] == "zeroshot"]
    extra = []
    for d in range(draws):
        off = 0.01 * (1 if d % 2 else -1) if draws > 1 else 0.0
        extra.append(zs.assign(train="n17", train_seed=100 + d,
                               value=zs["value"] - zs["split_id"].map(gap) + off))
    return pd.concat([df, *extra], ignore_index=True)


def test_share_is_the_closed_form_and_its_interval_covers_it():
    rows = []
    rng = np.random.default_rng(0)
    for seed in range(4):
        for sid, full, ctrl in ((1, 0.80, 0.70), (2, 0.60, 0.60)):
            noise = rng.normal(0, 0.005)
            base = dict(splitfile_sha256="x", dataset="d", split_id=sid, distance=float(sid),
                        method="m", config="{}", seed=seed, protocol="zeroshot", shots=0,
                        metric="recall@1", std=np.nan, n_episodes=0, wall_time_s=1.0,
                        device="cpu", epochs=1)
            rows.append({**base, "value": full + noise, "train": "all", "train_seed": -1})
            for d in range(3):
                rows.append({**base, "value": ctrl + noise + 0.002 * (d - 1) * (sid == 1),
                             "train": "n5", "train_seed": 7 + d + 10 * sid})
    df = validate(pd.DataFrame(rows))
    t = train_size_table(df, ["recall@1"])
    assert len(t) == 1
    r = t.iloc[0]
    f = df[df["train"] == "all"].groupby("split_id")["value"].mean()
    c = df[df["train"] == "n5"].groupby("split_id")["value"].mean()
    full, ctrl = f[1] - f[2], c[1] - c[2]
    assert r["full_drop"] == pytest.approx(full, abs=1e-12)
    assert r["controlled_drop"] == pytest.approx(ctrl, abs=1e-12)
    assert r["share"] == pytest.approx((full - ctrl) / full, abs=1e-12)
    assert r["share"] == pytest.approx(0.5, abs=0.05)
    assert r["share_lo"] <= r["share"] <= r["share_hi"] and r["share_hi"] - r["share_lo"] < 0.2
    assert (r["n_seeds"], r["n_draws"]) == (4, 3)
    line = share_sentences(t)[0]
    assert line.startswith("m recall@1: training size explains 5") and "trained on 5" in line
    # draws averaged per (split, seed): one row per run and metric, mean of the draws
    col = collapse_draws(df)
    assert len(col) == 16 and set(col["train_seed"]) == {-1}
    sub = col[(col["train"] == "n5") & (col["split_id"] == 1) & (col["seed"] == 0)]
    want = df[(df["train"] == "n5") & (df["split_id"] == 1) & (df["seed"] == 0)]["value"].mean()
    assert sub["value"].iloc[0] == pytest.approx(want, abs=1e-15)


def test_report_shows_controlled_series_and_the_share(tmp_path):
    df = read_results(TABLE).drop(columns="source")
    gap = {s: 0.08 * (8 - s) / 7 for s in range(1, 9)}  # no gap at the hardest split
    both = with_controlled(df, gap)
    out = build_report(both, tmp_path / "rep", metrics=["recall@1"])
    names = {p.name for p in out.files}
    assert {"train_size.csv", "train_size.md", "pivot.csv", "index.html"} <= names
    sizes = pd.read_csv(tmp_path / "rep" / "train_size.csv")
    ms = sizes[(sizes["method"] == "multisimilarity") & (sizes["metric"] == "recall@1")].iloc[0]
    full = df[(df["method"] == "multisimilarity") & (df["metric"] == "recall@1")
              & (df["protocol"] == "zeroshot")].groupby("split_id")["value"].mean()
    d_full = full[1] - full[8]
    assert ms["full_drop"] == pytest.approx(d_full, abs=1e-9)
    assert ms["controlled_drop"] == pytest.approx(d_full - 0.08, abs=1e-9)
    assert ms["share"] == pytest.approx(0.08 / d_full, abs=1e-9)
    assert ms["share_lo"] <= ms["share"] <= ms["share_hi"]
    pivot = pd.read_csv(tmp_path / "rep" / "pivot.csv")
    assert "multisimilarity [train/n17]" in set(pivot["series"])
    assert "multisimilarity" in set(pivot["series"])
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv")
    ctrl = summary[(summary["series"] == "multisimilarity [train/n17]")
                   & (summary["metric"] == "recall@1")].iloc[0]
    assert ctrl["easiest_value"] == pytest.approx(full[1] - 0.08, abs=1e-9)
    ranks = pd.read_csv(tmp_path / "rep" / "ranks.csv")
    assert not any("train/" in c for c in ranks.columns)
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Training size vs shift" in page and "training size explains" in page
    # a table without controlled rows makes no such section
    plain = build_report(df, tmp_path / "plain", metrics=["recall@1"])
    assert "train_size.csv" not in {p.name for p in plain.files}
