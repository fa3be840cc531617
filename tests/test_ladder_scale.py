"""Large-problem routes of the class-means ladders (issue 13): running moments with rank-k
updates, the first-order candidate screen, and identity of the oodml walk with the frozen
previous implementation (direct refits of each Gaussian) on Omniglot and a synthetic case."""

from __future__ import annotations

import numpy as np
import pytest

import oodml.splits.ladder as ladder
import oodml.splits.ranking as ranking
import oodml.stats.means_distance as means_distance
from oodml.errors import ConfigError
from oodml.splits.ladder import run_procedure, start_split
from oodml.stats.class_stats import ClassStats
from oodml.stats.gaussian import frechet_distance_samples
from oodml.stats.means_distance import MeansDistance
from oodml.stats.means_screen import MeansScreen
from oodml.stats.modes import DISTANCE_MODES, distance_within

from reference import clustered, oodml_walk, row_basis

EPS = 1e-8


def direct(coords: np.ndarray, a, b, eps: float = EPS) -> float:
    """The previous implementation's distance: refit both Gaussians from their rows."""
    return frechet_distance_samples(coords[list(a)], coords[list(b)], eps=eps)


def span_coordinates(means: np.ndarray) -> np.ndarray:
    """The class means in an orthonormal basis of their centred span (C x rank instead of
    C x D). Fréchet distances between subsets, eps-regularised ones included, are unchanged:
    translation and rotation change no term, and each of the D - rank directions outside the
    span adds eps + eps - 2 sqrt(eps * eps) = 0. The reference walk then refits 135-d
    Gaussians instead of 1280-d ones (the previous implementation's own cost, not needed to
    check its steps)."""
    centred = means - means.mean(0)
    return centred @ row_basis(centred)


def assert_same_walk(traj, ref):
    assert sorted(s.index for s in traj.steps) == sorted(ref)
    for s in traj.steps:
        tr, te, rm, d = ref[s.index]
        assert (s.train, s.test, s.removed) == (tr, te, rm), s.index
        assert s.distance == pytest.approx(d, rel=1e-9, abs=1e-12), s.index


def wide(n_classes=90, dim=40, seed=0):
    """Class statistics of 3 images a class around 5 group centres."""
    x, labels = clustered(n_classes, 3, dim, groups=5, seed=seed, spread=3.0)
    return ClassStats.from_features(x, labels)


@pytest.fixture
def moments_route(monkeypatch):
    """Send every problem through the large-problem routes: running moments and anchors
    (normally rank > 512 only) and the bounded ranking heads (normally >= 16 classes a side)."""
    monkeypatch.setattr(means_distance, "MOMENTS_MIN_RANK", 0)
    monkeypatch.setattr(ranking, "FULL_BELOW", 0)


