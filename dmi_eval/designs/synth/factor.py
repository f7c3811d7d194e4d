"""Generalized synthetic control (interactive fixed effects, Xu 2017) for one market.

Synthetic control weights on the simplex can only reproduce a market whose
exposure to the city-wide factors lies inside the donors' range; a ridge that
stabilises the weights over many noisy donor areas pulls the synthetic market
towards the donors' average exposure. The generalized synthetic control
instead estimates the city's factors from the donors and fits the market's own
loadings on them by least squares in the pre period, so it extrapolates the
market's exposure rather than averaging it away.

With ``z_{it}`` the donors' series (divided by their pre-period means under
ratio scaling) and donor weights ``a_i = 1 / (1 / m_i + phi)`` (``m_i`` a
donor's mean pre-period count and ``phi`` the city's overdispersion, so a busy
area counts more than a quiet one, up to ``1 / phi``):

.. math::

    \\delta_t = \\frac{\\sum_i a_i z_{it}}{\\sum_i a_i}, \\quad
    \\alpha_i = \\overline{(z_{i\\cdot} - \\delta)}, \\quad
    \\sqrt{a_i}\\,(z_{it} - \\delta_t - \\alpha_i) \\approx \\sum_{k=1}^{r} u_{ik} s_k F_{tk}

(weighted two-way fixed effects over every period, then the first ``r`` right
singular vectors ``F`` of the weighted residuals). The market's intercept and
loadings are the quasi-Poisson regression of its counts on ``[1, F_t]`` with
offset ``log delta_t`` over the pre period, and its counterfactual is
``yhat_1t = delta_t exp(b_0 + F_t' b)`` (in the scale of
the market's series): multiplicative, like the counts, and ``r = 0`` is the
weighted ratio difference-in-differences. The number of factors ``r`` is
chosen by blocked cross-validation on the market's pre period
(:func:`choose_n_factors_market`) and used for every placebo too. The placebo
test's pre-period noise term grows with the leverage of the fitted loadings
(:func:`~dmi_eval.inference.noise.leverage`).

Calibration (``nox -s calibrate`` cities, seed 20240601, SC as at sites): the
factors of single donor areas at 0.3-3 incidents a month are estimated with
much noise (on a stress city the donors' ``F`` explained 60% of the second and
third true factors' variance), and the log error of the market's post-period
change was no smaller than the simplex SC's (0.13 in monthly cities), while
the fitted loadings widened the placebo distribution. It is therefore an
option, not the default.
"""

from __future__ import annotations

import numpy as np

from dmi_eval.designs.synth.core import PathFit
from dmi_eval.inference.noise import dispersion, regressors

MAX_FACTORS = 4
"""Largest number of factors :func:`choose_n_factors_market` considers."""
CV_BLOCKS = 4
"""Contiguous blocks of the pre period in :func:`choose_n_factors_market`."""


