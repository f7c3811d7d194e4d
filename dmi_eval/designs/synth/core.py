"""Numeric core of the synthetic-control family (plain NumPy arrays in, arrays out).

Nothing here knows about DMI panels: the functions take an outcome matrix, a
treated vector and masks, and return weights and counterfactual paths. The
site-level models in :mod:`dmi_eval.designs.synth` and the validation cases on
the reference datasets are both built on them.

Conventions: ``Y0`` is a donors x periods array, ``y1`` the treated unit's
periods vector, ``X0`` a predictors x donors array and ``x1`` the treated
unit's predictor vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.optimize import minimize, nnls
from scipy.stats import qmc

Solver = Literal["nnls", "clarabel"]
Algorithm = Literal["exact", "synthdid"]


# ---------------------------------------------------------------------------
# Inner problem: least squares on the simplex
# ---------------------------------------------------------------------------
def simplex_ls(
    A: np.ndarray, b: np.ndarray, *, ridge: float = 0.0, solver: Solver = "nnls"
) -> np.ndarray:
    """Least squares on the unit simplex.

    Solves ``min_w ||A w - b||^2 + ridge * ||w||^2`` subject to ``w >= 0`` and
    ``sum(w) = 1``.

    Parameters
    ----------
    A
        ``(m, J)`` design matrix (one column per donor).
    b
        ``(m,)`` target.
    ridge
        Non-negative ridge penalty on the weights.
    solver
        ``"nnls"`` (default): an exact active-set method (Lawson-Hanson NNLS)
        applied to the homogenised problem below; ``"clarabel"``: the interior
        point QP solver clarabel, for cross-checks.

    Returns
    -------
    numpy.ndarray
        ``(J,)`` weights on the simplex.

    Notes
    -----
    Because ``sum(w) = 1``, ``A w - b = P w`` with ``P = A - b 1'``. For
    ``u = s w`` (``s > 0``, ``w`` on the simplex) the non-negative least-squares
    problem ``min_{u >= 0} ||P u||^2 + ridge ||u||^2 + (1'u - 1)^2`` equals
    ``s^2 (||P w||^2 + ridge ||w||^2) + (s - 1)^2``, whose minimiser in ``w``
    does not depend on ``s``. One NNLS solve on ``[P; sqrt(ridge) I; 1']``
    against ``[0; 0; 1]`` therefore gives the exact simplex solution
    ``w = u / sum(u)``. With a non-negligible ridge the problem is strongly
    convex and is solved faster, to the same precision, by Newton's method on
    its ``T + 1``-dimensional dual (:func:`_simplex_ridge_dual`), falling back
    to NNLS if that does not converge.
    """
    A = np.asarray(A, dtype=float)
    b = np.asarray(b, dtype=float)
    J = A.shape[1]
    if J == 1:
        return np.ones(1)
    if solver == "clarabel":
        return _simplex_ls_clarabel(A, b, ridge)
    if solver != "nnls":
        raise ValueError(f"solver must be 'nnls' or 'clarabel', got {solver!r}")
    P = A - b[:, None]
    scale = float(np.sqrt(np.mean(P**2))) or 1.0
    r = ridge / scale**2
    Ps = P / scale  # once: with thousands of donors each pass over P costs
    if r > 1e-6 * float(np.mean(Ps**2)) * P.shape[0]:
        w = _simplex_ridge_dual(Ps, r)
        if w is not None:
            return w
    rows = [Ps]
    if ridge > 0:
        rows.append(np.sqrt(ridge) / scale * np.eye(J))
    rows.append(np.ones((1, J)))
    M = np.vstack(rows)
    rhs = np.zeros(M.shape[0])
    rhs[-1] = 1.0
    u, _ = nnls(M, rhs, maxiter=50 * J)
    total = u.sum()
    if not np.isfinite(total) or total <= 0:  # pragma: no cover - degenerate input
        return np.full(J, 1.0 / J)
    w = u / total
    w[w < 1e-12] = 0.0
    return w / w.sum()


def _simplex_ridge_dual(P: np.ndarray, r: float, max_iter: int = 100) -> np.ndarray | None:
    """``argmin ||P w||^2 + r ||w||^2`` on the simplex by Newton's method on the dual.

    The dual of the strongly convex problem is the smooth, piecewise-quadratic
    concave maximisation over ``(lam, mu)`` (``T + 1`` numbers) of
    ``-||lam||^2 / 2 - ||(mu 1 - P' lam)_+||^2 / (2 r) + mu``, with
    ``w = (mu 1 - P' lam)_+ / r``. Semismooth Newton steps with backtracking
    identify the support in a few iterations and are then exact; the cost per
    step is ``O(J T + T^3)`` instead of NNLS's ``O((T + J) J^2)``, which
    matters with hundreds of donors. Returns ``None`` if it does not converge
    (the caller falls back to NNLS).
    """
    T, J = P.shape
    lam = np.zeros(T)
    mu = r / J
    Pt = P.T
    neg_eye = -np.eye(T)
    H = np.empty((T + 1, T + 1))
    g = np.empty(T + 1)

    # s = mu 1 - P' lam is kept from the accepted line-search point, so each
    # Newton step costs one product with P' per trial point and no more.
    s = mu - Pt @ lam
    sp = np.maximum(s, 0.0)
    f = -0.5 * lam @ lam - (sp @ sp) / (2 * r) + mu
    for _ in range(max_iter):
        act = s > 0
        PA = P[:, act]
        sA = s[act]
        g_lam = -lam + PA @ sA / r
        g_mu = 1.0 - sA.sum() / r
        gnorm = np.sqrt(g_lam @ g_lam + g_mu**2)
        if gnorm <= 1e-13 * max(1.0, abs(mu) / r):
            w = np.maximum(s, 0.0) / r
            total = w.sum()
            if total <= 0 or not np.isfinite(total):
                return None
            w[w < 1e-12 * w.max()] = 0.0
            return w / w.sum()
        H[:T, :T] = neg_eye - (PA @ PA.T) / r
        H[:T, T] = H[T, :T] = PA.sum(axis=1) / r
        H[T, T] = -act.sum() / r - 1e-12
        g[:T] = g_lam
        g[T] = g_mu
        try:
            d = np.linalg.solve(H, -g)
        except np.linalg.LinAlgError:
            return None
        step = 1.0
        d_lam, d_mu = d[:T], d[T]
        slope = g_lam @ d_lam + g_mu * d_mu
        while step > 1e-10:
            lam_n, mu_n = lam + step * d_lam, mu + step * d_mu
            s_n = mu_n - Pt @ lam_n
            sp = np.maximum(s_n, 0.0)
            f_n = -0.5 * lam_n @ lam_n - (sp @ sp) / (2 * r) + mu_n
            if f_n >= f + 1e-4 * step * slope - 1e-15 * abs(f):
                break
            step *= 0.5
        else:
            return None
        lam, mu, f, s = lam_n, mu_n, f_n, s_n
    return None


def _simplex_ls_clarabel(A: np.ndarray, b: np.ndarray, ridge: float) -> np.ndarray:
    import clarabel
    import scipy.sparse as sp

    from dmi_eval.designs.qp_settings import clarabel_settings

    J = A.shape[1]
    scale = float(np.sqrt(np.mean(A**2))) or 1.0
    As, bs = A / scale, b / scale
    P = sp.csc_matrix(np.triu(As.T @ As + (ridge / scale**2) * np.eye(J)))
    q = -(As.T @ bs)
    Acon = sp.vstack([sp.csc_matrix(np.ones((1, J))), -sp.identity(J, format="csc")]).tocsc()
    bcon = np.r_[1.0, np.zeros(J)]
    cones = [clarabel.ZeroConeT(1), clarabel.NonnegativeConeT(J)]
    settings = clarabel_settings(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    sol = clarabel.DefaultSolver(P, q, Acon, bcon, cones, settings).solve()
    w = np.clip(np.asarray(sol.x, dtype=float), 0.0, None)
    w[w < 1e-9] = 0.0
    return w / w.sum()


# ---------------------------------------------------------------------------
# Classic (ADH) synthetic control with predictor weights V
# ---------------------------------------------------------------------------
def standardise(x1: np.ndarray, X0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Divide each predictor by its sample SD (n-1) across the treated unit and donors.

    Returns ``(x1 / sd, X0 / sd, sd)``; a predictor with zero spread keeps scale 1.
    """
    allx = np.column_stack([x1, X0])
    sd = allx.std(axis=1, ddof=1)
    sd = np.where(sd > 0, sd, 1.0)
    return x1 / sd, X0 / sd[:, None], sd


def w_given_v(x1: np.ndarray, X0: np.ndarray, v: np.ndarray, solver: Solver = "nnls") -> np.ndarray:
    """Donor weights minimising ``(x1 - X0 w)' diag(v) (x1 - X0 w)`` on the simplex."""
    root = np.sqrt(np.clip(v, 0.0, None))
    return simplex_ls(root[:, None] * X0, root * x1, solver=solver)


def _v_of_theta(theta: np.ndarray) -> np.ndarray:
    sq = theta**2
    total = sq.sum()
    if total <= 0:
        return np.full(theta.size, 1.0 / theta.size)
    return sq / total


@dataclass(frozen=True)
class VSolution:
    """One local optimum of the nested V problem."""

    v: np.ndarray
    w: np.ndarray
    loss: float
    start: str


@dataclass(frozen=True)
class VSearch:
    """Result of :func:`search_v`: the best solution and every local optimum found."""

    best: VSolution
    solutions: tuple[VSolution, ...]
    lower_bound: float
    n_evaluations: int
    starts: tuple[str, ...] = field(default=())


def regression_v(x1: np.ndarray, X0: np.ndarray, z1: np.ndarray, Z0: np.ndarray) -> np.ndarray:
    """Synth's regression-based starting V.

    Regress every fit-period outcome on the (standardised) predictors across
    units with an intercept; ``V`` is the normalised diagonal of ``B B'`` for
    the coefficient matrix ``B`` (predictors x periods).
    """
    X = np.column_stack([np.ones(X0.shape[1] + 1), np.column_stack([x1, X0]).T])
    Z = np.vstack([z1, Z0])
    beta, *_ = np.linalg.lstsq(X, Z, rcond=None)
    d = (beta[1:] ** 2).sum(axis=1)
    if not np.all(np.isfinite(d)) or d.sum() <= 0:
        return np.full(X0.shape[0], 1.0 / X0.shape[0])
    d = d + 1e-8 * d.sum()
    return d / d.sum()


def search_v(
    x1: np.ndarray,
    X0: np.ndarray,
    z1: np.ndarray,
    Z0: np.ndarray,
    *,
    n_random: int = 8,
    n_polish: int = 3,
    max_evaluations: int | None = None,
    polish_rounds: int = 2,
    polish_evaluations: int | None = None,
    solver: Solver = "nnls",
) -> VSearch:
    """Choose predictor weights V minimising the fit-period outcome MSPE.

    Parameters
    ----------
    x1, X0
        Standardised predictors of the treated unit ``(k,)`` and donors ``(k, J)``.
    z1, Z0
        Fit-period outcomes of the treated unit ``(T,)`` and donors ``(J, T)``.
    n_random
        Number of deterministic quasi-random (Halton, unscrambled) starts.
    n_polish
        How many of the best local optima get a second, longer Nelder-Mead run.
    max_evaluations
        Nelder-Mead evaluations per start in the first stage (default ``30 k``).
    polish_rounds, polish_evaluations
        Restarts of Nelder-Mead (each with ``polish_evaluations``, default
        ``100 k``) from each of the ``n_polish`` best points, while they improve.
    solver
        Inner simplex solver.

    Returns
    -------
    VSearch

    Notes
    -----
    ``V = diag(v)``, ``v`` on the simplex, is parametrised as
    ``v = theta^2 / sum(theta^2)`` so that the derivative-free Nelder-Mead search
    is unconstrained and can reach exact zeros. The loss is
    ``L(v) = mean_t (z1_t - Z0_t' w(v))^2`` with ``w(v)`` the exact simplex
    solution of the inner problem. Starts: equal weights, Synth's
    regression-based V, one start per predictor with that predictor dominant,
    and ``n_random`` Halton points. Everything is deterministic.
    ``lower_bound`` is the loss of the outcome-only fit (no V can do better).
    """
    k = X0.shape[0]
    Zt = Z0.T  # (T, J)
    n_eval = 0

    # Fast path of w_given_v for the NNLS solver: P = X0 - x1 is fixed, only the
    # row scaling sqrt(v) changes (see simplex_ls for the homogenisation).
    P = X0 - x1[:, None]
    row_ss = (P**2).sum(axis=1)
    J = X0.shape[1]
    M = np.empty((k + 1, J))
    M[k] = 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0

    def w_of(v: np.ndarray) -> np.ndarray:
        if solver != "nnls" or J == 1:
            return w_given_v(x1, X0, v, solver)
        v = np.clip(v, 0.0, None)
        scale = float(np.sqrt(v @ row_ss / (k * J))) or 1.0
        np.multiply((np.sqrt(v) / scale)[:, None], P, out=M[:k])
        u, _ = nnls(M, rhs, maxiter=50 * J)
        total = u.sum()
        if not np.isfinite(total) or total <= 0:  # pragma: no cover - degenerate input
            return np.full(J, 1.0 / J)
        w = u / total
        w[w < 1e-12] = 0.0
        return w / w.sum()

    def loss_of_v(v: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal n_eval
        n_eval += 1
        w = w_of(v)
        r = z1 - Zt @ w
        return float(r @ r) / r.size, w

    def objective(theta: np.ndarray) -> float:
        return loss_of_v(_v_of_theta(theta))[0]

    starts: list[tuple[str, np.ndarray]] = [("equal", np.full(k, 1.0 / k))]
    starts.append(("regression", regression_v(x1, X0, z1, Z0)))
    if k > 1:
        for i in range(k):
            v = np.full(k, 0.5 / (k - 1))
            v[i] = 0.5
            starts.append((f"dominant[{i}]", v))
        if n_random > 0:
            pts = qmc.Halton(d=k, scramble=False).random(n_random + 1)[1:]
            for j, p in enumerate(pts):
                v = 0.05 + p
                starts.append((f"halton[{j}]", v / v.sum()))

    lower = float(np.mean((z1 - Zt @ simplex_ls(Zt, z1, solver=solver)) ** 2))
    if k == 1:
        loss, w = loss_of_v(np.ones(1))
        sol = VSolution(np.ones(1), w, loss, "equal")
        return VSearch(sol, (sol,), lower, n_eval, ("equal",))

    maxfev = max_evaluations or 30 * k

    def run(theta0: np.ndarray, fev: int) -> tuple[np.ndarray, float]:
        step = 0.5 * np.maximum(np.abs(theta0), 0.05)
        simplex = np.vstack([theta0] + [theta0 + step[i] * np.eye(k)[i] for i in range(k)])
        res = minimize(
            objective,
            theta0,
            method="Nelder-Mead",
            options={
                "maxfev": fev,
                "xatol": 1e-6,
                "fatol": 1e-12,
                "initial_simplex": simplex,
            },
        )
        return res.x, float(res.fun)

    found: list[tuple[float, np.ndarray, str]] = []
    for name, v0 in starts:
        theta, f = run(np.sqrt(v0), maxfev)
        found.append((f, theta, name))
    found.sort(key=lambda t: t[0])
    polished: list[tuple[float, np.ndarray, str]] = []
    for f, theta, name in found[:n_polish]:
        best_f, best_theta = f, theta
        for _ in range(polish_rounds):
            theta2, f2 = run(best_theta, polish_evaluations or 100 * k)
            if f2 < best_f - 1e-12 * max(1.0, abs(best_f)):
                best_f, best_theta = f2, theta2
            else:
                break
        polished.append((best_f, best_theta, name + "+polish"))
    solutions = []
    for _f, theta, name in polished + found:
        v = _v_of_theta(theta)
        loss, w = loss_of_v(v)
        solutions.append(VSolution(v, w, loss, name))
    solutions.sort(key=lambda s: (s.loss, s.start))
    return VSearch(solutions[0], tuple(solutions), lower, n_eval, tuple(n for n, _ in starts))


def distinct_solutions(
    solutions: tuple[VSolution, ...], *, rel_tol: float = 0.05, min_distance: float = 0.05
) -> list[VSolution]:
    """Near-optimal local optima with distinct donor weights.

    Keeps solutions whose loss is within ``rel_tol`` (relative) of the best and
    whose weights differ from every kept one by more than ``min_distance`` in
    the L1 norm.
    """
    best = min(s.loss for s in solutions)
    kept: list[VSolution] = []
    for s in sorted(solutions, key=lambda s: (s.loss, s.start)):
        if s.loss > best * (1 + rel_tol) + 1e-12:
            continue
        if all(np.abs(s.w - t.w).sum() > min_distance for t in kept):
            kept.append(s)
    return kept


# ---------------------------------------------------------------------------
# Outcome-only counterfactual paths: SC (level or demeaned), SDID, DID
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PathFit:
    """Counterfactual path of one treated unit.

    ``cf`` has one value per period; ``omega`` are the donor weights and
    ``lam`` the pre-period time weights (``None`` for SC).
    """

    cf: np.ndarray
    omega: np.ndarray
    lam: np.ndarray | None
    intercept: float


def noise_level(Y0pre: np.ndarray) -> float:
    """SD (n-1) of the first differences of the donors' pre-period outcomes."""
    d = np.diff(Y0pre, axis=1)
    if d.size < 2:
        return 0.0
    return float(d.std(ddof=1))


def _fw_step(A: np.ndarray, x: np.ndarray, b: np.ndarray, eta: float) -> np.ndarray:
    Ax = A @ x
    half_grad = (Ax - b) @ A + eta * x
    i = int(np.argmin(half_grad))
    dx = -x.copy()
    dx[i] = 1 - x[i]
    if np.all(dx == 0):
        return x
    derr = A[:, i] - Ax
    step = -(half_grad @ dx) / (derr @ derr + eta * (dx @ dx))
    return x + min(1.0, max(0.0, step)) * dx


def _sc_weight_fw(
    Y: np.ndarray,
    zeta: float,
    *,
    intercept: bool,
    start: np.ndarray | None,
    min_decrease: float,
    max_iter: int,
) -> np.ndarray:
    """synthdid's ``sc.weight.fw``: Frank-Wolfe on ``[A | b]`` with a ridge."""
    if intercept:
        Y = Y - Y.mean(axis=0)
    n, T0 = Y.shape[0], Y.shape[1] - 1
    A, b = Y[:, :T0], Y[:, T0]
    x = np.full(T0, 1.0 / T0) if start is None else start.astype(float).copy()
    eta = n * zeta**2
    vals: list[float] = []
    t = 0
    while t < max_iter and (t < 2 or vals[-2] - vals[-1] > min_decrease**2):
        t += 1
        x = _fw_step(A, x, b, eta)
        err = A @ x - b
        vals.append(zeta**2 * float(x @ x) + float(err @ err) / n)
    return x


def _sparsify(v: np.ndarray) -> np.ndarray:
    v = v.copy()
    v[v <= v.max() / 4] = 0.0
    return v / v.sum()


def _weights_exact(Y: np.ndarray, zeta: float, *, intercept: bool) -> np.ndarray:
    """Exact minimiser of ``||A x + x0 - b||^2 / n + zeta^2 ||x||^2`` on the simplex."""
    if intercept:
        Y = Y - Y.mean(axis=0)
    n, T0 = Y.shape[0], Y.shape[1] - 1
    return simplex_ls(Y[:, :T0], Y[:, T0], ridge=n * zeta**2)


def fit_path(
    y1: np.ndarray,
    Y0: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    *,
    method: Literal["sc", "sc_demeaned", "sdid", "did", "sc_synthdid"],
    algorithm: Algorithm = "exact",
    n_treated: int = 1,
    sc_ridge: float = 0.0,
) -> PathFit:
    """Counterfactual path of ``y1`` from the donors ``Y0`` (outcome only).

    Parameters
    ----------
    y1
        ``(T,)`` treated outcome.
    Y0
        ``(J, T)`` donor outcomes.
    pre, post
        Boolean masks over the ``T`` periods (periods in neither are ignored
        in the fit but still get a counterfactual value).
    method
        ``"sc"``: simplex weights minimising the pre-period squared error;
        ``"sc_demeaned"``: the same after removing each unit's pre-period mean
        (intercept-shifted SC); ``"sdid"``: synthetic difference-in-differences;
        ``"did"``: difference-in-differences (equal weights);
        ``"sc_synthdid"``: the synthdid package's SC (tiny ridge, no intercept).
    algorithm
        ``"exact"``: exact simplex solutions (NNLS active set);
        ``"synthdid"``: the synthdid package's Frank-Wolfe iterations and
        sparsification (for replicating its published numbers).
    n_treated
        Number of treated units averaged into ``y1`` (``N_tr`` in SDID's ridge).
    sc_ridge
        For ``"sc"`` / ``"sc_demeaned"``: ridge ``eta`` relative to SDID's, the
        penalty is ``eta^2 zeta^2 T_pre ||omega||^2`` with SDID's ``zeta``
        (0 = unpenalised classic SC). A penalty stops SC from interpolating the
        treated series exactly when there are many more noisy donors than
        pre periods.

    Returns
    -------
    PathFit

    Notes
    -----
    SDID (Arkhangelsky et al. 2021): unit weights
    ``omega = argmin ||omega_0 + Y0pre' omega - y1pre||^2 + zeta^2 T_pre ||omega||^2``
    with ``zeta = (N_tr T_post)^(1/4) sigma``, ``sigma`` the SD of first
    differences of the donors' pre outcomes; time weights
    ``lambda = argmin ||lambda_0 + Y0pre lambda - mean(Y0post)||^2 + zeta_l^2 J ||lambda||^2``
    with ``zeta_l = 1e-6 sigma``. The counterfactual is
    ``cf_t = omega' Y0_t + lambda' (y1pre - Y0pre' omega)``, so the mean post
    gap is the weighted DID estimate
    ``(ybar1post - lambda' y1pre) - omega' (Y0bar_post - Y0pre lambda)``.
    DID: ``omega = 1/J``, ``lambda = 1/T_pre``. SC: ``lambda = 0``.
    """
    y1 = np.asarray(y1, dtype=float)
    Y0 = np.asarray(Y0, dtype=float)
    J = Y0.shape[0]
    Y0pre, y1pre = Y0[:, pre], y1[pre]
    T0 = int(pre.sum())
    if method == "did":
        omega = np.full(J, 1.0 / J)
        lam = np.full(T0, 1.0 / T0)
    elif method in ("sc", "sc_demeaned"):
        if method == "sc_demeaned":
            A = (Y0pre - Y0pre.mean(axis=1, keepdims=True)).T
            b = y1pre - y1pre.mean()
        else:
            A, b = Y0pre.T, y1pre
        ridge = 0.0
        if sc_ridge > 0:
            zeta = (n_treated * int(post.sum())) ** 0.25 * noise_level(A.T)
            ridge = (sc_ridge * zeta) ** 2 * T0
        omega = simplex_ls(A, b, ridge=ridge)
        if method == "sc":
            return PathFit(omega @ Y0, omega, None, 0.0)
        intercept = float(y1pre.mean() - omega @ Y0pre.mean(axis=1))
        return PathFit(omega @ Y0 + intercept, omega, None, intercept)
    elif method in ("sdid", "sc_synthdid"):
        sigma = noise_level(Y0pre)
        T1 = int(post.sum())
        if method == "sdid":
            zeta_w = (n_treated * T1) ** 0.25 * sigma
            w_intercept = True
        else:
            zeta_w = 1e-6 * sigma
            w_intercept = False
        # unit weights: rows = pre periods, columns = donors + treated
        Yw = np.column_stack([Y0pre.T, y1pre])
        if algorithm == "exact":
            omega = _weights_exact(Yw, zeta_w, intercept=w_intercept)
        else:
            min_dec = 1e-5 * sigma
            omega = _sc_weight_fw(
                Yw, zeta_w, intercept=w_intercept, start=None, min_decrease=min_dec, max_iter=100
            )
            omega = _sc_weight_fw(
                Yw,
                zeta_w,
                intercept=w_intercept,
                start=_sparsify(omega),
                min_decrease=min_dec,
                max_iter=10_000,
            )
        if method == "sc_synthdid":
            return PathFit(omega @ Y0, omega, None, 0.0)
        # time weights: rows = donors, columns = pre periods + post mean
        Yl = np.column_stack([Y0pre, Y0[:, post].mean(axis=1)])
        zeta_l = 1e-6 * sigma
        if algorithm == "exact":
            lam = _weights_exact(Yl, zeta_l, intercept=True)
        else:
            lam = _sc_weight_fw(
                Yl, zeta_l, intercept=True, start=None, min_decrease=1e-5 * sigma, max_iter=10_000
            )
    else:
        raise ValueError(f"unknown method {method!r}")
    intercept = float(lam @ y1pre - omega @ (Y0pre @ lam))
    return PathFit(omega @ Y0 + intercept, omega, lam, intercept)
