"""Report: size-controlled metrics in the progression plot and tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from oodml.report.build import build_report
from oodml.report.progression import progression_figure
from oodml.report.results import validate
from oodml.report.style import metric_label
from oodml.report.tables import display_metrics, label_series, with_size_controlled

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
