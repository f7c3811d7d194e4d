"""Figures of the synthetic-control family.

Every function takes a results object with ``path_data(outcome)`` (and,
for the placebo figures, ``placebo_gaps(outcome)`` / ``rmspe_ratios(outcome)``
/ ``noise_test(outcome)``):
:class:`~dmi_eval.designs.synth.SyntheticControlResults` or
:class:`~dmi_eval.designs.synth.SynthFit`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dmi_eval.plots.common import new_axes

__all__ = [
    "plot_synth_gaps",
    "plot_rmspe_ratios",
    "plot_placebo_statistics",
    "plot_synth_weights",
    "plot_synth_correction",
]


def _x(index: pd.Index) -> np.ndarray:
    if isinstance(index, pd.PeriodIndex):
        return index.to_timestamp().to_numpy()
    return np.asarray(index)


def _start_of_post(data: pd.DataFrame) -> Any | None:
    mask = data["role"].to_numpy() == "post"
    if not mask.any():
        return None
    return _x(data.index)[mask][0]


def plot_synth_gaps(
    results: Any, *, outcome: str | None = None, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Gap (treated minus synthetic) with every placebo's gap in grey."""
    fig, ax = new_axes(ax)
    data = results.path_data(outcome)
    col = "gap_per_area" if "gap_per_area" in data.columns else "gap"
    placebo = results.placebo_gaps(outcome)
    x = _x(data.index)
    for name in placebo.columns:
        ax.plot(x, placebo[name].to_numpy(), color="0.8", lw=0.6)
    ax.plot(x, data[col], color="black", lw=1.6, label="treated")
    ax.axhline(0, color="grey", lw=0.8)
    start = _start_of_post(data)
    if start is not None:
        ax.axvline(start, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("gap" + (" per area" if col == "gap_per_area" else ""))
    return fig, ax


def plot_rmspe_ratios(
    results: Any, *, outcome: str | None = None, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Distribution of post/pre RMSPE ratios of the placebos, with the treated unit marked."""
    fig, ax = new_axes(ax)
    ratios = results.rmspe_ratios(outcome)
    if len(ratios) == 0:
        ax.text(0.5, 0.5, "no placebo test", ha="center", transform=ax.transAxes)
        return fig, ax
    values = np.sort(ratios.to_numpy()[1:][np.isfinite(ratios.to_numpy()[1:])])
    bins = min(30, max(5, len(values) // 3))
    ax.hist(values, bins=bins, color="0.7")
    ax.axvline(float(ratios.iloc[0]), color="tab:red", lw=1.6, label=str(ratios.index[0]))
    ax.set_xlabel("post/pre RMSPE ratio")
    ax.set_ylabel("placebo units")
    ax.legend(frameon=False)
    return fig, ax


def plot_placebo_statistics(
    results: Any,
    *,
    outcome: str | None = None,
    window: str = "post",
    alpha: float = 0.05,
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """The noise-standardised placebo test as the site's synthetic control runs it.

    A histogram of the reference distribution the market's statistic is ranked
    in (every placebo area's ``z_j = L_j / sqrt(tau^2 + v_j)`` and its mirror
    image about the placebos' median; :mod:`dmi_eval.inference.noise`), the
    market's ``z`` (red) and the value below which the one-sided test of a fall
    at ``alpha`` calls it significant (dashed; not drawn when no p can go below
    ``alpha``, with fewer than ``1 / alpha - 1`` placebos). Falls back on
    :func:`plot_rmspe_ratios` where the design ran the classic test.
    """
    outcome = outcome or getattr(results, "primary_outcome", None)
    test = results.noise_test(outcome, window) if hasattr(results, "noise_test") else None
    if test is None:
        return plot_rmspe_ratios(results, outcome=outcome, ax=ax)
    fig, ax = new_axes(ax)
    ref = test.reference
    if ref.size == 0:
        ax.text(0.5, 0.5, "no placebo test", ha="center", transform=ax.transAxes)
        return fig, ax
    z1 = float(test.z[0])
    bins = min(40, max(8, ref.size // 6))
    ax.hist(ref, bins=bins, color="0.75", label=f"{test.n_placebos} placebo areas, mirrored")
    ax.axvline(z1, color="tab:red", lw=1.8, label=f"the market (z = {z1:.2f})")
    cut = test.critical_value(alpha)
    if np.isfinite(cut):
        ax.axvline(cut, color="0.3", ls="--", lw=1, label=f"one-sided {alpha:g} cut-off")
    p_lower = test.p_values()[0]
    ax.set_title(f"p (fall) = {p_lower:.3f}", fontsize=9)
    ax.set_xlabel("log ratio observed / synthetic over its noise and drift SD (z)")
    ax.set_ylabel("reference values")
    ax.legend(frameon=False, fontsize=8)
    return fig, ax


def plot_synth_correction(
    results: Any, *, outcome: str | None = None, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """The market, its donors' weighted sum, and the synthetic control after the factor term.

    The augmented site SC (:mod:`dmi_eval.designs.synth.joint`) keeps simplex
    weights ``w`` and multiplies their weighted sum by the market's fitted
    factor term ``exp(c + F_t' b)``. The figure shows the two counterfactuals
    (weights alone, dotted; the fitted synthetic control, blue) against the
    market's counts (black): the distance between them is what the factor term
    corrects. Where the estimator is not the augmented one (at a site, one with a
    single outcome) only the fitted line is drawn; where it fitted no factors
    (fewer than 24 pre periods) the two lines coincide. The y-axis says
    "incidents per period"; callers that know the period set their own label.
    """
    fig, ax = new_axes(ax)
    data = results.path_data(outcome)
    x = _x(data.index)
    ax.plot(x, data["observed"], color="black", lw=1.2, label="market (observed)")
    alone = data.get("synthetic_weights_only")
    has_alone = alone is not None and bool(np.isfinite(alone.to_numpy(dtype=float)).all())
    if has_alone:
        ax.plot(
            x, data["synthetic_weights_only"], color="tab:orange", lw=1.2, ls=":",
            label="weighted donors alone",
        )  # fmt: skip
    ax.plot(x, data["synthetic"], color="tab:blue", lw=1.4, label="synthetic control (fitted)")
    start = _start_of_post(data)
    if start is not None:
        ax.axvline(start, color="grey", lw=0.8, ls=":")
    post = data["role"].to_numpy() == "post"
    if post.any() and has_alone:
        alone = float(data["synthetic_weights_only"].to_numpy()[post].sum())
        fitted = float(data["synthetic"].to_numpy()[post].sum())
        ax.set_title(
            f"expected after the call-in: {alone:,.0f} (weights alone), {fitted:,.0f} (fitted)",
            fontsize=9,
        )
    ax.set_ylabel("incidents per period")
    ax.legend(frameon=False, fontsize=8)
    return fig, ax


def plot_synth_weights(
    results: Any, *, outcome: str | None = None, top: int = 20, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Bar chart of the largest donor weights, against equal weights.

    The title says how many of the comparison areas the estimator could use
    carry weight; the dashed line is the weight each would get if the weights
    were spread evenly (``1/J``). Bars that hug the line show an estimator
    that averages the donors (a ratio DID); a few tall bars show one that
    chose the areas that track the market.
    """
    fig, ax = new_axes(ax)
    outcome = outcome or getattr(results, "primary_outcome", None)
    table = results.weights_table(outcome)
    label = "area" if "area" in table.columns else "unit"
    n_used = _n_donors(results, outcome, len(table))
    n_positive = int((table["weight"] > 0).sum())
    table = table.sort_values("weight", ascending=False, kind="stable").head(top)
    ax.barh(table[label].astype(str).to_numpy()[::-1], table["weight"].to_numpy()[::-1])
    if n_used > 0:
        ax.axvline(1.0 / n_used, color="0.4", ls="--", lw=1, label=f"equal weights (1/{n_used})")
        ax.legend(frameon=False, loc="lower right")
    ax.set_title(
        f"{n_positive} of {n_used} comparison areas carry weight; largest {len(table)} shown",
        fontsize=9,
    )
    ax.set_xlabel("donor weight")
    return fig, ax


def _n_donors(results: Any, outcome: str | None, default: int) -> int:
    """Donors the estimator could weight (site SC: after the donor floor; else all)."""
    diag = getattr(results, "diagnostics", None)
    if isinstance(diag, pd.DataFrame) and "n_donors" in diag.columns and len(diag):
        rows = diag[diag["outcome"] == outcome] if "outcome" in diag.columns else diag
        if len(rows):
            return int(rows["n_donors"].iloc[0])
    weights = getattr(results, "weights", None)
    return int(len(weights)) if weights is not None else default
