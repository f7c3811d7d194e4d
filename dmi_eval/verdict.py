"""The market-closure rule: evidence -> ``Verdict(label, reasons, warnings)``.

No published rule exists; the package defines one, configurable per study
(``[verdict]`` in study.toml) and printed with its thresholds in every site
report (:func:`rule_text`). With the defaults:

* **inconclusive** when the data cannot tell: fewer than ``min_pre_periods``
  pre periods; the primary outcome averages fewer than ``min_expected_count``
  incidents **a month** in the market before the call-in (converted to the
  study's weeks or quarters); poor pre-period fit (RMSE of the pre-period fit
  above ``max_pre_rmspe_ratio`` times the pre-period mean, on monthly counts:
  4-week totals for weekly data); the primary design
  and another design both find significant effects (two-sided ``p < alpha``,
  each design's own two-sided p) of opposite sign; the post period is shorter
  than the ``persistence`` window ("2 months after the call-in: too early to
  tell"); no significant reduction, the interval does not rule out a
  ``min_reduction`` drop, and the design could not have detected one (its
  smallest attainable p is not below ``alpha``, or its minimum detectable
  effect is larger than ``min_reduction``); or a reduction that meets the rule
  or a displacement while a warning stands (a failed pre-trend or in-time
  placebo check, a pre-period that ends in a spike its comparison areas do not
  share, :func:`dmi_eval.spike.pre_period_spike`): both claim the market fell;
* **not closed** when the primary outcome shows no significant reduction
  (one-sided ``p_lower >= alpha``) against the primary counterfactual and
  either the design could have detected a ``min_reduction`` drop or its
  interval rules one out (its lower end above ``-min_reduction``);
* **displaced** when the market falls significantly but the catchment area
  rises significantly (one-sided ``p_upper < alpha``, the catchment's test of a
  rise);
* **closed** when the reduction is significant, at least ``min_reduction``, and
  the drop held: over the last ``persistence`` of the post period the estimated
  change is still a drop of at least ``lasting_share * min_reduction`` (12.5%
  with the defaults);
* otherwise **not closed** (the reduction was too small, or it faded).

Why the persistence window is not tested on its own: it is a fraction of the
post period (6 of 24-36 months), so a separate one-sided test there has far
less power than the post-period test. The calibration study
(``reports/results/calibration.csv``) gives both at sustained -45% closures
(``power_45_last`` and ``power_45``), how often such a closure still shows a
drop of at least 12.5% over its last 6 months (``held_45``) and how often a
drop that fades after six months is still called *closed* (``fading_closed``).

Reasons are sentences in plain words: designs by their names ("synthetic
control", :data:`dmi_eval.tables.DESIGN_LABELS`) and the outcome by its
``[report] outcome_labels`` words, so ``results/verdicts.csv`` can be read as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from dmi_eval.config import DAYS_PER, VerdictRules, duration_text
from dmi_eval.tables import design_label, interval_too_wide

PLACEBO_FAIL_SHARE = 0.2
"""Share of fake call-in dates with a significant effect above which the in-time placebo fails
(at least two; :func:`dmi_eval.evaluation.design_warnings`)."""

Label = Literal["closed", "displaced", "not_closed", "inconclusive"]
LABELS: tuple[str, ...] = ("closed", "displaced", "not_closed", "inconclusive")
VERDICT_COLUMNS: tuple[str, ...] = (
    "site",
    "verdict",
    "reasons",
    "primary_design",
    "outcome",
    "pct_change",
    "ci_low",
    "ci_high",
    "p_lower",
    "mde",
)
"""Columns of ``results/verdicts.csv`` (one row per site; see :func:`verdict_row`)."""

BASES: dict[str, str] = {
    "few_pre_periods": "too few pre periods",
    "low_count": "too few incidents a month before the call-in",
    "poor_fit": "poor pre-period fit",
    "designs_disagree": "designs disagree",
    "too_early": "post period shorter than the persistence window",
    "undetectable": "the design could not have detected a min_reduction drop",
    "no_last_estimate": "no estimate for the persistence window",
    "check_failed": "a closure with a failed check",
    "displaced_check_failed": "a displacement with a failed check",
    "ruled_out": "no significant reduction; the interval rules out a min_reduction drop",
    "no_reduction": "no significant reduction where the design could detect one",
    "displaced": "the catchment rose significantly",
    "faded": "the drop did not hold",
    "too_small": "the reduction is smaller than min_reduction",
    "closed": "every condition of the closure rule holds",
}
"""``Verdict.basis`` codes and what they mean."""


@dataclass(frozen=True)
class WindowEvidence:
    """One window's estimate from one design, with the design's own tests.

    Attributes
    ----------
    design, window
        Which design and window (``"post"``, ``"last6"``).
    pct_change, ci_low, ci_high
        Change as a fraction of the counterfactual and its interval.
    p_lower, p_upper, p_two_sided
        The design's one-sided p-values of a fall and of a rise, and its
        two-sided p-value, each computed by the design (a rank test counts its
        own tail; never ``1 - p``).
    level
        The interval's confidence level, as text (``"90%"``).
    mde
        Minimum detectable effect: the smallest reduction (positive fraction)
        the design's one-sided test at ``alpha`` detects with 80% power; ``inf``
        when it cannot detect any, NaN when the design does not say.
    min_p
        Smallest one-sided p-value the test can attain (``1/(n+1)`` for a rank
        test against ``n`` placebos; 0 for a continuous test).
    """

    design: str
    window: str
    pct_change: float
    ci_low: float
    ci_high: float
    p_lower: float
    p_upper: float
    p_two_sided: float
    level: str = "95%"
    mde: float = float("nan")
    min_p: float = 0.0


@dataclass(frozen=True)
class Evidence:
    """What the rule reads for one site (built by :mod:`dmi_eval.evaluation`).

    ``n_post`` is the number of post periods and ``last_k`` the number of
    periods in the persistence window (``[verdict] persistence`` in the study's
    ``frequency``); ``pre_mean`` the market's mean count of the outcome per
    period before the call-in; ``pre_fit_ratio`` the primary design's
    pre-period fit error over the pre-period mean on monthly counts (4-week
    totals for weekly data, :func:`dmi_eval.evaluation.monthly_fit_ratio`);
    ``warnings`` are sentences about checks that
    failed (pre-trend, placebo in time, a spike at the end of the pre period);
    ``outcome_label`` the outcome in words (empty: its name and "offences").
    """

    site: str
    outcome: str
    post: WindowEvidence
    last: WindowEvidence
    n_pre: int
    pre_mean: float
    pre_fit_ratio: float
    n_post: int
    last_k: int
    frequency: str = "month"
    catchment: WindowEvidence | None = None
    others: tuple[WindowEvidence, ...] = ()
    warnings: tuple[str, ...] = ()
    outcome_label: str = ""

    @property
    def label(self) -> str:
        """The outcome in words (``[report] outcome_labels``; ``"drug offences"``)."""
        return self.outcome_label or f"{self.outcome.replace('_', ' ')} offences"


@dataclass(frozen=True)
class Verdict:
    """The label, the reasons behind it (each a sentence with its number) and warnings.

    ``basis`` names the condition that decided the label, one of :data:`BASES`
    (for counting verdicts by reason, e.g. in the calibration study; reports
    print the ``reasons``).
    """

    site: str
    label: Label
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = field(default=())
    basis: str = ""

    def reasons_text(self) -> str:
        return " ".join(self.reasons)


_FIT_UNIT = {"week": "4-week totals", "month": "monthly counts", "quarter": "quarterly counts"}
"""What the pre-period fit ratio is measured on (:func:`dmi_eval.evaluation.monthly_fit_ratio`)."""


def _pct(x: float) -> str:
    return f"{abs(x) * 100:.0f}%"


def _share(x: float) -> str:
    """A threshold as a percentage without rounding it away: 0.125 -> ``"12.5%"``."""
    return f"{x * 100:.3g}%"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _signed(x: float) -> str:
    return f"{x * 100:+.0f}%"


def _rise_not_ruled_out(catch: WindowEvidence) -> str:
    """What an insignificant catchment test leaves open: the rise its interval still allows.

    Not finding a rise is not finding none: a catchment of quiet areas may have an
    interval that reaches well above zero, so the clause says how large a rise
    (displacement) the data cannot rule out. Empty when the interval rules out a rise
    or the design gives none.
    """
    if not catch.ci_high > 0:  # NaN too
        return ""
    if math.isinf(catch.ci_high):
        return "; its interval has no upper limit, so a rise of any size is not ruled out"
    return (
        f"; its {catch.level} interval reaches {_signed(catch.ci_high)}, so a rise of up "
        "to that size is not ruled out"
    )


def _interval(w: WindowEvidence) -> str:
    """``"90% interval -54% to -45%"``; an interval the tables call too wide to tell says so,
    and an unbounded end is not printed as a number."""
    high = _signed(w.ci_high) if math.isfinite(w.ci_high) else "no upper limit"
    text = f"{w.level} interval {_signed(w.ci_low)} to {high}"
    return f"{text}: too wide to tell" if interval_too_wide(w.ci_low, w.ci_high) else text


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _rate(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def undetectable(w: WindowEvidence, rules: VerdictRules) -> str | None:
    """Why ``w``'s test could not have detected a ``min_reduction`` drop, or None.

    Two reasons: the test's smallest attainable one-sided p is not below
    ``alpha`` (a rank test with too few placebos), or its minimum detectable
    effect exceeds ``min_reduction``. A design that reports no MDE (NaN) is
    taken at its word that it can detect.
    """
    alpha = rules.alpha
    name = design_label(w.design)
    if w.min_p >= alpha:
        n = max(0, round(1.0 / w.min_p) - 1) if w.min_p > 0 else 0
        return (
            f"With {n} comparison areas the {name} test can never reach p < {alpha:g} "
            f"(its smallest possible p is {w.min_p:.3f}), so it could not have detected a drop."
        )
    if math.isinf(w.mde):
        return f"The {name} test cannot detect even a complete drop with 80% power."
    if math.isfinite(w.mde) and w.mde > rules.min_reduction:
        return (
            f"The {name} test could not have detected a {_share(rules.min_reduction)} drop: "
            f"with 80% power it detects drops of {min(w.mde, 1.0):.0%} or more."
        )
    return None


def rules_out_drop(w: WindowEvidence, rules: VerdictRules) -> bool:
    """The interval excludes a ``min_reduction`` drop (its lower end is above ``-min_reduction``).

    An equivalence-type test: with a two-sided interval at level :math:`1 - 2\\alpha'`
    this rejects "the market fell by ``min_reduction`` or more" at one-sided
    level :math:`\\alpha'` (5% for a 90% interval), whatever the test's power.
    """
    return math.isfinite(w.ci_low) and w.ci_low > -rules.min_reduction


def drop_held(ev: Evidence, rules: VerdictRules) -> bool:
    """The persistence part of the rule: did the drop hold over the last ``persistence``?

    True when the post period is no longer than the persistence window (the
    post-period estimate is the window's estimate) or when the primary design's
    change over the last ``last_k`` periods is a drop of at least
    ``lasting_share * min_reduction``. Not a significance test: see the module
    docstring.
    """
    if ev.n_post <= ev.last_k:
        return True
    return still_dropped(ev.last.pct_change, rules)


def still_dropped(pct_change: float, rules: VerdictRules) -> bool:
    """A change over the persistence window that is still a drop of at least ``lasting_drop``.

    The comparison behind :func:`drop_held` (and the calibration study's
    ``held`` rows): ``pct_change <= -lasting_share * min_reduction``; NaN is
    not a drop.
    """
    return math.isfinite(pct_change) and pct_change <= -rules.lasting_drop()


def _pre_count_problem(ev: Evidence, rules: VerdictRules) -> str | None:
    """The market's pre-period level is below ``min_expected_count`` a month, or None."""
    need = rules.min_expected_in(ev.frequency)
    if not ev.pre_mean < need:
        return None
    monthly = ev.pre_mean * DAYS_PER["month"] / DAYS_PER[ev.frequency]
    per_period = "" if ev.frequency == "month" else f" ({_rate(ev.pre_mean)} a {ev.frequency})"
    return (
        f"The market averaged {_rate(monthly)} {ev.label} a month{per_period} before the "
        f"call-in, fewer than the {rules.min_expected_count:g} a month the rule needs: too few "
        "for the test to have power."
    )


def _inconclusive(
    ev: Evidence, basis: str, first: str, reasons: list[str], warnings: tuple[str, ...]
) -> Verdict:
    """*Inconclusive* with the deciding reason first (the one the site page opens with)."""
    return Verdict(ev.site, "inconclusive", (first, *reasons), warnings, basis)


def decide(ev: Evidence, rules: VerdictRules) -> Verdict:
    """Apply the closure rule to one site's evidence.

    Parameters
    ----------
    ev
        The primary design's post and last-k estimates for the primary outcome,
        the catchment estimate (if the site has a catchment), other designs'
        post estimates, the pre-period facts and the warnings.
    rules
        Thresholds (``[verdict]`` in study.toml).

    Returns
    -------
    Verdict
        The label and its reasons in plain words. For *inconclusive* the first
        reason is the one that decided it; for *not closed* and *displaced* the
        last.
    """
    alpha = rules.alpha
    warnings = tuple(ev.warnings)
    post = ev.post
    name = design_label(post.design)
    problems: list[tuple[str, str]] = []
    if ev.n_pre < rules.min_pre_periods:
        problems.append(
            (
                "few_pre_periods",
                f"Only {ev.n_pre} {ev.frequency}s before the call-in; the rule needs at least "
                f"{rules.min_pre_periods}.",
            )
        )
    few = _pre_count_problem(ev, rules)
    if few is not None:
        problems.append(("low_count", few))
    if math.isfinite(ev.pre_fit_ratio) and ev.pre_fit_ratio > rules.max_pre_rmspe_ratio:
        problems.append(
            (
                "poor_fit",
                f"Poor pre-period fit: the {name} misses the market's {_FIT_UNIT[ev.frequency]} "
                f"before the call-in by {ev.pre_fit_ratio:.0%} of their mean "
                f"(limit {rules.max_pre_rmspe_ratio:.0%}).",
            )
        )
    for other in ev.others:
        if (
            post.p_two_sided < alpha
            and other.p_two_sided < alpha
            and other.pct_change * post.pct_change < 0
        ):
            problems.append(
                (
                    "designs_disagree",
                    f"Designs disagree: the {design_label(other.design)} finds a significant "
                    f"{'rise' if other.pct_change > 0 else 'fall'} of {_pct(other.pct_change)} "
                    f"(two-sided {_p(other.p_two_sided)}) while the {name} finds the opposite "
                    f"(two-sided {_p(post.p_two_sided)}).",
                )
            )
    persistence = duration_text(ev.last_k, ev.frequency)
    if ev.n_post < ev.last_k:
        problems.append(
            (
                "too_early",
                f"{_cap(duration_text(ev.n_post, ev.frequency))} after the call-in: too early "
                f"to tell whether a drop lasts {persistence}.",
            )
        )
    if problems:
        texts = tuple(text for _, text in problems)
        return Verdict(ev.site, "inconclusive", texts, warnings, problems[0][0])

    reasons: list[str] = []
    significant = post.pct_change < 0 and post.p_lower < alpha
    if _pct(post.pct_change) == "0%":
        moved = "changed by less than 0.5%"
    else:
        moved = f"{'fell' if post.pct_change < 0 else 'rose'} {_pct(post.pct_change)}"
    reasons.append(
        f"{_cap(ev.label)} {moved} against the {name} "
        f"counterfactual ({_interval(post)}; one-sided {_p(post.p_lower)})."
    )
    if not significant:
        none = f"No significant reduction (one-sided p must be below {alpha:g})"
        if rules_out_drop(post, rules):
            reasons.append(
                f"{none}, and the {post.level} interval rules out a drop of "
                f"{_share(rules.min_reduction)} or more (its lower end is {_signed(post.ci_low)})."
            )
            return Verdict(ev.site, "not_closed", tuple(reasons), warnings, "ruled_out")
        blind = undetectable(post, rules)
        if blind is not None:
            first = f"{none}, but {blind[:1].lower()}{blind[1:]}"
            return _inconclusive(ev, "undetectable", first, reasons, warnings)
        could = (
            f", although the {name} test would have detected a {_share(rules.min_reduction)} "
            f"drop (with 80% power it detects drops of {post.mde:.0%} or more)"
            if math.isfinite(post.mde)
            else ""
        )
        reasons.append(f"{none}{could}.")
        return Verdict(ev.site, "not_closed", tuple(reasons), warnings, "no_reduction")

    catch = ev.catchment
    if catch is not None:
        if catch.pct_change > 0 and catch.p_upper < alpha:
            reasons.append(
                f"The catchment area rose {_pct(catch.pct_change)} (one-sided test of a rise "
                f"{_p(catch.p_upper)}): as if the market moved next door."
            )
            if warnings:
                return _inconclusive(
                    ev,
                    "displaced_check_failed",
                    "The market fell and the catchment area rose, but a check failed, so "
                    "neither a closure nor its displacement can be claimed: " + " ".join(warnings),
                    reasons,
                    warnings,
                )
            return Verdict(ev.site, "displaced", tuple(reasons), warnings, "displaced")
        if catch.pct_change < 0 and catch.p_lower < alpha:
            reasons.append(
                f"The catchment area fell too ({_signed(catch.pct_change)}, one-sided test of "
                f"a fall {_p(catch.p_lower)}): benefits spread to nearby areas."
            )
        else:
            reasons.append(
                f"No significant rise in the catchment area ({_signed(catch.pct_change)}, "
                f"one-sided test of a rise {_p(catch.p_upper)}){_rise_not_ruled_out(catch)}."
            )

    big_enough = post.pct_change <= -rules.min_reduction
    lasting = drop_held(ev, rules)
    need = _share(rules.lasting_drop())
    last = ev.last
    if ev.n_post > ev.last_k:
        if not math.isfinite(last.pct_change):
            return _inconclusive(
                ev,
                "no_last_estimate",
                f"The {name} gives no estimate for the last {persistence}, so whether the drop "
                "held cannot be told.",
                reasons,
                warnings,
            )
        if lasting:
            reasons.append(
                f"The drop held over the last {persistence} ({_signed(last.pct_change)}; the "
                f"rule needs a drop of at least {need} there)."
            )
        else:
            reasons.append(
                f"The drop did not hold over the last {persistence} ({_signed(last.pct_change)}, "
                f"less than the {need} drop the rule needs there): the market came back."
            )
    if not big_enough:
        reasons.append(
            f"The reduction is smaller than the {_share(rules.min_reduction)} the rule requires."
        )
    label: Label = "closed" if (big_enough and lasting) else "not_closed"
    if label == "closed" and warnings:
        return _inconclusive(
            ev,
            "check_failed",
            "The reduction meets the rule, but a check failed, so a closure cannot be claimed: "
            + " ".join(warnings),
            reasons,
            warnings,
        )
    basis = "closed" if label == "closed" else ("too_small" if not big_enough else "faded")
    return Verdict(ev.site, label, tuple(reasons), warnings, basis)


def rule_text(rules: VerdictRules, frequency: str = "month") -> str:
    """The rule with this study's thresholds, in words (printed in every site report)."""
    a = f"{rules.alpha:g}"
    k = rules.persistence_in(frequency)
    span = duration_text(k, frequency)
    if rules.persistence_periods is None and span != rules.persistence:
        span = f"{rules.persistence} ({span})"
    count = f"{rules.min_expected_count:g} incidents a month"
    if frequency != "month":
        count += f" ({_rate(rules.min_expected_in(frequency))} a {frequency})"
    red = _share(rules.min_reduction)
    return (
        "**Market-closure rule** (defined by this package; no published rule exists). "
        f"*Closed*: the primary outcome's post-period reduction against the primary "
        f"counterfactual is significant (one-sided p < {a}) and at least {red}; the drop "
        f"held: over the last {span} of the post period the estimated change is still a drop "
        f"of at least {_share(rules.lasting_drop())} ({rules.lasting_share:g} of {red}); it is "
        "not offset by a significant rise in the catchment area; and the primary design's own "
        "checks pass: its pre-trend test, where it has one, has not rejected parallel trends "
        f"(p < {a}), its placebo-in-time check has not failed (a significant effect at more "
        f"than {PLACEBO_FAIL_SHARE:.0%} of the fake call-in dates before the real one, and at "
        "least two), and the pre period does not end in a spike the comparison areas do not "
        "share (the market at least "
        f"{red} higher against them over its last 3 months than over the year before, "
        "one-sided p < 0.01); these checks gate *closed* and *displaced* (both claim the "
        "market fell), and a failed one is listed as a warning under any label. Of the "
        "designs that can be primary none has a pre-trend test (difference-in-differences, "
        "which has one, is a robustness check), and only the (controlled) interrupted time "
        "series runs several fake dates: the synthetic control's single fake date is shown but "
        "cannot fail the check, so for a synthetic control the spike check is the gate that "
        "applies. The last "
        f"{span} are not tested for significance on their own: they are a fraction of the post "
        "period, and a test on them alone has too little power to confirm even a large, lasting "
        "drop. "
        f"*Displaced*: the market falls significantly but the catchment area rises "
        f"significantly (one-sided p < {a}). *Not closed*: no significant reduction where the "
        f"design could have detected a {red} drop or its interval rules one out, or a "
        "reduction too small or that did not hold. "
        f"*Inconclusive*: fewer than {rules.min_pre_periods} pre periods, fewer than {count} "
        f"before the call-in, a pre-period fit error above {rules.max_pre_rmspe_ratio:.0%} of "
        f"the pre-period mean (on {_FIT_UNIT[frequency]}), two designs that both find significant effects of opposite "
        f"sign, a post period shorter than {span}, no significant reduction where the design "
        f"could not have detected a {red} drop (minimum detectable effect with 80% power, or "
        f"a smallest attainable p-value not below {a}) and its interval does not rule one "
        "out, or a closure or displacement with a failed check."
    )


def headline(
    ev: Evidence,
    verdict: Verdict,
    site_name: str,
    frequency: str,
    *,
    rules: VerdictRules | None = None,
) -> str:
    """One paragraph a police chief can read (its numbers are the tables' numbers).

    The persistence clause uses the rule's own test (:func:`drop_held`) and is
    left out when the post period is no longer than the persistence window.
    """
    rules = VerdictRules() if rules is None else rules
    alpha = rules.alpha
    post = ev.post
    words = {
        "closed": "The market closed.",
        "displaced": "The market was displaced, not closed.",
        "not_closed": "The market did not close.",
        "inconclusive": "The data cannot tell whether the market closed.",
    }[verdict.label]
    change = (
        f"{_cap(ev.label)} in the {site_name} market were "
        f"{_pct(post.pct_change)} {'below' if post.pct_change < 0 else 'above'} what "
        f"comparable {'areas' if post.design != 'its' else 'trends'} predict "
        f"({_interval(post)})"
    )
    held = ""
    if post.pct_change < 0 and ev.n_post > ev.last_k:
        span = duration_text(ev.last_k, frequency)
        held = (
            f"the drop held through the last {span}"
            if drop_held(ev, rules)
            else f"the drop did not hold through the last {span}"
        )
    catch = ""
    if ev.catchment is not None:
        c = ev.catchment
        if c.pct_change > 0 and c.p_upper < alpha:
            catch = f"nearby areas rose {_pct(c.pct_change)} (one-sided {_p(c.p_upper)})"
        elif c.pct_change < 0 and c.p_lower < alpha:
            catch = f"nearby areas fell {_pct(c.pct_change)} as well"
        elif math.isfinite(c.ci_high) and c.ci_high > 0:
            catch = (
                f"nearby areas saw no significant rise, though one of up to {_pct(c.ci_high)} "
                "is not ruled out"
            )
        elif c.ci_high > 0:
            catch = "nearby areas saw no significant rise, though a rise is not ruled out"
        else:
            catch = "nearby areas saw no significant rise"
    parts = [p for p in (change, held, catch) if p]
    return f"**{words}** " + "; ".join(parts) + "."


def verdict_row(ev: Evidence, verdict: Verdict) -> dict[str, Any]:
    """One row of ``results/verdicts.csv``: the label, its reasons and the numbers behind it."""
    post = ev.post
    return {
        "site": verdict.site,
        "verdict": verdict.label,
        "reasons": verdict.reasons_text(),
        "primary_design": post.design,
        "outcome": ev.outcome,
        "pct_change": post.pct_change,
        "ci_low": post.ci_low,
        "ci_high": post.ci_high,
        "p_lower": post.p_lower,
        "mde": post.mde,
    }
