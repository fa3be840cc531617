"""``oodml splits import-ssb``: the Semantic Shift Benchmark's split JSON as a split file, on a
small hand-made file in the published format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_data import make_class_tree

from oodml.data import load_dataset
from oodml.errors import ConfigError, SplitFileError
from oodml.features.featureset import FeatureSet
from oodml.splits.generate import LadderConfig
from oodml.splits.splitfile import dumps, load_splitfile, save_splitfile, verify
from oodml.splits.ssb import import_ssb, index_names, parse_ssb
from oodml.stats.class_stats import ClassStats
from oodml.stats.modes import distance_within

NAMES = [f"{i:03d}.bird{i}" for i in range(1, 25)]
SSB = {"known_classes": [1, 0, 2, 3, 4, 5, 6, 7],
       "unknown_classes": {"Easy": [9, 8, 10, 11], "Medium": [12, 13, 14, 15],
                           "Hard": [19, 18, 17, 16]},
       "known_unknown_pairs": {"Easy": [{"known_class": 0, "unknown_class": 2}]}}


@pytest.fixture
def cub(tmp_path: Path):
    make_class_tree(tmp_path / "cub" / "images", {c: 2 for c in NAMES}, ext=".jpg")
    m = load_dataset("cub200", tmp_path / "cub")
    x = np.random.default_rng(0).normal(size=(len(m), 16)).astype(np.float32)
    fs = FeatureSet(x, m.labels, m.paths, "synthetic", "0" * 64, m.fingerprint)
    return m, fs


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "ssb.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_round_trip(cub, tmp_path: Path) -> None:
    m, fs = cub
    sf = import_ssb(write(tmp_path, SSB), m, fs, LadderConfig(bootstrap=20, shots=(1,),
                                                              episodes=2))
    assert sf.procedure == "ssb" and [s.id for s in sf.ladder] == [1, 2, 3]
    assert all(s.train == tuple(NAMES[:8]) for s in sf.ladder)
    assert [s.test for s in sf.ladder] == [tuple(NAMES[8:12]), tuple(NAMES[12:16]),
                                          tuple(NAMES[16:20])]
    assert sf.ladder[0].removed == tuple(NAMES[12:])
    stats = ClassStats.from_features(fs.features, fs.labels)
    for s in sf.ladder:
        assert s.distance == pytest.approx(distance_within(stats, s.train, s.test), rel=1e-8)
        assert s.distance_ci is not None
    out = save_splitfile(sf, tmp_path / "ssb_split.json")
    back = load_splitfile(out)
    assert dumps(back) == out.read_bytes() == dumps(sf)
    assert back.selection["levels"] == ["Easy", "Medium", "Hard"]
    assert verify(back, m, fs) == []


def test_index_mapping(cub) -> None:
    m, _ = cub
    assert index_names(m) == NAMES
    assert index_names(m, NAMES[::-1]) == NAMES[::-1]
    with pytest.raises(ConfigError, match="names 'x', which is no class"):
        index_names(m, ["x", *NAMES[1:]])


@pytest.mark.parametrize(("doc", "match"), [
    ('{"known_classes": [0, 1], ', r"ssb\.json is not valid UTF-8 JSON"),
    ({**SSB, "known_classes": [0, 1, 24]},
     r"known_classes lists class index 24, but dataset 'cub200' .* has 24 classes"),
    ({**SSB, "unknown_classes": {**SSB["unknown_classes"], "Hard": [17, 1]}},
     r"class index 1 is in both known_classes and unknown_classes\.Hard"),
    ({**SSB, "unknown_classes": {"Easy": [2, 3]}}, r"must map exactly Easy, Medium, Hard"),
    ({**SSB, "known_classes": [0, 0]}, r"known_classes lists class index 0 twice"),
    ({**SSB, "known_classes": [0, "1"]}, r"known_classes must be a non-empty list"),
])
def test_refusals_are_one_line(cli, cub, tmp_path: Path, doc: object, match: str) -> None:
    m, _ = cub
    path = write(tmp_path, doc)
    code, _, err = cli("splits", "import-ssb", path, "--dataset", "cub", "--root", m.root,
                       "-o", tmp_path / "out.json")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and not (tmp_path / "out.json").exists()
    with pytest.raises(SplitFileError, match=match):
        from oodml.splits.ssb import ssb_sides

        ssb_sides(path, m)


def test_parse_keeps_the_published_order() -> None:
    known, unknown = parse_ssb(json.dumps(SSB).encode(), "x")
    assert known == SSB["known_classes"] and unknown["Hard"] == [19, 18, 17, 16]
