"""Paired class-bootstrap differences between the splits of a ladder: a hand-computed case
(1-D class means, exact bootstrap distribution by enumeration), both exact routes against
duplicated rows, Holm, level selection, the split-file field, the published Omniglot ladder
and a coverage simulation with a known population difference."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from oodml.errors import ConfigError, SplitFileError
from oodml.splits.paired import (
    PairedLadder,
    adjacent_diffs,
    holm,
    ladder_paired,
    ladder_test,
    pair_p_values,
    paired_diff,
    separated_chain,
    supported_levels,
    with_paired,
)
from oodml.splits.splitfile import PairedDiff, Split, SplitFile, dumps, load_splitfile, loads
from oodml.splits.uncertainty import (
    _gram_distance,
    _seed_sequence,
    bootstrap_distances,
    interval_from_replicates,
)
from oodml.stats.class_stats import ClassStats
from oodml.stats.gaussian import frechet_distance_samples
from oodml.stats.modes import distance_within

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "splits" / "omniglot_small1_efficientnet-lite0_class-means_greedy.json"
EPS = 1e-8

# --- a hand-computed case: 1-D class means, two splits that differ by one class ------------

VALUES = np.array([0.0, 1.0, 3.0, 4.0, 6.0, 9.0, 10.0, 14.0])
SPLIT_1 = ([0, 1, 2, 3], [4, 5, 6, 7])
SPLIT_2 = ([0, 1, 2, 3, 4], [5, 6, 7])  # class 4 moved from test to train


def one_d_distance(idx: list[int], w: np.ndarray, jdx: list[int]) -> float:
    """(mu_a - mu_b)^2 + (sigma_a - sigma_b)^2 of the weighted 1-D class means, eps added to
    both variances: the Fréchet distance of two 1-D Gaussians, written out by hand."""
    out = []
    for side in (idx, jdx):
        wk = w[side].astype(float)
        y = VALUES[side]
        n = wk.sum()
        mu = (wk * y).sum() / n
        var = (wk * (y - mu) ** 2).sum() / (n - 1) + EPS
        out.append((mu, var))
    (ma, va), (mb, vb) = out
    return (ma - mb) ** 2 + (math.sqrt(va) - math.sqrt(vb)) ** 2


def one_d_stats() -> ClassStats:
    names = [f"c{i}" for i in range(len(VALUES))]
    return ClassStats.from_features(VALUES[:, None], names)


@pytest.mark.parametrize("route", ["gram", "dense"])
def test_replicate_equals_the_hand_computed_1d_distances(route: str) -> None:
    stats = one_d_stats()
    engine = PairedLadder(stats, [SPLIT_1, SPLIT_2], eps=EPS, route=route)
    for w in (np.ones(8, dtype=int), np.array([2, 0, 1, 1, 0, 3, 0, 1]),
              np.array([0, 3, 1, 0, 2, 1, 1, 0])):
        got = engine.distances(w)
        want = [one_d_distance(*SPLIT_1[:1], w, SPLIT_1[1]), one_d_distance(SPLIT_2[0], w,
                                                                            SPLIT_2[1])]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    # the full data by hand: split 1 means 2 and 39/4, variances 10/3 and 131/12
    d1 = (2.0 - 9.75) ** 2 + (math.sqrt(10 / 3 + EPS) - math.sqrt(131 / 12 + EPS)) ** 2
    # split 2: train {0, 1, 3, 4, 6} mean 2.8, var 5.7; test {9, 10, 14} mean 11, var 7
    d2 = (2.8 - 11.0) ** 2 + (math.sqrt(5.7 + EPS) - math.sqrt(7.0 + EPS)) ** 2
    assert engine.distances(np.ones(8, dtype=int)) == pytest.approx([d1, d2], rel=1e-9)


def exact_bootstrap() -> tuple[np.ndarray, np.ndarray]:
    """Every count vector of 8 draws from 8 classes with its multinomial probability, kept
    when each side of both splits has two distinct classes; the paired differences."""
    diffs, probs = [], []
    for bars in itertools.combinations(range(15), 7):  # stars and bars: 6435 compositions
        cuts = (-1, *bars, 15)
        w = np.array([cuts[i + 1] - cuts[i] - 1 for i in range(8)])
        sides = [*SPLIT_1, *SPLIT_2]
        if any(np.count_nonzero(w[s]) < 2 for s in sides):
            continue
        p = math.factorial(8) / np.prod([math.factorial(int(k)) for k in w]) / 8**8
        diffs.append(one_d_distance(SPLIT_2[0], w, SPLIT_2[1])
                     - one_d_distance(SPLIT_1[0], w, SPLIT_1[1]))
        probs.append(p)
    probs = np.array(probs)
    return np.array(diffs), probs / probs.sum()


def test_paired_bootstrap_matches_the_exact_enumerated_distribution() -> None:
    stats = one_d_stats()
    engine = PairedLadder(stats, [SPLIT_1, SPLIT_2], eps=EPS)
    full = engine.distances(np.ones(8, dtype=int))
    estimate = float(full[1] - full[0])
    diffs, probs = exact_bootstrap()
    mean = float(probs @ diffs)
    exact_flip = float(probs @ ((estimate + diffs - mean) <= 0)) if estimate > 0 else float(
        probs @ ((estimate + diffs - mean) >= 0))
    reps = engine.replicates(600, rng=5)
    got = paired_diff(estimate, reps[:, 1] - reps[:, 0])
    se = math.sqrt(max(exact_flip * (1 - exact_flip), 1e-4) / 600)
    assert abs(got.flip - exact_flip) < 4 * se
    assert float((reps[:, 1] - reps[:, 0]).mean()) == pytest.approx(
        mean, abs=4 * math.sqrt(float(probs @ (diffs - mean) ** 2) / 600))
    order = np.argsort(diffs)
    cdf = np.cumsum(probs[order])
    q_lo = diffs[order][np.searchsorted(cdf, 0.025)] - (mean - estimate)
    q_hi = diffs[order][np.searchsorted(cdf, 0.975)] - (mean - estimate)
    width = q_hi - q_lo
    assert got.low == pytest.approx(q_lo, abs=0.1 * width)
    assert got.high == pytest.approx(q_hi, abs=0.1 * width)


# --- both routes against duplicated rows ---------------------------------------------------


def random_ladder(n: int, dim: int, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n, dim))
    centres[n // 2:, 0] += 2.0
    names = [f"k{i:03d}" for i in range(n)]
    x = np.repeat(centres, per_class, axis=0) + 0.3 * rng.standard_normal((n * per_class, dim))
    stats = ClassStats.from_features(x, np.repeat(names, per_class).tolist())
    half = n // 2
    splits = [(names[:half], names[half:]),
              (names[:half - 2] + names[half:half + 2], names[half + 2:] + names[half - 2:half]),
              (names[2:half - 2] + names[half:half + 2], names[half + 2:] + names[half - 2:half])]
    return stats, splits


@pytest.mark.parametrize("route", ["gram", "dense"])
def test_class_means_routes_equal_the_distance_of_duplicated_means(route: str) -> None:
    stats, splits = random_ladder(24, 16, 2, seed=1)
    engine = PairedLadder(stats, splits, route=route)
    w = engine.draw(np.random.default_rng(3))
    for k, (a, b) in enumerate(splits):
        ia, ib = stats.indices(a), stats.indices(b)
        ref = frechet_distance_samples(stats.means[np.repeat(ia, w[ia])],
                                       stats.means[np.repeat(ib, w[ib])], eps=EPS)
        assert engine.distances(w)[k] == pytest.approx(ref, rel=1e-7)


def test_samples_mode_resamples_whole_classes_with_their_images() -> None:
    stats, splits = random_ladder(12, 5, 3, seed=2)
    engine = PairedLadder(stats, splits, mode="samples")
    w = engine.draw(np.random.default_rng(4))
    feats = np.asarray(stats.features)
    for k, (a, b) in enumerate(splits):
        rows = [np.concatenate([feats[stats._rows[c]] for c in stats.indices(side)
                                for _ in range(w[c])]) for side in (a, b)]
        assert engine.distances(w)[k] == pytest.approx(frechet_distance_samples(*rows), rel=1e-8)


# --- Holm, level selection, file field -----------------------------------------------------


def test_holm_adjusted_p_values_by_hand() -> None:
    # sorted 0.01, 0.02, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.02), max(0.04, 0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.6, 0.6]) == pytest.approx([1.0, 1.0])  # 2 x 0.6 capped at 1


def test_supported_levels_and_the_chosen_chain() -> None:
    d = [0.0, 1.0, 2.0, 3.0, 4.0]
    p = np.ones((5, 5))
    for i in range(5):
        for j in range(i + 1, 5):
            p[i, j] = 0.0 if j - i >= 2 else 0.3  # only pairs two steps apart separate
    assert supported_levels(p, 0.95) == 3
    assert separated_chain(d, p, 0.95, 3) == [0, 2, 4]
    assert separated_chain(d, p, 0.95, 4) == []
    # Bonferroni threshold for 2 pairs at 0.95 is 0.025: p = 0.02 separates, 0.03 does not
    p[0, 2], p[2, 4] = 0.02, 0.03
    assert separated_chain(d, p, 0.95, 3) == []
    assert supported_levels(p, 0.95) == 2
    p[2, 4] = 0.02
    assert separated_chain(d, p, 0.95, 3) == [0, 2, 4]


def test_pair_p_values_agree_with_paired_diff() -> None:
    rng = np.random.default_rng(0)
    reps = rng.standard_normal((300, 4)) + np.array([0.0, 0.5, 3.0, 3.1])
    d = [0.0, 0.5, 3.0, 3.1]
    p = pair_p_values(d, reps)
    for i, j in [(0, 1), (0, 3), (2, 3)]:
        assert p[i, j] == pytest.approx(paired_diff(d[j] - d[i], reps[:, j] - reps[:, i]).p_value)


def small_file(stats: ClassStats, splits, seed: int = 0) -> SplitFile:
    ladder = [Split(id=i, distance=distance_within(stats, a, b), is_start=i == 1, train=tuple(a),
                    test=tuple(b)) for i, (a, b) in enumerate(splits, start=1)]
    return SplitFile(dataset_name="synthetic", dataset_fingerprint=None, class_counts=None,
                     extractor="none", weights_sha256=None, distance_mode="class-means",
                     procedure="greedy", params={}, seed=seed, ladder=ladder)


def test_field_round_trips_and_old_files_keep_their_bytes() -> None:
    stats, splits = random_ladder(24, 16, 2, seed=1)
    sf = small_file(stats, splits)
    assert b"vs_previous" not in dumps(sf) and b"uncertainty" not in dumps(sf)
    diffs = ladder_paired(stats, sf, n_boot=50)
    marked = with_paired(sf, diffs, 50)
    again = loads(dumps(marked), "x.json")
    assert dumps(again) == dumps(marked)
    assert again.ladder[0].vs_previous is None
    assert [s.vs_previous for s in again.ladder[1:]] == [
        PairedDiff(*(float(f"{v:.12g}") for v in (d.diff, d.low, d.high, d.flip))) for d in diffs]
    assert again.uncertainty == {"paired_bootstraps": 50}
    assert ladder_paired(stats, sf, n_boot=50) == diffs  # seeded: reproducible
    test = ladder_test(again)
    assert test is not None and len(test.pairs) == 2


def test_bad_paired_field_is_a_one_line_error() -> None:
    stats, splits = random_ladder(24, 16, 2, seed=1)
    sf = with_paired(small_file(stats, splits), [PairedDiff(1.0, 0.5, 2.0, 0.0)] * 2, 10)
    doc = json.loads(dumps(sf))
    doc["ladder"][1]["vs_previous"]["flip_probability"] = 3.0
    with pytest.raises(SplitFileError, match=r"ladder\[1\]\.vs_previous\.flip_probability"):
        loads(json.dumps(doc).encode(), "x.json", check_sha=False)
    doc["ladder"][1]["vs_previous"] = {"diff": 1.0, "ci": [2.0, 1.0], "flip_probability": 0.0}
    with pytest.raises(SplitFileError, match=r"vs_previous\.ci must be \[low, high\]"):
        loads(json.dumps(doc).encode(), "x.json", check_sha=False)


def test_bad_input() -> None:
    stats, splits = random_ladder(12, 4, 1, seed=0)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        PairedLadder(stats, [(splits[0][0][:1], splits[0][1])])
    with pytest.raises(ConfigError, match="unknown distance mode"):
        PairedLadder(stats, splits, mode="pixels")
    with pytest.raises(ConfigError, match=">= 1"):
        PairedLadder(stats, splits).replicates(0)


# --- the published Omniglot ladder ---------------------------------------------------------


def test_published_ladder_paired_intervals_are_narrow_and_exclude_zero(omniglot_features):
    """Against the same ladder's marginal replicates (each split resampled on its own, as the
    ``distance_ci`` intervals are): the unpaired interval of a difference is wider than the
    paired one, and the paired one excludes zero on every adjacent pair."""
    manifest, features = omniglot_features
    stats = ClassStats.from_features(features.features, features.labels)
    sf = load_splitfile(PUBLISHED)
    diffs = ladder_paired(stats, sf, n_boot=200)
    marginal = [bootstrap_distances(stats, s.train, s.test, n_boot=200,
                                    rng=np.random.default_rng(_seed_sequence(sf.seed, s.id)))
                for s in sf.ladder]
    for k, d in enumerate(diffs):
        lo, hi = interval_from_replicates(d.diff, marginal[k + 1] - marginal[k])
        assert d.high - d.low < hi - lo
        assert d.low > 0.0 and d.flip == 0.0
    assert ladder_test(with_paired(sf, diffs, 200)).all_separated
    # the published file stores these very values (it regenerates byte-identically)
    assert [s.vs_previous for s in sf.ladder[1:]] == [
        PairedDiff(*(float(f"{v:.12g}") for v in (d.diff, d.low, d.high, d.flip)))
        for d in diffs]


def test_imported_file_without_a_seed_gets_the_recorded_fixed_seed(omniglot_features, tmp_path):
    """An imported ooDML pickle has seed None. Its distance intervals and paired differences
    are drawn with DEFAULT_SEED (0), recorded in the file as uncertainty.bootstrap_seed, so
    they equal those of the same ladder with seed 0: the published file's stored marginal
    intervals exactly, and the published ladder's paired differences. A recorded seed is what
    a later recomputation uses; an explicit seed overrides it."""
    from dataclasses import replace

    from oodml.splits.oodml_pickle import export_oodml, import_oodml
    from oodml.splits.splitfile import DEFAULT_SEED, round_float, save_splitfile
    from oodml.splits.uncertainty import bootstrap_seed, ladder_cis, with_distance_cis

    manifest, features = omniglot_features
    stats = ClassStats.from_features(features.features, features.labels)
    published = load_splitfile(PUBLISHED)
    assert published.seed == DEFAULT_SEED == 0
    short = replace(published, ladder=published.ladder[:3])
    imported = import_oodml(export_oodml(short, tmp_path / "study.pkl"), manifest=manifest)
    assert imported.seed is None and bootstrap_seed(imported) == 0
    assert [s.distance for s in imported.ladder] == [s.distance for s in short.ladder]

    cis = ladder_cis(stats, imported, n_boot=200)
    assert [tuple(round_float(v) for v in ci) for ci in cis] == [
        s.distance_ci for s in short.ladder]
    diffs = ladder_paired(stats, imported, n_boot=40)
    assert diffs == ladder_paired(stats, short, n_boot=40)
    assert diffs != ladder_paired(stats, imported, n_boot=40, seed=5)

    done = with_paired(with_distance_cis(imported, cis), diffs, 40)
    assert done.uncertainty == {"bootstrap_seed": 0, "paired_bootstraps": 40}
    again = load_splitfile(save_splitfile(done, tmp_path / "imported.json"))
    assert again.uncertainty["bootstrap_seed"] == 0 and again.seed is None
    # a recorded seed is reused; seeded files whose intervals used their own seed record none
    reseeded = with_paired(done, ladder_paired(stats, done, n_boot=40, seed=5), 40, seed=5)
    assert bootstrap_seed(reseeded) == 5
    assert ladder_paired(stats, reseeded, n_boot=40) == ladder_paired(stats, short, n_boot=40,
                                                                      seed=5)
    assert "bootstrap_seed" not in with_distance_cis(short, cis).uncertainty
    with pytest.raises(SplitFileError, match="bootstrap_seed"):
        bootstrap_seed(replace(done, uncertainty={"bootstrap_seed": "0"}))


# --- coverage with a known population difference -------------------------------------------


def coverage(reps: int, n_boot: int, seed: int, route: str = "auto") -> float:
    """Share of ``reps`` 95% paired intervals covering the population difference.

    Classes: 3-d means, 40 of type A ~ N(0, I), 30 of B1 ~ N(mu1, I), 30 of B2 ~ N(mu2, I).
    Split 1 trains on A and tests on B1 (B2 removed), split 2 trains on A and tests on B2;
    equal covariances, so the population distances are |mu1|^2 = 4 and |mu2|^2 = 9 and the
    population difference is 5. ``route``: the PairedLadder route of the replicates."""
    rng = np.random.default_rng(seed)
    mu1, mu2 = np.array([2.0, 0, 0]), np.array([0, 3.0, 0])
    names = [f"c{i:03d}" for i in range(100)]
    a, b1, b2 = names[:40], names[40:70], names[70:]
    hits = 0
    for _ in range(reps):
        x = rng.standard_normal((100, 3))
        x[40:70] += mu1
        x[70:] += mu2
        stats = ClassStats.from_features(x, names)
        engine = PairedLadder(stats, [(a, b1), (a, b2)], route=route)
        est = engine.distances(np.ones(100, dtype=int))
        r = engine.replicates(n_boot, rng)
        lo, hi = interval_from_replicates(est[1] - est[0], r[:, 1] - r[:, 0])
        hits += lo <= 5.0 <= hi
    return hits / reps


def test_paired_interval_covers_the_population_difference() -> None:
    """A short run of the coverage simulation (benchmarks/bench_paired.py runs 200
    repetitions with B = 200 and checks [90%, 99%]): 50 repetitions, B = 100, nominal 95%;
    the bound 84% is 3.5 binomial standard deviations below 95%."""
    assert 0.84 <= coverage(50, 100, seed=11) <= 1.0


def test_adjacent_diffs_sign_and_count() -> None:
    reps = np.array([[1.0, 2.0, 2.5], [1.2, 2.1, 2.4], [0.9, 1.8, 2.6]])
    diffs = adjacent_diffs([1.0, 2.0, 2.5], reps)
    assert [d.diff for d in diffs] == pytest.approx([1.0, 0.5])
    assert all(d.low <= d.diff <= d.high for d in diffs)


# --- --separation ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory):
    from oodml.data import load_dataset
    from oodml.features import get_features
    from oodml.train.synthetic import make_synthetic_study

    study = make_synthetic_study(tmp_path_factory.mktemp("separation"), n_classes=40,
                                 per_class=3, dim=12, noise=0.5, seed=3)
    manifest = load_dataset("imagefolder", study.root)
    return study, manifest, get_features(manifest, study.extractor, cache_dir=study.cache_dir)


def test_separation_picks_separated_levels_and_records_the_choice(synthetic_dataset):
    from oodml.splits.generate import LadderConfig, generate_splitfile

    _, manifest, fs = synthetic_dataset
    sf = generate_splitfile(manifest, fs, LadderConfig(separation=0.95, bootstrap=100,
                                                       shots=(1,), episodes=1))
    supported = sf.selection["supported_levels"]
    assert sf.selection["separation"] == 0.95 and len(sf.ladder) == supported >= 2
    test = ladder_test(sf)
    assert test is not None and test.all_separated
    # the stored differences are the ladder's own paired bootstrap
    stats = ClassStats.from_features(fs.features, fs.labels)
    assert [s.vs_previous for s in sf.ladder[1:]] == [
        PairedDiff(*(float(f"{v:.12g}") for v in (d.diff, d.low, d.high, d.flip)))
        for d in ladder_paired(stats, sf, n_boot=100)]
    fewer = generate_splitfile(manifest, fs, LadderConfig(separation=0.95, bootstrap=100,
                                                          levels=2, shots=(1,), episodes=1))
    assert len(fewer.ladder) == 2 and ladder_test(fewer).all_separated
    with pytest.raises(ConfigError, match=rf"^separation=0.95: the walk supports {supported} "
                                          rf"levels .* not {supported + 1}; ask for "
                                          rf"levels={supported} or fewer"):
        generate_splitfile(manifest, fs, LadderConfig(separation=0.95, bootstrap=100,
                                                      levels=supported + 1, shots=(1,),
                                                      episodes=1))


# --- the linear route ----------------------------------------------------------------------


def _linear_case(dim: int = 40) -> tuple[ClassStats, list]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, dim)) * rng.uniform(0.5, 2.0, dim)
    x[18:] += 1.0
    names = [f"c{i:02d}" for i in range(30)]
    return (ClassStats.from_features(x, names),
            [(names[:12], names[12:24]), (names[:10], names[14:30])])


@pytest.mark.parametrize("dim", [40, 5])
def test_influences_equal_central_differences_of_the_distance(dim: int) -> None:
    """IF_c against (d(1 + h e_c) - d(1 - h e_c)) / 2h of the eps-free Gram distance, with
    more feature dimensions than classes and with fewer (X rank-deficient)."""
    stats, splits = _linear_case(dim)
    engine = PairedLadder(stats, splits, route="linear")
    _, infl = engine.influences()
    h = 1e-5
    for k, (ia, ib) in enumerate(engine.sides):
        for c in (*ia[:3], *ib[:3]):
            vals = []
            for sign in (1.0, -1.0):
                w = np.ones(len(stats.classes))
                w[c] += sign * h
                vals.append(_gram_distance(engine.gram, ia, w[ia], ib, w[ib], 0.0))
            assert infl[c, k] == pytest.approx((vals[0] - vals[1]) / (2 * h), rel=1e-6, abs=1e-8)
        outside = np.setdiff1d(np.arange(len(stats.classes)), np.concatenate([ia, ib]))
        assert not infl[outside, k].any()


def test_linear_replicates_are_the_first_order_expansion_on_the_same_draws() -> None:
    """The linear route draws the same class counts as the exact one, its replicate is
    d + (w - 1) . IF, and the gap to the exact distance shrinks as the square of the step."""
    stats, splits = _linear_case()
    exact, linear = PairedLadder(stats, splits), PairedLadder(stats, splits, route="linear")
    est, infl = linear.influences()
    assert np.allclose(est, exact.distances(np.ones(len(stats.classes), dtype=int)), rtol=1e-12)
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    draws = np.stack([exact.draw(rng_a) for _ in range(7)])
    assert np.allclose(linear.replicates(7, rng_b), est + (draws - 1.0) @ infl, rtol=1e-12)
    step = np.random.default_rng(6).standard_normal(len(stats.classes))
    gaps = [np.abs(exact.distances(1.0 + t * step) - (est + t * step @ infl)).max()
            for t in (0.02, 0.01)]
    assert 3.0 < gaps[0] / gaps[1] < 5.0


def test_linear_route_coverage() -> None:
    """The linear route's replicates are cheap: 100 repetitions x B = 200, nominal 95%; 87% is
    3.5 binomial standard deviations below (benchmarks/bench_paired.py --coverage runs 200)."""
    assert 0.87 <= coverage(100, 200, seed=11, route="linear") <= 1.0


def test_generate_linear_records_the_route(synthetic_dataset):
    from oodml.splits.generate import LadderConfig, generate_splitfile

    _, manifest, fs = synthetic_dataset
    cfg = {"bootstrap": 50, "levels": 3, "shots": (1,), "episodes": 1}
    exact = generate_splitfile(manifest, fs, LadderConfig(**cfg))
    linear = generate_splitfile(manifest, fs, LadderConfig(paired="linear", **cfg))
    assert "paired_route" not in exact.uncertainty
    assert linear.uncertainty["paired_route"] == "linear"
    assert [s.train for s in linear.ladder] == [s.train for s in exact.ladder]
    stats = ClassStats.from_features(fs.features, fs.labels)
    assert [s.vs_previous for s in linear.ladder[1:]] == [
        PairedDiff(*(float(f"{v:.12g}") for v in (d.diff, d.low, d.high, d.flip)))
        for d in ladder_paired(stats, linear, n_boot=50)]
    assert "linear" in ladder_test(linear).statement(50)
    with pytest.raises(ConfigError, match="paired='linear' expands"):
        LadderConfig(paired="linear", mode="samples")
    with pytest.raises(ConfigError, match="paired='fast' must be one of"):
        LadderConfig(paired="fast")


def test_separation_options_are_checked() -> None:
    from oodml.splits.generate import LadderConfig

    with pytest.raises(ConfigError, match=r"separation=1.5 must be a confidence level"):
        LadderConfig(separation=1.5)
    with pytest.raises(ConfigError, match="needs the paired bootstrap"):
        LadderConfig(separation=0.95, bootstrap=0)
    with pytest.raises(ConfigError, match="separation and targets"):
        LadderConfig(separation=0.95, targets=(1.0, 2.0))
    assert LadderConfig(separation=0.9).levels is None


def test_cli_separation_error_is_one_line_and_writes_nothing(synthetic_dataset, tmp_path, capsys):
    from oodml_cli import main

    study, _, _ = synthetic_dataset
    out = tmp_path / "sep.json"
    with pytest.raises(SystemExit) as exc:
        main(["splits", "generate", "imagefolder", "--root", str(study.root), "--out", str(out),
              "--separation", "0.95", "--levels", "39", "--bootstrap", "50", "--shots", "1",
              "--episodes", "1", "--cache", str(study.cache_dir)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exc.value.code == 2 and not out.exists() and "Traceback" not in err
    assert len(errors) == 1 and "the walk supports" in errors[0] and "not 39" in errors[0]