def donor_precision(Y0: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """Weights ``a_i = 1 / (1 / m_i + phi)`` of the donors (see the module notes).

    ``m_i`` is donor ``i``'s mean pre-period count and ``phi`` the
    overdispersion of the donors' pre-period counts
    (:func:`~dmi_eval.inference.noise.dispersion`): the inverse of a
    ratio-scaled count's relative variance.
    """
    m = np.asarray(Y0, dtype=float)[:, pre].mean(axis=1)
    phi = dispersion(np.asarray(Y0, dtype=float)[:, pre])
    with np.errstate(divide="ignore"):
        return np.where(m > 0, 1.0 / (1.0 / np.maximum(m, 1e-12) + phi), 0.0)


def city_factors(
    Z0: np.ndarray, weights: np.ndarray, n_factors: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(delta, F)``: the weighted common path and the first ``n_factors`` factors.

    Parameters
    ----------
    Z0
        ``(J, T)`` donor series.
    weights
        ``(J,)`` non-negative donor weights ``a_i``.
    n_factors
        Number of factors ``r`` (0: ``F`` has no columns).

    Returns
    -------
    ``delta`` of shape ``(T,)`` and ``F`` of shape ``(T, r)`` (orthonormal columns).
    """
    a = np.asarray(weights, dtype=float)
    delta = a @ Z0 / a.sum()
    T = Z0.shape[1]
    if n_factors <= 0:
        return delta, np.zeros((T, 0))
    R = Z0 - delta
    R = R - R.mean(axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(np.sqrt(a)[:, None] * R, full_matrices=False)
    r = min(n_factors, vt.shape[0])
    return delta, vt[:r].T


def poisson_fit(
    y: np.ndarray,
    offset: np.ndarray,
    X: np.ndarray,
    *,
    max_iter: int = 50,
    tol: float = 1e-9,
    n_intercepts: int = 1,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """Coefficients of the quasi-Poisson regression ``E y = exp(offset + X b)`` (IRLS).

    The first ``n_intercepts`` columns of ``X`` are intercepts; a tiny ridge
    on the other coefficients keeps the iterations finite when a quiet series
    is nearly all zeros. The iterations start from ``start`` (default: the
    first intercept at the log ratio of the total count to the total offset,
    the rest at zero) and stop when no coefficient moves by more than ``tol``
    or after ``max_iter`` iterations (the last iterate is returned).
    """
    y = np.asarray(y, dtype=float)
    k = X.shape[1]
    if start is None:
        b = np.zeros(k)
        b[0] = np.log(max(y.sum(), 0.5) / np.exp(offset).sum())
    else:
        b = np.asarray(start, dtype=float).copy()
    pen = np.full(k, 1e-6 * max(y.sum(), 1.0))
    pen[:n_intercepts] = 0.0
    for _ in range(max_iter):
        eta = np.clip(offset + X @ b, -30, 30)
        mu = np.exp(eta)
        z = X @ b + (y - mu) / mu
        A = X.T @ (mu[:, None] * X) + np.diag(pen)
        new = np.linalg.solve(A, X.T @ (mu * z))
        if np.max(np.abs(new - b)) < tol:
            b = new
            break
        b = new
    return b


def factor_path(
    z1: np.ndarray,
    Z0: np.ndarray,
    pre: np.ndarray,
    *,
    weights: np.ndarray,
    n_factors: int,
) -> PathFit:
    """Counterfactual of ``z1`` from the donors' factors (see the module notes).

    ``omega`` of the returned fit are the donors' shares of the common path
    ``delta`` (``a_i / sum a``); the loadings move the counterfactual away
    from it and are not donor weights.
    """
    a = np.asarray(weights, dtype=float)
    delta, F = city_factors(Z0, a, n_factors)
    X = regressors(F)
    off = np.log(np.maximum(delta, 1e-9))
    coef = poisson_fit(z1[pre], off[pre], X[pre])
    cf = np.exp(np.clip(off + X @ coef, -30, 30))
    return PathFit(cf, a / a.sum(), None, float(coef[0]))


def choose_n_factors_market(
    z1: np.ndarray,
    Z0: np.ndarray,
    pre: np.ndarray,
    weights: np.ndarray,
    *,
    max_factors: int = MAX_FACTORS,
    n_blocks: int = CV_BLOCKS,
) -> tuple[int, np.ndarray]:
    """Number of factors by blocked cross-validation on the market's pre period.

    The pre period is cut into ``n_blocks`` contiguous blocks; each in turn is
    held out, the market's loadings are fitted on the rest and the held-out
    block predicted. Criterion: the Pearson error ``sum (y - yhat)^2 / yhat``.
    """
    a = np.asarray(weights, dtype=float)
    idx = np.flatnonzero(pre)
    t0 = idx.size
    top = int(max(0, min(max_factors, t0 // 6 - 1)))
    crit = np.zeros(top + 1)
    blocks = np.array_split(idx, n_blocks)
    for r in range(top + 1):
        delta, F = city_factors(Z0, a, r)
        X = regressors(F)
        off = np.log(np.maximum(delta, 1e-9))
        for blk in blocks:
            train = pre.copy()
            train[blk] = False
            coef = poisson_fit(z1[train], off[train], X[train])
            pred = np.exp(np.clip(off[blk] + X[blk] @ coef, -30, 30))
            crit[r] += float(np.sum((z1[blk] - pred) ** 2 / pred))
    return int(np.argmin(crit)), crit
