"""ITS numeric core: fit one series (:func:`fit_segmented`) or a target with comparison series (:func:`fit_multigroup`)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from statsmodels.discrete.discrete_model import NegativeBinomial
from statsmodels.genmod.families import Poisson
from statsmodels.genmod.generalized_linear_model import GLM
from statsmodels.regression.linear_model import OLS

from dmi_eval.designs.its.model import (
    COUNT_FAMILIES,
    FAMILIES,
    SEASONALITIES,
    Family,
    HacPanel,
    Seasonality,
    SegmentedFit,
    default_hac_lags,
    segmented_design,
)
from dmi_eval.errors import DesignError
from dmi_eval.inference.covariance import ar1_sandwich
from dmi_eval.options import check_alpha, check_choice
from dmi_eval.overdispersion import unit_dispersions


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
    unit_params: np.ndarray | None = None,
    sarimax_order: tuple[int, int, int],
) -> tuple[pd.Series, pd.DataFrame, np.ndarray, np.ndarray, float, bool, float, dict, list[str]]:
    """Fit one model; returns params, cov, fitted, resid, df_resid, use_t, dispersion, extra, notes.

    ``unit_params`` (quasi-Poisson with ``units``): the parameters spent on
    each unit; each unit then gets its own Pearson dispersion
    (:func:`~dmi_eval.overdispersion.unit_dispersions`) in the covariance.
    """
    n, k = exog.shape
    notes: list[str] = []
    extra: dict[str, Any] = {}
    expo = np.ones(n) if exposure is None else exposure
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if family == "ols":
            lags = default_hac_lags(n) if hac_lags is None else int(hac_lags)
            if hac_groups is None:
                res = OLS(y, exog).fit(
                    cov_type="HAC",
                    cov_kwds={"maxlags": lags, "use_correction": small_sample},
                    use_t=True,
                )
            else:
                res = OLS(y, exog).fit(
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
            glm = GLM(y, exog, family=Poisson(), exposure=expo)
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
            scale: float | np.ndarray = disp if family == "quasipoisson" else 1.0
            per_unit = (
                family == "quasipoisson"
                and unit_params is not None
                and units is not None
                and count_cov != "hac"
            )
            if per_unit:
                labels = np.unique(units)
                phis = unit_dispersions(resid, units, unit_params)
                scale = phis[np.searchsorted(labels, units)]
                extra["unit_dispersion"] = tuple(float(v) for v in phis)
            if count_cov == "ar1":
                standard = resid / np.sqrt(scale) if per_unit else resid
                cov, rho = ar1_sandwich(exog.to_numpy(), fitted, standard, scale, units)
                extra["ar1_rho"] = rho
            elif per_unit:
                cov, _ = ar1_sandwich(exog.to_numpy(), fitted, resid, scale, units, fixed_rho=0.0)
        elif family == "negbin":
            model = NegativeBinomial(y, exog, loglike_method="nb2", exposure=expo)
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
                pois = GLM(y, exog, family=Poisson(), exposure=expo).fit()
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
            from statsmodels.tsa.statespace.sarimax import SARIMAX  # only this family needs it

            model = SARIMAX(y, exog=exog.to_numpy(), order=sarimax_order, trend="n")
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
    check_alpha(alpha)
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
        from the Pearson residuals; see :func:`~dmi_eval.inference.covariance.ar1_sandwich`).
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
    fitted_model = (params, cov, fitted, resid, df, use_t, disp, extra, notes)
    return _segmented_fit(
        fitted_model,
        family=family,
        exog=exog,
        interventions=interventions,
        y=yv,
        exposure=expo,
        target=np.ones(yv.size, dtype=bool),
        post=postv.copy(),
        t_inference=t_inference,
        alpha=alpha,
        choices=choices,
    )


def _segmented_fit(
    fitted_model: tuple[Any, ...],
    *,
    family: str,
    exog: pd.DataFrame,
    interventions: Sequence[str],
    y: np.ndarray,
    exposure: np.ndarray | None,
    target: np.ndarray,
    post: np.ndarray,
    t_inference: bool | None,
    alpha: float,
    choices: Mapping[str, Any],
) -> SegmentedFit:
    """The frozen :class:`SegmentedFit` of a fitted model (``_fit_model``'s tuple)."""
    params, cov, fitted, resid, df, use_t, disp, extra, notes = fitted_model
    return SegmentedFit(
        family=family,
        params=params,
        cov=cov,
        exog=exog,
        interventions=tuple(interventions),
        y=y,
        exposure=np.ones_like(y) if exposure is None else exposure,
        target=target,
        post=post,
        fitted=fitted,
        resid=resid,
        df_resid=df,
        use_t=use_t if t_inference is None else bool(t_inference),
        dispersion=disp,
        alpha=alpha,
        choices=MappingProxyType(dict(choices)),
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
    exposure: Sequence[float] | None = None,
    unit_dispersion: bool = False,
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
    exposure
        Count families: one exposure per unit, target first, then the
        comparison series in order (e.g. the number of areas each series
        sums): an offset, so the coefficients are rates per area.
    unit_dispersion
        Quasi-Poisson only: give the target and each comparison series its own
        Pearson dispersion in the covariance instead of one pooled scale (a
        market of a few busy areas and a total over many quiet ones are
        dispersed differently).

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
    expo = None
    if exposure is not None:
        if family not in COUNT_FAMILIES:
            raise ValueError("exposure is only used by the count families")
        ex = np.asarray(exposure, dtype=float)
        if ex.shape != (n_units,) or not (ex > 0).all():
            raise ValueError(f"exposure needs {n_units} positive values (target first)")
        ordered = [*ex[1 : target_index + 1], ex[0], *ex[target_index + 1 :]]
        expo = np.repeat(np.asarray(ordered), T)
    if unit_dispersion and family != "quasipoisson":
        raise ValueError("unit_dispersion is available for the quasipoisson family only")
    per_unit = exog.shape[1] / n_units  # degrees of freedom spent on each unit, on average
    _check_size(yy.size, exog.shape[1], int((~postv).sum()), family)
    groups = np.repeat(np.arange(n_units), T) if hac_panel == "within" else None
    params, cov, fitted, resid, df, use_t, disp, extra, notes = _fit_model(
        yy,
        exog,
        family=family,
        exposure=expo,
        hac_lags=hac_lags,
        small_sample=small_sample,
        hac_groups=groups if family == "ols" else None,
        units=np.repeat(np.arange(n_units), T),
        unit_params=np.full(n_units, per_unit) if unit_dispersion else None,
        count_cov=count_cov,
        sarimax_order=(1, 0, 0),
    )
    if "unit_dispersion" in extra:
        extra["target_dispersion"] = extra["unit_dispersion"][target_index]
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
    fitted_model = (params, cov, fitted, resid, df, use_t, disp, extra, notes)
    return _segmented_fit(
        fitted_model,
        family=family,
        exog=exog,
        interventions=interventions,
        y=yy,
        exposure=expo,
        target=target,
        post=target & np.tile(postv, n_units),
        t_inference=t_inference,
        alpha=alpha,
        choices=choices,
    )
