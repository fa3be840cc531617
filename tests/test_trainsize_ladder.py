"""Ladders that keep the training size: every selected split's train set trimmed to N classes
(seeded), distances recomputed, recorded in the split file."""

from __future__ import annotations

import pytest

from oodml.errors import ConfigError
from oodml.splits.generate import LadderConfig, generate_splitfile
from oodml.splits.splitfile import load_splitfile, save_splitfile
from oodml.stats.class_stats import ClassStats
from oodml.stats.modes import distance_within


def test_train_size_option_is_checked():
    assert LadderConfig(train_size="min").train_size == "min"
    assert LadderConfig(train_size="17").train_size == 17
    assert LadderConfig().train_size is None
    for bad in (0, 1, "some", 2.5, True):
        with pytest.raises(ConfigError, match="train_size=.* must be an integer >= 2 or 'min'"):
            LadderConfig(train_size=bad)


def test_omniglot_ladder_with_a_fixed_train_size(omniglot_features, tmp_path):
    manifest, fs = omniglot_features
    plain = generate_splitfile(manifest, fs, LadderConfig(bootstrap=0))
    kept = generate_splitfile(manifest, fs, LadderConfig(bootstrap=0, train_size="min"))
    smallest = min(len(s.train) for s in plain.ladder)
    assert smallest == 17 and kept.selection["train_size"] == 17
    assert "train_size" not in plain.selection
    stats = ClassStats.from_features(fs.features, fs.labels)
    dist = [s.distance for s in kept.ladder]
    assert dist == sorted(dist) and [s.id for s in kept.ladder] == list(range(1, 9))
    walk = [(set(s.train), s.test) for s in plain.ladder]
    for s in kept.ladder:
        assert len(s.train) == 17 and len(s.test) == 68
        assert any(set(s.train) <= train and s.test == test for train, test in walk)
        assert set(s.train) | set(s.test) | set(s.removed) == set(manifest.classes)
        assert not set(s.train) & set(s.removed)
        assert s.distance == pytest.approx(distance_within(stats, s.train, s.test),
                                           rel=1e-9)
    assert sum(s.is_start for s in kept.ladder) == 1
    a = save_splitfile(kept, tmp_path / "a.json")
    assert load_splitfile(a) == kept and load_splitfile(a).selection["train_size"] == 17
    with pytest.raises(ConfigError, match="train_size=18 exceeds the smallest train set"):
        generate_splitfile(manifest, fs, LadderConfig(bootstrap=0, train_size=18))
