"""Measure registry: frechet bit for bit, KID against torch-fidelity, W2 against a brute-force
assignment, FID_inf against a hand fit, and one-line errors for bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from oodml.errors import ConfigError
from oodml.stats.class_stats import ClassStats
from oodml.stats.measures import MEASURES, get_measure, parse_measures
from oodml.stats.measures.fid_inf import fid_inf, fit_sizes
from oodml.stats.measures.kid import kid_values
from oodml.stats.measures.w2_classes import EXACT, w2
from oodml.stats.modes import distance_mode, distance_within


def stats_of(seed: int, n_classes: int = 12, per_class: int = 4, dim: int = 5,
             counts: list[int] | None = None) -> ClassStats:
    rng = np.random.default_rng(seed)
    counts = counts or [per_class] * n_classes
    labels = [f"c{i:02d}" for i, n in enumerate(counts) for _ in range(n)]
    shift = np.repeat(rng.normal(size=(len(counts), dim)), counts, axis=0)
    x = (rng.normal(size=(len(labels), dim)) * 0.5 + shift).astype(np.float32)
    return ClassStats.from_features(x, labels)


def test_registry_lists_every_measure_and_rejects_unknown_ones() -> None:
    assert MEASURES.names() == ["fid-inf", "frechet", "kid", "w2-classes"]
    with pytest.raises(ConfigError) as e:
        get_measure("fld")
    msg = str(e.value)
    assert "\n" not in msg and "'fld'" in msg
    assert all(n in msg for n in ("frechet", "kid", "fid-inf", "w2-classes"))
    assert parse_measures("kid, fid-inf,kid") == ("kid", "fid-inf")
    with pytest.raises(ConfigError, match="unknown measure 'nope'"):
        parse_measures("kid,nope")
    with pytest.raises(ConfigError, match="names no measure"):
        parse_measures(" , ")


@pytest.mark.parametrize("mode", ["class-means", "samples"])
def test_frechet_is_todays_distance_bit_for_bit(mode: str) -> None:
    st = stats_of(0)
    ia, ib = st.indices(["c00", "c03", "c05", "c07", "c09"]), st.indices(["c01", "c02", "c04"])
    m = get_measure("frechet")
    if mode == "class-means":
        today = st.means_distance().distance(ia, ib)
    else:
        today = distance_within(st, ia, ib, mode="samples")
    assert m(st, ia, ib, mode).value == today
    ev = m.evaluator(st, ia, ib, mode)
    assert ev(ia, ib) == distance_mode(mode).evaluator(st, ia, ib, None)(ia, ib)
    # a multiset (bootstrap draw) is the Fréchet distance of the repeated atoms
    dup = np.array([0, 0, 3, 5])
    from oodml.stats.gaussian import frechet_distance_samples
    ref = frechet_distance_samples(st.means[dup], st.means[ib], eps=1e-8)
    assert m(st, dup, ib, "class-means").value == pytest.approx(ref, rel=1e-12)


def tf_kid(x: np.ndarray, y: np.ndarray, subsets: int, size: int, seed: int) -> tuple[float, float]:
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kid_features_to_metric,
    )

    out = kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(y), kid_subsets=subsets,
                                 kid_subset_size=size, rng_seed=seed, verbose=False)
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD]


@pytest.mark.parametrize(("nx", "ny", "dim", "size"), [(60, 45, 16, 45), (300, 250, 32, 100)])
def test_kid_equals_torch_fidelity(nx: int, ny: int, dim: int, size: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(nx, dim))
    y = rng.normal(size=(ny, dim)) * 1.1 + 0.2
    for seed in (0, 7):
        ours = kid_values(x, y, subsets=20, subset_size=size, seed=seed)
        mean, std = tf_kid(x, y, 20, size, seed)
        assert ours.mean() == pytest.approx(mean, rel=1e-6)
        assert ours.std() == pytest.approx(std, rel=1e-6)


def test_kid_measure_adapts_the_subset_size_and_matches_torch_fidelity() -> None:
    st = stats_of(2, n_classes=20, per_class=6, dim=8)
    ia, ib = np.arange(0, 12), np.arange(12, 20)
    v = get_measure("kid")(st, ia, ib, "class-means")
    mean, std = tf_kid(st.means[ia], st.means[ib], 100, 8, 0)
    assert v.value == pytest.approx(mean, rel=1e-6) and v.spread == pytest.approx(std, rel=1e-6)
    # order-free: the same classes listed in another order give the same value
    assert get_measure("kid")(st, ia[::-1], ib[::-1], "class-means").value == v.value
    vs = get_measure("kid")(st, ia, ib, "samples")
    lab = np.repeat(np.arange(20), 6)
    x = st.features.astype(np.float64)
    xa = np.concatenate([x[lab == i] for i in ia])
    xb = np.concatenate([x[lab == i] for i in ib])
    mean, std = tf_kid(xa, xb, 100, 48, 0)
    assert vs.value == pytest.approx(mean, rel=1e-6) and vs.spread == pytest.approx(std, rel=1e-6)


def test_kid_of_identical_sides_is_zero_in_expectation() -> None:
    """Unbiased: both sides from one distribution average to ~0 (the biased MMD^2 would be
    clearly positive: its diagonal term is about E k(x, x) / m)."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(400, 6)), rng.normal(size=(400, 6))
    v = kid_values(x, y, subsets=50, subset_size=100)
    assert abs(v.mean()) < 3 * v.std() / math.sqrt(50) + 1e-12
    biased = []
    for j in range(4):
        xs, ys = x[100 * j:100 * (j + 1)], y[100 * j:100 * (j + 1)]
        k = (np.concatenate([xs, ys]) @ np.concatenate([xs, ys]).T / 6 + 1) ** 3
        biased.append(k[:100, :100].mean() + k[100:, 100:].mean() - 2 * k[:100, 100:].mean())
    assert min(biased) > 0 and abs(v.mean()) < 0.2 * np.mean(biased)


