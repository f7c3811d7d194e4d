"""The site-level DID / event-study design (``DID(site_data, ...).fit() -> DIDResults``)."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import get_args

import numpy as np
import pandas as pd
from scipy import stats

from dmi_eval.designs.did.inference import (
    Inference,
    _calibrated,
    _dispersions,
    _draw_placebos,
    _event_frame,
    _event_name,
    _long_panel,
    _placebo_wald,
    _placebo_window,
    _window_effect,
    area_paths,
    event_time_bins,
    standardised_effect,
)
from dmi_eval.designs.did.model import (
    FE_MODELS,
    LOG_MODELS,
    FEModel,
    _check_window,
    fit_fe,
)
from dmi_eval.designs.did.results import DIDResults, OutcomeDID
from dmi_eval.errors import DesignError
from dmi_eval.inference.noise import NoiseStandardisedTest
from dmi_eval.options import (
    alpha_of,
    check_alpha,
    check_choice,
    check_last_k,
    check_level,
    check_outcomes,
)
from dmi_eval.panel import SiteData


class DID:
    """Area-level difference-in-differences and event study for one DMI site.

    Parameters
    ----------
    site_data
        The site's view of the panel. Units: the treated areas and the donor
        areas (the catchment areas are never comparisons).
    outcomes
        Outcomes to fit (default: all of the site's outcomes).
    model
        ``"poisson"`` (default): Poisson with area and period effects, a rate
        ratio; ``"log1p"``: PanelOLS on ``log(1 + count)``; ``"level"``:
        PanelOLS on the counts.
    last_k
        Length of the ``last{k}`` window (capped at the number of post periods).
    level
        Confidence level of the intervals (default 0.95).
    mde_alpha
        One-sided level of the test whose minimum detectable reduction the
        windows report (``mde``; default 0.05; the site path passes the
        verdict's ``alpha``).
    window
        Event-time window ``(lo, hi)``; event times beyond it are pooled into
        the end bins. Event time 0 is the call-in period (excluded unless the
        study treats the transition period as post); -1 is the reference.
    event_study
        Also fit the event study and the pre-trend test.
    inference
        ``"auto"``: ``"placebo"`` for the Poisson model, ``"cluster"`` for the
        linear ones. ``"cluster"``: normal intervals from SEs clustered by
        area. ``"placebo"`` (Poisson only): placebo-area inference, see Notes.
    n_placebo
        Number of placebo groups of control areas (event-time intervals and the
        pre-trend test).
    seed
        Seed of the placebo draws (pass the study's seed); same seed, same numbers.

    Notes
    -----
    Static model, over the pre and post periods of the treated and donor areas
    (transition excluded):

    .. math:: E[y_{it}] = \\exp(a_i + g_t + \\beta_1 D^{early}_{it} + \\beta_2 D^{last}_{it})

    with :math:`D^{last}` = treated area in one of the last :math:`k` post
    periods and :math:`D^{early}` = treated in an earlier post period (one term
    when :math:`k` covers the post period). The counterfactual of window
    :math:`W` is :math:`C_W = \\sum_j O_{W,j} e^{-\\beta_j}` (for the Poisson
    model the fitted treated total of each term equals its observed total
    :math:`O_{W,j}`), the percent change :math:`O_W/C_W - 1`, and the interval
    and two-sided p-value come from the delta-method SE of
    :math:`\\log(O_W/C_W)`. The level model uses :math:`C_W = O_W - \\sum_j
    n_j \\beta_j` (:math:`n_j` treated cells). Event study:
    :math:`\\exp(a_i + g_t + \\sum_{k \\ne -1} \\delta_k\\, 1[\\text{treated}, b(t) = k])`
    with binned event time :math:`b(t)`; pre-trend test: Wald
    :math:`\\chi^2` that :math:`\\delta_k = 0` for all :math:`k \\le -2`.

    Inference. Cluster-robust SEs rest on the few treated clusters and are
    far too small when a site has a handful of treated areas (MacKinnon &
    Webb 2017; Conley & Taber 2011). The default for the Poisson model is
    therefore placebo inference. A window's interval and p-values come from
    the noise-standardised placebo test of the synthetic control
    (:class:`~dmi_eval.inference.noise.NoiseStandardisedTest`) with
    DID's counterfactual (:func:`~dmi_eval.designs.did.inference.area_paths`):
    every control area :math:`j` in turn is a fake market whose counterfactual
    is the other controls' total :math:`R_{jt}` scaled to its pre-period total,
    so :math:`L_j = \\log\\frac{\\sum_W y_j}{\\sum_W R_j \\sum_{pre} y_j / \\sum_{pre} R_j}`
    is the closed-form Poisson DID log ratio of window :math:`W` against the
    pre period, and

    .. math:: z_j = L_j / \\sqrt{\\tau^2 + v_j}, \\qquad
              v_j = \\frac{1/\\bar\\mu_{jW} + \\phi_j}{T_W} + \\frac{1/\\bar\\mu_{j,pre} + \\phi_j}{T_0},

    with :math:`\\tau^2` the DerSimonian-Laird drift variance of the placebos
    and :math:`\\phi_j` the negative-binomial overdispersion (the market's from
    its areas). The market's :math:`L_1` is the fitted model's
    :math:`\\log(O_W/C_W)`. It is ranked among the placebos' statistics and
    their mirror images about the placebos' median (``2n`` reference values,
    :class:`~dmi_eval.inference.noise.NoiseStandardisedTest`); each one-sided
    p-value counts its own tail with the market included,
    :math:`(1 + \\#\\{r \\le z_1\\})/(2n+1)`, never below :math:`1/(n+1)`; the
    interval inverts the rank test. Parallel trends fail where a market has its own
    exposure to city-wide factors; :math:`\\tau^2` carries that drift, which a
    statistic studentised by counting noise alone reads as an effect.
    Event-time intervals use ``n_placebo`` random groups :math:`P` of as many
    control areas as there are treated areas, each group's closed-form log
    ratio of bin :math:`k` against bin :math:`-1` studentised by its Poisson
    SE times the square root of its own pre-period dispersion, the interval
    :math:`\\hat\\delta_k \\pm q\\, s_{treated}` with :math:`q` the :math:`1-\\alpha`
    quantile of :math:`|t_P|`; the pre-trend test compares the Poisson-scaled
    Wald statistic of the leads with its placebo distribution.
    """

    def __init__(
        self,
        site_data: SiteData,
        *,
        outcomes: Sequence[str] | None = None,
        model: FEModel = "poisson",
        last_k: int = 6,
        level: float = 0.95,
        mde_alpha: float = 0.05,
        window: tuple[int, int] = (-12, 12),
        event_study: bool = True,
        inference: Inference = "auto",
        n_placebo: int = 500,
        seed: int = 0,
    ) -> None:
        if not isinstance(site_data, SiteData):
            raise TypeError("site_data must be a dmi_eval.panel.SiteData")
        check_choice("model", model, FE_MODELS)
        check_choice("inference", inference, get_args(Inference))
        if inference == "placebo" and model != "poisson":
            raise ValueError("inference='placebo' is available for model='poisson' only")
        if not isinstance(n_placebo, int) or n_placebo < 19:
            raise ValueError(f"n_placebo must be an integer >= 19; got {n_placebo!r}")
        self.inference = (
            ("placebo" if model == "poisson" else "cluster") if inference == "auto" else inference
        )
        self.n_placebo = n_placebo
        self.seed = int(seed)
        check_last_k(last_k)
        check_level(level)
        self.mde_alpha = check_alpha(float(mde_alpha))
        self.window = _check_window(window)
        chosen = check_outcomes(site_data.outcomes, outcomes)
        self.site_id = site_data.site_id
        if site_data.n_pre < 2:
            raise DesignError(
                f"site {self.site_id!r}: {site_data.n_pre} pre period(s); the DID and its event "
                "study need at least 2 (extend the data back in time)"
            )
        self.treated = tuple(site_data.treated_areas)
        catch = set(site_data.catchment_areas)
        self.controls = tuple(a for a in site_data.donor_areas if a not in catch)
        if not self.controls:
            raise DesignError(f"site {self.site_id!r}: no donor areas to compare with")
        self.periods = site_data.periods.copy()
        self.used = site_data.used_mask.copy()
        self.post = site_data.post_mask.copy()
        self.pre = site_data.pre_mask.copy()
        call_pos = int(self.periods.get_loc(site_data.call_in_period))
        self.event_time = np.arange(len(self.periods)) - call_pos
        areas = list(self.treated) + list(self.controls)
        self.outcomes = chosen
        self.counts = {
            o: site_data.area_matrix(o, areas).to_numpy(dtype=float).copy() for o in chosen
        }
        self.model = model
        self.last_k = last_k
        self.level = level
        self._alpha = alpha_of(level)
        self.event_study = event_study

    def fit(self) -> DIDResults:
        """Fit every outcome; returns :class:`DIDResults`."""
        by_outcome = {o: self._fit_outcome(o, i) for i, o in enumerate(self.outcomes)}
        return DIDResults(
            site_id=self.site_id,
            model=self.model,
            inference=self.inference,
            level=self.level,
            last_k=self.last_k,
            window=self.window,
            outcomes=self.outcomes,
            by_outcome=MappingProxyType(by_outcome),
        )

    def _fit_outcome(self, outcome: str, position: int) -> OutcomeDID:
        where = f"site {self.site_id!r}, outcome {outcome!r}"
        mat = self.counts[outcome]
        n_tr = len(self.treated)
        units = np.arange(mat.shape[0])
        cols = np.flatnonzero(self.used)
        y, entity, time = _long_panel(mat, units, cols)
        is_tr = entity < n_tr
        post_cols = np.flatnonzero(self.post)
        k = min(self.last_k, post_cols.size)
        last_cols = post_cols[-k:]
        early_cols = post_cols[:-k]
        in_last = is_tr & np.isin(time, last_cols)
        in_early = is_tr & np.isin(time, early_cols)
        pre_treated = y[is_tr & np.isin(time, np.flatnonzero(self.pre))].sum()
        if self.model in LOG_MODELS and pre_treated == 0:
            raise DesignError(
                f"{where}: no events in the treated areas before the call-in; "
                "a rate ratio cannot be estimated (drop this outcome)"
            )
        terms = {"post_last": in_last}
        if early_cols.size:
            terms = {"post_early": in_early, "post_last": in_last}
        X = pd.DataFrame({n: m.astype(float) for n, m in terms.items()})
        try:
            static = fit_fe(y, entity, time, X, model=self.model, alpha=self._alpha)
            obs = {n: float(y[m].sum()) for n, m in terms.items()}
            cells = {n: int(m.sum()) for n, m in terms.items()}
            # closed-form counterfactual (treated pre total x control ratio), used
            # only for a term whose cells hold no events (Poisson MLE at -inf)
            ctrl = mat[n_tr:].sum(axis=0).astype(float)
            pre_c = np.flatnonzero(self.pre)
            term_cols = {"post_early": early_cols, "post_last": last_cols}
            closed = {n: pre_treated * ctrl[term_cols[n]].sum() / ctrl[pre_c].sum() for n in terms}
            names = list(terms)
            windows = {
                "post": _window_effect(
                    static,
                    names,
                    [obs[n] for n in names],
                    [cells[n] for n in names],
                    post_cols.size,
                    [closed[n] for n in names],
                    self.mde_alpha,
                ),
                f"last{self.last_k}": _window_effect(
                    static,
                    ["post_last"],
                    [obs["post_last"]],
                    [cells["post_last"]],
                    k,
                    [closed["post_last"]],
                    self.mde_alpha,
                ),
            }
        except DesignError as exc:
            raise DesignError(f"{where}: {exc}") from None
        event_fit = None
        frame = pd.DataFrame()
        pretrend = {"stat": float("nan"), "df": 0.0, "p_value": float("nan"), "n_dropped": 0.0}
        if self.event_study:
            event_fit, frame, pretrend = self._event_study(where, y, entity, time, is_tr, pretrend)
        if self.inference == "placebo":
            windows, frame, pretrend = self._placebo(
                mat, cols, windows, frame, pretrend, last_cols, position
            )
        choices = {
            "model": self.model,
            "inference": self.inference,
            "n_placebo": self.n_placebo if self.inference == "placebo" else 0,
            "seed": self.seed,
            "n_treated_areas": n_tr,
            "n_control_areas": len(self.controls),
            "n_pre": int(self.pre.sum()),
            "n_post": int(post_cols.size),
            "n_transition": int((~self.used).sum()),
            "last_k": self.last_k,
            "last_k_used": k,
            "window": self.window,
            "static_terms": tuple(terms),
        }
        return OutcomeDID(
            outcome=outcome,
            static=static,
            windows=MappingProxyType(windows),
            event=event_fit,
            event_frame=frame,
            pretrend=MappingProxyType(pretrend),
            choices=MappingProxyType(choices),
        )

    def _event_study(self, where, y, entity, time, is_tr, pretrend):
        """Event-time effects and the pre-trend Wald test: ``(fit, frame, pretrend)``.

        Under the Poisson model a bin whose treated cells hold no incidents has its
        MLE at -inf and makes the Hessian singular (weekly bins of a small market
        often do); leaving its treated cells out is that limit, so the other bins are
        still estimated and the bin is reported as not estimable (NaN). Without
        incidents in the reference bin no bin is: ``fit`` is ``None``, every bin but
        the reference is NaN and ``pretrend`` is returned as given; the DID effects
        are still fitted.
        """
        bins = event_time_bins(self.event_time, self.window)
        b_obs = bins[time]
        ks = sorted(set(b_obs[is_tr].tolist()))
        if -1 not in ks:
            raise DesignError(f"{where}: the reference period (event time -1) is missing")
        treated_obs = {
            kk: (int((is_tr & (b_obs == kk)).sum()), float(y[is_tr & (b_obs == kk)].sum()))
            for kk in ks
        }
        empty = [kk for kk in ks if treated_obs[kk][1] == 0] if self.model == "poisson" else []
        if -1 in empty:
            return None, _event_frame(None, ks, treated_obs, self.model), pretrend
        keep = ~(is_tr & np.isin(b_obs, empty))
        Xe = pd.DataFrame(
            {
                _event_name(kk): (is_tr & (b_obs == kk))[keep].astype(float)
                for kk in ks
                if kk != -1 and kk not in empty
            }
        )
        try:
            fit = fit_fe(y[keep], entity[keep], time[keep], Xe, model=self.model, alpha=self._alpha)
        except DesignError as exc:
            raise DesignError(f"{where}, event study: {exc}") from None
        leads = [_event_name(kk) for kk in ks if kk <= -2 and kk not in empty]
        return fit, _event_frame(fit, ks, treated_obs, self.model), fit.wald(leads)

    def _placebo(self, mat, cols, windows, frame, pretrend, last_cols, position):
        """Placebo-area inference: intervals, p-values and the pre-trend test."""
        n_tr = len(self.treated)
        treated, controls = mat[:n_tr][:, cols], mat[n_tr:][:, cols]
        pre_mask = self.pre[cols]
        observed, counterfactual, unit_phi = area_paths(treated, controls, pre_mask)
        out = {}
        for name, window in (
            ("post", self.post[cols]),
            (f"last{self.last_k}", np.isin(cols, last_cols)),
        ):
            test = NoiseStandardisedTest.from_paths(
                observed, counterfactual, pre_mask, window, unit_phi
            )
            out[name] = standardised_effect(windows[name], test, self.level, self.mde_alpha)
        if frame.empty:
            return MappingProxyType(out), frame, pretrend
        # the event study's bins and pre-trend test use random placebo groups
        rng = np.random.default_rng([self.seed, position])
        pl = _draw_placebos(treated, controls, self.n_placebo, rng)
        z = float(stats.norm.isf(self._alpha / 2))
        pre_l = np.flatnonzero(pre_mask)
        phi = _dispersions(pl, pre_l)
        bins = event_time_bins(self.event_time, self.window)[cols]
        ref_l = np.flatnonzero(bins == -1)
        frame = frame.copy()
        for i, k in enumerate(frame["event_time"].to_numpy()):
            if k == -1 or not np.isfinite(frame.at[i, "estimate"]):
                continue
            t_t, se_t, t_p = _placebo_window(pl, np.flatnonzero(bins == k), ref_l, phi)
            cal = _calibrated(t_t, t_p, self._alpha)
            est = float(frame.at[i, "estimate"])
            half = cal["crit"] * se_t
            frame.loc[i, ["se", "ci_low", "ci_high", "p_value"]] = [
                half / z,
                est - half,
                est + half,
                cal["p_value"],
            ]
        if "pct_estimate" in frame:
            for col in ("ci_low", "ci_high"):
                frame[f"pct_{col}"] = np.expm1(frame[col].to_numpy(dtype=float))
        leads = [
            np.flatnonzero(bins == k)
            for k, est in zip(frame["event_time"], frame["estimate"], strict=True)
            if k <= -2 and np.isfinite(est)
        ]
        if leads:
            # Poisson-scaled (not by the pre-period dispersion, which a pre-trend inflates)
            w_t, w_p = _placebo_wald(pl, leads, ref_l)
            n = w_p.size
            pretrend = MappingProxyType(
                {
                    "stat": w_t,
                    "df": float(len(leads)),
                    "p_value": float((1 + np.sum(w_p >= w_t)) / (n + 1)),
                    "n_dropped": 0.0,
                    "n_placebo": float(n),
                }
            )
        return MappingProxyType(out), frame, pretrend
