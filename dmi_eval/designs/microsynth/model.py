"""Micro-synthetic numeric core on DataFrames (:func:`fit_microsynth`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from dmi_eval.designs.microsynth.calibration import (
    MatchPeriods,
    pre_period_blocks,
)
from dmi_eval.designs.microsynth.inference import (
    MATCH_PERIODS,
    PRIMARY,
    SIDED,
    Calibrator,
    InferenceMethod,
    Primary,
    Sided,
    _ci,
    _inf_row,
    _jack_chunk,
    _jackknife_groups,
    _jackknife_rows,
    _main_task,
    _omnibus_normal_row,
    _p_values,
    _perm_rows,
    _placebo_chunk,
    _window_arrays,
)
from dmi_eval.designs.microsynth.results import MicroSynthResults
from dmi_eval.errors import DesignError
from dmi_eval.inference import parallel_map
from dmi_eval.inference.placebo import draw_placebo_sets
from dmi_eval.options import alpha_of

# ---------------------------------------------------------------------------
# numeric core on DataFrames


def fit_microsynth(
    counts: Mapping[str, pd.DataFrame],
    treated: Sequence[Any],
    pre_periods: Sequence[Any],
    windows: Mapping[str, Sequence[Any]],
    *,
    covariates: pd.DataFrame | None = None,
    match_outcomes: Sequence[str] | None = None,
    match_periods: MatchPeriods = "each",
    block_length: int = 3,
    level: float = 0.90,
    mde_alpha: float = 0.05,
    sided: Sided = "lower",
    n_permutations: int = 0,
    jackknife: bool | int = False,
    primary: Primary = "auto",
    seed: int | None = None,
    n_jobs: int = 1,
    epsilon: float = 1e-4,
    maxit: int = 250,
    fallback: bool = True,
    site: str = "",
) -> MicroSynthResults:
    """Fit micro-level synthetic control on units x periods count frames.

    Parameters
    ----------
    counts
        Outcome -> DataFrame (units x periods) of counts; every frame has the
        same index (unit ids) and columns (periods, in time order).
    treated
        Ids of the treated units.
    pre_periods
        Columns used for matching (the pre period).
    windows
        Window name -> post-period columns over which effects are summed.
    covariates
        Unit covariates (index = unit ids) matched exactly, or ``None``.
    match_outcomes
        Outcomes matched on their pre-period counts (default: all in ``counts``).
    match_periods
        ``"each"`` pre period, ``"blocks"`` of ``block_length`` periods counted
        back from the last pre period, or the pre-period ``"total"``.
    level
        Confidence level of the equal-tailed intervals (default 0.90, as the
        Seattle evaluation); ``alpha = 1 - level`` below.
    mde_alpha
        One-sided level of the test whose minimum detectable reduction the
        results' diagnostics state (``mde``, ``mde_last``).
    sided
        ``"lower"`` (a reduction; the Seattle evaluation's test), ``"greater"``
        or ``"two-sided"``: which p-value is reported as ``p_value``.
    n_permutations
        Placebo treated sets (drawn up front from ``seed`` among all units);
        0 skips the permutation test.
    jackknife
        ``True``: as many groups as the smaller of treated/control counts;
        an int: that many groups; ``False``: no jackknife.
    primary
        Inference behind :meth:`MicroSynthResults.effects` by default.
    seed
        Required when permutations or the jackknife are requested.
    n_jobs
        Worker processes for the placebo weights (joblib); results do not
        depend on it.
    epsilon, maxit
        Calibration convergence (microsynth's defaults 1e-4 and 250).
    fallback
        When exact balance is infeasible, keep the intercept and each matched
        outcome's pre-period total exact and fit the other constraints by
        least squares (non-negative weights); the results carry a note.

    Returns
    -------
    MicroSynthResults

    Notes
    -----
    Weights ``w_i >= 0`` of the control units solve ``sum_C w_i x_i = sum_T x_i``
    for the constraint vectors ``x_i`` (intercept, covariates, pre-period
    counts) by linear calibration truncated at zero: ``w_i = d (1 + x_i'eta)_+``
    with ``d = n_T / n_C`` and ``eta`` found by Newton steps (survey::grake).
    For outcome ``y`` and a window of ``m`` post periods the treated total is
    ``Y_T = sum_T sum_t y_it`` and the synthetic total ``Y_S = sum_C w_i sum_t y_it``;
    the percent change is ``Y_T / Y_S - 1``. The linearization interval is
    ``exp(log(yT/yC) +- z_{1-alpha/2} se) - 1`` where ``yC = mean_t gamma_t``,
    ``yT = yC + beta`` from the weighted regression
    ``y_it = beta treat_i + gamma_t`` over the post rows and ``se`` is the
    delta-method standard error from its sandwich covariance. Jackknife:
    ``V = (G-1)/G sum_g (theta_g - theta)(theta_g - theta)'`` with weights
    recomputed in each replicate. Permutation (microsynth's ``use.survey = TRUE``):
    ``p_lower = mean_b(z_b < z)`` over placebo sets ``b`` with an exact
    synthetic control (weights recomputed for each; ``z`` the linearization
    z-statistic), ``p_upper = mean_b(z_b > z)``, two-sided
    ``2 min(p_lower, 1 - p_lower)``; interval
    ``(exp(L - se q_{1-alpha/2}) - 1, exp(L - se q_{alpha/2}) - 1)`` where
    ``L`` is the log ratio and ``q`` are quantiles of the standardised log
    ratios ``L_b / se_b`` (observed included). When every placebo set can be
    enumerated (``C(n, n_T) - 1 <= n_permutations``) all are used once.
    """
    if sided not in SIDED:
        raise ValueError(f"sided must be one of {', '.join(SIDED)}; got {sided!r}")
    if match_periods not in MATCH_PERIODS:
        raise ValueError(f"match_periods must be one of {', '.join(MATCH_PERIODS)}")
    if primary not in PRIMARY:
        raise ValueError(f"primary must be one of {', '.join(PRIMARY)}; got {primary!r}")
    alpha = alpha_of(level)
    if (
        isinstance(n_permutations, bool)
        or int(n_permutations) != n_permutations
        or n_permutations < 0
    ):
        raise ValueError(f"n_permutations must be a non-negative integer; got {n_permutations!r}")
    if int(n_jobs) < 1:
        raise ValueError(f"n_jobs must be >= 1; got {n_jobs}")
    outcomes = tuple(counts)
    if not outcomes:
        raise DesignError("microsynth needs at least one outcome")
    first = counts[outcomes[0]]
    units = first.index
    periods = first.columns
    for name, frame in counts.items():
        if not (frame.index.equals(units) and frame.columns.equals(periods)):
            raise ValueError(f"counts[{name!r}] has different units or periods than the first")
        values = frame.to_numpy(dtype=float)
        if not np.isfinite(values).all() or (values < 0).any():
            raise DesignError(f"counts[{name!r}] has missing or negative values")
    treat = units.isin(list(treated))
    if treat.sum() != len(set(treated)):
        missing = sorted(set(treated) - set(units))[:5]
        raise DesignError(f"treated units not in the data: {missing}")
    n = len(units)
    n_t = int(treat.sum())
    if n_t == 0 or n_t == n:
        raise DesignError("microsynth needs at least one treated and one control unit")
    pre_idx = periods.get_indexer(list(pre_periods))
    if len(pre_idx) == 0 or (pre_idx < 0).any():
        raise DesignError("microsynth needs at least one pre period present in the data")
    win_idx = {}
    for wname, wper in windows.items():
        idx = periods.get_indexer(list(wper))
        if len(idx) == 0 or (idx < 0).any():
            raise DesignError(f"window {wname!r} has periods not in the data (or none)")
        win_idx[wname] = idx
    if not win_idx:
        raise DesignError("microsynth needs at least one post-period window")
    match_outcomes = tuple(outcomes if match_outcomes is None else match_outcomes)
    unknown = [o for o in match_outcomes if o not in counts]
    if unknown:
        raise ValueError(f"match_outcomes not in counts: {unknown}")

    # --- constraint matrix: intercept, covariates, pre-period blocks ---------
    cols = [np.ones(n)]
    names = ["Intercept"]
    if covariates is not None and covariates.shape[1] > 0:
        cov = covariates.reindex(units)
        if cov.isna().any().any():
            bad = cov.columns[cov.isna().any()].tolist()[:5]
            raise DesignError(f"covariates missing for some units (columns {bad})")
        for c in cov.columns:
            cols.append(cov[c].to_numpy(dtype=float))
            names.append(str(c))
    blocks = pre_period_blocks(len(pre_idx), match_periods, block_length)
    totals = []
    for o in match_outcomes:
        arr = counts[o].to_numpy(dtype=float)[:, pre_idx]
        group = []
        for start, stop in blocks:
            cols.append(arr[:, start:stop].sum(axis=1))
            lab = (
                f"{o}.{periods[pre_idx[start]]}"
                if stop - start == 1
                else f"{o}.{periods[pre_idx[start]]}.{periods[pre_idx[stop - 1]]}"
            )
            names.append(lab)
            group.append(len(names) - 1)
        totals.append(tuple(group))
    constraints = np.column_stack(cols)
    names_t = tuple(names)
    totals_t = tuple(totals)

    if (n_permutations > 0 or jackknife) and seed is None:
        raise ValueError("seed is required for the permutation test and the jackknife")
    y_all = np.stack([counts[o].to_numpy(dtype=float) for o in outcomes])  # K x n x T
    wnames = list(win_idx)
    y_windows = _window_arrays(y_all, [win_idx[k] for k in wnames])
    calib = Calibrator(names_t, totals_t, sided, epsilon, maxit, fallback)

    # Random parts are drawn up front from the seed (jackknife groups, then placebo sets).
    # With any random inference, every fit runs in worker processes with single-threaded
    # BLAS, so that results are bit-identical whatever n_jobs (BLAS results depend on
    # the thread count).
    rng = np.random.default_rng(seed) if seed is not None else None
    n_groups = 0
    groups = None
    if jackknife:
        n_groups = min(n_t, n - n_t) if jackknife is True else int(jackknife)
        if n_groups < 2:
            raise DesignError("the jackknife needs at least 2 treated and 2 control units")
        groups = _jackknife_groups(treat, n_groups, rng)  # type: ignore[arg-type]
    sets = None
    if n_permutations > 0:
        sets = draw_placebo_sets(rng, n, treat, int(n_permutations))  # type: ignore[arg-type]
    jack_out = perm = None
    # One task list through the shared parallel map (local processes or a Dask cluster);
    # the chunks are fixed by the counts, never by the workers, and every task runs with
    # single-threaded BLAS, so the bytes do not depend on where or how widely it ran.
    tasks: list[tuple[str, Any]] = [("main", None)]
    if groups is not None:
        tasks += [("jack", c) for c in np.array_split(np.arange(n_groups), min(n_groups, 8))]
    if sets is not None:
        chunks = np.array_split(np.arange(len(sets)), min(len(sets), 16))
        tasks += [("perm", sets[c]) for c in chunks]
    shared = (constraints, treat, groups, y_windows, calib)
    done = parallel_map(
        partial(_micro_task, shared), tasks, n_jobs=int(n_jobs), min_items=2, desc="microsynth"
    )
    main, main_stats = done[0]
    jack_parts = [r for (kind, _), r in zip(tasks, done, strict=True) if kind == "jack"]
    perm_parts = [r for (kind, _), r in zip(tasks, done, strict=True) if kind == "perm"]
    if jack_parts:
        jack_out = (
            [np.concatenate([p[0][wi] for p in jack_parts]) for wi in range(len(y_windows))],
            sum(p[1] for p in jack_parts),
        )
    if perm_parts:
        perm = {key: np.concatenate([p[key] for p in perm_parts]) for key in perm_parts[0]}
    w = main.weights
    notes: list[str] = []
    if main.method != "exact":
        notes.append(f"Microsynth weights: {main.message}.")

    # --- estimates and series ----------------------------------------------
    wc = np.where(treat, 0.0, w)
    trt_series = y_all[:, treat, :].sum(axis=1)
    syn_series = np.einsum("i,kit->kt", wc, y_all)
    all_series = y_all.sum(axis=1) * n_t / n
    series = pd.concat(
        [
            pd.DataFrame(
                {
                    "outcome": o,
                    "period": periods,
                    "treated": trt_series[k],
                    "synthetic": syn_series[k],
                    "all_scaled": all_series[k],
                    "post": periods.isin([p for idx in win_idx.values() for p in periods[idx]]),
                }
            )
            for k, o in enumerate(outcomes)
        ],
        ignore_index=True,
    )
    est_rows = []
    for wname, idx in win_idx.items():
        for k, o in enumerate(outcomes):
            yt = float(trt_series[k, idx].sum())
            ys = float(syn_series[k, idx].sum())
            est_rows.append(
                {
                    "outcome": o,
                    "window": wname,
                    "treated": yt,
                    "synthetic": ys,
                    "effect": yt - ys,
                    "pct_change": yt / ys - 1 if ys > 0 else math.nan,
                }
            )
    estimates = pd.DataFrame(est_rows)

    balance = pd.DataFrame(
        {
            "constraint": names_t,
            "target": constraints[treat].sum(axis=0),
            "synthetic": np.einsum("i,ij->j", wc, constraints),
            "all_scaled": constraints.sum(axis=0) * n_t / n,
            "used": main.kept,
        }
    )

    # --- inference -----------------------------------------------------------
    inf_rows: list[dict[str, Any]] = []
    for wi, wname in enumerate(wnames):
        st = main_stats[wi]
        for k, o in enumerate(outcomes):
            z = float(st["z"][k])
            se = math.sqrt(st["dvar"][k]) if st["dvar"][k] >= 0 else math.nan
            lo, hi = _ci(float(st["log_ratio"][k]), se, alpha)
            pl, pu, p2, pv = _p_values(z, sided)
            inf_rows.append(
                _inf_row(
                    o, wname, "linearization", z, st["log_ratio"][k], se, pl, pu, p2, pv, lo, hi
                )
            )
        om = st["omnibus"]
        inf_rows.append(_omnibus_normal_row(wname, "linearization", om, sided, len(outcomes)))

    if n_t <= max(len(i) for i in win_idx.values()) + 1:
        notes.append(
            f"Only {n_t} treated unit(s): linearization and jackknife intervals are unreliable "
            "with so few treated units; prefer the permutation test."
        )
    if jack_out is not None:
        thetas, bad = jack_out
        if bad:
            notes.append(f"{bad} of {n_groups} jackknife replicates did not calibrate exactly.")
        _jackknife_rows(inf_rows, thetas, n_groups, wnames, outcomes, main_stats, sided, alpha)

    placebos = pd.DataFrame(
        columns=["placebo", "window", "outcome", "statistic", "log_ratio", "se", "exact"]
    )
    if perm is not None:
        placebos = _perm_rows(inf_rows, perm, wnames, outcomes, main_stats, sided, alpha)
        if len(sets) < n_permutations:  # type: ignore[arg-type]
            notes.append(
                f"Only {len(sets)} placebo sets exist; all were used "  # type: ignore[arg-type]
                "(exact permutation test)."
            )
            n_permutations = len(sets)  # type: ignore[arg-type]
        n_bad = int((perm["method"] != 0).sum())
        if n_bad:
            notes.append(
                f"{n_bad} of {n_permutations} placebo sets had no exact synthetic control "
                "and were left out of the permutation test."
            )
        if n_permutations - n_bad < 19:
            notes.append(
                f"Only {n_permutations - n_bad} usable placebo sets: the permutation test "
                "cannot reach p < 0.05."
            )

    inference = pd.DataFrame(inf_rows)
    if primary == "auto":
        primary_m: InferenceMethod = (
            "permutation" if n_permutations > 0 else "jackknife" if jackknife else "linearization"
        )
    else:
        primary_m = primary  # type: ignore[assignment]
        if primary_m not in set(inference["method"]):
            raise ValueError(f"primary={primary!r} but that inference was not requested")
    return MicroSynthResults(
        site_id=site,
        outcomes=outcomes,
        window_periods={k: tuple(periods[v]) for k, v in win_idx.items()},
        level=level,
        mde_alpha=mde_alpha,
        sided=sided,
        primary=primary_m,
        weights=pd.Series(w, index=units, name="weight"),
        treated_units=tuple(units[treat]),
        balance=balance,
        calibration={
            "method": main.method,
            "iterations": main.iterations,
            "max_misfit": main.max_misfit,
            "n_constraints": int(main.kept.sum()),
            "n_dropped": int((~main.kept).sum()),
            "nonzero_weights": int(((w > 0) & ~treat).sum()),
            "message": main.message,
        },
        estimates=estimates,
        inference=inference,
        paths=series,
        placebos=placebos,
        n_permutations=int(n_permutations),
        n_jackknife_groups=n_groups,
        seed=seed,
        notes=tuple(notes),
    )


def _micro_task(shared: tuple[Any, ...], task: tuple[str, Any]) -> Any:
    """One microsynth task (the real fit, a jackknife chunk or a placebo chunk), single-threaded BLAS."""
    from threadpoolctl import threadpool_limits

    constraints, treat, groups, y_windows, calib = shared
    kind, part = task
    with threadpool_limits(limits=1):
        if kind == "main":
            return _main_task(constraints, treat, y_windows, calib)
        if kind == "jack":
            return _jack_chunk(constraints, treat, groups, part, y_windows, calib)
        return _placebo_chunk(constraints, y_windows, part, calib)
