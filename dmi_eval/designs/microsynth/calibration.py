"""Calibration weights for micro-level synthetic control (numeric core).

Control areas get weights ``w >= 0`` whose weighted totals reproduce the
treated areas' totals on every constraint (an intercept, covariates and
pre-period outcome counts). The algorithm follows linear calibration truncated
at zero as implemented by ``grake`` in the R survey package (Lumley), which the
R microsynth package calls: Newton steps on the Lagrange multipliers, started
from equal weights ``n_treated / n_control``. Collinear constraints are dropped
first; when exact balance is infeasible a least-squares fallback is used.

Everything here works on plain numpy arrays; :mod:`dmi_eval.designs.microsynth`
builds the constraint matrices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

MatchPeriods = Literal["each", "blocks", "total"]

_GINV_TOL = 256 * np.finfo(float).eps
_COLLINEAR_TOL = 1e-7


@dataclass(frozen=True)
class CalibrationFit:
    """Weights for one treated set.

    Attributes
    ----------
    weights
        Weight of every unit (treated units get ``mult``, excluded units 0),
        length ``n_units``.
    method
        ``"exact"`` (calibration converged), ``"fallback"`` (least squares
        on the constraints that could not be met exactly) or ``"failed"``
        (calibration did not converge and the fallback was disabled).
    iterations
        Newton iterations used (0 for the fallback).
    max_misfit
        ``max |target - weighted control total| / (1 + |target|)`` over the
        kept constraints.
    kept
        Boolean mask of constraints used (collinear ones dropped).
    message
        Plain-language note when the fit is not an exact calibration.
    """

    weights: np.ndarray
    method: Literal["exact", "fallback", "failed"]
    iterations: int
    max_misfit: float
    kept: np.ndarray
    message: str = ""
    exact_names: tuple[str, ...] = field(default=())


def pre_period_blocks(
    n_pre: int, mode: MatchPeriods, block_length: int = 3
) -> list[tuple[int, int]]:
    """Index ranges ``[start, stop)`` of the pre-period blocks to match.

    Blocks run backwards from the last pre period (as in microsynth): ``"each"``
    is one block per period, ``"blocks"`` are ``block_length`` periods each (the
    earliest block may be shorter), ``"total"`` is one block of all pre periods.
    The list is ordered latest block first.
    """
    if n_pre < 1:
        raise ValueError("at least one pre period is needed")
    size = {"each": 1, "blocks": block_length, "total": n_pre}[mode]
    if size < 1:
        raise ValueError(f"block_length must be >= 1, got {block_length}")
    blocks = []
    stop = n_pre
    while stop > 0:
        start = max(0, stop - size)
        blocks.append((start, stop))
        stop = start
    return blocks


def independent_columns(x: np.ndarray, tol: float = _COLLINEAR_TOL) -> np.ndarray:
    """Mask of columns of ``x`` that are not linear combinations of earlier ones.

    Columns are scaled to unit length; column ``j`` is dropped when its
    distance to the span of columns ``0..j-1`` (``|R[j, j]|`` of an unpivoted
    QR) is below ``tol``. All-zero columns are dropped. Earlier columns win, as
    in microsynth's reduced-row-echelon check on ``X'X``.
    """
    x = np.asarray(x, dtype=float)
    norms = np.sqrt(np.einsum("ij,ij->j", x, x))
    keep = norms > 0
    if not keep.any():
        return keep
    xs = x[:, keep] / norms[keep]
    # R of the unpivoted QR via the Gram matrix is too ill-conditioned; use QR.
    r = np.linalg.qr(xs, mode="r")
    diag = np.abs(np.diag(r))
    sub = np.ones(xs.shape[1], dtype=bool)
    sub[: len(diag)] = diag > tol
    if xs.shape[1] > len(diag):  # more columns than rows
        sub[len(diag) :] = False
    keep[np.flatnonzero(keep)] = sub
    return keep


def grake_linear(
    x: np.ndarray,
    targets: np.ndarray,
    init: np.ndarray,
    *,
    lower: float = 0.0,
    upper: float = np.inf,
    epsilon: float = 1e-4,
    maxit: int = 250,
) -> tuple[np.ndarray, int, float, bool]:
    """Bounded linear calibration by Newton steps (survey's ``grake``).

    Parameters
    ----------
    x
        Control units x constraints.
    targets
        Treated totals to reproduce.
    init
        Starting weights ``d`` (all equal in microsynth).
    lower, upper
        Bounds on the g-weights ``g = w / d``.
    epsilon, maxit
        Stop when ``max |t - x'w| / (1 + |t|) < epsilon``, or after ``maxit``
        iterations.

    Returns
    -------
    weights, iterations, max_misfit, converged

    Notes
    -----
    With multipliers ``eta`` the g-weights are
    ``g_i = min(max(1 + x_i'eta, lower), upper)``. Each step solves
    ``T deta = t - X'(d g)`` with ``T = X' diag(d * 1[lower < g < upper]) X``
    using the Moore-Penrose inverse (singular values below ``256 eps`` times
    the largest are dropped, as MASS::ginv), starting from ``eta = 0``
    (``g = 1``).
    """
    x = np.asarray(x, dtype=float)
    t = np.asarray(targets, dtype=float)
    d = np.asarray(init, dtype=float).copy()
    sample_total = d @ x
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = t / sample_total
    if np.all(np.isfinite(scales)) and scales.min() > 20:  # grake's pre-scaling
        d = d * float(scales.mean())

    def g_and_deriv(eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = x @ eta
        g = np.minimum(np.maximum(1.0 + u, lower), upper)
        deriv = ((u < upper - 1.0) & (u > lower - 1.0)).astype(float)
        return g, deriv

    eta = np.zeros(x.shape[1])
    g, deriv = g_and_deriv(eta)
    denom = 1.0 + np.abs(t)
    iteration = 1
    converged = False
    while True:
        active = deriv > 0
        xa = x[active]
        tmat = (xa * d[active, None]).T @ xa
        misfit = t - (d * g) @ x
        eta = eta + _ginv(tmat) @ misfit
        g, deriv = g_and_deriv(eta)
        misfit = t - (d * g) @ x
        worst = float(np.max(np.abs(misfit) / denom))
        if worst < epsilon:
            converged = True
            break
        iteration += 1
        if iteration > maxit or not np.isfinite(worst):
            break
    return d * g, iteration, worst, converged


def min_relative_misfit(x: np.ndarray, targets: np.ndarray) -> float:
    """The smallest ``max_j |t_j - x_j'w| / (1 + |t_j|)`` any weights ``w >= 0`` reach.

    A linear programme (HiGHS through :func:`scipy.optimize.linprog`), solved in
    milliseconds: when it is above the calibration's ``epsilon`` no bounded
    calibration can converge, so the Newton iterations of :func:`grake_linear`
    need not be run.

    Notes
    -----
    With ``a_j = x_j / (1 + |t_j|)`` and ``b_j = t_j / (1 + |t_j|)``: minimise
    ``z`` over ``w >= 0, z`` subject to ``-z <= a_j'w - b_j <= z`` for every
    constraint ``j``.
    """
    from scipy.optimize import linprog

    x = np.asarray(x, dtype=float)
    t = np.asarray(targets, dtype=float)
    scale = 1.0 / (1.0 + np.abs(t))
    a = (x * scale).T  # constraints x units
    b = t * scale
    n, p = x.shape
    ones = np.ones((p, 1))
    a_ub = np.vstack([np.hstack([a, -ones]), np.hstack([-a, -ones])])
    b_ub = np.concatenate([b, -b])
    c = np.zeros(n + 1)
    c[-1] = 1.0
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"the calibration feasibility programme failed: {res.message}")
    return float(res.x[-1])


def _ginv(a: np.ndarray) -> np.ndarray:
    """Moore-Penrose inverse dropping singular values below ``256 eps * max``."""
    u, s, vt = np.linalg.svd(a)
    if s.size == 0 or s[0] == 0:
        return np.zeros_like(a.T)
    keep = s > _GINV_TOL * s[0]
    return (vt[keep].T / s[keep]) @ u[:, keep].T


def least_squares_weights(
    x: np.ndarray,
    targets: np.ndarray,
    exact: np.ndarray,
    init: np.ndarray,
    *,
    ridge: float = 1e-6,
) -> np.ndarray | None:
    """Non-negative weights: exact on some constraints, least squares on all.

    Solves ``min 0.5 * sum_j ((t_j - x_j'w) / (1 + |t_j|))^2
    + 0.5 * ridge * sum_i ((w_i - d_i) / d_i)^2`` subject to ``x_k'w = t_k`` for
    the ``exact`` constraints and ``w >= 0`` (a small ridge towards the equal
    starting weights ``d`` makes the solution unique). Returns ``None`` when the
    exact constraints are infeasible. Solved with Clarabel.
    """
    import clarabel
    from scipy import sparse

    from dmi_eval.designs.qp_settings import clarabel_settings

    x = np.asarray(x, dtype=float)
    t = np.asarray(targets, dtype=float)
    n, p = x.shape
    d = np.asarray(init, dtype=float)
    scale = 1.0 / (1.0 + np.abs(t))
    # variables z = [v (n), r (p)] with w = d * v
    xd = x * d[:, None]
    p_mat = sparse.block_diag([sparse.identity(n) * ridge, sparse.identity(p)], format="csc")
    q = np.concatenate([-ridge * np.ones(n), np.zeros(p)])
    # zero cone: scale*(X'w) - r = scale*t ; exact rows: scale*X'w = scale*t
    ls_block = sparse.hstack(
        [sparse.csr_matrix(xd.T * scale[:, None]), -sparse.identity(p)], format="csr"
    )
    ex = np.flatnonzero(exact)
    ex_block = sparse.hstack(
        [sparse.csr_matrix(xd[:, ex].T * scale[ex, None]), sparse.csr_matrix((len(ex), p))],
        format="csr",
    )
    nn_block = sparse.hstack([-sparse.identity(n), sparse.csr_matrix((n, p))], format="csr")
    a_mat = sparse.vstack([ls_block, ex_block, nn_block], format="csc")
    b = np.concatenate([scale * t, scale[ex] * t[ex], np.zeros(n)])
    cones = [clarabel.ZeroConeT(p + len(ex)), clarabel.NonnegativeConeT(n)]
    solver = clarabel.DefaultSolver(p_mat, q, a_mat, b, cones, clarabel_settings())
    sol = solver.solve()
    status = str(sol.status)
    if "Solved" not in status or "Infeasible" in status:
        return None
    v = np.maximum(np.asarray(sol.x[:n]), 0.0)
    return d * v


def calibrate(
    constraints: np.ndarray,
    treated: np.ndarray,
    *,
    use: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    totals: Sequence[Sequence[int]] = (),
    epsilon: float = 1e-4,
    maxit: int = 250,
    fallback: bool = True,
) -> CalibrationFit:
    """Calibration weights of the controls for one treated set.

    Parameters
    ----------
    constraints
        All units x constraints; column 0 must be the intercept (all ones).
    treated
        Boolean mask of treated units.
    use
        Boolean mask of units in the analysis (jackknife replicates leave some
        out); default all.
    names
        Constraint names (for messages).
    totals
        Groups of column indices whose sums are kept exact by the fallback
        (e.g. all pre-period columns of one outcome: its pre-period total).
    epsilon, maxit
        Convergence settings of :func:`grake_linear` (microsynth's defaults).
    fallback
        When exact balance fails, use :func:`least_squares_weights` with the
        intercept and ``totals`` exact.

    Returns
    -------
    CalibrationFit

    Notes
    -----
    With ``m = n_treated / n_treated_used`` (1 unless units are left out), the
    targets are ``t = m * sum_{treated, used} x_i`` and the starting weights
    ``d = m * n_treated_used / n_control_used``; treated units get weight ``m``.
    """
    x_all = np.asarray(constraints, dtype=float)
    treated = np.asarray(treated, dtype=bool)
    n, p = x_all.shape
    use = np.ones(n, dtype=bool) if use is None else np.asarray(use, dtype=bool)
    names = tuple(names) if names is not None else tuple(f"c{j}" for j in range(p))
    trt = treated & use
    con = ~treated & use
    n_t, n_c = int(trt.sum()), int(con.sum())
    if n_t == 0 or n_c == 0:
        raise ValueError("calibration needs at least one treated and one control unit")
    mult = treated.sum() / n_t
    xc = x_all[con]
    t_all = mult * x_all[trt].sum(axis=0)
    init = np.full(n_c, mult * n_t / n_c)

    kept = independent_columns(xc)
    zero_cols = ~np.any(xc != 0, axis=0)
    impossible = zero_cols & (t_all != 0)
    message = ""
    w_c = None
    iterations = 0
    method: Literal["exact", "fallback", "failed"] = "exact"
    reachable = None if impossible.any() else min_relative_misfit(xc[:, kept], t_all[kept])
    if reachable is not None and reachable > 1.01 * epsilon:
        method = "failed"
        message = (
            "exact calibration is impossible: no non-negative weights of the control units "
            f"reproduce the treated totals (smallest reachable relative misfit {reachable:.3g})"
        )
        w_c = init.copy()
    elif not impossible.any():
        w_c, iterations, worst, converged = grake_linear(
            xc[:, kept], t_all[kept], init, epsilon=epsilon, maxit=maxit
        )
        if not converged:
            method = "failed"
            message = (
                f"exact calibration did not converge in {maxit} iterations "
                f"(largest relative misfit {worst:.3g})"
            )
    else:
        bad = [names[j] for j in np.flatnonzero(impossible)][:5]
        method = "failed"
        message = (
            "exact calibration is impossible: no control unit has a non-zero value "
            f"of {', '.join(bad)}"
        )
        w_c = init.copy()
    exact_names: tuple[str, ...] = tuple(names[j] for j in np.flatnonzero(kept))
    if method == "failed" and fallback:
        x_ext, t_ext, exact_mask, ext_names = _fallback_system(xc, t_all, names, totals)
        w_fb = least_squares_weights(x_ext, t_ext, exact_mask, init)
        if w_fb is None:  # totals infeasible: keep only the intercept exact
            exact_mask = np.zeros_like(exact_mask)
            exact_mask[0] = True
            w_fb = least_squares_weights(x_ext, t_ext, exact_mask, init)
        if w_fb is not None:
            w_c = w_fb
            method = "fallback"
            exact_names = tuple(nm for nm, e in zip(ext_names, exact_mask, strict=True) if e)
            message += (
                "; used the fallback: exact balance on "
                + ", ".join(exact_names)
                + ", least squares on the other constraints"
            )
    misfit = t_all[kept] - w_c @ xc[:, kept]
    worst = float(np.max(np.abs(misfit) / (1.0 + np.abs(t_all[kept]))))
    weights = np.zeros(n)
    weights[con] = w_c
    weights[trt] = mult
    return CalibrationFit(
        weights=weights,
        method=method,
        iterations=iterations,
        max_misfit=worst,
        kept=kept,
        message=message,
        exact_names=exact_names,
    )


def _fallback_system(
    xc: np.ndarray, t: np.ndarray, names: Sequence[str], totals: Sequence[Sequence[int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Constraints for the fallback: originals (least squares) plus exact totals."""
    cols = [xc]
    tgts = [t]
    ext_names = list(names)
    exact = [True] + [False] * (xc.shape[1] - 1)  # intercept exact
    for group in totals:
        group = list(group)
        if len(group) <= 1:
            if group:
                exact[group[0]] = True
            continue
        cols.append(xc[:, group].sum(axis=1, keepdims=True))
        tgts.append(np.array([t[group].sum()]))
        base = names[group[0]].rsplit(".", 1)[0]
        ext_names.append(f"{base}.total")
        exact.append(True)
    return np.hstack(cols), np.concatenate(tgts), np.array(exact), ext_names
