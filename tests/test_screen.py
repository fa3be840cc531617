"""The greedy walk's low-rank candidate screen (oodml.stats.root_sum, oodml.splits.screen)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla

from oodml.splits.ladder import run_procedure, start_split
from oodml.splits.screen import GramScreen, perp
from oodml.stats.class_stats import ClassStats
from oodml.stats.root_sum import RootSum

from reference import frechet_rows


def _root_sum(m: np.ndarray) -> float:
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(m), 0.0, None)).sum())


def _spread_matrix(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return rng.standard_normal((rows, cols)) * rng.uniform(0.05, 20.0, cols)


def test_root_sum_after_rank_four_updates_matches_eigvalsh():
    """sum sqrt eig(s M + Z C Z^T) for the swap-shaped updates (g + P Q^T)(g + P Q^T)^T of
    M = g g^T equals the dense eigenvalues' to 1e-12, at scale 1 and 1.7."""
    rng = np.random.default_rng(0)
    g = _spread_matrix(rng, 50, 64)
    m = g @ g.T
    root = RootSum(m)
    n = 9
    p, q = rng.standard_normal((n, 50, 2)), rng.standard_normal((n, 64, 2))
    z = np.concatenate([p, np.einsum("ab,jbk->jak", g, q)], axis=2)
    c = np.zeros((n, 4, 4))
    c[:, :2, :2] = q.transpose(0, 2, 1) @ q
    c[:, [0, 1, 2, 3], [2, 3, 0, 1]] = 1.0
    zt = np.einsum("ab,jbk->jak", root.u.T, z)
    for scale in (1.0, 1.7):
        got = root.after_update(zt, c, scale)
        want = [_root_sum(scale * m + z[j] @ c[j] @ z[j].T) for j in range(n)]
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # the unscaled ones are the nuclear norms of the changed matrices
    nuclear = [sla.svdvals(g + p[j] @ q[j].T).sum() for j in range(n)]
    np.testing.assert_allclose(root.after_update(zt, c), nuclear, rtol=1e-12)
    # an update far above M's spectrum: the top eigenvalue pushed up 1e6 times (the upper
    # tail's scale follows the update; with mean(l) it was off by 2e-9)
    top, l_top = root.u[:, -1:], root.lam[-1]
    push = np.array([[[(1e6 - 1.0) * l_top]]])
    want = _root_sum(m + push[0, 0, 0] * top @ top.T)
    np.testing.assert_allclose(root.after_update((root.u.T @ top)[None], push), [want],
                               rtol=1e-11)


def test_root_sum_after_deletion_matches_the_compressed_matrix():
    """Deleting direction w: the eigenvalues of M on w^perp (an explicit orthonormal basis of
    it), scaled, to 1e-12; the deleted matrix has one eigenvalue fewer."""
    rng = np.random.default_rng(1)
    g = _spread_matrix(rng, 40, 45)
    m = g @ g.T
    root = RootSum(m)
    w = rng.standard_normal((40, 6))
    w[:, 0] = 0.0
    w[3, 0] = 1.0  # a coordinate direction, as a class removal's
    w /= np.linalg.norm(w, axis=0)
    got = root.after_deletion(root.u.T @ w, 2.5)
    want = []
    for j in range(w.shape[1]):
        basis = np.linalg.qr(np.column_stack([w[:, j], rng.standard_normal((40, 39))]))[0][:, 1:]
        want.append(_root_sum(2.5 * basis.T @ m @ basis))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_root_sum_refuses_singular_and_flags_what_its_nodes_cannot_reach():
    """A singular M is refused (callers go dense); an update that pushes an eigenvalue far
    below M's smallest (beyond the quadrature's reach) comes back NaN, never a wrong value."""
    rng = np.random.default_rng(2)
    g = _spread_matrix(rng, 20, 19)
    with pytest.raises(np.linalg.LinAlgError):
        RootSum(g @ g.T)
    g = _spread_matrix(rng, 20, 30)
    root = RootSum(g @ g.T)
    u0, l0 = root.u[:, :1], root.lam[0]
    # N = M - (l0 - 1e-30 l0) u0 u0^T: its smallest eigenvalue is 1e-30 l0
    c = np.array([[[-(l0 - 1e-30 * l0)]]])
    got = root.after_update((root.u.T @ u0)[None], c)
    assert np.isnan(got[0])
    # a moderate push stays exact
    c = np.array([[[-0.5 * l0]]])
    want = _root_sum(g @ g.T - 0.5 * l0 * u0 @ u0.T)
    np.testing.assert_allclose(root.after_update((root.u.T @ u0)[None], c), [want], rtol=1e-12)


