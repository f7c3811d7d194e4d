"""DID window effects, placebo-area draws and event-time bins."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse, stats

from dmi_eval.designs.did.model import LOG_MODELS, FEFit
from dmi_eval.errors import DesignError
from dmi_eval.inference.delta import log_ratio_interval, normal_tails
from dmi_eval.inference.noise import (
    NoiseStandardisedTest,
    dispersion,
    market_dispersion,
)
from dmi_eval.inference.placebo import draw_placebo_groups
from dmi_eval.overdispersion import group_dispersion
from dmi_eval.power import mde_from_se, min_rank_p
from dmi_eval.results import WindowEffect


# ---------------------------------------------------------------------------
# window effects and event-time bins
# ---------------------------------------------------------------------------
def _window_effect(
    fit: FEFit,
    terms: Sequence[str],
    observed: Sequence[float],
    cells: Sequence[int],
    n_periods: int,
    closed_form: Sequence[float] | None = None,
    mde_alpha: float = 0.05,
) -> WindowEffect:
    """Effect of the treatment terms ``terms`` (observed totals, number of cells each).

    A log-model term whose cells hold no events has a coefficient of ``-inf``;
    its counterfactual is then taken from ``closed_form`` and the interval and
    p-value are left undefined (NaN) unless placebo inference replaces them.
    """
    z = fit.z
    obs = np.asarray(observed, dtype=float)
    o_tot = float(obs.sum())
    b = np.array([fit.params[fit.index(t)] for t in terms])
    idx = [fit.index(t) for t in terms]
    V = fit.cov[np.ix_(idx, idx)]
    if fit.model in LOG_MODELS:
        if not np.isfinite(b).all():
            if closed_form is None:
                raise DesignError(
                    "no events in the treated areas over part of the window: the rate ratio "
                    "is not identified; use model='level'"
                )
            parts = np.where(np.isfinite(b), obs * np.exp(-np.where(np.isfinite(b), b, 0)), 0)
            parts = parts + np.where(np.isfinite(b), 0.0, np.asarray(closed_form, dtype=float))
            c_tot = float(parts.sum())
            se = stat = lo = hi = float("nan")
        else:
            parts = obs * np.exp(-b)
            c_tot = float(parts.sum())
            log_ratio = math.log(o_tot / c_tot)
            g = parts / c_tot
            se = math.sqrt(max(float(g @ V @ g), 0.0))
            stat = log_ratio / se if se > 0 else float("nan")
            lo, hi = log_ratio_interval(log_ratio, se, z)
        eff_se = float("nan")
    else:
        w = np.asarray(cells, dtype=float)
        eff = float(w @ b)
        se_e = math.sqrt(max(float(w @ V @ w), 0.0))
        c_tot = o_tot - eff
        if c_tot <= 0:
            raise DesignError(
                "the level model's counterfactual is not positive; use model='poisson'"
            )

        def pct(e: float) -> float:
            return o_tot / (o_tot - e) - 1.0 if o_tot - e > 0 else float("inf")

        lo, hi = pct(eff - z * se_e), pct(eff + z * se_e)
        stat = eff / se_e if se_e > 0 else float("nan")
        se = float("nan")
        eff_se = se_e
    return WindowEffect(
        n_periods=n_periods,
        observed=o_tot,
        counterfactual=c_tot,
        effect=o_tot - c_tot,
        pct_change=o_tot / c_tot - 1.0,
        ci_low=lo,
        ci_high=hi,
        log_ratio_se=se,
        effect_se=eff_se,
        p_value=normal_tails(stat)[2],
        p_lower=normal_tails(stat)[0],
        p_upper=normal_tails(stat)[1],
        mde=mde_from_se(se, alpha=mde_alpha) if math.isfinite(se) else float("nan"),
    )


Inference = Literal["auto", "placebo", "cluster"]


@dataclass(frozen=True)
class _Placebo:
    """Sums of placebo groups of control areas (the machinery of placebo inference)."""

    sums: np.ndarray  # placebo sets x periods: counts of the placebo group
    rest: np.ndarray  # placebo sets x periods: counts of the other controls
    treated: np.ndarray  # periods: counts of the treated areas
    controls: np.ndarray  # periods: counts of all controls


def _draw_placebos(
    treated: np.ndarray, controls: np.ndarray, n_placebo: int, rng: np.random.Generator
) -> _Placebo:
    """Random groups of ``len(treated)`` control areas and their period totals."""
    m, nc = treated.shape[0], controls.shape[0]
    if nc < m + 1:
        raise DesignError(
            f"placebo inference needs more control areas ({nc}) than treated areas ({m})"
        )
    picks = draw_placebo_groups(rng, nc, m, n_placebo)
    ind = sparse.csr_matrix(
        (np.ones(picks.size), (np.repeat(np.arange(n_placebo), m), picks.ravel())),
        shape=(n_placebo, nc),
    )
    sums = np.asarray(ind @ sparse.csr_matrix(controls).astype(float).todense())
    total = controls.sum(axis=0).astype(float)
    return _Placebo(
        sums=sums, rest=total[None, :] - sums, treated=treated.sum(axis=0), controls=total
    )


def _log_ratio(y_w, y_ref, r_w, r_ref):
    """Closed-form Poisson DID log ratio of a group vs the rest, and its Poisson SE.

    ``log((Y_W + 1/2)/(Y_ref + 1/2)) - log(R_W/R_ref)``; SE ``sqrt(1/(Y_W+1/2) + 1/(Y_ref+1/2))``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        est = np.log((y_w + 0.5) / (y_ref + 0.5)) - np.log(r_w / r_ref)
    se = np.sqrt(1.0 / (y_w + 0.5) + 1.0 / (y_ref + 0.5))
    return est, se


