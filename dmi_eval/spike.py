"""The pre-period spike check: does the market's pre period end in a high of its own?

Regression to the mean threatens a closure evaluated from an idiosyncratic high
(:func:`pre_period_spike`); the verdict shows the warning and it gates *closed* and *displaced*
(:mod:`dmi_eval.verdict`, :func:`dmi_eval.evaluation.spike_warning`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from dmi_eval.config import DAYS_PER, duration_text

SPIKE_SPAN_DAYS = 3 * DAYS_PER["month"]
"""The end of the pre period checked for a spike: its last three months."""
SPIKE_BASELINE_DAYS = DAYS_PER["year"]
"""The year before that span is the baseline the spike is compared with."""
SPIKE_LEVEL = 0.01
"""A spike must exceed the baseline at this one-sided level (Student t, see
:func:`pre_period_spike`)."""


def spike_periods(frequency: str) -> tuple[int, int]:
    """``(s, b)``: periods of the span checked for a spike (:data:`SPIKE_SPAN_DAYS`) and of
    the baseline before it (:data:`SPIKE_BASELINE_DAYS`) at ``frequency``."""
    s = max(1, round(SPIKE_SPAN_DAYS / DAYS_PER[frequency]))
    b = max(2, round(SPIKE_BASELINE_DAYS / DAYS_PER[frequency]))
    return s, b


def pre_period_spike(
    pre: Sequence[float] | np.ndarray,
    frequency: str,
    *,
    comparison: Sequence[float] | np.ndarray | None = None,
    min_rise: float = 0.25,
) -> str | None:
    """A warning when the pre period ends in a spike the comparison areas do not share.

    Regression to the mean threatens a closure when the market was evaluated
    from an *idiosyncratic* high: a rise of the market alone, which falls back
    by itself. A rise the comparison areas share (a city-wide level shift of a
    random-walk factor) is in any counterfactual built from them and does not
    regress against it, so the market is compared with the comparison areas,
    not with its own earlier level.

    Parameters
    ----------
    pre
        The market's pre-period counts of the primary outcome, oldest first.
    frequency
        ``"week"``, ``"month"`` or ``"quarter"``: the last three months of the
        pre period are compared with the year before them.
    comparison
        The comparison areas' total count for the same periods (the donor
        pool); None compares the market with its own earlier level (a
        constant comparison).
    min_rise
        Smallest rise against the comparison (fraction) that counts as a spike
        (the rule's ``min_reduction``).

    Notes
    -----
    With :math:`y_t` the market's counts, :math:`c_t` the comparison total,
    :math:`S` the last :math:`s` pre periods (three months) and :math:`B` the
    :math:`b` periods of the year before, the baseline ratio is
    :math:`r_B = \\sum_B y_t / \\sum_B c_t` and the gaps are
    :math:`g_t = y_t - r_B c_t` (zero mean over :math:`B`). The variance
    :math:`v` is the largest of: the variance of :math:`g_t` over :math:`B`;
    the variance of :math:`y_t - r_A c_t` over all :math:`n_A` pre periods
    before :math:`S` (:math:`r_A` their ratio), which takes in the slow
    drift of a market against its comparison areas; and the Poisson variance
    :math:`\\bar y_B`. Where the comparison areas rose, the counts' noise
    rose with them, so the last months' variance is :math:`k^2 v` with
    :math:`k = \\max(1, \\bar c_S / \\bar c_B)` (overdispersed counts: the
    variance grows up to the square of the level). The statistic is
    :math:`z = \\bar g_S / \\sqrt{k^2 v/s + v/b}` and the rise is
    :math:`r_S / r_B - 1`. A spike is :math:`z > t_{0.99,\\, n_A - 1}` (one-sided
    1%, :data:`SPIKE_LEVEL`) and a rise of at least ``min_rise``: a
    difference-in-differences of the last three months against the year
    before. The pooled variance and the t critical value replace the
    year-before variance with a normal critical value, which on simulated
    cities (random-walk factors, market-specific exposure, overdispersion)
    flagged 3-5% of markets without any spike at a nominal 1%. The design's
    own fitted counterfactual is not used: a synthetic control fitted over
    the whole pre period picks donors that were high in those same months and
    absorbs much of a spike. The calibration study
    (``reports/appendix/calibration.md``) reports how often the check fires
    at no-effect markets and at true closures (``spike_null``,
    ``spike_closure``), how often it flags spikes planted in the market alone
    (``spike_plant_50``, ``spike_plant_100``: it must) and a city-wide level
    shift of the same size (``spike_shared_*``: it must not), next to the
    same test against the market's own level (``spike_own_null``,
    ``spike_shared_own_*``).
    """
    y = np.asarray(pre, dtype=float)
    c = np.ones_like(y) if comparison is None else np.asarray(comparison, dtype=float)
    if c.shape != y.shape:
        raise ValueError(f"comparison has {c.size} periods, the pre period {y.size}")
    s, b = spike_periods(frequency)
    if y.size < s + b:
        b = y.size - s
        if b < 2:
            return None
    y_s, y_b = y[-s:], y[-s - b : -s]
    c_s, c_b = c[-s:], c[-s - b : -s]
    if y_b.sum() <= 0 or c_b.sum() <= 0 or c_s.sum() <= 0:
        return None
    r_b = float(y_b.sum() / c_b.sum())
    g_s, g_b = y_s - r_b * c_s, y_b - r_b * c_b
    y_a, c_a = y[:-s], c[:-s]
    g_a = y_a - float(y_a.sum() / c_a.sum()) * c_a
    var = max(float(g_b.var(ddof=1)), float(g_a.var(ddof=1)), float(y_b.mean()))
    grow = max(1.0, float(c_s.mean() / c_b.mean()))
    z = float(g_s.mean()) / math.sqrt(grow**2 * var / s + var / b)
    rise = float(y_s.sum() / c_s.sum()) / r_b - 1
    if not (z > float(stats.t.isf(SPIKE_LEVEL, y_a.size - 1)) and rise >= min_rise):
        return None
    span, before = duration_text(s, frequency), duration_text(b, frequency)
    if comparison is None:
        return (
            f"The pre period ends in a spike: the last {span} before the call-in averaged "
            f"{rise:.0%} above the {before} before them (z = {z:.1f}); part of any fall may "
            "be regression to the mean."
        )
    return (
        f"The pre period ends in a spike the comparison areas do not share: over the last "
        f"{span} before the call-in the market ran {rise:.0%} higher against them than over "
        f"the {before} before (z = {z:.1f}); part of any fall may be regression to the mean."
    )
