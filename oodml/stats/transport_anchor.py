"""tr sqrt(S_a' S_b') after low-rank changes of two covariances, from one eigendecomposition.

A ladder walk moves a few classes per step, so each side's covariance changes by a low-rank
term while the dimension d stays large (SOP: d = 2048). :class:`TransportAnchor` pays one
Cholesky and one symmetric eigendecomposition with vectors (O(d^3)) for a pair (S_a, S_b);
afterwards ``tau_after`` gives tau' = tr sqrt(S_a' S_b') for

    S_a' = S_a + U_a diag(c_a) U_a^T,    S_b' = S_b + U_b diag(c_b) U_b^T

(U_a: d x k_a, U_b: d x k_b) in O(d^2 m + n_q d m^2) with m = k_a + k_b and n_q ~ 200
quadrature nodes, exact up to float64 rounding. Derivation:

1. With S_a = L L^T (Cholesky) and M = L^T S_b L = Q diag(l) Q^T, tau = sum sqrt(l).
2. S_a' = L (I + Y C_a Y^T) L^T with Y = L^-1 U_a, so S_a' S_b' is similar to
   N = (L^T S_b' L)(I + Y C_a Y^T) (eig(XY) = eig(YX)), and L^T S_b' L = M + V C_b V^T with
   V = L^T U_b. Expanding, N = M + U K W^T with U = [M Y, V], K = diag(C_a, C_b) and
   W = [Y, (I + Y C_a Y^T) V]: a rank-m change. In the eigenbasis of M (tilde: Q^T times)
   U~ = [l * Y~, V~], W~ = [Y~, V~ + Y~ C_a (Y~^T V~)]; Y~ = (Q^T L^-1) U_a and
   V~ = (Q^T L^T) U_b are products with two matrices kept from step 1.
3. N is similar to an SPD matrix, so its eigenvalues u_i are real and positive, and
   sqrt(u) = (2/pi) int_0^inf u / (t^2 + u) dt gives
   tau' - tau = (2/pi) int_0^inf t^2 [tr (t^2 + M)^-1 - tr (t^2 + N)^-1] dt.
   By the Woodbury identity, with R = (t^2 + diag(l))^-1 diagonal,
   tr (t^2 + M)^-1 - tr (t^2 + N)^-1 = tr[(I + K W~^T R U~)^-1 K W~^T R^2 U~]  (m x m).
4. With t = e^x the integrand is analytic in the strip |Im x| < pi/2 (its poles sit at
   t = +-i sqrt(u)), so the trapezoid rule with step h converges like exp(-pi^2 / h), below
   float64 rounding for h = 1/4. The nodes span floor e^-13 .. sqrt(tr S_a' tr S_b')
   e^13, where ``floor`` bounds both covariances' eigenvalues from below (u >= floor^2)
   and tr S_a' tr S_b' bounds u from above. Beyond the ends the integrand is below e^-36 of
   its scale: at the low end it falls like t^3; at the high end its leading term c1 / t^2
   (c1 = tr N - tr M = tr K W~^T U~) is integrated in closed form through the subtracted
   c1 t^2 / (t^2 + beta)^2 (integral c1 pi / (4 sqrt beta)), leaving a t^-4 remainder.

Nothing is approximated beyond float rounding, so the Fréchet distances built on it are the
exact ones; tests compare with the dense computation.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy.linalg.blas import dtrmm

STEP = 0.25
MARGIN = 13.0
MAX_CONDITION = 1e8


class TransportAnchor:
    """One pair (S_a, S_b) of positive definite d x d covariances, decomposed once so that
    tr sqrt(S_a' S_b') after low-rank changes costs O(d^2 m) (see the module docstring).

    ``floor`` > 0 must bound the eigenvalues of every changed covariance from below (class
    means: the eps added to both diagonals). Raises ``numpy.linalg.LinAlgError`` when S_a is
    not positive definite or S_a S_b has a condition number above ``max_condition`` (1e8,
    where the Woodbury systems lose digits; None: unchecked, for uses that only need
    :meth:`transport_factors`); callers then use the dense computation.
    """

    def __init__(
        self,
        sigma_a: np.ndarray,
        sigma_b: np.ndarray,
        floor: float,
        max_condition: float | None = MAX_CONDITION,
    ) -> None:
        if not floor > 0:
            raise np.linalg.LinAlgError(f"a low-rank anchor needs a positive floor, got {floor}")
        lower = np.asfortranarray(sla.cholesky(sigma_a, lower=True, check_finite=False))
        if not np.isfinite(lower).all():
            raise np.linalg.LinAlgError("Cholesky factor is not finite")
        half = dtrmm(1.0, lower, sigma_b, side=1, lower=1)
        m = dtrmm(1.0, lower, half, side=0, lower=1, trans_a=1, overwrite_b=1)
        lam, q = sla.eigh(m, check_finite=False, overwrite_a=True, driver="evd")
        del m, half
        self.lam = lam
        if max_condition is not None and not self.condition <= max_condition:
            raise np.linalg.LinAlgError(
                f"S_a S_b is too ill-conditioned for low-rank updates "
                f"(eigenvalues {lam[0]:.3g} .. {lam[-1]:.3g})"
            )
        self.floor = float(floor)
        self.ga = sla.solve_triangular(lower, q, lower=True, trans="T", check_finite=False).T
        self.gb = dtrmm(1.0, lower, q, side=0, lower=1).T
        self.tau = float(np.sqrt(np.maximum(lam, 0.0)).sum())
        self.trace_a = float(np.trace(sigma_a))
        self.trace_b = float(np.trace(sigma_b))

    @property
    def dim(self) -> int:
        return self.lam.shape[0]

    @property
    def condition(self) -> float:
        """Condition number of S_a S_b (inf when it is singular to working precision)."""
        return float(self.lam[-1] / self.lam[0]) if self.lam[0] > 0 else np.inf

    def transport_traces(self) -> tuple[float, float]:
        """(tr T, tr T^-1) = (sum l^1/2 |row i of G_a|^2, sum l^-1/2 |row i of G_b|^2)."""
        root = np.sqrt(self._clipped())
        return (float(root @ np.einsum("ij,ij->i", self.ga, self.ga)),
                float((1.0 / root) @ np.einsum("ij,ij->i", self.gb, self.gb)))

    def _clipped(self) -> np.ndarray:
        tiny = float(self.lam[-1]) * self.dim * np.finfo(np.float64).eps
        return np.maximum(self.lam, max(self.floor**2, tiny))

    def transport_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(W_a, W_b) with T = W_a^T W_a the optimal-transport map from N(., S_a) to
        N(., S_b) and T^-1 = W_b^T W_b: W_a = l^1/4 Q^T L^-1, W_b = l^-1/4 Q^T L^T."""
        lam = self._clipped()
        return self.ga * lam[:, None] ** 0.25, self.gb * lam[:, None] ** -0.25

    def tau_after(
        self, ua: np.ndarray, ca: np.ndarray, ub: np.ndarray, cb: np.ndarray
    ) -> float:
        """tr sqrt((S_a + U_a diag(c_a) U_a^T)(S_b + U_b diag(c_b) U_b^T)) (d x k_a, k_a,
        d x k_b, k_b; either k may be 0)."""
        return self.after(ua, ca, ub, cb)[0]

    def after(
        self, ua: np.ndarray, ca: np.ndarray, ub: np.ndarray, cb: np.ndarray
    ) -> tuple[float, float, float]:
        """(tau', rho_lo, rho_hi) for the changed pair S_a', S_b' of :meth:`tau_after`, with
        rho_lo T <= T' <= rho_hi T (Loewner order) between the anchor's transport map T and the
        changed pair's T' (so also T'^-1 between T^-1 / rho_hi and T^-1 / rho_lo).

        Why: with P_a = L^-1 S_a' L^-T = I + Y C_a Y^T and P_b = S_b^-1/2 S_b' S_b^-1/2, whose
        eigenvalues lie in [p_a, q_a] and [p_b, q_b], p_a S_a <= S_a' <= q_a S_a (same for b).
        T = S_a^-1 # S_b (matrix geometric mean), which is monotone in both arguments and
        satisfies (x X) # (y Y) = sqrt(x y) X # Y, so T' lies between sqrt(p_b / q_a) T and
        sqrt(q_b / p_a) T. The nonzero eigenvalues of Y C_a Y^T are those of R C_a R^T with
        Y = QR (same for b, with S_b^-1 = G_b^T diag(1/l) G_b)."""
        lam = self.lam
        ca, cb = np.asarray(ca, dtype=np.float64), np.asarray(cb, dtype=np.float64)
        if ca.size + cb.size == 0:
            return self.tau, 1.0, 1.0
        y = self.ga @ ua if ca.size else np.zeros((self.dim, 0))
        v = self.gb @ ub if cb.size else np.zeros((self.dim, 0))
        p_a, q_a = _eigen_range(y, ca)
        p_b, q_b = _eigen_range(v / np.sqrt(self._clipped())[:, None], cb)
        rho = (np.sqrt(max(p_b, 0.0) / q_a), np.sqrt(q_b / p_a) if p_a > 0 else np.inf)
        u = np.concatenate([lam[:, None] * y, v], axis=1)
        w = np.concatenate([y, v + y @ (ca[:, None] * (y.T @ v))], axis=1)
        k = np.concatenate([ca, cb])
        # Column j of U and of W may differ in scale by the covariances' magnitude (a-columns
        # carry l, b-columns do not); U D, W D^-1 leave U K W^T and every trace below unchanged
        # (a similarity by D) while keeping the m x m systems balanced.
        nu, nw = np.linalg.norm(u, axis=0), np.linalg.norm(w, axis=0)
        scale = np.where((nu > 0) & (nw > 0), np.sqrt(nw / np.where(nu > 0, nu, 1.0)), 1.0)
        u, w = u * scale, w / scale
        trace_a = self.trace_a + float(ca @ np.einsum("ij,ij->j", ua, ua)) if ca.size else (
            self.trace_a)
        trace_b = self.trace_b + float(cb @ np.einsum("ij,ij->j", ub, ub)) if cb.size else (
            self.trace_b)
        tau = self.tau + _delta_tau(lam, u, w, k, self.floor, max(trace_a * trace_b, 0.0))
        return tau, float(rho[0]), float(rho[1])


