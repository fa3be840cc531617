"""oodml.stats.lapack: scipy's LAPACK without the GIL, bit-identical to scipy.linalg."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla

from oodml.stats import lapack


def test_routines_are_read_from_scipys_table():
    """The GIL-free route is the one taken here (not the scipy fallback)."""
    assert lapack._dgesdd() is not None
    assert lapack._dpotrf() is not None


def test_svdvals_is_bit_identical_to_scipy():
    rng = np.random.default_rng(0)
    for trial in range(30):
        m, n = (int(v) for v in rng.integers(1, 230, 2))
        a = rng.standard_normal((m, n)) * np.exp(rng.uniform(-25.0, 5.0, n))
        a = np.asfortranarray(a) if trial % 2 else np.ascontiguousarray(a)
        got = lapack.svdvals(a)
        assert np.array_equal(got, sla.svdvals(a, check_finite=False)), (m, n)
    assert lapack.svdvals(np.zeros((0, 3))).shape == (0,)


def test_cholesky_is_bit_identical_to_scipy_and_refuses_indefinite_matrices():
    rng = np.random.default_rng(1)
    for n in (1, 2, 17, 120, 199):
        a = rng.standard_normal((n, n + 2))
        s = a @ a.T + 1e-8 * np.eye(n)
        got, want = lapack.cholesky_lower(s), sla.cholesky(s, lower=True, check_finite=False)
        assert np.array_equal(got, want)
        # same memory layout, so products of the factor round the same way too
        assert got.flags.f_contiguous == want.flags.f_contiguous
        assert np.array_equal(got.T @ got, want.T @ want)
    bad = np.diag([1.0, -1.0, 2.0])
    with pytest.raises(np.linalg.LinAlgError, match="2-th leading minor"):
        lapack.cholesky_lower(bad)


def test_gram_cholesky_and_the_triangular_product_match_the_dense_route():
    """chol(A A^T + eps I) from dsyrk + dpotrf equals scipy's factor of the formed matrix to
    rounding; the singular values of L1^T L2 equal svdvals of the formed product; a matrix
    that is not positive definite (eps = 0, fewer columns than rows) gives None."""
    rng = np.random.default_rng(3)
    d = 60
    a1 = rng.standard_normal((d, 30)) * rng.uniform(0.1, 10.0, 30)
    a2 = rng.standard_normal((d, 45))
    l1, l2 = lapack.gram_cholesky(a1, 1e-8), lapack.gram_cholesky(a2, 1e-8)
    want1 = sla.cholesky(a1 @ a1.T + 1e-8 * np.eye(d), lower=True)
    np.testing.assert_allclose(l1, want1, rtol=1e-9, atol=1e-12 * np.abs(want1).max())
    assert l1.flags.f_contiguous and not np.triu(l1, 1).any()
    got = lapack.triangular_product_svdvals(l1, l2)
    want = sla.svdvals(l1.T @ l2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * want[0])
    assert lapack.gram_cholesky(a1, 0.0) is None


def test_frechet_samples_distance_with_eps_matches_the_covariance_route():
    """The GIL-free factor route of frechet_distance_samples (eps > 0, d <= 512) against
    frechet_distance on the formed covariances, and against scipy.linalg.sqrtm."""
    from oodml.stats.gaussian import frechet_distance, frechet_distance_samples

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


def test_other_input_goes_to_scipy_and_read_only_input_is_not_overwritten():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    assert lapack.svdvals(x).dtype == np.float32
    assert np.array_equal(lapack.svdvals(x), sla.svdvals(x))
    s = (x @ x.T + np.eye(7)).astype(np.float32)
    assert np.array_equal(lapack.cholesky_lower(s), sla.cholesky(s, lower=True))
    b = np.asfortranarray(rng.standard_normal((6, 6)))
    b.flags.writeable = False
    kept = b.copy()
    assert np.array_equal(lapack.svdvals(b, overwrite=True), sla.svdvals(kept))
    assert np.array_equal(b, kept)
    assert lapack.triangular_product_svdvals(np.zeros((0, 0)), np.zeros((0, 0))).shape == (0,)


def test_a_routine_whose_c_signature_differs_is_not_called():
    """The capsule's C signature must list exactly the argument kinds given (so a build with
    64-bit integers, or a changed routine, falls back to scipy instead of being called)."""
    kinds = lapack._arguments("void (char *, int *, __pyx_t_5scipy_6linalg_13cython_lapack_d *)")
    assert kinds == ["char *", "int *", "double *"]
    assert lapack._routine("dpotrf", lapack._CHAR, lapack._PINT) is None
    assert lapack._arguments("void (char *, int64_t *)") != ["char *", "int *"]
