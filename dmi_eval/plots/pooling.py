"""Figures of the cross-site pooled analysis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dmi_eval.plots.common import new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from dmi_eval.pooling import PooledResult

__all__ = ["plot_forest"]


def plot_forest(result: PooledResult, *, ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Forest plot: each site's % change with its interval, the pooled diamond and the
    prediction interval.

    Parameters
    ----------
    result
        A :class:`~dmi_eval.pooling.PooledResult`.
    ax
        Axes to draw on (default: a new figure sized to the number of sites).

    Returns
    -------
    (Figure, Axes)
    """
    data = result.get_plot_data()
    k = result.k
    fig, ax = new_axes(ax, size=(6.5, 1.2 + 0.35 * (k + 3)))
    sites = data.iloc[:k]
    pooled = data.iloc[k]
    pred = data.iloc[k + 2]
    y = np.arange(k, 0, -1, dtype=float)
    pct = 100 * sites["pct_change"].to_numpy(dtype=float)
    lo = 100 * sites["ci_low"].to_numpy(dtype=float)
    hi = 100 * sites["ci_high"].to_numpy(dtype=float)
    w = sites["weight"].to_numpy(dtype=float)
    ax.hlines(y, lo, hi, color="0.25", lw=1.2)
    ax.scatter(pct, y, s=20 + 180 * w / w.max(), marker="s", color="C0", zorder=3)
    y0 = -0.5
    p, pl, ph = (100 * pooled[c] for c in ("pct_change", "ci_low", "ci_high"))
    ax.fill([pl, p, ph, p], [y0, y0 + 0.3, y0, y0 - 0.3], color="C3", zorder=3)
    ax.hlines(y0 - 0.6, 100 * pred["ci_low"], 100 * pred["ci_high"], color="C3", lw=1, ls="--")
    ax.axvline(0, color="0.3", lw=0.8)
    conf = f"{100 * result.level:g}%"
    labels = [*sites["row"].tolist(), f"pooled ({conf} CI)", f"prediction ({conf})"]
    ax.set_yticks([*y.tolist(), y0, y0 - 0.6])
    ax.set_yticklabels(labels)
    ax.set_ylim(y0 - 1.1, k + 0.7)
    ax.set_xlabel(f"% change in {result.outcome} ({result.design}, {result.window})")
    ax.set_title(
        f"{result.outcome}: pooled {p:+.0f}%, I\u00b2 = {100 * result.i2:.0f}%, "
        f"\u03c4\u00b2 = {result.tau2:.3f}"
    )
    return fig, ax
