"""Micro-synthetic inference: linearization, jackknife and permutation statistics of a weight vector."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from scipy import stats

from dmi_eval.designs.microsynth.calibration import (
    CalibrationFit,
    MatchPeriods,
    calibrate,
)
from dmi_eval.inference.delta import normal_tails
from dmi_eval.options import Sided

InferenceMethod = Literal["linearization", "jackknife", "permutation"]


Primary = Literal["auto", "linearization", "jackknife", "permutation"]


SIDED: tuple[str, ...] = get_args(Sided)


MATCH_PERIODS: tuple[str, ...] = get_args(MatchPeriods)


PRIMARY: tuple[str, ...] = get_args(Primary)


DESIGN = "microsynth"


# ---------------------------------------------------------------------------
# statistics for one weight vector


def _wls_coefs(
    y: np.ndarray, w: np.ndarray, treat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Closed-form WLS of ``y_it = beta*treat_i + gamma_t`` with unit weights ``w_i``.

    ``y`` is outcomes x units x periods. Returns ``beta`` (K), ``gamma``
    (K x m), ``W_T`` and ``W_C`` (weight sums of treated and control units).
    """
    wt, wc = w * treat, w * ~treat
    w_t, w_c = float(wt.sum()), float(wc.sum())
    y_t = np.einsum("i,kim->km", wt, y) / w_t
    y_c = np.einsum("i,kim->km", wc, y) / w_c
    beta = (y_t - y_c).mean(axis=1)
    gamma = (w_t * (y_t - beta[:, None]) + w_c * y_c) / (w_t + w_c)
    return beta, gamma, w_t, w_c


def _ratio_delta(beta: np.ndarray, gamma: np.ndarray, vcov: np.ndarray) -> tuple[Any, Any]:
    """Log ratio ``log((yC + beta) / yC)`` (``yC`` = mean of ``gamma``) and its delta variance.

    ``vcov`` is K x k x k over ``(beta, gamma_1..gamma_m)``.
    """
    m = gamma.shape[1]
    y_c = gamma.mean(axis=1)
    y_t = y_c + beta
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = y_t / y_c
        log_ratio = np.where(ratio > 0, np.log(np.where(ratio > 0, ratio, 1.0)), np.nan)
        d0 = 1.0 / y_t
        grad = np.concatenate([d0[:, None], np.repeat(((d0 - 1.0 / y_c) / m)[:, None], m, 1)], 1)
        dvar = np.einsum("ka,kab,kb->k", grad, vcov, grad)
    return log_ratio, dvar


def _omnibus(theta: np.ndarray, sigma: np.ndarray, sided: str) -> float:
    """Omnibus statistic across outcomes.

    One-sided: ``a'theta / sqrt(a' Sigma a)`` with ``a = diag(Sigma)^-1/2`` (a
    standard normal under no effect); two-sided: ``theta' Sigma^+ theta``
    (chi-square with K degrees of freedom).
    """
    ok = np.isfinite(theta) & np.isfinite(np.diag(sigma)) & (np.diag(sigma) > 0)
    if ok.sum() < 2:
        return math.nan
    theta, sigma = theta[ok], sigma[np.ix_(ok, ok)]
    if sided == "two-sided":
        return float(theta @ np.linalg.pinv(sigma) @ theta)
    a = 1.0 / np.sqrt(np.diag(sigma))
    return float(a @ theta / math.sqrt(a @ sigma @ a))


