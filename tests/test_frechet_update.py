"""Issue 13: exact tr sqrt(S_a' S_b') after low-rank changes (oodml.stats.transport_anchor), the
anchored class-means evaluator built on it, and the exact ranking heads (oodml.splits.ranking)."""

from __future__ import annotations

import numpy as np
import pytest

import oodml.splits.ranking as ranking
import oodml.stats.means_distance as means_distance
from oodml.splits.ranking import Ranker, scores
from oodml.stats.gaussian import frechet_distance_samples, trace_sqrt_product
from oodml.stats.means_distance import MeansDistance
from oodml.stats.transport_anchor import TransportAnchor

EPS = 1e-8


def _cov(x: np.ndarray, eps: float = EPS) -> np.ndarray:
    c = np.cov(x, rowvar=False)
    c[np.diag_indices_from(c)] += eps
    return c


def _swap_change(x, x2, idx, n):
    """(U, c) with cov(x2) = cov(x) + U diag(c) U^T when rows ``idx`` of x became x2's."""
    s, s2 = x.sum(0), x2.sum(0)
    u = np.concatenate([x2[idx].T, x[idx].T, s2[:, None], s[:, None]], axis=1)
    k = len(idx)
    c = np.concatenate([np.ones(k), -np.ones(k), [-1.0 / n], [1.0 / n]]) / (n - 1)
    return u, c


@pytest.mark.parametrize(
    "dim,n,k,scale,spread",
    [(12, 60, 1, 1.0, 1.0), (50, 300, 3, 1.0, 1.0), (50, 300, 10, 1.0, 1.0),
     (160, 800, 6, 1.0, 1.0),
     (100, 600, 15, 1.0, 1.0),  # 2 x (2 k + 2) = 64 columns, the most an anchor takes
     (40, 400, 4, 1e3, 1.0), (40, 400, 4, 1e-3, 1.0),  # feature scales far from 1
     (40, 400, 4, 1.0, 80.0)],  # S_a S_b with a condition number near the 1e8 limit
)
def test_tau_after_low_rank_changes_equals_dense(dim, n, k, scale, spread):
    rng = np.random.default_rng(dim + k)
    widths = np.geomspace(1.0, 1.0 / spread, dim) if spread != 1.0 else rng.uniform(
        0.2, 1.5, dim)
    xa = rng.standard_normal((n, dim)) * widths * scale
    xb = (rng.standard_normal((n, dim)) * widths + 0.3) * scale
    anchor = TransportAnchor(_cov(xa), _cov(xb), EPS)
    if spread != 1.0:
        assert 1e7 < anchor.lam[-1] / anchor.lam[0] < 1e8
    assert anchor.tau == pytest.approx(trace_sqrt_product(_cov(xa), _cov(xb), "svd"), rel=1e-13)
    ia, ib = rng.choice(n, k, replace=False), rng.choice(n, k, replace=False)
    xa2, xb2 = xa.copy(), xb.copy()
    xa2[ia], xb2[ib] = xb[ib], xa[ia]
    ua, ca = _swap_change(xa, xa2, ia, n)
    ub, cb = _swap_change(xb, xb2, ib, n)
    exact = trace_sqrt_product(_cov(xa2), _cov(xb2), "svd")
    got = anchor.tau_after(ua, ca, ub, cb)
    assert abs(got - exact) <= 1e-12 * exact
    assert abs(exact - anchor.tau) > 1e-4 * exact  # the change is real, not rounding
    # one side only, and nothing at all
    one = anchor.tau_after(ua, ca, np.zeros((dim, 0)), np.zeros(0))
    assert one == pytest.approx(trace_sqrt_product(_cov(xa2), _cov(xb), "svd"), rel=1e-12)
    assert anchor.tau_after(np.zeros((dim, 0)), [], np.zeros((dim, 0)), []) == anchor.tau


def test_transport_factors_and_traces():
    rng = np.random.default_rng(3)
    sa, sb = _cov(rng.standard_normal((90, 7))), _cov(rng.standard_normal((90, 7)) * 2)
    anchor = TransportAnchor(sa, sb, EPS)
    wa, wb = anchor.transport_factors()
    t = wa.T @ wa
    np.testing.assert_allclose(t @ sa @ t, sb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(t @ (wb.T @ wb), np.eye(7), atol=1e-10)
    assert anchor.transport_traces() == pytest.approx((np.trace(t), np.trace(wb.T @ wb)),
                                                      rel=1e-12)


def test_anchor_refuses_what_it_cannot_do_exactly():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 20))  # rank 4 in 20-d: only eps keeps it positive definite
    with pytest.raises(np.linalg.LinAlgError, match="ill-conditioned"):
        TransportAnchor(_cov(x), _cov(x + 1), EPS)
    with pytest.raises(np.linalg.LinAlgError):
        TransportAnchor(_cov(x, 0.0), _cov(x, 0.0), 1e-8)  # not positive definite
    with pytest.raises(np.linalg.LinAlgError, match="positive floor"):
        TransportAnchor(np.eye(3), np.eye(3), 0.0)


