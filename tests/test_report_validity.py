"""Report: size-controlled metrics in the progression plot and tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oodml.report.build import build_report
from oodml.report.progression import progression_figure
from oodml.report.style import metric_label
from oodml.report.tables import display_metrics, label_series, with_size_controlled
from oodml.results import validate

SHA = "cd" * 32
DIST = {1: 10.0, 2: 30.0, 3: 50.0, 4: 80.0}


def row(method: str, split: int, seed: int, metric: str, value: float) -> dict:
    return {
        "splitfile_sha256": SHA, "dataset": "synthetic", "split_id": split,
        "distance": DIST[split], "method": method, "config": "{}", "seed": seed,
        "protocol": "zeroshot", "shots": 0, "metric": metric, "value": value,
        "std": float("nan"), "n_episodes": 0, "wall_time_s": 1.0, "device": "cpu",
        "epochs": 1,
    }


def size_frame() -> pd.DataFrame:
    """Full Recall@1 rises at the hardest split (its test set shrank), the size-controlled
    value falls throughout."""
    full = {1: 0.70, 2: 0.62, 3: 0.55, 4: 0.60}
    controlled = {1: 0.80, 2: 0.72, 3: 0.66, 4: 0.58}
    rows = []
    for seed in (0, 1):
        for s in DIST:
            rows.append(row("A", s, seed, "recall@1", full[s] + 0.01 * seed))
            rows.append(row("A", s, seed, "recall@1/n35", controlled[s] + 0.01 * seed))
            rows.append(row("A", s, seed, "map@r", full[s] / 2))
    return pd.DataFrame(rows)


def test_size_controlled_variants_replace_full_metrics_in_the_display() -> None:
    df = size_frame()
    assert display_metrics(df, ["recall@1", "map@r"]) == ["recall@1/n35", "map@r"]
    assert with_size_controlled(df, ["recall@1", "map@r"]) == ["recall@1", "recall@1/n35",
                                                              "map@r"]
    assert "size-controlled" in metric_label("recall@1/n35")
    assert "35 test classes" in metric_label("recall@1/n35")
    fig = progression_figure(label_series(validate(df)), ["recall@1/n35"])
    assert "size-controlled" in fig.axes[0].get_ylabel()


def test_report_uses_size_controlled_values_and_keeps_full_ones(tmp_path: Path) -> None:
    out = build_report(size_frame(), tmp_path / "r", metrics=["recall@1", "map@r"])
    summary = pd.read_csv(out.out_dir / "summary.csv")
    assert set(summary["metric"]) == {"recall@1", "recall@1/n35", "map@r"}
    page = (out.out_dir / "index.html").read_text()
    assert "Size-controlled metrics" in page


def test_validity_table_hand_computed() -> None:
    from oodml.report.tables import pivot_table, summary_table, validity_table

    df = label_series(validate(size_frame()))
    v = validity_table(df, ["recall@1", "recall@1/n35"]).set_index("metric")
    x = np.array(list(DIST.values()))
    full = np.array([0.70, 0.62, 0.55, 0.60])
    slope = np.polyfit(x, full, 1)[0] * 100  # seed 1 is seed 0 + 0.01: same slope
    assert v.loc["recall@1", "slope_per_100"] == pytest.approx(slope)
    assert v.loc["recall@1", "slope_lo"] == pytest.approx(slope)  # zero spread over seeds
    assert v.loc["recall@1", "spearman_rho"] == pytest.approx(-0.8)  # ranks 4,3,1,2 vs 1..4
    assert not v.loc["recall@1", "falls_monotonically"]
    assert v.loc["recall@1", "rises_at"] == "3→4"
    assert v.loc["recall@1/n35", "falls_monotonically"]
    assert v.loc["recall@1/n35", "spearman_rho"] == pytest.approx(-1.0)
    assert bool(v.loc["recall@1/n35", "size_controlled"])
    summary = summary_table(df, ["recall@1/n35"])
    pivot = pivot_table(summary, validity_table(df, ["recall@1/n35"]), ["recall@1/n35"])
    assert list(pivot.columns) == ["series", "recall@1/n35 AUC", "recall@1/n35 drop",
                                   "recall@1/n35 slope/100"]
    assert pivot.iloc[0]["recall@1/n35 drop"] == pytest.approx(summary.iloc[0]["rel_drop"])


def test_slope_interval_over_seeds_is_student_t() -> None:
    from scipy import stats as sps

    from oodml.report.tables import validity_table

    df = size_frame()
    df.loc[(df["seed"] == 1) & (df["split_id"] == 4), "value"] += 0.1
    v = validity_table(label_series(validate(df)), ["map@r"]).set_index("metric")
    x = np.array(list(DIST.values()))
    s0 = np.polyfit(x, np.array([0.70, 0.62, 0.55, 0.60]) / 2, 1)[0] * 100
    s1 = np.polyfit(x, np.array([0.70, 0.62, 0.55, 0.60]) / 2 + [0, 0, 0, 0.1], 1)[0] * 100
    half = sps.t.ppf(0.975, 1) * np.std([s0, s1], ddof=1) / np.sqrt(2)
    row = v.loc["map@r"]
    assert (row.slope_per_100, row.slope_lo, row.slope_hi) == pytest.approx(
        ((s0 + s1) / 2, (s0 + s1) / 2 - half, (s0 + s1) / 2 + half))


def test_report_page_leads_with_the_pivot_and_shows_a_rescored_table(tmp_path: Path) -> None:
    from oodml.splits.rescore import Rescore

    r = Rescore(split_ids=(1, 2, 3, 4), n_train=(5,) * 4, n_test=(5,) * 4,
                distance=tuple(DIST.values()), rescored=(1.0, 3.0, 2.0, 4.0), extractor="a",
                mode="class-means", rescored_extractor="b", rescored_mode="samples")
    out = build_report(size_frame(), tmp_path / "r", rescored=r)
    page = (out.out_dir / "index.html").read_text()
    assert page.index("Validity at a glance") < page.index("Progression") < page.index(
        "Validity per series")
    assert 'class="pivot"' in page and "Recall@1, 35 test classes drawn" in page
    assert "Agreement across extractors" in page and "adjacent swaps: 2-3" in page
    assert (out.out_dir / "validity.csv").is_file() and (out.out_dir / "pivot.csv").is_file()


def test_report_shows_the_measure_agreement_matrix(tmp_path: Path) -> None:
    from oodml.splits.agreement import Column, MeasureAgreement, Tau, write_agreement

    ids, dist = (1, 2, 3, 4), tuple(DIST.values())
    cols = (Column("e", "class-means", "frechet", dist, (None,) * 4, (None,) * 4),
            Column("e", "class-means", "w2-classes", (1.0, 2.0, 4.0, 3.0), (None,) * 4,
                   ("ot.emd2 (exact)",) * 4))
    res = MeasureAgreement(ids, (5,) * 4, (5,) * 4, dist, cols,
                           (Tau("frechet/e", "w2-classes/e", 2 / 3, 0.33, 1.0, 50, 49),))
    out = build_report(size_frame(), tmp_path / "r", rescored=res)
    page = (out.out_dir / "index.html").read_text()
    assert "Agreement across measures" in page and "0.67 [0.33, 1.00]" in page
    assert "order differs: w2-classes/e swaps 3-4" in page
    assert "solver: w2-classes/e: ot.emd2 (exact)" in page
    values, _ = write_agreement(res, tmp_path / "agree.csv")
    from oodml.splits.agreement import is_agreement_csv, read_agreement

    assert is_agreement_csv(values) and read_agreement(values) == res
