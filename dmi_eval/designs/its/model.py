"""ITS model: the segmented design matrix and the read-only fitted model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.diagnostic import acorr_ljungbox
from statsmodels.stats.stattools import durbin_watson

from dmi_eval.errors import DesignError
from dmi_eval.inference.delta import log_ratio_interval
from dmi_eval.options import check_choice
from dmi_eval.overdispersion import ar1_sum_inflation
from dmi_eval.results import WindowEffect

Family = Literal["ols", "poisson", "quasipoisson", "negbin", "sarimax"]


Seasonality = Literal["none", "fourier", "dummies"]


HacPanel = Literal["within", "stacked"]


Comparison = Literal["none", "donor_total", "donor_mean"]


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
            with np.errstate(over="ignore"):  # an end past e^709 has no upper limit: inf
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
        cols = list(self.exog.columns)
        if list(self.params.index) == cols:  # the fits' own order: no label lookup (slow)
            return self.params.to_numpy()
        return self.params.loc[cols].to_numpy()

    def _vbeta(self) -> np.ndarray:
        cols = list(self.exog.columns)
        if list(self.cov.index) == cols and list(self.cov.columns) == cols:
            return self.cov.to_numpy()
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
        For a window that is only part of the post period (the last :math:`k`
        periods), :math:`O` differs from :math:`\\sum_W \\mu_t` by the window's
        own noise, so the test centred on :math:`\\log(O/C)` adds its variance,
        :math:`se^2 = g'Vg + \\mathrm{Var}(O)/(\\sum_W \\mu_t)^2` (see
        :meth:`_observation_variance`).
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
        var = max(g @ self._vbeta() @ g, 0.0)
        post_rows = self.post & self.target
        partial = bool((w & post_rows).any() and (post_rows & ~w).any())
        if partial and sum_mu > 0:
            # a part of the post period: log(O/C) carries the window's own noise,
            # which the fitted post terms (fitted to the whole post period) do not
            var += self._observation_variance(w) / sum_mu**2
        se = float(np.sqrt(var))
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
            p_upper = self._cdf(-z)
            lo, hi = log_ratio_interval(center, se, q)
        else:
            p_two = p_lower = p_upper = lo = hi = nan
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
            p_upper=p_upper,
        )

    def _observation_variance(self, w: np.ndarray) -> float:
        """Variance of the observed total over the rows ``w`` under the fitted model.

        Count families: :math:`\\phi \\sum_W \\mu_t` (quasi-Poisson; the
        target's own dispersion in a multiple-group fit), :math:`\\sum_W
        (\\mu_t + \\alpha \\mu_t^2)` (negative binomial); OLS and SARIMAX:
        :math:`|W|` times the target's residual variance. Times the AR(1)
        inflation of a sum of :math:`|W|` terms when a working correlation was
        estimated.
        """
        mu = self.fitted[w]
        k = int(w.sum())
        if self.family in ("poisson", "quasipoisson"):
            phi = 1.0 if self.family == "poisson" else float(self.dispersion)
            phi = float(self.extra.get("target_dispersion", phi))
            var = phi * float(mu.sum())
        elif self.family == "negbin":
            var = float(np.sum(mu + float(self.extra.get("nb_alpha", 0.0)) * mu**2))
        else:
            r = self.resid[self.target]
            var = k * float(np.mean(r**2))
        return var * ar1_sum_inflation(float(self.extra.get("ar1_rho", 0.0)), k)

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
