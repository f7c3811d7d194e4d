"""Figures of the cross-site pooled analysis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon

from dmi_eval.plots.common import new_axes
from dmi_eval.tables import WIDE_UPPER

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from dmi_eval.pooling import PooledResult

__all__ = ["forest_caption", "forest_limits", "plot_forest"]

AXIS_CAP = 100 * WIDE_UPPER
"""Highest % change the forest axis shows: the tables' too-wide bound (+500%); an interval
running past the axis is drawn to its edge with an arrow and its end printed."""

INTERVAL_COLOR = "0.1"
POOLED_COLOR = "C3"


def _levels(result: PooledResult) -> tuple[str, str]:
    """The confidence level in words and the pooled interval's name (``"95%"``, ``"HKSJ"``)."""
    return f"{100 * result.level:g}%", ("HKSJ" if result.interval == "hksj" else "normal")


def forest_limits(result: PooledResult) -> tuple[float, float]:
    """The x-axis range (% change) of :func:`plot_forest`.

    It covers every site's interval, the pooled interval and 0, padded by 8% of that span,
    from no lower than -100% to no higher than :data:`AXIS_CAP`; the prediction interval is
    left out, so a very wide one does not squeeze the sites into a corner (it is drawn to
    the edge, with an arrow).
    """
    data = result.get_plot_data()
    rows = data.iloc[: result.k + 1]  # the sites and the random-effects pooled row
    lows = 100 * rows["ci_low"].to_numpy(dtype=float)
    highs = 100 * rows["ci_high"].to_numpy(dtype=float)
    lo = min(0.0, float(np.nanmin(lows)))
    hi = max(0.0, min(float(np.nanmax(highs)), AXIS_CAP))
    pad = 0.08 * (hi - lo)
    return max(lo - pad, -100.0 - pad / 2), hi + pad


def _clipped_segment(
    ax: Axes, y: float, lo: float, hi: float, limits: tuple[float, float], **style
) -> bool:
    """Draw ``lo..hi`` at height ``y`` within ``limits``; an arrow and the end's value mark
    each end that runs past the axis. Returns whether an end was clipped."""
    left, right = limits
    a, b = max(lo, left), min(hi, right)
    ax.hlines(y, a, b, **style)
    clipped = False
    for end, edge, inside in ((hi, right, b), (lo, left, a)):
        if (end > edge) if edge == right else (end < edge):
            clipped = True
            back = inside - 0.06 * (right - left) * (1 if edge == right else -1)
            ax.annotate(
                "",
                xy=(edge, y),
                xytext=(back, y),
                arrowprops={"arrowstyle": "->", "color": style.get("color", "k"), "lw": 1.2},
                zorder=5,
            )
            ax.text(
                back,
                y - 0.12,
                f"to {end:+.0f}%",
                ha="right" if edge == right else "left",
                va="top",
                fontsize=7,
                color=style.get("color", "k"),
            )
    return clipped


def forest_caption(result: PooledResult) -> str:
    """What :func:`plot_forest` draws, in words, with the levels read from ``result``."""
    conf, kind = _levels(result)
    return (
        f"Squares: each site's change (square size: its weight in the pool) with its {conf} "
        "interval from the log-ratio standard error the pooling uses (this can differ from the "
        f"interval the site's own table prints); diamond: the pooled change and its {conf} "
        f"{kind} interval; dashed line: the {conf} prediction interval for a new site. An "
        f"interval that runs past the axis (capped at {AXIS_CAP:+.0f}%) ends in an arrow, with "
        "its end printed beside it."
    )


def plot_forest(
    result: PooledResult, *, names: Mapping[str, str] | None = None, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Forest plot: each site's % change with its interval, the pooled diamond and the
    prediction interval, with a legend that names each interval's level.

    Parameters
    ----------
    result
        A :class:`~dmi_eval.pooling.PooledResult`.
    names
        Site id -> name for the row labels (default: the ids).
    ax
        Axes to draw on (default: a new figure sized to the number of sites).

    Returns
    -------
    (Figure, Axes)

    Notes
    -----
    Site intervals are drawn over their weight squares, so a large square never hides its
    interval. The x-axis is :func:`forest_limits`; an interval past it (typically the
    prediction interval) ends in an arrow with its end printed.
    """
    data = result.get_plot_data()
    k = result.k
    conf, kind = _levels(result)
    fig, ax = new_axes(ax, size=(6.5, 1.6 + 0.35 * (k + 3)))
    limits = forest_limits(result)
    sites = data.iloc[:k]
    pooled = data.iloc[k]
    pred = data.iloc[k + 2]
    y = np.arange(k, 0, -1, dtype=float)
    w = sites["weight"].to_numpy(dtype=float)
    ax.scatter(
        100 * sites["pct_change"].to_numpy(dtype=float),
        y,
        s=12 + 70 * w / w.max(),
        marker="s",
        color="C0",
        alpha=0.75,
        zorder=2,
    )
    for yi, lo, hi in zip(y, sites["ci_low"], sites["ci_high"], strict=True):
        _clipped_segment(ax, yi, 100 * lo, 100 * hi, limits, color=INTERVAL_COLOR, lw=1.4, zorder=3)
    y0 = -0.5
    p, pl, ph = (100 * pooled[c] for c in ("pct_change", "ci_low", "ci_high"))
    ax.add_patch(
        Polygon(
            [(pl, y0), (p, y0 + 0.3), (ph, y0), (p, y0 - 0.3)],
            closed=True,
            color=POOLED_COLOR,
            zorder=3,
        )
    )
    if np.isfinite(pred["ci_low"]):
        _clipped_segment(
            ax,
            y0 - 0.6,
            100 * pred["ci_low"],
            100 * pred["ci_high"],
            limits,
            color=POOLED_COLOR,
            lw=1,
            ls="--",
            zorder=3,
        )
    ax.axvline(0, color="0.3", lw=0.8, zorder=1)
    label = dict(names or {})
    ticks = [label.get(s, s) for s in sites["row"]]
    ax.set_yticks([*y.tolist(), y0, y0 - 0.6])
    ax.set_yticklabels([*ticks, f"pooled ({conf} {kind})", f"new site ({conf} prediction)"])
    ax.set_ylim(y0 - 1.1, k + 0.7)
    ax.set_xlim(*limits)
    ax.set_xlabel(f"% change in {result.outcome} ({result.design}, {result.window})")
    ax.set_title(
        f"{result.outcome}: pooled {p:+.0f}%, I\u00b2 = {100 * result.i2:.0f}%, "
        f"\u03c4\u00b2 = {result.tau2:.3f}"
    )
    ax.legend(
        handles=_legend_handles(conf, kind),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=2,
        fontsize=7,
        frameon=False,
    )
    return fig, ax


def _legend_handles(conf: str, kind: str) -> list[Line2D]:
    """Legend entries naming each interval drawn and its level."""
    return [
        Line2D(
            [],
            [],
            color=INTERVAL_COLOR,
            marker="s",
            mfc="C0",
            mec="C0",
            lw=1.4,
            label=f"site: change, {conf} interval (square: weight)",
        ),
        Line2D(
            [],
            [],
            color=POOLED_COLOR,
            marker="D",
            lw=0,
            label=f"pooled: {conf} {kind} interval (diamond)",
        ),
        Line2D([], [], color=POOLED_COLOR, ls="--", lw=1, label=f"new site: {conf} prediction"),
    ]
