"""Difference-in-differences and event studies on area-level counts.

Three layers:

* a numeric core, :func:`fit_fe`: a regression of an area x period outcome on
  regressors with area (entity) and period (time) fixed effects and standard
  errors clustered by area, either a Poisson fixed-effects model (the default
  for counts) or a linear model fitted with linearmodels' ``PanelOLS`` on
  ``log(1 + y)`` or on the counts themselves; it returns a read-only
  :class:`FEFit`;
* the site-level design :class:`DID` (``DID(site_data, ...).fit() ->``
  :class:`DIDResults`): the site's treated areas against its donor areas
  (catchment areas are never comparisons), a static DID for the effects rows
  (design ``"did"``) and an event study with leads and lags around the call-in
  and a joint pre-trend test;
* the cross-site staggered event study :func:`stacked_event_study` (a stacked
  design, Cengiz, Dube, Lindner & Zipperer 2019), valid under staggered call-in
  dates with heterogeneous effects, unlike two-way fixed effects that use
  already-treated areas as controls.

Why a Poisson fixed-effects model: counts per area and month are small (many
zeros), so a linear model on ``log(1 + y)`` does not estimate a percent change
of the count, and a model on the level mixes areas of very different size. The
Poisson model with area and period effects estimates a rate ratio, is
consistent when only the conditional mean is right (Wooldridge 1999), and is
fitted here by Newton's method on the likelihood with the area effects
concentrated out (the conditional multinomial likelihood, which gives exactly
the Poisson MLE). linearmodels has no Poisson panel model, and a statsmodels
GLM with 300 area and 72 period dummies takes seconds per fit (see the
benchmark); the concentrated fit takes milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from scipy import sparse, stats
from scipy.sparse.csgraph import connected_components

from dmi_eval.config import Study
from dmi_eval.errors import DesignError
from dmi_eval.options import check_choice
from dmi_eval.panel import Panel, SiteData
from dmi_eval.results import effects_frame, window_rows

FEModel = Literal["poisson", "log1p", "level"]
FE_MODELS: tuple[str, ...] = get_args(FEModel)
MODEL_LABEL = {
    "poisson": "Poisson fixed-effects",
    "log1p": "PanelOLS on log(1+y)",
    "level": "PanelOLS on counts",
}
LOG_MODELS = frozenset({"poisson", "log1p"})

__all__ = [
    "DID",
    "DIDResults",
    "FEFit",
    "StackedEventStudyResults",
    "WindowEffect",
    "event_time_bins",
    "fit_fe",
    "stacked_event_study",
]


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")


def _check_window(window: tuple[int, int]) -> tuple[int, int]:
    try:
        lo, hi = (int(window[0]), int(window[1]))
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"window must be a pair of integers (lo, hi); got {window!r}") from None
    if not lo <= -2 or not hi >= 1:
        raise ValueError(f"window must satisfy lo <= -2 and hi >= 1; got {window!r}")
    return lo, hi


# ---------------------------------------------------------------------------
# numeric core: a regression with area and period fixed effects
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FEFit:
    """A fitted fixed-effects regression (read-only).

    Attributes
    ----------
    model
        ``"poisson"``, ``"log1p"`` or ``"level"``.
    names, params, cov
        Coefficient names, estimates and their cluster-robust covariance. A
        Poisson coefficient whose cells have no events at all is ``-inf`` (not
        identified) and has ``nan`` variance.
    n_obs, n_entities, n_clusters
        Observations, entities and clusters used (Poisson: entities with no
        events carry no information and are dropped).
    alpha
        1 - confidence level.
    converged, iterations
        Newton's method (Poisson) or ``True``/0 for the linear models.
    """

    model: str
    names: tuple[str, ...]
    params: np.ndarray
    cov: np.ndarray
    n_obs: int
    n_entities: int
    n_clusters: int
    alpha: float
    converged: bool = True
    iterations: int = 0

    def __post_init__(self) -> None:
        for name in ("params", "cov"):
            arr = np.array(getattr(self, name), dtype=float, copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def z(self) -> float:
        return float(stats.norm.isf(self.alpha / 2))

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no coefficient {name!r}; have {', '.join(self.names)}") from None

    def coefficients(self) -> pd.DataFrame:
        """``term, estimate, se, z, p_value, ci_low, ci_high`` (normal reference)."""
        se = np.sqrt(np.diag(self.cov))
        with np.errstate(divide="ignore", invalid="ignore"):
            zs = self.params / se
        p = 2 * stats.norm.sf(np.abs(zs))
        return pd.DataFrame(
            {
                "term": list(self.names),
                "estimate": self.params,
                "se": se,
                "z": zs,
                "p_value": p,
                "ci_low": self.params - self.z * se,
                "ci_high": self.params + self.z * se,
            }
        )

    def lincom(self, weights: Mapping[str, float]) -> tuple[float, float]:
        """Estimate and standard error of ``sum_j w_j beta_j``."""
        w = np.zeros(len(self.names))
        for name, value in weights.items():
            w[self.index(name)] = value
        est = float(w @ self.params)
        var = float(w @ self.cov @ w)
        return est, math.sqrt(var) if var >= 0 else float("nan")

    def wald(self, names: Sequence[str]) -> dict[str, float]:
        """Wald test that the named coefficients are all zero: ``stat, df, p_value``.

        Coefficients that are not identified (non-finite) are left out and
        counted in ``n_dropped``.
        """
        idx = [self.index(n) for n in names]
        ok = [i for i in idx if np.isfinite(self.params[i]) and np.isfinite(self.cov[i, i])]
        if not ok:
            return {"stat": float("nan"), "df": 0.0, "p_value": float("nan"), "n_dropped": 0.0}
        b = self.params[ok]
        v = self.cov[np.ix_(ok, ok)]
        stat = float(b @ np.linalg.pinv(v) @ b)
        df = float(np.linalg.matrix_rank(v))
        return {
            "stat": stat,
            "df": df,
            "p_value": float(stats.chi2.sf(stat, df)) if df > 0 else float("nan"),
            "n_dropped": float(len(idx) - len(ok)),
        }


def _codes(values: Any) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(pd.Series(values).to_numpy(), sort=True)
    if (codes < 0).any():
        raise ValueError("entity, time and cluster labels must not be missing")
    return codes.astype(np.int64), len(uniques)


def fit_fe(
    y: np.ndarray,
    entity: Sequence[Any],
    time: Sequence[Any],
    X: pd.DataFrame,
    *,
    model: FEModel = "poisson",
    cluster: Sequence[Any] | None = None,
    alpha: float = 0.05,
) -> FEFit:
    """Regression with entity and time fixed effects, SEs clustered (default: by entity).

    Parameters
    ----------
    y
        Outcome per observation (non-negative counts for ``"poisson"`` and ``"log1p"``).
    entity, time
        Labels of the entity (area) and time (period) effects of each observation.
    X
        Regressors (observations x k), e.g. treatment or event-time dummies.
    model
        ``"poisson"``: Poisson with entity and time effects (log link);
        ``"log1p"``: linear model of ``log(1 + y)``; ``"level"``: linear model of ``y``.
        The linear models are fitted with ``linearmodels.PanelOLS``
        (``entity_effects``, ``time_effects``, clustered covariance).
    cluster
        Cluster labels (default: the entity). Every entity must lie in one cluster.
    alpha
        1 - confidence level used by :meth:`FEFit.coefficients`.

    Returns
    -------
    FEFit

    Notes
    -----
    Poisson: :math:`E[y_{it}] = \\exp(a_i + g_t + x_{it}'\\beta)`. With
    :math:`n_i = \\sum_t y_{it}` and :math:`\\theta = (g, \\beta)`, the area
    effects are concentrated out, leaving the conditional (multinomial)
    log-likelihood :math:`\\sum_{it} y_{it}\\log p_{it}` with
    :math:`p_{it} = e^{z_{it}'\\theta} / \\sum_s e^{z_{is}'\\theta}`, maximised
    by Newton's method; its maximiser is the Poisson MLE. The covariance is the
    cluster sandwich :math:`\\frac{G}{G-1} H^{-1} (\\sum_g S_g S_g') H^{-1}` with
    :math:`S_g = \\sum_{i \\in g} \\sum_t (y_{it} - n_i p_{it}) z_{it}` and
    :math:`H = \\sum_i n_i \\sum_t p_{it}(z_{it} - \\bar z_i)(z_{it} - \\bar z_i)'`,
    which equals the cluster-robust covariance of a Poisson regression with
    area dummies when clusters contain whole areas (Wooldridge 1999).

    Linear: :math:`y_{it} = a_i + g_t + x_{it}'\\beta + e_{it}` by PanelOLS
    (within transformation), cluster-robust covariance with linearmodels'
    defaults.
    """
    check_choice("model", model, FE_MODELS)
    _check_alpha(alpha)
    y = np.asarray(y, dtype=float)
    if not isinstance(X, pd.DataFrame):
        raise TypeError("X must be a DataFrame (its columns name the coefficients)")
    n = y.size
    if X.shape[0] != n or len(entity) != n or len(time) != n:
        raise ValueError("y, entity, time and X must have the same number of rows")
    if not np.isfinite(y).all():
        raise ValueError("y must be finite")
    ent, _ = _codes(entity)
    tim, _ = _codes(time)
    clu, _ = _codes(ent if cluster is None else cluster)
    names = tuple(str(c) for c in X.columns)
    Xv = X.to_numpy(dtype=float)
    if model == "poisson":
        if (y < 0).any():
            raise ValueError("the Poisson model needs non-negative outcomes")
        return _fit_poisson_fe(y, ent, tim, clu, Xv, names, alpha)
    if model == "log1p":
        if (y < 0).any():
            raise ValueError("log1p needs non-negative outcomes")
        y = np.log1p(y)
    return _fit_panelols(y, ent, tim, clu, Xv, names, alpha, model)


def _fit_panelols(y, ent, tim, clu, Xv, names, alpha, model) -> FEFit:
    from linearmodels.panel import PanelOLS

    index = pd.MultiIndex.from_arrays([ent, tim], names=["entity", "time"])
    exog = pd.DataFrame(Xv, index=index, columns=[f"x{j}" for j in range(Xv.shape[1])])
    dep = pd.Series(y, index=index, name="y")
    mod = PanelOLS(dep, exog, entity_effects=True, time_effects=True, drop_absorbed=False)
    clusters = pd.DataFrame({"cluster": clu}, index=index)
    try:
        res = mod.fit(cov_type="clustered", clusters=clusters, low_memory=True)
    except ValueError as exc:
        raise DesignError(f"the fixed-effects regression cannot be fitted: {exc}") from None
    params = res.params.to_numpy(dtype=float)
    cov = res.cov.to_numpy(dtype=float)
    return FEFit(
        model=model,
        names=names,
        params=params,
        cov=cov,
        n_obs=int(res.nobs),
        n_entities=int(res.entity_info["total"]),
        n_clusters=len(np.unique(clu)),
        alpha=alpha,
    )


def _fit_poisson_fe(y, ent, tim, clu, Xv, names, alpha, *, tol=1e-10, max_iter=100) -> FEFit:
    n, k = Xv.shape
    params = np.full(k, np.nan)
    cov = np.full((k, k), np.nan)
    keep = np.ones(n, dtype=bool)
    # Dummies whose cells hold no events: coefficient -inf; their rows drop out.
    unidentified = []
    for j in range(k):
        col = Xv[:, j]
        is_dummy = np.isin(col, (0.0, 1.0)).all()
        if is_dummy and col.any() and y[col == 1].sum() == 0:
            unidentified.append(j)
            keep &= col == 0
    # Periods with no events anywhere (time effect -inf) and entities without events.
    t_tot = np.bincount(tim[keep], weights=y[keep], minlength=tim.max() + 1)
    keep &= t_tot[tim] > 0
    e_tot = np.bincount(ent[keep], weights=y[keep], minlength=ent.max() + 1)
    keep &= e_tot[ent] > 0
    if not keep.any():
        raise DesignError("no events in the data: the Poisson model cannot be fitted")
    yk = y[keep]
    ek, n_ent = _codes(ent[keep])
    tk, n_time = _codes(tim[keep])
    ck, n_clu = _codes(clu[keep])
    cols = [j for j in range(k) if j not in unidentified]
    Xk = Xv[keep][:, cols]
    # regressors: time dummies then X, as a sparse matrix. One time dummy is
    # dropped per connected block of entities and periods (stacked designs
    # have one block per site), since the area effects absorb their sum.
    graph = sparse.csr_matrix(
        (np.ones(yk.size), (ek, n_ent + tk)), shape=(n_ent + n_time, n_ent + n_time)
    )
    _, comp = connected_components(graph, directed=False)
    t_comp = comp[n_ent:]
    _, first = np.unique(t_comp, return_index=True)
    t_keep = np.setdiff1d(np.arange(n_time), first)
    t_col = np.full(n_time, -1)
    t_col[t_keep] = np.arange(t_keep.size)
    rows = np.flatnonzero(t_col[tk] >= 0)
    T = sparse.csr_matrix(
        (np.ones(rows.size), (rows, t_col[tk[rows]])), shape=(yk.size, t_keep.size)
    )
    nz = [j for j in range(Xk.shape[1]) if np.any(Xk[:, j] != 0)]
    if len(nz) < Xk.shape[1]:
        missing = [names[cols[j]] for j in range(Xk.shape[1]) if j not in nz]
        raise DesignError(f"regressor(s) {', '.join(missing)} are zero in every informative row")
    Z = sparse.hstack([T, sparse.csr_matrix(Xk)], format="csr")
    E = sparse.csr_matrix((np.ones(yk.size), (ek, np.arange(yk.size))), shape=(n_ent, yk.size))
    n_i = np.asarray(E @ yk).ravel()
    pos = yk > 0
    theta = np.zeros(Z.shape[1])

    def probs(th):
        eta = Z @ th
        emax = np.full(n_ent, -np.inf)
        np.maximum.at(emax, ek, eta)
        ex = np.exp(eta - emax[ek])
        s = np.asarray(E @ ex).ravel()
        return ex / s[ek], eta - emax[ek] - np.log(s[ek])

    def hessian(p):
        mu = n_i[ek] * p
        Zbar = E @ sparse.diags(p) @ Z
        H = Z.T @ sparse.diags(mu) @ Z - Zbar.T @ sparse.diags(n_i) @ Zbar
        return mu, np.asarray(H.todense())

    p, logp = probs(theta)
    ll = float(yk[pos] @ logp[pos])
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        mu, H = hessian(p)
        grad = Z.T @ (yk - mu)
        try:
            step = np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            raise DesignError(
                "the Poisson fixed-effects model is not identified (collinear regressors)"
            ) from None
        t = 1.0
        while True:
            new = theta + t * step
            p_new, logp_new = probs(new)
            ll_new = float(yk[pos] @ logp_new[pos])
            if ll_new >= ll - 1e-12 * abs(ll) or t < 1e-8:
                break
            t /= 2
        theta, p, logp, ll = new, p_new, logp_new, ll_new
        if np.max(np.abs(t * step)) < tol:
            converged = True
            break
    mu, H = hessian(p)
    if np.linalg.cond(H) > 1e12:
        raise DesignError(
            "the Poisson fixed-effects model is not identified (collinear regressors)"
        )
    Hinv = np.linalg.inv(H)
    C = sparse.csr_matrix((np.ones(yk.size), (ck, np.arange(yk.size))), shape=(n_clu, yk.size))
    S = np.asarray((C @ sparse.diags(yk - mu) @ Z).todense())
    B = S.T @ S
    V = Hinv @ B @ Hinv * (n_clu / (n_clu - 1) if n_clu > 1 else np.nan)
    nt = t_keep.size
    params[cols] = theta[nt:]
    cov[np.ix_(cols, cols)] = V[nt:, nt:]
    params[unidentified] = -np.inf
    return FEFit(
        model="poisson",
        names=names,
        params=params,
        cov=cov,
        n_obs=int(keep.sum()),
        n_entities=n_ent,
        n_clusters=n_clu,
        alpha=alpha,
        converged=converged,
        iterations=it,
    )


# ---------------------------------------------------------------------------
# window effects and event-time bins
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowEffect:
    """Effect over a window of post periods in the treated areas.

    ``observed`` is the treated areas' total over the window, ``counterfactual``
    the total expected without the intervention, ``effect = observed -
    counterfactual``; ``pct_change = observed/counterfactual - 1`` with its
    interval; ``log_ratio_se`` is the delta-method SE of ``log(O/C)`` (log
    models) and ``effect_se`` the SE of the effect in counts (level model).
    ``p_value`` is two-sided, ``p_lower`` one-sided for a reduction.
    """

    n_periods: int
    observed: float
    counterfactual: float
    effect: float
    pct_change: float
    ci_low: float
    ci_high: float
    log_ratio_se: float
    effect_se: float
    p_value: float
    p_lower: float


def _window_effect(
    fit: FEFit,
    terms: Sequence[str],
    observed: Sequence[float],
    cells: Sequence[int],
    n_periods: int,
    closed_form: Sequence[float] | None = None,
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
            lo, hi = math.expm1(log_ratio - z * se), math.expm1(log_ratio + z * se)
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
        p_value=float(2 * stats.norm.sf(abs(stat))) if math.isfinite(stat) else float("nan"),
        p_lower=float(stats.norm.cdf(stat)) if math.isfinite(stat) else float("nan"),
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
    picks = np.argsort(rng.random((n_placebo, nc)), axis=1)[:, :m]
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


def _placebo_window(pl: _Placebo, w_cols: np.ndarray, ref_cols: np.ndarray):
    """Studentised statistic of the treated group and of every placebo group.

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
    t_p = est_p / se_p
    return float(est_t / se_t), float(se_t), t_p[np.isfinite(t_p)]


