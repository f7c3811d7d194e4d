"""ITS results: one outcome (:class:`OutcomeITS`) and one site (:class:`ITSResults`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dmi_eval.checks import PLACEBO_TIME, by_outcome
from dmi_eval.designs.its.model import FAMILY_LABEL, SegmentedFit, WindowEffect
from dmi_eval.power import mde_from_se
from dmi_eval.results import WindowResults, cached_frame, diagnostics_frame, series_frame
from dmi_eval.study_spec import duration_text

COMPARISON_LABEL = {
    "donor_total": "comparison-area total, areas as offset",
    "donor_mean": "comparison-area mean",
}
"""How :meth:`ITSResults.method` and :meth:`ITSResults.describe` name a ``comparison``."""


# ---------------------------------------------------------------------------
# site-level design
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OutcomeITS:
    """The ITS of one outcome of one site (read-only; see :class:`ITSResults`)."""

    outcome: str
    fit: SegmentedFit
    periods: pd.PeriodIndex
    roles: tuple[str, ...]
    used: np.ndarray
    observed: np.ndarray
    comparison: np.ndarray | None
    windows: Mapping[str, WindowEffect]
    placebo: pd.DataFrame
    placebo_summary: Mapping[str, float]
    choices: Mapping[str, Any]


@dataclass(frozen=True)
class ITSResults(WindowResults):
    """Results of :class:`ITS` for one site (read-only).

    Attributes
    ----------
    site_id, design
        The site and the design name (``"its"`` or ``"cits"``).
    level, last_k
        Confidence level of the intervals; length of the ``last{k}`` window.
    outcomes
        Fitted outcomes, in order.
    by_outcome
        Outcome -> :class:`OutcomeITS`.
    comparison
        What ``"cits"`` compares the market with: ``"donor_total"`` (the
        comparison areas' total, their number as an offset) or ``"donor_mean"``;
        ``"none"`` for ``"its"``.
    mde_alpha
        One-sided level of the test behind ``mde`` / ``mde_last``.
    """

    site_id: str
    design: str
    level: float
    last_k: int
    outcomes: tuple[str, ...]
    by_outcome: Mapping[str, OutcomeITS]
    comparison: str = "none"
    mde_alpha: float = 0.05

    @property
    def comparison_label(self) -> str:
        """What the controlled series is compared with, in words ("" for ``"its"``)."""
        return COMPARISON_LABEL.get(self.comparison, "")

    def method(self, outcome: str) -> str:
        """The ``method`` text of an outcome's effects rows."""
        o = self._get(outcome)
        label = FAMILY_LABEL[o.fit.family]
        conf = f"{100 * self.level:g}%"
        against = f" vs {self.comparison_label} (Linden CITS)" if self.comparison_label else ""
        cov = {"ar1": " AR(1)-sandwich", "hac": " Newey-West"}.get(
            str(o.choices.get("count_cov", "model")), ""
        )
        dist = "t" if o.fit.use_t else "normal"
        return (
            f"{label}{against}{cov} delta {conf}, two-sided ({dist}); "
            "test of log(observed/counterfactual) over the window"
        )

    # --- the shared DesignResults members ------------------------------------
    @property
    def notes(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(n for o in self.outcomes for n in self.by_outcome[o].fit.notes)

    @cached_frame
    def series(self) -> pd.DataFrame:  # type: ignore[override]
        frames = []
        for outcome in self.outcomes:
            d = self.get_plot_data(outcome)
            frames.append(
                series_frame(
                    outcome,
                    d["period"],
                    d["role"],
                    d["observed"],
                    d["counterfactual"],
                    d["low"],
                    d["high"],
                )
            )
        return pd.concat(frames, ignore_index=True)

    @cached_frame
    def checks(self) -> dict[str, pd.DataFrame]:  # type: ignore[override]
        return {PLACEBO_TIME: by_outcome({o: self.placebo(o) for o in self.outcomes})}

    def coefficients(self, outcome: str) -> pd.DataFrame:
        """Coefficient table of an outcome's model (see :meth:`SegmentedFit.coefficients`)."""
        return self._get(outcome).fit.coefficients()

    def outcome_choices(self, outcome: str) -> dict[str, Any]:
        """Every modelling choice for an outcome, with the reasons for data-driven ones."""
        return dict(self._get(outcome).choices)

    def placebo(self, outcome: str) -> pd.DataFrame:
        """Placebo-in-time estimates: ``period, pct_change, log_ratio, p_value``."""
        return self._get(outcome).placebo.copy()

    def placebo_summary(self, outcome: str) -> dict[str, float]:
        """Real estimate over the placebo window length, its rank and placebo p-values."""
        return dict(self._get(outcome).placebo_summary)

    @cached_frame
    def diagnostics(self) -> pd.DataFrame:  # type: ignore[override]
        """One row per outcome: shared columns, then model, residual tests, placebo rank."""
        rows = []
        for outcome in self.outcomes:
            o = self.by_outcome[outcome]
            coefs = o.fit.coefficients().set_index("term")
            level = "z_level" if self.design == "cits" else "level"
            row: dict[str, Any] = {
                "site": self.site_id,
                "outcome": outcome,
                "design": self.design,
                "family": o.fit.family,
                "seasonality": o.choices["seasonality"],
                "n_pre": int(o.choices["n_pre"]),
                "n_post": int(o.choices["n_post"]),
                "level_change": float(coefs.loc[level, "estimate"]),
                "level_change_se": float(coefs.loc[level, "se"]),
                "level_change_p": float(coefs.loc[level, "p_value"]),
            }
            row.update(o.fit.diagnostics())
            for window in self.windows:
                row[f"p_lower_{window}"] = o.windows[window].p_lower
                row[f"rate_ratio_{window}"] = o.windows[window].rate_ratio
            df = o.fit.df_resid if o.fit.use_t else None
            for key, window in (("mde", "post"), ("mde_last", f"last{self.last_k}")):
                se = o.windows[window].log_ratio_se
                row[key] = mde_from_se(se, alpha=self.mde_alpha, df=df)
            row["min_p"] = 0.0
            row.update({f"placebo_{k}": v for k, v in o.placebo_summary.items()})
            # rank-based two-sided placebo p-value (NaN when no placebo could be fitted)
            row["placebo_rank_p"] = float(o.placebo_summary.get("p_two_sided", float("nan")))
            row["notes"] = "; ".join(o.fit.notes)
            rows.append(row)
        frame = pd.DataFrame(rows)
        shared = pd.DataFrame(
            {
                "outcome": frame["outcome"],
                "n_pre": frame["n_pre"],
                "pre_fit_ratio": frame["pre_rmse_ratio"],
                "poor_fit": np.nan,
            }
        )
        return diagnostics_frame(shared, frame)

    def get_plot_data(self, outcome: str) -> pd.DataFrame:
        """Series behind :func:`dmi_eval.plots.its.plot_its`.

        Columns ``period, observed, fitted, counterfactual, low, high, role``
        (plus ``comparison``, the series the market is compared with, for
        ``"cits"``: the comparison areas' total or mean); the excluded
        transition period has an observed value but no fitted ones.
        """
        o = self._get(outcome)
        n = len(o.periods)
        fitted = np.full(n, np.nan)
        cf = np.full(n, np.nan)
        lo = np.full(n, np.nan)
        hi = np.full(n, np.nan)
        target = o.fit.target
        cf_all = o.fit.counterfactual()
        band = o.fit.counterfactual_band()
        fitted[o.used] = o.fit.fitted[target]
        cf[o.used] = cf_all[target]
        lo[o.used] = band[0][target]
        hi[o.used] = band[1][target]
        frame = pd.DataFrame(
            {
                "period": o.periods,
                "observed": o.observed.astype(float),
                "fitted": fitted,
                "counterfactual": cf,
                "low": lo,
                "high": hi,
                "role": list(o.roles),
            }
        )
        if o.comparison is not None:
            frame["comparison"] = o.comparison
        return frame

    def call_in_period(self, outcome: str) -> pd.Period:
        """First period that is not pre (the transition, or the first post period)."""
        o = self._get(outcome)
        idx = next(i for i, r in enumerate(o.roles) if r != "pre")
        return o.periods[idx]

    def describe(self) -> str:
        """Plain-text account of every choice, one paragraph per outcome."""
        lines = []
        for outcome in self.outcomes:
            c = self.by_outcome[outcome].choices
            parts = [
                f"{outcome}: {FAMILY_LABEL[c['family']]} segmented regression"
                + (
                    f" against the {self.comparison_label} (Linden's controlled ITS)"
                    if self.comparison_label
                    else ""
                ),
                f"family {c['family']} ({c['family_reason']})",
                f"seasonality {c['seasonality']} ({c['seasonality_reason']})",
                "level change" + (" and slope change" if c["slope_change"] else ""),
                f"{c['n_pre']} pre and {c['n_post']} post periods, "
                f"{duration_text(c['n_transition'], 'transition period')} excluded",
            ]
            if c.get("count_cov") == "ar1":
                parts.append(
                    "covariance: quasi-likelihood sandwich with AR(1) working correlation "
                    f"(estimated rho {c['ar1_rho']:.2f})"
                )
            if "hac_lags" in c and c["hac_lags"] is not None:
                parts.append(f"Newey-West lags {c['hac_lags']} ({c.get('hac_reason', 'given')})")
            parts.append(
                f"windows: whole post period and last {c['last_k_used']} periods; "
                f"{100 * self.level:g}% intervals by the delta method on "
                "log(observed/counterfactual)"
            )
            parts.append(f"{c['n_placebos']} placebo-in-time dates")
            lines.append("; ".join(parts) + ".")
        return "\n".join(lines)
