"""One look for every design's figures: words, not column names.

Every "observed vs expected" figure has a title, a y-axis in words ("drug
offences per month"), the legend "observed" / "expected without the DMI" and
a labelled call-in line, whatever design drew it.
"""

from __future__ import annotations

from typing import Any

from matplotlib.axes import Axes

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