def _linearization(
    y: np.ndarray, w: np.ndarray, treat: np.ndarray, n_units: int, sided: str
) -> dict[str, Any]:
    """Survey-weighted regression statistics for one weight vector and window.

    Notes
    -----
    Each post-period row of each unit is its own PSU (``svydesign(ids = ~0)``):
    ``V = N/(N-1) * sum_r (u_r - ubar)(u_r - ubar)'`` with influence
    ``u_r = w_r e_r x_r' A^{-1}``, ``A = X'WX``, ``N`` = rows (units in the
    analysis x post periods). The cross-outcome covariance of the treatment
    coefficients (for the omnibus test) uses the same influence functions.
    """
    k_out, _, m = y.shape
    beta, gamma, w_t, w_c = _wls_coefs(y, w, treat)
    k = m + 1
    a_mat = np.zeros((k, k))
    a_mat[0, 0] = m * w_t
    a_mat[0, 1:] = a_mat[1:, 0] = w_t
    a_mat[1:, 1:] = np.eye(m) * (w_t + w_c)
    a_inv = np.linalg.inv(a_mat)
    resid = y - gamma[:, None, :] - beta[:, None, None] * treat[None, :, None]
    we = resid * w[None, :, None]  # K x n x m
    tm = treat.astype(float)
    # sums needed for the meat B = sum w^2 e^2 x x' and the score s = sum w e x
    we2 = we * we
    b00 = np.einsum("i,kim->k", tm, we2)
    b0t = np.einsum("i,kim->km", tm, we2)
    btt = we2.sum(axis=1)
    s0 = np.einsum("i,kim->k", tm, we)
    st = we.sum(axis=1)
    n_rows = n_units * m
    meat = np.zeros((k_out, k, k))
    meat[:, 0, 0] = b00
    meat[:, 0, 1:] = b0t
    meat[:, 1:, 0] = b0t
    idx = np.arange(1, k)
    meat[:, idx, idx] = btt
    score = np.concatenate([s0[:, None], st], axis=1)
    mean_if = score @ a_inv / n_rows  # K x k
    vcov = a_inv @ meat @ a_inv - n_rows * np.einsum("ka,kb->kab", mean_if, mean_if)
    vcov *= n_rows / (n_rows - 1)
    se = np.sqrt(np.maximum(vcov[:, 0, 0], 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = beta / se
    log_ratio, dvar = _ratio_delta(beta, gamma, vcov)
    # treatment-coefficient influence: w e (treat*Ainv[0,0] + Ainv[t,0])
    c = tm[:, None] * a_inv[0, 0] + a_inv[1:, 0][None, :]
    infl = (we * c[None, :, :]).reshape(k_out, -1)
    infl -= infl.mean(axis=1, keepdims=True)
    cov_beta = infl @ infl.T * n_rows / (n_rows - 1)
    return {
        "beta": beta,
        "gamma": gamma,
        "z": z,
        "log_ratio": log_ratio,
        "dvar": dvar,
        "omnibus": _omnibus(beta, cov_beta, sided),
    }


@dataclass(frozen=True)
class Calibrator:
    """The calibration settings every microsynth fit of one site shares (real, jackknife, placebo).

    ``sided`` is the tail of the linearization p-values computed with each fit.
    """

    names: tuple[str, ...]
    totals: tuple[tuple[int, ...], ...]
    sided: str
    epsilon: float
    maxit: int
    fallback: bool

    def fit(
        self, constraints: np.ndarray, treat: np.ndarray, use: np.ndarray | None = None
    ) -> CalibrationFit:
        """:func:`calibrate` the controls for the treated set ``treat`` (rows ``use``)."""
        return calibrate(
            constraints,
            treat,
            use=use,
            names=self.names,
            totals=self.totals,
            epsilon=self.epsilon,
            maxit=self.maxit,
            fallback=self.fallback,
        )


def _window_arrays(y_all: np.ndarray, windows: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(y_all[:, :, idx]) for idx in windows]


def _placebo_chunk(
    constraints: np.ndarray,
    y_windows: list[np.ndarray],
    sets: np.ndarray,
    calib: Calibrator,
) -> dict[str, np.ndarray]:
    """Weights and standardised statistics for a chunk of placebo treated sets."""
    n = constraints.shape[0]
    n_win = len(y_windows)
    k_out = y_windows[0].shape[0]
    b = len(sets)
    z = np.full((b, n_win, k_out), np.nan)
    lr = np.full((b, n_win, k_out), np.nan)
    dv = np.full((b, n_win, k_out), np.nan)
    om = np.full((b, n_win), np.nan)
    method = np.zeros(b, dtype=np.int8)
    codes = {"exact": 0, "fallback": 1, "failed": 2}
    for j, chosen in enumerate(sets):
        treat = np.zeros(n, dtype=bool)
        treat[chosen] = True
        fit = calib.fit(constraints, treat)
        method[j] = codes[fit.method]
        for wi, y in enumerate(y_windows):
            st = _linearization(y, fit.weights, treat, n, calib.sided)
            z[j, wi], lr[j, wi], dv[j, wi], om[j, wi] = (
                st["z"],
                st["log_ratio"],
                st["dvar"],
                st["omnibus"],
            )
    return {"z": z, "log_ratio": lr, "dvar": dv, "omnibus": om, "method": method}


def _jackknife_groups(treated: np.ndarray, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Random balanced groups ``0..G-1`` within treated and within control units."""
    groups = np.empty(len(treated), dtype=np.int64)
    for mask in (treated, ~treated):
        idx = np.flatnonzero(mask)
        order = rng.permutation(len(idx))
        groups[idx[order]] = np.arange(len(idx)) % n_groups
    return groups


def _p_values(z: float, sided: str) -> tuple[float, float, float, float]:
    """Normal p-values: lower, upper, two-sided, and the one for ``sided``."""
    if not np.isfinite(z):
        return (math.nan,) * 4
    lower, upper, two = normal_tails(float(z))
    chosen = {"lower": lower, "greater": upper, "two-sided": two}[sided]
    return lower, upper, two, chosen


def _ci(log_ratio: float, se: float, alpha: float) -> tuple[float, float]:
    if not (np.isfinite(log_ratio) and np.isfinite(se)):
        return math.nan, math.nan
    q = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(over="ignore"):  # a huge upper end is inf: "no upper limit"
        return float(np.expm1(log_ratio - q * se)), float(np.expm1(log_ratio + q * se))


def _inf_row(
    outcome: str,
    window: str,
    method: str,
    statistic: float,
    log_ratio: float,
    se: float,
    p_lower: float,
    p_upper: float,
    p_two: float,
    p_value: float,
    lo: float,
    hi: float,
) -> dict[str, Any]:
    return {
        "outcome": outcome,
        "window": window,
        "method": method,
        "statistic": float(statistic),
        "log_ratio": float(log_ratio),
        "se": float(se),
        "p_lower": p_lower,
        "p_upper": p_upper,
        "p_two_sided": p_two,
        "p_value": p_value,
        "ci_low": lo,
        "ci_high": hi,
    }


def _omnibus_normal_row(
    window: str, method: str, stat: float, sided: str, k: int
) -> dict[str, Any]:
    """Omnibus row: normal p-values for one-sided statistics, chi-square(k) for two-sided."""
    if not np.isfinite(stat):
        p = (math.nan,) * 4
    elif sided == "two-sided":
        p2 = float(stats.chi2.sf(stat, k))
        p = (math.nan, math.nan, p2, p2)
    else:
        p = _p_values(stat, sided)
    return _inf_row("omnibus", window, method, stat, math.nan, math.nan, *p, math.nan, math.nan)


def _main_task(
    constraints: np.ndarray,
    treat: np.ndarray,
    y_windows: list[np.ndarray],
    calib: Calibrator,
) -> tuple[CalibrationFit, list[dict[str, Any]]]:
    """Weights of the real treated set and their linearization statistics per window."""
    fit = calib.fit(constraints, treat)
    n = constraints.shape[0]
    return fit, [_linearization(y, fit.weights, treat, n, calib.sided) for y in y_windows]


def _jack_chunk(
    constraints: np.ndarray,
    treat: np.ndarray,
    groups: np.ndarray,
    chunk: np.ndarray,
    y_windows: list[np.ndarray],
    calib: Calibrator,
) -> tuple[list[np.ndarray], int]:
    """Replicate coefficients ``(beta, gamma)`` for jackknife groups ``chunk``, weights recomputed."""
    out: list[list[np.ndarray]] = [[] for _ in y_windows]
    bad = 0
    for g in chunk:
        fit = calib.fit(constraints, treat, use=groups != g)
        bad += fit.method != "exact"
        for wi, y in enumerate(y_windows):
            beta, gamma, _, _ = _wls_coefs(y, fit.weights, treat)
            out[wi].append(np.concatenate([beta[:, None], gamma], axis=1))
    return [np.stack(o) for o in out], bad


def _jackknife_rows(
    inf_rows: list[dict[str, Any]],
    thetas: list[np.ndarray],
    n_groups: int,
    wnames: list[str],
    outcomes: tuple[str, ...],
    main_stats: list[dict[str, Any]],
    sided: str,
    alpha: float,
) -> None:
    """Jackknife (JK1, centred at the full-sample estimate) rows of the inference table."""
    scale = (n_groups - 1) / n_groups
    for wi, wname in enumerate(wnames):
        st = main_stats[wi]
        full = np.concatenate([st["beta"][:, None], st["gamma"]], axis=1)  # K x k
        dev = thetas[wi] - full[None]  # G x K x k
        vcov = scale * np.einsum("gka,gkb->kab", dev, dev)
        _, dvar = _ratio_delta(st["beta"], st["gamma"], vcov)
        for k, o in enumerate(outcomes):
            se_b = math.sqrt(vcov[k, 0, 0])
            z = st["beta"][k] / se_b if se_b > 0 else math.nan
            se = math.sqrt(dvar[k]) if dvar[k] >= 0 else math.nan
            lo, hi = _ci(float(st["log_ratio"][k]), se, alpha)
            pl, pu, p2, pv = _p_values(float(z), sided)
            inf_rows.append(
                _inf_row(o, wname, "jackknife", z, st["log_ratio"][k], se, pl, pu, p2, pv, lo, hi)
            )
        cov_beta = scale * np.einsum("ga,gb->ab", dev[:, :, 0], dev[:, :, 0])
        om = _omnibus(st["beta"], cov_beta, sided)
        inf_rows.append(_omnibus_normal_row(wname, "jackknife", om, sided, len(outcomes)))


def _perm_rows(
    inf_rows: list[dict[str, Any]],
    perm: dict[str, np.ndarray],
    wnames: list[str],
    outcomes: tuple[str, ...],
    main_stats: list[dict[str, Any]],
    sided: str,
    alpha: float,
) -> pd.DataFrame:
    """Permutation p-values and intervals (microsynth's ``use.survey = TRUE``)."""
    b = perm["z"].shape[0]
    exact = perm["method"] == 0  # placebo sets with an exact synthetic control
    frames = []
    for wi, wname in enumerate(wnames):
        st = main_stats[wi]
        for k, o in enumerate(outcomes):
            z_obs = float(st["z"][k])
            z_pl = perm["z"][exact, wi, k]
            z_pl = z_pl[np.isfinite(z_pl)]
            if len(z_pl) and np.isfinite(z_obs):
                # rank p-values with the observed set counted (+1): never 0, each tail its own
                n_pl = len(z_pl) + 1
                pl = float((1 + np.sum(z_pl <= z_obs)) / n_pl)
                pu = float((1 + np.sum(z_pl >= z_obs)) / n_pl)
                p2 = float((1 + np.sum(np.abs(z_pl) >= abs(z_obs))) / n_pl)
            else:
                pl = pu = p2 = math.nan
            pv = {"lower": pl, "greater": pu, "two-sided": p2}[sided]
            # interval from quantiles of standardised log ratios (observed included)
            lr_all = np.concatenate([[st["log_ratio"][k]], perm["log_ratio"][exact, wi, k]])
            dv_all = np.concatenate([[st["dvar"][k]], perm["dvar"][exact, wi, k]])
            with np.errstate(divide="ignore", invalid="ignore"):
                zs = lr_all / np.sqrt(dv_all)
            zs = zs[np.isfinite(zs)]
            se = math.sqrt(st["dvar"][k]) if st["dvar"][k] >= 0 else math.nan
            lr = float(st["log_ratio"][k])
            if len(zs) > 1 and np.isfinite(lr) and np.isfinite(se):
                q_lo, q_hi = np.quantile(zs, [alpha / 2, 1 - alpha / 2])
                lo, hi = float(np.expm1(lr - se * q_hi)), float(np.expm1(lr - se * q_lo))
            else:
                lo = hi = math.nan
            inf_rows.append(
                _inf_row(o, wname, "permutation", z_obs, lr, se, pl, pu, p2, pv, lo, hi)
            )
            frames.append(
                pd.DataFrame(
                    {
                        "placebo": np.arange(1, b + 1),
                        "window": wname,
                        "outcome": o,
                        "statistic": perm["z"][:, wi, k],
                        "log_ratio": perm["log_ratio"][:, wi, k],
                        "se": np.sqrt(np.maximum(perm["dvar"][:, wi, k], 0.0)),
                        "exact": exact,
                    }
                )
            )
        om_obs = st["omnibus"]
        om_pl = perm["omnibus"][exact, wi]
        om_pl = om_pl[np.isfinite(om_pl)]
        if len(om_pl) and np.isfinite(om_obs):
            n_pl = len(om_pl) + 1
            if sided == "two-sided":
                p2 = float((1 + np.sum(om_pl >= om_obs)) / n_pl)
                p = (math.nan, math.nan, p2, p2)
            else:
                pl = float((1 + np.sum(om_pl <= om_obs)) / n_pl)
                pu = float((1 + np.sum(om_pl >= om_obs)) / n_pl)
                p = (pl, pu, math.nan, pl if sided == "lower" else pu)
        else:
            p = (math.nan,) * 4
        inf_rows.append(
            _inf_row(
                "omnibus", wname, "permutation", om_obs, math.nan, math.nan, *p, math.nan, math.nan
            )
        )
        frames.append(
            pd.DataFrame(
                {
                    "placebo": np.arange(1, b + 1),
                    "window": wname,
                    "outcome": "omnibus",
                    "statistic": perm["omnibus"][:, wi],
                    "log_ratio": math.nan,
                    "se": math.nan,
                    "exact": exact,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
