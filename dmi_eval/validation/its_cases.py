"""Validation cases of the interrupted time-series design.

Published numbers (``../shared/reference/README.md`` items 1-2):

* ``prop99_itsa_single`` / ``prop99_itsa_multi``: Linden's Stata ``itsa`` on
  Proposition 99 (OLS, Newey-West lag 1, small-sample factor ``N/(N-k)``).
  ``cigsale`` is stored as a single-precision ``float`` in Stata's
  ``cigsales.dta``, so the data are rounded to float32 first (this moves the
  7th significant digit of the standard errors). In the multiple-group
  analysis every one of the 38 other states is a comparison unit, stacked in
  state order, and ``newey ..., force`` treats the stacked rows as one series
  (``hac_panel="stacked"``); the difference-in-level coefficient equals the
  one against the mean of the other states.
* ``sicily_qp_fourier`` / ``sicily_qp``: quasi-Poisson GLM with offset
  ``log(stdpop)``, level change at time 37, linear trend, with / without two
  Fourier pairs of period 12 (Lopez Bernal et al. 2017).
* ``boston_bartley_fox``: the package's default count model on the monthly
  Boston armed robberies, the Bartley-Fox law taking effect in April 1975;
  recorded, no published value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from dmi_eval.designs.its import default_hac_lags, fit_multigroup, fit_segmented
from dmi_eval.validation.check import Check, reference_file

__all__ = ["CASES"]


def _prop99(reference: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, int]:
    data = pd.read_csv(reference_file(reference, "prop99.csv"))
    wide = data.pivot(index="state", columns="year", values="cigsale").sort_index()
    wide = wide.astype(np.float32).astype(np.float64)  # Stata float storage
    names = data.drop_duplicates("state").set_index("state")["state_name"]
    ca_id = int(names[names == "California"].index[0])
    years = wide.columns.to_numpy()
    y = wide.loc[ca_id].to_numpy()
    controls = wide.drop(index=ca_id).to_numpy()
    target_index = int(list(wide.index).index(ca_id))
    return wide, years, y, controls, target_index


def prop99_itsa_single(reference: Path) -> list[Check]:
    """Stata ``itsa cigsale, single treatid(3) trperiod(1989) lag(1)``."""
    _, years, y, _, _ = _prop99(reference)
    fit = fit_segmented(
        y,
        post=years >= 1989,
        time=years - 1970,
        family="ols",
        hac_lags=1,
        small_sample=True,
    )
    coefs = fit.coefficients().set_index("term")
    post_trend, _, _ = fit.lincom({"time": 1.0, "slope": 1.0})
    case = "prop99_itsa_single"
    return [
        Check(case, "level_change", float(coefs.loc["level", "estimate"]), -20.0581, 5e-5),
        Check(case, "level_change_se", float(coefs.loc["level", "se"]), 4.724395, 5e-7),
        Check(case, "slope_change", float(coefs.loc["slope", "estimate"]), -1.494652, 5e-7),
        Check(case, "slope_change_se", float(coefs.loc["slope", "se"]), 0.436820, 5e-7),
        Check(case, "pre_trend", float(coefs.loc["time", "estimate"]), -1.779474, 5e-7),
        Check(case, "post_trend", post_trend, -3.274126, 5e-7),
    ]


def prop99_itsa_multi(reference: Path) -> list[Check]:
    """Stata ``itsa cigsale, treatid(3) trperiod(1989) lag(1)`` (38 comparison states)."""
    _, years, y, controls, target_index = _prop99(reference)
    fit = fit_multigroup(
        y,
        controls,
        post=years >= 1989,
        time=years - 1970,
        family="ols",
        hac_lags=1,
        small_sample=True,
        hac_panel="stacked",
        target_index=target_index,
    )
    coefs = fit.coefficients().set_index("term")
    case = "prop99_itsa_multi"
    note = "38 comparison states stacked in state order; newey lag 1 on the stacked rows"
    return [
        Check(
            case,
            "diff_level_change",
            float(coefs.loc["z_level", "estimate"]),
            -2.806417,
            5e-7,
            note,
        ),
        Check(
            case, "diff_level_change_se", float(coefs.loc["z_level", "se"]), 5.844765, 5e-7, note
        ),
        Check(
            case, "diff_level_change_p", float(coefs.loc["z_level", "p_value"]), 0.631, 5e-4, note
        ),
        Check(
            case, "diff_slope_change_p", float(coefs.loc["z_slope", "p_value"]), 0.136, 5e-4, note
        ),
    ]


def _sicily(reference: Path, seasonality: str) -> pd.Series:
    data = pd.read_csv(reference_file(reference, "sicily.csv"))
    fit = fit_segmented(
        data["aces"].to_numpy(),
        post=data["smokban"].to_numpy() == 1,
        time=data["time"].to_numpy(),
        family="quasipoisson",
        seasonality=seasonality,  # type: ignore[arg-type]
        n_harmonics=2,
        period_length=12,
        exposure=data["stdpop"].to_numpy(),
        slope_change=False,
    )
    row = fit.coefficients().set_index("term").loc["level"]
    return pd.Series(
        {
            "level_rr": row["rate_ratio"],
            "level_rr_ci_low": row["rr_low"],
            "level_rr_ci_high": row["rr_high"],
            "dispersion": fit.dispersion,
        }
    )


def sicily_qp_fourier(reference: Path) -> list[Check]:
    """Quasi-Poisson, offset log(stdpop), level change, trend, two Fourier pairs."""
    v = _sicily(reference, "fourier")
    case = "sicily_qp_fourier"
    return [
        Check(case, "level_rr", float(v["level_rr"]), 0.885, 5e-4),
        Check(case, "level_rr_ci_low", float(v["level_rr_ci_low"]), 0.839, 5e-4),
        Check(case, "level_rr_ci_high", float(v["level_rr_ci_high"]), 0.933, 5e-4),
        Check(case, "dispersion", float(v["dispersion"]), 2.26, 5e-3),
    ]


def sicily_qp(reference: Path) -> list[Check]:
    """As :func:`sicily_qp_fourier` without the Fourier terms."""
    v = _sicily(reference, "none")
    case = "sicily_qp"
    return [
        Check(case, "level_rr", float(v["level_rr"]), 0.894, 5e-4),
        Check(case, "level_rr_ci_low", float(v["level_rr_ci_low"]), 0.839, 5e-4),
        Check(case, "level_rr_ci_high", float(v["level_rr_ci_high"]), 0.953, 5e-4),
    ]


def boston_bartley_fox(reference: Path) -> list[Check]:
    """Default count model of ``ITS``: quasi-Poisson with the AR(1) working-correlation
    sandwich and t quantiles; trend, level and slope change, two Fourier pairs."""
    data = pd.read_csv(reference_file(reference, "boston_armed_robberies.csv"))
    periods = pd.PeriodIndex(data["date"], freq="M")
    post = periods >= pd.Period("1975-04", freq="M")
    fit = fit_segmented(
        data["robberies"].to_numpy(),
        post=post,
        time=np.arange(len(periods)),
        family="quasipoisson",
        seasonality="fourier",
        n_harmonics=2,
        period_length=12,
        season=np.asarray(periods.month) - 1,
        slope_change=True,
        count_cov="ar1",
        t_inference=True,
    )
    row = fit.coefficients().set_index("term").loc["level"]
    window = fit.window_effect(fit.post)
    case = "boston_bartley_fox"
    note = (
        "quasi-Poisson (AR(1) sandwich, t), level+slope change from 1975-04, 2 Fourier pairs; "
        f"{int(post.sum())} post months; record only"
    )
    return [
        Check(case, "level_change_pct", float(np.expm1(row["estimate"])), None, None, note),
        Check(
            case, "p_value", float(row["p_value"]), None, None, note + " (level change, two-sided)"
        ),
        Check(case, "post_pct_change", window.pct_change, None, None, note),
        Check(case, "post_p_value", window.p_value, None, None, note + " (window log ratio)"),
        Check(case, "dispersion", fit.dispersion, None, None, note),
        Check(case, "ar1_rho", float(fit.extra["ar1_rho"]), None, None, note),
        Check(
            case,
            "ljung_box_p",
            fit.diagnostics()["ljung_box_p"],
            None,
            None,
            f"lag 12; Newey-West default lag would be {default_hac_lags(len(periods))}",
        ),
    ]


CASES: dict[str, Callable[[Path], list[Check]]] = {
    "prop99_itsa_single": prop99_itsa_single,
    "prop99_itsa_multi": prop99_itsa_multi,
    "sicily_qp_fourier": sicily_qp_fourier,
    "sicily_qp": sicily_qp,
    "boston_bartley_fox": boston_bartley_fox,
}
