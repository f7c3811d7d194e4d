"""DID numeric core: a regression with area and period fixed effects (:func:`fit_fe`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from scipy import sparse, stats
from scipy.sparse.csgraph import connected_components

from dmi_eval.errors import DesignError
from dmi_eval.inference.covariance import cluster_sandwich, cluster_scores
from dmi_eval.options import check_alpha, check_choice

FEModel = Literal["poisson", "log1p", "level"]


FE_MODELS: tuple[str, ...] = get_args(FEModel)


MODEL_LABEL = {
    "poisson": "Poisson fixed-effects",
    "log1p": "PanelOLS on log(1+y)",
    "level": "PanelOLS on counts",
}


LOG_MODELS = frozenset({"poisson", "log1p"})


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
    influence
        Poisson: each cluster's influence on the coefficients,
        :math:`s_g' H^{-1}` (clusters x coefficients; :math:`s_g` the cluster's
        score, :math:`H` the negative Hessian), so that the cluster-robust
        covariance is :math:`\\frac{G}{G-1}\\sum_g c_g c_g'`; the input of a
        wild cluster bootstrap. None for the linear models.
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
    influence: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("params", "cov", "influence"):
            if getattr(self, name) is None:
                continue
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
    check_alpha(alpha)
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
    S = cluster_scores(ck, n_clu, yk - mu, Z)
    V = cluster_sandwich(S, Hinv)
    if np.any(np.diag(V) < 0):
        # H^-1 B H^-1 is positive semi-definite; a negative variance means H was singular
        # to working precision even though solve/cond did not catch it on this machine.
        raise DesignError(
            "the Poisson fixed-effects model is not identified (collinear regressors)"
        )
    nt = t_keep.size
    params[cols] = theta[nt:]
    cov[np.ix_(cols, cols)] = V[nt:, nt:]
    params[unidentified] = -np.inf
    influence = np.full((n_clu, k), np.nan)
    influence[:, cols] = S @ Hinv[:, nt:]
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
        influence=influence,
    )
