"""Markdown tables for the reports, read from the tidy results frames.

Numbers in tables and prose come from the results frames through these
functions, never typed by hand. Tables stay narrow (at most eight columns):
a design's method text is printed once, as a note under the table, not on
every row; numbers are right-aligned; an interval so wide that it says nothing
is shown as "too wide to tell", with the reason in a note. Optional small-cell
suppression (``[report] suppress_below``) replaces small published counts with
``<k`` without touching any estimate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pandas as pd

from dmi_eval.results import P_VALUE_TAIL

TOO_WIDE = "too wide to tell"
WIDE_UPPER = 5.0
"""An interval whose upper end is above +500% (six times the expected count) says nothing."""
WIDE_LOWER = -0.995
"""... or whose lower end is at -100% (rounded) while the upper end is a rise."""

DESIGN_LABELS: dict[str, str] = {
    "its": "interrupted time series",
    "cits": "controlled interrupted time series",
    "sc": "synthetic control",
    "sdid": "synthetic difference-in-differences",
    "microsynth": "micro-level synthetic control",
    "did": "difference-in-differences",
}
CATCHMENT_SUFFIX = "-catchment"
_SINGLE_AREA_PLACEBOS = (
    "its placebos are single {units}: where the market is much more exposed to city-wide "
    "swings than any of them, or has a slow trend of its own, its interval was too narrow and "
    "its test rejected no-effect markets more often than its nominal level (the calibration "
    "appendix's monthly-exposed stress and market-trends scenario; `dmi-eval power --exposure 2` "
    "or `--market-trend 0.05` shows what that would mean at a site like this one)"
)
DESIGN_CAVEATS: dict[str, str] = {
    "sc": _SINGLE_AREA_PLACEBOS.format(units="comparison areas"),
    "did": _SINGLE_AREA_PLACEBOS.format(units="control areas"),
    "sdid": (
        "in the calibration study's realistic cities its interval was wider than its stated "
        "level (conservative; calibration appendix)"
    ),
    "sc" + CATCHMENT_SUFFIX: (
        "its placebos are single comparison areas, which drift more than a ring of several "
        "areas does, so in the calibration study's realistic cities its interval was wider than "
        "its stated level and its test of a rise rejected no-effect catchments less often than "
        "its nominal level (conservative; calibration appendix)"
    ),
    "its": (
        "it sees only the market: a city-wide change after the call-in reads as an effect, "
        "and its interval covers noise around the market's own trend, not slow city-wide "
        "drift, so on simulated cities its test rejects no-effect markets more often than "
        "its nominal level (calibration appendix)"
    ),
    "cits": (
        "it removes what the comparison areas share, not the market's own drift, so in most "
        "of the calibration study's simulated cities its test rejects no-effect markets more "
        "often than its nominal level (calibration appendix)"
    ),
}
"""What a design's interval leaves out, said under every effects table that shows it (a
catchment's design without an entry of its own gets its market design's)."""


def design_label(design: str) -> str:
    """A design code in words: ``"sc"`` -> ``"synthetic control"``."""
    base = design.removesuffix(CATCHMENT_SUFFIX)
    label = DESIGN_LABELS.get(base, base)
    return f"{label} (nearby areas)" if design.endswith(CATCHMENT_SUFFIX) else label


def window_label(window: str, unit: str | None = None) -> str:
    """``"post"`` -> ``"after the call-in"``; ``"last6"`` -> ``"last 6 months"``."""
    if window == "post":
        return f"all {unit}s after" if unit else "all after"
    digits = "".join(ch for ch in window if ch.isdigit())
    if window.startswith("last") and digits:
        return f"last {digits} {unit}s" if unit else f"last {digits}"
    return window


def without_capped_window(effects: pd.DataFrame, n_post: int, last_k: int) -> pd.DataFrame:
    """``effects`` without its ``last{last_k}`` rows when the post period is no longer than them.

    Every design caps the persistence window at the post period, so with ``n_post <= last_k``
    its rows repeat the ``post`` rows under a name ("last 6 months") the data do not have.
    """
    if n_post > last_k:
        return effects
    return effects[effects["window"] != f"last{last_k}"]


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_pct(x: float, digits: int = 0) -> str:
    """``-0.253`` -> ``"-25%"`` (a fraction shown as a signed percentage)."""
    if _missing(x):
        return "n/a"
    shown = f"{x * 100:+.{digits}f}"
    # a change that rounds to nothing has no sign: "0%", never "-0%"
    return (shown[1:] if float(shown) == 0 else shown) + "%"


def fmt_size(x: float, digits: int = 0) -> str:
    """Size of a change without its sign: ``-0.253`` -> ``"25%"`` (for prose)."""
    if _missing(x):
        return "n/a"
    return f"{abs(x) * 100:.{digits}f}%"


def interval_too_wide(low: float, high: float) -> bool:
    """Whether an interval of percent changes is too wide to say anything."""
    if _missing(low) or _missing(high) or not (math.isfinite(low) and math.isfinite(high)):
        return True
    return high > WIDE_UPPER or (low <= WIDE_LOWER and high > 0)


def fmt_interval(low: float, high: float, digits: int = 0) -> str:
    """Percent interval ``"-40% to -12%"``, or ``"too wide to tell"``."""
    if interval_too_wide(low, high):
        return TOO_WIDE
    return f"{fmt_pct(low, digits)} to {fmt_pct(high, digits)}"


def fmt_p(p: float) -> str:
    """p-values: three decimals, ``<0.001`` below that."""
    if _missing(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_count(x: float, suppress_below: int = 0) -> str:
    """A count (or expected count) for a public table, suppressed when small."""
    if _missing(x):
        return "n/a"
    if suppress_below and 0 < x < suppress_below:
        return f"<{suppress_below}"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


P_COLUMNS: dict[str, str] = {
    "p_lower": "p (fall)",
    "p_upper": "p (rise)",
    "p_two_sided": "p (two-sided)",
    "p_value": "p",
}


def effects_table(
    effects: pd.DataFrame,
    *,
    suppress_below: int = 0,
    p: str = "p_lower",
    unit: str | None = None,
    outcome_label: Callable[[str], str] | None = None,
) -> str:
    """Markdown table of an effects frame with its notes: one line per design and window.

    Parameters
    ----------
    effects
        Rows of :meth:`DesignResults.effects` (or of ``table``: with a ``level``
        column whose values differ, each interval cell states its level).
    suppress_below
        Counts below this show as ``<k``.
    p
        Which p-value column to show (``p_lower``: the one-sided test of a
        fall; ``p_upper``: of a rise). When the frame lacks it, ``p_value``
        (the design's own test, stated in the method note) is shown.
    unit
        The study's period (``"month"``) for window names.
    outcome_label
        Outcome -> words; an ``outcome`` column is shown only when the frame
        holds more than one outcome.
    """
    if effects.empty:
        return "_(none)_"
    if p not in effects.columns:
        p = "p_value"
    label = outcome_label or (lambda o: o)
    several = effects["outcome"].nunique() > 1
    # a table that mixes 90% and 95% intervals says each one's level in its cell
    mixed = "level" in effects.columns and effects["level"].nunique() > 1
    rows, wide = [], []
    for r in effects.itertuples(index=False):
        row: dict[str, str] = {}
        if several:
            row["outcome"] = label(r.outcome)
        row["design"] = design_label(r.design)
        row["window"] = window_label(r.window, unit)
        row["observed"] = fmt_count(r.observed, suppress_below)
        row["expected without the DMI"] = fmt_count(r.counterfactual, suppress_below)
        row["change"] = fmt_pct(r.pct_change)
        row["interval"] = interval_cell(design_label(r.design), r.ci_low, r.ci_high, wide)
        if mixed and row["interval"] != f"{TOO_WIDE}*":
            row["interval"] += f" ({100 * float(r.level):g}%)"
        row[P_COLUMNS[p]] = fmt_p(getattr(r, p))
        rows.append(row)
    frame = pd.DataFrame(rows)
    text = markdown_table(frame, right=("observed", "expected without the DMI", "change"))
    notes = method_notes(effects)
    if wide:
        notes += "\n\n" + too_wide_note(wide)
    return text + "\n\n" + notes


def interval_cell(name: str, low: float, high: float, wide: list[tuple[str, float, float]]) -> str:
    """An interval as a table cell; one too wide to tell is starred and its ends kept in
    ``wide`` for :func:`too_wide_note`."""
    cell = fmt_interval(low, high)
    if cell != TOO_WIDE:
        return cell
    wide.append((name, low, high))
    return f"{TOO_WIDE}*"


TOO_FEW = "too few offences, or too loose a fit, for the design to tell which way crime went"
"""Why a site's interval is too wide to tell (:func:`too_wide_note`'s default reason)."""


def wide_ends(low: float, high: float) -> str:
    """A too-wide interval's ends in words: ``-97% to beyond +500%``."""
    top = fmt_pct(high) if high <= WIDE_UPPER else f"beyond {fmt_pct(WIDE_UPPER)}"
    return f"{fmt_pct(low)} to {top}"