def _placebo_wald(pl: _Placebo, lead_cols: Sequence[np.ndarray], ref_cols: np.ndarray):
    """Poisson-scaled Wald statistic of the leads for the treated and every placebo group.

    With :math:`b_k = \\log((Y_k+.5)/(Y_{ref}+.5)) - \\log(R_k/R_{ref})`, the
    Poisson covariance is :math:`D + c 11'` (:math:`D = diag(1/(Y_k+.5))`,
    :math:`c = 1/(Y_{ref}+.5)`), and by Sherman-Morrison
    :math:`W = \\sum_k d_k b_k^2 - c(\\sum_k d_k b_k)^2/(1 + c\\sum_k d_k)`.
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
        db = (d * b).sum(axis=-1)
        return (d * b**2).sum(axis=-1) - c * db**2 / (1.0 + c * d.sum(axis=-1))

    w_t = float(wald(pl.treated[None, :], pl.controls[None, :])[0])
    w_p = wald(pl.sums, pl.rest)
    return w_t, w_p[np.isfinite(w_p)]


def _calibrated(t_real: float, t_placebo: np.ndarray, alpha: float) -> dict[str, float]:
    """Placebo p-values and the critical value for ``|t|`` at level ``alpha``."""
    n = t_placebo.size
    if n < 19:
        raise DesignError(f"only {n} usable placebo groups; placebo inference needs at least 19")
    return {
        "p_value": float((1 + np.sum(np.abs(t_placebo) >= abs(t_real))) / (n + 1)),
        "p_lower": float((1 + np.sum(t_placebo <= t_real)) / (n + 1)),
        "crit": float(np.quantile(np.abs(t_placebo), 1 - alpha)),
        "n": float(n),
    }


def _placebo_effect(
    e: WindowEffect, cal: dict[str, float], se_poisson: float, z: float
) -> WindowEffect:
    """Replace the interval and p-values of a log-scale window effect by placebo ones."""
    # a window without events (-100%) is centred at log(0.5 / C) for the interval
    log_ratio = math.log(max(e.observed, 0.5) / e.counterfactual)
    half = cal["crit"] * se_poisson
    return WindowEffect(
        n_periods=e.n_periods,
        observed=e.observed,
        counterfactual=e.counterfactual,
        effect=e.effect,
        pct_change=e.pct_change,
        ci_low=-1.0 if e.observed == 0 else math.expm1(log_ratio - half),
        ci_high=math.expm1(log_ratio + half),
        log_ratio_se=half / z,
        effect_se=e.effect_se,
        p_value=cal["p_value"],
        p_lower=cal["p_lower"],
    )


def event_time_bins(event_time: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """Event times clipped to ``window``: ``k <= lo`` -> ``lo``, ``k >= hi`` -> ``hi``."""
    lo, hi = window
    return np.clip(np.asarray(event_time, dtype=np.int64), lo, hi)


def _event_name(k: int) -> str:
    return f"e{k:+d}"


def _event_frame(fit: FEFit, ks: Sequence[int], treated_obs: Mapping[int, tuple[int, float]]):
    rows = []
    z = fit.z
    for k in ks:
        if k == -1:
            est, se = 0.0, 0.0
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
    if fit.model in LOG_MODELS:
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


# ---------------------------------------------------------------------------
# site-level design
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OutcomeDID:
    """DID and event study of one outcome of one site (see :class:`DIDResults`)."""

    outcome: str
    static: FEFit
    windows: Mapping[str, WindowEffect]
    event: FEFit | None
    event_frame: pd.DataFrame
    pretrend: Mapping[str, float]
    choices: Mapping[str, Any]


@dataclass(frozen=True)
class DIDResults:
    """Results of :class:`DID` for one site (read-only).

    Attributes
    ----------
    site_id, model
        The site and the model (``"poisson"``, ``"log1p"``, ``"level"``).
    inference
        ``"placebo"`` (placebo-area intervals, p-values and pre-trend test) or
        ``"cluster"`` (area-clustered SEs); see :class:`DID`.
    alpha, last_k, window
        1 - confidence level; length of the ``last{k}`` window; event-time window.
    outcomes, by_outcome
        Fitted outcomes and outcome -> :class:`OutcomeDID`.
    """

    site_id: str
    model: str
    inference: str
    alpha: float
    last_k: int
    window: tuple[int, int]
    outcomes: tuple[str, ...]
    by_outcome: Mapping[str, OutcomeDID]
    design: str = "did"

    @property
    def windows(self) -> tuple[str, str]:
        return ("post", f"last{self.last_k}")

    def _get(self, outcome: str | None) -> OutcomeDID:
        outcome = self.outcomes[0] if outcome is None else outcome
        try:
            return self.by_outcome[outcome]
        except KeyError:
            raise KeyError(
                f"outcome {outcome!r} not fitted; fitted: {', '.join(self.outcomes)}"
            ) from None

    def method(self, outcome: str | None = None) -> str:
        """The ``method`` text of the effects rows."""
        conf = f"{100 * (1 - self.alpha):g}%"
        scale = {
            "poisson": "rate ratio, delta method on log(O/C)",
            "log1p": "exp(beta) of log(1+y) taken as the rate ratio (approximation), delta method",
            "level": "effect in counts, CI mapped to % change",
        }[self.model]
        if self.inference == "placebo":
            return (
                f"{MODEL_LABEL[self.model]} DID (area and period effects; rate ratio), "
                "placebo-area studentised permutation interval and p-value "
                f"{conf}, two-sided"
            )
        return (
            f"{MODEL_LABEL[self.model]} DID (area and period effects, SEs clustered by area; "
            f"{scale}) {conf}, two-sided"
        )

    def effects(self) -> pd.DataFrame:
        """Tidy effects (design ``"did"``): one row per outcome and window.

        ``observed`` is the treated areas' total over the window,
        ``counterfactual`` the total without the intervention implied by the
        DID coefficients; ``p_value`` is two-sided (normal reference).
        """
        rows = []
        for outcome in self.outcomes:
            windows = self.by_outcome[outcome].windows
            ordered = {w: windows[w] for w in self.windows}
            rows += window_rows(self.site_id, outcome, self.design, ordered, self.method(outcome))
        return effects_frame(rows)

    def window_effect(self, outcome: str, window: str) -> WindowEffect:
        """The full :class:`WindowEffect` of an outcome and window."""
        o = self._get(outcome)
        if window not in o.windows:
            raise KeyError(f"window {window!r}; available: {', '.join(o.windows)}")
        return o.windows[window]

    def p_value_lower(self, outcome: str, window: str = "post") -> float:
        """One-sided p-value of a reduction (same statistic as ``effects()['p_value']``)."""
        return self.window_effect(outcome, window).p_lower

    def event_study(self, outcome: str | None = None) -> pd.DataFrame:
        """Event-time coefficients (reference period -1 fixed at 0).

        Columns ``event_time, estimate, se, ci_low, ci_high, p_value,
        n_treated_cells, treated_count, reference`` (log models also
        ``pct_estimate, pct_ci_low, pct_ci_high``). End bins pool all earlier /
        later periods.
        """
        return self._get(outcome).event_frame.copy()

    def pretrend_test(self, outcome: str | None = None) -> dict[str, float]:
        """Joint test that every lead (event time <= -2) is zero: ``stat, df, p_value``.

        Cluster inference: Wald chi-square. Placebo inference: the Poisson-scaled
        Wald statistic of the leads against its placebo distribution.
        """
        return dict(self._get(outcome).pretrend)

    def get_plot_data(self, outcome: str | None = None) -> pd.DataFrame:
        """Series behind :func:`dmi_eval.plots.did.plot_event_study`.

        ``event_time, estimate, ci_low, ci_high, scale, reference``; for the
        log models the estimates are percent changes (fractions).
        """
        return _event_plot_data(self._get(outcome).event_frame, self.model)

    def title(self, outcome: str | None = None) -> str:
        o = self._get(outcome)
        return f"{self.site_id}: {o.outcome}, event study ({MODEL_LABEL[self.model]})"

    def choices(self, outcome: str | None = None) -> dict[str, Any]:
        return dict(self._get(outcome).choices)

    def diagnostics(self) -> pd.DataFrame:
        """One row per outcome: sample sizes and the pre-trend test."""
        rows = []
        for outcome in self.outcomes:
            o = self.by_outcome[outcome]
            rows.append(
                {
                    "site": self.site_id,
                    "outcome": outcome,
                    "design": self.design,
                    "model": self.model,
                    "n_treated_areas": o.choices["n_treated_areas"],
                    "n_control_areas": o.choices["n_control_areas"],
                    "n_pre": o.choices["n_pre"],
                    "n_post": o.choices["n_post"],
                    "n_clusters": o.static.n_clusters,
                    "pretrend_stat": o.pretrend["stat"],
                    "pretrend_df": o.pretrend["df"],
                    "pretrend_p": o.pretrend["p_value"],
                }
            )
        return pd.DataFrame(rows)

    def describe(self) -> str:
        """Plain-text account of the choices, one paragraph per outcome."""
        lines = []
        for outcome in self.outcomes:
            o = self.by_outcome[outcome]
            c = o.choices
            pt = o.pretrend
            if self.inference == "placebo":
                how = (
                    f"placebo-area inference ({c['n_placebo']} placebo groups of control areas, "
                    f"seed {c['seed']})"
                )
                test = (
                    f"placebo-calibrated pre-trend test of {pt['df']:g} leads, "
                    f"W = {pt['stat']:.2f}, p = {pt['p_value']:.3f}"
                )
            else:
                how = "standard errors clustered by area"
                test = (
                    f"joint pre-trend Wald test chi2({pt['df']:g}) = {pt['stat']:.2f}, "
                    f"p = {pt['p_value']:.3f}"
                )
            lines.append(
                f"{outcome}: {MODEL_LABEL[self.model]} difference-in-differences of "
                f"{c['n_treated_areas']} treated areas against {c['n_control_areas']} donor areas "
                f"(catchment areas excluded), area and period fixed effects, {how}; "
                f"{c['n_pre']} pre and {c['n_post']} post periods, "
                f"{c['n_transition']} transition period(s) excluded; windows: whole post period "
                f"and last {c['last_k_used']} periods. Event study over event times "
                f"{self.window[0]}..{self.window[1]} (end bins pooled, reference -1); {test}."
            )
        return "\n".join(lines)


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
    alpha
        1 - confidence level.
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
        Number of placebo groups of control areas.
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
    therefore placebo-area inference: ``n_placebo`` groups :math:`P` of as
    many control areas as there are treated areas are drawn at random; for
    the treated group and each placebo group the closed-form Poisson DID log
    ratio of a window against the pre period, :math:`L_P = \\log\\frac{Y_{P,W}
    + 1/2}{Y_{P,pre} + 1/2} - \\log\\frac{R_{W}}{R_{pre}}` (:math:`R` the
    other controls), is studentised by its Poisson SE :math:`s_P =
    (1/(Y_{P,W}+\\tfrac12) + 1/(Y_{P,pre}+\\tfrac12))^{1/2}`. The two-sided
    p-value is the share of placebo :math:`|t_P| \\ge |t_{treated}|` (with the
    usual +1), the interval is :math:`\\log(O_W/C_W) \\pm q\\, s_{treated}`
    with :math:`q` the :math:`1-\\alpha` quantile of :math:`|t_P|`. Event-time
    intervals use the same construction with bin :math:`k` against bin
    :math:`-1`, and the pre-trend test compares the Poisson-scaled Wald
    statistic of the leads with its placebo distribution. Studentising
    carries the treated group's own count level into the interval; the
    placebo spread carries over-dispersion, serial correlation and
    departures from parallel trends among comparable areas.
    """

    def __init__(
        self,
        site_data: SiteData,
        *,
        outcomes: Sequence[str] | None = None,
        model: FEModel = "poisson",
        last_k: int = 6,
        alpha: float = 0.05,
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
        if not isinstance(last_k, int) or isinstance(last_k, bool) or last_k < 1:
            raise ValueError(f"last_k must be a positive integer; got {last_k!r}")
        _check_alpha(alpha)
        self.window = _check_window(window)
        chosen = tuple(site_data.outcomes if outcomes is None else outcomes)
        unknown = [o for o in chosen if o not in site_data.outcomes]
        if unknown or not chosen:
            raise ValueError(
                f"outcomes {unknown or chosen!r} not among the site's outcomes "
                f"({', '.join(site_data.outcomes)})"
            )
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
        self.alpha = alpha
        self.event_study = event_study

    def fit(self) -> DIDResults:
        """Fit every outcome; returns :class:`DIDResults`."""
        by_outcome = {o: self._fit_outcome(o, i) for i, o in enumerate(self.outcomes)}
        return DIDResults(
            site_id=self.site_id,
            model=self.model,
            inference=self.inference,
            alpha=self.alpha,
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
            static = fit_fe(y, entity, time, X, model=self.model, alpha=self.alpha)
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
                ),
                f"last{self.last_k}": _window_effect(
                    static,
                    ["post_last"],
                    [obs["post_last"]],
                    [cells["post_last"]],
                    k,
                    [closed["post_last"]],
                ),
            }
        except DesignError as exc:
            raise DesignError(f"{where}: {exc}") from None
        event_fit = None
        frame = pd.DataFrame()
        pretrend = {"stat": float("nan"), "df": 0.0, "p_value": float("nan"), "n_dropped": 0.0}
        if self.event_study:
            bins = event_time_bins(self.event_time, self.window)
            b_obs = bins[time]
            ks = sorted(set(b_obs[is_tr].tolist()))
            if -1 not in ks:
                raise DesignError(f"{where}: the reference period (event time -1) is missing")
            Xe = pd.DataFrame(
                {_event_name(kk): (is_tr & (b_obs == kk)).astype(float) for kk in ks if kk != -1}
            )
            treated_obs = {
                kk: (int((is_tr & (b_obs == kk)).sum()), float(y[is_tr & (b_obs == kk)].sum()))
                for kk in ks
            }
            try:
                event_fit = fit_fe(y, entity, time, Xe, model=self.model, alpha=self.alpha)
            except DesignError as exc:
                raise DesignError(f"{where}, event study: {exc}") from None
            frame = _event_frame(event_fit, ks, treated_obs)
            leads = [_event_name(kk) for kk in ks if kk <= -2]
            pretrend = event_fit.wald(leads)
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

    def _placebo(self, mat, cols, windows, frame, pretrend, last_cols, position):
        """Placebo-area inference: intervals, p-values and the pre-trend test."""
        rng = np.random.default_rng([self.seed, position])
        n_tr = len(self.treated)
        pl = _draw_placebos(mat[:n_tr][:, cols], mat[n_tr:][:, cols], self.n_placebo, rng)
        z = float(stats.norm.isf(self.alpha / 2))
        pre_l = np.flatnonzero(self.pre[cols])
        post_l = np.flatnonzero(self.post[cols])
        last_l = np.flatnonzero(np.isin(cols, last_cols))
        out = {}
        for name, w_l in (("post", post_l), (f"last{self.last_k}", last_l)):
            t_t, se_t, t_p = _placebo_window(pl, w_l, pre_l)
            out[name] = _placebo_effect(windows[name], _calibrated(t_t, t_p, self.alpha), se_t, z)
        if frame.empty:
            return MappingProxyType(out), frame, pretrend
        bins = event_time_bins(self.event_time, self.window)[cols]
        ref_l = np.flatnonzero(bins == -1)
        frame = frame.copy()
        for i, k in enumerate(frame["event_time"].to_numpy()):
            if k == -1 or not np.isfinite(frame.at[i, "estimate"]):
                continue
            t_t, se_t, t_p = _placebo_window(pl, np.flatnonzero(bins == k), ref_l)
            cal = _calibrated(t_t, t_p, self.alpha)
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
        leads = [np.flatnonzero(bins == k) for k in frame["event_time"] if k <= -2]
        if leads:
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


