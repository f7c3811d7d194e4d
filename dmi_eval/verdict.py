"""The market-closure rule: evidence -> ``Verdict(label, reasons)``.

No published rule exists; the package defines one, configurable per study
(``[verdict]`` in study.toml) and printed with its thresholds in every site
report (:func:`rule_text`). With the defaults:

* **inconclusive** when the design cannot tell: fewer than ``min_pre_periods``
  pre periods; the primary outcome averages fewer than ``min_expected_count``
  incidents per period in the market before the call-in (too few for the test
  to have power); poor pre-period fit (RMSE of the pre-period fit above
  ``max_pre_rmspe_ratio`` times the pre-period mean); or the primary design and
  another design both find significant effects (two-sided ``p < alpha``) of
  opposite sign;
* **not closed** when the primary outcome shows no significant reduction
  (one-sided ``p >= alpha``) against the primary counterfactual;
* **displaced** when the market falls significantly but the catchment area
  rises significantly (one-sided ``p < alpha``);
* **closed** when the reduction is significant, at least ``min_reduction``, and
  still significant over the last ``persistence_periods`` post periods;
* otherwise **not closed** (the reduction was too small, or it faded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from dmi_eval.config import VerdictRules

Label = Literal["closed", "displaced", "not_closed", "inconclusive"]
LABELS: tuple[str, ...] = ("closed", "displaced", "not_closed", "inconclusive")


@dataclass(frozen=True)
class WindowEvidence:
    """One window's estimate from one design: change as a fraction, interval, one-sided p."""

    design: str
    window: str
    pct_change: float
    ci_low: float
    ci_high: float
    p_lower: float
    level: str = "95%"
    upper: float | None = None
    """The design's own one-sided p-value of a rise (a rank test counts its own tail)."""

    @property
    def p_upper(self) -> float:
        """One-sided p-value of a rise: the design's own, else ``1 - p_lower``."""
        return 1.0 - self.p_lower if self.upper is None else self.upper