def _eigen_range(y: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """[p, q]: the range of the eigenvalues of I + Y diag(c) Y^T (1 when Y has no columns)."""
    if not c.size:
        return 1.0, 1.0
    r = np.linalg.qr(y, mode="r")
    e = np.linalg.eigvalsh((r * c) @ r.T)
    return 1.0 + min(float(e[0]), 0.0), 1.0 + max(float(e[-1]), 0.0)


def _delta_tau(
    lam: np.ndarray, u: np.ndarray, w: np.ndarray, k: np.ndarray, floor: float, bound: float
) -> float:
    """(2/pi) int_0^inf t^2 tr[(I + K W^T R U)^-1 K W^T R^2 U] dt, R = (t^2 + diag(lam))^-1."""
    m = k.size
    kwu = k[:, None] * (w.T @ u)
    c1 = float(np.trace(kwu))
    beta = float(np.mean(lam)) if lam.size and np.mean(lam) > 0 else 1.0
    x_lo = np.log(floor) - MARGIN
    x_hi = 0.5 * np.log(max(bound, floor**4)) + MARGIN
    x = np.arange(x_lo, max(x_hi, x_lo + STEP) + STEP, STEP)
    t2 = np.exp(2.0 * x)
    r = 1.0 / (t2[:, None] + lam[None, :])
    outer = (w[:, :, None] * u[:, None, :]).reshape(lam.size, m * m)
    k1 = (r @ outer).reshape(-1, m, m)
    r *= r
    k2 = (r @ outer).reshape(-1, m, m)
    lhs = k[None, :, None] * k1
    lhs[:, np.arange(m), np.arange(m)] += 1.0
    phi = np.trace(np.linalg.solve(lhs, k[None, :, None] * k2), axis1=1, axis2=2)
    t = np.exp(x)
    remainder = t**3 * (phi - c1 / (t2 + beta) ** 2)
    integral = STEP * float(remainder.sum()) + c1 * np.pi / (4.0 * np.sqrt(beta))
    return 2.0 / np.pi * integral
