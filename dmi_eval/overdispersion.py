"""Over-dispersion for count designs: dispersion estimates and variance inflations.

Police counts are over-dispersed: a market's monthly count varies more than a
Poisson count with the same mean (gamma-Poisson at area x period, variance
``mu + phi mu^2``), and the excess grows with the level, so a market of 20
incidents a month is relatively noisier than a comparison area of 1. A test
that studentises by a pure-Poisson standard error, or scales every series by
one pooled dispersion, then misjudges the busy market. These functions give
each series its own dispersion.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pearson_dispersion(
    y: np.ndarray, expected: np.ndarray, *, df: float, floor: float = 1.0
) -> np.ndarray:
    """Pearson dispersion :math:`\\sum_t (y_t - e_t)^2 / e_t / df` along the last axis.

    Cells with ``e_t <= 0`` are skipped. The result is at least ``floor``
    (1: counts are never taken to be less variable than Poisson). Works on
    any leading shape (e.g. placebo groups x periods).
    """
    y = np.asarray(y, dtype=float)
    e = np.asarray(expected, dtype=float)
    if df <= 0:
        raise ValueError(f"df must be positive; got {df}")
    with np.errstate(divide="ignore", invalid="ignore"):
        x2 = np.where(e > 0, (y - e) ** 2 / e, 0.0).sum(axis=-1)
    return np.maximum(x2 / df, floor)


def group_dispersion(group: np.ndarray, rest: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """Dispersion of a group's pre-period counts around the rest's time pattern.

    Parameters
    ----------
    group
        Counts of the group (treated or placebo), shape ``(..., T)``.
    rest
        Counts of the comparison (the other control areas), same shape.
    pre
        Boolean mask over the ``T`` periods: the pre period.

    Notes
    -----
    Under no effect and parallel trends the group's expected count in pre
    period :math:`t` is :math:`e_t = Y_{pre} R_t / R_{pre}` (its pre total
    spread like the comparison's); the dispersion is the Pearson statistic of
    :math:`y_t` about :math:`e_t` on :math:`n_{pre} - 1` degrees of freedom,
    at least 1. Under gamma-Poisson noise it estimates :math:`1 + \\phi\\bar\\mu`,
    the factor by which the variance of the group's window total exceeds
    the Poisson variance.
    """
    g = np.asarray(group, dtype=float)[..., pre]
    r = np.asarray(rest, dtype=float)[..., pre]
    n_pre = int(np.sum(pre))
    if n_pre < 2:
        raise ValueError("the dispersion needs at least two pre periods")
    r_tot = r.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(r_tot > 0, g.sum(axis=-1, keepdims=True) * r / r_tot, 0.0)
    return pearson_dispersion(g, e, df=n_pre - 1)


def unit_dispersions(
    pearson: np.ndarray, units: np.ndarray, n_params: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Each unit's Pearson dispersion from its own residuals (at least 1).

    ``pearson`` are Pearson residuals of a stacked fit, ``units`` the unit of
    each row, ``n_params[u]`` the parameters spent on unit ``u`` (its degrees
    of freedom are its rows minus those). Returns one value per unit, in the
    order of ``np.unique(units)``.
    """
    r = np.asarray(pearson, dtype=float)
    u = np.asarray(units)
    labels = np.unique(u)
    if len(n_params) != labels.size:
        raise ValueError("n_params needs one entry per unit")
    out = np.empty(labels.size)
    for i, lab in enumerate(labels):
        ri = r[u == lab]
        df = ri.size - float(n_params[i])
        if df <= 0:
            raise ValueError(f"unit {lab!r} has no residual degrees of freedom")
        out[i] = max(float(ri @ ri) / df, 1.0)
    return out


def ar1_sum_inflation(rho: float, k: int) -> float:
    """Variance of a sum of ``k`` AR(1) terms relative to independent ones.

    :math:`1 + 2 \\sum_{j=1}^{k-1} (1 - j/k) \\rho^j`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    j = np.arange(1, k)
    return float(1.0 + 2.0 * np.sum((1.0 - j / k) * rho**j))