def _dispersions(pl: _Placebo, pre_cols: np.ndarray) -> tuple[float, np.ndarray]:
    """Pre-period dispersion of the treated group and of every placebo group (at least 1).

    See :func:`~dmi_eval.overdispersion.group_dispersion`: each group's counts
    about its pre total spread like the other controls'.
    """
    pre = np.zeros(pl.treated.size, dtype=bool)
    pre[pre_cols] = True
    phi_t = float(group_dispersion(pl.treated, pl.controls, pre))
    return phi_t, group_dispersion(pl.sums, pl.rest, pre)


def _placebo_window(
    pl: _Placebo,
    w_cols: np.ndarray,
    ref_cols: np.ndarray,
    phi: tuple[float, np.ndarray] | None = None,
):
    """Studentised statistic of the treated group and of every placebo group.

    Each group's Poisson SE is scaled by the square root of its own dispersion
    ``phi`` (treated, placebos; from :func:`_dispersions`), so a busy,
    over-dispersed market is studentised like the quiet placebo groups.
    Returns ``(t_treated, se_treated, t_placebo)``.
    """
    est_t, se_t = _log_ratio(
        pl.treated[w_cols].sum(),
        pl.treated[ref_cols].sum(),
        pl.controls[w_cols].sum(),
        pl.controls[ref_cols].sum(),
    )
    est_p, se_p = _log_ratio(
        pl.sums[:, w_cols].sum(axis=1),
        pl.sums[:, ref_cols].sum(axis=1),
        pl.rest[:, w_cols].sum(axis=1),
        pl.rest[:, ref_cols].sum(axis=1),
    )
    if phi is not None:
        se_t = se_t * math.sqrt(phi[0])
        se_p = se_p * np.sqrt(phi[1])
    t_p = est_p / se_p
    return float(est_t / se_t), float(se_t), t_p[np.isfinite(t_p)]


