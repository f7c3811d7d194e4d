"""The site-level synthetic control / synthetic DID design (:class:`SyntheticControl`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from dmi_eval.designs.synth.balance import balance_table
from dmi_eval.designs.synth.core import Algorithm, PathFit
from dmi_eval.designs.synth.joint import JointSite, site_fit
from dmi_eval.designs.synth.paths import (
    factor_count,
    factor_matrix,
    path_for,
    placebo_gap_site,
)
from dmi_eval.designs.synth.reference import (
    Anchor,
    Estimator,
    Method,
    PlaceboStatistic,
    Scale,
    Target,
)
from dmi_eval.designs.synth.results import SyntheticControlResults
from dmi_eval.errors import DesignError
from dmi_eval.inference import (
    PlaceboTest,
    placebo_in_space,
    select_placebos,
)
from dmi_eval.inference.noise import NoiseInputs, dispersion, market_dispersion
from dmi_eval.options import Sided, check_alpha, check_choice, check_level
from dmi_eval.panel import SiteData


class SyntheticControl:
    """Synthetic control, synthetic DID or DID for one DMI site.

    Parameters
    ----------
    site_data
        The site's view of the panel.
    outcomes
        Outcomes to fit (default: the site's outcomes).
    method
        ``"sc"`` (outcome-only synthetic control) or ``"sdid"`` (synthetic
        difference-in-differences); the difference-in-differences is
        :class:`dmi_eval.designs.did.DID`.
    target
        ``"treated"`` (default): the market's treated areas;
        ``"catchment"``: the site's catchment areas (displacement / diffusion),
        fitted on the same donor pool.
    scale
        ``"per_area"`` (default): the treated series is the mean per treated
        micro-area, comparable with single donor areas; the counterfactual is
        scaled back to the treated total. ``"total"``: the treated total.
    anchor
        How the fit is anchored to the market's pre-period level: ``"match"`` fits levels (classic SC, additive SDID / DID);
        ``"demean"`` (SC only) removes each unit's pre-period mean
        (intercept-shifted SC); ``"ratio"`` divides every series by its own
        pre-period mean before fitting and scales the counterfactual back (a
        multiplicative intercept, natural for counts: SDID and DID become
        proportional); ``"auto"`` (default): ``"ratio"`` when the treated
        pre-period mean is outside the donors' range (the convex-hull problem
        of markets at the top of the city's distribution), else ``"match"``.
        The diagnostics record the estimator used and flag the hull problem.
        In a Monte Carlo of simulated cities (markets = the busiest areas,
        multiplicative trends), ratio scaling halved the error of SDID and DID
        and brought SC's 90% placebo interval to 90% coverage.
    last_k
        Length of the ``last{k}`` window.
    sided
        Sidedness of the placebo p-value in :meth:`effects` (default
        ``"lower"``: a reduction).
    level
        Confidence level of the placebo-based interval (default 0.9).
    mde_alpha
        One-sided level of the test whose minimum detectable reduction the
        diagnostics report (``mde_placebo``; default 0.05; the site path passes
        the verdict's ``alpha``).
    max_placebos
        Cap on the number of placebo donor areas (seeded sample); ``None`` =
        every donor.
    max_pre_mspe_multiple
        Drop placebos whose pre-period MSPE exceeds this multiple of the
        site's (``None``: keep all).
    max_pre_rmspe_ratio
        Pre-period fit is flagged poor when ``RMSPE / mean pre level`` of the
        treated series exceeds this.
    placebo_time, leave_one_out
        Run the placebo-in-time and leave-one-out checks.
    max_leave_one_out
        Largest-weight donors dropped one at a time.
    sc_ridge
        SC only: ridge on the donor weights, in units of SDID's penalty: the
        SC objective gets ``(sc_ridge * zeta)^2 T_pre ||w||^2`` with SDID's
        ``zeta = (N_tr T_post)^(1/4) sigma``. 0 gives classic (unpenalised)
        SC; SDID's full penalty (1.0) spreads the weights almost equally over
        every donor, so SC collapses to a ratio DID. The default 0.3 was
        chosen by the calibration study (``nox -s calibrate``; see
        :mod:`dmi_eval.calibration`): on simulated cities with market-specific
        factor exposure it keeps the market's error close to unpenalised SC's
        (about 40 of 80 donors weighted) while stabilising the placebo fits of
        single noisy areas, which gives the placebo test its power.
        Cross-validating the penalty on the pre period was tried and rejected:
        hold-out pre periods reward smoothing the counting noise and pick the
        heaviest penalty, whose post-period error is larger.
    estimator
        SC only: ``"simplex"`` (default): donor weights on the simplex with the
        ridge ``sc_ridge``; ``"factor"``: the generalized synthetic control
        (interactive fixed effects, Xu 2017; :mod:`dmi_eval.designs.synth.factor`):
        the city's factors are estimated from the donors' series by a weighted
        SVD after removing the common path, and the market's own loadings are
        fitted on the pre period by quasi-Poisson regression, so a market whose
        exposure lies outside the donors' range is extrapolated rather than
        averaged. The placebos are fitted the same way with the market's
        number of factors. In the calibration study it did not beat the
        simplex default (see the methods appendix), so it is an option.
        ``"joint"``: factors from every outcome's donors, the market's
        loadings fitted on every outcome's pre period at once (shared
        loadings); ``"augmented"``: the simplex SC corrected by that joint
        factor model (:mod:`dmi_eval.designs.synth.joint`, with numbers; the
        site SC of :mod:`dmi_eval.evaluation`).
    n_factors
        ``"factor"``: the number of factors, ``None`` (default) chosen by
        blocked cross-validation on the market's pre period; ``"joint"`` and
        ``"augmented"``: ``None`` means 3.
    placebo_statistic
        Statistic ranked in the placebo test: ``"noise"`` (default): the log
        ratio of observed to synthetic counts over the window divided by the
        standard deviation it has under no effect -- its counting noise from
        the unit's own counts and the city's overdispersion plus the drift
        every unit shares (:mod:`dmi_eval.inference.noise`), so a
        market of several busy areas and a single quiet placebo area are
        compared on one scale; ``"rmspe"``: mean post gap over the
        pre-period RMSPE (Abadie et al. 2010; at DMI sites its size is far
        above nominal, because a market's RMSPE is small and a single area's
        is dominated by noise); ``"pct"``: mean post gap over the unit's
        pre-period mean level.
    min_donor_pre_count
        Under ratio scaling, donors with fewer pre-period incidents are not
        weighted (see :meth:`_eligible_donors`).
    min_placebo_pre_count
        With the ``"noise"`` statistic every donor area with at least this many
        pre-period incidents is a placebo (fitted on the eligible donors): its
        counting noise is part of its statistic. The test of a window uses
        those expecting at least 20 incidents in it (at least the 80 busiest,
        :func:`~dmi_eval.inference.noise.select_window_placebos`).
    algorithm
        ``"exact"`` simplex solutions, or ``"synthdid"`` Frank-Wolfe iterations.
    min_pre_periods
        Fewer pre periods raise :class:`DesignError`.
    n_jobs, seed
        joblib workers and the seed of the placebo sample (results do not
        depend on ``n_jobs``).

    Notes
    -----
    With ``y1_t`` the treated series (per area) and ``Y0`` the donor areas,
    SC: ``w = argmin_{w in simplex} sum_{t in pre} (y1_t - w'Y0_t)^2`` and
    ``cf_t = w'Y0_t`` (demeaned: plus ``mean_pre(y1) - w' mean_pre(Y0)``);
    SDID and DID as in :func:`dmi_eval.designs.synth.core.fit_path`. With
    ``estimator="factor"`` (series ``z`` over their pre-period means, donor
    weights ``a_i = 1/(1/m_i + phi)``): ``delta_t = sum_i a_i z_it / sum_i a_i``,
    ``F`` the first ``r`` right singular vectors of ``sqrt(a_i)(z_it - delta_t -
    alpha_i)``, and ``cf_t = s_1 delta_t exp(b_0 + F_t' b)`` with ``(b_0, b)``
    the quasi-Poisson fit of ``y1`` on the pre period (``r = 0``: the weighted
    ratio DID). The
    counterfactual total is ``n_treated * cf_t``; the effect over a window is
    ``sum(observed) - sum(counterfactual)`` and ``pct_change = effect / sum(cf)``.
    Inference: every donor area in turn is a fake treated unit fitted on the
    other donors with the same estimator; the rank of the site's standardised
    statistic among their statistics and the mirror images of these about their
    median gives each one-sided p-value (``(1 + #{reference values at or
    beyond}) / (2n + 1)``, each tail counted, never below ``1 / (n + 1)``;
    :class:`~dmi_eval.inference.noise.NoiseStandardisedTest`) and inverting the
    rank test gives the interval. With ``placebo_statistic="noise"`` the statistic of unit
    ``j`` is ``log(sum obs / sum synthetic) / sqrt(tau^2 + v_j)``, ``v_j`` its
    negative-binomial counting variance and ``tau^2`` the DerSimonian-Laird
    drift variance of the placebos expecting at least 20 incidents in the
    window (at least the 80 busiest); the diagnostics report ``mde_placebo``, the
    smallest reduction the one-sided ``mde_alpha`` test detects with 80% power.
    """

    def __init__(
        self,
        site_data: SiteData,
        *,
        outcomes: Sequence[str] | None = None,
        method: Method = "sc",
        target: Target = "treated",
        scale: Scale = "per_area",
        anchor: Anchor = "auto",
        last_k: int = 6,
        sided: Sided = "lower",
        level: float = 0.9,
        mde_alpha: float = 0.05,
        max_placebos: int | None = None,
        max_pre_mspe_multiple: float | None = None,
        max_pre_rmspe_ratio: float = 0.5,
        placebo_time: bool = True,
        leave_one_out: bool = True,
        max_leave_one_out: int = 10,
        sc_ridge: float = 0.3,
        estimator: Estimator = "simplex",
        n_factors: int | None = None,
        placebo_statistic: PlaceboStatistic = "noise",
        algorithm: Algorithm = "exact",
        min_pre_periods: int = 4,
        min_donor_pre_count: float = 45.0,
        min_placebo_pre_count: float = 12.0,
        n_jobs: int = 2,
        seed: int = 0,
    ) -> None:
        check_choice("method", method, Method)
        check_choice("target", target, Target)
        check_choice("scale", scale, Scale)
        check_choice("anchor", anchor, Anchor)
        check_choice("sided", sided, Sided)
        check_choice("algorithm", algorithm, Algorithm)
        check_choice("estimator", estimator, Estimator)
        if estimator != "simplex" and (method != "sc" or anchor == "demean"):
            raise ValueError(
                f"estimator={estimator!r} (generalized synthetic control) is an SC estimator with "
                f"the 'ratio', 'match' or 'auto' anchor; got method={method!r}, anchor={anchor!r}"
            )
        if n_factors is not None and (estimator == "simplex" or n_factors < 0):
            raise ValueError(
                f"n_factors={n_factors!r}: a number of factors >= 0 goes with "
                "estimator='factor', 'joint' or 'augmented' (None: the default number)"
            )
        if not isinstance(site_data, SiteData):
            raise TypeError("site_data must be a dmi_eval.panel.SiteData")
        outcomes = tuple(site_data.outcomes if outcomes is None else outcomes)
        unknown = [o for o in outcomes if o not in site_data.panel.outcomes]
        if unknown or not outcomes:
            raise ValueError(f"outcomes {unknown} not in the panel ({site_data.panel.outcomes})")
        if last_k < 1:
            raise ValueError(f"last_k must be >= 1, got {last_k}")
        level = check_level(level)
        if max_placebos is not None and max_placebos < 1:
            raise ValueError("max_placebos must be >= 1 or None")
        if max_pre_mspe_multiple is not None and max_pre_mspe_multiple <= 0:
            raise ValueError("max_pre_mspe_multiple must be positive or None")
        if site_data.n_pre < min_pre_periods:
            raise DesignError(
                f"site {site_data.site_id!r}: {method} needs at least {min_pre_periods} pre "
                f"periods before the call-in, the data have {site_data.n_pre}; "
                "extend the data back or choose a later call-in"
            )
        if len(site_data.donor_areas) < 2:
            raise DesignError(
                f"site {site_data.site_id!r}: {method} needs at least two donor areas, "
                f"got {len(site_data.donor_areas)}; widen [[sites]].donor_areas"
            )
        if target == "catchment" and not site_data.catchment_areas:
            raise DesignError(
                f"site {site_data.site_id!r}: target='catchment' needs catchment_areas; "
                "add [[sites]].catchment_areas or fit the treated areas"
            )
        self.target: Target = target
        self.site_data = site_data
        self.outcomes = outcomes
        self.method: Method = method
        self.scale: Scale = scale
        self.anchor: Anchor = anchor
        self.last_k = int(last_k)
        self.sided: Sided = sided
        self.level = level
        self.mde_alpha = check_alpha(float(mde_alpha))
        self.max_placebos = max_placebos
        self.max_pre_mspe_multiple = max_pre_mspe_multiple
        self.max_pre_rmspe_ratio = float(max_pre_rmspe_ratio)
        if min_donor_pre_count < 0:
            raise ValueError(f"min_donor_pre_count must be >= 0, got {min_donor_pre_count}")
        self.min_donor_pre_count = float(min_donor_pre_count)
        if min_placebo_pre_count < 0:
            raise ValueError(f"min_placebo_pre_count must be >= 0, got {min_placebo_pre_count}")
        self.min_placebo_pre_count = float(min_placebo_pre_count)
        self.placebo_time = bool(placebo_time)
        self.leave_one_out = bool(leave_one_out)
        self.max_leave_one_out = int(max_leave_one_out)
        if sc_ridge < 0:
            raise ValueError(f"sc_ridge must be >= 0, got {sc_ridge}")
        self.sc_ridge = float(sc_ridge)
        self.estimator: Estimator = estimator
        self.n_factors = n_factors
        check_choice("placebo_statistic", placebo_statistic, PlaceboStatistic)
        self.placebo_statistic: PlaceboStatistic = placebo_statistic
        self.algorithm: Algorithm = algorithm
        self.n_jobs = int(n_jobs)
        self.seed = int(seed)

    def _core_method(self, y1pre: np.ndarray, Y0pre: np.ndarray) -> tuple[str, bool, bool]:
        """``(core method, treated outside the donors' range, ratio scaling)``."""
        means = Y0pre.mean(axis=1)
        outside = bool(y1pre.mean() > means.max() or y1pre.mean() < means.min())
        ratio = self.anchor == "ratio" or (self.anchor == "auto" and outside and y1pre.mean() > 0)
        if self.method != "sc":
            return self.method, outside, ratio
        if self.anchor == "demean":
            return "sc_demeaned", outside, False
        return "sc", outside, ratio

    def fit(self) -> SyntheticControlResults:
        """Fit every outcome, run the placebo tests and collect diagnostics."""
        sd = self.site_data
        periods = sd.periods
        pre, post = sd.pre_mask, sd.post_mask
        areas = sd.treated_areas if self.target == "treated" else sd.catchment_areas
        n_tr = len(areas)
        factor = n_tr if self.scale == "per_area" else 1
        donors = list(sd.donor_areas)
        paths: dict[str, pd.DataFrame] = {}
        weight_rows: list[pd.DataFrame] = []
        time_rows: list[pd.DataFrame] = []
        diag_rows: list[dict[str, Any]] = []
        placebos: dict[str, PlaceboTest] = {}
        loo_rows: list[dict[str, Any]] = []
        pit_rows: list[dict[str, Any]] = []
        balance: dict[str, pd.DataFrame] = {}
        stat_used: dict[str, str] = {}
        noise: dict[str, NoiseInputs] = {}
        cov = sd.covariates([*areas, *donors])
        for outcome in self.outcomes:
            total = sd.panel.series(outcome, areas).to_numpy().astype(float)
            y1 = total / factor
            Y0_all = sd.donor_matrix(outcome).to_numpy().astype(float)
            core, outside, ratio = self._core_method(y1[pre], Y0_all[:, pre])
            idx = self._eligible_donors(Y0_all, pre, ratio)
            Y0 = Y0_all[idx]
            labels = [donors[i] for i in idx]
            nf, cv = factor_count(self.estimator, self.n_factors, y1, Y0, pre, core, ratio)
            fit = path_for(y1, Y0, pre, post, core, self.algorithm, n_tr, ratio, self.sc_ridge, nf)
            # the augmented estimator's simplex part, before its factor term (for the figure)
            weights_only = fit.cf if self.estimator == "augmented" else np.full_like(fit.cf, np.nan)
            joint = None
            if self.estimator in ("joint", "augmented") and core == "sc":
                joint, fit = site_fit(
                    sd, outcome, areas, fit, idx, factor, self.estimator, self.n_factors
                )
            omega_all = np.zeros(len(donors))
            omega_all[idx] = fit.omega
            cf = fit.cf
            gap = y1 - cf
            paths[outcome] = pd.DataFrame(
                {
                    "observed": total,
                    "synthetic": cf * factor,
                    "gap": gap * factor,
                    "observed_per_area": y1,
                    "synthetic_per_area": cf,
                    "gap_per_area": gap,
                    "synthetic_weights_only": weights_only * factor,
                    "role": sd.roles.to_numpy(),
                },
                index=periods,
            )
            weight_rows.append(
                pd.DataFrame({"outcome": outcome, "area": donors, "weight": omega_all}).sort_values(
                    "weight", ascending=False, kind="stable"
                )
            )
            if fit.lam is not None:
                time_rows.append(
                    pd.DataFrame(
                        {"outcome": outcome, "period": periods[pre].astype(str), "weight": fit.lam}
                    )
                )
            pre_rmspe = float(np.sqrt(np.mean((gap[pre] * factor) ** 2)))
            pre_level = float(np.mean(total[pre]))
            fit_ratio = pre_rmspe / pre_level if pre_level > 0 else float("inf")
            share_out = float(
                np.mean((y1[pre] > Y0[:, pre].max(axis=0)) | (y1[pre] < Y0[:, pre].min(axis=0)))
            )
            diag_rows.append(
                {
                    "outcome": outcome,
                    "method": self.method,
                    "estimator": core + ("_ratio" if ratio else ""),
                    "scale": self.scale,
                    "n_treated_areas": n_tr,
                    "n_donors": len(idx),
                    "n_pre": int(pre.sum()),
                    "n_post": int(post.sum()),
                    "pre_rmspe": pre_rmspe,
                    "pre_mean": pre_level,
                    "pre_rmspe_ratio": fit_ratio,
                    "poor_fit": bool(fit_ratio > self.max_pre_rmspe_ratio),
                    "outside_hull": outside,
                    "share_pre_outside_range": share_out,
                    "n_positive_weights": int((fit.omega > 0).sum()),
                    "intercept": fit.intercept * factor,
                    "estimator_weights": "simplex"
                    if nf is None and joint is None
                    else self.estimator,
                    "n_factors": joint.r if joint else -1 if nf is None else nf,
                    "factor_cv": "" if cv is None else " ".join(f"{c:.4g}" for c in cv),
                }
            )
            balance[outcome] = balance_table(y1, Y0_all, omega_all, pre, cov, n_tr)
            # placebo-in-space
            statistic = self.placebo_statistic
            if statistic == "noise":
                # Any donor with enough incidents is a placebo (its noise is in the
                # statistic); the synthetic controls use the eligible donors only.
                fit_rows = np.zeros(len(donors), dtype=bool)
                fit_rows[idx] = True
                pool_rows, pool_labels = Y0_all, donors
                totals = Y0_all[:, pre].sum(axis=1)
                pool = np.flatnonzero((totals >= self.min_placebo_pre_count) & (totals > 0))
            else:
                fit_rows = np.ones(len(idx), dtype=bool)
                pool_rows, pool_labels = Y0, labels
                pool = np.arange(len(idx))
            gap_fn = partial(
                placebo_gap_site, Y0=pool_rows, fit_rows=fit_rows, pre=pre, post=post,
                core_method=core, algorithm=self.algorithm, ratio=ratio, sc_ridge=self.sc_ridge,
                n_factors=nf,
            )  # fmt: skip
            if joint is not None:
                rows = np.arange(len(donors)) if pool_rows is Y0_all else idx
                gap_fn = joint.placebo_gap(rows, post, self.sc_ridge, ratio)
            usable = [
                int(pool[i]) for i in select_placebos(len(pool), self.max_placebos, self.seed)
            ]
            if ratio or statistic == "pct":
                usable = [i for i in usable if pool_rows[i, pre].mean() > 0]
            scale = None
            if statistic == "pct":
                scale = np.r_[max(y1[pre].mean(), 1e-12), pool_rows[usable][:, pre].mean(axis=1)]
            stat_used[outcome] = statistic
            placebos[outcome] = placebo_in_space(
                gap_fn,
                usable,
                treated_gap=gap,
                treated=sd.site_id,
                labels=pool_labels,
                periods=periods,
                pre=pre,
                post=post,
                n_jobs=self.n_jobs,
                scale=scale,
            )
            if statistic == "noise":
                noise[outcome] = self._noise_inputs(
                    outcome, placebos[outcome], total, cf * factor, Y0_all, pool_rows[usable], areas,
                    factors=joint.leverage_factors() if joint else factor_matrix(Y0, pre, ratio, nf),
                )  # fmt: skip
            if self.leave_one_out and joint is None:
                loo_rows.extend(
                    self._leave_one_out(
                        outcome, total, y1, Y0, fit, core, factor, ratio, labels, nf
                    )
                )
            if self.placebo_time:
                pit_rows.extend(
                    self._placebo_in_time(outcome, y1, Y0, core, factor, n_tr, ratio, nf, joint)
                )
        for row in diag_rows:
            row["placebo_statistic"] = stat_used[row["outcome"]]
        diagnostics = pd.DataFrame(diag_rows).set_index("outcome", drop=False)
        diagnostics.index.name = None
        return SyntheticControlResults(
            site_id=sd.site_id,
            method=self.method,
            outcomes=self.outcomes,
            primary_outcome=sd.primary_outcome
            if sd.primary_outcome in self.outcomes
            else self.outcomes[0],
            periods=periods,
            roles=sd.roles.copy(),
            n_treated=n_tr,
            last_k=self.last_k,
            sided=self.sided,
            level=self.level,
            mde_alpha=self.mde_alpha,
            max_pre_mspe_multiple=self.max_pre_mspe_multiple,
            paths=MappingProxyType(paths),
            weights=pd.concat(weight_rows, ignore_index=True),
            time_weights=(
                pd.concat(time_rows, ignore_index=True)
                if time_rows
                else pd.DataFrame(columns=["outcome", "period", "weight"])
            ),
            fit_diagnostics=diagnostics,
            placebos=MappingProxyType(placebos),
            leave_one_out=pd.DataFrame(
                loo_rows, columns=["outcome", "dropped", "weight", "effect", "pct_change"]
            ),
            placebo_in_time=pd.DataFrame(
                pit_rows,
                columns=["outcome", "fake_start", "n_fake_post", "effect", "pct_change", "z"],
            ),
            balance_tables=MappingProxyType(balance),
            noise=MappingProxyType(noise),
            estimator=self.estimator if self.method == "sc" else "simplex",
        )

    def _noise_inputs(
        self,
        outcome: str,
        test: PlaceboTest,
        total: np.ndarray,
        synthetic: np.ndarray,
        Y0_all: np.ndarray,
        Y0_placebos: np.ndarray,
        areas: Sequence[str],
        *,
        factors: np.ndarray | None = None,
    ) -> NoiseInputs:
        """Counts, synthetic counts and overdispersion of the market and its placebos.

        A placebo's gap is in its own counts (its synthetic control is scaled
        back to its own pre-period level), so its synthetic counts are
        ``observed - gap``.
        """
        pre = self.site_data.pre_mask
        phi = dispersion(Y0_all[:, pre])
        area_means = self.site_data.area_matrix(outcome, areas).to_numpy()[:, pre].mean(axis=1)
        gaps = test.gaps.to_numpy()[1:]
        return NoiseInputs(
            labels=tuple(str(u) for u in test.gaps.index),
            observed=np.vstack([total, Y0_placebos]),
            synthetic=np.vstack([synthetic, Y0_placebos - gaps]),
            phi=np.r_[market_dispersion(phi, area_means), np.full(len(Y0_placebos), phi)],
            pre=pre.copy(),
            dispersion=phi,
            factors=factors,
        )

    # -- helpers --------------------------------------------------------------
    def _eligible_donors(self, Y0: np.ndarray, pre: np.ndarray, ratio: bool) -> np.ndarray:
        """Donor indices used for one outcome.

        With ratio scaling each donor is divided by its own pre-period mean. A
        donor with few pre-period incidents has a noisy mean, and dividing by it
        favours donors that were low by chance and rebound later (regression to
        the mean), which biases the counterfactual upward. Donors with fewer
        than ``min_donor_pre_count`` pre-period incidents (45 by default: a
        relative standard error of the mean of at most 15% under Poisson noise)
        are therefore left out; if fewer than ten remain, every donor with a
        positive pre-period mean is kept.
        """
        totals = Y0[:, pre].sum(axis=1)
        if not ratio:
            return np.arange(Y0.shape[0])
        idx = np.flatnonzero(totals >= self.min_donor_pre_count)
        if idx.size < 10:
            idx = np.flatnonzero(totals > 0)
        return idx

    def _leave_one_out(
        self,
        outcome: str,
        total: np.ndarray,
        y1: np.ndarray,
        Y0: np.ndarray,
        fit: PathFit,
        core: str,
        factor: int,
        ratio: bool,
        labels: Sequence[str],
        nf: int | None = None,
    ) -> list[dict[str, Any]]:
        sd = self.site_data
        pre, post = sd.pre_mask, sd.post_mask
        n_tr = len(sd.treated_areas if self.target == "treated" else sd.catchment_areas)
        order = [int(i) for i in np.argsort(-fit.omega, kind="stable") if fit.omega[i] > 0]
        rows = []
        for i in order[: self.max_leave_one_out]:
            keep = np.ones(Y0.shape[0], dtype=bool)
            keep[i] = False
            f = path_for(
                y1, Y0[keep], pre, post, core, self.algorithm, n_tr, ratio,
                self.sc_ridge, nf,
            )  # fmt: skip
            cf = float(f.cf[post].sum() * factor)
            obs = float(total[post].sum())
            rows.append(
                {
                    "outcome": outcome,
                    "dropped": labels[i],
                    "weight": float(fit.omega[i]),
                    "effect": obs - cf,
                    "pct_change": (obs - cf) / cf if cf > 0 else float("nan"),
                }
            )
        return rows

    def _placebo_in_time(
        self,
        outcome: str,
        y1: np.ndarray,
        Y0: np.ndarray,
        core: str,
        factor: int,
        n_tr: int,
        ratio: bool,
        nf: int | None = None,
        joint: JointSite | None = None,
    ) -> list[dict[str, Any]]:
        sd = self.site_data
        idx = np.flatnonzero(sd.pre_mask)
        h = min(sd.n_post, len(idx) // 3)
        if h < 1 or len(idx) - h < 3:
            return []
        fake_pre = np.zeros_like(sd.pre_mask)
        fake_pre[idx[: len(idx) - h]] = True
        fake_post = np.zeros_like(sd.pre_mask)
        fake_post[idx[len(idx) - h :]] = True
        f = path_for(
            y1, Y0, fake_pre, fake_post, core, self.algorithm, n_tr, ratio, self.sc_ridge, nf
        )
        if joint is not None:
            f = joint.fake_pre_path(fake_pre, f, factor)
        gap = y1 - f.cf
        rmspe = float(np.sqrt(np.mean(gap[fake_pre] ** 2)))
        cf = float(f.cf[fake_post].sum() * factor)
        eff = float(gap[fake_post].sum() * factor)
        return [
            {
                "outcome": outcome,
                "fake_start": str(sd.periods[idx[len(idx) - h]]),
                "n_fake_post": h,
                "effect": eff,
                "pct_change": eff / cf if cf > 0 else float("nan"),
                "z": float(gap[fake_post].mean() / rmspe) if rmspe > 0 else float("nan"),
            }
        ]
