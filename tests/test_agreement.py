"""Agreement of a ladder's order across measures x extractors: values, tau matrix with
bootstrap intervals, the verdict line, the CSV round trip, split files walked by kid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from oodml.errors import ConfigError, DataError
from oodml.splits.agreement import (
    Column,
    MeasureAgreement,
    Tau,
    measure_agreement,
    read_agreement,
    tau_path,
    write_agreement,
)
from oodml.splits.splitfile import SplitFile, dumps, loads
from oodml.stats.class_stats import ClassStats
from oodml.stats.measures import get_measure

from reference import classes_along_e1, hand_ladder


def features(seed: int):
    return classes_along_e1(seed, spacing=2.0)


def ladder(stats: ClassStats, names: list[str]) -> SplitFile:
    """Test classes move from interleaved with the train classes to the far end of e_1."""
    return hand_ladder(stats, [names[0::2], names[2:10:2] + names[12:16], names[8:16]])


def test_every_column_is_the_measure_and_taus_are_scipys() -> None:
    sa, names = features(0)
    sb, _ = features(1)
    sf = ladder(sa, names)
    res = measure_agreement(sf, {"ext-a": sa, "ext-b": sb}, ["frechet", "kid", "w2-classes"],
                            n_boot=30)
    assert [c.label for c in res.columns] == ["frechet/ext-a", "kid/ext-a", "w2-classes/ext-a",
                                              "frechet/ext-b", "kid/ext-b", "w2-classes/ext-b"]
    # the file's own measure on the file's extractor reproduces the stored distances
    assert res.columns[0].values == pytest.approx(res.distance, rel=1e-12)
    for col in res.columns:
        st = sa if col.extractor == "ext-a" else sb
        for s, v in zip(sf.ladder, col.values, strict=True):
            want = get_measure(col.measure)(st, st.indices(s.train), st.indices(s.test))
            assert v == want.value
    assert all(s == "ot.emd2 (exact)" for s in res.columns[2].solvers)
    assert len(res.taus) == 15
    for t in res.taus:
        a = next(c for c in res.columns if c.label == t.a)
        b = next(c for c in res.columns if c.label == t.b)
        assert t.tau == pytest.approx(sps.kendalltau(a.values, b.values).statistic)
        assert -1 <= t.lo <= t.hi <= 1 and t.n_boot == 30 and 0 < t.n_defined <= 30
    labels, tau, lo, hi = res.tau_matrix()
    assert tau.shape == (6, 6) and np.allclose(tau, tau.T) and np.all(np.diag(tau) == 1)
    assert res.verdict().startswith("order agrees under all 6 measure x extractor columns")


def test_the_bootstrap_is_paired_and_seeded() -> None:
    sa, names = features(2)
    sf = ladder(sa, names)
    one = measure_agreement(sf, {"a": sa}, ["frechet", "frechet"], n_boot=20)
    assert len(one.columns) == 2  # the same measure twice is two identical columns
    assert one.taus[0].lo == one.taus[0].hi == 1.0  # paired: identical on every replicate
    again = measure_agreement(sf, {"a": sa}, ["frechet", "kid"], n_boot=20)
    assert again == measure_agreement(sf, {"a": sa}, ["frechet", "kid"], n_boot=20)


def test_verdict_names_the_swapped_splits() -> None:
    cols = (Column("e", "class-means", "frechet", (1.0, 2.0, 3.0), (None,) * 3, (None,) * 3),
            Column("e", "class-means", "kid", (1.0, 3.0, 2.0), (0.1,) * 3, (None,) * 3))
    res = MeasureAgreement((1, 2, 3), (4, 4, 4), (4, 4, 4), (1.0, 2.0, 3.0), cols,
                           (Tau("frechet/e", "kid/e", 1 / 3, -0.3, 1.0, 10, 10),))
    assert res.verdict() == ("order differs: kid/e swaps 2-3 (min tau 0.33 [-0.30, 1.00], "
                             "frechet/e vs kid/e)")


def test_csv_round_trip_and_bad_tables(tmp_path: Path) -> None:
    sa, names = features(3)
    res = measure_agreement(ladder(sa, names), {"a": sa}, ["frechet", "fid-inf"], n_boot=5)
    values, taus = write_agreement(res, tmp_path / "agree.csv")
    assert taus == tmp_path / "agree.tau.csv" == tau_path(values)
    back = read_agreement(values)
    assert back == res and back.source == str(values)
    (tmp_path / "bad.csv").write_text("split_id,foo\n1,2\n")
    with pytest.raises(DataError, match="not a measure-agreement table"):
        read_agreement(tmp_path / "bad.csv")
    (tmp_path / "nan.csv").write_text(values.read_text().replace(
        repr(res.columns[0].values[0]), "nan", 1))
    (tmp_path / "nan.tau.csv").write_text(taus.read_text())
    with pytest.raises(DataError, match="finite"):
        read_agreement(tmp_path / "nan.csv")
    (tmp_path / "lone.csv").write_text(values.read_text())
    with pytest.raises(DataError, match="tau table .*lone.tau.csv does not exist"):
        read_agreement(tmp_path / "lone.csv")


def test_bad_input_is_one_line() -> None:
    sa, names = features(4)
    sf = ladder(sa, names)
    with pytest.raises(ConfigError, match="unknown measure 'fld'; choose one of: fid-inf, "
                                          "frechet, kid, w2-classes"):
        measure_agreement(sf, {"a": sa}, ["fld"])
    other = ClassStats.from_features(np.ones((4, 2)), ["x", "x", "y", "y"])
    with pytest.raises(ConfigError, match="the b features lack 16 class"):
        measure_agreement(sf, {"a": sa, "b": other}, ["kid"])
    with pytest.raises(ConfigError, match="bootstrap=-1"):
        measure_agreement(sf, {"a": sa}, ["kid"], n_boot=-1)


def test_split_file_records_a_measure_only_when_not_frechet() -> None:
    sa, names = features(5)
    sf = ladder(sa, names)
    plain = dumps(sf)
    assert b'"measure"' not in plain
    from dataclasses import replace

    kid = replace(sf, measure=get_measure("kid").record())
    back = loads(dumps(kid))
    assert back.measure == get_measure("kid").record() and back.measure_name == "kid"
    assert loads(plain).measure is None and loads(plain).measure_name == "frechet"


def test_a_w2_ladder_records_the_solver_of_its_distances() -> None:
    from oodml.splits.generate import LadderConfig, _measure_record

    sa, names = features(6)
    sf = ladder(sa, names)
    rec = _measure_record(LadderConfig(measure="w2-classes"), sa, sf.ladder)
    assert rec == {**get_measure("w2-classes").record(), "solvers": ["ot.emd2 (exact)"]}
    assert _measure_record(LadderConfig(measure="kid"), sa, sf.ladder) == \
        get_measure("kid").record()
    assert _measure_record(LadderConfig(), sa, sf.ladder) is None
    with pytest.raises(ConfigError, match="unknown measure 'fld'"):
        LadderConfig(measure="fld")