def _placebo_wald(
    pl: _Placebo,
    lead_cols: Sequence[np.ndarray],
    ref_cols: np.ndarray,
    phi: tuple[float, np.ndarray] | None = None,
):
    """Poisson-scaled Wald statistic of the leads for the treated and every placebo group.

    With :math:`b_k = \\log((Y_k+.5)/(Y_{ref}+.5)) - \\log(R_k/R_{ref})`, the
    Poisson covariance is :math:`D + c 11'` (:math:`D = diag(1/(Y_k+.5))`,
    :math:`c = 1/(Y_{ref}+.5)`), and by Sherman-Morrison
    :math:`W = \\sum_k d_k b_k^2 - c(\\sum_k d_k b_k)^2/(1 + c\\sum_k d_k)`,
    divided by each group's dispersion ``phi`` when given.
    """

    def wald(sums, rest):
        ref_y = sums[..., ref_cols].sum(axis=-1)
        ref_r = rest[..., ref_cols].sum(axis=-1)
        b = np.stack(
            [
                _log_ratio(sums[..., c].sum(axis=-1), ref_y, rest[..., c].sum(axis=-1), ref_r)[0]
                for c in lead_cols
            ],
            axis=-1,
        )
        d = np.stack([sums[..., c].sum(axis=-1) + 0.5 for c in lead_cols], axis=-1)
        c = 1.0 / (ref_y + 0.5)
        # a group with no expected count in a lead has b = inf (see _log_ratio): its
        # statistic comes out NaN and is dropped below, with the placebo count reported
        with np.errstate(invalid="ignore"):
            db = (d * b).sum(axis=-1)
            return (d * b**2).sum(axis=-1) - c * db**2 / (1.0 + c * d.sum(axis=-1))

    w_t = float(wald(pl.treated[None, :], pl.controls[None, :])[0])
    w_p = wald(pl.sums, pl.rest)
    if phi is not None:
        w_t, w_p = w_t / phi[0], w_p / phi[1]
    return w_t, w_p[np.isfinite(w_p)]


def _calibrated(t_real: float, t_placebo: np.ndarray, alpha: float) -> dict[str, float]:
    """Placebo p-values (each tail counted) and the critical value for ``|t|`` at level
    ``alpha`` (an event-study bin's; the windows' MDE is the noise-standardised test's)."""
    n = t_placebo.size
    if n < 19:
        raise DesignError(f"only {n} usable placebo groups; placebo inference needs at least 19")
    return {
        "p_value": float((1 + np.sum(np.abs(t_placebo) >= abs(t_real))) / (n + 1)),
        "p_lower": float((1 + np.sum(t_placebo <= t_real)) / (n + 1)),
        "p_upper": float((1 + np.sum(t_placebo >= t_real)) / (n + 1)),
        "crit": float(np.quantile(np.abs(t_placebo), 1 - alpha)),
        "n": float(n),
        "min_p": min_rank_p(n),
    }


def area_paths(treated: np.ndarray, controls: np.ndarray, pre: np.ndarray):
    """Observed counts and DID counterfactuals of the market (first) and every control area.

    Unit :math:`j`'s counterfactual is the total :math:`R_{jt}` of the other
    control areas scaled to its pre-period total,
    :math:`\\hat y_{jt} = R_{jt} \\sum_{s<T_0} y_{js} / \\sum_{s<T_0} R_{js}`, so
    :math:`\\log(\\sum_W y_j / \\sum_W \\hat y_j)` is the closed-form Poisson DID log
    ratio of the window against the pre period. Returns ``(observed, counterfactual,
    phi)`` with ``phi`` each unit's effective overdispersion (the market's from its
    areas' pre-period means, :func:`~dmi_eval.inference.noise.market_dispersion`).
    """
    total = controls.sum(axis=0).astype(float)
    observed = np.vstack([treated.sum(axis=0), controls]).astype(float)
    rest = np.vstack([total, total[None, :] - controls])
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = observed[:, pre].sum(axis=1) / rest[:, pre].sum(axis=1)
    counterfactual = rest * np.where(np.isfinite(scale), scale, 0.0)[:, None]
    phi_city = dispersion(controls[:, pre])
    phi = np.full(observed.shape[0], phi_city)
    phi[0] = market_dispersion(phi_city, treated[:, pre].mean(axis=1))
    return observed, counterfactual, phi


