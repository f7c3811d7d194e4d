"""Markdown tables for the reports, read from the tidy results frames.

Numbers in tables and prose come from the results frames through these
functions, never typed by hand. Optional small-cell suppression
(``[report] suppress_below``) replaces small published counts with ``<k``
without touching any estimate.
"""

from __future__ import annotations

import math

import pandas as pd


def fmt_pct(x: float, digits: int = 0) -> str:
    """``-0.253`` -> ``"-25%"`` (a fraction shown as a signed percentage)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x * 100:+.{digits}f}%"


def fmt_size(x: float, digits: int = 0) -> str:
    """Size of a change without its sign: ``-0.253`` -> ``"25%"`` (for prose)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{abs(x) * 100:.{digits}f}%"


def fmt_interval(low: float, high: float, digits: int = 0) -> str:
    """Percent interval ``"-40% to -12%"``."""
    return f"{fmt_pct(low, digits)} to {fmt_pct(high, digits)}"


def fmt_p(p: float) -> str:
    """p-values: three decimals, ``<0.001`` below that."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_count(x: float, suppress_below: int = 0) -> str:
    """A count (or expected count) for a public table, suppressed when small."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if suppress_below and 0 < x < suppress_below:
        return f"<{suppress_below}"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def effects_table(effects: pd.DataFrame, *, suppress_below: int = 0) -> str:
    """Markdown table of an effects frame: one line per design, outcome and window."""
    rows = [
        {
            "outcome": r.outcome,
            "design": r.design,
            "window": r.window,
            "observed": fmt_count(r.observed, suppress_below),
            "expected without DMI": fmt_count(r.counterfactual, suppress_below),
            "change": fmt_pct(r.pct_change),
            "interval": fmt_interval(r.ci_low, r.ci_high),
            "p": fmt_p(r.p_value),
            "method": r.method,
        }
        for r in effects.itertuples(index=False)
    ]
    return markdown_table(pd.DataFrame(rows))


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table (no index), deterministic."""
    if frame.empty:
        return "_(none)_"
    return frame.to_markdown(index=False, disable_numparse=True)
