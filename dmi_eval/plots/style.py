"""One look for every design's figures: words, not column names.

Every "observed vs expected" figure has a title, a y-axis in words ("drug
offences per month"), the legend "observed" / "expected without the DMI" and
a labelled call-in line, whatever design drew it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

OBSERVED_LABEL = "observed"
EXPECTED_LABEL = "expected without the DMI"
CALL_IN_LABEL = "call-in"

OBSERVED = {"color": "black", "lw": 1.6, "label": OBSERVED_LABEL}
EXPECTED = {"color": "tab:blue", "lw": 1.4, "ls": "--", "label": EXPECTED_LABEL}
BAND = {"color": "tab:blue", "alpha": 0.15, "lw": 0}
PLACEBO = {"color": "0.8", "lw": 0.6}
CALL_IN = {"color": "0.35", "lw": 0.9, "ls": ":"}


def outcome_words(outcome: str, label: str | None = None) -> str:
    """``"drug"`` -> ``"drug offences"`` (or the study's own label)."""
    return label or f"{outcome.replace('_', ' ')} offences"


def per_period(outcome: str, frequency: str | None, label: str | None = None) -> str:
    """The y-axis of a count figure: ``"drug offences per month"``."""
    words = outcome_words(outcome, label)
    return f"{words} per {frequency}" if frequency else words


def titles_in_words(fig: Figure, words: Sequence[tuple[str, str]]) -> None:
    """Replace codes at the start of every title of ``fig`` by words.

    ``words`` are ``(code, text)`` pairs tried in order; the first code a title
    starts with is replaced (``("riverside: drug", "Riverside: drug offences")``
    turns ``riverside: drug, event study`` into ``Riverside: drug offences, event
    study``). Titles at every location (centre, left, right) of every axes.
    """
    for ax in fig.axes:
        for loc in ("center", "left", "right"):
            title = ax.get_title(loc=loc)
            for code, text in words:
                if code and title.startswith(code):
                    ax.set_title(text + title[len(code) :], loc=loc)
                    break


def mark_call_in(ax: Axes, x: Any, *, label: str = CALL_IN_LABEL) -> None:
    """A dotted vertical line at the call-in, labelled at the top of the axes."""
    ax.axvline(x, **CALL_IN)
    ax.annotate(
        label,
        xy=(x, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(3, -2),
        textcoords="offset points",
        ha="left",
        va="top",
        fontsize=8,
        color=CALL_IN["color"],
    )


def finish(
    ax: Axes,
    *,
    title: str,
    ylabel: str,
    xlabel: str = "",
    legend: bool = True,
) -> Axes:
    """Title, axis labels in words and a frameless legend (observed first)."""
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel(xlabel)
    if legend and ax.get_legend_handles_labels()[0]:
        handles, labels = ax.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: labels[i] != OBSERVED_LABEL)
        ax.legend([handles[i] for i in order], [labels[i] for i in order], frameon=False)
    return ax


def _positions(periods: Any) -> tuple[Any, list[str] | None]:
    """x values for periods: dates for pandas Periods/Timestamps, else 0..n-1 with labels."""
    import numpy as np
    import pandas as pd

    values = list(periods)
    if values and all(isinstance(v, pd.Period) for v in values):
        return pd.PeriodIndex(values).to_timestamp().to_numpy(), None
    if values and all(isinstance(v, pd.Timestamp) for v in values):
        return np.asarray(values), None
    return np.arange(len(values)), [str(v) for v in values]


def plot_observed_expected(
    data: Any,
    *,
    title: str,
    ylabel: str,
    band_label: str | None = None,
    ax: Axes | None = None,
) -> tuple[Any, Axes]:
    """Observed counts against the counterfactual, in the one style of every design.

    Parameters
    ----------
    data
        One outcome's ``series`` rows: ``period, role, observed, counterfactual``
        and optionally ``low, high`` (the counterfactual's band).
    title, ylabel
        In words (``"drug offences per month"``).
    band_label
        Legend entry of the band (e.g. ``"95% band"``); no band when ``None`` or
        when ``low``/``high`` are missing.
    """
    import numpy as np

    from dmi_eval.plots.common import new_axes

    fig, ax = new_axes(ax)
    x, labels = _positions(data["period"])
    role = np.asarray(data["role"])
    observed = np.asarray(data["observed"], dtype=float)
    expected = np.asarray(data["counterfactual"], dtype=float)
    used = role != "transition"
    ax.plot(x[used], observed[used], **OBSERVED)
    if (~used).any():
        ax.plot(
            x[~used],
            observed[~used],
            "o",
            ms=4,
            mfc="none",
            color="black",
            lw=0,
            label="call-in period (left out)",
        )
    ax.plot(x[used], expected[used], **EXPECTED)
    if band_label and {"low", "high"} <= set(data.columns):
        low = np.asarray(data["low"], dtype=float)
        high = np.asarray(data["high"], dtype=float)
        ok = np.isfinite(low) & np.isfinite(high)
        if ok.any():
            ax.fill_between(x[ok], low[ok], high[ok], label=band_label, **BAND)
    after = np.flatnonzero(role != "pre")
    if after.size:
        mark_call_in(ax, x[after[0]])
    if labels is not None:
        step = max(1, len(labels) // 12)
        ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
    ax.set_ylim(bottom=0)
    finish(ax, title=title, ylabel=ylabel)
    return fig, ax
