"""`splits generate --measure`, `verify` with the file's measure and `rescore --measure` on
the real Omniglot subset (efficientnet-lite0 features)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from oodml.splits.agreement import read_agreement
from oodml.splits.splitfile import load_splitfile, verify
from oodml.stats.class_stats import ClassStats
from oodml.stats.measures import get_measure
from oodml_cli import main

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "splits" / "omniglot_small1_efficientnet-lite0_class-means_greedy.json"


def run(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    try:
        main(["splits", *map(str, args)])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_generate_by_kid_records_the_measure_and_verifies(
    omniglot_features, omniglot_features_cache: Path, omniglot_zip: Path,
    capsys: pytest.CaptureFixture, tmp_path: Path,
) -> None:
    manifest, features = omniglot_features
    out = tmp_path / "kid.json"
    code, text, err = run(
        capsys, "generate", "omniglot", "--root", omniglot_zip, "--measure", "kid",
        "--param", "max_steps=3,candidates=2,removal_candidates=2", "--levels", "3",
        "--episodes", "1", "--bootstrap", "4", "--cache", omniglot_features_cache, "-o", out)
    assert code == 0, err
    sf = load_splitfile(out)
    assert sf.measure == get_measure("kid").record()
    assert json.loads(out.read_text())["measure"]["name"] == "kid"
    stats = ClassStats.from_features(features.features, features.labels)
    kid = get_measure("kid")
    values = [kid(stats, stats.indices(s.train), stats.indices(s.test)).value for s in sf.ladder]
    assert [s.distance for s in sf.ladder] == pytest.approx(values, rel=1e-9)
    assert np.all(np.diff(values) > 0)
    assert all(s.distance_ci is not None for s in sf.ladder)
    assert verify(sf, manifest, features) == []
    code, text, err = run(capsys, "verify", out, "--root", omniglot_zip, "--cache",
                          omniglot_features_cache)
    assert code == 0 and "OK" in text + err


def test_generate_rejects_an_unknown_measure_in_one_line(
    omniglot_zip: Path, capsys: pytest.CaptureFixture, tmp_path: Path,
) -> None:
    code, text, err = run(capsys, "generate", "omniglot", "--root", omniglot_zip, "--measure",
                          "fld", "-o", tmp_path / "x.json")
    assert code == 2 and not (tmp_path / "x.json").exists()
    line = [x for x in (text + err).splitlines() if x.strip()]
    assert len(line) == 1 and "unknown measure 'fld'" in line[0]
    assert "fid-inf, frechet, kid, w2-classes" in line[0]
    code, text, err = run(capsys, "rescore", PUBLISHED, "--root", omniglot_zip, "--measure",
                          "kid,fld")
    assert code == 2 and "unknown measure 'fld'" in text + err


def test_rescore_by_measures_on_the_published_ladder(
    omniglot_features, omniglot_features_cache: Path, omniglot_zip: Path,
    capsys: pytest.CaptureFixture, tmp_path: Path,
) -> None:
    out = tmp_path / "agree.csv"
    code, text, err = run(capsys, "rescore", PUBLISHED, "--root", omniglot_zip, "--measure",
                          "frechet,kid,w2-classes", "--bootstrap", "3", "--cache",
                          omniglot_features_cache, "-o", out)
    assert code == 0, err
    res = read_agreement(out)
    assert [c.measure for c in res.columns] == ["frechet", "kid", "w2-classes"]
    assert res.columns[0].values == pytest.approx(res.distance, rel=1e-9)
    assert res.verdict() in text + err
    assert "solver: w2-classes/efficientnet-lite0: ot.emd2 (exact)" in text + err

    # the committed 8-column table (reports/measure_agreement): its efficientnet-lite0 columns
    # are what this code computes, its Inception Fréchet column the committed Inception rescoring
    committed = read_agreement(REPO / "reports" / "measure_agreement"
                               / "omniglot_efficientnet-lite0_inception.csv")
    cols = {c.label: c for c in committed.columns}
    assert len(cols) == 8 and committed.verdict().startswith("order agrees under all 8")
    for c in res.columns:
        assert cols[c.label].values == pytest.approx(c.values, rel=1e-5, abs=1e-9), c.label
    with open(REPO / "reports" / "cpu_study" / "rescore_inception.csv") as fh:
        inception = [float(r["rescored_distance"]) for r in csv.DictReader(fh)]
    assert cols["frechet/inception"].values == pytest.approx(inception, rel=1e-6)