# ---------------------------------------------------------------------------
# cross-site stacked event study
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class StackedEventStudyResults:
    """Results of :func:`stacked_event_study` (read-only).

    Attributes
    ----------
    model, alpha, window
        Model, 1 - confidence level, event-time window.
    sites
        Sites stacked, with the outcome used for each.
    fit
        The stacked :class:`FEFit` (event-time terms ``e-12`` ... ``e+12``).
    event_frame
        Event-time coefficients (see :meth:`event_study`).
    average_post
        The mean of the post event-time coefficients: ``estimate, se,
        pct_change, ci_low, ci_high, p_value``.
    pretrend
        Joint Wald test that every lead is zero.
    n_controls
        Number of clean control areas.
    """

    model: str
    alpha: float
    window: tuple[int, int]
    sites: Mapping[str, str]
    fit: FEFit
    event_frame: pd.DataFrame
    average_post: Mapping[str, float]
    pretrend: Mapping[str, float]
    n_controls: int
    coverage: pd.DataFrame

    def event_study(self, outcome: str | None = None) -> pd.DataFrame:
        """Event-time coefficients (reference -1 fixed at 0); see :meth:`DIDResults.event_study`."""
        return self.event_frame.copy()

    def pretrend_test(self) -> dict[str, float]:
        return dict(self.pretrend)

    def get_plot_data(self, outcome: str | None = None) -> pd.DataFrame:
        """Series behind :func:`dmi_eval.plots.did.plot_event_study`."""
        return _event_plot_data(self.event_frame, self.model)

    def title(self, outcome: str | None = None) -> str:
        return f"Stacked event study, {len(self.sites)} sites ({MODEL_LABEL[self.model]})"

    def method(self) -> str:
        conf = f"{100 * (1 - self.alpha):g}%"
        return (
            f"stacked event study (Cengiz et al. 2019), {MODEL_LABEL[self.model]}, site x area "
            f"and site x period effects, SEs clustered by area, {conf}, two-sided"
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

    def describe(self) -> str:
        a = self.average_post
        pt = self.pretrend
        lo, hi = self.window
        what = "percent change" if self.model in LOG_MODELS else "change in count per area-period"
        return (
            f"Stacked event study of {len(self.sites)} sites with staggered call-in dates "
            f"(Cengiz et al. 2019): each site is a sub-experiment of its treated areas and the "
            f"{self.n_controls} clean control areas (never treated by any site and outside every "
            f"catchment), over event times {lo}..{hi} around its own call-in; the sub-experiments "
            "are stacked with site-by-area and site-by-period fixed effects and SEs clustered by "
            "area. This avoids naive two-way fixed effects, which use already-treated areas as "
            "controls and are biased when effects differ across sites or grow over time. "
            f"Average post-period {what}: {a['pct_change']:+.1%} "
            f"({100 * (1 - self.alpha):g}% CI {a['ci_low']:+.1%} to {a['ci_high']:+.1%}, "
            f"p = {a['p_value']:.3f}); joint pre-trend test chi2({pt['df']:g}) = "
            f"{pt['stat']:.2f}, p = {pt['p_value']:.3f}."
            if self.model in LOG_MODELS
            else f"Stacked event study of {len(self.sites)} sites; average post effect "
            f"{a['estimate']:+.3f} per area-period (p = {a['p_value']:.3f})."
        )


def stacked_event_study(
    panel: Panel,
    study: Study,
    *,
    outcome: str | None = None,
    window: tuple[int, int] = (-12, 12),
    model: FEModel = "poisson",
    sites: Sequence[str] | None = None,
    alpha: float = 0.05,
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
    alpha
        1 - confidence level.

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
    calendar periods (no already-treated area is ever a control). SEs are
    clustered by area (a control area appears in every sub-experiment). The
    average post effect is :math:`\\bar\\delta = \\frac{1}{K}\\sum_{k > 0}
    \\delta_k` (reported as :math:`e^{\\bar\\delta} - 1` for the log models).
    """
    check_choice("model", model, FE_MODELS)
    _check_alpha(alpha)
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
    fit = fit_fe(y, ent, tim, X, model=model, cluster=clu, alpha=alpha)
    treated_obs = {k: (int((tr & (ev == k)).sum()), float(y[tr & (ev == k)].sum())) for k in ks}
    frame = _event_frame(fit, ks, treated_obs)
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
    coverage = pd.DataFrame(cover)
    coverage["outcome"] = [used_outcomes[s] for s in coverage["site"]]
    return StackedEventStudyResults(
        model=model,
        alpha=alpha,
        window=(lo, hi),
        sites=MappingProxyType(used_outcomes),
        fit=fit,
        event_frame=frame,
        average_post=MappingProxyType(average),
        pretrend=MappingProxyType(pretrend),
        n_controls=len(controls),
        coverage=coverage,
    )
