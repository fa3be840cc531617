"""Split files (save/load/validation/verify) and sub-splits, on the real Omniglot subset."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from oodml.data import load_dataset
from oodml.data.manifest import Manifest
from oodml.errors import ConfigError, SplitFileError
from oodml.splits.generate import build_split, start_classes
from oodml.splits.splitfile import (
    SCHEMA,
    SplitFile,
    canonical_bytes,
    dumps,
    is_strictly_increasing,
    load_splitfile,
    save_splitfile,
    verify,
)
from oodml.splits.subsplits import few_shot_episodes, paths_by_class, train_val_split
from oodml.stats.modes import distance_within


@pytest.fixture(scope="module")
def manifest(omniglot_zip: Path) -> Manifest:
    return load_dataset("omniglot", omniglot_zip)


def make_splitfile(manifest: Manifest, seed: int = 0, episodes: int = 3) -> SplitFile:
    """A three-rung ladder built by hand: start split, then classes swapped, then removed."""
    train, test = start_classes(manifest, "auto", seed)
    rungs = [
        (train, test, ()),
        (train[2:] + test[:2], test[2:] + train[:2], ()),
        (train[4:], test[4:], train[:4] + test[:4]),
    ]
    cp = paths_by_class(manifest.labels, manifest.paths)
    ladder = [
        build_split(
            i, 10.0 * i + 1 / 3, i == 1, tr, te, rm, class_paths=cp, seed=seed, episodes=episodes
        )
        for i, (tr, te, rm) in enumerate(rungs, start=1)
    ]
    return SplitFile(
        dataset_name=manifest.name,
        dataset_fingerprint=manifest.fingerprint,
        class_counts=dict(manifest.class_counts),
        extractor="efficientnet-lite0",
        weights_sha256="ab" * 32,
        distance_mode="class-means",
        procedure="greedy",
        params={"swaps_per_iter": 2, "tol": 0.1},
        seed=seed,
        ladder=ladder,
    )


def subset(manifest: Manifest, keep: list[int]) -> Manifest:
    """The manifest with only images ``keep`` (another version of the dataset)."""
    sup = manifest.superclasses
    return replace(
        manifest,
        paths=tuple(manifest.paths[i] for i in keep),
        labels=tuple(manifest.labels[i] for i in keep),
        superclasses=None if sup is None else tuple(sup[i] for i in keep),
    )


def resign(path: Path, edit) -> None:
    """Edit the JSON document and write it back with a valid checksum."""
    doc = json.loads(path.read_text())
    edit(doc)
    doc.pop("sha256", None)
    doc["sha256"] = hashlib.sha256(canonical_bytes(doc)).hexdigest()
    path.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def saved(manifest: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_splitfile(make_splitfile(manifest), tmp_path_factory.mktemp("sf") / "a.json")


def test_round_trip_is_byte_identical(saved: Path, manifest: Manifest, tmp_path: Path) -> None:
    sf = load_splitfile(saved)
    assert sf == make_splitfile(manifest)
    again = save_splitfile(sf, tmp_path / "b.json")
    assert again.read_bytes() == saved.read_bytes()
    doc = json.loads(saved.read_text())
    assert doc["schema"] == SCHEMA
    assert doc["sha256"] == sf.sha256
    assert doc["ladder"][0]["distance"] == float(f"{10 + 1 / 3:.12g}")


def test_same_seed_same_bytes_other_seed_differs(manifest: Manifest) -> None:
    assert dumps(make_splitfile(manifest, 3)) == dumps(make_splitfile(manifest, 3))
    assert dumps(make_splitfile(manifest, 3)) != dumps(make_splitfile(manifest, 4))


def test_hand_edit_fails_checksum(saved: Path, tmp_path: Path) -> None:
    p = tmp_path / "edited.json"
    p.write_text(saved.read_text().replace('"distance": 20.3333333333', '"distance": 25.0'))
    assert p.read_text() != saved.read_text()
    with pytest.raises(SplitFileError, match="checksum mismatch"):
        load_splitfile(p)


def _set(key_path: tuple, value):
    def edit(doc):
        target = doc
        for k in key_path[:-1]:
            target = target[k]
        target[key_path[-1]] = value

    return edit


def _first_test_image(doc) -> str:
    return doc["ladder"][0]["test"][0]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set(("schema",), "oodml-splits/99"), "unknown schema version 'oodml-splits/99'"),
        (lambda d: d.pop("seed"), "seed is missing"),
        (lambda d: d["ladder"][1].pop("train"), r"ladder\[1\].train is missing"),
        (_set(("ladder", 0, "distance"), "far"), r"ladder\[0\].distance has the wrong type"),
        (lambda d: d["ladder"][0]["train"].append("Nowhere/character99"), "unknown class"),
        (lambda d: d["ladder"][0]["test"].append(d["ladder"][0]["test"][0]), "twice"),
        (lambda d: d["ladder"][0]["train"].append(_first_test_image(d)), "both train and test"),
        (
            lambda d: d["ladder"][2]["train"].append(d["ladder"][2]["removed"][0]),
            "both train and removed",
        ),
        (lambda d: d["ladder"][0]["val"].append(d["ladder"][0]["test"][0]), "not a train class"),
        (
            lambda d: d["ladder"][0]["episodes"]["2"][0].update(
                {d["ladder"][0]["test"][0]: ["../../etc/passwd", "x.png"]}
            ),
            "escape the dataset",
        ),
        (
            lambda d: d["ladder"][0]["episodes"]["5"][0].update(
                {d["ladder"][0]["test"][0]: ["/etc/passwd"]}
            ),
            "is absolute",
        ),
        (
            lambda d: d["ladder"][0]["episodes"]["5"][0].update(
                {d["ladder"][0]["train"][0]: ["a/b.png"]}
            ),
            "not a test class",
        ),
        (_set(("ladder", 1, "id"), 7), "ids must be 1..3"),
        (_set(("ladder", 1, "is_start"), True), "more than one split as the start"),
    ],
)
def test_validation_errors(saved: Path, tmp_path: Path, edit, message: str) -> None:
    p = tmp_path / "bad.json"
    p.write_bytes(saved.read_bytes())
    resign(p, edit)
    with pytest.raises(SplitFileError, match=message) as info:
        load_splitfile(p)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(SplitFileError, match="not valid UTF-8 JSON"):
        load_splitfile(tmp_path / "x.json")
    with pytest.raises(SplitFileError, match="does not exist"):
        load_splitfile(tmp_path / "missing.json")


def test_check_against_other_dataset_version(saved: Path, manifest: Manifest) -> None:
    sf = load_splitfile(saved)
    sf.check_against(manifest)
    other = subset(manifest, list(range(len(manifest) - 1)))
    with pytest.raises(SplitFileError, match="fingerprint"):
        sf.check_against(other)


def test_verify_reports_every_problem(saved: Path, manifest: Manifest) -> None:
    sf = load_splitfile(saved)
    assert verify(sf, manifest) == []
    support = sf.ladder[1].episodes[5][0]
    cls = sorted(support)[0]
    dropped = support[cls][0]
    gone = min(set(sf.ladder[2].removed) & set(sf.ladder[0].train) & set(sf.ladder[1].train))
    keep = [
        i
        for i, (p, c) in enumerate(zip(manifest.paths, manifest.labels, strict=True))
        if p != dropped and c != gone
    ]
    broken = subset(manifest, keep)
    problems = verify(sf, broken)
    text = "\n".join(problems)
    assert "fingerprint" in text
    assert f"class {cls!r}: split file says 20 images, dataset has 19" in text
    assert re.search(rf"split 2: \d+ episode image\(s\) not in the dataset, e.g. '{dropped}'", text)
    assert f"class {gone!r}: split file says 20 images, dataset has no such class" in text
    for i in (1, 2, 3):
        assert f"split {i}: 1 class(es) not in the dataset, e.g. {gone!r}" in text
    assert len(problems) == 7


def test_verify_checks_distances_against_features(saved: Path, manifest: Manifest) -> None:
    from oodml.features import FeatureSet
    from oodml.stats.class_stats import ClassStats

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(len(manifest), 6)).astype(np.float32)
    fs = FeatureSet(
        feats,
        manifest.labels,
        manifest.paths,
        "efficientnet-lite0",
        "ab" * 32,
        manifest.fingerprint,
    )
    stats = ClassStats.from_features(feats, manifest.labels)
    sf = load_splitfile(saved)
    true = [distance_within(stats, s.train, s.test, mode="class-means") for s in sf.ladder]
    fixed = replace(
        sf, ladder=[replace(s, distance=d) for s, d in zip(sf.ladder, true, strict=True)]
    )
    assert verify(fixed, manifest, fs) == []
    problems = verify(sf, manifest, fs)
    assert [p.split(":")[0] for p in problems] == ["split 1", "split 2", "split 3"]
    other = FeatureSet(
        feats, manifest.labels, manifest.paths, "resnet50", "cd" * 32, manifest.fingerprint
    )
    assert "extractor 'resnet50'" in verify(fixed, manifest, other)[0]
    # a ladder generated with another eps is checked with that eps
    wide = [distance_within(stats, s.train, s.test, mode="class-means", eps=0.5) for s in sf.ladder]
    with_eps = replace(
        sf,
        params={**sf.params, "eps": 0.5},
        ladder=[replace(s, distance=d) for s, d in zip(sf.ladder, wide, strict=True)],
    )
    assert abs(wide[0] - true[0]) > 0.01 * true[0]
    increasing = [] if is_strictly_increasing(wide) else [
        "ladder distances are not strictly increasing (easiest split first)"]
    assert verify(with_eps, manifest, fs) == increasing


def test_train_val_split_sizes_disjoint_seeded() -> None:
    classes = [f"c{i:02d}" for i in range(10)]
    a = train_val_split(classes, 0.25, np.random.default_rng(1))
    assert (len(a[0]), len(a[1])) == (7, 3)
    assert set(a[0]).isdisjoint(a[1]) and set(a[0]) | set(a[1]) == set(classes)
    assert a == train_val_split(classes[::-1], 0.25, np.random.default_rng(1))
    vals = {train_val_split(classes, 0.25, np.random.default_rng(s))[1] for s in range(10)}
    assert len(vals) > 5
    assert train_val_split(["a", "b"], 0.1, np.random.default_rng(0))[1] != ()
    assert train_val_split(["a"], 0.25, np.random.default_rng(0)) == (("a",), ())
    with pytest.raises(ConfigError, match="validation fraction"):
        train_val_split(classes, 1.0, np.random.default_rng(0))


def test_episodes_support_query_and_skip_rule(manifest: Manifest) -> None:
    cp = dict(paths_by_class(manifest.labels, manifest.paths))
    test = sorted(cp)[:6]
    cp[test[0]] = cp[test[0]][:4]
    eps, skipped = few_shot_episodes(test, cp, (10, 2, 5), 4, np.random.default_rng(0))
    assert sorted(eps) == [2, 5, 10]
    assert skipped == {5: (test[0],), 10: (test[0],)}
    for shots, episodes in eps.items():
        assert len(episodes) == 4
        for ep in episodes:
            assert set(ep) == set(test).difference(skipped.get(shots, ()))
            for cls, support in ep.items():
                assert len(support) == len(set(support)) == shots
                assert set(support) <= set(cp[cls])
                query = set(cp[cls]).difference(support)
                assert len(query) == len(cp[cls]) - shots >= 1
        assert len({tuple(ep[test[1]]) for ep in episodes}) > 1
    again, _ = few_shot_episodes(test[::-1], cp, (2, 5, 10), 4, np.random.default_rng(0))
    assert again == eps
    counts = Counter(p for ep in eps[2] for s in ep.values() for p in s)
    assert max(counts.values()) < 4


def test_start_classes_default_or_seeded_halves(manifest: Manifest) -> None:
    default = (manifest.default_train, manifest.default_test)
    assert start_classes(manifest, "auto", 0) == start_classes(manifest, "default", 7) == default
    tr, te = start_classes(manifest, "random", 1)
    assert set(tr).isdisjoint(te) and len(tr) == len(te) == 68
    assert (tr, te) != default
    assert start_classes(manifest, "random", 1) == (tr, te) != start_classes(manifest, "random", 2)
    no_default = replace(manifest, default_train=(), default_test=())
    assert start_classes(no_default, "auto", 1) == (tr, te)
    with pytest.raises(ConfigError, match="unknown start 'middle'"):
        start_classes(manifest, "middle", 0)
