"""Cross-site pooled effects: random-effects meta-analysis of log rate ratios.

Each site's effect for one design, outcome and window (a row of the tidy
effects frame) is turned into a log rate ratio ``log(1 + pct_change)`` with
the standard error of the design's own variance model (the row's ``se``
column, the log-ratio SE each design reports) -- read back from the interval
only for rows without one -- and the sites are combined with statsmodels'
:func:`~statsmodels.stats.meta_analysis.combine_effects`. :func:`pool_log_ratios`
takes the log ratios and SEs directly.

Sites can be left out on purpose (``leave_out``): a site with no estimate for
a design (the design could not be fitted there), or, for a sensitivity
analysis, the sites whose verdict is inconclusive because their data cannot
tell (:func:`unreadable_sites`). Every left-out site is kept, with its
reason, in :attr:`PooledResult.excluded` and printed by the result's sentence.

The default between-site variance estimator is Paule-Mandel (statsmodels'
``"iterated"``), recommended over DerSimonian-Laird by Veroniki et al. (2016)
because it is less biased when the number of sites is small and the
heterogeneity large; DerSimonian-Laird (``"dl"``, the classic, truncated at
zero) is available for comparison with published analyses. The default
interval is Hartung-Knapp-Sidik-Jonkman (a t interval on k - 1 degrees of
freedom around a variance rescaled by the weighted residual spread), which
holds its coverage with a handful of sites where the normal interval does not
(IntHout, Ioannidis & Borm 2014); ``interval="normal"`` gives the classic Wald
interval of published analyses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from dmi_eval.errors import DesignError
from dmi_eval.options import alpha_of, check_level
from dmi_eval.tables import fmt_interval, fmt_pct, interval_too_wide, wide_ends
from dmi_eval.verdict import BASES, Verdict

MethodRE = Literal["pm", "dl"]
Interval = Literal["hksj", "normal"]
METHOD_LABEL = {"pm": "Paule-Mandel", "dl": "DerSimonian-Laird"}
INTERVAL_LABEL = {
    "hksj": "Hartung-Knapp-Sidik-Jonkman t interval on k-1 df",
    "normal": "normal interval",
}
_STATSMODELS_METHOD = {"pm": "iterated", "dl": "dl"}

UNREADABLE_BASES: tuple[str, ...] = ("few_pre_periods", "low_count", "poor_fit")
"""Verdict bases (:data:`dmi_eval.verdict.BASES`) under which a site's estimate cannot be read:
too few periods or incidents before the call-in, or a counterfactual that misses the
pre-period. A site inconclusive for another reason (e.g. too little power to detect a drop)
has an estimate that can be read, only an imprecise one: pooling is meant for such sites."""

__all__ = ["UNREADABLE_BASES", "PooledResult", "log_ratio_inputs", "missing_sites"]
__all__ += ["pool_effects", "pool_log_ratios", "unreadable_sites"]


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _prose_interval(low: float, high: float) -> str:
    """An interval for prose by the tables' rule (:func:`dmi_eval.tables.fmt_interval`): one
    too wide to tell says so, with its ends as :func:`dmi_eval.tables.too_wide_note` gives them."""
    cell = fmt_interval(low, high)
    if not interval_too_wide(low, high) or not (math.isfinite(low) and math.isfinite(high)):
        return cell
    return f"{wide_ends(low, high)}, {cell}"


def unreadable_sites(verdicts: Mapping[str, Verdict]) -> dict[str, str]:
    """Sites whose verdict is *inconclusive* because their data cannot tell, with why.

    Parameters
    ----------
    verdicts
        Site id -> its :class:`~dmi_eval.verdict.Verdict`.

    Returns
    -------
    dict
        Site id -> ``"inconclusive: <basis in words>"``, for each verdict whose basis is in
        :data:`UNREADABLE_BASES`.
    """
    return {
        site: f"inconclusive: {BASES[v.basis]}"
        for site, v in verdicts.items()
        if v.label == "inconclusive" and v.basis in UNREADABLE_BASES
    }


def missing_sites(
    effects: pd.DataFrame, sites: Sequence[str], reasons: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Site id -> why it has no row in ``effects`` (``reasons``, else ``"no estimate"``), for
    the ``sites`` without one."""
    have = set(effects["site"].astype(str))
    why = dict(reasons or {})
    return {s: why.get(s, "no estimate") for s in sites if s not in have}


