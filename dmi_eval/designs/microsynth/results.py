"""Micro-synthetic results (:class:`MicroSynthResults`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dmi_eval.designs.microsynth.inference import DESIGN, InferenceMethod, Sided
from dmi_eval.results import effects_frame

# ---------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class MicroSynthResults:
    """Read-only results of a micro-level synthetic control fit.

    Attributes
    ----------
    site
        Site id ("" for reference data).
    outcomes
        Outcomes reported (all were matched, unless ``match_outcomes`` said otherwise).
    windows
        Window name -> post periods it covers (``"post"`` and ``"last{k}"``).
    weights
        Weight of every unit (treated units 1, control units their calibration
        weight; about 2% non-zero in the Seattle example).
    treated_units
        Ids of the treated units.
    balance
        One row per constraint: ``target`` (treated total), ``synthetic``
        (weighted control total), ``all_scaled`` (all units' total times
        ``n_treated / n_units``), ``used`` (False for constraints dropped as
        collinear).
    calibration
        ``method`` ("exact" | "fallback" | "failed"), ``iterations``,
        ``max_misfit``, ``n_constraints``, ``n_dropped``, ``message``.
    estimates
        ``outcome, window, treated, synthetic, effect, pct_change``.
    inference
        One row per outcome (and ``"omnibus"``), window and method:
        ``statistic`` (z or omnibus statistic), ``log_ratio``, ``se``
        (of the log ratio), ``p_lower``, ``p_upper``, ``p_two_sided``,
        ``p_value`` (for the ``sided`` option), ``ci_low``, ``ci_high``.
    series
        ``outcome, period, treated, synthetic, all_scaled`` for every period.
    placebos
        Permutation statistics: ``placebo, window, outcome, statistic,
        log_ratio, se, exact`` (``outcome == "omnibus"`` for the omnibus
        statistic). Placebo sets without an exact synthetic control
        (``exact`` False) are left out of the p-values and intervals.
    notes
        Warnings for the report (fallback used, few treated units...).
    """

    site: str
    outcomes: tuple[str, ...]
    windows: Mapping[str, tuple[Any, ...]]
    alpha: float
    sided: Sided
    primary: InferenceMethod
    weights: pd.Series
    treated_units: tuple[Any, ...]
    balance: pd.DataFrame
    calibration: Mapping[str, Any]
    estimates: pd.DataFrame
    inference: pd.DataFrame
    series: pd.DataFrame
    placebos: pd.DataFrame
    n_permutations: int
    n_jackknife_groups: int
    seed: int | None
    notes: tuple[str, ...] = field(default=())

    @property
    def methods(self) -> tuple[str, ...]:
        """Inference methods available in :attr:`inference`."""
        return tuple(pd.unique(self.inference["method"]))

    def _method_label(self, method: str) -> str:
        level = f"{round(100 * (1 - self.alpha))}%"
        side = {"lower": "one-sided lower", "upper": "one-sided upper"}.get(self.sided, "two-sided")
        what = {
            "linearization": "linearization (survey-weighted regression, delta method)",
            "jackknife": f"jackknife ({self.n_jackknife_groups} groups, weights recomputed)",
            "permutation": f"permutation ({self.n_permutations} placebo sets, weights recomputed)",
        }[method]
        return f"microsynth {what} {level}, {side}"

    def effects(self, method: InferenceMethod | None = None) -> pd.DataFrame:
        """Tidy effects frame (design ``"microsynth"``), one row per outcome and window.

        ``method`` chooses the inference behind ``ci_low, ci_high, p_value``;
        default :attr:`primary` (permutation when placebos were run, else
        jackknife when run, else linearization). ``p_value`` follows the
        ``sided`` option; intervals are equal-tailed at level ``1 - alpha``.
        """
        method = method or self.primary
        if method not in self.methods:
            raise ValueError(f"method {method!r} was not run; available: {self.methods}")
        inf = self.inference[self.inference["method"] == method].set_index(["outcome", "window"])
        rows = []
        for est in self.estimates.itertuples(index=False):
            row = inf.loc[(est.outcome, est.window)]
            rows.append(
                {
                    "site": self.site,
                    "outcome": est.outcome,
                    "design": DESIGN,
                    "window": est.window,
                    "observed": est.treated,
                    "counterfactual": est.synthetic,
                    "effect": est.effect,
                    "pct_change": est.pct_change,
                    "ci_low": row["ci_low"],
                    "ci_high": row["ci_high"],
                    "p_value": row["p_value"],
                    "method": self._method_label(method),
                }
            )
        return effects_frame(rows)

    def p_value_lower(
        self, outcome: str, window: str = "post", method: InferenceMethod | None = None
    ) -> float:
        """One-sided p-value of a *reduction* (lower test), whatever ``sided`` was.

        For the verdict: linearization/jackknife ``Phi(z)``; permutation the share
        of placebo statistics below the observed one. ``outcome="omnibus"`` gives
        the omnibus test (one-sided only when the model was fitted with a
        one-sided ``sided``).
        """
        method = method or self.primary
        sel = self.inference[
            (self.inference["method"] == method)
            & (self.inference["outcome"] == outcome)
            & (self.inference["window"] == window)
        ]
        if sel.empty:
            raise KeyError(f"no {method} result for outcome {outcome!r}, window {window!r}")
        return float(sel["p_lower"].iloc[0])

    def get_plot_data(self, outcome: str) -> pd.DataFrame:
        """``period, treated, synthetic, all_scaled, post`` for one outcome."""
        if outcome not in self.outcomes:
            raise KeyError(f"outcome {outcome!r} not fitted; fitted: {', '.join(self.outcomes)}")
        frame = self.series[self.series["outcome"] == outcome].drop(columns="outcome")
        return frame.reset_index(drop=True)

    def get_permutation_data(self, outcome: str, window: str = "post") -> pd.DataFrame:
        """Standardised statistics ``statistic, kind`` (``"observed"`` row first, then placebos)."""
        obs = self.inference[
            (self.inference["method"] == "linearization")
            & (self.inference["outcome"] == outcome)
            & (self.inference["window"] == window)
        ]["statistic"]
        pl = self.placebos[
            (self.placebos["outcome"] == outcome) & (self.placebos["window"] == window)
        ]
        return pd.DataFrame(
            {
                "statistic": np.concatenate([obs.to_numpy(), pl["statistic"].to_numpy()]),
                "kind": ["observed"] * len(obs) + ["placebo"] * len(pl),
            }
        )