def test_running_moments_equal_direct_refits(moments_route, monkeypatch):
    monkeypatch.setattr(means_distance, "MOMENTS_REBUILD_UPDATES", 9)
    rng = np.random.default_rng(1)
    means = rng.standard_normal((120, 30)) * rng.uniform(0.3, 2.0, 30)
    md = MeansDistance(means)
    assert md.incremental and md.rank == 30  # C > D: centred means are the coordinates
    a, b = list(range(50)), list(range(50, 110))
    rebuilt = 0
    for step in range(40):
        d = md.distance(a, b)
        assert d == pytest.approx(direct(md.coords, a, b), rel=1e-9)
        rebuilt += md._updates == 0
        i, j = rng.integers(len(a)), rng.integers(len(b))
        a[i], b[j] = b[j], a[i]
        if step % 7 == 3:
            b.pop()
        if step % 11 == 5:
            a.append(110 + step // 11)
    assert rebuilt > 3  # the rebuild-after-many-updates path ran
    far = md.distance(list(range(60, 110)), list(range(60)))  # more moved than kept: rebuild
    assert far == pytest.approx(direct(md.coords, range(60, 110), range(60)), rel=1e-9)
    with pytest.raises(ConfigError, match="disjoint"):
        md.distance([0, 1, 2], [2, 3])


def assert_oodml_walk_as_before(stats, iterations):
    """The oodml walk from a seeded half/half start equals the reference walk, step by step."""
    train, test = start_split(stats.classes, (), (), seed=2)
    traj = run_procedure(stats, train, test, procedure="oodml",
                         params={"iterations": iterations})
    coords = stats.means - stats.means.mean(axis=0)
    ref = oodml_walk(stats.means, stats.classes, list(stats.indices(train)),
                          list(stats.indices(test)), iterations, 2, 5,
                          lambda a, b: direct(coords, a, b))
    assert_same_walk(traj, ref)
    assert traj.hardest.removed


def test_oodml_walk_identical_to_previous_implementation_synthetic(moments_route):
    stats = wide()
    assert_oodml_walk_as_before(stats, 10)
    assert stats.means_distance().incremental


def test_oodml_walk_identical_with_anchored_removals(moments_route, monkeypatch):
    """Many classes per dimension (as SOP: 11k per side in 2048-d; 32-d so that an anchor
    takes changes of up to 16 columns): swaps and removals are answered from anchors by
    low-rank updates; the walk is the previous implementation's."""
    stats = wide(n_classes=1200, dim=32, seed=5)
    calls = {"anchored": 0, "anchored removals": 0}
    real = means_distance.SplitAnchor.tau

    def spy(self, coords, a, b):
        got = real(self, coords, a, b)
        if got is not None:
            calls["anchored"] += 1
            calls["anchored removals"] += (a.n, b.n) != self.n
        return got

    monkeypatch.setattr(means_distance.SplitAnchor, "tau", spy)
    assert_oodml_walk_as_before(stats, 12)
    assert calls["anchored"] > 20 and calls["anchored removals"] > 3, calls
    assert stats.means_distance().anchors_built < calls["anchored"]


@pytest.mark.parametrize("route", ["default", "moments"])
def test_oodml_walk_identical_to_previous_implementation_omniglot(
    omniglot_features, monkeypatch, route
):
    """The full default walk on the real efficientnet-lite0 features, every step."""
    if route == "moments":
        monkeypatch.setattr(means_distance, "MOMENTS_MIN_RANK", 0)
        monkeypatch.setattr(ranking, "FULL_BELOW", 0)
    manifest, fs = omniglot_features
    stats = ClassStats.from_features(fs.features, fs.labels)
    train, test = start_split(stats.classes, manifest.default_train, manifest.default_test, None)
    traj = run_procedure(stats, train, test, procedure="oodml")
    assert stats.means_distance().incremental == (route == "moments")
    means = span_coordinates(stats.means)
    ref = oodml_walk(means, stats.classes, list(stats.indices(train)),
                          list(stats.indices(test)), 25, 2, 5,
                          lambda a, b: direct(means, a, b))
    assert_same_walk(traj, ref)


def test_greedy_walk_identical_through_the_large_problem_routes(monkeypatch):
    """Running moments, anchors and the bounded ranking heads change no step of a greedy walk
    (same Gram screen): class lists as the default route's, distances to 1e-9."""
    stats = wide(n_classes=120, dim=14, seed=6)
    train, test = start_split(stats.classes, (), (), seed=1)
    params = {"max_steps": 60, "removal": "any"}
    before = run_procedure(stats, train, test, params=params)
    monkeypatch.setattr(means_distance, "MOMENTS_MIN_RANK", 0)
    monkeypatch.setattr(ranking, "FULL_BELOW", 0)
    stats = wide(n_classes=120, dim=14, seed=6)  # fresh: no cached evaluator
    after = run_procedure(stats, train, test, params=params)
    assert stats.means_distance().incremental and stats.means_distance().anchors_built > 0
    assert any(s.removed for s in after.steps)
    assert [(s.index, s.train, s.test, s.removed) for s in after.steps] == [
        (s.index, s.train, s.test, s.removed) for s in before.steps]
    for s, r in zip(after.steps, before.steps, strict=True):
        assert s.distance == pytest.approx(r.distance, rel=1e-9)


def test_first_order_screen_anchor_and_transport_map(moments_route):
    stats = wide(n_classes=1200, dim=12, seed=3)
    md = stats.means_distance()
    screen = MeansScreen(md)
    a, b = list(range(0, 1200, 2)), list(range(1, 1200, 2))
    est = screen([a], [b])[0]
    assert est == pytest.approx(direct(md.coords, a, b), rel=1e-9)
    wa, wb = screen._anchor.w
    t, t_inv = wa.T @ wa, wb.T @ wb
    sa = np.cov(md.coords[a], rowvar=False) + EPS * np.eye(12)
    sb = np.cov(md.coords[b], rowvar=False) + EPS * np.eye(12)
    np.testing.assert_allclose(t @ t_inv, np.eye(12), atol=1e-9)
    np.testing.assert_allclose(t @ sa @ t, sb, rtol=1e-8, atol=1e-8 * np.abs(sb).max())


def _screen_error_ratio(copies: int) -> float:
    """|estimate - exact| / |exact - current| for moving one class across, on class means
    where every class appears ``copies`` times (the move is then a perturbation ~1/copies)."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((40, 6)) * np.array([3.0, 2.0, 1.5, 1.0, 0.7, 0.5])
    base[:20] += 1.5
    means = np.repeat(base, copies, axis=0)
    md = MeansDistance(means)
    screen = MeansScreen(md)
    a, b = list(range(0, 30 * copies)), list(range(30 * copies, 40 * copies))
    cur = screen([a], [b])[0]
    a2, b2 = a[1:], [*b, a[0]]
    exact = direct(md.coords, a2, b2)
    return abs(screen([a2], [b2])[0] - exact) / abs(exact - cur)


def test_first_order_screen_error_is_second_order(moments_route):
    # first order: the error relative to the change falls like 1/copies
    r1, r4, r16 = (_screen_error_ratio(k) for k in (1, 4, 16))
    assert r16 < r4 / 2.5 < r1 / 6
    assert r16 < 0.1


def test_greedy_with_the_first_order_screen_is_exact_and_increasing(moments_route, monkeypatch):
    monkeypatch.setattr(ladder, "SCREEN_MAX_CLASSES", 0)
    stats = wide(n_classes=80, dim=24, seed=4)
    train, test = start_split(stats.classes, (), (), seed=0)
    screens = []
    real = ladder.candidate_screen

    def spy(*args):
        screens.append(real(*args))
        return screens[-1]

    monkeypatch.setattr(ladder, "candidate_screen", spy)
    traj = run_procedure(stats, train, test, params={"max_steps": 25, "removal": "any"})
    assert isinstance(screens[0], MeansScreen) and screens[0].anchors > 1
    assert traj.is_strictly_increasing
    assert traj.easiest.distance < traj.start.distance < traj.hardest.distance
    coords = stats.means - stats.means.mean(axis=0)
    for s in traj.steps:
        assert s.distance == pytest.approx(
            direct(coords, stats.indices(s.train), stats.indices(s.test)), rel=1e-9
        )


def test_pooled_gaussian_bulk_start_equals_class_by_class():
    """Samples mode: a side of many classes starts from one Gram product over its rows."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((700, 9)) * 2 + 1
    labels = [f"k{i % 140:03d}" for i in range(700)]
    stats = ClassStats.from_features(x, labels)
    classes = stats.classes[:100]
    bulk = stats.pooled(classes)
    one = stats.pooled([])
    for c in classes:
        one.add(c)
    assert (bulk.n, bulk.classes) == (one.n, one.classes)
    np.testing.assert_allclose(bulk.mean, one.mean, rtol=1e-12)
    np.testing.assert_allclose(bulk.cov, one.cov, rtol=1e-10, atol=1e-12)
    rows = np.isin(labels, classes[1:])
    bulk.remove(classes[0])
    np.testing.assert_allclose(bulk.cov, np.cov(x[rows], rowvar=False), rtol=1e-10, atol=1e-12)
    with pytest.raises(ConfigError, match="listed twice"):
        stats.pooled([*classes, classes[0]])


def test_samples_steps_read_only_the_moved_classes(monkeypatch):
    """Samples mode (issue 13): after the start, a step reads the rows of the classes that
    moved and no others, so its cost does not grow with the images of the classes that stay."""
    rng = np.random.default_rng(9)
    sizes = rng.integers(2, 13, size=60)
    labels = [f"k{c:02d}" for c, n in enumerate(sizes) for _ in range(n)]
    x = rng.standard_normal((len(labels), 10)) + np.repeat(rng.standard_normal((60, 10)),
                                                         sizes, axis=0)
    stats = ClassStats.from_features(x, labels)
    stats._gram_cache_bytes = 0  # no cache: every Gram matrix read goes to the rows
    evaluator = DISTANCE_MODES["samples"].evaluator(stats, range(30), range(30, 60), None)
    read = []
    real = ClassStats._centred
    monkeypatch.setattr(ClassStats, "_centred", lambda self, i: read.append(i) or real(self, i))
    train, test = list(range(30)), list(range(30, 60))
    for step in range(8):
        moved = {train[step], test[step]}
        train[step], test[step] = test[step], train[step]
        if step % 3 == 2:
            moved.add(train.pop())
        read.clear()
        got = evaluator(train, test)
        assert set(read) == moved, step
        assert got == pytest.approx(distance_within(stats, train, test, mode="samples"), rel=1e-9)
