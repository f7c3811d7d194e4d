"""Interrupted time series (ITS): segmented regression, single and controlled.

Two layers:

* a numeric core that works on plain arrays -- :func:`fit_segmented` (one series)
  and :func:`fit_multigroup` (Linden's multiple-group / controlled ITS: the
  target stacked with one or more comparison series) -- both returning a
  read-only :class:`SegmentedFit` with coefficients, window effects,
  diagnostics and predictions;
* the site-level design :class:`ITS` (``ITS(site_data, ...).fit() ->``
  :class:`ITSResults`) that fits every outcome of a DMI site and returns the
  tidy effects frame (design ``"its"``, or ``"cits"`` against the donor mean).

Model families: OLS with Newey-West (HAC) standard errors; Poisson and
quasi-Poisson GLM (log link, optional exposure); negative binomial (NB2, alpha
estimated); SARIMAX with step / slope ("ramp") inputs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.diagnostic import acorr_ljungbox
from statsmodels.stats.stattools import durbin_watson

from dmi_eval.errors import DesignError
from dmi_eval.options import check_choice
from dmi_eval.panel import PERIODS_PER_YEAR, SiteData
from dmi_eval.results import effects_frame, window_rows

Family = Literal["ols", "poisson", "quasipoisson", "negbin", "sarimax"]
Seasonality = Literal["none", "fourier", "dummies"]
HacPanel = Literal["within", "stacked"]
Comparison = Literal["none", "donor_mean"]

FAMILIES: tuple[str, ...] = get_args(Family)
SEASONALITIES: tuple[str, ...] = get_args(Seasonality)
COUNT_FAMILIES = frozenset({"poisson", "quasipoisson", "negbin"})
LOG_LINK = COUNT_FAMILIES
FAMILY_LABEL = {
    "ols": "OLS Newey-West",
    "poisson": "Poisson",
    "quasipoisson": "quasi-Poisson",
    "negbin": "negative binomial",
    "sarimax": "SARIMAX",
}

__all__ = [
    "ITS",
    "ITSResults",
    "OutcomeITS",
    "SegmentedFit",
    "WindowEffect",
    "default_hac_lags",
    "fit_multigroup",
    "fit_segmented",
    "segmented_design",
]


def default_hac_lags(n: int) -> int:
    """Newey-West lag from the series length: ``floor(4 (n/100)^(2/9))``."""
    return int(math.floor(4.0 * (n / 100.0) ** (2.0 / 9.0)))


# ---------------------------------------------------------------------------
# design matrix
# ---------------------------------------------------------------------------
def segmented_design(
    time: np.ndarray,
    post: np.ndarray,
    *,
    seasonality: Seasonality = "none",
    n_harmonics: int = 2,
    period_length: int = 12,
    season: np.ndarray | None = None,
    slope_change: bool = True,
    ramp: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """Columns of the segmented regression and the names of the intervention terms.

    Parameters
    ----------
    time
        Time in periods (any origin; gaps allowed).
    post
        Boolean, true from the first post period on.
    seasonality, n_harmonics, period_length, season
        ``"fourier"``: ``n_harmonics`` sine/cosine pairs of period ``period_length``
        evaluated at ``season`` (position in the year; default ``time``);
        ``"dummies"``: ``period_length - 1`` indicators of ``season mod period_length``.
    slope_change
        Add ``slope = post * (time - t0)``, ``t0`` the time of the first post period
        (so the level change is measured at ``t0``, as in Stata's ``itsa``).
    ramp
        0: the level change is an immediate step; ``r > 0``: it is phased in
        linearly over the first ``r`` post periods (``min((time - t0 + 1)/r, 1)``).

    Returns
    -------
    (DataFrame, list of str)
        Columns ``const, time, level[, slope][, season terms]`` and the names of the
        intervention columns (``level``, ``slope``).
    """
    time = np.asarray(time, dtype=float)
    post = np.asarray(post, dtype=bool)
    if time.shape != post.shape or time.ndim != 1:
        raise ValueError("time and post must be 1-d arrays of the same length")
    if not post.any() or post.all():
        raise DesignError("the series needs both pre and post periods")
    t0 = float(time[post].min())
    if (time[~post] >= t0).any():
        raise DesignError("post periods must all come after the pre periods")
    cols: dict[str, np.ndarray] = {"const": np.ones_like(time), "time": time}
    if ramp and ramp > 0:
        cols["level"] = np.where(post, np.minimum((time - t0 + 1.0) / ramp, 1.0), 0.0)
    else:
        cols["level"] = post.astype(float)
    interventions = ["level"]
    if slope_change:
        cols["slope"] = np.where(post, time - t0, 0.0)
        interventions.append("slope")
    cols.update(_seasonal_columns(time, seasonality, n_harmonics, period_length, season))
    return pd.DataFrame(cols), interventions


def _seasonal_columns(
    time: np.ndarray,
    seasonality: str,
    n_harmonics: int,
    period_length: int,
    season: np.ndarray | None,
) -> dict[str, np.ndarray]:
    check_choice("seasonality", seasonality, SEASONALITIES)
    s = np.asarray(time if season is None else season, dtype=float)
    out: dict[str, np.ndarray] = {}
    if seasonality == "fourier":
        if n_harmonics < 1 or 2 * n_harmonics > period_length:
            raise ValueError(f"n_harmonics must be between 1 and {period_length // 2}")
        for k in range(1, n_harmonics + 1):
            angle = 2.0 * np.pi * k * s / period_length
            if 2 * k != period_length:  # at the Nyquist frequency the sine is identically 0
                out[f"sin{k}"] = np.sin(angle)
            out[f"cos{k}"] = np.cos(angle)
    elif seasonality == "dummies":
        pos = np.mod(np.round(s).astype(int), period_length)
        for j in range(1, period_length):
            out[f"season{j}"] = (pos == j).astype(float)
    return out


# ---------------------------------------------------------------------------
# fitted model
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowEffect:
    """Effect of the intervention over a set of periods.

    ``observed`` and ``counterfactual`` are sums; ``ratio = observed/counterfactual``;
    ``log_ratio_se`` is the delta-method standard error of the model-based log
    ratio ``log(sum fitted / sum counterfactual)``; the interval and the
    p-values are for ``log(observed/counterfactual)`` with that standard error.
    """

    n_periods: int
    observed: float
    counterfactual: float
    effect: float
    pct_change: float
    ci_low: float
    ci_high: float
    effect_low: float
    effect_high: float
    rate_ratio: float
    log_ratio_se: float
    p_value: float
    p_lower: float
    reference: str


@dataclass(frozen=True)
class SegmentedFit:
    """A fitted segmented regression (read-only).

    Attributes
    ----------
    family
        The model family.
    params, cov
        Regression coefficients and their covariance (intervention terms included;
        for the negative binomial and SARIMAX only the regression block).
    exog
        The design matrix (one row per fitted observation).
    interventions
        Names of the intervention columns (zeroed for the counterfactual).
    y, exposure
        The fitted series and its exposure (ones when none).
    target
        Boolean mask of the rows that belong to the target series (all rows for
        a single series; the treated rows in a multiple-group fit).
    post
        Boolean mask of the target's post rows (false elsewhere).
    fitted
        Fitted means on the original scale.
    resid
        Residuals used by the diagnostics (Pearson residuals for count families).
    df_resid, use_t
        Residual degrees of freedom; whether inference uses the t distribution.
    dispersion
        Pearson chi-square / df (NaN for OLS and SARIMAX).
    choices
        Every modelling choice, for the report.
    notes
        Warnings raised by the fitting routine, kept rather than hidden.
    """

    family: str
    params: pd.Series
    cov: pd.DataFrame
    exog: pd.DataFrame
    interventions: tuple[str, ...]
    y: np.ndarray
    exposure: np.ndarray
    target: np.ndarray
    post: np.ndarray
    fitted: np.ndarray
    resid: np.ndarray
    df_resid: float
    use_t: bool
    dispersion: float
    alpha: float
    choices: Mapping[str, Any]
    notes: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    # --- inference -----------------------------------------------------------
    def _quantile(self, level: float) -> float:
        if self.use_t:
            return float(stats.t.ppf(level, self.df_resid))
        return float(stats.norm.ppf(level))

    def _cdf(self, z: float) -> float:
        return float(stats.t.cdf(z, self.df_resid) if self.use_t else stats.norm.cdf(z))

    def coefficients(self) -> pd.DataFrame:
        """Coefficient table: ``term, estimate, se, stat, p_value, ci_low, ci_high``.

        For log-link families the columns ``rate_ratio, rr_low, rr_high``
        (``exp`` of the estimate and interval) are added.
        """
        se = np.sqrt(np.diag(self.cov.to_numpy()))
        est = self.params.to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = est / se
        q = self._quantile(1 - self.alpha / 2)
        p = np.array([2 * (1 - self._cdf(abs(s))) if np.isfinite(s) else np.nan for s in stat])
        frame = pd.DataFrame(
            {
                "term": self.params.index,
                "estimate": est,
                "se": se,
                "stat": stat,
                "p_value": p,
                "ci_low": est - q * se,
                "ci_high": est + q * se,
            }
        )
        if self.family in LOG_LINK:
            frame["rate_ratio"] = np.exp(frame["estimate"])
            frame["rr_low"] = np.exp(frame["ci_low"])
            frame["rr_high"] = np.exp(frame["ci_high"])
        return frame

    def lincom(self, weights: Mapping[str, float]) -> tuple[float, float, float]:
        """Linear combination of coefficients: ``(estimate, se, two-sided p)``."""
        w = np.array([weights.get(name, 0.0) for name in self.params.index], dtype=float)
        est = float(w @ self.params.to_numpy())
        se = float(np.sqrt(w @ self.cov.to_numpy() @ w))
        p = 2 * (1 - self._cdf(abs(est / se))) if se > 0 else float("nan")
        return est, se, p

    # --- predictions ---------------------------------------------------------
    def _counterfactual_exog(self) -> np.ndarray:
        x = self.exog.to_numpy().copy()
        for name in self.interventions:
            x[:, self.exog.columns.get_loc(name)] = 0.0
        return x

    def _beta(self) -> np.ndarray:
        return self.params.loc[list(self.exog.columns)].to_numpy()

    def _vbeta(self) -> np.ndarray:
        cols = list(self.exog.columns)
        return self.cov.loc[cols, cols].to_numpy()

    def counterfactual(self) -> np.ndarray:
        """Fitted means with the intervention terms set to zero."""
        xc = self._counterfactual_exog()
        if self.family in LOG_LINK:
            return self.exposure * np.exp(xc @ self._beta())
        return self.fitted - (self.exog.to_numpy() - xc) @ self._beta()

    def counterfactual_band(self) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise ``1 - alpha`` interval of the counterfactual mean."""
        xc = self._counterfactual_exog()
        var = np.einsum("ij,jk,ik->i", xc, self._vbeta(), xc)
        se = np.sqrt(np.maximum(var, 0.0))
        q = self._quantile(1 - self.alpha / 2)
        if self.family in LOG_LINK:
            eta = np.log(self.exposure) + xc @ self._beta()
            return np.exp(eta - q * se), np.exp(eta + q * se)
        cf = self.counterfactual()
        return cf - q * se, cf + q * se

    def window_effect(self, window: np.ndarray) -> WindowEffect:
        """Effect over the rows in ``window`` (boolean mask over the fitted rows).

        Notes
        -----
        With :math:`\\mu_t` the fitted mean and :math:`\\tilde\\mu_t` the counterfactual
        (intervention terms zeroed), the model-based rate ratio is
        :math:`R = \\sum_W \\mu_t / \\sum_W \\tilde\\mu_t`. Its log has gradient
        :math:`g = \\sum_W \\mu_t x_t / \\sum_W \\mu_t - \\sum_W \\tilde\\mu_t \\tilde x_t /
        \\sum_W \\tilde\\mu_t` (log link; :math:`x_t` in place of :math:`\\mu_t x_t` for
        the identity link) and variance :math:`g' V g` (delta method). The
        interval is :math:`\\exp(\\log(O/C) \\pm q\\, se) - 1` with :math:`O` the
        observed and :math:`C` the counterfactual sum. For a Poisson model whose
        level-change dummy spans exactly the window, :math:`\\sum_W \\mu_t = O`.
        """
        w = np.asarray(window, dtype=bool)
        if w.shape != self.y.shape or not w.any():
            raise ValueError("window must be a non-empty boolean mask over the fitted rows")
        x = self.exog.to_numpy()
        xc = self._counterfactual_exog()
        mu = self.fitted
        cf = self.counterfactual()
        obs = float(self.y[w].sum())
        sum_mu = float(mu[w].sum())
        sum_cf = float(cf[w].sum())
        if self.family in LOG_LINK:
            g = (mu[w] @ x[w]) / sum_mu - (cf[w] @ xc[w]) / sum_cf
        else:
            g = x[w].sum(axis=0) / sum_mu - xc[w].sum(axis=0) / sum_cf
        se = float(np.sqrt(max(g @ self._vbeta() @ g, 0.0)))
        q = self._quantile(1 - self.alpha / 2)
        nan = float("nan")
        if sum_cf <= 0 or sum_mu <= 0:
            center = nan
            reference = "undefined (non-positive counterfactual)"
        elif obs > 0:
            center = math.log(obs / sum_cf)
            reference = "log(observed/counterfactual)"
        else:
            center = math.log(sum_mu / sum_cf)
            reference = "log(fitted/counterfactual) (no observed events)"
        if np.isfinite(center) and se > 0:
            z = center / se
            p_two = 2 * (1 - self._cdf(abs(z)))
            p_lower = self._cdf(z)
            lo, hi = math.expm1(center - q * se), math.expm1(center + q * se)
        else:
            p_two = p_lower = lo = hi = nan
        pct = obs / sum_cf - 1 if sum_cf > 0 else nan
        return WindowEffect(
            n_periods=int(w.sum()),
            observed=obs,
            counterfactual=sum_cf,
            effect=obs - sum_cf,
            pct_change=pct,
            ci_low=lo,
            ci_high=hi,
            effect_low=obs - obs / (1 + lo) if np.isfinite(lo) and lo > -1 else nan,
            effect_high=obs - obs / (1 + hi) if np.isfinite(hi) and hi > -1 else nan,
            rate_ratio=sum_mu / sum_cf if sum_cf > 0 else nan,
            log_ratio_se=se,
            p_value=p_two,
            p_lower=p_lower,
            reference=reference,
        )

    # --- diagnostics ---------------------------------------------------------
    def diagnostics(self, *, lags: int | None = None) -> dict[str, float]:
        """Residual and fit diagnostics of the target series.

        Ljung-Box and Breusch-Godfrey tests at ``lags`` (default
        ``min(period, n // 4)``, at least 1) on the target's residuals (Pearson
        residuals for count families), Durbin-Watson, dispersion (Pearson
        chi-square / df), and the pre-period fit: RMSE, MAPE (periods with a
        zero count skipped) and RMSE relative to the pre-period mean.
        """
        r = self.resid[self.target]
        n = r.size
        period = int(self.choices.get("period_length", 12))
        lags = int(lags if lags is not None else max(1, min(period, n // 4)))
        out: dict[str, float] = {"diag_lags": float(lags)}
        try:
            lb = acorr_ljungbox(r, lags=[lags])
            out["ljung_box_stat"] = float(lb["lb_stat"].iloc[0])
            out["ljung_box_p"] = float(lb["lb_pvalue"].iloc[0])
        except (ValueError, np.linalg.LinAlgError):
            out["ljung_box_stat"] = out["ljung_box_p"] = float("nan")
        bg_stat, bg_p = _breusch_godfrey(r, self.exog.to_numpy()[self.target], lags)
        out["breusch_godfrey_stat"] = bg_stat
        out["breusch_godfrey_p"] = bg_p
        out["durbin_watson"] = float(durbin_watson(r))
        out["dispersion"] = float(self.dispersion)
        pre = self.target & ~self.post
        y_pre, f_pre = self.y[pre], self.fitted[pre]
        err = y_pre - f_pre
        out["pre_rmse"] = float(np.sqrt(np.mean(err**2)))
        nz = y_pre != 0
        out["pre_mape"] = float(np.mean(np.abs(err[nz] / y_pre[nz]))) if nz.any() else float("nan")
        mean_pre = float(np.mean(y_pre))
        out["pre_mean"] = mean_pre
        out["pre_rmse_ratio"] = out["pre_rmse"] / mean_pre if mean_pre > 0 else float("nan")
        return out


def _breusch_godfrey(resid: np.ndarray, exog: np.ndarray, lags: int) -> tuple[float, float]:
    """LM test of serial correlation: ``n R^2`` of resid on exog and its lags (chi2)."""
    n = resid.size
    if n <= exog.shape[1] + lags + 1:
        return float("nan"), float("nan")
    lagged = np.column_stack(
        [np.concatenate([np.zeros(j), resid[:-j]]) for j in range(1, lags + 1)]
    )
    aux = np.column_stack([exog, lagged])
    beta, *_ = np.linalg.lstsq(aux, resid, rcond=None)
    e = resid - aux @ beta
    centered = resid - resid.mean()
    r2 = 1 - (e @ e) / (centered @ centered) if centered @ centered > 0 else 0.0
    stat = float(n * r2)
    return stat, float(stats.chi2.sf(stat, lags))


# ---------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------
def _fit_model(
    y: np.ndarray,
    exog: pd.DataFrame,
    *,
    family: str,
    exposure: np.ndarray | None,
    hac_lags: int | None,
    small_sample: bool,
    hac_groups: np.ndarray | None,
    count_cov: str,
    units: np.ndarray | None = None,
    sarimax_order: tuple[int, int, int],
) -> tuple[pd.Series, pd.DataFrame, np.ndarray, np.ndarray, float, bool, float, dict, list[str]]:
    """Fit one model; returns params, cov, fitted, resid, df_resid, use_t, dispersion, extra, notes."""
    n, k = exog.shape
    notes: list[str] = []
    extra: dict[str, Any] = {}
    expo = np.ones(n) if exposure is None else exposure
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if family == "ols":
            lags = default_hac_lags(n) if hac_lags is None else int(hac_lags)
            if hac_groups is None:
                res = sm.OLS(y, exog).fit(
                    cov_type="HAC",
                    cov_kwds={"maxlags": lags, "use_correction": small_sample},
                    use_t=True,
                )
            else:
                res = sm.OLS(y, exog).fit(
                    cov_type="hac-panel",
                    cov_kwds={
                        "groups": hac_groups,
                        "maxlags": lags,
                        "use_correction": "hac" if small_sample else False,
                    },
                    use_t=True,
                )
            params, cov = res.params, res.cov_params()
            fitted, resid = res.fittedvalues.to_numpy(), res.resid.to_numpy()
            df_resid, use_t, disp = float(res.df_resid), True, float("nan")
            extra["hac_lags"] = lags
        elif family in ("poisson", "quasipoisson"):
            glm = sm.GLM(y, exog, family=sm.families.Poisson(), exposure=expo)
            if count_cov == "hac":
                lags = default_hac_lags(n) if hac_lags is None else int(hac_lags)
                res = glm.fit(cov_type="HAC", cov_kwds={"maxlags": lags})
                extra["hac_lags"] = lags
            else:
                res = glm.fit(scale="X2" if family == "quasipoisson" else 1.0)
            params, cov = res.params, res.cov_params()
            fitted = res.fittedvalues.to_numpy()
            resid = np.asarray(res.resid_pearson)
            df_resid, use_t = float(res.df_resid), False
            disp = float(res.pearson_chi2 / res.df_resid)
            if count_cov == "ar1":
                scale = disp if family == "quasipoisson" else 1.0
                cov, rho = _ar1_sandwich(exog.to_numpy(), fitted, resid, scale, units)
                extra["ar1_rho"] = rho
        elif family == "negbin":
            model = sm.NegativeBinomial(y, exog, loglike_method="nb2", exposure=expo)
            res = model.fit(disp=0, maxiter=300)
            if not res.mle_retvals.get("converged", True):
                res = model.fit(disp=0, method="bfgs", maxiter=1000)
            cols = list(exog.columns)
            alpha_nb = float(res.params["alpha"])
            try:
                cov_all = res.cov_params()
                ok = bool(np.isfinite(cov_all.to_numpy()).all()) and alpha_nb > 1e-6
            except (ValueError, np.linalg.LinAlgError):
                ok = False
            if ok:
                params = res.params.loc[cols]
                cov = cov_all.loc[cols, cols]
                extra["nb_alpha_se"] = float(res.bse["alpha"])
            else:
                # alpha at its boundary (no over-dispersion): the NB MLE is the Poisson MLE
                pois = sm.GLM(y, exog, family=sm.families.Poisson(), exposure=expo).fit()
                params, cov = pois.params, pois.cov_params()
                alpha_nb = 0.0
                extra["nb_alpha_se"] = float("nan")
                notes.append(
                    "negative binomial alpha at its boundary (no over-dispersion): "
                    "Poisson estimates and covariance used"
                )
            fitted = expo * np.exp(exog.to_numpy() @ np.asarray(params, dtype=float))
            var = fitted + alpha_nb * fitted**2
            resid = (y - fitted) / np.sqrt(var)
            df_resid, use_t = float(n - k), False
            disp = float(np.sum(resid**2) / (n - k - 1))
            extra["nb_alpha"] = alpha_nb
            if not res.mle_retvals.get("converged", True):
                notes.append("negative binomial fit did not converge")
        elif family == "sarimax":
            # regression with ARMA errors: y_t = x_t'b + u_t, phi(L) u_t = theta(L) e_t
            model = sm.tsa.SARIMAX(y, exog=exog.to_numpy(), order=sarimax_order, trend="n")
            res = model.fit(disp=False, maxiter=200)
            raw = np.asarray(res.params)
            params = pd.Series(raw[:k], index=list(exog.columns))
            cov = np.asarray(res.cov_params())[:k, :k]
            fitted = np.asarray(res.fittedvalues)
            resid = np.asarray(res.resid)
            df_resid, use_t, disp = float(n - len(raw)), False, float("nan")
            extra["arma_params"] = {
                str(nm): float(v) for nm, v in zip(res.param_names[k:], raw[k:], strict=True)
            }
            extra["aic"] = float(res.aic)
        else:  # pragma: no cover - checked on entry
            raise ValueError(family)
    for w in caught:
        notes.append(f"{w.category.__name__}: {w.message}")
    params = pd.Series(np.asarray(params, dtype=float), index=list(exog.columns))
    cov = pd.DataFrame(np.asarray(cov, dtype=float), index=params.index, columns=params.index)
    return params, cov, fitted, resid, df_resid, use_t, disp, extra, notes


AR1_MATCH_LAGS = 1
"""Residual autocorrelations (lags 1..m, summed) matched when estimating the AR(1) rho."""


def _ar1_sandwich(
    x: np.ndarray,
    mu: np.ndarray,
    pearson: np.ndarray,
    scale: float,
    units: np.ndarray | None,
    match_lags: int = AR1_MATCH_LAGS,
) -> tuple[np.ndarray, float]:
    """Quasi-likelihood covariance with an AR(1) working correlation (Zeger 1988).

    Notes
    -----
    With :math:`D = \\mathrm{diag}(\\mu)`, :math:`B = X' D X` and :math:`R_{ij} =
    \\hat\\rho^{|i-j|}` within a unit (0 across units), the covariance is
    :math:`\\phi B^{-1} X' D^{1/2} R D^{1/2} X B^{-1}`. :math:`\\hat\\rho` solves
    :math:`r_1 = \\mathrm{tr}(L M R(\\rho) M) / \\mathrm{tr}(M R(\\rho) M)`, where
    :math:`r_1` is the lag-1 autocorrelation of the Pearson residuals, :math:`M` the
    weighted residual projection and :math:`L` the lag operator: the expected
    residual autocorrelation under the working model, which removes the downward
    bias of residual autocorrelations in short regressions. It is kept in
    :math:`[0, 0.9]` (so the covariance is never below the quasi-Poisson one).
    """
    n, k = x.shape
    units = np.zeros(n, dtype=int) if units is None else np.asarray(units)
    xw = x * np.sqrt(mu)[:, None]
    bread = np.linalg.inv(xw.T @ xw)
    resid_maker = np.eye(n) - xw @ bread @ xw.T
    dist = np.zeros((n, n))
    for u in np.unique(units):
        members = np.flatnonzero(units == u)
        pos = np.arange(members.size)
        dist[np.ix_(members, members)] = np.abs(np.subtract.outer(pos, pos))
    block = np.equal.outer(units, units)
    # sum of the lag operators L^1..L^m within a unit: r'(sum L^j)r = sum_j sum_t r_t r_{t-j}
    signed = np.subtract.outer(np.arange(n), np.arange(n))
    lag_op = (block & (signed >= 1) & (signed <= match_lags)).astype(float)
    den = float(pearson @ pearson)
    r1 = float(pearson @ lag_op @ pearson) / den if den > 0 else 0.0

    def corr_of(rho: float) -> np.ndarray:
        return np.where(block, rho**dist, 0.0)

    def expected_r1(rho: float) -> float:
        # E[r'Lr] / E[r'r] for residuals r = M e, Cov(e) = R(rho)
        cov_r = resid_maker @ corr_of(rho) @ resid_maker
        return float(np.trace(lag_op @ cov_r) / np.trace(cov_r))

    low, high = 0.0, 0.9
    if r1 <= expected_r1(low):
        rho = low
    elif r1 >= expected_r1(high):
        rho = high
    else:
        for _ in range(30):
            mid = 0.5 * (low + high)
            if expected_r1(mid) < r1:
                low = mid
            else:
                high = mid
        rho = 0.5 * (low + high)
    corr = corr_of(rho)
    meat = xw.T @ corr @ xw
    return scale * bread @ meat @ bread, rho


def _validate_core(
    family: str,
    seasonality: str,
    alpha: float,
    exposure: Any,
    count_cov: str,
) -> None:
    check_choice("family", family, FAMILIES)
    check_choice("seasonality", seasonality, SEASONALITIES)
    check_choice("count_cov", count_cov, ("model", "hac", "ar1"))
    if count_cov != "model" and family not in ("poisson", "quasipoisson"):
        raise ValueError(
            f"count_cov={count_cov!r} is available for the poisson and quasipoisson families only"
        )
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    if exposure is not None and family not in COUNT_FAMILIES:
        raise ValueError(
            "exposure is only used by the count families (poisson, quasipoisson, negbin)"
        )


def fit_segmented(
    y: Sequence[float] | np.ndarray,
    *,
    post: Sequence[bool] | np.ndarray,
    time: Sequence[float] | np.ndarray | None = None,
    family: Family = "quasipoisson",
    seasonality: Seasonality = "none",
    n_harmonics: int = 2,
    period_length: int = 12,
    season: Sequence[float] | np.ndarray | None = None,
    exposure: Sequence[float] | np.ndarray | None = None,
    slope_change: bool = True,
    ramp: int = 0,
    hac_lags: int | None = None,
    small_sample: bool = False,
    count_cov: Literal["model", "hac", "ar1"] = "model",
    sarimax_order: tuple[int, int, int] = (1, 0, 0),
    t_inference: bool | None = None,
    alpha: float = 0.05,
) -> SegmentedFit:
    """Single-series segmented regression.

    Parameters
    ----------
    y
        The series (counts for the count families).
    post
        Boolean mask, true for post-intervention periods.
    time
        Time in periods (default ``0, 1, ...``). The level change is measured at
        the first post period.
    family
        ``"ols"`` (Newey-West HAC SEs, t inference), ``"poisson"``,
        ``"quasipoisson"`` (Poisson GLM, scale = Pearson chi2/df), ``"negbin"``
        (NB2, alpha by maximum likelihood) or ``"sarimax"`` (regression with ARMA
        errors of order ``sarimax_order``).
    seasonality, n_harmonics, period_length, season
        See :func:`segmented_design`.
    exposure
        Population or other exposure for count families (its log is the offset).
    slope_change, ramp
        See :func:`segmented_design`.
    hac_lags
        Newey-West lags (OLS, or count families with ``count_cov="hac"``);
        default :func:`default_hac_lags`.
    small_sample
        OLS: multiply the HAC covariance by ``N/(N-k)`` (Stata ``newey``).
    count_cov
        Count families: ``"model"`` (likelihood / quasi-likelihood covariance),
        ``"hac"`` (Newey-West sandwich) or, for Poisson / quasi-Poisson, ``"ar1"``
        (quasi-likelihood sandwich with an AR(1) working correlation estimated
        from the Pearson residuals; see :func:`_ar1_sandwich`).
    t_inference
        Use the t distribution with the residual df for intervals and tests;
        default: true for OLS, false otherwise (normal).
    alpha
        1 - confidence level.

    Returns
    -------
    SegmentedFit

    Notes
    -----
    The model is

    .. math::
        g(E[y_t]) = \\log e_t + \\beta_0 + \\beta_1 t + \\beta_2 X_t + \\beta_3 X_t (t - t_0)
        + \\sum_k [\\gamma_k \\sin(2\\pi k s_t/P) + \\delta_k \\cos(2\\pi k s_t/P)]

    with :math:`X_t` the post indicator, :math:`t_0` the first post time, :math:`g` the
    log link for counts (identity for OLS / SARIMAX, no exposure). :math:`\\beta_2` is the
    level change and :math:`\\beta_3` the slope change. OLS uses the Newey-West covariance
    :math:`(X'X)^{-1} \\hat S (X'X)^{-1}` with Bartlett weights :math:`1 - l/(L+1)`.
    """
    _validate_core(family, seasonality, alpha, exposure, count_cov)
    yv = np.asarray(y, dtype=float)
    postv = np.asarray(post, dtype=bool)
    if yv.ndim != 1 or yv.shape != postv.shape:
        raise ValueError("y and post must be 1-d arrays of the same length")
    if not np.isfinite(yv).all():
        raise DesignError("the series has missing or infinite values")
    if family in COUNT_FAMILIES and (yv < 0).any():
        raise DesignError(f"family {family!r} needs non-negative counts")
    timev = np.arange(yv.size, dtype=float) if time is None else np.asarray(time, dtype=float)
    exog, interventions = segmented_design(
        timev,
        postv,
        seasonality=seasonality,
        n_harmonics=n_harmonics,
        period_length=period_length,
        season=None if season is None else np.asarray(season, dtype=float),
        slope_change=slope_change,
        ramp=ramp,
    )
    _check_size(yv.size, exog.shape[1], int((~postv).sum()), family)
    expo = None if exposure is None else np.asarray(exposure, dtype=float)
    if expo is not None and (expo.shape != yv.shape or (expo <= 0).any()):
        raise ValueError("exposure must be positive and as long as y")
    params, cov, fitted, resid, df, use_t, disp, extra, notes = _fit_model(
        yv,
        exog,
        family=family,
        exposure=expo,
        hac_lags=hac_lags,
        small_sample=small_sample,
        hac_groups=None,
        count_cov=count_cov,
        sarimax_order=sarimax_order,
    )
    choices = _choices(
        family,
        seasonality,
        n_harmonics,
        period_length,
        slope_change,
        ramp,
        small_sample,
        count_cov,
        sarimax_order,
        expo is not None,
        alpha,
        extra,
    )
    return SegmentedFit(
        family=family,
        params=params,
        cov=cov,
        exog=exog,
        interventions=tuple(interventions),
        y=yv,
        exposure=np.ones_like(yv) if expo is None else expo,
        target=np.ones(yv.size, dtype=bool),
        post=postv.copy(),
        fitted=fitted,
        resid=resid,
        df_resid=df,
        use_t=use_t if t_inference is None else bool(t_inference),
        dispersion=disp,
        alpha=alpha,
        choices=MappingProxyType(choices),
        notes=tuple(notes),
        extra=MappingProxyType(extra),
    )


def _check_size(n: int, k: int, n_pre: int, family: str) -> None:
    if n <= k + 2:
        raise DesignError(
            f"{n} periods cannot support a model with {k} terms; need at least {k + 3}"
        )
    if n_pre < 3:
        raise DesignError(f"only {n_pre} pre-intervention periods; ITS needs at least 3")
    if family == "sarimax" and n < 2 * k + 10:
        raise DesignError(f"SARIMAX needs at least {2 * k + 10} periods here; have {n}")


def _choices(
    family: str,
    seasonality: str,
    n_harmonics: int,
    period_length: int,
    slope_change: bool,
    ramp: int,
    small_sample: bool,
    count_cov: str,
    sarimax_order: tuple[int, int, int],
    has_exposure: bool,
    alpha: float,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    choices: dict[str, Any] = {
        "family": family,
        "seasonality": seasonality,
        "period_length": period_length,
        "slope_change": slope_change,
        "ramp": ramp,
        "alpha": alpha,
        "exposure": has_exposure,
    }
    if seasonality == "fourier":
        choices["n_harmonics"] = n_harmonics
    if family == "ols":
        choices["hac_lags"] = extra.get("hac_lags")
        choices["small_sample"] = small_sample
    if family in ("poisson", "quasipoisson"):
        choices["count_cov"] = count_cov
        if count_cov == "hac":
            choices["hac_lags"] = extra.get("hac_lags")
        if count_cov == "ar1":
            choices["ar1_rho"] = extra.get("ar1_rho")
    if family == "sarimax":
        choices["sarimax_order"] = tuple(sarimax_order)
    return choices


def fit_multigroup(
    y: Sequence[float] | np.ndarray,
    controls: np.ndarray | Sequence[Sequence[float]],
    *,
    post: Sequence[bool] | np.ndarray,
    time: Sequence[float] | np.ndarray | None = None,
    family: Family = "ols",
    seasonality: Seasonality = "none",
    n_harmonics: int = 2,
    period_length: int = 12,
    season: Sequence[float] | np.ndarray | None = None,
    slope_change: bool = True,
    hac_lags: int | None = None,
    small_sample: bool = False,
    hac_panel: HacPanel = "within",
    target_index: int = 0,
    count_cov: Literal["model", "hac", "ar1"] = "model",
    t_inference: bool | None = None,
    alpha: float = 0.05,
) -> SegmentedFit:
    """Linden's multiple-group (controlled) ITS: the target stacked over comparison series.

    Parameters
    ----------
    y
        Target series, length T.
    controls
        Comparison series, shape ``(n_controls, T)`` (one row per unit; pass one
        row for a single comparison such as the donor mean).
    hac_panel
        OLS only. ``"within"``: Newey-West autocovariances within each unit
        (``cov_type="hac-panel"``); ``"stacked"``: the stacked rows treated as one
        time series, as Stata's ``newey ..., force`` does in Linden's ``itsa``.
    target_index
        Position of the target among the stacked units (0 = first). It matters
        only for ``hac_panel="stacked"``, where rows of neighbouring units enter
        the lag-1 autocovariances; Stata stacks units in panel-id order.
    family, seasonality, n_harmonics, period_length, season, slope_change,
    hac_lags, small_sample, count_cov, t_inference, alpha
        As in :func:`fit_segmented` (``"sarimax"`` is not available here).

    Returns
    -------
    SegmentedFit
        Intervention terms ``z_level`` (difference in level change) and
        ``z_slope`` (difference in slope change); the window effects are for the
        target rows against a counterfactual that follows the comparison's change.

    Notes
    -----
    .. math::
        g(E[y_{it}]) = \\beta_0 + \\beta_1 t + \\beta_2 Z_i + \\beta_3 Z_i t + \\beta_4 X_t
        + \\beta_5 X_t (t - t_0) + \\beta_6 Z_i X_t + \\beta_7 Z_i X_t (t - t_0)
        [+ \\text{common seasonal terms}]

    with :math:`Z_i = 1` for the target. :math:`\\beta_6` and :math:`\\beta_7` are the
    differences in level and slope change (Linden 2015, Stata Journal 15:480-500).
    """
    _validate_core(family, seasonality, alpha, None, count_cov)
    check_choice("hac_panel", hac_panel, get_args(HacPanel))
    if family == "sarimax":
        raise ValueError("family 'sarimax' is not available for the multiple-group ITS")
    yv = np.asarray(y, dtype=float)
    ctrl = np.atleast_2d(np.asarray(controls, dtype=float))
    postv = np.asarray(post, dtype=bool)
    T = yv.size
    if ctrl.shape[1] != T or postv.shape != (T,):
        raise ValueError("controls must have shape (n_controls, len(y)) and post len(y)")
    if not (np.isfinite(yv).all() and np.isfinite(ctrl).all()):
        raise DesignError("the target or comparison series has missing values")
    timev = np.arange(T, dtype=float) if time is None else np.asarray(time, dtype=float)
    base, _ = segmented_design(
        timev,
        postv,
        seasonality=seasonality,
        n_harmonics=n_harmonics,
        period_length=period_length,
        season=None if season is None else np.asarray(season, dtype=float),
        slope_change=slope_change,
    )
    n_units = 1 + ctrl.shape[0]
    stacked = pd.concat([base] * n_units, ignore_index=True)
    if not 0 <= target_index < n_units:
        raise ValueError(f"target_index must be between 0 and {n_units - 1}")
    unit_is_target = np.zeros(n_units)
    unit_is_target[target_index] = 1.0
    z = np.repeat(unit_is_target, T)
    cols: dict[str, np.ndarray] = {
        "const": stacked["const"].to_numpy(),
        "time": stacked["time"].to_numpy(),
        "z": z,
        "z_time": z * stacked["time"].to_numpy(),
        "level": stacked["level"].to_numpy(),
    }
    interventions = ["z_level"]
    if slope_change:
        cols["slope"] = stacked["slope"].to_numpy()
    cols["z_level"] = z * stacked["level"].to_numpy()
    if slope_change:
        cols["z_slope"] = z * stacked["slope"].to_numpy()
        interventions.append("z_slope")
    for name in base.columns:
        if name not in ("const", "time", "level", "slope"):
            cols[name] = stacked[name].to_numpy()
    exog = pd.DataFrame(cols)
    units = [*ctrl[:target_index], yv, *ctrl[target_index:]]
    yy = np.concatenate(units)
    _check_size(yy.size, exog.shape[1], int((~postv).sum()), family)
    groups = np.repeat(np.arange(n_units), T) if hac_panel == "within" else None
    params, cov, fitted, resid, df, use_t, disp, extra, notes = _fit_model(
        yy,
        exog,
        family=family,
        exposure=None,
        hac_lags=hac_lags,
        small_sample=small_sample,
        hac_groups=groups if family == "ols" else None,
        units=np.repeat(np.arange(n_units), T),
        count_cov=count_cov,
        sarimax_order=(1, 0, 0),
    )
    choices = _choices(
        family,
        seasonality,
        n_harmonics,
        period_length,
        slope_change,
        0,
        small_sample,
        count_cov,
        (1, 0, 0),
        False,
        alpha,
        extra,
    )
    choices["comparison_units"] = ctrl.shape[0]
    if family == "ols":
        choices["hac_panel"] = hac_panel
    target = z.astype(bool)
    return SegmentedFit(
        family=family,
        params=params,
        cov=cov,
        exog=exog,
        interventions=tuple(interventions),
        y=yy,
        exposure=np.ones_like(yy),
        target=target,
        post=target & np.tile(postv, n_units),
        fitted=fitted,
        resid=resid,
        df_resid=df,
        use_t=use_t if t_inference is None else bool(t_inference),
        dispersion=disp,
        alpha=alpha,
        choices=MappingProxyType(choices),
        notes=tuple(notes),
        extra=MappingProxyType(extra),
    )


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
        return fit_multigroup(y, controls, **common)


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

    For each fake start ``j`` the model is re-fitted to the first ``j + window``
    pre periods with ``post = rows >= j``, and the effect over those ``window``
    fake post periods is recorded. Returns a frame with ``row`` (position of
    the fake start in the fitted pre rows), ``pct_change``, ``log_ratio`` and
    ``p_value``; empty when the pre-period is too short.
    """
    pre = ~post
    y_pre, t_pre, s_pre = y[pre], time[pre], season[pre]
    c_pre = None if controls is None else controls[:, pre]
    n_pre = y_pre.size
    n_terms = 2 + (2 * spec.n_harmonics if spec.seasonality == "fourier" else 0)
    n_terms += spec.period_length - 1 if spec.seasonality == "dummies" else 0
    min_train = max(8, n_terms + 4)
    starts = np.arange(min_train, n_pre - window + 1)
    rows: list[dict[str, float]] = []
    if window < 2 or starts.size == 0:
        return pd.DataFrame(columns=["row", "pct_change", "log_ratio", "p_value"])
    if starts.size > max_placebos:
        pick = np.unique(np.round(np.linspace(0, starts.size - 1, max_placebos)).astype(int))
        starts = starts[pick]
    for j in starts:
        end = j + window
        fake_post = np.arange(end) >= j
        try:
            f = spec.fit(
                y_pre[:end],
                fake_post,
                t_pre[:end],
                s_pre[:end],
                None if c_pre is None else c_pre[:, :end],
            )
            eff = f.window_effect(f.post)
        except (DesignError, ValueError, np.linalg.LinAlgError):
            continue
        if not np.isfinite(eff.pct_change) or eff.pct_change <= -1:
            continue
        rows.append(
            {
                "row": int(j),
                "pct_change": eff.pct_change,
                "log_ratio": math.log1p(eff.pct_change),
                "p_value": eff.p_value,
            }
        )
    return pd.DataFrame(rows, columns=["row", "pct_change", "log_ratio", "p_value"])


# ---------------------------------------------------------------------------
# site-level design
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OutcomeITS:
    """The ITS of one outcome of one site (read-only; see :class:`ITSResults`)."""

    outcome: str
    fit: SegmentedFit
    periods: pd.PeriodIndex
    roles: tuple[str, ...]
    used: np.ndarray
    observed: np.ndarray
    comparison: np.ndarray | None
    windows: Mapping[str, WindowEffect]
    placebo: pd.DataFrame
    placebo_summary: Mapping[str, float]
    choices: Mapping[str, Any]


@dataclass(frozen=True)
class ITSResults:
    """Results of :class:`ITS` for one site (read-only).

    Attributes
    ----------
    site_id, design
        The site and the design name (``"its"`` or ``"cits"``).
    alpha, last_k
        1 - confidence level; length of the ``last{k}`` window.
    outcomes
        Fitted outcomes, in order.
    by_outcome
        Outcome -> :class:`OutcomeITS`.
    """

    site_id: str
    design: str
    alpha: float
    last_k: int
    outcomes: tuple[str, ...]
    by_outcome: Mapping[str, OutcomeITS]

    @property
    def windows(self) -> tuple[str, str]:
        return ("post", f"last{self.last_k}")

    def _get(self, outcome: str) -> OutcomeITS:
        try:
            return self.by_outcome[outcome]
        except KeyError:
            raise KeyError(
                f"outcome {outcome!r} not fitted; fitted: {', '.join(self.outcomes)}"
            ) from None

    def method(self, outcome: str) -> str:
        """The ``method`` text of an outcome's effects rows."""
        o = self._get(outcome)
        label = FAMILY_LABEL[o.fit.family]
        conf = f"{100 * (1 - self.alpha):g}%"
        against = " vs donor mean (Linden CITS)" if self.design == "cits" else ""
        cov = {"ar1": " AR(1)-sandwich", "hac": " Newey-West"}.get(
            str(o.choices.get("count_cov", "model")), ""
        )
        dist = "t" if o.fit.use_t else "normal"
        return (
            f"{label}{against}{cov} delta {conf}, two-sided ({dist}); "
            "test of log(observed/counterfactual) over the window"
        )

    def effects(self) -> pd.DataFrame:
        """Tidy effects: one row per outcome and window (``post``, ``last{k}``).

        ``p_value`` is the two-sided test of the window's log ratio
        ``log(observed/counterfactual)`` (delta-method SE); the interval bounds
        the percent change (fractions).
        """
        rows = []
        for outcome in self.outcomes:
            windows = self.by_outcome[outcome].windows
            ordered = {w: windows[w] for w in self.windows}
            rows += window_rows(self.site_id, outcome, self.design, ordered, self.method(outcome))
        return effects_frame(rows)

    def window_effect(self, outcome: str, window: str) -> WindowEffect:
        """The full :class:`WindowEffect` (rate ratio, cumulative effect interval...)."""
        o = self._get(outcome)
        if window not in o.windows:
            raise KeyError(f"window {window!r}; available: {', '.join(o.windows)}")
        return o.windows[window]

    def p_value_lower(self, outcome: str, window: str = "post") -> float:
        """One-sided p-value of a reduction (H1: observed below counterfactual).

        Same statistic as ``effects()['p_value']``: ``Phi(log(O/C)/se)`` (``t``
        distribution for OLS).
        """
        return self.window_effect(outcome, window).p_lower

    def coefficients(self, outcome: str) -> pd.DataFrame:
        """Coefficient table of an outcome's model (see :meth:`SegmentedFit.coefficients`)."""
        return self._get(outcome).fit.coefficients()

    def choices(self, outcome: str) -> dict[str, Any]:
        """Every modelling choice for an outcome, with the reasons for data-driven ones."""
        return dict(self._get(outcome).choices)

    def placebo(self, outcome: str) -> pd.DataFrame:
        """Placebo-in-time estimates: ``period, pct_change, log_ratio, p_value``."""
        return self._get(outcome).placebo.copy()

    def placebo_summary(self, outcome: str) -> dict[str, float]:
        """Real estimate over the placebo window length, its rank and placebo p-values."""
        return dict(self._get(outcome).placebo_summary)

    def diagnostics(self) -> pd.DataFrame:
        """One row per outcome: model, residual tests, pre-period fit, placebo rank."""
        rows = []
        for outcome in self.outcomes:
            o = self.by_outcome[outcome]
            coefs = o.fit.coefficients().set_index("term")
            level = "z_level" if self.design == "cits" else "level"
            row: dict[str, Any] = {
                "site": self.site_id,
                "outcome": outcome,
                "design": self.design,
                "family": o.fit.family,
                "seasonality": o.choices["seasonality"],
                "n_pre": int(o.choices["n_pre"]),
                "n_post": int(o.choices["n_post"]),
                "level_change": float(coefs.loc[level, "estimate"]),
                "level_change_se": float(coefs.loc[level, "se"]),
                "level_change_p": float(coefs.loc[level, "p_value"]),
            }
            row.update(o.fit.diagnostics())
            for window in self.windows:
                row[f"p_lower_{window}"] = o.windows[window].p_lower
                row[f"rate_ratio_{window}"] = o.windows[window].rate_ratio
            row.update({f"placebo_{k}": v for k, v in o.placebo_summary.items()})
            # rank-based two-sided placebo p-value (NaN when no placebo could be fitted)
            row["placebo_rank_p"] = float(o.placebo_summary.get("p_two_sided", float("nan")))
            row["notes"] = "; ".join(o.fit.notes)
            rows.append(row)
        return pd.DataFrame(rows)

    def get_plot_data(self, outcome: str) -> pd.DataFrame:
        """Series behind :func:`dmi_eval.plots.its.plot_its`.

        Columns ``period, observed, fitted, counterfactual, cf_low, cf_high, role``
        (plus ``comparison``, the donor mean, for ``"cits"``); the excluded
        transition period has an observed value but no fitted ones.
        """
        o = self._get(outcome)
        n = len(o.periods)
        fitted = np.full(n, np.nan)
        cf = np.full(n, np.nan)
        lo = np.full(n, np.nan)
        hi = np.full(n, np.nan)
        target = o.fit.target
        cf_all = o.fit.counterfactual()
        band = o.fit.counterfactual_band()
        fitted[o.used] = o.fit.fitted[target]
        cf[o.used] = cf_all[target]
        lo[o.used] = band[0][target]
        hi[o.used] = band[1][target]
        frame = pd.DataFrame(
            {
                "period": o.periods,
                "observed": o.observed.astype(float),
                "fitted": fitted,
                "counterfactual": cf,
                "cf_low": lo,
                "cf_high": hi,
                "role": list(o.roles),
            }
        )
        if o.comparison is not None:
            frame["comparison"] = o.comparison
        return frame

    def call_in_period(self, outcome: str) -> pd.Period:
        """First period that is not pre (the transition, or the first post period)."""
        o = self._get(outcome)
        idx = next(i for i, r in enumerate(o.roles) if r != "pre")
        return o.periods[idx]

    def describe(self) -> str:
        """Plain-text account of every choice, one paragraph per outcome."""
        lines = []
        for outcome in self.outcomes:
            c = self.by_outcome[outcome].choices
            parts = [
                f"{outcome}: {FAMILY_LABEL[c['family']]} segmented regression"
                + (
                    " against the donor-area mean (Linden's controlled ITS)"
                    if self.design == "cits"
                    else ""
                ),
                f"family {c['family']} ({c['family_reason']})",
                f"seasonality {c['seasonality']} ({c['seasonality_reason']})",
                "level change" + (" and slope change" if c["slope_change"] else ""),
                f"{c['n_pre']} pre and {c['n_post']} post periods, "
                f"{c['n_transition']} transition period(s) excluded",
            ]
            if c.get("count_cov") == "ar1":
                parts.append(
                    "covariance: quasi-likelihood sandwich with AR(1) working correlation "
                    f"(estimated rho {c['ar1_rho']:.2f})"
                )
            if "hac_lags" in c and c["hac_lags"] is not None:
                parts.append(f"Newey-West lags {c['hac_lags']} ({c.get('hac_reason', 'given')})")
            parts.append(
                f"windows: whole post period and last {c['last_k_used']} periods; "
                f"{100 * (1 - self.alpha):g}% intervals by the delta method on "
                "log(observed/counterfactual)"
            )
            parts.append(f"{c['n_placebos']} placebo-in-time dates")
            lines.append("; ".join(parts) + ".")
        return "\n".join(lines)


def _season_positions(periods: pd.PeriodIndex, frequency: str) -> np.ndarray:
    if frequency == "month":
        return np.asarray(periods.month, dtype=float) - 1
    if frequency == "quarter":
        return np.asarray(periods.quarter, dtype=float) - 1
    return np.mod(np.asarray(periods.week, dtype=float) - 1, 52)


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
        ``"none"``: single-series ITS (design ``"its"``); ``"donor_mean"``: Linden's
        controlled ITS against the mean count of the donor areas (design ``"cits"``).
    last_k
        Length of the ``last{k}`` window (capped at the number of post periods).
    alpha
        1 - confidence level of the intervals.
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
        alpha: float = 0.05,
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
        if comparison == "donor_mean" and family == "sarimax":
            raise ValueError("family 'sarimax' is not available with comparison='donor_mean'")
        if not isinstance(last_k, int) or last_k < 1:
            raise ValueError(f"last_k must be a positive integer; got {last_k!r}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1); got {alpha}")
        if not isinstance(max_placebos, int) or max_placebos < 0:
            raise ValueError("max_placebos must be a non-negative integer")
        chosen = tuple(site_data.outcomes if outcomes is None else outcomes)
        unknown = [o for o in chosen if o not in site_data.outcomes]
        if unknown or not chosen:
            raise ValueError(
                f"outcomes {unknown or chosen!r} not among the site's outcomes "
                f"({', '.join(site_data.outcomes)})"
            )
        self.site_id = site_data.site_id
        self.frequency = site_data.frequency
        self.periods = site_data.periods.copy()
        self.roles = tuple(site_data.roles.astype(str))
        self.used = site_data.used_mask.copy()
        self.post = site_data.post_mask.copy()
        self.outcomes = chosen
        self.series = {o: site_data.treated_series(o).to_numpy().copy() for o in chosen}
        self.comparison_series: dict[str, np.ndarray] | None = None
        if comparison == "donor_mean":
            self.comparison_series = {
                o: site_data.donor_matrix(o).to_numpy(dtype=float).mean(axis=0) for o in chosen
            }
        self.family = family
        self.seasonality = seasonality
        self.comparison = comparison
        self.last_k = last_k
        self.alpha = alpha
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
            design="cits" if self.comparison == "donor_mean" else "its",
            alpha=self.alpha,
            last_k=self.last_k,
            outcomes=self.outcomes,
            by_outcome=MappingProxyType(by_outcome),
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
            slope_change=self.slope_change,
            ramp=self.ramp,
            hac_lags=self.hac_lags,
            small_sample=self.small_sample,
            count_cov=count_cov,
            sarimax_order=self.sarimax_order,  # type: ignore[arg-type]
            t_inference=t_inference,
            alpha=self.alpha,
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
            summary = {
                "n": float(n_pl),
                "window": float(L),
                "real_pct_change": real.pct_change,
                "rank": float(1 + np.sum(np.abs(logs) >= abs(real_log))),
                "p_two_sided": float((1 + np.sum(np.abs(logs) >= abs(real_log))) / (n_pl + 1)),
                "p_lower": float((1 + np.sum(logs <= real_log)) / (n_pl + 1)),
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
