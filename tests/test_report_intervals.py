"""The report's intervals: bands and significant drops from per-class values, the method-order
sentence, the pivot's drop interval, and old tables (no per-class values) unchanged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from oodml.report.build import build_report
from oodml.report.intervals import _ranges, fewshot_gain, interval_table, method_order
from oodml.report.progression import progression_figure
from oodml.report.tables import label_series
from oodml.results import validate

DIST = {1: 10.0, 2: 20.0, 3: 40.0, 4: 60.0}
CLASSES = [f"t{i:02d}" for i in range(40)]


def rows(method: str, level: dict[int, float], seeds=(0, 1, 2), noise=0.02, seed=0) -> list:
    """Per-class recall@1 around ``level[split]`` on 40 shared test classes (test-fixed)."""
    rng = np.random.default_rng(seed)
    out = []
    for sid, base in level.items():
        for s in seeds:
            v = np.clip(base + noise * rng.standard_normal(40), 0, 1)
            n = [5] * 40
            out.append({
                "splitfile_sha256": "ab" * 32, "dataset": "synthetic", "split_id": sid,
                "distance": DIST[sid], "method": method, "config": "{}", "seed": s,
                "protocol": "zeroshot", "shots": 0, "metric": "recall@1",
                "value": float(np.mean(v)), "std": float("nan"), "n_episodes": 0,
                "wall_time_s": 1.0, "device": "cpu", "epochs": 1, "ci_low": float("nan"),
                "ci_high": float("nan"),
                "class_values": json.dumps({"classes": CLASSES, "n": n, "v": v.tolist()}),
            })
    return out


def frame() -> pd.DataFrame:
    a = rows("multisimilarity", {1: 0.80, 2: 0.70, 3: 0.60, 4: 0.50}, seed=1)
    b = rows("triplet", {1: 0.70, 2: 0.60, 3: 0.60, 4: 0.50}, seed=2)
    return label_series(validate(pd.DataFrame(a + b)))


def test_interval_table_drops_and_holm() -> None:
    df = frame()
    iv = interval_table(df, ["recall@1"])
    ms = iv[iv["series"] == "multisimilarity"].reset_index(drop=True)
    assert list(ms["split_id"]) == [1, 2, 3, 4]
    assert (ms["ci_low"] < ms["value"]).all() and (ms["value"] < ms["ci_high"]).all()
    assert list(ms["drop_significant"]) == [False, True, True, True]
    tr = iv[iv["series"] == "triplet"].reset_index(drop=True)
    assert list(tr["drop_significant"]) == [False, True, False, True]  # 2 -> 3 stays flat
    assert tr.loc[2, "drop_lo"] < 0 < tr.loc[2, "drop_hi"]


def test_method_order_sentence() -> None:
    table, lines = method_order(frame(), "recall@1")
    assert lines == ["recall@1: multisimilarity > triplet on splits 1-2; not distinguishable "
                     "on splits 3-4"]
    assert len(table) == 4
    assert _ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"


def test_identical_methods_are_never_ordered() -> None:
    a = rows("a", {1: 0.8, 2: 0.6}, seed=3)
    b = [{**r, "method": "b"} for r in a]
    table, lines = method_order(label_series(validate(pd.DataFrame(a + b))), "recall@1")
    assert (table["gap"] == 0).all()
    assert (table["gap_lo"] <= 0).all() and (table["gap_hi"] >= 0).all()
    assert lines == ["recall@1: not distinguishable on splits 1-2"]


def test_progression_bands_are_the_intervals_and_drops_are_marked() -> None:
    df = frame()
    iv = interval_table(df, ["recall@1"])
    fig = progression_figure(df, ["recall@1"], intervals=iv, distance_cis={1: (8.0, 12.0)})
    ax = fig.axes[0]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    ms = iv[iv["series"] == "multisimilarity"]
    assert band.min() == pytest.approx(ms["ci_low"].min())
    assert band.max() == pytest.approx(ms["ci_high"].max())
    markers = [ln for ln in ax.get_lines() if ln.get_marker() == "v"]
    assert len(markers) == 2 and len(markers[0].get_xdata()) == 3
    assert "significant drop" in fig._suptitle.get_text()


def test_report_writes_interval_tables_and_old_tables_keep_theirs(tmp_path) -> None:
    df = frame().drop(columns=["base", "series"])
    out = build_report(df, tmp_path / "rep")
    names = {p.name for p in out.files}
    assert {"intervals.csv", "method_order.md"} <= names
    md = (tmp_path / "rep" / "method_order.md").read_text()
    assert "multisimilarity > triplet on splits 1-2" in md
    pivot = pd.read_csv(tmp_path / "rep" / "pivot.csv")
    assert list(pivot["recall@1 sig. drops"]) == ["3/3", "2/3"]
    old = df.drop(columns=["ci_low", "ci_high", "class_values"])
    out = build_report(old, tmp_path / "old")
    assert "intervals.csv" not in {p.name for p in out.files}


def test_size_controlled_on_every_test_class_uses_the_full_class_values() -> None:
    """An older table's recall@1/n40 rows (no class values) on 40 test classes are the
    full-test evaluation (one draw of every class): the report gives them the full metric's
    intervals, and none when N is fewer classes or a value differs."""
    from oodml.report.intervals import interval_methods

    base = rows("multisimilarity", {1: 0.80, 2: 0.70}, seed=1)
    sized = [{**r, "metric": "recall@1/n40", "class_values": ""} for r in base]
    df = label_series(validate(pd.DataFrame(base + sized)))
    iv = interval_table(df, ["recall@1", "recall@1/n40"])
    full, sc = (iv[iv["metric"] == m].reset_index(drop=True)
                for m in ("recall@1", "recall@1/n40"))
    assert len(sc) == 2
    pd.testing.assert_frame_equal(full.drop(columns=["metric", "ci_low", "ci_high", "drop_lo",
                                                     "drop_hi", "drop_p_holm"]),
                                  sc.drop(columns=["metric", "ci_low", "ci_high", "drop_lo",
                                                   "drop_hi", "drop_p_holm"]))
    assert (sc["ci_low"] < sc["value"]).all() and (sc["value"] < sc["ci_high"]).all()
    assert "every test class" in interval_methods(df, ["recall@1/n40"])["interval"][0]
    fewer = [{**r, "metric": "recall@1/n20"} for r in sized]
    off = [{**r, "value": r["value"] + 1e-3} for r in sized]
    for other, metric in ((fewer, "recall@1/n20"), (off, "recall@1/n40")):
        df = label_series(validate(pd.DataFrame(base + other)))
        assert interval_table(df, [metric]).empty
        assert interval_methods(df, [metric])["interval"][0].startswith("none:")
    # few-shot rows that store their draws beside such zero-shot rows: every cell has one
    doc = {"classes": CLASSES, "n": [5] * 40, "draws": [list(range(40))],
           "v": [[0.5] * 40]}
    few = [{**r, "protocol": "fewshot", "shots": 5, "config": '{"fewshot":{}}',
            "class_values": json.dumps(doc)} for r in sized]
    df = label_series(validate(pd.DataFrame(base + sized + few)))
    how = interval_methods(df, ["recall@1/n40"])["interval"][0]
    assert "gallery draws" in how and "in 2 of 4 cells" in how and "none in" not in how


def test_fewshot_gain_pairs_with_its_zero_shot_series() -> None:
    """A 5-shot series 0.08 above its zero-shot model on splits 3-4 and equal on 1-2: the gain
    is significant exactly there, and its estimate is the difference of the two cells."""
    zero = rows("multisimilarity", {1: 0.80, 2: 0.70, 3: 0.60, 4: 0.50}, noise=0.0, seed=1)
    few = []
    for r in zero:
        doc = json.loads(r["class_values"])
        up = 0.08 if r["split_id"] >= 3 else 0.0
        rng = np.random.default_rng(r["split_id"] * 10 + r["seed"])
        v = np.asarray(doc["v"]) + up + 0.01 * rng.standard_normal(40)
        few.append({**r, "protocol": "fewshot", "shots": 5, "config": '{"fewshot":{}}',
                    "value": float(v.mean()), "std": 0.0, "n_episodes": 10,
                    "class_values": json.dumps({**doc, "v": v.tolist()})})
    df = label_series(validate(pd.DataFrame(zero + few)))
    table, lines = fewshot_gain(df, "recall@1")
    assert list(table["series"].unique()) == ["multisimilarity (5-shot)"]
    assert set(table["zero_shot"]) == {"multisimilarity"}
    sig = dict(zip(table["split_id"], table["significant"], strict=True))
    assert sig == {1: False, 2: False, 3: True, 4: True}
    by_split = table.set_index("split_id")
    for sid in (1, 2, 3, 4):
        want = (df[(df["series"] == "multisimilarity (5-shot)") & (df["split_id"] == sid)]
                ["value"].mean()
                - df[(df["series"] == "multisimilarity") & (df["split_id"] == sid)]["value"].mean())
        assert by_split.loc[sid, "gain"] == pytest.approx(want, abs=1e-12)
        assert by_split.loc[sid, "gain_lo"] <= want <= by_split.loc[sid, "gain_hi"]
    assert lines == ["multisimilarity (5-shot) vs multisimilarity (recall@1): gains on splits 3-4"]
    empty, none = fewshot_gain(frame(), "recall@1")  # zero-shot series only
    assert empty.empty and none == []