def _means(c=700, d=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, d)) * 2
    return centres[np.arange(c) % 6] + rng.standard_normal((c, d)) * rng.uniform(0.3, 1.2, d)


def test_anchored_means_distance_walk_equals_direct_refits(monkeypatch):
    """Swaps, one-sided and two-sided removals, re-anchoring: every distance as a direct refit,
    including removals answered from an anchor with the first-order eps rescaling term."""
    monkeypatch.setattr(means_distance, "MOMENTS_MIN_RANK", 0)
    md = MeansDistance(_means(c=4000, d=16))
    rng = np.random.default_rng(1)
    a, b = list(range(0, 4000, 2)), list(range(1, 4000, 2))
    routes = {"dense": 0, "swaps": 0, "removals": 0}
    for step in range(60):
        built = md.anchors_built
        d = md.distance(a, b)
        if md.anchors_built > built:
            routes["dense"] += 1
        else:
            routes["swaps" if md.anchor.n == (len(a), len(b)) else "removals"] += 1
        ref = frechet_distance_samples(md.coords[a], md.coords[b], eps=EPS)
        assert abs(d - ref) <= 1e-12 * ref, step
        i, j = rng.integers(len(a)), rng.integers(len(b))
        a[i], b[j] = b[j], a[i]
        if step % 3 == 1:
            a.pop(int(rng.integers(len(a))))
        if step % 5 == 2:
            b.pop(int(rng.integers(len(b))))
    assert min(routes.values()) >= 3, routes  # every route ran


def _sqrt_psd(x):
    w, q = np.linalg.eigh(x)
    return (q * np.sqrt(np.maximum(w, 0))) @ q.T


def _transport(sa, sb):
    ra = _sqrt_psd(sa)
    ra_inv = np.linalg.inv(ra)
    return ra_inv @ _sqrt_psd(ra @ sb @ ra) @ ra_inv


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transport_map_stays_within_the_loewner_range(seed):
    """after(): rho_lo T <= T' <= rho_hi T for the changed pair's transport map T'."""
    rng = np.random.default_rng(seed)
    n, dim, k = 120, 9, 3
    xa = rng.standard_normal((n, dim)) * rng.uniform(0.2, 1.5, dim)
    xb = rng.standard_normal((n, dim)) * rng.uniform(0.2, 1.5, dim) + 0.3
    xa2, xb2 = xa.copy(), xb.copy()
    ia, ib = rng.choice(n, k, replace=False), rng.choice(n, k, replace=False)
    xa2[ia], xb2[ib] = xb[ib] * 3, xa[ia] - 2  # outliers: a large change of T
    ua, ca = _swap_change(xa, xa2, ia, n)
    ub, cb = _swap_change(xb, xb2, ib, n)
    tau, lo, hi = TransportAnchor(_cov(xa), _cov(xb), EPS).after(ua, ca, ub, cb)
    t0, t1 = _transport(_cov(xa), _cov(xb)), _transport(_cov(xa2), _cov(xb2))
    r = np.linalg.inv(_sqrt_psd(t0))
    ratios = np.linalg.eigvalsh(r @ t1 @ r)
    assert lo * (1 - 1e-9) <= ratios.min() and ratios.max() <= hi * (1 + 1e-9)
    assert hi / lo < 10 * ratios.max() / ratios.min()  # not vacuous
    assert tau == pytest.approx(trace_sqrt_product(_cov(xa2), _cov(xb2), "svd"), rel=1e-12)