def standardised_effect(
    e: WindowEffect, test: NoiseStandardisedTest, level: float, mde_alpha: float
) -> WindowEffect:
    """The window effect with the noise-standardised placebo test's interval and p-values.

    ``mde_alpha`` is the one-sided level of the test whose detectable reduction
    ``mde`` states.

    The market's statistic is the fitted model's ``log(observed / counterfactual)``
    (half an incident for an empty window), standardised like every placebo's. Its
    standard error (for pooling) is the test's own,
    :meth:`~dmi_eval.inference.noise.NoiseStandardisedTest.log_se`, as the synthetic
    control's: none where the window holds too few incidents for it.
    """
    n = test.n_placebos
    if n < 19:
        raise DesignError(f"only {n} usable placebo areas; placebo inference needs at least 19")
    log_ratio = math.log(max(e.observed, 0.5) / e.counterfactual)
    test = replace(test, log_ratio=np.concatenate([[log_ratio], test.log_ratio[1:]]))
    p_lower, p_upper, p_two = test.p_values()
    low, high = test.interval(level)
    return WindowEffect(
        n_periods=e.n_periods,
        observed=e.observed,
        counterfactual=e.counterfactual,
        effect=e.effect,
        pct_change=e.pct_change,
        ci_low=-1.0 if e.observed == 0 else low,
        ci_high=high,
        log_ratio_se=test.log_se(),
        effect_se=e.effect_se,
        p_value=p_two,
        p_lower=p_lower,
        p_upper=p_upper,
        mde=test.mde(mde_alpha),
        min_p=min_rank_p(n),
    )


def event_time_bins(event_time: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """Event times clipped to ``window``: ``k <= lo`` -> ``lo``, ``k >= hi`` -> ``hi``."""
    lo, hi = window
    return np.clip(np.asarray(event_time, dtype=np.int64), lo, hi)


def _event_name(k: int) -> str:
    return f"e{k:+d}"


def _event_frame(
    fit: FEFit | None,
    ks: Sequence[int],
    treated_obs: Mapping[int, tuple[int, float]],
    model: str,
):
    """One row per event-time bin; a bin ``fit`` lacks (``None``: every bin) is NaN."""
    rows = []
    z = fit.z if fit is not None else float("nan")
    for k in ks:
        if k == -1:
            est, se = 0.0, 0.0
        elif fit is None or _event_name(k) not in fit.names:  # no treated incidents
            est, se = float("nan"), float("nan")
        else:
            i = fit.index(_event_name(k))
            est, se = float(fit.params[i]), float(math.sqrt(fit.cov[i, i]))
        n_cells, total = treated_obs.get(k, (0, 0.0))
        p = float(2 * stats.norm.sf(abs(est / se))) if se > 0 else float("nan")
        rows.append(
            {
                "event_time": int(k),
                "estimate": est,
                "se": se,
                "ci_low": est - z * se,
                "ci_high": est + z * se,
                "p_value": p,
                "n_treated_cells": int(n_cells),
                "treated_count": float(total),
                "reference": k == -1,
            }
        )
    frame = pd.DataFrame(rows)
    if model in LOG_MODELS:
        for col in ("estimate", "ci_low", "ci_high"):
            frame[f"pct_{col}"] = np.expm1(frame[col].to_numpy(dtype=float))
    return frame


def _event_plot_data(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    if model in LOG_MODELS:
        out = pd.DataFrame(
            {
                "event_time": frame["event_time"],
                "estimate": frame["pct_estimate"],
                "ci_low": frame["pct_ci_low"],
                "ci_high": frame["pct_ci_high"],
            }
        )
        out["scale"] = "pct_change"
    else:
        out = frame[["event_time", "estimate", "ci_low", "ci_high"]].copy()
        out["scale"] = "count per area-period"
    out["reference"] = frame["reference"].to_numpy()
    return out


def _long_panel(matrix: np.ndarray, units: np.ndarray, cols: np.ndarray):
    """Flatten an areas x periods array restricted to ``cols``: y, entity, time (row-major)."""
    sub = matrix[:, cols]
    n_u, n_t = sub.shape
    y = sub.reshape(-1).astype(float)
    entity = np.repeat(units, n_t)
    time = np.tile(cols, n_u)
    return y, entity, time