def log_ratio_inputs(effects: pd.DataFrame) -> pd.DataFrame:
    """Each row's log rate ratio and its standard error.

    Parameters
    ----------
    effects
        Rows of a results table (:data:`~dmi_eval.results.TABLE_COLUMNS`:
        ``site, pct_change, ci_low, ci_high``, ``level``, the confidence level of
        the row's interval, and ``se``, the log-ratio standard error from the
        design's own variance model, NaN where the design has none).

    Returns
    -------
    DataFrame
        ``site, log_rr, se, se_source, level, asymmetry, usable, reason``.
        ``log_rr = log(1 + pct_change)``; ``se`` is the row's own ``se`` when
        finite and positive (``se_source = "design"``), else read from the
        interval (``"interval"``): ``(log(1+ci_high) - log(1+ci_low)) / (2 z)``
        with ``z`` the normal quantile of the level (assumes an interval
        symmetric on the log scale). ``asymmetry`` is the distance of
        ``log_rr`` from the interval's log-scale midpoint in units of the
        interval's half-width / z (0 for intervals built on the log scale).
    """
    has_se = "se" in effects.columns
    if "level" not in effects.columns:
        raise ValueError(
            "the effects rows have no 'level' column (the confidence level of each interval); "
            "pass a results table (DesignResults.table or results/effects.csv)"
        )
    rows = []
    for _, r in effects.iterrows():
        pct, lo, hi = float(r["pct_change"]), float(r["ci_low"]), float(r["ci_high"])
        own = float(r["se"]) if has_se else float("nan")
        use_own = math.isfinite(own) and own > 0
        level = float(r["level"])
        if not use_own and not 0 < level < 1:
            raise ValueError(
                f"site {r['site']!r}: level {level} is not a confidence level in (0, 1) and the "
                "row has no se to pool instead"
            )
        reason = ""
        if not math.isfinite(pct):
            reason = "effect not finite"
        elif pct <= -1:
            reason = "a -100% change has no log rate ratio"
        elif not use_own and not all(math.isfinite(v) for v in (lo, hi)):
            reason = "interval not finite and no standard error"
        elif not use_own and min(lo, hi) <= -1:
            reason = "a -100% interval bound has no log rate ratio"
        elif not use_own and not lo < hi:
            reason = "interval has no width"
        log_rr = se = asym = float("nan")
        if not reason:
            log_rr = math.log1p(pct)
            interval_ok = math.isfinite(level) and -1 < lo < hi and math.isfinite(hi)
            if interval_ok:
                z = float(stats.norm.isf((1 - level) / 2))
                se_int = (math.log1p(hi) - math.log1p(lo)) / (2 * z)
                asym = (log_rr - (math.log1p(hi) + math.log1p(lo)) / 2) / se_int
            se = own if use_own else se_int
        rows.append(
            {
                "site": r["site"],
                "log_rr": log_rr,
                "se": se,
                "se_source": "design" if use_own else "interval",
                "level": level,
                "asymmetry": asym,
                "usable": not reason,
                "reason": reason,
            }
        )
    cols = ["site", "log_rr", "se", "se_source", "level", "asymmetry", "usable", "reason"]
    return pd.DataFrame(rows, columns=cols)


