"""How far an estimate misses the truth at known closures, and the power that accuracy allows.

A test of the right size cannot detect a drop much better than the estimate it
tests is accurate, whatever its reference distribution. With the errors

.. math::

    e_i = \\log(1 + \\hat\\theta_i) - \\log(1 + \\theta_i)

of the estimated post-period change at markets with a known true change
:math:`\\theta_i` (here every :math:`\\theta_i = \\theta`, a sustained -45% drop)
and their root mean square :math:`s = \\sqrt{\\overline{e^2}}`, a one-sided test at
level :math:`\\alpha` that rejected exactly when the estimate fell below its own
:math:`\\alpha` quantile under no effect would detect the drop with probability

.. math::

    \\Phi\\big(|\\log(1 + \\theta)| / s - z_{1 - \\alpha}\\big)

if the errors were normal with SD :math:`s` and the same with and without the drop.
This is a yardstick, not a bound: a test that knows each market's own noise can do
somewhat better where markets differ, heavy-tailed errors change it, and a test that
rejects too often at no effect (size above :math:`\\alpha`) can exceed it. Where it
falls below the detection target, the target needs a more accurate counterfactual,
not another test (issue #10; the calibration appendix says so where it happens, with
the yardstick's Monte Carlo SE, :func:`power_if_exact_se`, and what the test and the
verdict's other conditions made of the same markets).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm


def log_errors(rows: pd.DataFrame) -> np.ndarray:
    """``log(1 + pct_change) - log(1 + true_post)`` of ``rows`` with an estimate.

    ``rows`` are one design's calibration rows (``pct_change``, ``true_post``).
    """
    est = pd.to_numeric(rows["pct_change"], errors="coerce").to_numpy(dtype=float)
    truth = pd.to_numeric(rows["true_post"], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(est) & np.isfinite(truth) & (est > -1) & (truth > -1)
    return np.log1p(est[ok]) - np.log1p(truth[ok])


def error_rmse(rows: pd.DataFrame) -> float:
    """Root mean square of :func:`log_errors` over ``rows`` (NaN if no row has an estimate)."""
    err = log_errors(rows)
    return float(np.sqrt(np.mean(err**2))) if err.size else float("nan")


def power_if_exact(rmse: float, effect: float, alpha: float) -> float:
    """``Phi(|log(1 + effect)| / rmse - z_{1 - alpha})``: the power of a test of exact size
    ``alpha`` against a drop ``effect`` (e.g. -0.45) when the estimate's errors are normal
    with SD ``rmse`` (see the module notes). NaN when ``rmse`` is not a positive number."""
    if not (math.isfinite(rmse) and rmse > 0):
        return float("nan")
    return float(norm.cdf(abs(math.log1p(effect)) / rmse - norm.ppf(1 - alpha)))


def power_if_exact_se(rows: pd.DataFrame, effect: float, alpha: float) -> float:
    """Monte Carlo SE of :func:`power_if_exact` at :func:`error_rmse` of ``rows``.

    Delta method over the ``n`` markets: ``s^2`` is the mean of the squared errors, so
    ``SE(s^2) = sd(e^2) / sqrt(n)`` (heavy tails make it larger), ``SE(s) = SE(s^2) / (2 s)``
    and the power moves by ``phi(a / s - z) a / s^2`` per unit of ``s``, ``a = |log(1 +
    effect)|``. NaN with fewer than two markets or no error.
    """
    sq = log_errors(rows) ** 2
    if sq.size < 2 or not sq.mean() > 0:
        return float("nan")
    s = math.sqrt(float(sq.mean()))
    se_s = float(sq.std(ddof=1)) / math.sqrt(sq.size) / (2 * s)
    a = abs(math.log1p(effect))
    return float(norm.pdf(a / s - norm.ppf(1 - alpha)) * a / s**2 * se_s)


def exact_size_power(rows: pd.DataFrame, alpha: float) -> tuple[float, float, float]:
    """``(error_rmse, power_if_exact, its SE)`` of ``rows`` whose true change is one drop
    (their median ``true_post``), e.g. one design's sustained -45% markets."""
    effect = float(pd.to_numeric(rows["true_post"], errors="coerce").median())
    rmse = error_rmse(rows)
    return rmse, power_if_exact(rmse, effect, alpha), power_if_exact_se(rows, effect, alpha)


def accuracy_note(table: pd.DataFrame, scenario: str, *, target: float) -> list[str]:
    """Why a scenario's detection ``target`` was missed: the estimate, the test or the rule.

    Reads, for the markets of the detection target, the calibration ``table``
    (:func:`dmi_eval.calibration.summary.summarise`): the estimate's error
    (``detection_error_rmse``), the yardstick of a test of exact size on it
    (``detection_if_exact`` and its Monte Carlo SE), how often the primary design's
    own test rejected there (``detection_tested``; its ``size``) and the verdict's
    ``detection_target``. One appendix bullet, or none when a number is missing.
    """
    rows = table[table["scenario"] == scenario].set_index(["design", "quantity"])
    keys = [
        ("verdict", "detection_target"),
        ("verdict", "detection_if_exact"),
        ("verdict", "detection_error_rmse"),
        ("verdict", "detection_tested"),
        ("primary", "size"),
    ]
    if any(k not in rows.index for k in keys):
        return []
    found, exact, rmse, tested, size = (float(rows.loc[k, "value"]) for k in keys)
    se = float(rows.loc[("verdict", "detection_if_exact"), "mc_se"])
    if exact + 2 * se < target:
        reach = "below the target by more than two Monte Carlo SEs: a more accurate counterfactual"
        reach += ", not another test, would be needed to meet it"
    elif exact < target:
        reach = "below the target but within Monte Carlo error of it"
    else:
        reach = "at or above the target: the estimate is accurate enough to meet it"
    return [
        f"- In {scenario}, at the markets of the detection target, the primary design's "
        f"estimate misses the truth by a root mean square of {rmse:.3f} on the log scale "
        "(`detection_error_rmse`). A one-sided test of exactly 5% size would detect the drop "
        f"at about {exact:.3f} of them (`detection_if_exact`, a normal approximation, Monte "
        f"Carlo SE {se:.3f}), {reach}. The primary design's own test, of size {size:.3f} "
        f"at no-effect markets, rejected at {tested:.3f} of them (`detection_tested`); the "
        "verdict's other conditions (the table of why closures got their verdict below) "
        f"brought detection to {found:.3f}."
    ]
