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
from dmi_eval.plots.microsynth import plot_microsynth_permutation
from dmi_eval.plots.pooling import plot_forest
from dmi_eval.plots.style import outcome_words, per_period, plot_observed_expected
from dmi_eval.plots.synth import (
    plot_placebo_statistics,
    plot_rmspe_ratios,
    plot_synth_correction,
    plot_synth_gaps,
    plot_synth_weights,
)
from dmi_eval.results import DesignResults

__all__ = [
    "plot_counterfactual",
    "plot_design_comparison",
    "plot_event_study",
    "plot_forest",
    "plot_its",
    "plot_microsynth_permutation",
    "plot_placebo_in_time",
    "plot_placebo_statistics",
    "plot_rmspe_ratios",
    "plot_synth_correction",
    "plot_synth_gaps",
    "plot_synth_weights",
    "save_figure",
]


def plot_counterfactual(
    results: DesignResults,
    outcome: str,
    *,
    frequency: str | None = None,
    outcome_label: str | None = None,
    title: str | None = None,
    ax=None,
):
    """Observed against expected without the DMI, for any design, in one style.

    Draws the design's ``series`` (observed, counterfactual and, where the
    design gives one, its band) with a title, the y-axis in words ("drug
    offences per month"), the legend "observed" / "expected without the DMI"
    and the call-in line labelled (:func:`dmi_eval.plots.style.plot_observed_expected`).
    """
    data = results.get_plot_data(outcome)
    level = getattr(results, "level", None)
    words = outcome_words(outcome, outcome_label)
    return plot_observed_expected(
        data,
        title=title or f"{words[:1].upper()}{words[1:]}: observed and expected without the DMI",
        ylabel=per_period(outcome, frequency, outcome_label),
        band_label=f"{100 * level:g}% band" if level else None,
        ax=ax,
    )


def plot_design_comparison(effects: pd.DataFrame, *, outcome_label: str | None = None, ax=None):
    """Percent change with its interval for every design in ``effects`` (one window).

    Parameters
    ----------
    effects
        Rows of the tidy effects frame for one outcome and window.
    outcome_label
        The outcome in words (default: its name followed by "offences").
    """
    from dmi_eval.tables import design_label, window_label

    fig, ax = new_axes(ax, size=(6.0, 0.45 * len(effects) + 1.2))
    y = np.arange(len(effects))[::-1]
    pct = effects["pct_change"].to_numpy() * 100
    low = effects["ci_low"].to_numpy() * 100
    high = effects["ci_high"].to_numpy() * 100
    ax.axvline(0, color="0.5", lw=0.8)
    ax.errorbar(pct, y, xerr=[pct - low, high - pct], fmt="o", color="C0", capsize=3)
    ax.set_yticks(y, [design_label(d) for d in effects["design"]])
    ax.set_xlabel("change against the number expected without the DMI (%)")
    words = outcome_words(effects["outcome"].iloc[0], outcome_label)
    window = window_label(effects["window"].iloc[0])
    ax.set_title(f"{words[:1].upper()}{words[1:]}: every design ({window})", loc="left")
    return fig, ax