def test_w2_equals_brute_force_assignment() -> None:
    """Equal weights and equal atom counts: the optimal plan is a permutation (Birkhoff), so
    W2^2 is the cheapest assignment's mean squared distance."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.3
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    perms = np.array(list(itertools.permutations(range(7))))
    best = cost[np.arange(7), perms].mean(axis=1).min()
    value, solver = w2(x, y, np.ones(7), np.ones(7))
    assert solver == EXACT
    assert value == pytest.approx(math.sqrt(best), rel=1e-10)


def test_w2_classes_weights_classes_by_images() -> None:
    # three train classes, two of them with one image, the third with 4; two test classes
    st = stats_of(5, counts=[1, 1, 4, 2, 2], dim=2)
    v = get_measure("w2-classes")(st, [0, 1, 2], [3, 4], "class-means")
    assert v.solver == EXACT
    import ot

    a, b = np.array([1, 1, 4]) / 6, np.array([0.5, 0.5])
    m = ot.dist(st.means[[0, 1, 2]], st.means[[3, 4]])
    assert v.value == pytest.approx(math.sqrt(ot.emd2(a, b, m)), rel=1e-9)
    # the entropic route is marked and lies above the exact value
    x, y = st.means[[0, 1, 2]], st.means[[3, 4]]
    ent, solver = w2(x, y, [1, 1, 4], [2, 2], exact_max_pairs=1)
    assert "sinkhorn" in solver and ent >= v.value * (1 - 1e-6)


def test_fid_inf_recovers_the_intercept_of_a_line() -> None:
    """With FID_N from the fit's own points the intercept and residual are least squares'."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(30, 5)) + 1.0
    value, resid, pts = fid_inf(x, y, eps=0.0)
    assert [n for n, _ in pts] == fit_sizes(30) == [15, 19, 22, 26, 30]
    inv = np.array([1 / n for n, _ in pts])
    f = np.array([v for _, v in pts])
    slope, icpt = np.polyfit(inv, f, 1)
    assert value == pytest.approx(icpt, rel=1e-10)
    assert resid == pytest.approx(np.sqrt(np.mean((f - (icpt + slope * inv)) ** 2)), rel=1e-8)
    # FID_N of Gaussians is biased upward: the extrapolation lies below the full-size value
    assert value < pts[-1][1]


@pytest.mark.parametrize("name", ["frechet", "kid", "fid-inf", "w2-classes"])
def test_too_small_side_is_one_line_never_nan(name: str) -> None:
    st = stats_of(7)
    m = get_measure(name)
    need = m.min_atoms("class-means")
    with pytest.raises(ConfigError) as e:
        m(st, np.arange(need - 1), np.arange(6, 12), "class-means")
    assert "\n" not in str(e.value) and f"at least {need}" in str(e.value)
    v = m(st, np.arange(need), np.arange(6, 12), "class-means")
    assert math.isfinite(v.value)


def test_degenerate_features_give_a_line_not_nan() -> None:
    x = np.zeros((12, 4), dtype=np.float32)
    st = ClassStats.from_features(x, [f"c{i % 6}" for i in range(12)])
    for name in MEASURES:
        v = get_measure(name)(st, [0, 1, 2], [3, 4, 5], "samples")
        assert math.isfinite(v.value) and abs(v.value) < 1e-9


def test_size_warnings() -> None:
    fr = get_measure("frechet")
    assert fr.size_warnings(40, 40, "class-means", 1280) == []
    w = fr.size_warnings(40, 40, "samples", 1280, images=(800, 900))
    assert len(w) == 1 and "800 images in 1280 dimensions" in w[0]
    fi = get_measure("fid-inf")
    w = fi.size_warnings(3, 40, "class-means", 1280)
    assert len(w) == 1 and "fid-inf" in w[0] and str(fi.stable_classes) in w[0]


def test_fid_inf_in_the_span_equals_fid_inf_in_full_dimension() -> None:
    """The fit's distances are computed in the span of the atoms (fewer atoms than
    dimensions); the same draws in the full dimension give the same FID_N."""
    from oodml.stats.gaussian import frechet_distance_samples
    from oodml.stats.measures.fid_inf import DRAWS

    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(12, 40)), rng.normal(size=(10, 40)) * 1.2 + 0.1
    for eps in (0.0, 1e-8):
        _, _, pts = fid_inf(x, y, eps=eps)
        draw = np.random.default_rng(0)
        for size, mean in pts:
            vals = []
            for _ in range(DRAWS):
                a = np.sort(draw.choice(12, size, replace=False))
                b = np.sort(draw.choice(10, size, replace=False))
                vals.append(frechet_distance_samples(x[a], y[b], eps=eps))
            assert mean == pytest.approx(np.mean(vals), rel=1e-9)
