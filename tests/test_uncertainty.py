"""Bootstrap intervals of split distances: exact fast replicates, coverage, narrowing,
deterministic bytes, the optional ``distance_ci`` field and overlapping levels."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from oodml.errors import ConfigError, SplitFileError
from oodml.splits.paired import with_paired
from oodml.splits.splitfile import (
    PairedDiff,
    Split,
    SplitFile,
    dumps,
    load_splitfile,
    loads,
    overlapping_levels,
    save_splitfile,
)
from oodml.splits.uncertainty import (
    _means_replicate_dense,
    _MeansGram,
    bootstrap_ci,
    bootstrap_distances,
    draw_counts,
    interval_from_replicates,
    ladder_cis,
    with_distance_cis,
)
from oodml.stats.class_stats import ClassStats
from oodml.stats.gaussian import frechet_distance_samples
from oodml.stats.modes import distance_within

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "splits" / "omniglot_small1_efficientnet-lite0_class-means_greedy.json"


def class_features(n_a: int, n_b: int, dim: int, shift: float, per_class: int, seed: int,
                   spread: float = 1.0):
    """Classes whose means are N(0, spread^2 I) (side a) and N(shift e_1, spread^2 I) (side b);
    each class has ``per_class`` images around its mean. Returns (stats, a names, b names)."""
    rng = np.random.default_rng(seed)
    centres = spread * rng.standard_normal((n_a + n_b, dim))
    centres[n_a:, 0] += shift
    names = [f"c{i:04d}" for i in range(n_a + n_b)]
    x = np.repeat(centres, per_class, axis=0) + 0.3 * rng.standard_normal(
        ((n_a + n_b) * per_class, dim))
    labels = np.repeat(names, per_class).tolist()
    stats = ClassStats.from_features(x, labels)
    stats.images = {c: x[i * per_class:(i + 1) * per_class] for i, c in enumerate(names)}
    return stats, names[:n_a], names[n_a:]


@pytest.mark.parametrize("eps", [1e-8, 0.0, 0.5])
@pytest.mark.parametrize(("n_a", "n_b", "dim"), [(30, 25, 64), (12, 9, 200), (40, 35, 20)])
def test_fast_replicate_equals_distance_on_duplicated_classes(
    eps: float, n_a: int, n_b: int, dim: int
) -> None:
    stats, a, b = class_features(n_a, n_b, dim, 2.0, 3, seed=n_a)
    ia, ib = stats.indices(a), stats.indices(b)
    rng = np.random.default_rng(1)
    wa, wb = draw_counts(rng, n_a, 4), draw_counts(rng, n_b, 4)
    fast = _MeansGram(stats.means[ia], stats.means[ib], eps)
    for r in range(4):
        rows_a = stats.means[np.repeat(ia, wa[r])]
        rows_b = stats.means[np.repeat(ib, wb[r])]
        ref = frechet_distance_samples(rows_a, rows_b, eps=eps)
        assert fast.distance(wa[r], wb[r]) == pytest.approx(ref, rel=1e-7, abs=1e-9)
        dense = _means_replicate_dense(stats.means[ia], stats.means[ib], wa[r], wb[r], eps)
        assert dense == pytest.approx(ref, rel=1e-7, abs=1e-9)


def test_single_class_drawn_on_one_side() -> None:
    stats, a, b = class_features(6, 5, 10, 1.0, 2, seed=3)
    ia, ib = stats.indices(a), stats.indices(b)
    wa = np.array([6, 0, 0, 0, 0, 0])
    wb = np.array([1, 1, 1, 1, 1])
    ref = frechet_distance_samples(stats.means[np.repeat(ia, wa)], stats.means[ib], eps=1e-8)
    got = _MeansGram(stats.means[ia], stats.means[ib], 1e-8).distance(wa, wb)
    assert got == pytest.approx(ref, rel=1e-7)


def test_samples_mode_resamples_whole_classes_with_their_images() -> None:
    stats, a, b = class_features(5, 4, 6, 1.5, 4, seed=2)
    reps = bootstrap_distances(stats, a, b, mode="samples", n_boot=3, rng=9)
    rng = np.random.default_rng(9)
    wa, wb = draw_counts(rng, 5, 3), draw_counts(rng, 4, 3)
    for r in range(3):
        xa = np.concatenate([stats.images[c] for c, k in zip(a, wa[r], strict=True)
                             for _ in range(k)])
        xb = np.concatenate([stats.images[c] for c, k in zip(b, wb[r], strict=True)
                             for _ in range(k)])
        assert reps[r] == pytest.approx(frechet_distance_samples(xa, xb), rel=1e-8)


def test_interval_contains_estimate_and_narrows_as_classes_are_added() -> None:
    widths = []
    for n in (15, 60, 240):
        stats, a, b = class_features(n, n, 6, 3.0, 2, seed=n)
        point = distance_within(stats, a, b)
        split = Split(id=1, distance=point, is_start=True, train=tuple(a), test=tuple(b))
        lo, hi = bootstrap_ci(stats, split, "class-means", None, 200, seed=0)
        assert lo < point < hi
        widths.append(hi - lo)
    # a bootstrap interval shrinks like 1 / sqrt(classes): 4x the classes, about half the width
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.7 * widths[1] < 0.7**2 * widths[0]
    # known distance: mean shift 3 along e_1, equal covariances -> 9; the large case covers it
    assert lo < 9.0 < hi


def test_bias_corrected_interval_is_centred_on_the_estimate() -> None:
    reps = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    lo, hi = interval_from_replicates(5.0, reps, level=0.5)
    # quantiles 11 and 13, bias 12 - 5 = 7
    assert (lo, hi) == pytest.approx((4.0, 6.0))
    with pytest.raises(ConfigError, match="level"):
        interval_from_replicates(5.0, reps, level=1.5)


def synthetic_splitfile(stats: ClassStats, a: list[str], b: list[str], seed: int) -> SplitFile:
    ladder = []
    for i, k in enumerate((0, 3, 6), start=1):
        tr, te = a[k:] + b[:k], b[k:] + a[:k]
        ladder.append(Split(id=i, distance=distance_within(stats, tr, te), is_start=i == 1,
                            train=tuple(tr), test=tuple(te)))
    return SplitFile(
        dataset_name="synthetic", dataset_fingerprint=None, class_counts=None,
        extractor="none", weights_sha256=None, distance_mode="class-means",
        procedure="greedy", params={}, seed=seed, ladder=ladder,
    )


def test_same_seed_gives_identical_bytes_and_the_field_round_trips(tmp_path: Path) -> None:
    stats, a, b = class_features(20, 20, 8, 1.0, 2, seed=4)
    sf = synthetic_splitfile(stats, a, b, seed=7)
    ticks = []
    one = with_distance_cis(sf, ladder_cis(stats, sf, n_boot=50, tick=lambda: ticks.append(1)))
    assert len(ticks) == 50 * len(sf.ladder)  # one per replicate: the progress bar's total
    two = with_distance_cis(sf, ladder_cis(stats, sf, n_boot=50))
    assert dumps(one) == dumps(two)
    other = with_distance_cis(sf, ladder_cis(stats, replace(sf, seed=8), n_boot=50))
    assert dumps(other) != dumps(one)
    path = save_splitfile(one, tmp_path / "ladder.json")
    back = load_splitfile(path)
    assert [s.distance_ci for s in back.ladder] == [s.distance_ci for s in one.ladder]
    assert back.sha256 == one.sha256 and path.read_bytes() == dumps(back)
    for s in back.ladder:
        assert s.distance_ci[0] < s.distance < s.distance_ci[1]


def test_files_without_intervals_keep_their_bytes() -> None:
    """The published file (with intervals) round-trips byte for byte; without intervals the
    field is absent from the bytes (older files keep their sha256) and round-trips too."""

    sf = load_splitfile(PUBLISHED)
    assert all(s.distance_ci is not None for s in sf.ladder)
    assert dumps(sf) == PUBLISHED.read_bytes()
    bare = replace(sf, ladder=[replace(s, distance_ci=None) for s in sf.ladder])
    data = dumps(bare)
    assert b"distance_ci" not in data
    again = loads(data, "bare.json")
    assert all(s.distance_ci is None for s in again.ladder) and dumps(again) == data
    assert overlapping_levels(again) == []


def test_bad_interval_is_a_one_line_error() -> None:
    doc = json.loads(PUBLISHED.read_bytes())
    doc["ladder"][0]["distance_ci"] = [5.0, 1.0]
    with pytest.raises(SplitFileError, match=r"ladder\[0\]\.distance_ci must be \[low, high\]"):
        loads(json.dumps(doc).encode(), "x.json", check_sha=False)


def test_overlapping_adjacent_levels() -> None:
    stats, a, b = class_features(10, 10, 4, 1.0, 2, seed=0)
    sf = synthetic_splitfile(stats, a, b, seed=0)
    cis = [(0.0, 2.0), (1.5, 3.0), (3.5, 4.0)]
    marked = with_distance_cis(sf, cis)
    assert overlapping_levels(marked) == [(1, 2)]
    partial = replace(marked, ladder=[marked.ladder[0], replace(marked.ladder[1], distance_ci=None),
                                      marked.ladder[2]])
    assert overlapping_levels(partial) == []


def test_bad_input() -> None:
    stats, a, b = class_features(4, 4, 3, 1.0, 2, seed=0)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        bootstrap_distances(stats, a[:1], b)
    with pytest.raises(ConfigError, match="unknown distance mode"):
        bootstrap_distances(stats, a, b, mode="pixels")
    with pytest.raises(ConfigError, match=">= 1"):
        bootstrap_distances(stats, a, b, n_boot=0)


def test_ladder_plot_draws_the_intervals_as_error_bars() -> None:
    from matplotlib.container import ErrorbarContainer

    from oodml.report.ladder import plot_ladder

    stats, a, b = class_features(10, 10, 4, 1.0, 2, seed=0)
    sf = synthetic_splitfile(stats, a, b, seed=0)
    sf = replace(sf, ladder=[replace(s, distance=d)
                             for s, d in zip(sf.ladder, (1.0, 2.5, 3.75), strict=True)])
    sf = with_distance_cis(sf, [(0.0, 2.0), (1.5, 3.0), (3.5, 4.0)])
    ax = plot_ladder(sf).axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1
    segments = bars[0].lines[2][0].get_segments()
    assert [tuple(seg[:, 1]) for seg in segments] == [(0.0, 2.0), (1.5, 3.0), (3.5, 4.0)]
    assert ax.get_title(loc="left") == ""  # no paired differences: no statement
    paired = with_paired(sf, [PairedDiff(1.5, 0.5, 2.5, 0.0), PairedDiff(1.25, -0.2, 2.7, 0.08)],
                         200)
    title = plot_ladder(paired).axes[0].get_title(loc="left")
    assert "2-3 (p 0.16)" in title and "1-2" not in title and "Holm" in title
    plain = plot_ladder(synthetic_splitfile(stats, a, b, seed=0)).axes[0]
    assert not [c for c in plain.containers if isinstance(c, ErrorbarContainer)]
