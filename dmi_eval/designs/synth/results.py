"""Site-level synthetic-control results (:class:`SyntheticControlResults`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dmi_eval.checks import LEAVE_ONE_OUT, PLACEBO_TIME
from dmi_eval.designs.synth.reference import Method
from dmi_eval.inference import (
    PlaceboTest,
)
from dmi_eval.inference.noise import NoiseInputs, NoiseStandardisedTest
from dmi_eval.options import Sided
from dmi_eval.results import (
    DesignResults,
    cached_frame,
    diagnostics_frame,
    effects_frame,
    series_frame,
    table_frame,
)

# ---------------------------------------------------------------------------
# Site-level model
# ---------------------------------------------------------------------------
_DESIGN_LABEL = {"sc": "synthetic control", "sdid": "synthetic DID"}


@dataclass(frozen=True)
class SyntheticControlResults(DesignResults):
    """Results of :meth:`SyntheticControl.fit` (read-only).

    Accessors return copies. The one-sided "lower" p-value the verdict needs
    is the ``p_value`` column of :meth:`effects` when the model was built with
    ``sided="lower"`` (the default), and is always available as
    ``p_value(outcome, window="post", sided="lower")``.

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
    noise
        Outcome -> :class:`~dmi_eval.inference.noise.NoiseInputs` when
        the placebo statistic is ``"noise"`` (the default): the p-values and
        intervals then come from
        :class:`~dmi_eval.inference.noise.NoiseStandardisedTest`, and
        ``diagnostics`` adds ``n_placebos``, ``min_p``, ``drift_sd``,
        ``dispersion`` and ``mde_placebo`` / ``mde_placebo_last``: the smallest
        reduction the one-sided ``mde_alpha`` test detects with 80% power over the post /
        last-k window, from the placebos' mirrored reference distribution
        (:meth:`~dmi_eval.inference.noise.NoiseStandardisedTest.mde`); the
        verdict reads it (:data:`dmi_eval.evaluation.MDE_COLUMNS`).
    estimator
        SC's estimator: ``"simplex"`` weights or ``"factor"`` (generalized
        synthetic control, :mod:`dmi_eval.designs.synth.factor`; the
        diagnostics then give ``n_factors`` and the cross-validation
        criterion ``factor_cv``), ``"joint"`` or ``"augmented"`` (factors and
        loadings from every outcome, :mod:`dmi_eval.designs.synth.joint`). In
        ``choices``.
    """

    site_id: str
    method: Method
    outcomes: tuple[str, ...]
    primary_outcome: str
    periods: pd.PeriodIndex
    roles: pd.Series
    n_treated: int
    last_k: int
    sided: Sided
    level: float
    max_pre_mspe_multiple: float | None
    paths: Mapping[str, pd.DataFrame]
    weights: pd.DataFrame
    time_weights: pd.DataFrame
    fit_diagnostics: pd.DataFrame
    placebos: Mapping[str, PlaceboTest]
    leave_one_out: pd.DataFrame
    placebo_in_time: pd.DataFrame
    balance_tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    noise: Mapping[str, NoiseInputs] = field(default_factory=dict)
    estimator: str = "simplex"
    mde_alpha: float = 0.05

    # -- the shared DesignResults members --------------------------------------
    @property
    def design(self) -> str:  # type: ignore[override]
        return self.method

    @property
    def windows(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("post", f"last{self.last_k}")

    @property
    def choices(self) -> dict[str, Any]:  # type: ignore[override]
        return {
            "method": self.method,
            "estimator": self.estimator,
            "sided": self.sided,
            "level": self.level,
            "last_k": self.last_k,
            "max_pre_mspe_multiple": self.max_pre_mspe_multiple,
        }

    @cached_frame
    def table(self) -> pd.DataFrame:  # type: ignore[override]
        """Effects plus ``level``, the three rank-test tails, each counted on its own, and the
        log-ratio ``se`` of the noise-standardised test
        (:meth:`~dmi_eval.inference.noise.NoiseStandardisedTest.log_se`; NaN under the other
        placebo statistics, which have no variance model)."""
        tails, se = [], []
        for outcome in self.outcomes:
            for window in self.windows:
                noise = self.noise_test(outcome, window)  # built once for all four numbers
                if noise is not None:
                    tails.append(noise.p_values())
                    se.append(noise.log_se())
                    continue
                tails.append(
                    tuple(
                        self.p_value(outcome, window=window, sided=a)
                        for a in ("lower", "greater", "two-sided")
                    )
                )
                se.append(float("nan"))
        return table_frame(self.effects(), self.level, tails, se)

    @cached_frame
    def series(self) -> pd.DataFrame:  # type: ignore[override]
        frames = []
        for outcome in self.outcomes:
            path = self.paths[outcome]
            frames.append(
                series_frame(
                    outcome,
                    path.index,
                    path["role"].to_numpy(),
                    path["observed"].to_numpy(dtype=float),
                    path["synthetic"].to_numpy(dtype=float),
                )
            )
        return pd.concat(frames, ignore_index=True)

    @cached_frame
    def diagnostics(self) -> pd.DataFrame:  # type: ignore[override]
        """One row per outcome (indexed by outcome): shared columns, then the fit's own."""
        d = self.fit_diagnostics
        shared = pd.DataFrame(
            {
                "outcome": d["outcome"].to_numpy(),
                "n_pre": int((self.roles == "pre").sum()),
                "pre_fit_ratio": d["pre_rmspe_ratio"].to_numpy(dtype=float),
                "poor_fit": d["poor_fit"].to_numpy(),
            }
        )
        frame = diagnostics_frame(shared, d)
        nan = float("nan")
        mde, mde_last, drift, phi, n_pl = [], [], [], [], []
        for outcome in frame["outcome"]:
            test = self.noise_test(outcome)
            last = self.noise_test(outcome, self.windows[-1])
            inputs = self.noise.get(outcome)
            mde.append(test.mde(self.mde_alpha) if test is not None else nan)
            mde_last.append(last.mde(self.mde_alpha) if last is not None else nan)
            drift.append(float(np.sqrt(test.tau2)) if test is not None else nan)
            phi.append(inputs.dispersion if inputs is not None else nan)
            placebo = self.placebos.get(outcome)
            if test is not None:  # the noise test uses the placebos busy enough for it
                n_pl.append(test.n_placebos)
            else:
                n_pl.append(0 if placebo is None else placebo.n_placebos)
        frame["n_placebos"] = n_pl
        frame["min_p"] = [1.0 / (n + 1) for n in n_pl]
        frame["mde_placebo"] = mde
        frame["mde_placebo_last"] = mde_last
        frame["drift_sd"] = drift
        frame["dispersion"] = phi
        frame.index = pd.Index(frame["outcome"].to_numpy())
        return frame

    def noise_test(self, outcome: str, window: str = "post") -> NoiseStandardisedTest | None:
        """The noise-standardised placebo test of one outcome and window (None if not used)."""
        inputs = self.noise.get(outcome)
        if inputs is None:
            return None
        return inputs.test(self._windows()[window])

    @cached_frame
    def checks(self) -> dict[str, pd.DataFrame]:  # type: ignore[override]
        return {
            PLACEBO_TIME: self.placebo_in_time.copy(),
            LEAVE_ONE_OUT: self.leave_one_out.copy(),
        }

    # -- windows --------------------------------------------------------------
    def _windows(self) -> dict[str, np.ndarray]:
        post = (self.roles == "post").to_numpy()
        k = min(self.last_k, int(post.sum()))
        last = post.copy()
        idx = np.flatnonzero(post)
        last[idx[:-k]] = False
        return {"post": post, f"last{self.last_k}": last}

    def p_value(self, outcome: str, *, window: str = "post", sided: Sided = "lower") -> float:
        """Placebo-in-space rank p-value in ``window``, the requested tail counted on its own."""
        noise = self.noise_test(outcome, window)
        if noise is not None:
            lower, upper, two = noise.p_values()
            return {"lower": lower, "greater": upper, "two-sided": two}[sided]
        test = self.placebos.get(outcome)
        if test is None or test.n_placebos == 0:
            return float("nan")
        mask = self._windows()[window]
        return test.p_value(mask, sided=sided, max_pre_mspe_multiple=self.max_pre_mspe_multiple)

    def p_value_lower(self, outcome: str, window: str = "post") -> float:
        """One-sided p-value of a reduction (the verdict's test), whatever ``sided`` was."""
        return self.p_value(outcome, window=window, sided="lower")

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
            mirror = " and their mirror images" if outcome in self.noise else ""
            statistic = (
                "log ratio over its counting-noise and drift SD"
                if outcome in self.noise
                else "standardised mean gap"
            )
            method = (
                f"{_DESIGN_LABEL[self.method]}; placebo-in-space rank test over {{n}} placebo "
                f"areas{mirror} ({statistic}), {self.sided}"
                f"{'' if self.sided == 'two-sided' else ', one-sided'}; "
                f"{round(100 * self.level)}% interval "
                + (
                    "inverting the test"
                    if outcome in self.noise
                    else "from the placebo distribution"
                )
            )
            for window, mask in self._windows().items():
                obs = float(path["observed"].to_numpy()[mask].sum())
                cf = float(path["synthetic"].to_numpy()[mask].sum())
                eff = obs - cf
                pct = eff / cf if cf > 0 else float("nan")
                lo = hi = p = float("nan")
                noise = self.noise_test(outcome, window)
                # the placebos this window's test ranked (the noise test keeps those with
                # enough incidents in the window, so the count differs by window)
                used = n_pl if noise is None else noise.n_placebos
                if noise is not None:
                    lo, hi = noise.interval(self.level)
                    p = self.p_value(outcome, window=window, sided=self.sided)
                elif test is not None and n_pl > 0:
                    g_lo, g_hi = test.interval(
                        mask, level=self.level, max_pre_mspe_multiple=self.max_pre_mspe_multiple
                    )
                    scale = self.n_treated * int(mask.sum()) if self._per_area else int(mask.sum())
                    if cf > 0:
                        # A count cannot fall below zero: the change is bounded at -100%.
                        lo = max(g_lo * scale / cf, -1.0)
                        hi = max(g_hi * scale / cf, -1.0)
                    p = test.p_value(
                        mask,
                        sided=self.sided,
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
                        "method": method.format(n=used),
                    }
                )
        return effects_frame(rows)

    @property
    def _per_area(self) -> bool:
        return bool(self.fit_diagnostics["scale"].iloc[0] == "per_area")

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

    def path_data(self, outcome: str | None = None) -> pd.DataFrame:
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
