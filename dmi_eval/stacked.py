"""Cross-site stacked event study over the sites' staggered call-in dates."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy import stats

from dmi_eval.config import Study
from dmi_eval.designs.did.inference import _event_frame, _event_name, _event_plot_data, _long_panel
from dmi_eval.designs.did.model import (
    FE_MODELS,
    LOG_MODELS,
    MODEL_LABEL,
    FEFit,
    FEModel,
    _check_window,
    fit_fe,
)
from dmi_eval.errors import DesignError
from dmi_eval.options import check_alpha, check_choice
from dmi_eval.panel import Panel


# ---------------------------------------------------------------------------
# cross-site stacked event study
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class StackedEventStudyResults:
    """Results of :func:`stacked_event_study` (read-only).

    Attributes
    ----------
    model, alpha, window
        Model, 1 - confidence level, event-time window.
    sites
        Sites stacked, with the outcome used for each.
    fit
        The stacked :class:`FEFit` (event-time terms ``e-12`` ... ``e+12``).
    event_frame
        Event-time coefficients (see :meth:`event_study`).
    average_post
        The mean of the post event-time coefficients: ``estimate, se,
        pct_change, ci_low, ci_high, p_value``.
    pretrend
        Joint Wald test that every lead is zero.
    n_controls
        Number of clean control areas.
    """

    model: str
    alpha: float
    window: tuple[int, int]
    sites: Mapping[str, str]
    fit: FEFit
    event_frame: pd.DataFrame
    average_post: Mapping[str, float]
    pretrend: Mapping[str, float]
    n_controls: int
    coverage: pd.DataFrame

    def event_study(self, outcome: str | None = None) -> pd.DataFrame:
        """Event-time coefficients (reference -1 fixed at 0); see :meth:`DIDResults.event_study`."""
        return self.event_frame.copy()

    def pretrend_test(self) -> dict[str, float]:
        return dict(self.pretrend)

    def event_plot_data(self, outcome: str | None = None) -> pd.DataFrame:
        """Series behind :func:`dmi_eval.plots.did.plot_event_study`."""
        return _event_plot_data(self.event_frame, self.model)

    def title(self, outcome: str | None = None) -> str:
        return f"Stacked event study, {len(self.sites)} sites ({MODEL_LABEL[self.model]})"

    def method(self) -> str:
        conf = f"{100 * (1 - self.alpha):g}%"
        return (
            f"stacked event study (Cengiz et al. 2019), {MODEL_LABEL[self.model]}, site x area "
            f"and site x period effects, SEs clustered by area, {conf}, two-sided"
        )

    def summary(self) -> pd.DataFrame:
        """One row: the average post effect and the pre-trend test."""
        a = self.average_post
        return pd.DataFrame(
            [
                {
                    "n_sites": len(self.sites),
                    "n_controls": self.n_controls,
                    "pct_change": a["pct_change"],
                    "ci_low": a["ci_low"],
                    "ci_high": a["ci_high"],
                    "p_value": a["p_value"],
                    "pretrend_stat": self.pretrend["stat"],
                    "pretrend_df": self.pretrend["df"],
                    "pretrend_p": self.pretrend["p_value"],
                    "method": self.method(),
                }
            ]
        )

    def describe(self) -> str:
        a = self.average_post
        pt = self.pretrend
        lo, hi = self.window
        what = "percent change" if self.model in LOG_MODELS else "change in count per area-period"
        return (
            f"Stacked event study of {len(self.sites)} sites with staggered call-in dates "
            f"(Cengiz et al. 2019): each site is a sub-experiment of its treated areas and the "
            f"{self.n_controls} clean control areas (never treated by any site and outside every "
            f"catchment), over event times {lo}..{hi} around its own call-in; the sub-experiments "
            "are stacked with site-by-area and site-by-period fixed effects and SEs clustered by "
            "area. This avoids naive two-way fixed effects, which use already-treated areas as "
            "controls and are biased when effects differ across sites or grow over time. "
            f"Average post-period {what}: {a['pct_change']:+.1%} "
            f"({100 * (1 - self.alpha):g}% CI {a['ci_low']:+.1%} to {a['ci_high']:+.1%}, "
            f"p = {a['p_value']:.3f}); joint pre-trend test chi2({pt['df']:g}) = "
            f"{pt['stat']:.2f}, p = {pt['p_value']:.3f}."
            if self.model in LOG_MODELS
            else f"Stacked event study of {len(self.sites)} sites; average post effect "
            f"{a['estimate']:+.3f} per area-period (p = {a['p_value']:.3f})."
        )


def stacked_event_study(
    panel: Panel,
    study: Study,
    *,
    outcome: str | None = None,
    window: tuple[int, int] = (-12, 12),
    model: FEModel = "poisson",
    sites: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> StackedEventStudyResults:
    """Cross-site event study valid under staggered call-in dates (stacked design).

    Parameters
    ----------
    panel, study
        The study's panel and configuration.
    outcome
        Outcome to use at every site (default: each site's primary outcome).
    window
        Event times kept in each sub-experiment (periods outside are dropped,
        not binned).
    model
        ``"poisson"`` (default), ``"log1p"`` or ``"level"`` (see :func:`fit_fe`).
    sites
        Site ids to stack (default: all).
    alpha
        1 - confidence level.

    Returns
    -------
    StackedEventStudyResults

    Notes
    -----
    For each site :math:`s` a sub-experiment holds its treated areas and the
    clean controls :math:`\\mathcal{C}` (areas not treated by any site and
    outside every catchment) in the periods with event time
    :math:`k = t - t_s \\in [lo, hi]` (the transition period :math:`k = 0` is
    dropped when the study excludes it). The stacked data are fitted by

    .. math:: E[y_{sit}] = \\exp(a_{si} + g_{st} + \\sum_{k \\ne -1}
              \\delta_k\\, 1[i \\in T_s,\\ t - t_s = k])

    with site-by-area and site-by-period effects, so every comparison is
    between a site's treated areas and never-treated areas in the same
    calendar periods (no already-treated area is ever a control). SEs are
    clustered by area (a control area appears in every sub-experiment). The
    average post effect is :math:`\\bar\\delta = \\frac{1}{K}\\sum_{k > 0}
    \\delta_k` (reported as :math:`e^{\\bar\\delta} - 1` for the log models).
    """
    check_choice("model", model, FE_MODELS)
    check_alpha(alpha)
    lo, hi = _check_window(window)
    site_ids = [s.id for s in study.sites] if sites is None else list(sites)
    if not site_ids:
        raise ValueError("no sites to stack")
    for sid in site_ids:
        study.site(sid)
    excluded = study.intervention_areas
    controls = [a for a in panel.areas if a not in excluded]
    if not controls:
        raise DesignError(
            "no clean control areas: every area is treated or in a catchment of some site"
        )
    area_pos = {a: i for i, a in enumerate(panel.areas)}
    ctrl_idx = np.array([area_pos[a] for a in controls])
    periods = panel.periods
    ys, ents, tims, clus, evs, trs = [], [], [], [], [], []
    used_outcomes: dict[str, str] = {}
    cover = []
    for s_num, sid in enumerate(site_ids):
        site = study.site(sid)
        out = site.primary_outcome if outcome is None else outcome
        if out not in panel.counts:
            raise DesignError(f"site {sid!r}: outcome {out!r} not in the panel")
        used_outcomes[sid] = out
        call = pd.Period(site.intervention, freq=periods.freq)
        if call < periods[0] or call > periods[-1]:
            raise DesignError(f"site {sid!r}: call-in date {site.intervention} outside the data")
        k_all = np.arange(len(periods)) - int(periods.get_loc(call))
        keep_t = (k_all >= lo) & (k_all <= hi)
        if study.transition == "exclude":
            keep_t &= k_all != 0
        cols = np.flatnonzero(keep_t)
        if not (k_all[cols] == -1).any() or not (k_all[cols] > 0).any():
            raise DesignError(f"site {sid!r}: the window leaves no reference or post period")
        tr_idx = np.array([area_pos[a] for a in site.treated_areas])
        units = np.concatenate([tr_idx, ctrl_idx])
        arr = panel.counts[out][units]
        y, local, t = _long_panel(arr, np.arange(units.size), cols)
        ys.append(y)
        ents.append(s_num * len(panel.areas) + units[local])
        tims.append(s_num * len(periods) + t)
        clus.append(units[local])
        evs.append(k_all[t])
        trs.append(local < tr_idx.size)
        cover.append(
            {
                "site": sid,
                "first_event_time": int(k_all[cols].min()),
                "last_event_time": int(k_all[cols].max()),
            }
        )
    y = np.concatenate(ys)
    ent = np.concatenate(ents)
    tim = np.concatenate(tims)
    clu = np.concatenate(clus)
    ev = np.concatenate(evs)
    tr = np.concatenate(trs)
    ks = sorted(set(ev[tr].tolist()))
    X = pd.DataFrame({_event_name(k): (tr & (ev == k)).astype(float) for k in ks if k != -1})
    fit = fit_fe(y, ent, tim, X, model=model, cluster=clu, alpha=alpha)
    treated_obs = {k: (int((tr & (ev == k)).sum()), float(y[tr & (ev == k)].sum())) for k in ks}
    frame = _event_frame(fit, ks, treated_obs)
    n_sites_k = {k: 0 for k in ks}
    for c in cover:
        for k in ks:
            if c["first_event_time"] <= k <= c["last_event_time"]:
                n_sites_k[k] += 1
    frame["n_sites"] = [n_sites_k[k] for k in frame["event_time"]]
    post_terms = [_event_name(k) for k in ks if k > 0 or (k == 0 and study.transition == "post")]
    post_terms = [t for t in post_terms if np.isfinite(fit.params[fit.index(t)])]
    est, se = fit.lincom({t: 1.0 / len(post_terms) for t in post_terms})
    z = fit.z
    p = float(2 * stats.norm.sf(abs(est / se))) if se > 0 else float("nan")
    if model in LOG_MODELS:
        average = {
            "estimate": est,
            "se": se,
            "pct_change": math.expm1(est),
            "ci_low": math.expm1(est - z * se),
            "ci_high": math.expm1(est + z * se),
            "p_value": p,
        }
    else:
        average = {
            "estimate": est,
            "se": se,
            "pct_change": float("nan"),
            "ci_low": est - z * se,
            "ci_high": est + z * se,
            "p_value": p,
        }
    leads = [_event_name(k) for k in ks if k <= -2]
    pretrend = fit.wald(leads)
    coverage = pd.DataFrame(cover)
    coverage["outcome"] = [used_outcomes[s] for s in coverage["site"]]
    return StackedEventStudyResults(
        model=model,
        alpha=alpha,
        window=(lo, hi),
        sites=MappingProxyType(used_outcomes),
        fit=fit,
        event_frame=frame,
        average_post=MappingProxyType(average),
        pretrend=MappingProxyType(pretrend),
        n_controls=len(controls),
        coverage=coverage,
    )
