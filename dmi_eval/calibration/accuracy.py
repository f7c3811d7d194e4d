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
not another test (issue #10; the calibration appendix says so where it happens).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm


def error_rmse(rows: pd.DataFrame) -> float:
    """Root mean square of ``log(1 + pct_change) - log(1 + true_post)`` over ``rows`` (NaN if none).

    ``rows`` are one design's calibration rows (``pct_change``, ``true_post``); rows
    without an estimate are left out.
    """
    est = pd.to_numeric(rows["pct_change"], errors="coerce").to_numpy(dtype=float)
    truth = pd.to_numeric(rows["true_post"], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(est) & np.isfinite(truth) & (est > -1) & (truth > -1)
    if not ok.any():
        return float("nan")
    err = np.log1p(est[ok]) - np.log1p(truth[ok])
    return float(np.sqrt(np.mean(err**2)))


def power_if_exact(rmse: float, effect: float, alpha: float) -> float:
    """``Phi(|log(1 + effect)| / rmse - z_{1 - alpha})``: the power of a test of exact size
    ``alpha`` against a drop ``effect`` (e.g. -0.45) when the estimate's errors are normal
    with SD ``rmse`` (see the module notes). NaN when ``rmse`` is not a positive number."""
    if not (math.isfinite(rmse) and rmse > 0):
        return float("nan")
    return float(norm.cdf(abs(math.log1p(effect)) / rmse - norm.ppf(1 - alpha)))


def accuracy_note(table: pd.DataFrame, scenario: str, *, target: float) -> list[str]:
    """Whether a scenario's missed detection ``target`` is the test's doing or the estimate's.

    Reads the calibration ``table`` (:func:`dmi_eval.calibration.summary.summarise`):
    the verdict's ``detection_target`` and ``detection_if_exact``, the primary design's
    ``error_rmse_45``, ``power_45`` and ``size``. One appendix bullet, or none when a
    number is missing.
    """
    value = table[table["scenario"] == scenario].set_index(["design", "quantity"])["value"]
    keys = [
        ("verdict", "detection_target"),
        ("verdict", "detection_if_exact"),
        ("primary", "error_rmse_45"),
        ("primary", "power_45"),
        ("primary", "size"),
    ]
    if any(k not in value.index for k in keys):
        return []
    found, exact, rmse, power, size = (float(value[k]) for k in keys)
    cause = (
        "below the target: a test of the right size on this estimate should not be expected "
        "to meet it; a more accurate counterfactual would be needed"
        if exact < target
        else "not below the target: a test that used the estimate's accuracy fully could meet it"
    )
    return [
        f"- In {scenario} the primary design's estimate misses the truth at sustained -45% "
        f"closures by a root mean square of {rmse:.3f} on the log scale (`error_rmse_45`). "
        "With its errors at the markets of the detection target, a one-sided test of exactly "
        f"5% size would detect the drop at about {exact:.3f} of them (`detection_if_exact`, "
        f"a normal approximation), {cause}. The verdict detected {found:.3f}; the primary "
        f"design's own test, of size {size:.3f} there, rejected at {power:.3f} of all "
        "sustained -45% markets (`power_45`)."
    ]