def too_wide_note(
    rows: list[tuple[str, float, float]], *, what: str = "interval", why: str = TOO_FEW
) -> str:
    """One note for every interval shown as too wide: each name once, with its ends."""
    seen: dict[str, str] = {}
    for design, low, high in rows:
        if _missing(low) or _missing(high):
            seen.setdefault(design, "no interval")
        else:
            seen.setdefault(design, wide_ends(low, high))
    listed = "; ".join(f"{d}: {ends}" for d, ends in seen.items())
    return (
        f"\\* *{TOO_WIDE}*: the {what} ({listed}) runs from a near-complete stop to a rise: {why}."
    )


def method_notes(effects: pd.DataFrame) -> str:
    """Each design's method text once, as a list under the table, with its caveat.

    The text says how the counterfactual, the test and the interval are made;
    the tail of the design's own ``p_value`` (which ``effects.csv`` keeps in
    ``method``) is left out, because the table's p column is one tail for
    every design and its header and caption say which. A design in
    :data:`DESIGN_CAVEATS` gets what its interval leaves out, so a reader of
    its p-value sees the limit where the p-value is printed. Where a design's
    rows rank different numbers of placebo areas (by outcome and window), the
    note gives their range.
    """
    seen: dict[str, str] = {}
    counts: dict[str, set[int]] = {}
    for design, method in zip(effects["design"], effects["method"], strict=True):
        text = P_VALUE_TAIL.sub("", str(method))
        caveat = DESIGN_CAVEATS.get(
            design, DESIGN_CAVEATS.get(design.removesuffix(CATCHMENT_SUFFIX))
        )
        label = design_label(design)
        seen.setdefault(label, f"{text}; {caveat}" if caveat else text)
        counts.setdefault(label, set()).update(
            int(n.replace(",", "")) for n in _PLACEBO_COUNT.findall(text)
        )
    for label, found in counts.items():
        if len(found) > 1:  # each outcome and window ranks its own placebos
            seen[label] = _PLACEBO_COUNT.sub(
                f"over {min(found):,} to {max(found):,} placebo areas (by outcome and window; "
                "each row's number is in `results/effects.csv`)",
                seen[label],
                count=1,
            )
    return "*Methods:*\n\n" + "\n".join(f"- **{d}**: {m}." for d, m in seen.items())


_PLACEBO_COUNT = re.compile(r"over ([\d,]+) placebo areas")


_NUMBER = re.compile(r"^(n/a|[<>]?[+-]?[\d,]*\.?\d+(e[+-]?\d+)?%?|<0\.001)$")


def _numeric(values: pd.Series) -> bool:
    return bool(len(values)) and all(_NUMBER.match(str(v).strip()) for v in values)


def markdown_table(frame: pd.DataFrame, *, right: tuple[str, ...] = ()) -> str:
    """A pipe table (no index), deterministic.

    Numbers are right-aligned: the ``right`` columns, p-value and interval
    columns, and any column whose every cell is a number.
    """
    if frame.empty:
        return "_(none)_"
    align = [
        "right"
        if c in right or c in P_COLUMNS.values() or c == "interval" or _numeric(frame[c])
        else "left"
        for c in frame.columns
    ]
    return frame.to_markdown(index=False, disable_numparse=True, colalign=align)
