"""DID results: one outcome (:class:`OutcomeDID`) and one site (:class:`DIDResults`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dmi_eval.checks import PRETREND
from dmi_eval.designs.did.inference import WindowEffect, _event_plot_data
from dmi_eval.designs.did.model import MODEL_LABEL, FEFit
from dmi_eval.results import WindowResults, cached_frame, diagnostics_frame, series_frame
from dmi_eval.study_spec import duration_text


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
class DIDResults(WindowResults):
    """Results of :class:`DID` for one site (read-only).

    Attributes
    ----------
    site_id, model
        The site and the model (``"poisson"``, ``"log1p"``, ``"level"``).
    inference
        ``"placebo"`` (placebo-area intervals, p-values and pre-trend test) or
        ``"cluster"`` (area-clustered SEs); see :class:`DID`.
    level, last_k, window
        Confidence level of the intervals; length of the ``last{k}`` window; event-time window.
    outcomes, by_outcome
        Fitted outcomes and outcome -> :class:`OutcomeDID`.
    """

    site_id: str
    model: str
    inference: str
    level: float
    last_k: int
    window: tuple[int, int]
    outcomes: tuple[str, ...]
    by_outcome: Mapping[str, OutcomeDID]
    design: str = "did"

    def method(self, outcome: str | None = None) -> str:
        """The ``method`` text of the effects rows."""
        conf = f"{100 * self.level:g}%"
        scale = {
            "poisson": "rate ratio, delta method on log(O/C)",
            "log1p": "exp(beta) of log(1+y) taken as the rate ratio (approximation), delta method",
            "level": "effect in counts, CI mapped to % change",
        }[self.model]
        if self.inference == "placebo":
            return (
                f"{MODEL_LABEL[self.model]} DID (area and period effects; rate ratio); "
                "placebo-in-space rank test over the control areas as fake markets and their "
                "mirror images about the placebos' median (log ratio "
                f"over its counting-noise and drift SD), two-sided; {conf} interval inverting "
                "the test"
            )
        return (
            f"{MODEL_LABEL[self.model]} DID (area and period effects, SEs clustered by area; "
            f"{scale}) {conf}, two-sided"
        )

    # --- the shared DesignResults members ------------------------------------
    @cached_frame
    def series(self) -> pd.DataFrame:  # type: ignore[override]
        """Per event time (``period`` is the event time): treated total and its counterfactual."""
        frames = []
        for outcome in self.outcomes:
            ev = self.by_outcome[outcome].event_frame
            obs = ev["treated_count"].to_numpy(dtype=float)
            est = ev[["estimate", "ci_low", "ci_high"]].to_numpy(dtype=float)
            if self.model in ("poisson", "log1p"):
                cf, hi, lo = (obs * np.exp(-est[:, i]) for i in range(3))
            else:
                cf, hi, lo = (obs - est[:, i] for i in range(3))
            times = ev["event_time"].to_numpy()
            role = np.where(times < 0, "pre", "post")
            frames.append(series_frame(outcome, times, role, obs, cf, lo, hi))
        return pd.concat(frames, ignore_index=True)

    @cached_frame
    def checks(self) -> dict[str, pd.DataFrame]:  # type: ignore[override]
        rows = [{"outcome": o, **self.by_outcome[o].pretrend} for o in self.outcomes]
        return {PRETREND: pd.DataFrame(rows)}

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

    def event_plot_data(self, outcome: str | None = None) -> pd.DataFrame:
        """Event-study series behind :func:`dmi_eval.plots.did.plot_event_study`.

        ``event_time, estimate, ci_low, ci_high, scale, reference``; for the
        log models the estimates are percent changes (fractions).
        """
        return _event_plot_data(self._get(outcome).event_frame, self.model)

    def title(self, outcome: str | None = None) -> str:
        o = self._get(outcome)
        return f"{self.site_id}: {o.outcome}, event study ({MODEL_LABEL[self.model]})"

    def outcome_choices(self, outcome: str | None = None) -> dict[str, Any]:
        return dict(self._get(outcome).choices)

    @cached_frame
    def diagnostics(self) -> pd.DataFrame:  # type: ignore[override]
        """One row per outcome: shared columns, then sample sizes and the pre-trend test."""
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
                    "mde": o.windows["post"].mde,
                    "mde_last": o.windows[f"last{self.last_k}"].mde,
                    "min_p": o.windows["post"].min_p,
                }
            )
        frame = pd.DataFrame(rows)
        shared = pd.DataFrame(
            {
                "outcome": frame["outcome"],
                "n_pre": frame["n_pre"],
                "pre_fit_ratio": np.nan,
                "poor_fit": np.nan,
            }
        )
        return diagnostics_frame(shared, frame)

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
                f"{duration_text(c['n_transition'], 'transition period')} excluded; windows: whole "
                "post period "
                f"and last {c['last_k_used']} periods. Event study over event times "
                f"{self.window[0]}..{self.window[1]} (end bins pooled, reference -1); {test}."
            )
        return "\n".join(lines)