def test_perp_is_an_orthonormal_basis_of_the_zero_sum_vectors():
    n = 7
    e = perp(np.eye(n))
    assert e.shape == (n - 1, n)
    np.testing.assert_allclose(e @ e.T, np.eye(n - 1), atol=1e-15)
    np.testing.assert_allclose(e @ np.ones(n), 0.0, atol=1e-14)


def _clustered_means(rng: np.random.Generator, classes: int, dim: int) -> np.ndarray:
    centres = rng.standard_normal((8, dim)) * 3.0
    return (centres[rng.integers(0, 8, classes)]
            + rng.standard_normal((classes, dim)) * rng.uniform(0.2, 1.0, dim))


def _count_dense(monkeypatch) -> list[int]:
    """Candidate counts of every dense screen call from now on."""
    calls: list[int] = []
    real = GramScreen._dense
    monkeypatch.setattr(GramScreen, "_dense",
                        lambda self, ia, ib: calls.append(len(ia)) or real(self, ia, ib))
    return calls


@pytest.mark.parametrize("n1,n2", [(40, 40), (30, 45), (45, 28)])
def test_gram_screen_low_rank_route_matches_the_reference(n1, n2, monkeypatch):
    """Swaps and single removals from either side, around a split with n1 = n2, n1 < n2 and
    n1 > n2: the low-rank values equal the svdvals reference to 1e-9 relative, none falls
    back, and candidates of any other shape get exactly the dense route's values.

    Both routes work with g g^T, so a singular value s of g' carries an absolute error of
    ~eps s_max^2 / s (one candidate here has s = 1.3e-4 with s_max = 590: 1e-7 of a
    distance of 540); the dense route also adds sqrt(rounding noise) for each zero
    eigenvalue, which the low-rank route, free of the centring's null direction, does not."""
    rng = np.random.default_rng(n1 * 100 + n2)
    means = _clustered_means(rng, n1 + n2 + 5, 300)
    screen = GramScreen(means)
    perm = rng.permutation(len(means))
    tr, te = [int(i) for i in perm[:n1]], [int(i) for i in perm[n1:n1 + n2]]
    swaps = []
    for pa in (0, 3, 7):
        for pb in (1, 2, 9):
            a, b = list(tr), list(te)
            a[pa], b[pb] = te[pb], tr[pa]
            swaps.append((a, b))
    outside = int(perm[-1])  # a class in neither side replaces one: still one change per side
    a, b = list(tr), list(te)
    a[5], b[4] = outside, tr[5]
    swaps.append((a, b))
    batches = [swaps]
    for side in (0, 1):
        batch = []
        for p in (0, 4, 11, n1 - 1 if side == 0 else n2 - 1):
            lists = [list(tr), list(te)]
            lists[side].pop(p)
            batch.append((lists[0], lists[1]))
        batches.append(batch)
    real = GramScreen._dense
    spy = _count_dense(monkeypatch)
    for batch in batches:
        trains, tests = [c[0] for c in batch], [c[1] for c in batch]
        got = screen(trains, tests, around=(tr, te))
        want = np.array([frechet_rows(means[a], means[b]) for a, b in batch])
        np.testing.assert_allclose(got, want, rtol=1e-9)
        dense = real(screen, np.asarray(trains), np.asarray(tests))
        np.testing.assert_allclose(dense, want, rtol=1e-6)
    assert spy == []
    two = list(tr)
    two[0], two[1] = te[0], te[1]
    three = [list(te[:2]) + two[2:]]
    got = screen(three, [te[2:] + tr[:2]], around=(tr, te))
    assert spy == [1]
    assert got[0] == real(screen, np.asarray(three), np.asarray([te[2:] + tr[:2]]))[0]