@dataclass(frozen=True)
class Evidence:
    """What the rule reads for one site (built by :mod:`dmi_eval.evaluation`)."""

    site: str
    outcome: str
    post: WindowEvidence
    last: WindowEvidence
    n_pre: int
    pre_mean: float
    pre_fit_ratio: float
    catchment: WindowEvidence | None = None
    others: tuple[WindowEvidence, ...] = ()
    others_p_two_sided: tuple[float, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The label and the reasons behind it, each a sentence with its number."""

    site: str
    label: Label
    reasons: tuple[str, ...]

    def reasons_text(self) -> str:
        return " ".join(self.reasons)


def _pct(x: float) -> str:
    return f"{abs(x) * 100:.0f}%"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def decide(ev: Evidence, rules: VerdictRules) -> Verdict:
    """Apply the closure rule to one site's evidence.

    Parameters
    ----------
    ev
        The primary design's post and last-k estimates for the primary outcome,
        the catchment estimate (if the site has a catchment), other designs'
        post estimates, and the pre-period facts.
    rules
        Thresholds (``[verdict]`` in study.toml).
    """
    alpha = rules.alpha
    reasons: list[str] = []
    problems: list[str] = []
    if ev.n_pre < rules.min_pre_periods:
        problems.append(
            f"Only {ev.n_pre} pre-intervention periods; the rule needs at least "
            f"{rules.min_pre_periods}."
        )
    if ev.pre_mean < rules.min_expected_count:
        problems.append(
            f"The market averaged {ev.pre_mean:.1f} {ev.outcome} incidents per period before "
            f"the call-in, fewer than {rules.min_expected_count:g}: too few for the test to "
            "have power."
        )
    if math.isfinite(ev.pre_fit_ratio) and ev.pre_fit_ratio > rules.max_pre_rmspe_ratio:
        problems.append(
            f"Poor pre-period fit: the {ev.post.design} model misses the pre-period by "
            f"{ev.pre_fit_ratio:.0%} of its mean (limit {rules.max_pre_rmspe_ratio:.0%})."
        )
    primary_p_two = 2 * min(ev.post.p_lower, ev.post.p_upper)
    for other, p_two in zip(ev.others, ev.others_p_two_sided, strict=True):
        if primary_p_two < alpha and p_two < alpha and other.pct_change * ev.post.pct_change < 0:
            problems.append(
                f"Designs disagree: {other.design} finds a significant "
                f"{'rise' if other.pct_change > 0 else 'fall'} of {_pct(other.pct_change)} "
                f"({_p(p_two)}) while {ev.post.design} finds the opposite."
            )
    if problems:
        return Verdict(ev.site, "inconclusive", tuple(problems))

    post = ev.post
    significant = post.pct_change < 0 and post.p_lower < alpha
    direction = "fell" if post.pct_change < 0 else "rose"
    reasons.append(
        f"{ev.outcome.capitalize()} offences {direction} {_pct(post.pct_change)} against the "
        f"{post.design} counterfactual ({post.level} interval {_signed(post.ci_low)} to "
        f"{_signed(post.ci_high)}; one-sided {_p(post.p_lower)})."
    )
    if not significant:
        reasons.append(f"No significant reduction (one-sided p must be below {alpha:g}).")
        return Verdict(ev.site, "not_closed", tuple(reasons))

    catch = ev.catchment
    if catch is not None:
        if catch.pct_change > 0 and catch.p_upper < alpha:
            reasons.append(
                f"The catchment area rose {_pct(catch.pct_change)} (one-sided {_p(catch.p_upper)}): "
                "the market moved next door."
            )
            return Verdict(ev.site, "displaced", tuple(reasons))
        if catch.pct_change < 0 and catch.p_lower < alpha:
            reasons.append(
                f"The catchment area fell too ({_pct(catch.pct_change)}, one-sided "
                f"{_p(catch.p_lower)}): benefits spread to nearby areas."
            )
        else:
            reasons.append(
                f"No significant rise in the catchment area ({_signed(catch.pct_change)}, "
                f"one-sided {_p(catch.p_upper)})."
            )

    big_enough = post.pct_change <= -rules.min_reduction
    last = ev.last
    lasting = last.pct_change < 0 and last.p_lower < alpha
    if lasting:
        reasons.append(
            f"The drop held over the last {rules.persistence_periods} periods "
            f"({_signed(last.pct_change)}, one-sided {_p(last.p_lower)})."
        )
    else:
        reasons.append(
            f"The drop did not hold over the last {rules.persistence_periods} periods "
            f"({_signed(last.pct_change)}, one-sided {_p(last.p_lower)}): the market came back."
        )
    if not big_enough:
        reasons.append(
            f"The reduction is smaller than the {rules.min_reduction:.0%} the rule requires."
        )
    label: Label = "closed" if (big_enough and lasting) else "not_closed"
    return Verdict(ev.site, label, tuple(reasons))


def _signed(x: float) -> str:
    return f"{x * 100:+.0f}%"


def rule_text(rules: VerdictRules) -> str:
    """The rule with this study's thresholds, in words (printed in every site report)."""
    a = f"{rules.alpha:g}"
    return (
        "**Market-closure rule** (defined by this package; no published rule exists). "
        f"*Closed*: the primary outcome's post-period reduction against the primary "
        f"counterfactual is significant (one-sided p < {a}), at least "
        f"{rules.min_reduction:.0%}, still significant over the last "
        f"{rules.persistence_periods} post periods, and not offset by a significant rise in "
        f"the catchment area. *Displaced*: the market falls significantly but the catchment "
        f"area rises significantly (one-sided p < {a}). *Not closed*: no significant "
        "reduction, or one too small or too short-lived. *Inconclusive*: fewer than "
        f"{rules.min_pre_periods} pre periods, fewer than {rules.min_expected_count:g} "
        "incidents per period before the call-in, a pre-period fit error above "
        f"{rules.max_pre_rmspe_ratio:.0%} of the pre-period mean, or two designs that both "
        "find significant effects of opposite sign."
    )


def headline(ev: Evidence, verdict: Verdict, site_name: str, frequency: str) -> str:
    """One paragraph a police chief can read."""
    post = ev.post
    words = {
        "closed": "The market closed.",
        "displaced": "The market was displaced, not closed.",
        "not_closed": "The market did not close.",
        "inconclusive": "The data cannot tell whether the market closed.",
    }[verdict.label]
    change = (
        f"{ev.outcome.capitalize()} offences in the {site_name} market were "
        f"{_pct(post.pct_change)} {'below' if post.pct_change < 0 else 'above'} what "
        f"comparable {'areas' if post.design != 'its' else 'trends'} predict "
        f"({post.level} interval {_pct_range(post.ci_low, post.ci_high)})"
    )
    last = ev.last
    if post.pct_change < 0:
        held = (
            f"the drop held through the last {_count_word(frequency, last.window)}"
            if last.pct_change < 0 and last.p_lower < 0.05
            else f"the drop did not hold through the last {_count_word(frequency, last.window)}"
        )
    else:
        held = ""
    catch = ""
    if ev.catchment is not None:
        c = ev.catchment
        if c.pct_change > 0 and c.p_upper < 0.05:
            catch = f"nearby areas rose {_pct(c.pct_change)}"
        elif c.pct_change < 0 and c.p_lower < 0.05:
            catch = f"nearby areas fell {_pct(c.pct_change)} as well"
        else:
            catch = "nearby areas saw no significant rise"
    parts = [p for p in (change, held, catch) if p]
    return f"**{words}** " + "; ".join(parts) + "."


def _pct_range(low: float, high: float) -> str:
    return f"{_signed(low)} to {_signed(high)}"


def _count_word(frequency: str, window: str) -> str:
    k = "".join(ch for ch in window if ch.isdigit()) or "?"
    unit = {"month": "months", "week": "weeks", "quarter": "quarters"}.get(frequency, "periods")
    return f"{k} {unit}"
