"""The tidy effects contract shared by every design.

Every design's results object offers ``effects()``: a DataFrame with exactly
the columns in :data:`EFFECT_COLUMNS`, one row per outcome and window.
Everything downstream (verdict, pooling, tables, plots) reads those frames.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

P_VALUE_TAIL = re.compile(
    r",? (?:(?:lower|greater|upper), one-sided|one-sided (?:lower|upper)|two-sided)"
)
"""The part of a design's ``method`` text that says which tail its ``p_value`` column is."""

RISE_TEST = ", upper, one-sided (the test of a rise)"
"""The tail of a catchment row's ``p_value``: crime moving next door is a rise."""


def as_rise_test(table: pd.DataFrame) -> pd.DataFrame:
    """A catchment's rows with ``p_value`` the one-sided test of a rise (``p_upper``).

    A design's ``p_value`` is its test of a reduction (or two-sided); in the
    nearby areas the question is whether crime rose, so ``effects.csv`` gives
    that test there, and ``method`` says so.
    """
    out = table.copy()
    out["p_value"] = out["p_upper"]
    out["method"] = [P_VALUE_TAIL.sub("", str(m)) + RISE_TEST for m in out["method"]]
    return out


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
        Columns in contract order, numeric columns as float64. A window with no
        observed incident gets ``ci_low = -1`` (-100%), so its interval holds its
        change of -100%: the data cannot rule out a complete stop.
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
    # With no incident observed the change is -100% and the data cannot rule out a complete
    # stop (an exact Poisson interval for 0 events starts at 0): the interval starts there too.
    nothing_seen = (frame["observed"] == 0) & (frame["ci_low"] > -1.0)
    frame.loc[nothing_seen, "ci_low"] = -1.0
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


TABLE_COLUMNS: tuple[str, ...] = (
    *EFFECT_COLUMNS,
    "level",
    "p_lower",
    "p_upper",
    "p_two_sided",
    "se",
)
"""Columns of :attr:`DesignResults.table`: the effects contract plus the confidence level,
the three tails of the test, each computed by the design itself, and ``se``: the standard
error of ``log(1 + pct_change)`` under the design's own variance model (NaN where the design
has none; pooling then reads it back from the interval)."""

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


