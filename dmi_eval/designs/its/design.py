"""The site-level ITS design (``ITS(site_data, ...).fit() -> ITSResults``) and its placebo-in-time re-fits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

import numpy as np
import pandas as pd

from dmi_eval.checks import placebo_in_time
from dmi_eval.designs.its.fit import fit_multigroup, fit_segmented
from dmi_eval.designs.its.model import (
    COUNT_FAMILIES,
    FAMILIES,
    SEASONALITIES,
    Comparison,
    SegmentedFit,
)
from dmi_eval.designs.its.results import ITSResults, OutcomeITS
from dmi_eval.errors import DesignError
from dmi_eval.options import (
    alpha_of,
    check_alpha,
    check_choice,
    check_last_k,
    check_level,
    check_outcomes,
)
from dmi_eval.panel import PERIODS_PER_YEAR, SiteData


# ---------------------------------------------------------------------------
# placebo-in-time
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    """Everything needed to re-fit the same model to part of the series."""

    family: str
    seasonality: str
    n_harmonics: int
    period_length: int
    slope_change: bool
    ramp: int
    hac_lags: int | None
    small_sample: bool
    count_cov: str
    sarimax_order: tuple[int, int, int]
    t_inference: bool | None
    alpha: float
    exposure: tuple[float, float] | None = None

    def fit(
        self,
        y: np.ndarray,
        post: np.ndarray,
        time: np.ndarray,
        season: np.ndarray,
        controls: np.ndarray | None,
    ) -> SegmentedFit:
        common = {
            "post": post,
            "time": time,
            "family": self.family,
            "seasonality": self.seasonality,
            "n_harmonics": self.n_harmonics,
            "period_length": self.period_length,
            "season": season,
            "slope_change": self.slope_change,
            "hac_lags": self.hac_lags,
            "small_sample": self.small_sample,
            "count_cov": self.count_cov,
            "t_inference": self.t_inference,
            "alpha": self.alpha,
        }
        if controls is None:
            return fit_segmented(y, ramp=self.ramp, sarimax_order=self.sarimax_order, **common)
        unit = self.exposure is not None and self.family in COUNT_FAMILIES
        return fit_multigroup(
            y,
            controls,
            exposure=self.exposure if unit else None,
            unit_dispersion=unit and self.family == "quasipoisson",
            **common,
        )


def _target_post_rows(fit: SegmentedFit) -> np.ndarray:
    return np.flatnonzero(fit.post)


def _window_mask(fit: SegmentedFit, rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(fit.y.size, dtype=bool)
    mask[rows] = True
    return mask


def _placebo_in_time(
    spec: _Spec,
    y: np.ndarray,
    post: np.ndarray,
    time: np.ndarray,
    season: np.ndarray,
    controls: np.ndarray | None,
    *,
    window: int,
    max_placebos: int,
) -> pd.DataFrame:
    """Fake call-in dates inside the pre-period, each fitted on pre data only.

    For each fake start ``j`` (:func:`dmi_eval.checks.fake_starts`) the model is
    re-fitted to the first ``j + window`` pre periods with ``post = rows >= j``, and
    the effect over those ``window`` fake post periods is recorded
    (:func:`dmi_eval.checks.placebo_in_time`; empty when the pre-period is too short).
    """
    pre = ~post
    y_pre, t_pre, s_pre = y[pre], time[pre], season[pre]
    c_pre = None if controls is None else controls[:, pre]
    n_terms = 2 + (2 * spec.n_harmonics if spec.seasonality == "fourier" else 0)
    n_terms += spec.period_length - 1 if spec.seasonality == "dummies" else 0

    def refit(j: int, end: int) -> tuple[float, float]:
        fake_post = np.arange(end) >= j
        f = spec.fit(
            y_pre[:end],
            fake_post,
            t_pre[:end],
            s_pre[:end],
            None if c_pre is None else c_pre[:, :end],
        )
        eff = f.window_effect(f.post)
        return eff.pct_change, eff.p_value

    return placebo_in_time(
        refit,
        y_pre.size,
        window=window,
        min_train=max(8, n_terms + 4),
        max_placebos=max_placebos,
    )


def _season_positions(periods: pd.PeriodIndex, frequency: str) -> np.ndarray:
    if frequency == "month":
        return np.asarray(periods.month, dtype=float) - 1
    if frequency == "quarter":
        return np.asarray(periods.quarter, dtype=float) - 1
    return np.mod(np.asarray(periods.week, dtype=float) - 1, 52)


MIN_POST_FOR_SLOPE = 3
"""Fewest post periods for the slope-change term; below, the level change alone is fitted."""


class ITS:
    """Interrupted time-series design for one DMI site.

    Parameters
    ----------
    site_data
        The site's view of the panel.
    outcomes
        Outcomes to fit (default: all of the site's outcomes).
    family
        ``"auto"`` (quasi-Poisson for counts: log-linear, robust to
        over-dispersion, interpretable as a rate ratio), or one of
        ``"ols", "poisson", "quasipoisson", "negbin", "sarimax"``.
    seasonality
        ``"auto"``: Fourier terms when the pre-period covers at least two years,
        else none; or ``"none", "fourier", "dummies"``.
    comparison
        ``"none"``: single-series ITS (design ``"its"``). ``"donor_total"``:
        Linden's controlled ITS (design ``"cits"``) against the donor areas'
        total count, with the number of areas in each series as exposure
        (offset) and, for quasi-Poisson, the market and the donor total each
        with its own dispersion. ``"donor_mean"``: against the donor areas'
        mean count treated as one series (kept for comparison; its Poisson
        variance treats a mean of many areas as a single count, so its
        intervals are far too wide).
    last_k
        Length of the ``last{k}`` window (capped at the number of post periods).
    level
        Confidence level of the intervals (default 0.95).
    mde_alpha
        One-sided level of the test whose minimum detectable reduction the
        diagnostics report (``mde``, ``mde_last``; default 0.05; the site path
        passes the verdict's ``alpha``).
    n_harmonics, slope_change, ramp
        Model terms (see :func:`segmented_design`).
    hac_lags
        Newey-West lags for OLS (and for ``count_cov="hac"``); default
        ``floor(4 (T/100)^(2/9))``.
    small_sample
        OLS: the Stata ``N/(N-k)`` factor on the HAC covariance.
    count_cov
        Covariance of the count families: ``"auto"`` (``"ar1"`` for Poisson and
        quasi-Poisson: quasi-likelihood sandwich with an AR(1) working
        correlation, which keeps 95% coverage when crime series are mildly
        autocorrelated; ``"model"`` for the negative binomial), ``"model"``,
        ``"hac"`` or ``"ar1"``.
    t_inference
        ``None`` (default): t distribution with the residual df for OLS and
        quasi-Poisson (dispersion estimated, as R's ``summary.glm``), normal
        otherwise; ``True`` / ``False`` to force.
    sarimax_order
        ARMA order of the SARIMAX errors.
    placebo
        Run the placebo-in-time analysis.
    max_placebos
        Most fake call-in dates (evenly spread over the eligible ones).

    Notes
    -----
    Per outcome the model of :func:`fit_segmented` (or :func:`fit_multigroup`)
    is fitted to the pre and post periods (the transition period excluded);
    the effect over a window :math:`W` is :math:`O_W - C_W` with
    :math:`C_W = \\sum_W \\tilde\\mu_t` the fitted counterfactual, and the
    interval comes from the delta-method SE of the log ratio (see
    :meth:`SegmentedFit.window_effect`).
    """

    def __init__(
        self,
        site_data: SiteData,
        *,
        outcomes: Sequence[str] | None = None,
        family: Literal["auto", "ols", "poisson", "quasipoisson", "negbin", "sarimax"] = "auto",
        seasonality: Literal["auto", "none", "fourier", "dummies"] = "auto",
        comparison: Comparison = "none",
        last_k: int = 6,
        level: float = 0.95,
        mde_alpha: float = 0.05,
        n_harmonics: int = 2,
        slope_change: bool = True,
        ramp: int = 0,
        hac_lags: int | None = None,
        small_sample: bool = False,
        count_cov: Literal["auto", "model", "hac", "ar1"] = "auto",
        t_inference: bool | None = None,
        sarimax_order: tuple[int, int, int] = (1, 0, 0),
        placebo: bool = True,
        max_placebos: int = 20,
    ) -> None:
        if not isinstance(site_data, SiteData):
            raise TypeError("site_data must be a dmi_eval.panel.SiteData")
        check_choice("family", family, ("auto", *FAMILIES))
        check_choice("seasonality", seasonality, ("auto", *SEASONALITIES))
        check_choice("comparison", comparison, get_args(Comparison))
        check_choice("count_cov", count_cov, ("auto", "model", "hac", "ar1"))
        if count_cov == "ar1" and family not in ("auto", "poisson", "quasipoisson"):
            raise ValueError(
                "count_cov='ar1' is available for the poisson and quasipoisson families"
            )
        if comparison != "none" and family == "sarimax":
            raise ValueError(f"family 'sarimax' is not available with comparison={comparison!r}")
        check_last_k(last_k)
        check_level(level)
        if not isinstance(max_placebos, int) or max_placebos < 0:
            raise ValueError("max_placebos must be a non-negative integer")
        chosen = check_outcomes(site_data.outcomes, outcomes)
        self.site_id = site_data.site_id
        self.frequency = site_data.frequency
        self.periods = site_data.periods.copy()
        self.roles = tuple(site_data.roles.astype(str))
        self.used = site_data.used_mask.copy()
        self.post = site_data.post_mask.copy()
        self.outcomes = chosen
        self.series = {o: site_data.treated_series(o).to_numpy().copy() for o in chosen}
        self.comparison_series: dict[str, np.ndarray] | None = None
        if comparison != "none":
            reduce = np.mean if comparison == "donor_mean" else np.sum
            self.comparison_series = {
                o: reduce(site_data.donor_matrix(o).to_numpy(dtype=float), axis=0) for o in chosen
            }
        self.n_areas = (len(site_data.treated_areas), len(site_data.donor_areas))
        self.family = family
        self.seasonality = seasonality
        self.comparison = comparison
        self.last_k = last_k
        self.level = level
        self.mde_alpha = check_alpha(float(mde_alpha))
        self.n_harmonics = n_harmonics
        self.slope_change = slope_change
        self.ramp = ramp
        self.hac_lags = hac_lags
        self.small_sample = small_sample
        self.count_cov = count_cov
        self.t_inference = t_inference
        self.sarimax_order = tuple(sarimax_order)
        self.placebo = placebo
        self.max_placebos = max_placebos

    def fit(self) -> ITSResults:
        """Fit every outcome; returns :class:`ITSResults`."""
        by_outcome = {o: self._fit_outcome(o) for o in self.outcomes}
        return ITSResults(
            site_id=self.site_id,
            design="its" if self.comparison == "none" else "cits",
            level=self.level,
            last_k=self.last_k,
            outcomes=self.outcomes,
            by_outcome=MappingProxyType(by_outcome),
            comparison=self.comparison,
            mde_alpha=self.mde_alpha,
        )

    def _fit_outcome(self, outcome: str) -> OutcomeITS:
        where = f"site {self.site_id!r}, outcome {outcome!r}"
        period_length = PERIODS_PER_YEAR[self.frequency]
        y_all = self.series[outcome].astype(float)
        used = self.used
        y = y_all[used]
        post = self.post[used]
        time = np.arange(len(self.periods), dtype=float)[used]
        season = _season_positions(self.periods, self.frequency)[used]
        n_pre, n_post = int((~post).sum()), int(post.sum())
        is_count = bool(np.all(y >= 0) and np.allclose(y, np.round(y)))
        if self.family == "auto":
            family = "quasipoisson" if is_count else "ols"
            family_reason = (
                "counts: log-linear model, variance scaled by the Pearson dispersion"
                if is_count
                else "non-count series: OLS with Newey-West SEs"
            )
        else:
            family, family_reason = self.family, "set by the user"
        if self.seasonality == "auto":
            if n_pre >= 2 * period_length:
                seasonality = "fourier"
                seasonality_reason = f"{n_pre} pre periods >= two years ({2 * period_length})"
            else:
                seasonality = "none"
                seasonality_reason = f"{n_pre} pre periods < two years ({2 * period_length})"
        else:
            seasonality, seasonality_reason = self.seasonality, "set by the user"
        n_harm = min(self.n_harmonics, period_length // 2)
        k_pre = 2 + (2 * n_harm if seasonality == "fourier" else 0)
        k_pre += period_length - 1 if seasonality == "dummies" else 0
        if n_pre < k_pre + 2:
            raise DesignError(
                f"{where}: {n_pre} pre-intervention periods are too few for a model with "
                f"{k_pre} pre-period terms; need at least {k_pre + 2} (use seasonality='none' "
                "or extend the data back in time)"
            )
        if family in COUNT_FAMILIES and y[~post].sum() == 0:
            raise DesignError(
                f"{where}: no events in the pre period, so no count model can be fitted; "
                "drop this outcome or aggregate more areas"
            )
        if self.count_cov == "auto":
            count_cov = "ar1" if family in ("poisson", "quasipoisson") else "model"
        else:
            count_cov = self.count_cov
        if self.t_inference is None:
            t_inference = family in ("ols", "quasipoisson")
        else:
            t_inference = bool(self.t_inference)
        controls = None
        if self.comparison_series is not None:
            controls = self.comparison_series[outcome][used][None, :]
        spec = _Spec(
            family=family,
            seasonality=seasonality,
            n_harmonics=n_harm,
            period_length=period_length,
            # a slope change needs post periods of its own beyond the level change: with one
            # or two after the call-in it is collinear with it (a singular design matrix)
            slope_change=self.slope_change and n_post >= MIN_POST_FOR_SLOPE,
            ramp=self.ramp,
            hac_lags=self.hac_lags,
            small_sample=self.small_sample,
            count_cov=count_cov,
            sarimax_order=self.sarimax_order,  # type: ignore[arg-type]
            t_inference=t_inference,
            alpha=alpha_of(self.level),
            exposure=(float(self.n_areas[0]), float(self.n_areas[1]))
            if self.comparison == "donor_total"
            else None,
        )
        try:
            fit = spec.fit(y, post, time, season, controls)
        except DesignError as exc:
            raise DesignError(f"{where}: {exc}") from None
        post_rows = _target_post_rows(fit)
        k = min(self.last_k, post_rows.size)
        windows = {
            "post": fit.window_effect(fit.post),
            f"last{self.last_k}": fit.window_effect(_window_mask(fit, post_rows[-k:])),
        }
        placebo_frame = pd.DataFrame(columns=["period", "pct_change", "log_ratio", "p_value"])
        summary: dict[str, float] = {"n": 0.0}
        if self.placebo and self.max_placebos > 0:
            L = min(n_post, max(2, n_pre // 3))
            raw = _placebo_in_time(
                spec, y, post, time, season, controls, window=L, max_placebos=self.max_placebos
            )
            pre_periods = self.periods[used][~post]
            placebo_frame = pd.DataFrame(
                {
                    "period": pre_periods[raw["row"].to_numpy(dtype=int)],
                    "pct_change": raw["pct_change"].to_numpy(dtype=float),
                    "log_ratio": raw["log_ratio"].to_numpy(dtype=float),
                    "p_value": raw["p_value"].to_numpy(dtype=float),
                }
            )
            real = fit.window_effect(_window_mask(fit, post_rows[:L]))
            real_log = math.log1p(real.pct_change) if real.pct_change > -1 else float("-inf")
            logs = placebo_frame["log_ratio"].to_numpy()
            n_pl = logs.size
            # without a placebo date there is no rank: p = 1/1 would read as a test
            rank = float(1 + np.sum(np.abs(logs) >= abs(real_log))) if n_pl else math.nan
            lower = float(1 + np.sum(logs <= real_log)) if n_pl else math.nan
            summary = {
                "n": float(n_pl),
                "window": float(L),
                "real_pct_change": real.pct_change,
                "rank": rank,
                "p_two_sided": rank / (n_pl + 1),
                "p_lower": lower / (n_pl + 1),
            }
        choices = dict(fit.choices)
        choices.update(
            {
                "family_reason": family_reason,
                "seasonality_reason": seasonality_reason,
                "comparison": self.comparison,
                "n_pre": n_pre,
                "n_post": n_post,
                "n_transition": int((~used).sum()),
                "last_k": self.last_k,
                "last_k_used": k,
                "n_placebos": int(summary["n"]),
                "t_inference": t_inference,
            }
        )
        if "hac_lags" in choices and self.hac_lags is None:
            choices["hac_reason"] = f"floor(4 (T/100)^(2/9)) with T = {y.size}"
        return OutcomeITS(
            outcome=outcome,
            fit=fit,
            periods=self.periods,
            roles=self.roles,
            used=used,
            observed=y_all,
            comparison=None
            if self.comparison_series is None
            else self.comparison_series[outcome].copy(),
            windows=MappingProxyType(windows),
            placebo=placebo_frame,
            placebo_summary=MappingProxyType(summary),
            choices=MappingProxyType(choices),
        )