def test_anchored_removals_keep_within_their_error_bound(monkeypatch):
    """Removals answered from an anchor carry a bound on the error of their first-order eps
    term; outlier classes along low-variance directions make it large, and such splits take
    the dense route. Every anchored tau is within its bound of the dense one."""
    monkeypatch.setattr(means_distance, "MOMENTS_MIN_RANK", 0)
    rng = np.random.default_rng(0)
    c, d = 4000, 16
    scale = np.ones(d)
    scale[-3:] = [3e-2, 2e-2, 5e-2]
    m = rng.standard_normal((c, d)) * scale
    outliers = rng.choice(c, 40, replace=False)
    m[outliers, -3:] += rng.standard_normal((40, 3)) * 3.0
    md = MeansDistance(m)
    checked, seen = [], []
    original = means_distance.SplitAnchor.tau

    def spy(self, coords, a, b):
        got = original(self, coords, a, b)
        dense = trace_sqrt_product(a.cov(EPS), b.cov(EPS), "svd")
        if got is not None:
            checked.append((abs(got[0] - dense), got[1], dense))
        return got

    monkeypatch.setattr(means_distance.SplitAnchor, "tau", spy)
    a, b = list(range(0, c, 2)), list(range(1, c, 2))
    out = set(outliers.tolist())
    for step in range(40):
        built = md.anchors_built
        dist = md.distance(a, b)
        seen.append(md.anchors_built > built)
        ref = frechet_distance_samples(md.coords[a], md.coords[b], eps=EPS)
        assert abs(dist - ref) <= 1e-10 * ref, step
        drop = [x for x in a if x in out] or [a[int(rng.integers(len(a)))]]
        a.remove(drop[0])
        i, j = rng.integers(len(a)), rng.integers(len(b))
        a[i], b[j] = b[j], a[i]
    bounded = [(err, bound) for err, bound, _ in checked if bound > 0]
    assert bounded and all(err <= bound + 1e-12 * tau for err, bound, tau in checked)
    assert sum(seen[1:]) >= 5 and not all(seen[1:])  # both routes ran


@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("offset", [0.0, 300.0])
def test_anchored_swaps_and_removals_keep_their_digits(monkeypatch, scale, offset):
    """Coordinates of any scale, and sides whose means lie far from the origin: the low-rank
    systems are balanced and the changes are taken relative to the anchor side's mean."""
    monkeypatch.setattr(means_distance, "MOMENTS_MIN_RANK", 0)
    rng = np.random.default_rng(3)
    c, d = 600, 40
    centres = rng.standard_normal((6, d)) * 2
    m = (centres[np.arange(c) % 6] + rng.standard_normal((c, d)) * rng.uniform(0.3, 1.2, d))
    perm = [int(x) for x in rng.permutation(c)]
    a, b = perm[:300], perm[300:]
    m[a] += offset  # the two sides far apart: large sums, a large mean term
    md = MeansDistance(m * scale)
    for step in range(12):
        md.distance(a, b)  # from the start split, which is (or becomes) the anchor
        built = md.anchors_built
        a2, b2 = list(a), list(b)
        for _ in range(1 + step % 3):
            i, j = rng.integers(300), rng.integers(300)
            a2[i], b2[j] = b2[j], a2[i]
        if step % 2:
            a2 = a2[: -(step % 4 + 1)]
        got = md.distance(a2, b2)
        ref = frechet_distance_samples(md.coords[a2], md.coords[b2], eps=EPS)
        assert abs(got - ref) <= 1e-12 * ref, step
        if step % 2 == 0:
            assert md.anchors_built == built, step  # a swap: answered from the anchor


def test_a_change_that_reshapes_a_direction_re_anchors(monkeypatch):
    """The class that makes up a direction of one side leaves: the transport map changes by a
    factor of hundreds there, the low-rank route would lose digits, so the split re-anchors."""
    monkeypatch.setattr(means_distance, "MOMENTS_MIN_RANK", 0)
    rng = np.random.default_rng(0)
    d, n = 6, 12
    xa, xb = rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.5
    xa[0, -1] = 2000.0
    md = MeansDistance(np.concatenate([xa, xb, rng.standard_normal((1, d)) * 0.5]))
    a0, b0 = list(range(n)), list(range(n, 2 * n))
    md.distance(a0, b0)
    spread = []
    real = TransportAnchor.after

    def spy(self, *args):
        got = real(self, *args)
        spread.append(got[2] / got[1])
        return got

    monkeypatch.setattr(TransportAnchor, "after", spy)
    a1 = [2 * n] + a0[1:]
    got = md.distance(a1, b0)
    assert spread[-1] > means_distance.ANCHOR_MAX_SPREAD and md.anchors_built == 2
    assert got == pytest.approx(frechet_distance_samples(md.coords[a1], md.coords[b0], eps=EPS),
                                rel=1e-12)


def test_a_side_with_fewer_classes_than_dimensions_is_refit(monkeypatch):
    """Its covariance is singular but for eps, which the moments' G - s s^T / n would lose
    in rounding at large scales: refit from the rows, as the previous implementation did."""
    monkeypatch.setattr(means_distance, "MOMENTS_MIN_RANK", 0)
    m = np.random.default_rng(1).standard_normal((40, 6)) * 1e4
    md = MeansDistance(m)
    a, b = list(range(20)), list(range(20, 29))
    md.distance(a, b)
    for k in range(1, 5):
        got = md.distance(a, b[:-k])
        ref = frechet_distance_samples(md.coords[a], md.coords[b[:-k]], eps=EPS)
        assert abs(got - ref) <= 1e-12 * ref, k


