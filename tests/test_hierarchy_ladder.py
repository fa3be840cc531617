"""The hierarchy procedure on the shared Omniglot subset (5 alphabets, 136 classes), and the
semantic-shift figure on the distance ladders."""

from __future__ import annotations

import pytest

from oodml.data.hierarchy import Hierarchy, hierarchy_of
from oodml.errors import ConfigError
from oodml.splits.generate import LadderConfig, generate_splitfile
from oodml.splits.hierarchy import HierarchyParams, hierarchy_ladder, pick_levels
from oodml.splits.splitfile import dumps, loads, verify
from oodml.stats.class_stats import ClassStats
from oodml.stats.modes import distance_within


@pytest.fixture(scope="module")
def ladder(omniglot_features):
    manifest, features = omniglot_features
    return generate_splitfile(manifest, features, LadderConfig(procedure="hierarchy",
                                                               bootstrap=0))


def alphabets(classes) -> set[str]:
    return {c.split("/")[0] for c in classes}


def test_levels_run_from_every_test_alphabet_seen_to_none(ladder, omniglot_features) -> None:
    first, top = ladder.ladder[0], ladder.ladder[-1]
    assert alphabets(first.test) <= alphabets(first.train)
    assert not alphabets(top.test) & alphabets(top.train)
    assert len({s.test for s in ladder.ladder}) == 1
    assert len({len(s.train) for s in ladder.ladder}) == 1
    shares = [s.semantic["unseen_share"] for s in ladder.ladder]
    assert shares[0] == 0.0 and shares[-1] == 1.0
    assert all(a < b for a, b in zip(shares, shares[1:], strict=False))
    for s in ladder.ladder:
        unseen = alphabets(s.test) - alphabets(s.train)
        share = sum(c.split("/")[0] in unseen for c in s.test) / len(s.test)
        assert s.semantic["unseen_share"] == pytest.approx(share, abs=1e-12)
    # distances are the class-means Fréchet distance of each level's sides
    manifest, features = omniglot_features
    stats = ClassStats.from_features(features.features, features.labels)
    s = ladder.ladder[3]
    assert s.distance == pytest.approx(distance_within(stats, s.train, s.test), rel=1e-6)
    assert verify(ladder, manifest) == []
    assert ladder.selection["supported_levels"] == len(ladder.ladder) == 8


def test_byte_reproducible_and_loadable(ladder, omniglot_features) -> None:
    manifest, features = omniglot_features
    again = generate_splitfile(manifest, features, LadderConfig(procedure="hierarchy",
                                                                bootstrap=0))
    assert dumps(again) == dumps(ladder)
    back = loads(dumps(ladder))
    assert back.ladder[-1].semantic == ladder.ladder[-1].semantic
    assert back.hierarchy == {"source": "omniglot alphabets", "levels": 1, "superclasses": 5}


def test_greedy_ladders_record_the_semantic_figure_unless_told_not_to(omniglot_features
                                                                     ) -> None:
    manifest, features = omniglot_features
    cfg = {"levels": 3, "bootstrap": 0, "params": {"max_steps": 4}}
    with_sem = generate_splitfile(manifest, features, LadderConfig(**cfg))
    h = hierarchy_of(manifest)
    for s in with_sem.ladder:
        unseen = alphabets(s.test) - alphabets(s.train)
        assert s.semantic["unseen_share"] == pytest.approx(sum(
            h.superclass(c) in unseen for c in s.test) / len(s.test), abs=1e-12)
    without = generate_splitfile(manifest, features, LadderConfig(**cfg, semantic=False))
    assert all(s.semantic is None for s in without.ladder) and without.hierarchy is None
    assert b'"semantic"' not in dumps(without)


def test_few_levels_and_refusals() -> None:
    h = Hierarchy({f"{s}{i}": (s,) for s in "AB" for i in range(4)}, "toy")
    lad = hierarchy_ladder(h, h.classes, HierarchyParams(test_superclasses=0.5), 0, 8)
    assert [lv.share for lv in lad.levels] == [0.0, 1.0] and lad.supported_levels == 2
    assert pick_levels([0.0, 0.2, 0.3, 0.6, 1.0], 3) == [0, 3, 4]
    with pytest.raises(ConfigError, match="needs at least two superclasses"):
        hierarchy_ladder(Hierarchy({"a": ("A",), "b": ("A",)}, "one"), ["a", "b"],
                         HierarchyParams(), 0, 4)
    with pytest.raises(ConfigError, match="does not apply to procedure 'hierarchy'"):
        LadderConfig(procedure="hierarchy", targets=(1.0, 2.0))
    with pytest.raises(ConfigError, match=r"test_share=1\.5 must be a number in \(0, 1\)"):
        LadderConfig(procedure="hierarchy", params={"test_share": 1.5})


def test_published_hierarchy_file_regenerates(ladder) -> None:
    """The committed file's classes, levels, episodes and distances come out of the default
    command again (bytes compared with the bootstrap fields left out; the full file, intervals
    included, regenerates byte-identically with the command in splits/README.md)."""
    from dataclasses import replace
    from pathlib import Path

    from oodml.splits.splitfile import load_splitfile

    path = (Path(__file__).resolve().parents[1] / "splits"
            / "omniglot_small1_efficientnet-lite0_class-means_hierarchy.json")
    pub = load_splitfile(path)
    assert all(s.distance_ci is not None for s in pub.ladder)
    bare = replace(pub, uncertainty={}, ladder=[replace(s, distance_ci=None, vs_previous=None)
                                               for s in pub.ladder])
    assert dumps(bare) == dumps(ladder)
