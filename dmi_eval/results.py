"""The tidy effects contract shared by every design.

Every design's results object offers ``effects()``: a DataFrame with exactly
the columns in :data:`EFFECT_COLUMNS`, one row per outcome and window.
Everything downstream (verdict, pooling, tables, plots) reads those frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

EFFECT_COLUMNS: tuple[str, ...] = (
    "site",
    "outcome",
    "design",
    "window",
    "observed",
    "counterfactual",
    "effect",
    "pct_change",
    "ci_low",
    "ci_high",
    "p_value",
    "method",
)
"""Columns of every ``effects()`` frame.

``observed`` and ``counterfactual`` are totals over the window; ``effect`` is
``observed - counterfactual``; ``pct_change`` is ``observed / counterfactual - 1``
as a fraction (-0.25 is a 25% fall); ``ci_low``/``ci_high`` bound ``pct_change``
(fractions); ``p_value`` is the design's test of no effect, and ``method``
says how the interval and p-value were obtained, including the confidence level
and whether the test is one- or two-sided (e.g. ``"quasi-Poisson delta 95%, two-sided"``).
"""

_NUMERIC = ("observed", "counterfactual", "effect", "pct_change", "ci_low", "ci_high", "p_value")


def effects_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build an effects frame from row mappings, checking the contract.

    Parameters
    ----------
    rows
        Mappings with exactly the keys in :data:`EFFECT_COLUMNS`.

    Returns
    -------
    pandas.DataFrame
        Columns in contract order, numeric columns as float64.
    """
    rows = list(rows)
    for i, row in enumerate(rows):
        missing = set(EFFECT_COLUMNS) - set(row)
        extra = set(row) - set(EFFECT_COLUMNS)
        if missing or extra:
            raise ValueError(
                f"effects row {i}: missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
    frame = pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))
    for col in _NUMERIC:
        frame[col] = frame[col].astype("float64")
    for col in ("site", "outcome", "design", "window", "method"):
        frame[col] = frame[col].astype(object)
    return frame


def window_rows(
    site: str, outcome: str, design: str, windows: Mapping[str, Any], method: str
) -> list[dict[str, Any]]:
    """Effects rows of one outcome from window objects with the contract's attributes.

    ``windows`` maps a window name (``"post"``, ``"last6"``) to an object with
    ``observed, counterfactual, effect, pct_change, ci_low, ci_high, p_value``.
    """
    return [
        {
            "site": site,
            "outcome": outcome,
            "design": design,
            "window": name,
            "observed": w.observed,
            "counterfactual": w.counterfactual,
            "effect": w.effect,
            "pct_change": w.pct_change,
            "ci_low": w.ci_low,
            "ci_high": w.ci_high,
            "p_value": w.p_value,
            "method": method,
        }
        for name, w in windows.items()
    ]


def empty_effects() -> pd.DataFrame:
    """An effects frame with no rows (correct columns and dtypes)."""
    return effects_frame([])


def pct_interval_from_log(log_ratio: float, se: float, z: float) -> tuple[float, float]:
    """Percent-change interval from a log ratio and its standard error.

    Returns ``(exp(log_ratio - z*se) - 1, exp(log_ratio + z*se) - 1)``.
    """
    return float(np.expm1(log_ratio - z * se)), float(np.expm1(log_ratio + z * se))
