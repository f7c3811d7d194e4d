"""Minimum detectable effects: could a design have seen a ``min_reduction`` drop?

The verdict says *not closed* only when the primary design could have detected
a drop of the rule's size (``[verdict] min_reduction``); otherwise it says
*inconclusive*. Each design reports its minimum detectable effect (MDE) in its
diagnostics as ``mde``: the smallest reduction, as a positive fraction, that its
one-sided test at level ``alpha`` detects with probability ``power`` (80%).
These functions compute it from what the design's test uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

POWER = 0.8
"""Power at which the minimum detectable effect is stated."""


def _check(alpha: float, power: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1); got {power}")


def reduction_from_log(delta: float) -> float:
    """A log-ratio distance as a reduction: ``1 - exp(-delta)`` (``inf`` stays ``inf``)."""
    if not math.isfinite(delta):
        return float("inf") if delta > 0 else float("nan")
    return float(-math.expm1(-delta))


def mde_from_se(
    se: float, *, alpha: float = 0.05, power: float = POWER, df: float | None = None
) -> float:
    """MDE of a one-sided Wald test on the log rate ratio.

    Parameters
    ----------
    se
        Standard error of the log ratio under the design's variance model.
    alpha, power
        One-sided level and power.
    df
        Degrees of freedom of a t test (None: normal).

    Notes
    -----
    :math:`\\text{MDE} = 1 - \\exp(-(q_{1-\\alpha} + q_{\\text{power}})\\, se)`,
    with :math:`q` normal or :math:`t_{df}` quantiles (Bloom 1995).
    """
    _check(alpha, power)
    if not (math.isfinite(se) and se > 0):
        return float("nan")
    dist = stats.norm if df is None else stats.t(df)
    return reduction_from_log(float(dist.isf(alpha) + dist.ppf(power)) * se)


def min_rank_p(n_placebos: int) -> float:
    """Smallest one-sided p-value of a rank test against ``n_placebos``: ``1/(n+1)``."""
    if n_placebos < 0:
        raise ValueError(f"n_placebos must be >= 0; got {n_placebos}")
    return 1.0 / (n_placebos + 1)


def rank_critical_value(placebo_stats: np.ndarray, alpha: float = 0.05) -> float:
    """The largest statistic a one-sided rank test of a fall still calls significant.

    ``(1 + #{t_b <= t}) / (n + 1) < alpha`` holds below the ``(m + 1)``-th smallest
    of the ``n`` sorted finite ``placebo_stats``, ``m`` the largest integer with
    ``1 + m < alpha (n + 1)``; ``-inf`` when no statistic can reach it.
    """
    t = np.sort(np.asarray(placebo_stats, dtype=float))
    t = t[np.isfinite(t)]
    allowed = math.ceil(alpha * (t.size + 1) - 1 - 1e-9) - 1  # placebos allowed at or below
    return float(t[allowed]) if t.size and allowed >= 0 else -math.inf


def mde_from_placebos(
    placebo_stats: Sequence[float] | np.ndarray,
    scale: float = 1.0,
    *,
    alpha: float = 0.05,
    power: float = POWER,
) -> float:
    """MDE of a rank test of a fall against placebo statistics.

    Parameters
    ----------
    placebo_stats
        The placebo units' statistics (studentised, or log ratios with ``scale = 1``).
    scale
        Log-ratio units per unit of statistic (the treated unit's SE for a
        studentised statistic).
    alpha, power
        One-sided level and power.

    Returns
    -------
    float
        ``inf`` when the test can never reach ``p < alpha`` (``1/(n+1) >= alpha``).

    Notes
    -----
    The rank p-value is :math:`(1 + \\#\\{t_b \\le t\\})/(n+1)`; it is below
    :math:`\\alpha` when :math:`t < c`, :math:`c` the :math:`(m+1)`-th smallest
    placebo statistic with :math:`m` the largest integer with
    :math:`1 + m < \\alpha (n+1)`. Taking the placebo spread as the treated
    unit's noise, a drop of :math:`\\delta` on the log scale is detected with
    probability ``power`` when :math:`\\delta / \\text{scale} \\ge Q_{power} - c`,
    :math:`Q_{power}` the placebo statistics' ``power`` quantile. The MDE is
    :math:`1 - \\exp(-\\delta)`.
    """
    _check(alpha, power)
    t = np.asarray(placebo_stats, dtype=float)
    t = t[np.isfinite(t)]
    c = rank_critical_value(t, alpha)
    if not math.isfinite(c):
        return float("inf")
    q = float(np.quantile(t, power))
    return reduction_from_log(max(q - c, 0.0) * scale)
