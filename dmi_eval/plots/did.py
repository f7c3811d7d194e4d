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

__all__ = ["plot_event_study"]


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
    ax.vlines(k[ok], lo[ok], hi[ok], color="C0", lw=1.2, label=conf)
    ax.plot(k[ok], est[ok], "o", color="C0", ms=4, label="estimate")
    ax.plot(k[ref], est[ref], "o", mfc="white", color="C0", ms=4, label="reference (-1)")
    ax.set_xlabel("periods relative to the call-in")
    ax.set_ylabel("% change vs comparison areas" if pct else "change in count per area-period")
    ax.set_title(results.title(outcome))
    ax.legend(loc="best", fontsize=7, frameon=False)
    return fig, ax
