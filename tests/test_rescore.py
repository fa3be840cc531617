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
from oodml.splits.splitfile import SplitFile
from oodml.stats.class_stats import ClassStats
from oodml.stats.modes import distance_within

from reference import classes_along_e1, hand_ladder


def features(seed: int):
    return classes_along_e1(seed)


def ladder(stats: ClassStats, names: list[str]) -> SplitFile:
    """Test classes move from interleaved with the train classes to the far end of e_1."""
    return hand_ladder(stats, [names[0::2], names[0:8:2] + names[12:16], names[8:16]])


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
