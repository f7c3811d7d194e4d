"""Delta-method tests of a log ratio: the normal tails and the percent-change interval.

Notes
-----
For an estimate :math:`\\hat\\theta = \\log(O/C)` with delta-method standard error
:math:`se`, :math:`z = \\hat\\theta / se`; the one-sided p-values are
:math:`\\Phi(z)` (reduction) and :math:`1 - \\Phi(z)` (rise), the two-sided one
:math:`2(1 - \\Phi(|z|))`, and the interval of the percent change is
:math:`(e^{\\hat\\theta - q\\,se} - 1,\\ e^{\\hat\\theta + q\\,se} - 1)` with
:math:`q` the normal (or t) quantile of the confidence level.
"""

from __future__ import annotations

import math
import sys

from scipy import stats

NAN = float("nan")


def normal_tails(z: float) -> tuple[float, float, float]:
    """``(p_lower, p_upper, p_two_sided)`` of a standard-normal statistic (NaN if not finite)."""
    if not math.isfinite(z):
        return NAN, NAN, NAN
    return float(stats.norm.cdf(z)), float(stats.norm.sf(z)), float(2 * stats.norm.sf(abs(z)))


def _expm1(x: float) -> float:
    # beyond e^709 a float overflows: the interval has no upper limit (one post period's
    # secondary outcome can have an SE in the hundreds)
    return math.inf if x > MAX_EXP else math.expm1(x)


MAX_EXP = math.log(sys.float_info.max)


def log_ratio_interval(log_ratio: float, se: float, q: float) -> tuple[float, float]:
    """Percent-change interval ``(expm1(log_ratio - q*se), expm1(log_ratio + q*se))``.

    An end beyond the largest float is ``inf`` (no upper limit), never an overflow.
    """
    return _expm1(log_ratio - q * se), _expm1(log_ratio + q * se)