@dataclass(frozen=True)
class PooledResult:
    """A random-effects meta-analysis of the sites' log rate ratios (read-only).

    Attributes
    ----------
    design, outcome, window
        What was pooled.
    method_re, level
        Between-site variance estimator (``"pm"`` or ``"dl"``); confidence level of the
        pooled and prediction intervals (``alpha`` is ``1 - level``).
    interval
        ``"hksj"`` (Hartung-Knapp-Sidik-Jonkman, t on k - 1 df) or ``"normal"``.
    sites, log_rr, se, weights
        Pooled sites, their log rate ratios, standard errors and relative
        random-effects weights (summing to 1).
    pooled_log, pooled_se
        Random-effects mean log rate ratio and the standard error its interval
        and test use (HKSJ-rescaled for ``"hksj"``).
    re_se
        The classic random-effects standard error :math:`(\\sum w_i^*)^{-1/2}`.
    fixed_log, fixed_se
        Fixed-effect (inverse-variance) mean and SE.
    tau2, i2, q, q_df, q_p_value
        Between-site variance, I^2 (fraction), Cochran's Q, its degrees of
        freedom and chi-square p-value.
    pi_low_log, pi_high_log
        Prediction interval for a new site's log rate ratio (NaN with fewer than 3 sites).
    excluded
        Site -> reason, for rows that could not be pooled.
    """

    design: str
    outcome: str
    window: str
    method_re: str
    level: float
    sites: tuple[str, ...]
    log_rr: np.ndarray
    se: np.ndarray
    weights: np.ndarray
    pooled_log: float
    pooled_se: float
    fixed_log: float
    fixed_se: float
    tau2: float
    i2: float
    q: float
    q_df: int
    q_p_value: float
    pi_low_log: float
    pi_high_log: float
    excluded: Mapping[str, str]
    interval: str = "hksj"
    re_se: float = float("nan")

    @property
    def alpha(self) -> float:
        """``1 - level``, the tail mass of the two-sided intervals."""
        return alpha_of(self.level)

    def __post_init__(self) -> None:
        for name in ("log_rr", "se", "weights"):
            arr = np.array(getattr(self, name), dtype=float, copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def k(self) -> int:
        return len(self.sites)

    @property
    def z(self) -> float:
        """Normal quantile of the level (used for the sites' own rows)."""
        return float(stats.norm.isf(self.alpha / 2))

    @property
    def crit(self) -> float:
        """Critical value of the pooled interval: ``t(k-1)`` for HKSJ, normal otherwise."""
        if self.interval == "hksj":
            return float(stats.t.isf(self.alpha / 2, self.k - 1))
        return self.z

    @property
    def pct_change(self) -> float:
        """Pooled percent change (fraction): ``exp(pooled_log) - 1``."""
        return math.expm1(self.pooled_log)

    @property
    def ci_low(self) -> float:
        return math.expm1(self.pooled_log - self.crit * self.pooled_se)

    @property
    def ci_high(self) -> float:
        return math.expm1(self.pooled_log + self.crit * self.pooled_se)

    @property
    def pi_low(self) -> float:
        return math.expm1(self.pi_low_log)

    @property
    def pi_high(self) -> float:
        return math.expm1(self.pi_high_log)

    @property
    def includes_no_change(self) -> bool:
        """Whether the pooled interval includes no change (0%)."""
        return self.ci_low <= 0.0 <= self.ci_high

    @property
    def p_value(self) -> float:
        """Two-sided test of ``pooled_log = 0`` (t on k - 1 df for HKSJ, else normal)."""
        stat = abs(self.pooled_log / self.pooled_se)
        if self.interval == "hksj":
            return float(2 * stats.t.sf(stat, self.k - 1))
        return float(2 * stats.norm.sf(stat))

    @property
    def method(self) -> str:
        conf = f"{100 * self.level:g}%"
        return (
            f"random-effects meta-analysis of log rate ratios ({METHOD_LABEL[self.method_re]} "
            f"tau^2), {conf} {INTERVAL_LABEL[self.interval]}, two-sided; {conf} prediction "
            "interval with t(k-2) (Higgins et al. 2009)"
        )

    def summary(self) -> pd.DataFrame:
        """One row per site, then the pooled (random and fixed) and prediction rows.

        Columns ``row, pct_change, ci_low, ci_high, log_rr, se, weight``;
        intervals are fractions; the last rows carry ``tau2, i2, q, q_p_value``.
        """
        z, nan = self.z, float("nan")
        rows = [
            (s, math.expm1(b), math.expm1(b - z * se), math.expm1(b + z * se), b, se, w, nan)
            for s, b, se, w in zip(self.sites, self.log_rr, self.se, self.weights, strict=True)
        ]
        mu, se_mu = self.pooled_log, self.pooled_se
        rows.append(
            ("pooled (random effects)", self.pct_change, self.ci_low, self.ci_high, mu, se_mu)
            + (1.0, self.p_value)
        )
        b, se = self.fixed_log, self.fixed_se
        p_fixed = float(2 * stats.norm.sf(abs(b / se)))
        rows.append(
            ("pooled (fixed effect)", math.expm1(b), math.expm1(b - z * se), math.expm1(b + z * se))
            + (b, se, nan, p_fixed)
        )
        rows.append(
            ("prediction interval (new site)", self.pct_change, self.pi_low, self.pi_high, mu)
            + (nan, nan, nan)
        )
        cols = ["row", "pct_change", "ci_low", "ci_high", "log_rr", "se", "weight", "p_value"]
        frame = pd.DataFrame(rows, columns=cols)
        for name in ("tau2", "i2", "q", "q_p_value"):  # on the random-effects row only
            frame[name] = [getattr(self, name) if i == self.k else nan for i in frame.index]
        return frame

    def get_plot_data(self) -> pd.DataFrame:
        """Series behind :func:`dmi_eval.plots.pooling.plot_forest` (same as :meth:`summary`)."""
        return self.summary()

    def left_out(self, names: Mapping[str, str] | None = None) -> str:
        """The sites not pooled, with why: ``"Millbrook (reason); ..."``, or ``"none"``.

        ``names`` maps site ids to the names to print (default: the ids).
        """
        label = dict(names or {})
        parts = [f"{label.get(s, s)} ({why})" for s, why in self.excluded.items()]
        return "; ".join(parts) if parts else "none"

    def zero_words(self) -> str:
        """Where the pooled interval lies against no change (0%): "includes", "lies below"..."""
        if self.includes_no_change:
            return "includes"
        return "lies below" if self.ci_high < 0 else "lies above"

    def verdict_on_zero(self) -> str:
        """Whether the pooled interval includes no change, in plain words."""
        way = "fell" if self.pooled_log < 0 else "rose"
        what = (
            f"the sites do not show that {self.outcome} offences changed"
            if self.includes_no_change
            else f"{self.outcome} offences {way}"
        )
        where = f"The {100 * self.level:g}% interval {self.zero_words()} no change (0%)"
        return f"{where}: on average across these sites, {what}."

    def prediction_words(self) -> str:
        """The prediction interval in words, by the tables' too-wide rule ("" if none)."""
        if not math.isfinite(self.pi_low_log):
            return ""
        conf = f"{100 * self.level:g}%"
        ends = _prose_interval(self.pi_low, self.pi_high)
        if interval_too_wide(self.pi_low, self.pi_high):
            return (
                f"Where a new site's change would fall cannot be told: the {conf} prediction "
                f"interval runs from {ends} (the sites' changes differ too much)."
            )
        return (
            f"At a new site the change would be expected to lie between "
            f"{ends.replace(' to ', ' and ')} ({conf} prediction interval)."
        )

    def sentence(
        self, design_name: str | None = None, names: Mapping[str, str] | None = None
    ) -> str:
        """The pooled change with its interval and two-sided p, whether the interval includes
        no change, the prediction interval (by the tables' too-wide rule) and the sites not
        pooled with why (``design_name``: the design in words; ``names``: site id -> name)."""
        conf = f"{100 * self.level:g}%"
        kind = "HKSJ interval" if self.interval == "hksj" else "interval"
        text = (
            f"Across {self.k} sites, {self.outcome} offences changed by {fmt_pct(self.pct_change)}"
            f" on average against the {design_name or self.design} counterfactual over the "
            f"{self.window} window "
            f"({conf} {kind} {_prose_interval(self.ci_low, self.ci_high)}, two-sided "
            f"{_p(self.p_value)}; random-effects meta-analysis, "
            f"{METHOD_LABEL[self.method_re]} tau^2 = {self.tau2:.3f}, I^2 = {self.i2:.0%}, "
            f"Q = {self.q:.1f} on {self.q_df} df, heterogeneity {_p(self.q_p_value)}). "
            + self.verdict_on_zero()
        )
        pred = self.prediction_words()
        if pred:
            text += " " + pred
        if self.excluded:
            text += f" Not pooled: {self.left_out(names)}."
        return text

    def sensitivity(
        self,
        full: PooledResult,
        design_name: str | None = None,
        names: Mapping[str, str] | None = None,
    ) -> str:
        """This result as a sensitivity analysis of ``full`` (the same pool with more sites).

        Names the sites this pool leaves out that ``full`` keeps, with why, and gives this
        pool's change, interval, whether it includes no change, and tau^2 beside ``full``'s.
        """
        label = dict(names or {})
        dropped = [s for s in full.sites if s not in self.sites]
        why = "; ".join(f"{label.get(s, s)} ({self.excluded.get(s, 'left out')})" for s in dropped)
        conf = f"{100 * self.level:g}%{' HKSJ' if self.interval == 'hksj' else ''}"
        return (
            f"Sensitivity: without {why}, the {self.k} other sites' pooled change under the "
            f"{design_name or self.design} is {fmt_pct(self.pct_change)} ({conf} interval "
            f"{_prose_interval(self.ci_low, self.ci_high)}, which {self.zero_words()} no change; "
            f"tau^2 = {self.tau2:.3f}), against {fmt_pct(full.pct_change)} "
            f"(tau^2 = {full.tau2:.3f}) with all {full.k}."
        )


def _check_options(method_re: str, interval: str) -> None:
    if method_re not in get_args(MethodRE):
        raise ValueError(f"method_re must be one of pm, dl; got {method_re!r}")
    if interval not in get_args(Interval):
        raise ValueError(f"interval must be one of hksj, normal; got {interval!r}")


def pool_log_ratios(
    sites: Sequence[str],
    log_rr: Sequence[float] | np.ndarray,
    se: Sequence[float] | np.ndarray,
    *,
    design: str = "",
    outcome: str = "",
    window: str = "post",
    method_re: MethodRE = "pm",
    interval: Interval = "hksj",
    level: float = 0.95,
    excluded: Mapping[str, str] | None = None,
) -> PooledResult:
    """Random-effects meta-analysis of per-site log rate ratios with their SEs.

    Parameters
    ----------
    sites, log_rr, se
        One entry per site: its log rate ratio and the standard error from the
        design's own variance model.
    design, outcome, window
        Labels for the result.
    method_re
        ``"pm"`` (Paule-Mandel, default) or ``"dl"`` (DerSimonian-Laird, truncated at 0).
    interval
        ``"hksj"`` (default) or ``"normal"``.
    level
        Confidence level of the pooled and prediction intervals (default 0.95).
    excluded
        Sites left out upstream, with reasons (carried into the result).

    Returns
    -------
    PooledResult

    Notes
    -----
    With :math:`y_i` the log rate ratios and :math:`v_i = se_i^2`:
    :math:`Q = \\sum w_i (y_i - \\bar y_F)^2`, :math:`w_i = 1/v_i`;
    DerSimonian-Laird :math:`\\tau^2 = \\max(0, (Q - (k-1)) / (\\sum w_i -
    \\sum w_i^2 / \\sum w_i))`; Paule-Mandel solves
    :math:`\\sum (y_i - \\hat\\mu)^2/(v_i + \\tau^2) = k - 1`. Then
    :math:`\\hat\\mu = \\sum w_i^* y_i / \\sum w_i^*` with :math:`w_i^* =
    1/(v_i + \\tau^2)` and :math:`se_{RE} = (\\sum w_i^*)^{-1/2}`. The normal
    interval is :math:`\\hat\\mu \\pm z_{1-\\alpha/2}\\, se_{RE}`. HKSJ
    (Hartung & Knapp 2001; Sidik & Jonkman 2002) rescales the variance by the
    weighted residual spread, :math:`q = \\sum w_i^* (y_i - \\hat\\mu)^2/(k-1)`,
    with the ad hoc floor :math:`q^* = \\max(1, q)` (Knapp & Hartung 2003; so
    the interval is never narrower than the normal one, as Jackson et al. 2017
    advise for few studies), :math:`se_{HKSJ} = \\sqrt{q^*}\\, se_{RE}`, and
    uses :math:`t_{k-1}`: :math:`\\hat\\mu \\pm t_{k-1, 1-\\alpha/2}\\,
    se_{HKSJ}`. :math:`I^2 = \\max(0, (Q - (k-1))/Q)`; prediction interval
    :math:`\\hat\\mu \\pm t_{k-2, 1-\\alpha/2} \\sqrt{\\tau^2 + se^2}` with the
    interval's SE (Higgins, Thompson & Spiegelhalter 2009).
    """
    _check_options(method_re, interval)
    alpha = alpha_of(check_level(level))
    y = np.asarray(log_rr, dtype=float)
    s = np.asarray(se, dtype=float)
    names = tuple(str(x) for x in sites)
    if not (y.shape == s.shape == (len(names),)):
        raise ValueError("sites, log_rr and se must have the same length")
    if not (np.isfinite(y).all() and np.isfinite(s).all() and (s > 0).all()):
        raise ValueError("log_rr must be finite and se finite and positive")
    k = y.size
    if k < 2:
        raise DesignError(
            f"only {k} site(s) with a usable {design} estimate of {outcome}; pooling needs 2"
        )
    v = s**2
    with np.errstate(invalid="ignore"):  # statsmodels' DL tau^2 may be negative (truncated below)
        res = combine_effects(y, v, method_re=_STATSMODELS_METHOD[method_re], alpha=alpha)
    tau2 = max(float(res.tau2), 0.0)
    w = 1.0 / (v + tau2)
    mu = float(np.sum(w * y) / np.sum(w))
    se_re = float(1.0 / math.sqrt(np.sum(w)))
    if float(res.tau2) >= 0:  # statsmodels' numbers, unless DL's tau^2 was negative
        mu, se_re = float(res.mean_effect_re), float(res.sd_eff_w_re)
    q = float(res.q)
    df = k - 1
    i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
    se_mu = se_re
    if interval == "hksj":
        q_hk = float(np.sum(w * (y - mu) ** 2) / df)
        se_mu = math.sqrt(max(1.0, q_hk)) * se_re
    if k >= 3:
        t = float(stats.t.isf(alpha / 2, k - 2))
        half = t * math.sqrt(tau2 + se_mu**2)
        pi = (mu - half, mu + half)
    else:
        pi = (float("nan"), float("nan"))
    return PooledResult(
        design=str(design),
        outcome=str(outcome),
        window=window,
        method_re=method_re,
        level=level,
        sites=names,
        log_rr=y,
        se=s,
        weights=w / w.sum(),
        pooled_log=mu,
        pooled_se=se_mu,
        fixed_log=float(res.mean_effect_fe),
        fixed_se=float(res.sd_eff_w_fe),
        tau2=tau2,
        i2=i2,
        q=q,
        q_df=df,
        q_p_value=float(stats.chi2.sf(q, df)),
        pi_low_log=pi[0],
        pi_high_log=pi[1],
        excluded=MappingProxyType(dict(excluded or {})),
        interval=interval,
        re_se=se_re,
    )


def pool_effects(
    effects: pd.DataFrame,
    *,
    design: str | None = None,
    outcome: str | None = None,
    window: str = "post",
    method_re: MethodRE = "pm",
    interval: Interval = "hksj",
    level: float = 0.95,
    leave_out: Mapping[str, str] | None = None,
) -> PooledResult:
    """Random-effects meta-analysis of one design/outcome/window across sites.

    Parameters
    ----------
    effects
        A results table (any number of designs, outcomes and windows): its
        ``level`` column gives each interval's confidence level and its ``se``
        column each row's log-ratio SE (see :func:`log_ratio_inputs`).
    design, outcome
        The rows to pool; may be omitted when the frame holds only one.
    window
        ``"post"`` (default) or ``"last{k}"``.
    method_re
        ``"pm"`` (Paule-Mandel, default) or ``"dl"`` (DerSimonian-Laird, truncated at 0).
    interval
        ``"hksj"`` (Hartung-Knapp-Sidik-Jonkman, default) or ``"normal"``.
    level
        Confidence level of the pooled and prediction intervals (default 0.95).
    leave_out
        Site -> reason, for sites not to pool: sites with no row here
        (:func:`missing_sites`) or left out on purpose, e.g. for a sensitivity analysis
        (:func:`unreadable_sites`). Their rows are dropped; they are listed, with the
        reason, in the result's ``excluded`` before the rows that could not be pooled.

    Returns
    -------
    PooledResult

    Notes
    -----
    See :func:`pool_log_ratios` for the estimators; the inputs are
    :func:`log_ratio_inputs`.
    """
    _check_options(method_re, interval)
    check_level(level)
    frame = effects[effects["window"] == window]
    for col, value in (("design", design), ("outcome", outcome)):
        if value is None:
            values = sorted(frame[col].unique())
            if len(values) != 1:
                raise ValueError(f"the effects hold several {col}s ({values}); pass {col}=...")
            value = values[0]
        frame = frame[frame[col] == value]
        if col == "design":
            design = value
        else:
            outcome = value
    if frame.empty:
        raise DesignError(f"no effects rows for design {design!r}, outcome {outcome!r}, {window}")
    dup = frame["site"][frame["site"].duplicated()].tolist()
    if dup:
        raise ValueError(f"several rows for site(s) {dup}; pool one row per site")
    left = dict(leave_out or {})
    frame = frame[~frame["site"].astype(str).isin(list(left))]
    if frame.empty:
        raise DesignError(f"every site with a {design!r} row is left out: {sorted(left)}")
    inputs = log_ratio_inputs(frame)
    excluded = left | {str(r.site): str(r.reason) for r in inputs.itertuples() if not r.usable}
    used = inputs[inputs["usable"]]
    if len(used) < 2:
        raise DesignError(
            f"only {len(used)} site(s) with a usable {design} estimate of {outcome}; "
            "pooling needs 2"
        )
    return pool_log_ratios(
        used["site"].tolist(),
        used["log_rr"].to_numpy(dtype=float),
        used["se"].to_numpy(dtype=float),
        design=str(design),
        outcome=str(outcome),
        window=window,
        method_re=method_re,
        interval=interval,
        level=level,
        excluded=excluded,
    )
