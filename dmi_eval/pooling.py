"""Cross-site pooled effects: random-effects meta-analysis of log rate ratios.

Each site's effect for one design, outcome and window (a row of the tidy
effects frame) is turned into a log rate ratio ``log(1 + pct_change)`` with a
standard error read off its confidence interval, and the sites are combined
with statsmodels' :func:`~statsmodels.stats.meta_analysis.combine_effects`.

The default between-site variance estimator is Paule-Mandel (statsmodels'
``"iterated"``), recommended over DerSimonian-Laird by Veroniki et al. (2016)
because it is less biased when the number of sites is small and the
heterogeneity large; DerSimonian-Laird (``"dl"``, the classic, truncated at
zero) is available for comparison with published analyses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from dmi_eval.errors import DesignError

MethodRE = Literal["pm", "dl"]
METHOD_LABEL = {"pm": "Paule-Mandel", "dl": "DerSimonian-Laird"}
_STATSMODELS_METHOD = {"pm": "iterated", "dl": "dl"}
_LEVEL = re.compile(r"(\d+(?:\.\d+)?)\s*%")

__all__ = ["PooledResult", "ci_level_from_method", "log_ratio_inputs", "pool_effects"]


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def ci_level_from_method(method: str) -> float:
    """Confidence level stated in an effects row's ``method`` (``"... 90%, one-sided"`` -> 0.90).

    Raises :class:`ValueError` when the text states no level.
    """
    m = _LEVEL.search(str(method))
    if not m:
        raise ValueError(
            f"cannot read a confidence level from method {method!r}; pass ci_level=..."
        )
    level = float(m.group(1)) / 100.0
    if not 0 < level < 1:
        raise ValueError(f"confidence level {level} read from {method!r} is not in (0, 1)")
    return level


def log_ratio_inputs(effects: pd.DataFrame, *, ci_level: float | None = None) -> pd.DataFrame:
    """Each row's log rate ratio and its standard error, read from the interval.

    Parameters
    ----------
    effects
        Rows of a tidy effects frame (``site, pct_change, ci_low, ci_high, method``).
    ci_level
        Confidence level of the intervals; default: parsed from each row's ``method``.

    Returns
    -------
    DataFrame
        ``site, log_rr, se, ci_level, asymmetry, usable, reason``. ``log_rr =
        log(1 + pct_change)``; ``se = (log(1+ci_high) - log(1+ci_low)) / (2 z)``
        with ``z`` the normal quantile of the level (the interval is assumed
        symmetric on the log scale); ``asymmetry`` is the distance of
        ``log_rr`` from the interval's log-scale midpoint in units of ``se``
        (0 for intervals built on the log scale).
    """
    rows = []
    for _, r in effects.iterrows():
        level = ci_level if ci_level is not None else ci_level_from_method(r["method"])
        z = float(stats.norm.isf((1 - level) / 2))
        pct, lo, hi = float(r["pct_change"]), float(r["ci_low"]), float(r["ci_high"])
        reason = ""
        if not all(math.isfinite(v) for v in (pct, lo, hi)):
            reason = "effect or interval not finite"
        elif min(pct, lo, hi) <= -1:
            reason = "a -100% change has no log rate ratio"
        elif not lo < hi:
            reason = "interval has no width"
        if reason:
            log_rr = se = asym = float("nan")
        else:
            log_rr = math.log1p(pct)
            se = (math.log1p(hi) - math.log1p(lo)) / (2 * z)
            mid = (math.log1p(hi) + math.log1p(lo)) / 2
            asym = (log_rr - mid) / se
        rows.append(
            {
                "site": r["site"],
                "log_rr": log_rr,
                "se": se,
                "ci_level": level,
                "asymmetry": asym,
                "usable": not reason,
                "reason": reason,
            }
        )
    return pd.DataFrame(
        rows, columns=["site", "log_rr", "se", "ci_level", "asymmetry", "usable", "reason"]
    )


@dataclass(frozen=True)
class PooledResult:
    """A random-effects meta-analysis of the sites' log rate ratios (read-only).

    Attributes
    ----------
    design, outcome, window
        What was pooled.
    method_re, alpha
        Between-site variance estimator (``"pm"`` or ``"dl"``); 1 - confidence level.
    sites, log_rr, se, weights
        Pooled sites, their log rate ratios, standard errors and relative
        random-effects weights (summing to 1).
    pooled_log, pooled_se
        Random-effects mean log rate ratio and its standard error.
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
    alpha: float
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
        return float(stats.norm.isf(self.alpha / 2))

    @property
    def pct_change(self) -> float:
        """Pooled percent change (fraction): ``exp(pooled_log) - 1``."""
        return math.expm1(self.pooled_log)

    @property
    def ci_low(self) -> float:
        return math.expm1(self.pooled_log - self.z * self.pooled_se)

    @property
    def ci_high(self) -> float:
        return math.expm1(self.pooled_log + self.z * self.pooled_se)

    @property
    def pi_low(self) -> float:
        return math.expm1(self.pi_low_log)

    @property
    def pi_high(self) -> float:
        return math.expm1(self.pi_high_log)

    @property
    def p_value(self) -> float:
        """Two-sided normal test of ``pooled_log = 0``."""
        return float(2 * stats.norm.sf(abs(self.pooled_log / self.pooled_se)))

    @property
    def method(self) -> str:
        conf = f"{100 * (1 - self.alpha):g}%"
        return (
            f"random-effects meta-analysis of log rate ratios ({METHOD_LABEL[self.method_re]} "
            f"tau^2), {conf} normal interval, two-sided; {conf} prediction interval with "
            "t(k-2) (Higgins et al. 2009)"
        )

    def summary(self) -> pd.DataFrame:
        """One row per site, then the pooled (random and fixed) and prediction rows.

        Columns ``row, pct_change, ci_low, ci_high, log_rr, se, weight``;
        intervals are fractions; the last rows carry ``tau2, i2, q, q_p_value``.
        """
        z = self.z
        rows = [
            {
                "row": s,
                "pct_change": math.expm1(b),
                "ci_low": math.expm1(b - z * se),
                "ci_high": math.expm1(b + z * se),
                "log_rr": b,
                "se": se,
                "weight": w,
            }
            for s, b, se, w in zip(self.sites, self.log_rr, self.se, self.weights, strict=True)
        ]
        stats_cols = {"tau2": self.tau2, "i2": self.i2, "q": self.q, "q_p_value": self.q_p_value}
        rows.append(
            {
                "row": "pooled (random effects)",
                "pct_change": self.pct_change,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "log_rr": self.pooled_log,
                "se": self.pooled_se,
                "weight": 1.0,
                "p_value": self.p_value,
                **stats_cols,
            }
        )
        rows.append(
            {
                "row": "pooled (fixed effect)",
                "pct_change": math.expm1(self.fixed_log),
                "ci_low": math.expm1(self.fixed_log - z * self.fixed_se),
                "ci_high": math.expm1(self.fixed_log + z * self.fixed_se),
                "log_rr": self.fixed_log,
                "se": self.fixed_se,
                "weight": float("nan"),
                "p_value": float(2 * stats.norm.sf(abs(self.fixed_log / self.fixed_se))),
            }
        )
        rows.append(
            {
                "row": "prediction interval (new site)",
                "pct_change": self.pct_change,
                "ci_low": self.pi_low,
                "ci_high": self.pi_high,
                "log_rr": self.pooled_log,
                "se": float("nan"),
                "weight": float("nan"),
            }
        )
        cols = ["row", "pct_change", "ci_low", "ci_high", "log_rr", "se", "weight", "p_value"]
        return pd.DataFrame(rows, columns=[*cols, "tau2", "i2", "q", "q_p_value"])

    def get_plot_data(self) -> pd.DataFrame:
        """Series behind :func:`dmi_eval.plots.pooling.plot_forest` (same as :meth:`summary`)."""
        return self.summary()

    def sentence(self) -> str:
        """The pooled result in plain words."""
        conf = f"{100 * (1 - self.alpha):g}%"
        text = (
            f"Across {self.k} sites, {self.outcome} offences changed by {self.pct_change:+.0%} on "
            f"average against the {self.design} counterfactual over the {self.window} window "
            f"({conf} interval {self.ci_low:+.0%} to {self.ci_high:+.0%}; random-effects "
            f"meta-analysis, {METHOD_LABEL[self.method_re]} tau^2 = {self.tau2:.3f}, "
            f"I^2 = {self.i2:.0%}, Q = {self.q:.1f} on {self.q_df} df, {_p(self.q_p_value)})."
        )
        if math.isfinite(self.pi_low_log):
            text += (
                f" At a new site the change would be expected to lie between "
                f"{self.pi_low:+.0%} and {self.pi_high:+.0%} ({conf} prediction interval)."
            )
        if self.excluded:
            text += " Not pooled: " + "; ".join(f"{s} ({r})" for s, r in self.excluded.items())
            text += "."
        return text


