"""Rescoring a ladder with another feature set or mode: both columns, tau, rho, swaps, CSV."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from oodml.errors import ConfigError, DataError
from oodml.splits.rescore import (
    Rescore,
    read_rescore_csv,
    rescore,
    rescore_rows,
    write_rescore_csv,
)
from oodml.splits.splitfile import Split, SplitFile
from oodml.stats.class_stats import ClassStats
from oodml.stats.modes import distance_within


def features(seed: int, dim: int = 6, n_classes: int = 16, per_class: int = 5):
    rng = np.random.default_rng(seed)
    names = [f"k{i:02d}" for i in range(n_classes)]
    centres = rng.standard_normal((n_classes, dim))
    centres[:, 0] += np.arange(n_classes)  # classes spread along e_1
    x = np.repeat(centres, per_class, axis=0) + 0.2 * rng.standard_normal(
        (n_classes * per_class, dim))
    return ClassStats.from_features(x, np.repeat(names, per_class).tolist()), names


def ladder(stats: ClassStats, names: list[str]) -> SplitFile:
    """Test classes move from interleaved with the train classes to the far end of e_1."""
    rungs = [names[0::2], names[0:8:2] + names[12:16], names[8:16]]
    splits = []
    for i, test in enumerate(rungs, start=1):
        train = [c for c in names if c not in test]
        splits.append(Split(id=i, distance=distance_within(stats, train, test), is_start=i == 1,
                            train=tuple(train), test=tuple(test)))
    return SplitFile(dataset_name="synthetic", dataset_fingerprint=None, class_counts=None,
                     extractor="ext-a", weights_sha256=None, distance_mode="class-means",
                     procedure="hand", params={}, seed=0, ladder=splits)


def test_rescore_recomputes_each_split_and_agrees_with_scipy() -> None:
    stats_a, names = features(0)
    sf = ladder(stats_a, names)
    stats_b, _ = features(1)
    r = rescore(sf, stats_b, extractor="ext-b")
    for s, d in zip(sf.ladder, r.rescored, strict=True):
        assert d == pytest.approx(distance_within(stats_b, s.train, s.test), rel=1e-9)
    assert r.distance == tuple(s.distance for s in sf.ladder)
    assert r.kendall_tau == pytest.approx(sps.kendalltau(r.distance, r.rescored).statistic)
    assert r.spearman_rho == pytest.approx(sps.spearmanr(r.distance, r.rescored).statistic)
    samples = rescore(sf, stats_a, extractor="ext-a", mode="samples")
    assert samples.rescored_mode == "samples"
    assert samples.rescored[1] == pytest.approx(
        distance_within(stats_a, sf.ladder[1].train, sf.ladder[1].test, mode="samples"),
        rel=1e-9)
    same = rescore(sf, stats_a, extractor="ext-a")
    assert same.rescored == pytest.approx(same.distance, rel=1e-9)
    assert same.kendall_tau == 1.0 and same.swaps == []


def test_swaps_tau_rho_hand_case() -> None:
    r = Rescore(split_ids=(1, 2, 3, 4), n_train=(5,) * 4, n_test=(5,) * 4,
                distance=(1.0, 2.0, 3.0, 4.0), rescored=(10.0, 30.0, 20.0, 40.0),
                extractor="a", mode="class-means", rescored_extractor="b",
                rescored_mode="samples")
    assert r.swaps == [(2, 3)]
    assert r.kendall_tau == pytest.approx(4 / 6)  # 5 concordant, 1 discordant of 6 pairs
    assert r.spearman_rho == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert "adjacent swaps: 2-3" in r.summary()
    rows = rescore_rows(r)
    assert [x["rescored_rank"] for x in rows] == [1.0, 3.0, 2.0, 4.0]
    assert [x["swaps_with_next"] for x in rows] == [False, True, False, False]


def test_csv_round_trip_and_bad_tables(tmp_path: Path) -> None:
    stats_a, names = features(0)
    sf = ladder(stats_a, names)
    r = rescore(sf, features(2)[0], extractor="ext-c", mode="samples")
    path = write_rescore_csv(r, tmp_path / "rescored.csv")
    assert read_rescore_csv(path) == r
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="is not a rescored table"):
        read_rescore_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="missing.csv does not exist"):
        read_rescore_csv(tmp_path / "missing.csv")


def test_bad_input() -> None:
    stats_a, names = features(0)
    sf = ladder(stats_a, names)
    with pytest.raises(ConfigError, match="unknown distance mode"):
        rescore(sf, stats_a, extractor="x", mode="pixels")
    other = ClassStats.from_features(np.zeros((4, 2)) + np.arange(4)[:, None],
                                     ["a", "a", "b", "b"])
    with pytest.raises(ConfigError, match="lack 16 class"):
        rescore(sf, other, extractor="x")
    renamed = replace(sf, ladder=sf.ladder[:1])
    assert np.isnan(rescore(renamed, stats_a, extractor="x").kendall_tau)
