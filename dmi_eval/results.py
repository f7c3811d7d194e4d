"""The tidy effects contract shared by every design.

Every design's results object offers ``effects()``: a DataFrame with exactly
the columns in :data:`EFFECT_COLUMNS`, one row per outcome and window.
Everything downstream (verdict, pooling, tables, plots) reads those frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


TABLE_COLUMNS: tuple[str, ...] = (*EFFECT_COLUMNS, "level", "p_lower", "p_upper", "p_two_sided")
"""Columns of :attr:`DesignResults.table`: the effects contract plus the confidence level
and the three tails of the test, each computed by the design itself."""

SERIES_COLUMNS: tuple[str, ...] = (
    "outcome",
    "period",
    "role",
    "observed",
    "counterfactual",
    "low",
    "high",
)
"""Columns of :attr:`DesignResults.series`: one row per outcome and period (totals of the
treated areas); ``low``/``high`` bound the counterfactual (NaN where the design has no band)."""

DIAGNOSTIC_COLUMNS: tuple[str, ...] = ("outcome", "n_pre", "pre_fit_ratio", "poor_fit")
"""Shared first columns of :attr:`DesignResults.diagnostics`; designs add their own after."""


class DesignResults:
    """The one read-only results shape every design returns.

    Every design's results class derives from this one (as a frozen dataclass)
    and provides the shared members below; designs add members (SC ``weights``,
    microsynth ``balance``, DID ``event_study``) but never rename shared ones.
    Everything downstream (evaluation, verdict, pooling, plots, analyses) reads
    these members only.

    Shared members
    --------------
    site_id, design : str
        The site and the design's name (``its``, ``cits``, ``sc``, ``sdid``,
        ``did``, ``microsynth``).
    level : float
        Confidence level of the intervals (0.95 is a 95% interval).
    windows : tuple of str
        Effect windows, in order (``"post"``, ``"last6"``).
    table : pandas.DataFrame
        :data:`TABLE_COLUMNS`: one row per outcome and window.
    series : pandas.DataFrame
        :data:`SERIES_COLUMNS`: observed and counterfactual per period.
    diagnostics : pandas.DataFrame
        One row per outcome, :data:`DIAGNOSTIC_COLUMNS` first.
    checks : Mapping[str, pandas.DataFrame]
        Robustness checks as frames (``placebo_time``, ``placebo_space``,
        ``leave_one_out``), only those the design ran.
    choices : Mapping[str, Any]
        The options actually used (printed by the methods appendix).
    notes : tuple of str
        Warnings and remarks of the fit.

    Notes
    -----
    ``effects()`` is ``table`` restricted to the effects contract
    :data:`EFFECT_COLUMNS`; ``p_value_lower(o, w)`` is the ``p_lower`` cell of
    ``table``, the one-sided test of a reduction
    :math:`H_1: \\text{observed} < \\text{counterfactual}`.
    """

    site_id: str
    design: str
    level: float
    windows: tuple[str, ...]
    table: pd.DataFrame
    series: pd.DataFrame
    diagnostics: pd.DataFrame
    checks: Mapping[str, pd.DataFrame]
    choices: Mapping[str, Any]
    notes: tuple[str, ...]

    def effects(self) -> pd.DataFrame:
        """Tidy effects (:data:`EFFECT_COLUMNS`), one row per outcome and window (a copy)."""
        return self.table[list(EFFECT_COLUMNS)].copy()

    def row(self, outcome: str, window: str = "post") -> pd.Series:
        """The ``table`` row of one outcome and window."""
        t = self.table
        rows = t[(t["outcome"] == outcome) & (t["window"] == window)]
        if rows.empty:
            raise KeyError(
                f"{self.design}: no effect for outcome {outcome!r}, window {window!r}; "
                f"outcomes: {', '.join(dict.fromkeys(t['outcome']))}; windows: "
                f"{', '.join(self.windows)}"
            )
        return rows.iloc[0]

    def p_value_lower(self, outcome: str, window: str = "post") -> float:
        """One-sided p-value of a reduction (the ``p_lower`` cell of ``table``)."""
        return float(self.row(outcome, window)["p_lower"])

    def pre_fit_ratio(self, outcome: str) -> float:
        """Pre-period fit error over the pre-period mean (``diagnostics``; NaN if none)."""
        d = self.diagnostics
        rows = d[d["outcome"] == outcome]
        return float(rows["pre_fit_ratio"].iloc[0]) if len(rows) else float("nan")

    def get_plot_data(self, outcome: str) -> pd.DataFrame:
        """``series`` of one outcome (``period, role, observed, counterfactual, low, high``)."""
        s = self.series
        return s[s["outcome"] == outcome].drop(columns="outcome").reset_index(drop=True)


def table_frame(
    effects: pd.DataFrame, level: float, tails: Iterable[Sequence[float]]
) -> pd.DataFrame:
    """Effects frame plus ``level`` and the ``(p_lower, p_upper, p_two_sided)`` of each row."""
    frame = effects.copy()
    tails = [tuple(map(float, t)) for t in tails]
    frame["level"] = float(level)
    for i, col in enumerate(("p_lower", "p_upper", "p_two_sided")):
        frame[col] = np.array([t[i] for t in tails], dtype="float64")
    return frame[list(TABLE_COLUMNS)]


def diagnostics_frame(shared: pd.DataFrame, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """Diagnostics with :data:`DIAGNOSTIC_COLUMNS` first, then the design's own columns."""
    frame = shared[list(DIAGNOSTIC_COLUMNS)].reset_index(drop=True)
    if extra is not None:
        rest = extra.reset_index(drop=True)
        rest = rest[[c for c in rest.columns if c not in DIAGNOSTIC_COLUMNS]]
        frame = pd.concat([frame, rest], axis=1)
    return frame
