"""Split-ladder procedures and selection: hand-traced swaps, an independent re-implementation of
the published ooDML walk, greedy monotonicity, selection rules, determinism, samples mode."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from oodml.errors import ConfigError
from oodml.splits.ladder import Step, Trajectory, run_procedure, select_ladder, start_split
from oodml.splits.procedures import oodml_pick, oodml_swap_walk
from oodml.stats.class_stats import ClassStats
from oodml.stats.modes import distance_within

from reference import clustered, frechet_rows, oodml_walk

EPS = 1e-8


# --- the published pick rule, traced by hand -------------------------------------------------


def test_pick_walks_orders_in_lockstep_and_skips_history():
    hist_a, hist_b = [2], []
    # j=0: train 2 is in history, test 1 is free -> pb=1; j=1: train 0 free -> pa=0
    assert oodml_pick(np.array([2, 0, 1]), np.array([1, 0, 2]), 0, hist_a, hist_b, 5) == (0, 1)
    assert (hist_a, hist_b) == ([2, 0], [1])
    # k=1 starts at offset 1: train 0 taken, test 0 free; j=2: train 1 free
    assert oodml_pick(np.array([2, 0, 1]), np.array([1, 0, 2]), 1, hist_a, hist_b, 5) == (1, 0)
    # only the last H picks block: with H=1 position 2 (picked first) is free again
    assert oodml_pick(np.array([2, 0, 1]), np.array([1, 0, 2]), 0, [2, 0], [1], 1) == (2, 0)


def test_pick_stops_at_the_shorter_order():
    # the lockstep walk sees only min(len) entries: train position 2 is never reached
    assert oodml_pick(np.array([0, 1, 2]), np.array([0, 1]), 0, [0, 1], [], 5) == (None, 0)


def test_hand_traced_swap_sequence_six_classes():
    # train a(0,0) b(1,0) c(3,1); test d(8,0) e(5,1) f(9,0); s=1, H=1.
    v = np.array([[0, 0], [1, 0], [3, 1], [8, 0], [5, 1], [9, 0]], dtype=float)
    steps = oodml_swap_walk(v, lambda a, b: 0.0, [0, 1, 2], [3, 4, 5], iterations=4,
                            swaps_per_iter=1, history=1, reverse=False, phase="harder")
    lists = [(s.train, s.test) for s in steps]
    # it0: mu_tr=(4/3,1/3), mu_te=(22/3,1/3); a=(5.97, 5.87, 2.59) -> c; b=(5.93, 1.30, 5.97) -> e
    assert lists[1] == ((0, 1, 4), (3, 2, 5))
    # it1: a=(4.65, 4.62, -1.28): order 2,1,0 but position 2 was just picked -> 1 (b);
    #      b=(4.63, -2.52, 4.65): order 1,0,2, position 1 just picked -> 0 (d)
    assert lists[2] == ((0, 3, 4), (1, 2, 5))
    # it2: both means are (13/3, 1/3): all scores are exactly 0, the stable order is 0,1,2;
    #      train skips its last pick (1) -> 0 (a); test skips 0 -> 1 (c)
    assert lists[3] == ((2, 3, 4), (1, 0, 5))
    assert [s.index for s in steps] == [0, 1, 2, 3]


# --- the published walk against an independent re-implementation ----------------------------


def test_oodml_procedure_matches_independent_reimplementation():
    x, labels = clustered(n_classes=40, dim=6, seed=3)
    stats = ClassStats.from_features(x, labels)
    train, test = start_split(stats.classes, (), (), seed=1)
    traj = run_procedure(stats, train, test, procedure="oodml",
                         params={"iterations": 8, "swaps_per_iter": 2, "history": 3})
    means = stats.means
    ref = oodml_walk(means, stats.classes, list(stats.indices(train)), list(stats.indices(test)),
                     8, 2, 3, lambda tr, te: frechet_rows(means[tr], means[te], EPS))
    assert sorted(s.index for s in traj.steps) == sorted(ref)
    for s in traj.steps:
        tr, te, rm, d = ref[s.index]
        assert (s.train, s.test, s.removed) == (tr, te, rm), s.index
        assert s.distance == pytest.approx(d, rel=1e-7, abs=1e-9)
    assert sum(1 for s in traj.steps if s.is_start) == 1
    assert traj.hardest.removed  # the removal phase did remove classes
    assert not traj.is_strictly_increasing  # the published walk oscillates


def test_oodml_easier_walk_uses_reversed_orders():
    x, labels = clustered(n_classes=24, dim=5, seed=4)
    stats = ClassStats.from_features(x, labels)
    train, test = start_split(stats.classes, (), (), seed=2)
    traj = run_procedure(stats, train, test, procedure="oodml", params={"iterations": 6})
    easier = [s for s in traj.steps if s.phase == "easier"]
    assert [s.index for s in easier] == [-10, -8, -6, -4, -2]
    assert min(s.distance for s in easier) < traj.start.distance


# --- greedy ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clustered_stats():
    x, labels = clustered(n_classes=48, per_class=6, dim=16, groups=4, seed=7)
    return ClassStats.from_features(x, labels)


def test_greedy_is_strictly_monotone_and_beats_oodml(clustered_stats):
    stats = clustered_stats
    train, test = start_split(stats.classes, (), (), seed=0)
    oodml = run_procedure(stats, train, test, procedure="oodml")
    greedy = run_procedure(stats, train, test, procedure="greedy",
                           params={"max_removed_fraction": 0.5, "removal": "any"})
    d = greedy.distances
    assert greedy.is_strictly_increasing and np.all(np.diff(d) > 0)
    start = [s.index for s in greedy.steps].index(0)
    assert greedy.steps[start].is_start
    assert all(s.phase == "easier" for s in greedy.steps[:start])
    assert greedy.easiest.distance < greedy.start.distance < greedy.hardest.distance
    assert greedy.hardest.distance >= oodml.hardest.distance
    assert len(greedy.hardest.removed) <= len(oodml.hardest.removed)
    for s in greedy.steps[start:]:
        assert len(s.train) >= 6 and len(s.test) >= 6  # min_fraction 0.25 of 24
    assert len(greedy.hardest.removed) <= 24  # max_removed_fraction 0.5 of 48
    swaps_only = [s.distance for s in greedy.steps if not s.removed]
    # (the same split reached with the classes in another order may differ in the last bit)
    oodml_swaps = max(s.distance for s in oodml.steps if s.phase != "removal")
    assert max(swaps_only) >= oodml_swaps * (1 - 1e-12)


def test_greedy_without_the_screen_stays_monotone_and_exact(clustered_stats, monkeypatch):
    """The route for ladders too large to screen (SOP): candidates ranked by exact distances."""
    import oodml.splits.ladder as ladder

    stats = clustered_stats
    train, test = start_split(stats.classes, (), (), seed=3)
    monkeypatch.setattr(ladder, "SCREEN_MAX_CLASSES", 0)
    assert not ladder.screen_fits(stats)
    traj = run_procedure(stats, train, test, params={"max_steps": 12})
    assert traj.is_strictly_increasing and traj.hardest.distance > traj.start.distance
    for s in traj.steps:
        xa, xb = stats.means[stats.indices(s.train)], stats.means[stats.indices(s.test)]
        assert s.distance == pytest.approx(frechet_rows(xa, xb, EPS), rel=1e-7)


def test_greedy_distances_are_exact(clustered_stats):
    stats = clustered_stats
    train, test = start_split(stats.classes, (), (), seed=5)
    traj = run_procedure(stats, train, test, params={"max_steps": 15})
    for s in traj.steps:
        xa = stats.means[stats.indices(s.train)]
        xb = stats.means[stats.indices(s.test)]
        assert s.distance == pytest.approx(frechet_rows(xa, xb, EPS), rel=1e-7)
        assert not set(s.train) & set(s.test)
        assert set(s.train) | set(s.test) | set(s.removed) == set(stats.classes)


def test_same_seed_same_trajectory(clustered_stats):
    stats = clustered_stats
    runs = []
    for _ in range(2):
        tr, te = start_split(stats.classes, (), (), seed=11)
        runs.append(run_procedure(stats, tr, te, params={"max_steps": 10}))
    assert runs[0] == runs[1]
    assert start_split(stats.classes, (), (), seed=12) != start_split(stats.classes, (), (), 11)


# --- samples mode ---------------------------------------------------------------------------


@pytest.mark.parametrize("procedure", ["greedy", "oodml"])
def test_samples_mode_agrees_with_classstats(procedure):
    x, labels = clustered(n_classes=14, per_class=5, dim=4, groups=2, seed=9)
    stats = ClassStats.from_features(x, labels)
    train, test = start_split(stats.classes, (), (), seed=3)
    params = {"max_steps": 6} if procedure == "greedy" else {"iterations": 4}
    traj = run_procedure(stats, train, test, mode="samples", procedure=procedure, params=params)
    assert len(traj.steps) > 3
    for s in traj.steps:
        ref = distance_within(stats, s.train, s.test, mode="samples")
        assert s.distance == pytest.approx(ref, rel=1e-9, abs=1e-9)
        rows_a = np.isin(labels, s.train)
        rows_b = np.isin(labels, s.test)
        assert s.distance == pytest.approx(frechet_rows(x[rows_a], x[rows_b], 0.0), rel=1e-7)
    if procedure == "greedy":
        assert traj.is_strictly_increasing


# --- start split and errors -----------------------------------------------------------------


def test_start_split_default_and_random():
    classes = [f"k{i}" for i in range(9)]
    assert start_split(classes, ["k3", "k1"], ["k0", "k2"], None) == (("k1", "k3"), ("k0", "k2"))
    tr, te = start_split(classes, (), (), seed=4)
    assert len(tr) == 5 and len(te) == 4 and sorted(tr + te) == classes
    with pytest.raises(ConfigError, match="no default"):
        start_split(classes, (), (), None)
    with pytest.raises(ConfigError, match="both train and test"):
        start_split(classes, ["k1", "k2"], ["k2", "k3"], None)
    with pytest.raises(ConfigError, match="not in the feature set"):
        start_split(classes, ["k1", "zz"], ["k2", "k3"], None)


def test_bad_arguments_raise_config_errors(clustered_stats):
    stats = clustered_stats
    tr, te = start_split(stats.classes, (), (), seed=0)
    with pytest.raises(ConfigError, match="unknown ladder procedure"):
        run_procedure(stats, tr, te, procedure="nope")
    with pytest.raises(ConfigError, match="unknown distance mode"):
        run_procedure(stats, tr, te, mode="nope")
    with pytest.raises(ConfigError, match="unknown parameter 'swaps'"):
        run_procedure(stats, tr, te, procedure="oodml", params={"swaps": 3})
    with pytest.raises(ConfigError, match="min_fraction"):
        run_procedure(stats, tr, te, params={"min_fraction": 2})
    with pytest.raises(ConfigError, match="both train and test"):
        run_procedure(stats, tr, (*te, tr[0]))


# --- selection ------------------------------------------------------------------------------


def synthetic_trajectory(distances, start_at):
    steps = tuple(
        Step(i - start_at, "start" if i == start_at else "harder", ("a",), ("b",), (), float(d))
        for i, d in enumerate(distances)
    )
    return Trajectory("greedy", "class-means", {}, steps)


def test_select_evenly_spaced_with_start_forced():
    traj = synthetic_trajectory(np.arange(101.0), start_at=37)
    picked = select_ladder(traj, k=6)
    # even targets 0, 20, 40, 60, 80, 100; the start (37) takes the slot of 40
    assert [s.distance for s in picked] == [0, 20, 37, 60, 80, 100]
    assert [s.is_start for s in picked] == [False, False, True, False, False, False]


def test_select_uneven_candidates_and_duplicates():
    d = [5, 5, 6, 7, 30, 30, 31, 60, 61, 90, 100, 100]
    traj = synthetic_trajectory(d, start_at=3)
    picked = select_ladder(traj, k=5)
    dist = [s.distance for s in picked]
    # targets 5, 28.75, 52.5, 76.25, 100; start 7 is forced into the slot nearest it (slot 1)
    assert dist == [5, 7, 60, 90, 100]
    assert np.all(np.diff(dist) > 0)
    assert len(select_ladder(traj, k=50)) == len(set(d))


def test_select_non_monotone_trajectory_gives_increasing_ladder():
    rng = np.random.default_rng(0)
    traj = synthetic_trajectory(rng.uniform(0, 50, 40), start_at=10)
    picked = select_ladder(traj, k=8)
    dist = [s.distance for s in picked]
    assert len(picked) == 8 and np.all(np.diff(dist) > 0)
    assert dist[0] == traj.easiest.distance and dist[-1] == traj.hardest.distance
    assert sum(s.is_start for s in picked) == 1


def test_select_targets():
    traj = synthetic_trajectory(np.arange(0.0, 101.0, 2.0), start_at=20)  # start distance 40
    picked = select_ladder(traj, targets=[9.2, 55.1, 56.0, 500])
    assert [s.distance for s in picked] == [10, 40, 56, 100]
    with pytest.raises(ConfigError, match="finite"):
        select_ladder(traj, targets=[float("nan")])
    with pytest.raises(ConfigError, match="levels"):
        select_ladder(traj, k=0)


# --- real data ------------------------------------------------------------------------------


def test_real_omniglot_pixels_greedy_vs_oodml(omniglot_zip):
    """Class-means ladders on 8x8 pixel features of the 136 real Omniglot classes."""
    feats, labels = [], []
    with zipfile.ZipFile(omniglot_zip) as zf:
        for name in sorted(zf.namelist()):
            if not name.endswith(".png"):
                continue
            img = Image.open(io.BytesIO(zf.read(name))).convert("L").resize((8, 8))
            feats.append(np.asarray(img, dtype=np.float32).ravel() / 255.0)
            labels.append("/".join(name.split("/")[-3:-1]))
    stats = ClassStats.from_features(np.stack(feats), labels)
    assert len(stats.classes) == 136
    train, test = start_split(stats.classes, (), (), seed=0)
    oodml = run_procedure(stats, train, test, procedure="oodml")
    greedy = run_procedure(stats, train, test, procedure="greedy",
                           params={"max_removed_fraction": 0.6, "removal": "any"})
    assert greedy.is_strictly_increasing
    assert greedy.easiest.distance < greedy.start.distance == oodml.start.distance
    ladder = select_ladder(greedy, k=8)
    assert len(ladder) == 8 and sum(s.is_start for s in ladder) == 1
    assert np.all(np.diff([s.distance for s in ladder]) > 0)
    # at the oodml walk's removal count, greedy is at least as far
    n_rm = len(oodml.hardest.removed)
    reach = max(s.distance for s in greedy.steps if len(s.removed) <= n_rm)
    assert reach >= oodml.hardest.distance


def _screen_batch(rng, n_classes, n1, n2, batch):
    """Random disjoint (train, test) index lists: n1 train and n2 test classes each."""
    trains, tests = [], []
    for _ in range(batch):
        perm = rng.permutation(n_classes)
        trains.append(list(perm[:n1]))
        tests.append(list(perm[n1:n1 + n2]))
    return trains, tests


@pytest.mark.parametrize("shape", [(40, 12, 17, 9), (40, 20, 20, 2048), (30, 14, 9, 5)])
def test_gram_screen_is_the_eps_free_means_distance(shape):
    """The greedy screen's value of every split of a batch is the eps = 0 Fréchet distance of
    the two sets of class means (the low-rank route of frechet_distance_samples), for
    n1 < n2, n1 = n2 with D >> n, and n1 > n2 with D < n, and batches split across cores
    give the same values."""
    from oodml.splits import ladder
    from oodml.stats.gaussian import frechet_distance_samples

    n_classes, n1, n2, dim = shape
    rng = np.random.default_rng(n_classes + dim)
    centres = rng.standard_normal((4, dim)) * 3
    means = centres[rng.integers(0, 4, n_classes)] + rng.standard_normal((n_classes, dim))
    stats = ClassStats.from_features(means, [f"c{i:03d}" for i in range(n_classes)])
    screen = ladder.means_screen(stats)
    trains, tests = _screen_batch(rng, n_classes, n1, n2, 19)
    got = screen(trains, tests)
    want = np.array([frechet_distance_samples(stats.means[a], stats.means[b], eps=0.0)
                     for a, b in zip(trains, tests, strict=True)])
    # the screen takes sqrt of the clipped eigenvalues of G G^T: each of its n1 - rank zero
    # eigenvalues comes out as rounding noise ~ n1 eps sigma_max^2 and adds its sqrt (the
    # ranking only needs candidates' values consistent with each other)
    sigma_max = max(np.linalg.norm(
        (stats.means[a] - stats.means[a].mean(0)) @ (stats.means[b] - stats.means[b].mean(0)).T,
        2) / np.sqrt((n1 - 1) * (n2 - 1)) for a, b in zip(trains, tests, strict=True))
    zeros = n1 - min(n1 - 1, n2 - 1, dim)
    noise = 2.0 * zeros * np.sqrt(n1 * np.finfo(float).eps) * sigma_max
    assert np.abs(got - want).max() <= noise
    assert noise < 1e-4 * np.abs(want).min()
    one_by_one = np.concatenate([screen([a], [b]) for a, b in zip(trains, tests, strict=True)])
    assert np.array_equal(got, one_by_one)


def test_stacked_splits_rows_across_threads_without_changing_a_bit(monkeypatch):
    import oodml.stats.blas_threads as fr

    rng = np.random.default_rng(3)
    g = rng.standard_normal((23, 30, 30))
    calls = []

    def fn(x, y):
        calls.append(len(x))
        return np.linalg.eigvalsh(x @ x.transpose(0, 2, 1)) + y[:, None]

    y = rng.standard_normal(23)
    whole = fn(g, y)
    calls.clear()
    monkeypatch.setattr(fr, "_stack_pool", lambda: (fr.ThreadPoolExecutor(3), 3))
    split = fr.stacked(fn, g, y)
    assert sorted(calls) == [7, 8, 8]
    assert np.array_equal(split, whole)
    calls.clear()
    assert np.array_equal(fr.stacked(fn, g[:7], y[:7]), whole[:7]) and calls == [7]


def test_gram_screen_runs_its_stacked_eigenproblems_on_one_blas_thread(monkeypatch):
    """BLAS's own threads on top of the screen's one thread per core made the CUB-sized screen
    slower on 2 cores than on 1, so stacked holds BLAS to one thread while it hands the chunks
    to its workers, whoever calls it, and restores it after."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import oodml.stats.blas_threads as fr
    from oodml.splits import ladder

    rng = np.random.default_rng(5)
    means = rng.standard_normal((30, 16))
    stats = ClassStats.from_features(means, [f"c{i:03d}" for i in range(30)])
    seen = []

    class Pool(fr.ThreadPoolExecutor):
        def map(self, fn, *iterables):
            seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
            return super().map(fn, *iterables)

    monkeypatch.setattr(fr, "_stack_pool", lambda: (Pool(2), 2))
    trains, tests = _screen_batch(rng, 30, 10, 12, 9)
    with threadpool_limits(2, user_api="blas"):
        ladder.means_screen(stats)(trains, tests)
        after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert seen and set(seen) == {1}
    assert set(after) == {2}
