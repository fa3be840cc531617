"""Metric intervals from per-class values: the stored class means reproduce the run's value,
the class bootstrap's interval against a direct resampling of queries by class, paired gaps of
identical methods, old results tables without the interval columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from oodml.metrics import evaluate_embeddings
from oodml.metrics.intervals import (
    ClassValues,
    class_bootstrap_interval,
    class_values,
    contrast_interval,
    difference_interval,
    value_interval,
)
from oodml.results import COLUMNS, LATER_COLUMNS, OPTIONAL_COLUMNS, validate


def embedded(n_classes: int, per_class: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, 8))
    labels = np.repeat([f"t{i:02d}" for i in range(n_classes)], per_class)
    emb = np.repeat(centres, per_class, axis=0) + noise * rng.standard_normal(
        (n_classes * per_class, 8))
    return emb.astype(np.float32), labels


def test_per_class_values_reproduce_every_retrieval_metric() -> None:
    emb, labels = embedded(12, 6, 0.8, seed=0)
    by_class: dict = {}
    scores = evaluate_embeddings(emb, labels, by_class=by_class)
    assert by_class["classes"] == sorted(set(labels.tolist()))
    assert by_class["n"] == [6] * 12
    for metric, value in scores.items():
        if metric == "nmi":
            assert metric not in by_class
            continue
        n = np.array(by_class["n"], dtype=float)
        assert float(n @ np.array(by_class[metric]) / n.sum()) == pytest.approx(value, rel=1e-12)
    # one class's value is the metric of its queries alone (recall@1 by hand)
    dist = 1 - (emb @ emb.T) / np.outer(np.linalg.norm(emb, axis=1), np.linalg.norm(emb, axis=1))
    np.fill_diagonal(dist, np.inf)
    hit = labels[np.argmin(dist, axis=1)] == labels
    assert by_class["recall@1"][3] == pytest.approx(hit[18:24].mean())


def test_class_bootstrap_matches_resampling_classes_directly() -> None:
    rng = np.random.default_rng(1)
    n = rng.integers(3, 9, size=25).astype(float)
    v = rng.uniform(0.2, 0.9, size=25)
    lo, hi = class_bootstrap_interval(n, v, n_boot=4000, seed=2)
    # reference: resample class indices and average the queries of the drawn classes
    ref = []
    for _ in range(4000):
        pick = rng.integers(0, 25, 25)
        ref.append((n[pick] * v[pick]).sum() / n[pick].sum())
    r_lo, r_hi = np.quantile(ref, [0.025, 0.975])
    width = r_hi - r_lo
    assert lo == pytest.approx(r_lo, abs=0.08 * width)
    assert hi == pytest.approx(r_hi, abs=0.08 * width)
    assert lo < float(n @ v / n.sum()) < hi


def test_identical_methods_have_a_gap_interval_containing_zero() -> None:
    runs = {s: {f"c{i}": (5, 0.1 * i + 0.01 * s) for i in range(10)} for s in (0, 1, 2)}
    a, b = class_values(runs), class_values(runs)
    gap = difference_interval(a, b)
    assert gap.estimate == 0.0 and gap.low <= 0.0 <= gap.high and gap.p == 1.0
    # a real, consistent gap on every class and seed is separated
    better = class_values({s: {c: (k, x + 0.05) for c, (k, x) in per.items()}
                           for s, per in runs.items()})
    gap = difference_interval(a, better)
    assert gap.estimate == pytest.approx(0.05) and gap.low > 0.0 and gap.p == 0.0


def test_two_methods_from_one_distribution_overlap_zero_most_of_the_time() -> None:
    rng = np.random.default_rng(4)
    covered = 0
    for _ in range(100):
        base = rng.uniform(0.3, 0.7, size=30)

        a, b = ({s: {f"c{i}": (4, base[i] + 0.05 * rng.standard_normal()) for i in range(30)}
                 for s in range(3)} for _ in range(2))
        gap = difference_interval(class_values(a), class_values(b), n_boot=400)
        covered += gap.low <= 0.0 <= gap.high
    assert covered >= 85


def test_difference_of_drops_matches_resampling_directly() -> None:
    """(f8 - f1) - (h8 - h1) over shared test classes: one class draw for all four cells,
    seeds of the two regimes drawn independently; against an explicit resampling."""
    rng = np.random.default_rng(7)
    classes = [f"c{i:02d}" for i in range(30)]
    n = rng.integers(3, 9, size=30)

    def cell(level: float, seeds: tuple[int, ...]) -> dict:
        pairs = list(zip(classes, n, strict=True))
        return {s: {c: (int(k), level + 0.2 * rng.random()) for c, k in pairs} for s in seeds}

    h1, h8 = cell(0.8, (0, 1, 2)), cell(0.6, (0, 1, 2))
    f1, f8 = cell(0.9, (0, 1)), cell(0.8, (0, 1))
    terms = [(1.0, class_values(f8), "full"), (-1.0, class_values(f1), "full"),
             (-1.0, class_values(h8), "head"), (1.0, class_values(h1), "head")]
    iv = contrast_interval(terms, n_boot=4000, seed=3)

    def value(runs: dict, pick: np.ndarray, seeds: np.ndarray) -> float:
        per_seed = []
        for s in seeds:
            vals = np.array([runs[s][classes[i]][1] for i in pick])
            per_seed.append((n[pick] * vals).sum() / n[pick].sum())
        return float(np.mean(per_seed))

    ref = []
    for _ in range(4000):
        pick = rng.integers(0, 30, 30)
        sf, sh = rng.integers(0, 2, 2), rng.integers(0, 3, 3)
        ref.append(value(f8, pick, sf) - value(f1, pick, sf)
                   - value(h8, pick, sh) + value(h1, pick, sh))
    r_lo, r_hi = np.quantile(ref, [0.025, 0.975])
    width = r_hi - r_lo
    est = (class_values(f8).estimate - class_values(f1).estimate
           - class_values(h8).estimate + class_values(h1).estimate)
    assert iv.estimate == pytest.approx(est)
    assert iv.low == pytest.approx(r_lo, abs=0.08 * width)
    assert iv.high == pytest.approx(r_hi, abs=0.08 * width)
    # a two-term contrast in one group is the paired difference
    a, b = class_values(h1), class_values(h8)
    assert contrast_interval([(-1.0, a, "x"), (1.0, b, "x")]) == difference_interval(a, b)


def test_seeds_widen_the_interval() -> None:
    per = {f"c{i}": (5, 0.5 + 0.01 * i) for i in range(20)}
    one = class_values({0: per})
    noisy = class_values({s: {c: (k, x + 0.1 * s) for c, (k, x) in per.items()} for s in range(3)})
    w1 = value_interval(one)
    w3 = value_interval(noisy)
    assert (w3.high - w3.low) > (w1.high - w1.low)
    assert isinstance(one, ClassValues) and one.estimate == pytest.approx(0.595)


def test_old_tables_without_interval_columns_stay_readable() -> None:
    row = {c: 0 for c in COLUMNS if c not in OPTIONAL_COLUMNS and c not in LATER_COLUMNS}
    row.update(splitfile_sha256="x", dataset="d", method="m", config="{}", protocol="zeroshot",
               metric="recall@1", device="cpu", value=0.5, distance=1.0, std=float("nan"),
               wall_time_s=1.0)
    df = validate(pd.DataFrame([row]))
    assert np.isnan(df.loc[0, "ci_low"]) and df.loc[0, "class_values"] == ""
    doc = json.dumps({"classes": ["a"], "n": [1], "v": [0.5]})
    df = validate(pd.DataFrame([{**row, "ci_low": 0.4, "ci_high": 0.6, "class_values": doc}]))
    assert df.loc[0, "ci_high"] == 0.6


# --- size-controlled metrics (per gallery draw) and NMI (none) -----------------------------


def test_size_controlled_values_per_draw_reproduce_the_value_and_resample_by_hand() -> None:
    """The per-draw class means give back the size-controlled value; a class-weighted
    replicate equals the mean over draws of each draw's weighted query mean, written out."""
    from oodml.metrics.intervals import _replicates, draw_class_values
    from oodml.metrics.sizecontrol import size_controlled_metrics

    emb, labels = embedded(12, 6, 0.9, seed=3)
    by_class: dict = {}
    scores = size_controlled_metrics(emb, labels, 5, draws=4, seed=7, by_class=by_class)
    for name, value in scores.items():
        doc = by_class[name]
        assert len(doc["draws"]) == 4 and all(len(d) == 5 for d in doc["draws"])
        cv = draw_class_values({0: doc})
        assert cv.estimate == pytest.approx(value, rel=1e-9)
    cv = draw_class_values({0: by_class["recall@1/n5"]})
    w = np.random.default_rng(0).integers(0, 3, size=(6, 12)).astype(float)
    got = _replicates(cv, w, np.ones((6, 1)))
    for r in range(6):
        means = []
        for d, idx in enumerate(by_class["recall@1/n5"]["draws"]):
            wn = w[r, idx] * cv.n[idx]
            if wn.sum() > 0:
                means.append((wn * cv.values[0, d, idx]).sum() / wn.sum())
        assert got[r] == pytest.approx(np.mean(means), rel=1e-12)


