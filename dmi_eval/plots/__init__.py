"""Every figure: ``plot_*(results, *, ax=None) -> (fig, ax)``.

One module per design (``plots.its``, ``plots.synth``, ``plots.microsynth``,
``plots.did``, ``plots.pooling``), re-exported here, plus
:func:`plot_counterfactual`, which draws any design's observed-vs-counterfactual
path, and :func:`plot_design_comparison`. Figures are deterministic:
:func:`save_figure` writes PNGs without timestamps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dmi_eval.plots.common import new_axes, save_figure
from dmi_eval.plots.did import plot_event_study
from dmi_eval.plots.its import plot_its, plot_placebo_in_time
from dmi_eval.plots.microsynth import plot_microsynth, plot_microsynth_permutation
from dmi_eval.plots.pooling import plot_forest
from dmi_eval.plots.synth import (
    plot_rmspe_ratios,
    plot_synth_gaps,
    plot_synth_path,
    plot_synth_weights,
)
from dmi_eval.results import DesignResults

__all__ = [
    "plot_counterfactual",
    "plot_design_comparison",
    "plot_event_study",
    "plot_forest",
    "plot_its",
    "plot_microsynth",
    "plot_microsynth_permutation",
    "plot_placebo_in_time",
    "plot_rmspe_ratios",
    "plot_synth_gaps",
    "plot_synth_path",
    "plot_synth_weights",
    "save_figure",
]


def plot_counterfactual(results: DesignResults, outcome: str, *, ax=None):
    """Observed against counterfactual for any design (the figure its ``design`` draws)."""
    draw = {
        "its": plot_its,
        "cits": plot_its,
        "did": plot_event_study,
        "microsynth": lambda r, o, ax: plot_microsynth(r, outcome=o, ax=ax),
    }.get(results.design, lambda r, o, ax: plot_synth_path(r, outcome=o, ax=ax))
    return draw(results, outcome, ax=ax)


def plot_design_comparison(effects: pd.DataFrame, *, ax=None):
    """Percent change with its interval for every design in ``effects`` (one window).

    Parameters
    ----------
    effects
        Rows of the tidy effects frame for one outcome and window.
    """
    fig, ax = new_axes(ax, size=(6.0, 0.45 * len(effects) + 1.2))
    y = np.arange(len(effects))[::-1]
    pct = effects["pct_change"].to_numpy() * 100
    low = effects["ci_low"].to_numpy() * 100
    high = effects["ci_high"].to_numpy() * 100
    ax.axvline(0, color="0.5", lw=0.8)
    ax.errorbar(pct, y, xerr=[pct - low, high - pct], fmt="o", color="C0", capsize=3)
    ax.set_yticks(y, effects["design"].tolist())
    ax.set_xlabel("change against the counterfactual (%)")
    ax.set_title(f"{effects['outcome'].iloc[0]}: every design ({effects['window'].iloc[0]} window)")
    return fig, ax
