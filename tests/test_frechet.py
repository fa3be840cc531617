"""Fréchet distance: closed forms, pytorch-fid agreement, singular and low-rank cases."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.linalg as sla
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_fid.fid_score import calculate_frechet_distance as pfid

from oodml.data import load_dataset
from oodml.stats.gaussian import (
    fit_gaussian,
    frechet_distance,
    frechet_distance_samples,
    gram_cholesky,
    trace_sqrt_product,
    triangular_product_svdvals,
)

from reference import in_span

METHODS = ("eig", "svd")


def random_spd(rng: np.random.Generator, d: int, n: int | None = None) -> np.ndarray:
    x = rng.standard_normal((n or 3 * d, d)) * rng.uniform(0.1, 3.0, d)
    return np.atleast_2d(np.cov(x, rowvar=False))


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def mp_samples_distance(x1: np.ndarray, x2: np.ndarray, dps: int = 60) -> float:
    """High-precision reference: ||dmu||^2 + ||A1||^2 + ||A2||^2 - 2 sum sqrt eig(G G^T)."""
    with mpmath.workdps(dps):

        def scaled(x: np.ndarray) -> tuple[mpmath.matrix, mpmath.matrix]:
            m = mpmath.matrix(x.tolist())
            n, d = x.shape
            mu = [mpmath.fsum(m[i, j] for i in range(n)) / n for j in range(d)]
            a = mpmath.matrix(d, n)
            s = mpmath.sqrt(n - 1)
            for i in range(n):
                for j in range(d):
                    a[j, i] = (m[i, j] - mu[j]) / s
            return mpmath.matrix(mu), a

        mu1, a1 = scaled(x1)
        mu2, a2 = scaled(x2)
        g = a1.T * a2
        w = mpmath.eigsy(g * g.T, eigvals_only=True)
        nuc = mpmath.fsum(mpmath.sqrt(max(v, 0)) for v in w)
        fro = mpmath.fsum(v**2 for v in a1) + mpmath.fsum(v**2 for v in a2)
        mean = mpmath.fsum((u - v) ** 2 for u, v in zip(mu1, mu2, strict=True))
        return float(mean + fro - 2 * nuc)


def test_fit_gaussian_matches_numpy() -> None:
    x = np.random.default_rng(0).standard_normal((50, 7)).astype(np.float32)
    mu, sigma = fit_gaussian(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)
    with pytest.raises(ValueError):
        fit_gaussian(x[:1])


@pytest.mark.parametrize("method", METHODS)
def test_equal_gaussians_give_zero(method: str) -> None:
    rng = np.random.default_rng(1)
    s = random_spd(rng, 40)
    mu = rng.standard_normal(40)
    assert abs(np.trace(s) * 2 - 2 * trace_sqrt_product(s, s, method)) < 1e-10 * np.trace(s)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-10 * np.trace(s)


def test_pure_mean_shift() -> None:
    rng = np.random.default_rng(2)
    s = random_spd(rng, 30)
    mu = rng.standard_normal(30)
    delta = rng.standard_normal(30) * 5
    got = frechet_distance(mu, s, mu + delta, s)
    assert got == pytest.approx(float(delta @ delta), rel=1e-10, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    a=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_diagonal_closed_form(a: list[float], seed: int) -> None:
    """sum (sqrt a_i - sqrt b_i)^2 plus the mean term, to float64 accuracy.

    An eigenvalue below d * eps * ||S|| cannot be told from rounding noise of an exact zero, so
    it counts as 0; each such eigenvalue changes the result by at most
    2 sqrt(d eps ||S1|| ||S2||), which is the absolute tolerance (about 1e-7 for these sizes,
    against relative 1e-9 everywhere else).
    """
    rng = np.random.default_rng(seed)
    a_ = np.array(a)
    b_ = rng.uniform(0.0, 50.0, a_.size) * (rng.random(a_.size) > 0.2)
    mu1, mu2 = rng.standard_normal(a_.size), rng.standard_normal(a_.size)
    want = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a_) - np.sqrt(b_)) ** 2).sum())
    got = frechet_distance(mu1, np.diag(a_), mu2, np.diag(b_))
    d, eps = a_.size, np.finfo(np.float64).eps
    noise = 2 * d * np.sqrt(d * eps * a_.max() * b_.max())
    assert not np.isnan(got)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9 + noise)


def test_diagonal_eigenvalue_at_the_noise_floor() -> None:
    """The case hypothesis found: a = (0, 1, eps); the eps direction is dropped as noise."""
    a_, b_ = np.array([0.0, 1.0, 2.220446049250313e-16]), np.array([3.0, 0.5, 8.0])
    want = float(((np.sqrt(a_) - np.sqrt(b_)) ** 2).sum())
    got = frechet_distance(np.zeros(3), np.diag(a_), np.zeros(3), np.diag(b_))
    assert abs(got - want) <= 2 * np.sqrt(2.220446049250313e-16 * 8.0) + 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_commuting_covariances(method: str) -> None:
    rng = np.random.default_rng(3)
    d = 25
    u, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.01, 10, d), rng.uniform(0.01, 10, d)
    s1, s2 = (u * a) @ u.T, (u * b) @ u.T
    want = float(np.sqrt(a * b).sum())
    assert trace_sqrt_product(s1, s2, method) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_agrees_with_pytorch_fid_full_rank(method: str) -> None:
    rng = np.random.default_rng(4)
    d = 96
    x1 = rng.standard_normal((400, d)) @ rng.standard_normal((d, d)) * 0.3
    x2 = rng.standard_normal((500, d)) * 1.7 + 0.5
    m1, s1 = fit_gaussian(x1)
    m2, s2 = fit_gaussian(x2)
    want = pfid(m1, s1, m2, s2)
    diff = m1 - m2
    got = float(diff @ diff + np.trace(s1) + np.trace(s2)) - 2 * trace_sqrt_product(s1, s2, method)
    assert rel(got, want) < 1e-6
    assert rel(frechet_distance(m1, s1, m2, s2), want) < 1e-6
    assert rel(frechet_distance_samples(x1, x2), want) < 1e-6


@settings(max_examples=25, deadline=None)
@given(d=st.integers(2, 20), seed=st.integers(0, 2**32 - 1))
def test_symmetric_nonnegative_and_matches_pytorch_fid(d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    s1, s2 = random_spd(rng, d, 4 * d + 4), random_spd(rng, d, 4 * d + 4)
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    ab, ba = frechet_distance(m1, s1, m2, s2), frechet_distance(m2, s2, m1, s1)
    scale = np.trace(s1) + np.trace(s2)
    assert ab >= -1e-10 * scale
    assert abs(ab - ba) <= 1e-10 * (scale + abs(ab))
    assert abs(ab - pfid(m1, s1, m2, s2)) <= 1e-6 * max(abs(ab), 1e-3 * scale)


def omniglot_pixels(zip_path, n_classes: int, side: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """Flattened, box-downsampled grey pixels of the first ``n_classes`` Omniglot classes."""
    manifest = load_dataset("omniglot", zip_path)
    idx = manifest.indices_of(manifest.classes[:n_classes])
    rows = []
    for i in idx:
        img = np.asarray(manifest.load_image(int(i)).convert("L"), dtype=np.float64) / 255.0
        k = img.shape[0] // side
        rows.append(img[: k * side, : k * side].reshape(side, k, side, k).mean((1, 3)).ravel())
    return np.array(rows), manifest.label_index[idx]


@pytest.fixture(scope="module")
def pixels(omniglot_zip) -> tuple[np.ndarray, np.ndarray]:
    return omniglot_pixels(omniglot_zip, 40)


def test_real_features_agree_with_pytorch_fid(pixels) -> None:
    x, lab = pixels
    x1, x2 = x[lab < 20], x[lab >= 20]
    assert x1.shape[0] > x1.shape[1] and x2.shape[0] > x2.shape[1]
    m1, s1 = fit_gaussian(x1)
    m2, s2 = fit_gaussian(x2)
    want = pfid(m1, s1, m2, s2)
    assert want > 0
    assert rel(frechet_distance(m1, s1, m2, s2), want) < 1e-6
    assert rel(frechet_distance_samples(x1, x2), want) < 1e-6


def test_real_features_low_rank_route(pixels) -> None:
    x, lab = pixels
    x1, x2 = x[lab < 4], x[(lab >= 4) & (lab < 10)]
    assert x1.shape[0] < x1.shape[1]
    m1, s1 = fit_gaussian(x1)
    m2, s2 = fit_gaussian(x2)
    full = frechet_distance(m1, s1, m2, s2)
    low = frechet_distance_samples(x1, x2)
    assert np.isfinite(full) and np.isfinite(low)
    assert rel(full, low) < 1e-9


@pytest.mark.parametrize("n1,n2,d", [(5, 7, 12), (3, 30, 20), (9, 4, 9)])
def test_singular_covariances_match_high_precision(n1: int, n2: int, d: int) -> None:
    rng = np.random.default_rng(n1 * 100 + n2)
    x1 = rng.standard_normal((n1, d)) * rng.uniform(0.5, 2, d)
    x2 = rng.standard_normal((n2, d)) + 0.3
    want = mp_samples_distance(x1, x2)
    m1, s1 = fit_gaussian(x1)
    m2, s2 = fit_gaussian(x2)
    for got in (frechet_distance(m1, s1, m2, s2), frechet_distance_samples(x1, x2)):
        assert not np.isnan(got)
        assert rel(got, want) < 1e-9
    for method in METHODS:
        tr = trace_sqrt_product(s1, s2, method)
        diff = m1 - m2
        assert rel(float(diff @ diff + np.trace(s1 + s2)) - 2 * tr, want) < 1e-9


def test_rank_deficient_50_in_200d_is_not_nan() -> None:
    rng = np.random.default_rng(5)
    x1 = rng.standard_normal((50, 200))
    x2 = rng.standard_normal((60, 200)) * 2
    m1, s1 = fit_gaussian(x1)
    m2, s2 = fit_gaussian(x2)
    low = frechet_distance_samples(x1, x2)
    for method in METHODS:
        diff = m1 - m2
        full = float(diff @ diff + np.trace(s1 + s2)) - 2 * trace_sqrt_product(s1, s2, method)
        assert rel(full, low) < 1e-9
    assert np.isfinite(frechet_distance(m1, np.zeros_like(s1), m2, s2))
    zero = np.zeros((200, 200))
    assert frechet_distance(m1, zero, m1, zero) == 0.0


def test_near_singular_covariance() -> None:
    rng = np.random.default_rng(6)
    d = 60
    a = rng.standard_normal((d, 10))
    s1 = a @ a.T + 1e-10 * np.eye(d)
    s2 = random_spd(rng, d)
    w = np.linalg.eigvalsh(s1)
    ref_factor = np.linalg.eigh(s1)[1] * np.sqrt(np.clip(w, 0, None))
    want = float(np.linalg.svd(ref_factor.T @ np.linalg.cholesky(s2), compute_uv=False).sum())
    for method in METHODS:
        got = trace_sqrt_product(s1, s2, method)
        assert rel(got, want) < 1e-7


@pytest.mark.parametrize("eps", [1e-8, 1e-3, 0.5])
@pytest.mark.parametrize("n1,n2,d", [(10, 15, 120), (30, 8, 300), (60, 70, 100)])
def test_samples_eps_low_rank_equals_full(n1: int, n2: int, d: int, eps: float) -> None:
    rng = np.random.default_rng(n1 + n2 + d)
    x1 = rng.standard_normal((n1, d))
    x2 = rng.standard_normal((n2, d)) * 0.7 - 0.2
    m1, s1 = fit_gaussian(x1)
    m2, s2 = fit_gaussian(x2)
    eye = np.eye(d) * eps
    diff = m1 - m2
    full = float(diff @ diff + np.trace(s1 + s2 + 2 * eye)) - 2 * trace_sqrt_product(
        s1 + eye, s2 + eye, "svd"
    )
    assert rel(frechet_distance_samples(x1, x2, eps=eps), full) < 1e-10
    assert rel(frechet_distance(m1, s1 + eye, m2, s2 + eye), full) < 1e-6


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError):
        frechet_distance_samples(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        frechet_distance_samples(np.zeros((5, 3)), np.zeros((5, 3)), eps=-1.0)
    with pytest.raises(ValueError):
        trace_sqrt_product(np.eye(2), np.eye(2), "sqrtm")


def test_deterministic() -> None:
    rng = np.random.default_rng(7)
    x1, x2 = rng.standard_normal((80, 50)), rng.standard_normal((30, 50))
    assert frechet_distance_samples(x1, x2, 1e-6) == frechet_distance_samples(x1, x2, 1e-6)
    m1, s1 = fit_gaussian(x1)
    m2, s2 = fit_gaussian(x2)
    assert frechet_distance(m1, s1, m2, s2) == frechet_distance(m1, s1, m2, s2)


def test_gram_cholesky_and_the_triangular_product_match_the_dense_route() -> None:
    """chol(A A^T + eps I) from dsyrk + dpotrf equals scipy's factor of the formed matrix to
    rounding; the singular values of L1^T L2 equal svdvals of the formed product; a matrix
    that is not positive definite (eps = 0, fewer columns than rows) gives None."""
    rng = np.random.default_rng(3)
    d = 60
    a1 = rng.standard_normal((d, 30)) * rng.uniform(0.1, 10.0, 30)
    a2 = rng.standard_normal((d, 45))
    l1, l2 = gram_cholesky(a1, 1e-8), gram_cholesky(a2, 1e-8)
    want1 = sla.cholesky(a1 @ a1.T + 1e-8 * np.eye(d), lower=True)
    np.testing.assert_allclose(l1, want1, rtol=1e-9, atol=1e-12 * np.abs(want1).max())
    assert l1.flags.f_contiguous and not np.triu(l1, 1).any()
    got = triangular_product_svdvals(l1, l2)
    want = sla.svdvals(l1.T @ l2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * want[0])
    assert gram_cholesky(a1, 0.0) is None
    assert gram_cholesky(np.zeros((0, 3)), 1e-8).shape == (0, 0)
    assert triangular_product_svdvals(np.zeros((0, 0)), np.zeros((0, 0))).shape == (0,)


def test_samples_distance_with_eps_matches_the_covariance_route() -> None:
    """The factor route of frechet_distance_samples (eps > 0, d <= 512) against
    frechet_distance on the formed covariances, and against scipy.linalg.sqrtm."""
    rng = np.random.default_rng(4)
    for n1, n2, d in ((40, 35, 50), (30, 80, 100), (12, 9, 40)):
        x1 = rng.standard_normal((n1, d)) * rng.uniform(0.2, 3.0, d)
        x2 = rng.standard_normal((n2, d)) + 0.5
        got = frechet_distance_samples(x1, x2, eps=1e-6)
        s1 = np.cov(x1, rowvar=False) + 1e-6 * np.eye(d)
        s2 = np.cov(x2, rowvar=False) + 1e-6 * np.eye(d)
        want = frechet_distance(x1.mean(0), s1, x2.mean(0), s2)
        assert got == pytest.approx(want, rel=1e-11)
        root = sla.sqrtm(s1 @ s2).real
        diff = x1.mean(0) - x2.mean(0)
        sqrtm_value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(root)
        assert got == pytest.approx(sqrtm_value, rel=1e-7)


def test_pytorch_fid_on_the_span_basis_is_the_full_dimensional_value() -> None:
    """The reference helper ``in_span`` (used where a 2048-d ``sqrtm`` would cost a minute)
    leaves pytorch-fid's value unchanged: 20 + 25 rows in 300 dims, full against projected."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 300))
    y = 1.5 * rng.standard_normal((25, 300)) + 0.3
    full = pfid(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    (mx, sx), (my, sy) = in_span(x, y)
    assert sx.shape == (44, 44)
    assert pfid(mx, sx, my, sy) == pytest.approx(full, rel=1e-6)