def test_size_controlled_on_every_class_is_the_full_test_interval() -> None:
    """N = all test classes: one draw holding every class, so the same interval as the full
    metric's (same seed, same draws of classes)."""
    from oodml.metrics.sizecontrol import size_controlled_metrics

    emb, labels = embedded(10, 5, 1.0, seed=5)
    full: dict = {}
    evaluate_embeddings(emb, labels, by_class=full)
    sized: dict = {}
    size_controlled_metrics(emb, labels, 10, seed=1, by_class=sized)
    doc = sized["map@r/n10"]
    assert doc["draws"] == [list(range(10))]
    a = class_bootstrap_interval(full["n"], full["map@r"], seed=4)
    b = class_bootstrap_interval(doc["n"], doc["v"], seed=4, draws=doc["draws"])
    assert b == pytest.approx(a, rel=1e-9)


def test_size_controlled_gap_of_identical_methods_is_zero_and_seeds_must_agree() -> None:
    from oodml.errors import ConfigError
    from oodml.metrics.intervals import draw_class_values
    from oodml.metrics.sizecontrol import size_controlled_metrics

    emb, labels = embedded(12, 4, 1.0, seed=8)
    docs = {}
    for s in (0, 1):
        bc: dict = {}
        size_controlled_metrics(emb + 0.05 * s, labels, 6, draws=3, seed=2, by_class=bc)
        docs[s] = bc["recall@1/n6"]
    cv = draw_class_values(docs)
    gap = difference_interval(cv, draw_class_values(docs))
    assert gap.estimate == 0.0 and gap.low <= 0.0 <= gap.high
    other: dict = {}
    size_controlled_metrics(emb, labels, 6, draws=3, seed=9, by_class=other)
    with pytest.raises(ConfigError, match="other test classes or galleries"):
        draw_class_values({0: docs[0], 1: other["recall@1/n6"]})


def test_interval_methods_name_the_route_or_why_none() -> None:
    from oodml.metrics.intervals import NO_INTERVAL
    from oodml.report.intervals import interval_methods

    df = pd.DataFrame({
        "metric": ["recall@1", "recall@1/n5", "nmi", "map@r"],
        "class_values": ['{"classes":[],"n":[],"v":[]}',
                         '{"classes":[],"n":[],"draws":[],"v":[]}', "", ""],
    })
    table = interval_methods(df, ["recall@1", "recall@1/n5", "nmi", "map@r"])
    got = dict(zip(table["metric"], table["interval"], strict=True))
    assert got["recall@1"] == "class bootstrap, with the seeds"
    assert "gallery draws" in got["recall@1/n5"]
    assert got["nmi"] == NO_INTERVAL["nmi"] and got["nmi"].startswith("none:")
    assert got["map@r"].startswith("none:")