def _full_head(v, train, test, length, reverse, names):
    a, b = scores(v, train, test)
    out = []
    for full, side in ((a, train), (b, test)):
        if names is not None:
            key = -full if reverse else full
            out.append(sorted(range(len(side)), key=lambda p: (key[p], names[side[p]]))[:length])
        else:
            order = np.argsort(full, kind="stable")
            out.append([int(p) for p in (order[::-1] if reverse else order)[:length]])
    return tuple(out)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("named", [False, True])
def test_ranking_heads_equal_the_full_sort_along_a_walk(monkeypatch, reverse, named):
    """Running sums moved by swaps and removals (and rebuilt), exact and near ties."""
    monkeypatch.setattr(ranking, "FULL_BELOW", 0)
    monkeypatch.setattr(ranking, "REBUILD_UPDATES", 40)
    rng = np.random.default_rng(7)
    v = rng.standard_normal((400, 16)) * 3 + 5
    v[50] = v[51] = v[52]  # exact ties
    names = [f"k{(i * 7919) % 400:03d}" for i in range(400)]
    perm = [int(i) for i in rng.permutation(400)]
    train, test = perm[:250], perm[250:]
    ranker = Ranker(v)
    for step in range(30):
        ties = (lambda p: names[train[p]], lambda p: names[test[p]]) if named else None
        got = ranker.heads(train, test, 12, reverse, ties)
        assert got == _full_head(v, train, test, 12, reverse, names if named else None), step
        pa, pb = got[0][step % 3], got[1][step % 2]
        train[pa], test[pb] = test[pb], train[pa]
        if step % 4 == 3:
            train.pop(got[0][0])
    assert ranker._updates < 40  # rebuilt on the way


def test_ranking_heads_fall_back_on_undecided_near_ties(monkeypatch):
    monkeypatch.setattr(ranking, "FULL_BELOW", 0)
    rng = np.random.default_rng(8)
    v = rng.standard_normal((300, 8))
    train, test = list(range(150)), list(range(150, 300))
    a, _ = scores(v, train, test)
    best = int(np.argmin(a))
    v[160] = v[150]
    v[7] = v[best] * (1 + 1e-15)  # a near-tie at the head of the train order
    ranker = Ranker(v)
    got = ranker.heads(train, test, 5, False)
    assert got == _full_head(v, train, test, 5, False, None)
    assert ranker.fallbacks == 1


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("named", [False, True])
def test_ranking_heads_equal_the_full_sort(monkeypatch, reverse, named):
    monkeypatch.setattr(ranking, "FULL_BELOW", 0)
    rng = np.random.default_rng(7)
    v = rng.standard_normal((400, 16)) * 3 + 5
    v[200] = v[53] + 1e-13  # near-ties
    train, test = list(rng.permutation(400)[:250]), None
    test = [i for i in range(400) if i not in set(train)]
    # exact ties at both ends of each order: far out along +-(mu_train - mu_test)
    d = v[train].mean(0) - v[test].mean(0)
    d /= np.linalg.norm(d)
    for side in (train, test):
        for k, sign in ((0, 1), (3, -1)):
            v[side[k : k + 3]] = v[side].mean(0) + sign * 100 * d
    names = [f"k{(i * 7919) % 400:03d}" for i in range(400)]
    a, b = scores(v, train, test)
    for full in (a, b):  # the tied triples are the extremes, so they fill a head
        assert np.unique(np.sort(full)[:3]).size == 1 and np.unique(np.sort(full)[-3:]).size == 1
    ties = (lambda p: names[train[p]], lambda p: names[test[p]]) if named else None
    got_a, got_b = Ranker(v).heads(train, test, 12, reverse, ties)
    for full, side, got in ((a, train, got_a), (b, test, got_b)):
        if named:
            key = -full if reverse else full
            want = sorted(range(len(side)), key=lambda p: (key[p], names[side[p]]))[:12]
        else:
            order = np.argsort(full, kind="stable")
            want = list((order[::-1] if reverse else order)[:12])
        assert got == want


def test_means_distance_without_eps_takes_the_dense_route(monkeypatch):
    """eps = 0 gives no eigenvalue floor for the quadrature: every distance is dense, exact."""
    monkeypatch.setattr(means_distance, "MOMENTS_MIN_RANK", 0)
    md = MeansDistance(_means(c=300, d=10, seed=3), eps=0.0)
    a, b = list(range(0, 300, 2)), list(range(1, 300, 2))
    for _ in range(3):
        ref = frechet_distance_samples(md.coords[a], md.coords[b])
        assert md.distance(a, b) == pytest.approx(ref, rel=1e-12)
        a[0], b[0] = b[0], a[0]
    assert md.anchor is None and md.anchors_built == 0
