"""Sandwich covariances shared by the designs' regressions.

* :func:`ar1_sandwich` -- quasi-likelihood covariance of a log-link count model with
  an AR(1) working correlation within each unit (ITS: ``count_cov="ar1"``).
* :func:`cluster_sandwich` -- cluster-robust covariance from per-cluster scores and
  the inverse negative Hessian (DID's Poisson fixed-effects model, the stacked
  event study), with each cluster's influence on the coefficients.

Both take plain arrays and know nothing of a design.

The AR(1) working correlation is the counts' own. Where the default ITS misses
its coverage (``nox -s benchmark``, ITS section: busy overdispersed series,
rho = 0.3 at 50 a month, 90.0% of 95%, null rejection 9.5%; rho = 0.6 at 50,
87.2%), two corrections following Zeger (1988) were tried on the benchmark's
400 series a cell (issue #10) and not adopted:

- the latent process's AR(1) (correlation ``sqrt(c_i c_j) rho^|i-j|``, ``c_i =
  s2 mu_i / (1 + s2 mu_i)`` with ``s2`` by moments, used only with clear
  overdispersion): rho 0.3 / level 50 coverage 0.915, null rejection 0.080;
  rho 0.6 / 50 0.920; low counts unchanged. But the matched rho often sits at
  its cap: after a trend, level and slope are fitted, the expected residual
  lag-1 correlation under this model rises to about 0.2 and falls again as rho
  grows, below many series' observed 0.25-0.35;
- ``s2`` and rho matched jointly to ``E r'r`` and ``E r'Lr`` under the
  regression's projection, covariance ``B^-1 X'D^(1/2) (I + s2 D R D) D^(1/2) X
  B^-1``: rho 0.3 / 50 coverage 0.918, null rejection 0.080; rho 0.6 / 50 0.932,
  0.6 / 20 0.900 (0.875 now); intervals up to 30% wider.

Neither brings rho 0.3 / 50 to 93%: what is left there is not the shape of
the correlation (the variance estimate's own noise over 54 months is one
candidate). Scripts and tables: ``/work/wt/notes/its6`` of that session.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["AR1_MATCH_LAGS", "ar1_sandwich", "cluster_scores", "cluster_sandwich"]


AR1_MATCH_LAGS = 1
"""Residual autocorrelations (lags 1..m, summed) matched when estimating the AR(1) rho."""


def ar1_sandwich(
    x: np.ndarray,
    mu: np.ndarray,
    pearson: np.ndarray,
    scale: float | np.ndarray,
    units: np.ndarray | None,
    match_lags: int = AR1_MATCH_LAGS,
    *,
    fixed_rho: float | None = None,
) -> tuple[np.ndarray, float]:
    """Quasi-likelihood covariance with an AR(1) working correlation (Zeger 1988).

    Notes
    -----
    With :math:`D = \\mathrm{diag}(\\mu)`, :math:`B = X' D X` and :math:`R_{ij} =
    \\hat\\rho^{|i-j|}` within a unit (0 across units), the covariance is
    :math:`\\phi B^{-1} X' D^{1/2} R D^{1/2} X B^{-1}`. :math:`\\hat\\rho` solves
    :math:`r_1 = \\mathrm{tr}(L M R(\\rho) M) / \\mathrm{tr}(M R(\\rho) M)`, where
    :math:`r_1` is the lag-1 autocorrelation of the Pearson residuals, :math:`M` the
    weighted residual projection and :math:`L` the lag operator: the expected
    residual autocorrelation under the working model, which removes the downward
    bias of residual autocorrelations in short regressions. It is kept in
    :math:`[0, 0.9]` (so the covariance is never below the quasi-Poisson one).
    A ``scale`` array gives each row its own dispersion :math:`\\phi_i`:
    :math:`B^{-1} X' D^{1/2} \\Phi^{1/2} R \\Phi^{1/2} D^{1/2} X B^{-1}`
    (pass Pearson residuals divided by :math:`\\sqrt{\\phi_i}`). A given
    ``fixed_rho`` is used as is (0: no working correlation).
    """
    n, k = x.shape
    units = np.zeros(n, dtype=int) if units is None else np.asarray(units)
    xw = x * np.sqrt(mu)[:, None]
    bread = np.linalg.inv(xw.T @ xw)
    resid_maker = np.eye(n) - xw @ bread @ xw.T
    dist = np.zeros((n, n))
    for u in np.unique(units):
        members = np.flatnonzero(units == u)
        pos = np.arange(members.size)
        dist[np.ix_(members, members)] = np.abs(np.subtract.outer(pos, pos))
    block = np.equal.outer(units, units)
    # sum of the lag operators L^1..L^m within a unit: r'(sum L^j)r = sum_j sum_t r_t r_{t-j}
    signed = np.subtract.outer(np.arange(n), np.arange(n))
    lag_op = (block & (signed >= 1) & (signed <= match_lags)).astype(float)
    den = float(pearson @ pearson)
    r1 = float(pearson @ lag_op @ pearson) / den if den > 0 else 0.0

    lags = dist.astype(np.intp)

    def corr_of(rho: float) -> np.ndarray:
        # rho**dist looked up from rho**(0..n-1): the same powers, without n^2 pow calls
        return np.where(block, (rho ** np.arange(n, dtype=float))[lags], 0.0)

    # E[r'Lr] / E[r'r] for residuals r = M e, Cov(e) = R(rho): tr(L M R M) = tr((M L M) R)
    # and tr(M R M) = tr(M R) (M a symmetric projection), both elementwise sums with the
    # symmetric R, so each step of the search costs O(n^2) instead of two n x n products.
    lag_in_m = resid_maker @ lag_op @ resid_maker

    def expected_r1(rho: float) -> float:
        corr = corr_of(rho)
        return float(np.sum(lag_in_m * corr) / np.sum(resid_maker * corr))

    low, high = 0.0, 0.9
    if fixed_rho is not None:
        rho = float(fixed_rho)
    elif r1 <= expected_r1(low):
        rho = low
    elif r1 >= expected_r1(high):
        rho = high
    else:
        for _ in range(30):
            mid = 0.5 * (low + high)
            if expected_r1(mid) < r1:
                low = mid
            else:
                high = mid
        rho = 0.5 * (low + high)
    corr = corr_of(rho)
    if np.ndim(scale) == 0:
        return float(scale) * bread @ (xw.T @ corr @ xw) @ bread, rho
    half = np.sqrt(np.asarray(scale, dtype=float))
    meat = xw.T @ (half[:, None] * corr * half[None, :]) @ xw
    return bread @ meat @ bread, rho


def cluster_scores(
    clusters: np.ndarray, n_clusters: int, resid: np.ndarray, z: np.ndarray
) -> np.ndarray:
    """Per-cluster scores :math:`S_g = \\sum_{i \\in g} (y_i - \\mu_i) z_i` (clusters x k).

    ``clusters`` holds each row's cluster code in ``0..n_clusters-1``, ``resid`` the
    response residuals :math:`y - \\mu` and ``z`` the (sparse or dense) regressors.
    """
    c = sparse.csr_matrix(
        (np.ones(resid.size), (clusters, np.arange(resid.size))), shape=(n_clusters, resid.size)
    )
    return np.asarray((c @ sparse.diags(resid) @ z).todense())


def cluster_sandwich(scores: np.ndarray, h_inv: np.ndarray) -> np.ndarray:
    """Cluster-robust covariance :math:`\\frac{G}{G-1} H^{-1} (\\sum_g S_g S_g') H^{-1}`.

    Notes
    -----
    ``scores`` are the :math:`G` per-cluster scores :math:`S_g` (rows), ``h_inv`` the
    inverse negative Hessian; with one cluster the covariance is undefined (NaN).
    The influence of cluster :math:`g` on the coefficients is :math:`S_g' H^{-1}`
    (``scores @ h_inv``), which a wild cluster bootstrap resamples.
    """
    g = scores.shape[0]
    meat = scores.T @ scores
    return h_inv @ meat @ h_inv * (g / (g - 1) if g > 1 else np.nan)
