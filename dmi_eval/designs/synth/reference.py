"""Classic (ADH) synthetic control on a units x periods table: predictor tables, :class:`Synth`, :class:`SynthFit`."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from dmi_eval.designs.synth.core import (
    Solver,
    VSearch,
    VSolution,
    distinct_solutions,
    search_v,
    simplex_ls,
    standardise,
    w_given_v,
)
from dmi_eval.errors import DesignError
from dmi_eval.inference import (
    PlaceboTest,
    placebo_in_space,
)
from dmi_eval.options import check_choice

Method = Literal["sc", "sdid"]


Target = Literal["treated", "catchment"]


Scale = Literal["per_area", "total"]


Anchor = Literal["auto", "match", "demean", "ratio"]


Standardisation = Literal["sd", "none"]


PlaceboSearch = Literal["fast", "full"]


PlaceboStatistic = Literal["noise", "rmspe", "pct"]


Estimator = Literal["simplex", "factor", "joint", "augmented"]


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

    def path_data(self, outcome: str | None = None) -> pd.DataFrame:
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
