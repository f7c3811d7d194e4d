"""Synthetic control (Abadie et al.), synthetic DID and DID, with placebo inference.

Two layers:

* :class:`Synth` -- classic synthetic control on any units x periods outcome
  table with an optional predictor table (covariate means over chosen windows,
  outcome lags), nested search of the predictor weights ``V`` or a user-given
  ``V``, and an optional placebo-in-space test. Used for the reference datasets.
* :class:`SyntheticControl` -- the site-level model on a
  :class:`~dmi_eval.panel.SiteData`: outcome-only SC (``"sc"``), synthetic
  difference-in-differences (``"sdid"``) or difference-in-differences
  (``"did"``) for every outcome, with placebo-in-space, placebo-in-time and
  leave-one-out inference, fit diagnostics and the tidy effects frame.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd

from dmi_eval.designs._synth_core import (
    Algorithm,
    PathFit,
    Solver,
    VSearch,
    VSolution,
    distinct_solutions,
    fit_path,
    search_v,
    simplex_ls,
    standardise,
    w_given_v,
)
from dmi_eval.errors import DesignError
from dmi_eval.inference import (
    Alternative,
    PlaceboTest,
    placebo_in_space,
    select_placebos,
)
from dmi_eval.options import check_choice
from dmi_eval.panel import SiteData
from dmi_eval.results import effects_frame

__all__ = [
    "Synth",
    "SynthFit",
    "SyntheticControl",
    "SyntheticControlResults",
    "predictor_table",
]

Method = Literal["sc", "sdid", "did"]
Target = Literal["treated", "catchment"]
Scale = Literal["per_area", "total"]
Level = Literal["auto", "match", "demean", "ratio"]
Standardisation = Literal["sd", "none"]
PlaceboSearch = Literal["fast", "full"]
PlaceboStatistic = Literal["rmspe", "pct"]


# ---------------------------------------------------------------------------
# Predictor tables
# ---------------------------------------------------------------------------
def predictor_table(
    data: pd.DataFrame,
    *,
    unit: str,
    time: str,
    predictors: Sequence[tuple[str, str, Sequence[Any]]],
) -> pd.DataFrame:
    """Predictor table (units x predictors) from long data.

    Parameters
    ----------
    data
        Long data, one row per unit and time.
    unit, time
        Column names of the unit label and the time.
    predictors
        ``(name, variable, times)``: predictor ``name`` is the mean of
        ``variable`` over ``times`` (missing values skipped, as Synth's
        ``dataprep`` does). An outcome lag is a one-element ``times``.

    Returns
    -------
    pandas.DataFrame
        Units in order of first appearance, one column per predictor.
    """
    units = pd.Index(pd.unique(data[unit]), name=unit)
    cols = {}
    for name, variable, times in predictors:
        if variable not in data.columns:
            raise ValueError(f"predictor {name!r}: column {variable!r} not in the data")
        sub = data.loc[data[time].isin(list(times)), [unit, variable]]
        cols[name] = sub.groupby(unit, sort=False)[variable].mean().reindex(units)
    table = pd.DataFrame(cols, index=units)
    bad = table.columns[table.isna().any()].tolist()
    if bad:
        raise ValueError(f"predictors {bad} have no data for some units in their windows")
    return table


# ---------------------------------------------------------------------------
# Classic synthetic control on a units x periods table
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SynthFit:
    """Results of :meth:`Synth.fit` (read-only).

    Attributes
    ----------
    treated, donors
        Labels of the treated unit and the donor pool.
    weights
        Donor weights ``W`` (sum to one).
    v
        Predictor weights ``V`` on the simplex (``None`` for outcome-only SC).
    path
        Per period: ``observed``, ``synthetic``, ``gap``.
    pre_mspe
        Mean squared gap over the fit periods.
    lower_bound
        Fit-period MSPE of the outcome-only fit: no ``V`` can do better.
    balance
        Per predictor: ``treated``, ``synthetic``, ``donor_mean``, ``v``.
    solutions
        Distinct near-optimal local optima of the V search: ``loss``,
        ``effect_mean``, ``start`` and the weights.
    placebo
        Placebo-in-space test (``None`` unless requested).
    hull_warnings
        Predictors (or fit periods) where the treated unit lies outside the
        donors' range: the synthetic unit cannot match them without
        extrapolation.
    """

    treated: Hashable
    donors: tuple[Hashable, ...]
    weights: pd.Series
    v: pd.Series | None
    fit_periods: tuple[Any, ...]
    post_periods: tuple[Any, ...]
    path: pd.DataFrame
    pre_mspe: float
    lower_bound: float
    balance: pd.DataFrame
    solutions: pd.DataFrame
    placebo: PlaceboTest | None = None
    hull_warnings: tuple[str, ...] = ()
    n_evaluations: int = 0

    @property
    def pre_rmspe(self) -> float:
        return float(np.sqrt(self.pre_mspe))

    def effect(self) -> pd.Series:
        """Gap (observed minus synthetic) in every post period."""
        return self.path.loc[list(self.post_periods), "gap"].copy()

    def effect_mean(self, periods: Sequence[Any] | None = None) -> float:
        """Mean gap over ``periods`` (default: every post period)."""
        periods = self.post_periods if periods is None else periods
        return float(self.path.loc[list(periods), "gap"].mean())

    def effect_range(self) -> tuple[float, float]:
        """Smallest and largest mean post effect across the near-optimal solutions."""
        e = self.solutions["effect_mean"]
        return float(e.min()), float(e.max())

    def robustness(self) -> str:
        """One line: how far the effect moves across distinct near-optimal solutions."""
        lo, hi = self.effect_range()
        n = len(self.solutions)
        if n <= 1:
            return "the V search found one near-optimal solution (effect unique among its optima)"
        return (
            f"{n} distinct near-optimal weight sets (pre-MSPE within 5% of the best) give a "
            f"mean post effect from {lo:.4g} to {hi:.4g}"
        )

    def get_plot_data(self, outcome: str | None = None) -> pd.DataFrame:
        """``observed``, ``synthetic``, ``gap`` and ``role`` per period."""
        frame = self.path.copy()
        role = pd.Series("other", index=frame.index)
        role[list(self.fit_periods)] = "pre"
        role[list(self.post_periods)] = "post"
        frame["role"] = role
        return frame

    def placebo_gaps(self, outcome: str | None = None) -> pd.DataFrame:
        """Placebo gaps, periods x placebo units (empty without a placebo test)."""
        if self.placebo is None:
            return pd.DataFrame(index=self.path.index)
        return self.placebo.gaps.iloc[1:].T.copy()

    def rmspe_ratios(self, outcome: str | None = None) -> pd.Series:
        """Post/pre RMSPE ratio of the treated unit (first) and every placebo."""
        if self.placebo is None:
            return pd.Series(dtype=float)
        return np.sqrt(self.placebo.ratios())

    def weights_table(self, outcome: str | None = None) -> pd.DataFrame:
        """Donors with positive weight, largest first (``outcome`` is ignored)."""
        w = self.weights[self.weights > 0].sort_values(ascending=False)
        return pd.DataFrame({"unit": w.index, "weight": w.to_numpy()})


class Synth:
    """Classic synthetic control (Abadie & Gardeazabal 2003; Abadie et al. 2010).

    Parameters
    ----------
    outcome
        Units x periods outcome table (the treated unit and the donors).
    treated
        Label of the treated unit.
    predictors
        Units x predictors table (see :func:`predictor_table`); ``None`` for
        outcome-only SC (weights minimise the fit-period MSPE directly).
    donors
        Donor labels (default: every other unit of ``outcome``).
    fit_periods
        Periods whose outcome MSPE the V search minimises (the pre period).
    post_periods
        Periods after the intervention.
    v
        User-supplied predictor weights (one per predictor, any positive
        scale); skips the V search.
    standardise
        ``"sd"``: divide each predictor by its sample SD (n-1) across the
        treated unit and the donors, as Synth does; ``"none"``.
    n_random_starts
        Deterministic quasi-random starts of the V search (besides equal,
        regression-based and one-predictor-dominant starts).
    placebo
        Run the placebo-in-space test (every donor as a fake treated unit).
    placebo_search
        ``"fast"``: the placebos' V searches use fewer starts; ``"full"``: the
        same search as the treated unit.
    n_jobs
        joblib workers for the placebo loop (results do not depend on it).
    solver
        Inner simplex QP solver: ``"nnls"`` (exact active set) or ``"clarabel"``.

    Notes
    -----
    With standardised predictors ``X1`` (treated) and ``X0`` (donors),
    ``W(V) = argmin_{W >= 0, 1'W = 1} (X1 - X0 W)' V (X1 - X0 W)`` and
    ``V* = argmin_V (Z1 - Z0 W(V))' (Z1 - Z0 W(V)) / T_fit`` over diagonal ``V``
    on the simplex, where ``Z`` are the fit-period outcomes. The effect in
    period ``t`` is ``Y1_t - Y0_t' W(V*)``.
    """

    def __init__(
        self,
        outcome: pd.DataFrame,
        treated: Hashable,
        *,
        predictors: pd.DataFrame | None = None,
        donors: Sequence[Hashable] | None = None,
        fit_periods: Sequence[Any],
        post_periods: Sequence[Any],
        v: Sequence[float] | None = None,
        standardise: Standardisation = "sd",
        n_random_starts: int = 8,
        placebo: bool = False,
        placebo_search: PlaceboSearch = "fast",
        n_jobs: int = 2,
        solver: Solver = "nnls",
    ) -> None:
        check_choice("standardise", standardise, Standardisation)
        check_choice("placebo_search", placebo_search, PlaceboSearch)
        check_choice("solver", solver, Solver)
        if treated not in outcome.index:
            raise ValueError(f"treated unit {treated!r} not in the outcome table")
        donors = [u for u in outcome.index if u != treated] if donors is None else list(donors)
        if treated in donors:
            raise ValueError("the treated unit cannot be a donor")
        missing = [d for d in donors if d not in outcome.index]
        if missing:
            raise ValueError(f"donors not in the outcome table: {missing}")
        if len(donors) < 2:
            raise DesignError("synthetic control needs at least two donors")
        self.outcome = outcome.loc[[treated, *donors]].astype(float).copy()
        self.treated = treated
        self.donors = tuple(donors)
        self.fit_periods = tuple(fit_periods)
        self.post_periods = tuple(post_periods)
        for p in (*self.fit_periods, *self.post_periods):
            if p not in self.outcome.columns:
                raise ValueError(f"period {p!r} not in the outcome table")
        if len(self.fit_periods) < 2:
            raise DesignError("synthetic control needs at least two fit (pre) periods")
        if not self.post_periods:
            raise DesignError("synthetic control needs at least one post period")
        if self.outcome[list(self.fit_periods + self.post_periods)].isna().any().any():
            raise ValueError("the outcome table has missing values in the fit or post periods")
        self.predictors = None
        if predictors is not None:
            miss = [u for u in [treated, *donors] if u not in predictors.index]
            if miss:
                raise ValueError(f"units missing from the predictor table: {miss}")
            self.predictors = predictors.loc[[treated, *donors]].astype(float).copy()
            if self.predictors.isna().any().any():
                raise ValueError("the predictor table has missing values")
        self.v = None
        if v is not None:
            if self.predictors is None:
                raise ValueError("a user-supplied V needs a predictor table")
            varr = np.asarray(v, dtype=float)
            if varr.shape != (self.predictors.shape[1],) or (varr < 0).any() or varr.sum() <= 0:
                raise ValueError("v must have one non-negative weight per predictor")
            self.v = varr / varr.sum()
        if n_random_starts < 0:
            raise ValueError("n_random_starts must be >= 0")
        self.standardise = standardise
        self.n_random_starts = n_random_starts
        self.placebo = bool(placebo)
        self.placebo_search = placebo_search
        self.n_jobs = int(n_jobs)
        self.solver: Solver = solver

    # -- numeric pieces -----------------------------------------------------
    def _arrays(self, treated: Hashable, donors: Sequence[Hashable]) -> dict[str, np.ndarray]:
        Y = self.outcome
        out = {
            "z1": Y.loc[treated, list(self.fit_periods)].to_numpy(),
            "Z0": Y.loc[list(donors), list(self.fit_periods)].to_numpy(),
            "y1": Y.loc[treated].to_numpy(),
            "Y0": Y.loc[list(donors)].to_numpy(),
        }
        if self.predictors is not None:
            x1 = self.predictors.loc[treated].to_numpy()
            X0 = self.predictors.loc[list(donors)].to_numpy().T
            if self.standardise == "sd":
                x1, X0, _ = standardise(x1, X0)
            out["x1"], out["X0"] = x1, X0
        return out

    def _solve(
        self, treated: Hashable, donors: Sequence[Hashable], *, fast: bool
    ) -> tuple[np.ndarray, np.ndarray | None, VSearch | None, dict[str, np.ndarray]]:
        a = self._arrays(treated, donors)
        if self.predictors is None:
            w = simplex_ls(a["Z0"].T, a["z1"], solver=self.solver)
            return w, None, None, a
        if self.v is not None:
            return w_given_v(a["x1"], a["X0"], self.v, self.solver), self.v, None, a
        if fast:
            search = search_v(
                a["x1"], a["X0"], a["z1"], a["Z0"],
                n_random=0, n_polish=1, max_evaluations=10 * a["X0"].shape[0],
                polish_rounds=1, solver=self.solver,
            )  # fmt: skip
        else:
            search = search_v(
                a["x1"], a["X0"], a["z1"], a["Z0"],
                n_random=self.n_random_starts, solver=self.solver,
            )  # fmt: skip
        return search.best.w, search.best.v, search, a

    def _placebo_gap(self, i: int) -> np.ndarray:
        unit = self.donors[i]
        others = [d for d in self.donors if d != unit]
        w, *_rest, a = self._solve(unit, others, fast=self.placebo_search == "fast")
        return a["y1"] - w @ a["Y0"]

    # -- fit ----------------------------------------------------------------
    def fit(self) -> SynthFit:
        """Fit the weights (and run the placebo test if requested)."""
        w, v, search, a = self._solve(self.treated, self.donors, fast=False)
        synthetic = w @ a["Y0"]
        gap = a["y1"] - synthetic
        periods = self.outcome.columns
        path = pd.DataFrame(
            {"observed": a["y1"], "synthetic": synthetic, "gap": gap}, index=periods
        )
        post_idx = periods.get_indexer(list(self.post_periods))
        pre_mspe = float(np.mean((a["z1"] - w @ a["Z0"]) ** 2))
        lower = float(np.mean((a["z1"] - simplex_ls(a["Z0"].T, a["z1"]) @ a["Z0"]) ** 2))
        weights = pd.Series(w, index=pd.Index(self.donors), name="weight")
        sols: list[VSolution] = (
            distinct_solutions(search.solutions)
            if search is not None
            else [VSolution(np.ones(1) if v is None else v, w, pre_mspe, "given")]
        )
        sol_rows = []
        for s in sols:
            eff = float(np.mean(a["y1"][post_idx] - s.w @ a["Y0"][:, post_idx]))
            top = {
                str(self.donors[j]): round(float(s.w[j]), 4)
                for j in np.argsort(-s.w)[:6]
                if s.w[j] > 1e-4
            }
            sol_rows.append({"loss": s.loss, "effect_mean": eff, "start": s.start, "weights": top})
        solutions = pd.DataFrame(sol_rows)
        hull: list[str] = []
        if self.predictors is not None:
            names = list(self.predictors.columns)
            raw1 = self.predictors.loc[self.treated].to_numpy()
            raw0 = self.predictors.loc[list(self.donors)].to_numpy()
            synth_x = w @ raw0
            vser = pd.Series(v, index=names) if v is not None else None
            balance = pd.DataFrame(
                {
                    "treated": raw1,
                    "synthetic": synth_x,
                    "donor_mean": raw0.mean(axis=0),
                    "v": v if v is not None else np.nan,
                },
                index=pd.Index(names, name="predictor"),
            )
            for j, name in enumerate(names):
                if raw1[j] > raw0[:, j].max() or raw1[j] < raw0[:, j].min():
                    hull.append(f"predictor {name}: treated value outside the donors' range")
        else:
            vser = None
            fit_cols = list(self.fit_periods)
            balance = pd.DataFrame(
                {
                    "treated": a["z1"],
                    "synthetic": w @ a["Z0"],
                    "donor_mean": a["Z0"].mean(axis=0),
                    "v": np.nan,
                },
                index=pd.Index([f"outcome[{p}]" for p in fit_cols], name="predictor"),
            )
        above = (a["z1"] > a["Z0"].max(axis=0)) | (a["z1"] < a["Z0"].min(axis=0))
        if above.mean() > 0.5:
            hull.append(
                f"outcome outside the donors' range in {int(above.sum())} of {above.size} fit periods"
            )
        placebo = None
        if self.placebo:
            placebo = placebo_in_space(
                self._placebo_gap,
                range(len(self.donors)),
                treated_gap=gap,
                treated=str(self.treated),
                labels=[str(d) for d in self.donors],
                periods=periods,
                pre=periods.isin(list(self.fit_periods)),
                post=periods.isin(list(self.post_periods)),
                n_jobs=self.n_jobs,
            )
        return SynthFit(
            treated=self.treated,
            donors=self.donors,
            weights=weights,
            v=vser,
            fit_periods=self.fit_periods,
            post_periods=self.post_periods,
            path=path,
            pre_mspe=pre_mspe,
            lower_bound=lower,
            balance=balance,
            solutions=solutions,
            placebo=placebo,
            hull_warnings=tuple(hull),
            n_evaluations=0 if search is None else search.n_evaluations,
        )


# ---------------------------------------------------------------------------
# Site-level model
# ---------------------------------------------------------------------------
_DESIGN_LABEL = {"sc": "synthetic control", "sdid": "synthetic DID", "did": "DID"}


def _path_for(
    y1: np.ndarray,
    Y0: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    core_method: str,
    algorithm: Algorithm,
    n_treated: int,
    ratio: bool = False,
    sc_ridge: float = 0.0,
) -> PathFit:
    """Counterfactual path; ``ratio`` fits series divided by their pre-period means.

    With ``ratio``, donors whose pre-period mean is zero get weight zero and the
    counterfactual is scaled back by the treated unit's pre-period mean.
    """
    if not ratio:
        return fit_path(
            y1, Y0, pre, post, method=core_method, algorithm=algorithm, n_treated=n_treated,
            sc_ridge=sc_ridge,
        )  # type: ignore[arg-type]  # fmt: skip
    s1 = float(y1[pre].mean())
    s0 = Y0[:, pre].mean(axis=1)
    valid = s0 > 0
    if s1 <= 0 or valid.sum() < 2:
        raise DesignError(
            "ratio scaling needs a positive pre-period mean for the treated series and at "
            "least two donors; use level='match' or 'demean'"
        )
    fit = fit_path(
        y1 / s1, Y0[valid] / s0[valid, None], pre, post,
        method=core_method, algorithm=algorithm, n_treated=n_treated, sc_ridge=sc_ridge,
    )  # type: ignore[arg-type]  # fmt: skip
    omega = np.zeros(Y0.shape[0])
    omega[valid] = fit.omega
    return PathFit(fit.cf * s1, omega, fit.lam, fit.intercept * s1)


def _placebo_gap_site(
    i: int,
    *,
    Y0: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    core_method: str,
    algorithm: Algorithm,
    ratio: bool,
    sc_ridge: float,
) -> np.ndarray:
    keep = np.ones(Y0.shape[0], dtype=bool)
    keep[i] = False
    fit = _path_for(Y0[i], Y0[keep], pre, post, core_method, algorithm, 1, ratio, sc_ridge)
    return Y0[i] - fit.cf


@dataclass(frozen=True)
class SyntheticControlResults:
    """Results of :meth:`SyntheticControl.fit` (read-only).

    Accessors return copies. The one-sided "lower" p-value the verdict needs
    is the ``p_value`` column of :meth:`effects` when the model was built with
    ``alternative="lower"`` (the default), and is always available as
    ``p_value(outcome, window="post", alternative="lower")``.

    Attributes
    ----------
    paths
        Outcome -> per-period frame (``observed``, ``synthetic``, ``gap`` in
        totals; the same ``*_per_area``; ``role``): see :meth:`get_plot_data`.
    weights, time_weights
        Donor weights (``outcome, area, weight``) and, for SDID / DID, the
        pre-period time weights (``outcome, period, weight``).
    diagnostics
        One row per outcome: estimator actually used (``sc``, ``sc_ratio``,
        ``sc_demeaned``, ``sdid``, ``sdid_ratio``, ``did``...), ``pre_rmspe``
        (treated total, counts per period), ``pre_rmspe_ratio`` (over the
        pre-period mean), ``poor_fit``, ``outside_hull`` (treated pre-period
        mean outside the donors' range), ``share_pre_outside_range``,
        ``n_positive_weights``, ``placebo_statistic``.
    placebos
        Outcome -> :class:`~dmi_eval.inference.PlaceboTest` (site first).
    leave_one_out
        Effect over the post period with each of the largest-weight donors
        dropped (``outcome, dropped, weight, effect, pct_change``).
    placebo_in_time
        Effect at a fake call-in inside the pre period (``outcome,
        fake_start, n_fake_post, effect, pct_change, z``): should be near 0.
    """

    site_id: str
    method: Method
    outcomes: tuple[str, ...]
    primary_outcome: str
    periods: pd.PeriodIndex
    roles: pd.Series
    n_treated: int
    last_k: int
    alternative: Alternative
    ci_level: float
    max_pre_mspe_multiple: float | None
    paths: Mapping[str, pd.DataFrame]
    weights: pd.DataFrame
    time_weights: pd.DataFrame
    diagnostics: pd.DataFrame
    placebos: Mapping[str, PlaceboTest]
    leave_one_out: pd.DataFrame
    placebo_in_time: pd.DataFrame
    balance_tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)

    # -- windows --------------------------------------------------------------
    def _windows(self) -> dict[str, np.ndarray]:
        post = (self.roles == "post").to_numpy()
        k = min(self.last_k, int(post.sum()))
        last = post.copy()
        idx = np.flatnonzero(post)
        last[idx[:-k]] = False
        return {"post": post, f"last{self.last_k}": last}

    def p_value(
        self, outcome: str, *, window: str = "post", alternative: Alternative = "lower"
    ) -> float:
        """Placebo-in-space rank p-value of the standardised mean gap in ``window``."""
        test = self.placebos.get(outcome)
        if test is None or test.n_placebos == 0:
            return float("nan")
        mask = self._windows()[window]
        return test.p_value(
            mask, alternative=alternative, max_pre_mspe_multiple=self.max_pre_mspe_multiple
        )

    def p_value_lower(self, outcome: str, window: str = "post") -> float:
        """One-sided p-value of a reduction (the verdict's test), whatever ``alternative`` was."""
        return self.p_value(outcome, window=window, alternative="lower")

    def p_ratio(self, outcome: str) -> float:
        """Rank p-value of the post/pre MSPE ratio (Abadie et al. 2010, two-sided in effect)."""
        test = self.placebos.get(outcome)
        if test is None or test.n_placebos == 0:
            return float("nan")
        return test.p_ratio(max_pre_mspe_multiple=self.max_pre_mspe_multiple)

    def effects(self) -> pd.DataFrame:
        """Tidy effects: one row per outcome and window (``post``, ``last{k}``)."""
        rows = []
        for outcome in self.outcomes:
            path = self.paths[outcome]
            test = self.placebos.get(outcome)
            n_pl = 0 if test is None else test.n_placebos
            method = (
                f"{_DESIGN_LABEL[self.method]}; placebo-in-space rank test over {n_pl} placebo "
                f"areas (standardised mean gap), {self.alternative}"
                f"{'' if self.alternative == 'two-sided' else ', one-sided'}; "
                f"{round(100 * self.ci_level)}% interval from the placebo distribution"
            )
            for window, mask in self._windows().items():
                obs = float(path["observed"].to_numpy()[mask].sum())
                cf = float(path["synthetic"].to_numpy()[mask].sum())
                eff = obs - cf
                pct = eff / cf if cf > 0 else float("nan")
                lo = hi = p = float("nan")
                if test is not None and n_pl > 0:
                    g_lo, g_hi = test.interval(
                        mask, level=self.ci_level, max_pre_mspe_multiple=self.max_pre_mspe_multiple
                    )
                    scale = self.n_treated * int(mask.sum()) if self._per_area else int(mask.sum())
                    if cf > 0:
                        # A count cannot fall below zero: the change is bounded at -100%.
                        lo = max(g_lo * scale / cf, -1.0)
                        hi = max(g_hi * scale / cf, -1.0)
                    p = test.p_value(
                        mask,
                        alternative=self.alternative,
                        max_pre_mspe_multiple=self.max_pre_mspe_multiple,
                    )
                rows.append(
                    {
                        "site": self.site_id,
                        "outcome": outcome,
                        "design": self.method,
                        "window": window,
                        "observed": obs,
                        "counterfactual": cf,
                        "effect": eff,
                        "pct_change": pct,
                        "ci_low": lo,
                        "ci_high": hi,
                        "p_value": p,
                        "method": method,
                    }
                )
        return effects_frame(rows)

    @property
    def _per_area(self) -> bool:
        return bool(self.diagnostics["scale"].iloc[0] == "per_area")

    # -- diagnostics ----------------------------------------------------------
    def pre_rmspe(self, outcome: str | None = None) -> float:
        """Pre-period RMSPE of the treated total (counts per period)."""
        outcome = outcome or self.primary_outcome
        return float(self.diagnostics.loc[outcome, "pre_rmspe"])

    def balance(self, outcome: str | None = None) -> pd.DataFrame:
        """Predictor balance: treated vs synthetic vs donor mean (per area)."""
        return self.balance_tables[outcome or self.primary_outcome].copy()

    def weights_table(self, outcome: str | None = None) -> pd.DataFrame:
        """Donor areas with positive weight (``outcome, area, weight``), largest first."""
        w = self.weights
        if outcome is not None:
            w = w[w["outcome"] == outcome]
        return w[w["weight"] > 0].reset_index(drop=True).copy()

    def get_plot_data(self, outcome: str | None = None) -> pd.DataFrame:
        """Per period: observed, synthetic, gap (totals), per-area versions and role."""
        return self.paths[outcome or self.primary_outcome].copy()

    def placebo_gaps(self, outcome: str | None = None) -> pd.DataFrame:
        """Placebo areas' gaps (periods x areas), per-area scale like ``gap_per_area``."""
        test = self.placebos.get(outcome or self.primary_outcome)
        if test is None:
            return pd.DataFrame(index=self.periods)
        return test.gaps.iloc[1:].T.copy()

    def rmspe_ratios(self, outcome: str | None = None) -> pd.Series:
        """Post/pre RMSPE ratio of the site (first entry) and every placebo area."""
        test = self.placebos.get(outcome or self.primary_outcome)
        if test is None:
            return pd.Series(dtype=float)
        return np.sqrt(test.ratios())


class SyntheticControl:
    """Synthetic control, synthetic DID or DID for one DMI site.

    Parameters
    ----------
    site_data
        The site's view of the panel.
    outcomes
        Outcomes to fit (default: the site's outcomes).
    method
        ``"sc"`` (outcome-only synthetic control), ``"sdid"`` (synthetic
        difference-in-differences) or ``"did"`` (difference-in-differences).
    target
        ``"treated"`` (default): the market's treated areas;
        ``"catchment"``: the site's catchment areas (displacement / diffusion),
        fitted on the same donor pool.
    scale
        ``"per_area"`` (default): the treated series is the mean per treated
        micro-area, comparable with single donor areas; the counterfactual is
        scaled back to the treated total. ``"total"``: the treated total.
    level
        ``"match"`` fits levels (classic SC, additive SDID / DID);
        ``"demean"`` (SC only) removes each unit's pre-period mean
        (intercept-shifted SC); ``"ratio"`` divides every series by its own
        pre-period mean before fitting and scales the counterfactual back (a
        multiplicative intercept, natural for counts: SDID and DID become
        proportional); ``"auto"`` (default): ``"ratio"`` when the treated
        pre-period mean is outside the donors' range (the convex-hull problem
        of markets at the top of the city's distribution), else ``"match"``.
        The diagnostics record the estimator used and flag the hull problem.
        In a Monte Carlo of simulated cities (markets = the busiest areas,
        multiplicative trends), ratio scaling halved the error of SDID and DID
        and brought SC's 90% placebo interval to 90% coverage.
    last_k
        Length of the ``last{k}`` window.
    alternative
        Sidedness of the placebo p-value in :meth:`effects` (default
        ``"lower"``: a reduction).
    ci_level
        Level of the placebo-based interval.
    max_placebos
        Cap on the number of placebo donor areas (seeded sample); ``None`` =
        every donor.
    max_pre_mspe_multiple
        Drop placebos whose pre-period MSPE exceeds this multiple of the
        site's (``None``: keep all).
    max_pre_rmspe_ratio
        Pre-period fit is flagged poor when ``RMSPE / mean pre level`` of the
        treated series exceeds this.
    placebo_time, leave_one_out
        Run the placebo-in-time and leave-one-out checks.
    max_leave_one_out
        Largest-weight donors dropped one at a time.
    sc_ridge
        SC only: ridge on the donor weights, in units of SDID's penalty: the
        SC objective gets ``(sc_ridge * zeta)^2 T_pre ||w||^2`` with SDID's
        ``zeta = (N_tr T_post)^(1/4) sigma``. With hundreds of noisy
        micro-area donors and a few dozen pre periods an unpenalised SC
        interpolates the market's series exactly (a pre-period RMSPE far below
        the counts' own noise, over-fitted weights and an RMSPE-standardised
        placebo statistic that explodes); the default 1.0 keeps the pre-period
        error near the noise level. 0 gives classic (unpenalised) SC.
    placebo_statistic
        Statistic ranked in the placebo test: ``"rmspe"`` (default): mean post
        gap over the pre-period RMSPE (Abadie et al. 2010); ``"pct"``: mean
        post gap over the unit's pre-period mean level (a relative effect;
        conservative for a market that aggregates several busy areas, whose
        relative noise is smaller than a single donor area's).
    algorithm
        ``"exact"`` simplex solutions, or ``"synthdid"`` Frank-Wolfe iterations.
    min_pre_periods
        Fewer pre periods raise :class:`DesignError`.
    n_jobs, seed
        joblib workers and the seed of the placebo sample (results do not
        depend on ``n_jobs``).

    Notes
    -----
    With ``y1_t`` the treated series (per area) and ``Y0`` the donor areas,
    SC: ``w = argmin_{w in simplex} sum_{t in pre} (y1_t - w'Y0_t)^2`` and
    ``cf_t = w'Y0_t`` (demeaned: plus ``mean_pre(y1) - w' mean_pre(Y0)``);
    SDID and DID as in :func:`dmi_eval.designs._synth_core.fit_path`. The
    counterfactual total is ``n_treated * cf_t``; the effect over a window is
    ``sum(observed) - sum(counterfactual)`` and ``pct_change = effect / sum(cf)``.
    Inference: every donor area in turn is a fake treated unit fitted on the
    other donors with the same estimator; the rank of the site's standardised
    mean gap among them gives the p-value and the placebo quantiles the interval.
    """

    def __init__(
        self,
        site_data: SiteData,
        *,
        outcomes: Sequence[str] | None = None,
        method: Method = "sc",
        target: Target = "treated",
        scale: Scale = "per_area",
        level: Level = "auto",
        last_k: int = 6,
        alternative: Alternative = "lower",
        ci_level: float = 0.9,
        max_placebos: int | None = None,
        max_pre_mspe_multiple: float | None = None,
        max_pre_rmspe_ratio: float = 0.5,
        placebo_time: bool = True,
        leave_one_out: bool = True,
        max_leave_one_out: int = 10,
        sc_ridge: float = 1.0,
        placebo_statistic: PlaceboStatistic = "rmspe",
        algorithm: Algorithm = "exact",
        min_pre_periods: int = 4,
        min_donor_pre_count: float = 45.0,
        n_jobs: int = 2,
        seed: int = 0,
    ) -> None:
        check_choice("method", method, Method)
        check_choice("target", target, Target)
        check_choice("scale", scale, Scale)
        check_choice("level", level, Level)
        check_choice("alternative", alternative, Alternative)
        check_choice("algorithm", algorithm, Algorithm)
        if not isinstance(site_data, SiteData):
            raise TypeError("site_data must be a dmi_eval.panel.SiteData")
        outcomes = tuple(site_data.outcomes if outcomes is None else outcomes)
        unknown = [o for o in outcomes if o not in site_data.panel.outcomes]
        if unknown or not outcomes:
            raise ValueError(f"outcomes {unknown} not in the panel ({site_data.panel.outcomes})")
        if last_k < 1:
            raise ValueError(f"last_k must be >= 1, got {last_k}")
        if not 0 < ci_level < 1:
            raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
        if max_placebos is not None and max_placebos < 1:
            raise ValueError("max_placebos must be >= 1 or None")
        if max_pre_mspe_multiple is not None and max_pre_mspe_multiple <= 0:
            raise ValueError("max_pre_mspe_multiple must be positive or None")
        if site_data.n_pre < min_pre_periods:
            raise DesignError(
                f"site {site_data.site_id!r}: {method} needs at least {min_pre_periods} pre "
                f"periods before the call-in, the data have {site_data.n_pre}; "
                "extend the data back or choose a later call-in"
            )
        if len(site_data.donor_areas) < 2:
            raise DesignError(
                f"site {site_data.site_id!r}: {method} needs at least two donor areas, "
                f"got {len(site_data.donor_areas)}; widen [[sites]].donor_areas"
            )
        if target == "catchment" and not site_data.catchment_areas:
            raise DesignError(
                f"site {site_data.site_id!r}: target='catchment' needs catchment_areas; "
                "add [[sites]].catchment_areas or fit the treated areas"
            )
        self.target: Target = target
        self.site_data = site_data
        self.outcomes = outcomes
        self.method: Method = method
        self.scale: Scale = scale
        self.level: Level = level
        self.last_k = int(last_k)
        self.alternative: Alternative = alternative
        self.ci_level = float(ci_level)
        self.max_placebos = max_placebos
        self.max_pre_mspe_multiple = max_pre_mspe_multiple
        self.max_pre_rmspe_ratio = float(max_pre_rmspe_ratio)
        if min_donor_pre_count < 0:
            raise ValueError(f"min_donor_pre_count must be >= 0, got {min_donor_pre_count}")
        self.min_donor_pre_count = float(min_donor_pre_count)
        self.placebo_time = bool(placebo_time)
        self.leave_one_out = bool(leave_one_out)
        self.max_leave_one_out = int(max_leave_one_out)
        if sc_ridge < 0:
            raise ValueError(f"sc_ridge must be >= 0, got {sc_ridge}")
        self.sc_ridge = float(sc_ridge)
        check_choice("placebo_statistic", placebo_statistic, PlaceboStatistic)
        self.placebo_statistic: PlaceboStatistic = placebo_statistic
        self.algorithm: Algorithm = algorithm
        self.n_jobs = int(n_jobs)
        self.seed = int(seed)

    def _core_method(self, y1pre: np.ndarray, Y0pre: np.ndarray) -> tuple[str, bool, bool]:
        """``(core method, treated outside the donors' range, ratio scaling)``."""
        means = Y0pre.mean(axis=1)
        outside = bool(y1pre.mean() > means.max() or y1pre.mean() < means.min())
        ratio = self.level == "ratio" or (self.level == "auto" and outside and y1pre.mean() > 0)
        if self.method != "sc":
            return self.method, outside, ratio
        if self.level == "demean":
            return "sc_demeaned", outside, False
        return "sc", outside, ratio

    def fit(self) -> SyntheticControlResults:
        """Fit every outcome, run the placebo tests and collect diagnostics."""
        sd = self.site_data
        periods = sd.periods
        pre, post = sd.pre_mask, sd.post_mask
        areas = sd.treated_areas if self.target == "treated" else sd.catchment_areas
        n_tr = len(areas)
        factor = n_tr if self.scale == "per_area" else 1
        donors = list(sd.donor_areas)
        paths: dict[str, pd.DataFrame] = {}
        weight_rows: list[pd.DataFrame] = []
        time_rows: list[pd.DataFrame] = []
        diag_rows: list[dict[str, Any]] = []
        placebos: dict[str, PlaceboTest] = {}
        loo_rows: list[dict[str, Any]] = []
        pit_rows: list[dict[str, Any]] = []
        balance: dict[str, pd.DataFrame] = {}
        stat_used: dict[str, str] = {}
        cov = sd.covariates([*areas, *donors])
        for outcome in self.outcomes:
            total = sd.panel.series(outcome, areas).to_numpy().astype(float)
            y1 = total / factor
            Y0_all = sd.donor_matrix(outcome).to_numpy().astype(float)
            core, outside, ratio = self._core_method(y1[pre], Y0_all[:, pre])
            idx = self._eligible_donors(Y0_all, pre, ratio)
            Y0 = Y0_all[idx]
            labels = [donors[i] for i in idx]
            fit = _path_for(y1, Y0, pre, post, core, self.algorithm, n_tr, ratio, self.sc_ridge)
            omega_all = np.zeros(len(donors))
            omega_all[idx] = fit.omega
            cf = fit.cf
            gap = y1 - cf
            paths[outcome] = pd.DataFrame(
                {
                    "observed": total,
                    "synthetic": cf * factor,
                    "gap": gap * factor,
                    "observed_per_area": y1,
                    "synthetic_per_area": cf,
                    "gap_per_area": gap,
                    "role": sd.roles.to_numpy(),
                },
                index=periods,
            )
            weight_rows.append(
                pd.DataFrame({"outcome": outcome, "area": donors, "weight": omega_all}).sort_values(
                    "weight", ascending=False, kind="stable"
                )
            )
            if fit.lam is not None:
                time_rows.append(
                    pd.DataFrame(
                        {"outcome": outcome, "period": periods[pre].astype(str), "weight": fit.lam}
                    )
                )
            pre_rmspe = float(np.sqrt(np.mean((gap[pre] * factor) ** 2)))
            pre_level = float(np.mean(total[pre]))
            fit_ratio = pre_rmspe / pre_level if pre_level > 0 else float("inf")
            share_out = float(
                np.mean((y1[pre] > Y0[:, pre].max(axis=0)) | (y1[pre] < Y0[:, pre].min(axis=0)))
            )
            diag_rows.append(
                {
                    "outcome": outcome,
                    "method": self.method,
                    "estimator": core + ("_ratio" if ratio else ""),
                    "scale": self.scale,
                    "n_treated_areas": n_tr,
                    "n_donors": len(idx),
                    "n_pre": int(pre.sum()),
                    "n_post": int(post.sum()),
                    "pre_rmspe": pre_rmspe,
                    "pre_mean": pre_level,
                    "pre_rmspe_ratio": fit_ratio,
                    "poor_fit": bool(fit_ratio > self.max_pre_rmspe_ratio),
                    "outside_hull": outside,
                    "share_pre_outside_range": share_out,
                    "n_positive_weights": int((fit.omega > 0).sum()),
                    "intercept": fit.intercept * factor,
                }
            )
            balance[outcome] = self._balance(y1, Y0_all, omega_all, pre, cov, n_tr)
            # placebo-in-space
            gap_fn = partial(
                _placebo_gap_site, Y0=Y0, pre=pre, post=post, core_method=core,
                algorithm=self.algorithm, ratio=ratio, sc_ridge=self.sc_ridge,
            )  # fmt: skip
            usable = [int(i) for i in select_placebos(len(idx), self.max_placebos, self.seed)]
            statistic = self.placebo_statistic
            if ratio or statistic == "pct":
                usable = [i for i in usable if Y0[i, pre].mean() > 0]
            scale = None
            if statistic == "pct":
                scale = np.r_[max(y1[pre].mean(), 1e-12), Y0[usable][:, pre].mean(axis=1)]
            stat_used[outcome] = statistic
            placebos[outcome] = placebo_in_space(
                gap_fn,
                usable,
                treated_gap=gap,
                treated=sd.site_id,
                labels=labels,
                periods=periods,
                pre=pre,
                post=post,
                n_jobs=self.n_jobs,
                scale=scale,
            )
            if self.leave_one_out and self.method != "did":
                loo_rows.extend(
                    self._leave_one_out(outcome, total, y1, Y0, fit, core, factor, ratio, labels)
                )
            if self.placebo_time:
                pit_rows.extend(self._placebo_in_time(outcome, y1, Y0, core, factor, n_tr, ratio))
        for row in diag_rows:
            row["placebo_statistic"] = stat_used[row["outcome"]]
        diagnostics = pd.DataFrame(diag_rows).set_index("outcome", drop=False)
        diagnostics.index.name = None
        return SyntheticControlResults(
            site_id=sd.site_id,
            method=self.method,
            outcomes=self.outcomes,
            primary_outcome=sd.primary_outcome
            if sd.primary_outcome in self.outcomes
            else self.outcomes[0],
            periods=periods,
            roles=sd.roles.copy(),
            n_treated=n_tr,
            last_k=self.last_k,
            alternative=self.alternative,
            ci_level=self.ci_level,
            max_pre_mspe_multiple=self.max_pre_mspe_multiple,
            paths=MappingProxyType(paths),
            weights=pd.concat(weight_rows, ignore_index=True),
            time_weights=(
                pd.concat(time_rows, ignore_index=True)
                if time_rows
                else pd.DataFrame(columns=["outcome", "period", "weight"])
            ),
            diagnostics=diagnostics,
            placebos=MappingProxyType(placebos),
            leave_one_out=pd.DataFrame(
                loo_rows, columns=["outcome", "dropped", "weight", "effect", "pct_change"]
            ),
            placebo_in_time=pd.DataFrame(
                pit_rows,
                columns=["outcome", "fake_start", "n_fake_post", "effect", "pct_change", "z"],
            ),
            balance_tables=MappingProxyType(balance),
        )

    # -- helpers --------------------------------------------------------------
    def _eligible_donors(self, Y0: np.ndarray, pre: np.ndarray, ratio: bool) -> np.ndarray:
        """Donor indices used for one outcome.

        With ratio scaling each donor is divided by its own pre-period mean. A
        donor with few pre-period incidents has a noisy mean, and dividing by it
        favours donors that were low by chance and rebound later (regression to
        the mean), which biases the counterfactual upward. Donors with fewer
        than ``min_donor_pre_count`` pre-period incidents (45 by default: a
        relative standard error of the mean of at most 15% under Poisson noise)
        are therefore left out; if fewer than ten remain, every donor with a
        positive pre-period mean is kept.
        """
        totals = Y0[:, pre].sum(axis=1)
        if not ratio:
            return np.arange(Y0.shape[0])
        idx = np.flatnonzero(totals >= self.min_donor_pre_count)
        if idx.size < 10:
            idx = np.flatnonzero(totals > 0)
        return idx

    def _balance(
        self,
        y1: np.ndarray,
        Y0: np.ndarray,
        w: np.ndarray,
        pre: np.ndarray,
        cov: pd.DataFrame | None,
        n_tr: int,
    ) -> pd.DataFrame:
        idx = np.flatnonzero(pre)
        half = idx[: len(idx) // 2], idx[len(idx) // 2 :]
        rows = {
            "outcome, pre-period mean": (y1[idx].mean(), (w @ Y0[:, idx]).mean(), Y0[:, idx].mean()),
            "outcome, first half of pre": (
                y1[half[0]].mean(), (w @ Y0[:, half[0]]).mean(), Y0[:, half[0]].mean(),
            ),
            "outcome, second half of pre": (
                y1[half[1]].mean(), (w @ Y0[:, half[1]]).mean(), Y0[:, half[1]].mean(),
            ),
            "outcome, last pre period": (y1[idx[-1]], w @ Y0[:, idx[-1]], Y0[:, idx[-1]].mean()),
        }  # fmt: skip
        if cov is not None:
            num = cov.select_dtypes("number")
            tr = num.iloc[:n_tr].to_numpy().mean(axis=0)
            dn = num.iloc[n_tr:].to_numpy()
            for j, name in enumerate(num.columns):
                rows[f"covariate {name} (per area)"] = (tr[j], w @ dn[:, j], dn[:, j].mean())
        return pd.DataFrame(
            rows.values(),
            index=pd.Index(list(rows), name="predictor"),
            columns=["treated", "synthetic", "donor_mean"],
        ).astype(float)

    def _leave_one_out(
        self,
        outcome: str,
        total: np.ndarray,
        y1: np.ndarray,
        Y0: np.ndarray,
        fit: PathFit,
        core: str,
        factor: int,
        ratio: bool,
        labels: Sequence[str],
    ) -> list[dict[str, Any]]:
        sd = self.site_data
        pre, post = sd.pre_mask, sd.post_mask
        n_tr = len(sd.treated_areas if self.target == "treated" else sd.catchment_areas)
        order = [int(i) for i in np.argsort(-fit.omega, kind="stable") if fit.omega[i] > 0]
        rows = []
        for i in order[: self.max_leave_one_out]:
            keep = np.ones(Y0.shape[0], dtype=bool)
            keep[i] = False
            f = _path_for(
                y1, Y0[keep], pre, post, core, self.algorithm, n_tr, ratio,
                self.sc_ridge,
            )  # fmt: skip
            cf = float(f.cf[post].sum() * factor)
            obs = float(total[post].sum())
            rows.append(
                {
                    "outcome": outcome,
                    "dropped": labels[i],
                    "weight": float(fit.omega[i]),
                    "effect": obs - cf,
                    "pct_change": (obs - cf) / cf if cf > 0 else float("nan"),
                }
            )
        return rows

    def _placebo_in_time(
        self,
        outcome: str,
        y1: np.ndarray,
        Y0: np.ndarray,
        core: str,
        factor: int,
        n_tr: int,
        ratio: bool,
    ) -> list[dict[str, Any]]:
        sd = self.site_data
        idx = np.flatnonzero(sd.pre_mask)
        h = min(sd.n_post, len(idx) // 3)
        if h < 1 or len(idx) - h < 3:
            return []
        fake_pre = np.zeros_like(sd.pre_mask)
        fake_pre[idx[: len(idx) - h]] = True
        fake_post = np.zeros_like(sd.pre_mask)
        fake_post[idx[len(idx) - h :]] = True
        f = _path_for(y1, Y0, fake_pre, fake_post, core, self.algorithm, n_tr, ratio, self.sc_ridge)
        gap = y1 - f.cf
        rmspe = float(np.sqrt(np.mean(gap[fake_pre] ** 2)))
        cf = float(f.cf[fake_post].sum() * factor)
        eff = float(gap[fake_post].sum() * factor)
        return [
            {
                "outcome": outcome,
                "fake_start": str(sd.periods[idx[len(idx) - h]]),
                "n_fake_post": h,
                "effect": eff,
                "pct_change": eff / cf if cf > 0 else float("nan"),
                "z": float(gap[fake_post].mean() / rmspe) if rmspe > 0 else float("nan"),
            }
        ]