class cached_frame:
    """A property computed once and handed out as a copy: a frame or a mapping of frames.

    ``functools.cached_property`` hands out the cached object itself, so a
    caller's ``results.table["pct_change"] = 0`` changed the results for every
    later reader (``table`` and ``effects()`` then disagreed). Each access here
    returns a copy; the cached original is never handed out.
    """

    def __init__(self, func: Any):
        self.func = func
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_cached_{name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        cache = obj.__dict__
        if self.slot not in cache:
            cache[self.slot] = self.func(obj)
        value = cache[self.slot]
        if isinstance(value, pd.DataFrame):
            return value.copy()
        return {key: frame.copy() for key, frame in value.items()}


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

    @property
    def notes(self) -> tuple[str, ...]:
        """Warnings and remarks of the fit (none unless the design has some)."""
        return ()

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


def series_frame(
    outcome: Any,
    period: Any,
    role: Any,
    observed: Any,
    counterfactual: Any,
    low: Any = np.nan,
    high: Any = np.nan,
) -> pd.DataFrame:
    """A :attr:`DesignResults.series` frame (:data:`SERIES_COLUMNS`) from its columns."""
    return pd.DataFrame(
        {
            "outcome": outcome,
            "period": period,
            "role": role,
            "observed": observed,
            "counterfactual": counterfactual,
            "low": low,
            "high": high,
        }
    )


def table_frame(
    effects: pd.DataFrame,
    level: float,
    tails: Iterable[Sequence[float]],
    se: Iterable[float] | None = None,
) -> pd.DataFrame:
    """Effects frame plus ``level``, the ``(p_lower, p_upper, p_two_sided)`` of each row and
    its log-ratio ``se`` (NaN when not given)."""
    frame = effects.copy()
    tails = [tuple(map(float, t)) for t in tails]
    frame["level"] = float(level)
    for i, col in enumerate(("p_lower", "p_upper", "p_two_sided")):
        frame[col] = np.array([t[i] for t in tails], dtype="float64")
    frame["se"] = np.nan if se is None else np.array(list(se), dtype="float64")
    return frame[list(TABLE_COLUMNS)]


def diagnostics_frame(shared: pd.DataFrame, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """Diagnostics with :data:`DIAGNOSTIC_COLUMNS` first, then the design's own columns."""
    frame = shared[list(DIAGNOSTIC_COLUMNS)].reset_index(drop=True)
    if extra is not None:
        rest = extra.reset_index(drop=True)
        rest = rest[[c for c in rest.columns if c not in DIAGNOSTIC_COLUMNS]]
        frame = pd.concat([frame, rest], axis=1)
    return frame


@dataclass(frozen=True)
class WindowEffect:
    """Effect of the intervention over a set of periods (one window), for every design.

    ``observed`` and ``counterfactual`` are sums; ``effect = observed - counterfactual``;
    ``pct_change = observed / counterfactual - 1`` with its interval ``ci_low, ci_high``;
    ``log_ratio_se`` is the standard error of ``log(observed / counterfactual)`` (NaN for a
    model on the count scale, whose ``effect_se`` is the SE of the effect instead);
    ``p_value`` is the two-sided, ``p_lower`` and ``p_upper`` the one-sided p-values of a
    reduction and of a rise, each computed by the design's own test (a rank test counts each
    tail; never ``1 - p``). ``effect_low/effect_high`` bound the cumulative effect,
    ``rate_ratio`` is the model's fitted/counterfactual ratio and ``reference`` names the log
    ratio tested (ITS). ``mde`` is the smallest reduction (positive fraction) the window's
    one-sided test detects with 80% power at the design's ``mde_alpha`` (the verdict's
    ``alpha`` at sites; :mod:`dmi_eval.power`), ``min_p`` the smallest
    one-sided p-value the test can reach (``1/(n+1)`` for a rank test, 0 otherwise).
    """

    n_periods: int
    observed: float
    counterfactual: float
    effect: float
    pct_change: float
    ci_low: float
    ci_high: float
    log_ratio_se: float
    p_value: float
    p_lower: float
    effect_se: float = float("nan")
    effect_low: float = float("nan")
    effect_high: float = float("nan")
    rate_ratio: float = float("nan")
    reference: str = "log(observed/counterfactual)"
    p_upper: float = float("nan")
    mde: float = float("nan")
    min_p: float = 0.0


class WindowResults(DesignResults):
    """Shared members of the designs whose results hold one :class:`WindowEffect` per window.

    Subclasses (ITS, DID: frozen dataclasses) have ``site_id, design, level, last_k,
    outcomes`` and ``by_outcome`` (outcome -> an object with ``windows`` and ``choices``)
    and define ``method(outcome)``. Each :class:`WindowEffect` carries its test's three
    tails (delta-method or placebo rank test).
    """

    level: float
    last_k: int
    outcomes: tuple[str, ...]
    by_outcome: Mapping[str, Any]

    @property
    def windows(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("post", f"last{self.last_k}")

    @property
    def choices(self) -> dict[str, Any]:  # type: ignore[override]
        """Outcome -> every modelling choice of that outcome's model."""
        return {o: dict(self.by_outcome[o].choices) for o in self.outcomes}

    def method(self, outcome: str) -> str:
        raise NotImplementedError

    def _get(self, outcome: str | None) -> Any:
        if outcome is None:
            outcome = self.outcomes[0]
        try:
            return self.by_outcome[outcome]
        except KeyError:
            raise KeyError(
                f"outcome {outcome!r} not fitted; fitted: {', '.join(self.outcomes)}"
            ) from None

    def effects(self) -> pd.DataFrame:
        """Tidy effects: one row per outcome and window (``post``, ``last{k}``)."""
        rows = []
        for outcome in self.outcomes:
            windows = self.by_outcome[outcome].windows
            ordered = {w: windows[w] for w in self.windows}
            rows += window_rows(self.site_id, outcome, self.design, ordered, self.method(outcome))
        return effects_frame(rows)

    @cached_frame
    def table(self) -> pd.DataFrame:  # type: ignore[override]
        """Effects plus ``level`` and the tails of each window's own test."""
        tails, se = [], []
        for outcome in self.outcomes:
            for w in self.windows:
                e = self.by_outcome[outcome].windows[w]
                tails.append((e.p_lower, e.p_upper, e.p_value))
                se.append(e.log_ratio_se)
        return table_frame(self.effects(), self.level, tails, se)

    def window_effect(self, outcome: str, window: str) -> WindowEffect:
        """The full :class:`WindowEffect` of an outcome and window."""
        o = self._get(outcome)
        if window not in o.windows:
            raise KeyError(f"window {window!r}; available: {', '.join(o.windows)}")
        return o.windows[window]
