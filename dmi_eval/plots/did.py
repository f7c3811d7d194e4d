"""Figures of the difference-in-differences / event-study design."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dmi_eval.plots.common import new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from dmi_eval.designs.did import DIDResults
    from dmi_eval.stacked import StackedEventStudyResults

__all__ = ["event_study_caption", "plot_event_study"]


def plot_event_study(
    results: DIDResults | StackedEventStudyResults,
    outcome: str | None = None,
    *,
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """Event-time coefficients with their intervals, a zero line and the call-in line.

    Parameters
    ----------
    results
        A site's :class:`~dmi_eval.designs.did.DIDResults` or the cross-site
        :class:`~dmi_eval.designs.did.StackedEventStudyResults`.
    outcome
        The outcome to draw (site results; default: the first fitted outcome).
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    (Figure, Axes)
    """
    data = results.event_plot_data(outcome)
    fig, ax = new_axes(ax)
    pct = bool((data["scale"] == "pct_change").all())
    scale = 100.0 if pct else 1.0
    k = data["event_time"].to_numpy(dtype=float)
    est = scale * data["estimate"].to_numpy(dtype=float)
    lo = scale * data["ci_low"].to_numpy(dtype=float)
    hi = scale * data["ci_high"].to_numpy(dtype=float)
    ref = data["reference"].to_numpy(dtype=bool)
    conf = f"{100 * results.level:g}% interval"
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.axvline(-0.5, color="C3", lw=1, ls=":", label="call-in")
    ok = ~ref & np.isfinite(est)
    drawn = ok & np.isfinite(lo) & np.isfinite(hi)
    if drawn.any():  # label only what is drawn: no interval, no interval in the legend
        ax.vlines(k[drawn], lo[drawn], hi[drawn], color="C0", lw=1.2, label=conf)
    estimate = "estimate" if drawn.any() else "estimate (no interval could be estimated)"
    ax.plot(k[ok], est[ok], "o", color="C0", ms=4, label=estimate)
    ax.plot(k[ref], est[ref], "o", mfc="white", color="C0", ms=4, label="reference (-1)")
    ax.set_xlabel("periods relative to the call-in")
    ax.set_ylabel("% change vs comparison areas" if pct else "change in count per area-period")
    ax.set_title(results.title(outcome))
    ax.legend(loc="best", fontsize=7, frameon=False)
    return fig, ax


def event_study_caption(results: DIDResults | StackedEventStudyResults) -> str:
    """What :func:`plot_event_study` draws for ``results``, in words: the y-axis scale and
    whether intervals are drawn, and at which level (read from the same plot data)."""
    data = results.event_plot_data()
    pct = bool((data["scale"] == "pct_change").all())
    what = (
        "event-time effects as % changes (exp(coefficient) − 1, as on the y-axis)"
        if pct
        else "event-time effects as changes in count per area-period"
    )
    ok = ~data["reference"].to_numpy(dtype=bool)
    ends = data.loc[ok, ["ci_low", "ci_high"]].to_numpy(dtype=float)
    if np.isfinite(ends).all(axis=1).any():
        bars = f"with their {100 * results.level:g}% intervals (vertical bars)"
    else:
        bars = "without intervals: none could be estimated (see the text above)"
    return f"{what} against the reference period -1 (open circle), {bars}"
