"""Robustness checks shared by the designs: their names, frames and the placebo-in-time loop.

Every design's :attr:`~dmi_eval.results.DesignResults.checks` maps a check name to a
frame whose first column is ``outcome``:

``placebo_time``
    Fake call-in dates inside the pre period, each fitted on pre data only
    (:func:`placebo_in_time` for ITS; one fake date for SC / SDID). A design reports
    either ``p_value`` (its own test at each fake date) or ``z`` (a standardised gap).
``placebo_space``
    Placebo treated units or sets (microsynth's permutation draws).
``leave_one_out``
    The effect with each heavily weighted donor dropped (SC / SDID).
``pretrend``
    The design's test of parallel pre-trends (DID).

The draws behind placebo-in-space inference live in :mod:`dmi_eval.inference.placebo`;
this module holds the checks that re-fit a design on part of its own data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from dmi_eval.errors import DesignError

__all__ = [
    "CHECKS",
    "LEAVE_ONE_OUT",
    "PLACEBO_SPACE",
    "PLACEBO_TIME",
    "PLACEBO_TIME_COLUMNS",
    "PRETREND",
    "by_outcome",
    "fake_starts",
    "placebo_in_time",
]

PLACEBO_TIME = "placebo_time"
PLACEBO_SPACE = "placebo_space"
LEAVE_ONE_OUT = "leave_one_out"
PRETREND = "pretrend"
CHECKS: tuple[str, ...] = (PLACEBO_TIME, PLACEBO_SPACE, LEAVE_ONE_OUT, PRETREND)
"""Names of the checks a design's ``checks`` mapping may hold."""

PLACEBO_TIME_COLUMNS: tuple[str, ...] = ("row", "pct_change", "log_ratio", "p_value")
"""Columns of :func:`placebo_in_time` (``row``: the fake start among the pre rows)."""


def by_outcome(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One check frame from each outcome's frame, ``outcome`` as its first column."""
    parts = [f.assign(outcome=o) for o, f in frames.items()]
    out = pd.concat(parts, ignore_index=True)
    return out[["outcome", *[c for c in out.columns if c != "outcome"]]]


def fake_starts(n_pre: int, *, window: int, min_train: int, max_placebos: int) -> np.ndarray:
    """Fake call-in rows ``j`` in a pre period of ``n_pre`` rows.

    Each fake start leaves ``j >= min_train`` rows to fit and ``window`` fake post
    rows before the real call-in; when there are more than ``max_placebos``
    candidates, that many evenly spaced ones (first and last included). Empty when
    ``window < 2`` or the pre period is too short.
    """
    starts = np.arange(min_train, n_pre - window + 1)
    if window < 2 or starts.size == 0:
        return starts[:0]
    if starts.size > max_placebos:
        pick = np.unique(np.round(np.linspace(0, starts.size - 1, max_placebos)).astype(int))
        starts = starts[pick]
    return starts


def placebo_in_time(
    refit: Callable[[int, int], tuple[float, float]],
    n_pre: int,
    *,
    window: int,
    min_train: int,
    max_placebos: int,
) -> pd.DataFrame:
    """Placebo-in-time check: the design re-fitted at fake call-in dates in the pre period.

    Parameters
    ----------
    refit
        ``refit(j, end)`` fits the design to pre rows ``0..end-1`` with the fake
        call-in at row ``j`` and returns ``(pct_change, p_value)`` over rows
        ``j..end-1``. A fit the design refuses (:class:`~dmi_eval.errors.DesignError`,
        ``ValueError``, a singular matrix) skips that date.
    n_pre, window, min_train, max_placebos
        See :func:`fake_starts`.

    Returns
    -------
    DataFrame
        :data:`PLACEBO_TIME_COLUMNS`, one row per fake date whose change is finite
        and above -100% (``log_ratio = log(1 + pct_change)``).
    """
    rows: list[dict[str, float]] = []
    starts = fake_starts(n_pre, window=window, min_train=min_train, max_placebos=max_placebos)
    for j in starts:
        try:
            pct, p = refit(int(j), int(j + window))
        except (DesignError, ValueError, np.linalg.LinAlgError):
            continue
        if not np.isfinite(pct) or pct <= -1:
            continue
        rows.append({"row": int(j), "pct_change": pct, "log_ratio": math.log1p(pct), "p_value": p})
    return pd.DataFrame(rows, columns=list(PLACEBO_TIME_COLUMNS))
