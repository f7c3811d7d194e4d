"""Figure of microsynth's permutation test (its path is :func:`dmi_eval.plots.plot_counterfactual`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dmi_eval.plots.common import new_axes

if TYPE_CHECKING:
    from dmi_eval.designs.microsynth import MicroSynthResults

__all__ = ["plot_microsynth_permutation"]


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