def test_gram_screen_goes_dense_where_it_cannot_update(monkeypatch):
    """A side form that is singular (two train classes with the same mean) and a removal batch
    whose other side is not the base's both take the dense route, with its values."""
    rng = np.random.default_rng(9)
    means = _clustered_means(rng, 30, 64)
    means[1] = means[0]
    screen = GramScreen(means)
    tr, te = list(range(12)), list(range(12, 26))
    real = GramScreen._dense
    spy = _count_dense(monkeypatch)
    a, b = list(tr), list(te)
    a[4], b[3] = te[3], tr[4]
    got = screen([a], [b], around=(tr, te))
    assert spy == [1] and got[0] == real(screen, np.asarray([a]), np.asarray([b]))[0]
    means = _clustered_means(rng, 30, 64)
    screen = GramScreen(means)
    other = list(te)
    other[0] = 29
    got = screen([tr[1:], tr[:-1]], [other, other], around=(tr, te))
    assert spy == [1, 2]
    np.testing.assert_array_equal(got, real(screen, np.asarray([tr[1:], tr[:-1]]),
                                            np.asarray([other, other])))


def _all_dense(self, ia, ib, base):
    return np.full(len(ia), np.nan)


def test_greedy_walk_is_the_same_with_the_low_rank_and_the_dense_screen(monkeypatch):
    """The walk's every step (classes and exact distances) is identical whether the screen
    updates one decomposition per split or solves every candidate densely: the two agree far
    closer than any two candidates of a batch."""
    rng = np.random.default_rng(5)
    means = _clustered_means(rng, 90, 256)
    stats = ClassStats.from_features(means, [f"c{i:03d}" for i in range(90)])
    tr, te = stats.classes[:45], stats.classes[45:]
    for params in ({}, {"removal": "any"}):
        with monkeypatch.context() as m:
            dense_calls = _count_dense(m)
            fast = run_procedure(stats, tr, te, procedure="greedy", params=params)
        # only the two walks' one-split start estimates go dense
        assert dense_calls == [1, 1]
        with monkeypatch.context() as m:
            m.setattr(GramScreen, "_low_rank", _all_dense)
            slow = run_procedure(stats, tr, te, procedure="greedy", params=params)
        assert len(fast.steps) > 20 and any(s.removed for s in fast.steps)
        assert fast.steps == slow.steps


def test_greedy_on_omniglot_features_is_the_same_with_either_screen(omniglot_features, monkeypatch):
    """On the real Omniglot efficientnet-lite0 class means (the published greedy file's data),
    the walk with the low-rank screen equals the dense screen's step for step."""
    _, features = omniglot_features
    stats = ClassStats.from_features(features.features, features.labels)
    tr, te = start_split(stats.classes, (), (), 0)
    screened: list[int] = []
    with monkeypatch.context() as m:
        dense_calls = _count_dense(m)
        real = GramScreen.__call__
        m.setattr(GramScreen, "__call__", lambda self, trains, tests, around=None: (
            screened.append(len(trains)) or real(self, trains, tests, around)))
        fast = run_procedure(stats, tr, te, procedure="greedy")
    # the start split's side form is singular here (eigenvalues 3e-13 .. 7e5), so the batches
    # made from it go dense; everything else takes the low-rank route
    assert sum(dense_calls) <= 0.05 * sum(screened)
    monkeypatch.setattr(GramScreen, "_low_rank", _all_dense)
    slow = run_procedure(stats, tr, te, procedure="greedy")
    assert len(fast.steps) > 20 and fast.steps == slow.steps
