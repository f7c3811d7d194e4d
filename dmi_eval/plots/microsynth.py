"""Figures for micro-level synthetic control results."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dmi_eval.plots.common import new_axes

if TYPE_CHECKING:
    from dmi_eval.designs.microsynth import MicroSynthResults

__all__ = ["plot_microsynth", "plot_microsynth_permutation"]


def plot_microsynth(
    results: MicroSynthResults, *, outcome: str | None = None, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Treated-area totals against the synthetic control, per period.

    Data: the shared ``get_plot_data`` (``period, role, observed,
    counterfactual``); the post periods are shaded. ``outcome`` defaults to the
    first fitted outcome.
    """
    outcome = outcome or results.outcomes[0]
    data = results.get_plot_data(outcome)
    fig, ax = new_axes(ax)
    x = np.arange(len(data))
    ax.plot(x, data["observed"], color="black", marker="o", ms=3, lw=1.5, label="treated areas")
    ax.plot(x, data["counterfactual"], color="tab:red", ls="--", lw=1.5, label="synthetic control")
    post = (data["role"] == "post").to_numpy()
    if post.any():
        first = int(np.flatnonzero(post)[0])
        ax.axvspan(first - 0.5, len(data) - 0.5, color="0.9", zorder=0, label="post period")
    labels = [str(p) for p in data["period"]]
    step = max(1, len(labels) // 12)
    ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
    ax.set_ylabel(f"{outcome} (count)")
    title = f"{results.site_id + ': ' if results.site_id else ''}{outcome}, treated vs synthetic control"
    ax.set_title(title)
    ax.legend(frameon=False, loc="best")
    return fig, ax


def plot_microsynth_permutation(
    results: MicroSynthResults,
    *,
    outcome: str | None = None,
    window: str = "post",
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """Distribution of the standardised placebo statistics, observed value marked.

    Data: :meth:`MicroSynthResults.get_permutation_data`. Needs a fit with
    ``n_permutations > 0``.
    """
    outcome = outcome or results.outcomes[0]
    data = results.get_permutation_data(outcome, window)
    placebo = data.loc[data["kind"] == "placebo", "statistic"].to_numpy(dtype=float)
    placebo = placebo[np.isfinite(placebo)]
    if placebo.size == 0:
        raise ValueError("no permutation results: fit with n_permutations > 0")
    observed = float(data.loc[data["kind"] == "observed", "statistic"].iloc[0])
    fig, ax = new_axes(ax)
    bins = min(40, max(10, placebo.size // 5))
    ax.hist(placebo, bins=bins, color="0.7", edgecolor="white", label="placebo sets")
    ax.axvline(observed, color="tab:red", lw=2, label=f"observed ({observed:.2f})")
    p = results.p_value_lower(outcome, window, "permutation")
    ax.set_xlabel("standardised effect (z)")
    ax.set_ylabel("placebo sets")
    ax.set_title(f"{outcome}: permutation test, one-sided lower p = {p:.3f}")
    ax.legend(frameon=False, loc="best")
    return fig, ax
