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
from dmi_eval.inference.wild import wild_cluster_bootstrap
from dmi_eval.options import alpha_of, check_choice, check_level
from dmi_eval.panel import Panel

MIN_SITES = 5
"""Fewest sites for inference by site: with fewer, a bootstrap over sites has too few
distinct draws and too little between-site variation to be trusted (MacKinnon & Webb 2017)."""


# ---------------------------------------------------------------------------
# cross-site stacked event study
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class StackedEventStudyResults:
    """Results of :func:`stacked_event_study` (read-only).

    Attributes
    ----------
    model, level, window
        Model, confidence level of the intervals, event-time window.
    sites
        Sites stacked, with the outcome used for each.
    fit
        The stacked :class:`FEFit` (event-time terms ``e-12`` ... ``e+12``).
    event_frame
        Event-time coefficients (see :meth:`event_study`).
    average_post
        The mean of the post event-time coefficients: ``estimate, se,
        pct_change, ci_low, ci_high, p_value`` and the one-sided ``p_lower``,
        ``p_upper`` (NaN when inference by site cannot be done).
    pretrend
        Joint test that every lead is zero.
    n_controls
        Number of clean control areas.
    inference
        ``"wild"``: wild cluster bootstrap over sites (Webb weights);
        ``"cluster"``: cluster-robust SEs by area (the linear models).
    notes
        Why a p-value could not be computed, when it could not.
    """

    model: str
    level: float
    window: tuple[int, int]
    sites: Mapping[str, str]
    fit: FEFit
    event_frame: pd.DataFrame
    average_post: Mapping[str, float]
    pretrend: Mapping[str, float]
    n_controls: int
    coverage: pd.DataFrame
    inference: str = "cluster"
    n_boot: int = 0
    notes: tuple[str, ...] = ()

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
        conf = f"{100 * self.level:g}%"
        how = (
            f"wild cluster bootstrap by site (Webb weights, {self.n_boot} draws)"
            if self.inference == "wild"
            else "SEs clustered by area"
        )
        return (
            f"stacked event study (Cengiz et al. 2019), {MODEL_LABEL[self.model]}, site x area "
            f"and site x period effects, {how}, {conf}, two-sided"
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

    def balanced_window(self) -> tuple[int, int]:
        """The event times every site contributes: ``(latest first, earliest last)``."""
        cov = self.coverage
        return int(cov["first_event_time"].max()), int(cov["last_event_time"].min())

    def coverage_words(self, names: Mapping[str, str] | None = None) -> str:
        """Which event times the sites contribute, in words.

        ``"over event times -12..12 around its own call-in"`` when every site covers the
        window; otherwise each site's own event times and the balanced window (``names``:
        site id -> name; default the ids).
        """
        lo, hi = self.window
        first, last = self.balanced_window()
        cov = self.coverage
        if (cov["first_event_time"] <= lo).all() and (cov["last_event_time"] >= hi).all():
            return f"over event times {lo}..{hi} around its own call-in"
        label = dict(names or {})
        each = ", ".join(
            f"{label.get(r.site, r.site)} {r.first_event_time}..{r.last_event_time}"
            for r in cov.itertuples()
        )
        return (
            f"over the event times of {lo}..{hi} around its own call-in that its data reach "
            f"({each}); the stack is unbalanced: only event times {first}..{last} come from "
            "every site, and those outside rest on fewer sites"
        )

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        """The stacked event study in words (``names``: site id -> name, for the coverage)."""
        a = self.average_post
        pt = self.pretrend
        what = "percent change" if self.model in LOG_MODELS else "change in count per area-period"
        return (
            f"Stacked event study of {len(self.sites)} sites with staggered call-in dates "
            f"(Cengiz et al. 2019): each site is a sub-experiment of its treated areas and the "
            f"{self.n_controls} clean control areas (never treated by any site and outside every "
            f"catchment), {self.coverage_words(names)}; the sub-experiments "
            "are stacked with site-by-area and site-by-period fixed effects; "
            + (
                "treatment is assigned by site, so inference is by site: a wild cluster "
                "bootstrap over the sites with Webb's six-point weights. "
                if self.inference == "wild"
                else "SEs clustered by area. "
            )
            + "This avoids naive two-way fixed effects, which use already-treated areas as "
            "controls and are biased when effects differ across sites or grow over time. "
            + (
                f"Average post-period {what}: {a['pct_change']:+.1%}. " + " ".join(self.notes)
                if self.notes
                else f"Average post-period {what}: {a['pct_change']:+.1%} "
                f"({100 * self.level:g}% CI {a['ci_low']:+.1%} to {a['ci_high']:+.1%}, "
                f"two-sided p = {a['p_value']:.3f}); {_pretrend_words(pt, self.inference)}."
            )
            if self.model in LOG_MODELS
            else f"Stacked event study of {len(self.sites)} sites; average post effect "
            f"{a['estimate']:+.3f} per area-period (p = {a['p_value']:.3f})."
        )


def _pretrend_words(pt: Mapping[str, float], inference: str) -> str:
    """The joint pre-trend test in words: what its statistic is and where its p comes from."""
    if inference == "wild":
        return (
            f"joint pre-trend test: the {pt['df']:g} leads' squared bootstrap z-scores sum to "
            f"{pt['stat']:.2f}, wild-bootstrap p = {pt['p_value']:.3f}"
        )
    return (
        f"joint pre-trend Wald chi-squared {pt['stat']:.2f} on {pt['df']:g} leads, "
        f"p = {pt['p_value']:.3f}"
    )


def stacked_event_study(
    panel: Panel,
    study: Study,
    *,
    outcome: str | None = None,
    window: tuple[int, int] = (-12, 12),
    model: FEModel = "poisson",
    sites: Sequence[str] | None = None,
    level: float = 0.95,
    n_boot: int = 9999,
    seed: int | None = None,
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
    level
        Confidence level of the intervals (default 0.95).
    n_boot
        Wild cluster bootstrap draws (Poisson model; all ``6**G`` weight
        patterns are used when there are no more than ``n_boot``).
    seed
        Seed of the bootstrap (default: the study's seed).

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
    calendar periods (no already-treated area is ever a control). Treatment
    is assigned by site, so for the Poisson model inference is by site: each
    site's influence on a coefficient combination, :math:`c_s = a' H^{-1}
    s_s`, is resampled as :math:`\\sum_s v_s c_s` with Webb's six-point
    weights :math:`v_s` (a wild cluster score bootstrap; Kline & Santos 2012;
    Webb 2023); p-values count each tail of these draws, intervals invert the
    symmetric test, and the pre-trend test compares
    :math:`\\sum_k (\\delta_k / sd_k)^2` over the leads with its bootstrap
    draws. With fewer than :data:`MIN_SITES` sites no interval or p-value
    is given (one site has nothing to compare; with two to four the draws
    are too few and the between-site spread too noisy). The linear models keep SEs clustered by area. The
    average post effect is :math:`\\bar\\delta = \\frac{1}{K}\\sum_{k > 0}
    \\delta_k` (reported as :math:`e^{\\bar\\delta} - 1` for the log models).
    """
    check_choice("model", model, FE_MODELS)
    check_level(level)
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
    wild = model == "poisson"
    site_of = np.concatenate([np.full(a.size, i) for i, a in enumerate(ys)])
    fit = fit_fe(
        y, ent, tim, X, model=model, cluster=site_of if wild else clu, alpha=alpha_of(level)
    )
    treated_obs = {k: (int((tr & (ev == k)).sum()), float(y[tr & (ev == k)].sum())) for k in ks}
    frame = _event_frame(fit, ks, treated_obs, fit.model)
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
    notes: tuple[str, ...] = ()
    if wild:
        boot_seed = study.seed if seed is None else seed
        average, frame, pretrend, notes = _by_site(
            fit, average, frame, post_terms, leads, level, n_boot, boot_seed
        )
    coverage = pd.DataFrame(cover)
    coverage["outcome"] = [used_outcomes[s] for s in coverage["site"]]
    return StackedEventStudyResults(
        model=model,
        level=level,
        window=(lo, hi),
        sites=MappingProxyType(used_outcomes),
        fit=fit,
        event_frame=frame,
        average_post=MappingProxyType(average),
        pretrend=MappingProxyType(pretrend),
        n_controls=len(controls),
        coverage=coverage,
        inference="wild" if wild else "cluster",
        n_boot=n_boot if wild else 0,
        notes=notes,
    )


def _by_site(
    fit: FEFit,
    average: dict[str, float],
    frame: pd.DataFrame,
    post_terms: Sequence[str],
    leads: Sequence[str],
    level: float,
    n_boot: int,
    seed: int,
) -> tuple[dict[str, float], pd.DataFrame, dict[str, float], tuple[str, ...]]:
    """Replace the cluster-robust inference by a wild cluster bootstrap over sites."""
    infl = fit.influence
    assert infl is not None
    n_sites = infl.shape[0]
    frame = frame.copy()
    nan = float("nan")
    if n_sites < MIN_SITES:
        note = (
            f"With {n_sites} site{'' if n_sites == 1 else 's'} the stacked event study's "
            "uncertainty cannot be estimated: treatment is assigned by site, and inference by "
            f"site needs at least {MIN_SITES} sites; no interval or p-value is given."
        )
        average = {**average, "se": nan, "ci_low": nan, "ci_high": nan, "p_value": nan}
        average.update({"p_lower": nan, "p_upper": nan})
        frame.loc[~frame["reference"], ["se", "ci_low", "ci_high", "p_value"]] = nan
        for col in ("pct_ci_low", "pct_ci_high"):
            if col in frame:
                frame.loc[~frame["reference"], col] = nan
        return average, frame, {"stat": nan, "df": float(len(leads)), "p_value": nan}, (note,)
    a = np.zeros(infl.shape[1])
    for t in post_terms:
        a[fit.index(t)] = 1.0 / len(post_terms)
    boot = wild_cluster_bootstrap(
        average["estimate"], np.nan_to_num(infl) @ a, n_boot=n_boot, seed=seed
    )
    lo, hi = boot.interval(level)
    p_lower, p_upper, p_two = boot.p_values()
    average = {
        **average,
        "se": boot.se,
        "ci_low": math.expm1(lo),
        "ci_high": math.expm1(hi),
        "p_value": p_two,
        "p_lower": p_lower,
        "p_upper": p_upper,
    }
    for i, k in enumerate(frame["event_time"].to_numpy()):
        if frame.at[i, "reference"] or not np.isfinite(frame.at[i, "estimate"]):
            continue
        j = fit.index(_event_name(int(k)))
        b = wild_cluster_bootstrap(frame.at[i, "estimate"], infl[:, j], n_boot=n_boot, seed=seed)
        lo_k, hi_k = b.interval(level)
        frame.loc[i, ["se", "ci_low", "ci_high", "p_value"]] = [b.se, lo_k, hi_k, b.p_values()[2]]
    if "pct_ci_low" in frame:
        frame["pct_ci_low"] = np.expm1(frame["ci_low"].to_numpy(dtype=float))
        frame["pct_ci_high"] = np.expm1(frame["ci_high"].to_numpy(dtype=float))
    idx = [fit.index(t) for t in leads if np.isfinite(fit.params[fit.index(t)])]
    pretrend = {"stat": nan, "df": float(len(idx)), "p_value": nan}
    if idx:
        draws = np.stack(
            [wild_cluster_bootstrap(0.0, infl[:, j], n_boot=n_boot, seed=seed).draws for j in idx],
            axis=1,
        )
        sd = draws.std(axis=0)
        ok = sd > 0
        if ok.any():
            stat = float(np.sum((fit.params[idx][ok] / sd[ok]) ** 2))
            boot_stat = np.sum((draws[:, ok] / sd[ok]) ** 2, axis=1)
            pretrend = {
                "stat": stat,
                "df": float(ok.sum()),
                "p_value": float((1 + np.sum(boot_stat >= stat)) / (boot_stat.size + 1)),
            }
    return average, frame, pretrend, ()