def pool_effects(
    effects: pd.DataFrame,
    *,
    design: str | None = None,
    outcome: str | None = None,
    window: str = "post",
    method_re: MethodRE = "pm",
    alpha: float = 0.05,
    ci_level: float | None = None,
) -> PooledResult:
    """Random-effects meta-analysis of one design/outcome/window across sites.

    Parameters
    ----------
    effects
        A tidy effects frame (any number of designs, outcomes and windows).
    design, outcome
        The rows to pool; may be omitted when the frame holds only one.
    window
        ``"post"`` (default) or ``"last{k}"``.
    method_re
        ``"pm"`` (Paule-Mandel, default) or ``"dl"`` (DerSimonian-Laird, truncated at 0).
    alpha
        1 - confidence level of the pooled and prediction intervals.
    ci_level
        Level of the sites' intervals (default: parsed from each row's ``method``).

    Returns
    -------
    PooledResult

    Notes
    -----
    With :math:`y_i = \\log(1 + \\text{pct}_i)` and :math:`v_i = se_i^2`:
    :math:`Q = \\sum w_i (y_i - \\bar y_F)^2`, :math:`w_i = 1/v_i`;
    DerSimonian-Laird :math:`\\tau^2 = \\max(0, (Q - (k-1)) / (\\sum w_i -
    \\sum w_i^2 / \\sum w_i))`; Paule-Mandel solves
    :math:`\\sum (y_i - \\hat\\mu)^2/(v_i + \\tau^2) = k - 1`. Then
    :math:`\\hat\\mu = \\sum w_i^* y_i / \\sum w_i^*` with :math:`w_i^* =
    1/(v_i + \\tau^2)`, :math:`se(\\hat\\mu) = (\\sum w_i^*)^{-1/2}`,
    :math:`I^2 = \\max(0, (Q - (k-1))/Q)`, and the prediction interval
    :math:`\\hat\\mu \\pm t_{k-2, 1-\\alpha/2} \\sqrt{\\tau^2 + se(\\hat\\mu)^2}`
    (Higgins, Thompson & Spiegelhalter 2009).
    """
    if method_re not in get_args(MethodRE):
        raise ValueError(f"method_re must be one of pm, dl; got {method_re!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    if ci_level is not None and not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1); got {ci_level}")
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
    inputs = log_ratio_inputs(frame, ci_level=ci_level)
    excluded = {str(r.site): str(r.reason) for r in inputs.itertuples() if not r.usable}
    used = inputs[inputs["usable"]]
    k = len(used)
    if k < 2:
        raise DesignError(
            f"only {k} site(s) with a usable {design} estimate of {outcome}; pooling needs 2"
        )
    y = used["log_rr"].to_numpy(dtype=float)
    v = used["se"].to_numpy(dtype=float) ** 2
    with np.errstate(invalid="ignore"):  # statsmodels' DL tau^2 may be negative (truncated below)
        res = combine_effects(y, v, method_re=_STATSMODELS_METHOD[method_re], alpha=alpha)
    tau2 = max(float(res.tau2), 0.0)
    w = 1.0 / (v + tau2)
    mu = float(np.sum(w * y) / np.sum(w))
    se_mu = float(1.0 / math.sqrt(np.sum(w)))
    if float(res.tau2) >= 0:  # statsmodels' numbers, unless DL's tau^2 was negative
        mu, se_mu = float(res.mean_effect_re), float(res.sd_eff_w_re)
    q = float(res.q)
    df = k - 1
    i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
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
        alpha=alpha,
        sites=tuple(str(s) for s in used["site"]),
        log_rr=y,
        se=np.sqrt(v),
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
        excluded=MappingProxyType(excluded),
    )
