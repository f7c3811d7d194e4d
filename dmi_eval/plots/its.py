"""Figures of the interrupted time-series design."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dmi_eval.plots.common import new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from dmi_eval.designs.its import ITSResults

__all__ = ["plot_its", "plot_placebo_in_time"]


def plot_its(results: ITSResults, outcome: str, *, ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Observed counts, fitted line, counterfactual with its band and the call-in line.

    For ``"cits"`` the comparison series is drawn scaled to the market's
    pre-period mean (its shape, not its level, is what the model uses).

    Parameters
    ----------
    results
        Fitted :class:`~dmi_eval.designs.its.ITSResults`.
    outcome
        The outcome to draw.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    (Figure, Axes)
    """
    data = results.get_plot_data(outcome)
    fig, ax = new_axes(ax)
    x = np.arange(len(data))
    roles = data["role"].to_numpy()
    post = roles == "post"
    used = roles != "transition"
    ax.plot(x[used], data["observed"].to_numpy()[used], "o", ms=3, color="0.25", label="observed")
    if (~used).any():
        ax.plot(
            x[~used],
            data["observed"].to_numpy()[~used],
            "o",
            ms=3,
            mfc="none",
            color="0.25",
            label="transition (excluded)",
        )
    fitted = data["fitted"].to_numpy()
    cf = data["counterfactual"].to_numpy()
    pre_x = np.where(roles == "pre", x, np.nan)
    ax.plot(pre_x, np.where(roles == "pre", fitted, np.nan), color="C0", lw=1.5, label="fitted")
    ax.plot(np.where(post, x, np.nan), np.where(post, fitted, np.nan), color="C0", lw=1.5)
    ax.plot(
        np.where(post, x, np.nan),
        np.where(post, cf, np.nan),
        color="C1",
        lw=1.5,
        ls="--",
        label="counterfactual",
    )
    ax.fill_between(
        x[post],
        data["low"].to_numpy()[post],
        data["high"].to_numpy()[post],
        color="C1",
        alpha=0.2,
        lw=0,
        label=f"{100 * results.level:g}% band",
    )
    if "comparison" in data.columns:
        comparison = data["comparison"].to_numpy(dtype=float)
        observed_pre = data["observed"].to_numpy(dtype=float)[roles == "pre"]
        comparison_pre = comparison[roles == "pre"]
        if comparison_pre.mean() > 0:
            # the comparison areas' series on the market's scale, so both fit one axis
            comparison = comparison * observed_pre.mean() / comparison_pre.mean()
        ax.plot(x, comparison, color="0.6", lw=1, label="comparison areas (scaled to the market)")
    call_in = int(np.flatnonzero(roles != "pre")[0])
    ax.axvline(call_in - 0.5, color="C3", lw=1, ls=":", label="call-in")
    ticks = x[:: max(1, len(x) // 8)]
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(p) for p in data["period"].to_numpy()[ticks]], rotation=30, ha="right")
    ax.set_ylabel(f"{outcome} (count per period)")
    ax.set_title(f"{results.site_id}: {outcome} ({results.design.upper()})")
    ax.legend(loc="best", fontsize=7, frameon=False)
    return fig, ax


def plot_placebo_in_time(
    results: ITSResults, outcome: str, *, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Placebo-in-time estimates (fake call-in dates in the pre-period) and the real one.

    Parameters
    ----------
    results
        Fitted :class:`~dmi_eval.designs.its.ITSResults`.
    outcome
        The outcome to draw.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    (Figure, Axes)
    """
    placebo = results.placebo(outcome)
    summary = results.placebo_summary(outcome)
    fig, ax = new_axes(ax, size=(5.0, 3.2))
    pct = 100 * placebo["pct_change"].to_numpy(dtype=float)
    if pct.size:
        bins = min(20, max(5, pct.size // 2))
        ax.hist(pct, bins=bins, color="0.7", edgecolor="white", label="placebo dates")
    real = summary.get("real_pct_change")
    if real is not None and np.isfinite(real):
        ax.axvline(
            100 * real,
            color="C3",
            lw=2,
            label=f"real call-in (rank {summary['rank']:.0f} of {summary['n'] + 1:.0f})",
        )
    ax.axvline(0, color="0.3", lw=0.8)
    window = summary.get("window")
    span = f" over {window:.0f} periods" if window else ""
    ax.set_xlabel(f"% change{span}")
    ax.set_ylabel("number of placebo dates")
    ax.set_title(f"{results.site_id}: {outcome}, placebo-in-time")
    if pct.size or real is not None:
        ax.legend(loc="best", fontsize=7, frameon=False)
    else:
        ax.text(0.5, 0.5, "too few pre periods for placebos", ha="center", transform=ax.transAxes)
    return fig, ax
