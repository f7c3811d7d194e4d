"""The market-closure rule: unit cases, and every synthetic site gets its true verdict."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from dmi_eval.config import VerdictRules, load_study
from dmi_eval.data import load_study_data
from dmi_eval.errors import ConfigError
from dmi_eval.evaluation import evaluate_site
from dmi_eval.spike import pre_period_spike
from dmi_eval.verdict import (
    BASES,
    VERDICT_COLUMNS,
    Evidence,
    WindowEvidence,
    decide,
    drop_held,
    headline,
    rule_text,
    still_dropped,
    verdict_row,
)
from tests.helpers import BASE_TOML, write_toml

RULES = VerdictRules()


def window(pct, p_lower, design="sc", name="post", *, p_upper=None, mde=0.15, min_p=0.0):
    p_upper = 1.0 - p_lower if p_upper is None else p_upper
    return WindowEvidence(
        design,
        name,
        pct,
        pct - 0.1,
        pct + 0.1,
        p_lower=p_lower,
        p_upper=p_upper,
        p_two_sided=min(1.0, 2 * min(p_lower, p_upper)),
        mde=mde,
        min_p=min_p,
    )


def evidence(
    post=(-0.4, 0.01),
    last=(-0.4, 0.01),
    catchment=None,
    pre_mean=30.0,
    n_pre=40,
    fit=0.2,
    others=(),
    n_post=24,
    last_k=6,
    frequency="month",
    post_kw=None,
    last_kw=None,
    catchment_kw=None,
    warnings=(),
):
    return Evidence(
        site="s",
        outcome="drug",
        post=window(*post, **(post_kw or {})),
        last=window(*last, name=f"last{last_k}", **(last_kw or {})),
        n_pre=n_pre,
        pre_mean=pre_mean,
        pre_fit_ratio=fit,
        n_post=n_post,
        last_k=last_k,
        frequency=frequency,
        catchment=None if catchment is None else window(*catchment, **(catchment_kw or {})),
        others=tuple(
            WindowEvidence("did", "post", pct, pct - 0.1, pct + 0.1, p2 / 2, p2 / 2, p2)
            for pct, p2 in others
        ),
        warnings=tuple(warnings),
    )


SPIKE = "The pre period ends in a spike: (test)."


@pytest.mark.parametrize(
    ("ev", "label", "phrase"),
    [
        (evidence(), "closed", "held over the last 6 months"),
        (evidence(post=(-0.4, 0.2)), "not_closed", "No significant reduction"),
        (evidence(post=(0.3, 0.99)), "not_closed", "rose 30%"),
        (evidence(catchment=(0.5, 0.999)), "displaced", "moved next door"),
        (evidence(catchment=(-0.3, 0.01)), "closed", "fell too (-30%, one-sided test of a fall"),
        (evidence(last=(-0.05, 0.4)), "not_closed", "came back"),
        (evidence(post=(-0.15, 0.01)), "not_closed", "smaller than the 25%"),
        (evidence(pre_mean=2.0), "inconclusive", "too few for the test"),
        (evidence(n_pre=8), "inconclusive", "Only 8 months before the call-in"),
        (evidence(fit=0.9), "inconclusive", "Poor pre-period fit"),
        (evidence(others=[(0.3, 0.01)]), "inconclusive", "Designs disagree"),
        (evidence(others=[(0.3, 0.3)]), "closed", "held"),
        # the data cannot tell
        (
            evidence(post=(-0.2, 0.3), post_kw={"min_p": 1 / 12, "mde": float("inf")}),
            "inconclusive",
            "with 11 comparison areas the synthetic control test can never reach p < 0.05",
        ),
        (
            evidence(post=(-0.2, 0.3), post_kw={"mde": 0.4}),
            "inconclusive",
            "could not have detected a 25% drop: with 80% power it detects drops of 40%",
        ),
        # ... unless the interval rules a 25% drop out (-0.1 +- 0.1: lower end -20%)
        (
            evidence(post=(-0.1, 0.3), post_kw={"mde": 0.4}),
            "not_closed",
            "interval rules out a drop of 25% or more (its lower end is -20%)",
        ),
        (
            evidence(post=(-0.2, 0.3), post_kw={"mde": 0.18}),
            "not_closed",
            "would have detected a 25% drop (with 80% power it detects drops of 18% or more)",
        ),
        (
            evidence(n_post=2),
            "inconclusive",
            "2 months after the call-in: too early to tell whether a drop lasts 6 months",
        ),
        (
            evidence(n_post=4, last_k=2, frequency="quarter", last=(-0.05, 0.4)),
            "not_closed",
            "did not hold over the last 2 quarters",
        ),
        # persistence is the size of the last-window drop, not its significance
        (
            evidence(last=(-0.35, 0.09), last_kw={"mde": 0.5}),
            "closed",
            "held over the last 6 months (-35%; the rule needs a drop of at least 12.5% there)",
        ),
        (evidence(last=(-0.13, 0.4)), "closed", "held over the last 6 months"),
        (evidence(last=(-0.12, 0.001)), "not_closed", "less than the 12.5% drop"),
        (evidence(warnings=[SPIKE]), "inconclusive", "a closure cannot be claimed: The pre"),
        (evidence(post=(-0.4, 0.2), warnings=[SPIKE]), "not_closed", "No significant"),
        # a displacement claims the market fell too, so a failed check gates it as well
        (
            evidence(catchment=(0.5, 0.999), warnings=[SPIKE]),
            "inconclusive",
            "neither a closure nor its displacement can be claimed: The pre",
        ),
    ],
)
def test_rule(ev, label, phrase):
    verdict = decide(ev, RULES)
    assert verdict.label == label
    assert verdict.basis in BASES
    assert phrase in verdict.reasons_text()
    assert verdict.warnings == ev.warnings


def test_a_drop_that_fades_is_not_closed_and_a_lasting_one_is():
    # a -45% drop for six months, then back to normal: the whole post period is still a
    # significant fall of over 25%, but the last 6 months show none of it
    fading = evidence(post=(-0.3, 0.01), last=(0.02, 0.6), n_post=30)
    verdict = decide(fading, RULES)
    assert (verdict.label, verdict.basis) == ("not_closed", "faded")
    assert "did not hold over the last 6 months (+2%" in verdict.reasons[-1]
    assert "did not hold through the last 6 months" in headline(fading, verdict, "X", "month")
    # the same post period with the drop still there at the end (not significant there)
    lasting = evidence(post=(-0.3, 0.01), last=(-0.3, 0.2), n_post=30)
    verdict = decide(lasting, RULES)
    assert verdict.label == "closed"
    assert "held through the last 6 months" in headline(lasting, verdict, "X", "month")


def test_lasting_share_is_the_share_of_min_reduction_the_last_window_needs():
    ev = evidence(post=(-0.4, 0.01), last=(-0.2, 0.01))
    assert decide(ev, VerdictRules(lasting_share=0.5)).label == "closed"  # needs 12.5%
    strict = decide(ev, VerdictRules(lasting_share=1.0))  # needs the full 25%
    assert strict.label == "not_closed" and "less than the 25% drop" in strict.reasons_text()
    assert "at least 30%" in rule_text(VerdictRules(min_reduction=0.4, lasting_share=0.75))


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, "half"])
def test_lasting_share_out_of_range_is_a_config_error(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"\[verdict\]\.lasting_share: must be"):
        VerdictRules(lasting_share=bad)
    value = f'"{bad}"' if isinstance(bad, str) else bad
    toml = BASE_TOML + f"\n[verdict]\nlasting_share = {value}\n"
    with pytest.raises(ConfigError, match=r"study\.toml: \[verdict\]\.lasting_share: must be"):
        load_study(write_toml(tmp_path, toml))
    ok = load_study(write_toml(tmp_path, BASE_TOML + "\n[verdict]\nlasting_share = 0.75\n"))
    assert ok.verdict.lasting_share == 0.75 and ok.verdict.lasting_drop() == 0.1875


@pytest.mark.parametrize(
    ("frequency", "pre_mean", "label", "phrase"),
    [
        # 8-25 drug incidents a month are 2-6 a week: enough, whatever the period
        ("week", 2.0, "closed", "held over the last 26 weeks"),
        ("week", 0.9, "inconclusive", "averaged 3.9 drug offences a month (0.9 a week)"),
        ("quarter", 24.0, "closed", "held over the last 2 quarters"),
        ("quarter", 12.0, "inconclusive", "averaged 4.0 drug offences a month (12 a quarter)"),
        ("month", 4.0, "inconclusive", "averaged 4.0 drug offences a month before the call-in"),
    ],
)
def test_min_expected_count_is_incidents_a_month(frequency, pre_mean, label, phrase):
    k = RULES.persistence_in(frequency)
    ev = evidence(frequency=frequency, pre_mean=pre_mean, last_k=k, n_post=4 * k)
    verdict = decide(ev, RULES)
    assert verdict.label == label
    assert phrase in verdict.reasons_text()
    if label == "inconclusive":
        assert "fewer than the 5 a month the rule needs" in verdict.reasons[0]
    assert RULES.min_expected_in("week") == pytest.approx(5 * 7 / (365.25 / 12))


def test_a_weekly_no_effect_market_is_not_closed_for_the_right_reason():
    # regression: 2-6 incidents a week failed "5 per period", so every weekly market was
    # inconclusive; now the test's power decides
    weekly = {"frequency": "week", "pre_mean": 3.0, "last_k": 26, "n_post": 110}
    detectable = decide(evidence(post=(-0.2, 0.4), post_kw={"mde": 0.2}, **weekly), RULES)
    assert (detectable.label, detectable.basis) == ("not_closed", "no_reduction")
    assert "would have detected a 25% drop" in detectable.reasons[-1]
    blind = decide(evidence(post=(-0.2, 0.4), post_kw={"mde": 0.45}, **weekly), RULES)
    assert (blind.label, blind.basis) == ("inconclusive", "undetectable")
    assert blind.reasons[0].startswith("No significant reduction (one-sided p must be below")
    assert "could not have detected a 25% drop" in blind.reasons[0]
    assert "too few" not in blind.reasons_text()


def test_reasons_are_plain_words():
    ev = replace(
        evidence(others=[(0.3, 0.01)], post_kw={"min_p": 0.0}),
        outcome="i_drugs",
        outcome_label="drug offences",
    )
    for verdict in (decide(ev, RULES), decide(replace(ev, others=()), RULES)):
        text = verdict.reasons_text()
        assert "i_drugs" not in text.lower() and " sc " not in text and " did " not in text
    text = decide(replace(ev, others=()), RULES).reasons_text()
    assert text.startswith("Drug offences fell 40% against the synthetic control counterfactual")
    assert "difference-in-differences finds a significant rise" in decide(ev, RULES).reasons[0]
    # an interval the tables call too wide says so, and an unbounded end is no number
    wide = decide(evidence(post=(-0.3, 0.2), post_kw={"mde": 1.0}), RULES).reasons_text()
    assert "interval -40% to -20%" in wide and "too wide" not in wide
    unbounded = evidence(post=(-0.3, 0.2), post_kw={"mde": 1.0})
    unbounded = replace(unbounded, post=replace(unbounded.post, ci_low=-1.0, ci_high=math.inf))
    text = decide(unbounded, RULES).reasons_text()
    assert "interval -100% to no upper limit: too wide to tell" in text and "inf" not in text
    # a change that rounds to 0% neither rose nor fell
    flat = decide(evidence(post=(0.003, 0.6), last=(0.0, 0.5)), RULES).reasons_text()
    assert (
        flat.startswith("Drug offences changed by less than 0.5% against") and "rose 0%" not in flat
    )
    assert (
        decide(evidence(post=(-0.006, 0.6)), RULES).reasons[0].startswith("Drug offences fell 1%")
    )


def test_catchment_rise_uses_its_own_upper_tail_not_one_minus_p():
    # a rank test: p_lower and p_upper both count their own tail (they sum to more than 1)
    ev = evidence(catchment=(0.7, 1.0), catchment_kw={"p_upper": 1 / 67})
    verdict = decide(ev, RULES)
    assert verdict.label == "displaced"
    assert "test of a rise p = 0.015" in verdict.reasons_text()
    assert "p < 0.001" not in headline(ev, verdict, "X", "month")
    assert "nearby areas rose 70% (one-sided p = 0.015)" in headline(ev, verdict, "X", "month")


def test_an_insignificant_catchment_says_what_rise_it_cannot_rule_out():
    # no significant rise is not no rise: the interval's upper end is stated
    ev = evidence(catchment=(0.12, 0.8), catchment_kw={"p_upper": 0.2})
    verdict = decide(ev, RULES)
    assert verdict.label == "closed"
    assert (
        "No significant rise in the catchment area (+12%, one-sided test of a rise p = 0.200); "
        "its 95% interval reaches +22%, so a rise of up to that size is not ruled out."
    ) in verdict.reasons_text()
    assert "nearby areas saw no significant rise, though one of up to 22% is not ruled out" in (
        headline(ev, verdict, "X", "month")
    )
    unbounded = replace(ev, catchment=replace(ev.catchment, ci_high=math.inf))
    verdict = decide(unbounded, RULES)
    assert "its interval has no upper limit, so a rise of any size" in verdict.reasons_text()
    assert "inf" not in headline(unbounded, verdict, "X", "month")
    assert "though a rise is not ruled out" in headline(unbounded, verdict, "X", "month")
    # no interval, nothing claimed
    no_ci = replace(ev, catchment=replace(ev.catchment, ci_high=math.nan))
    assert "ruled out" not in decide(no_ci, RULES).reasons_text()
    assert headline(no_ci, decide(no_ci, RULES), "X", "month").endswith("no significant rise.")
    # an interval that excludes a rise says nothing more
    ruled_out = replace(ev, catchment=replace(ev.catchment, pct_change=-0.2, ci_high=-0.01))
    verdict = decide(ruled_out, RULES)
    assert "not ruled out" not in verdict.reasons_text()
    assert headline(ruled_out, verdict, "X", "month").endswith("saw no significant rise.")


def test_designs_disagree_reads_each_designs_two_sided_p():
    # the primary design's own two-sided p, not 2 min(p_lower, 1 - p_lower)
    ev = evidence(others=[(0.3, 0.01)], post_kw={"p_upper": 1.0})
    ev = replace(ev, post=replace(ev.post, p_two_sided=0.2))
    assert decide(ev, RULES).label == "closed"


def test_no_last_k_sentence_when_the_post_period_is_the_window():
    # Seattle-like: 4 post quarters, persistence 4 quarters -> the post test is the test
    ev = evidence(n_post=4, last_k=4, frequency="quarter", last=(-0.05, 0.4))
    verdict = decide(ev, RULES)
    assert verdict.label == "closed"
    assert "last" not in verdict.reasons_text()
    assert "last" not in headline(ev, verdict, "X", "quarter")
    # shorter than the window: too early, and no sentence about "the last 2 quarters"
    early = evidence(n_post=1, last_k=2, frequency="quarter", last=(-0.05, 0.4))
    verdict = decide(early, RULES)
    assert verdict.label == "inconclusive" and "1 quarter after the call-in" in verdict.reasons[0]
    assert "last" not in headline(early, verdict, "X", "quarter")


def test_headline_and_row_carry_the_tables_numbers():
    ev = evidence(n_post=10, last_k=2, frequency="quarter")
    verdict = decide(ev, RULES)
    assert "held through the last 2 quarters" in headline(ev, verdict, "X", "quarter")
    row = verdict_row(ev, verdict)
    assert tuple(row) == VERDICT_COLUMNS
    assert row["primary_design"] == "sc" and row["outcome"] == "drug"
    assert (row["pct_change"], row["ci_low"], row["ci_high"]) == (-0.4, -0.5, -0.30000000000000004)
    assert (row["p_lower"], row["mde"]) == (0.01, 0.15)


def test_thresholds_are_configurable_and_stated():
    strict = VerdictRules(min_reduction=0.5)
    assert decide(evidence(), strict).label == "not_closed"
    text = rule_text(strict)
    assert "at least 50%" in text and "one-sided p < 0.05" in text
    assert "last 6 months" in text
    assert "still a drop of at least 25% (0.5 of 50%)" in text
    assert "too little power" in text
    # the gates are stated with their thresholds, not only named
    assert "a significant effect at more than 20% of the fake call-in dates" in text
    assert (
        "its pre-trend test, where it has one, has not rejected parallel trends (p < 0.05)" in text
    )
    # which of these gates can act is said, not implied: no primary design has a pre-trend test,
    # and the synthetic control's one fake date cannot fail a rule that needs two
    assert "Of the designs that can be primary none has a pre-trend test" in text
    assert "for a synthetic control the spike check is the gate that applies" in text
    assert "the primary design's own checks pass" in text
    assert "gate *closed* and *displaced* (both claim the market fell)" in text
    weekly = rule_text(VerdictRules(), "week")
    assert "last 6 months (26 weeks)" in weekly
    assert "fewer than 5 incidents a month (1.1 a week)" in weekly


def test_persistence_periods_other_than_6_decides_on_that_window():
    # regression: persistence_periods = 4 crashed (every design was built with last_k = 6)
    rules = VerdictRules(persistence_periods=4)
    ev = evidence(last_k=rules.persistence_in("month"))
    assert ev.last.window == "last4"
    verdict = decide(ev, rules)
    assert verdict.label == "closed" and "last 4 months" in verdict.reasons_text()


def test_spike_at_the_end_of_the_pre_period():
    rng = np.random.default_rng(3)
    flat = rng.poisson(20, 36).astype(float)
    assert pre_period_spike(flat, "month") is None
    spiked = flat.copy()
    spiked[-3:] = [34, 38, 36]
    text = pre_period_spike(spiked, "month")
    assert text is not None and "last 3 months" in text and "regression to the mean" in text
    weekly = rng.poisson(5, 156).astype(float)
    assert pre_period_spike(weekly, "week") is None
    weekly[-13:] += 6
    assert "last 13 weeks" in pre_period_spike(weekly, "week")
    # a rise below min_rise is not a spike, however significant
    mild = flat.copy()
    mild[-3:] = flat[:-3].mean() * 1.15
    assert pre_period_spike(mild, "month") is None


@pytest.mark.slow
def test_every_synthetic_site_gets_its_true_verdict(project_root):
    """Each site gets its true verdict, or *inconclusive* where the primary design says why.

    A site whose truth is *not closed* may be called *inconclusive* only because the
    primary design could not have detected a ``min_reduction`` drop (issue #10: *not
    closed* only where the data could tell) -- its MDE above the rule's 25% -- never for
    another reason. Southpark (a drop that fades, -18% over the post period) is such a
    site with the synthetic control's placebo MDE of about 40%.
    """
    folder = project_root / "data" / "synthetic"
    study = load_study(folder / "study.toml")
    truth = json.loads((folder / "truth.json").read_text())["sites"]
    panel = load_study_data(study).panel
    for s in study.sites:
        ev = evaluate_site(panel, study, s.id)
        want, got = truth[s.id]["verdict"], ev.verdict
        if want == "not_closed" and got.label == "inconclusive":
            assert got.basis == "undetectable", (s.id, got.reasons)
            assert ev.evidence.post.mde > study.verdict.min_reduction, s.id
            assert "could not have detected a 25% drop" in got.reasons[0]
        else:
            assert got.label == want, (s.id, got.reasons)


def test_spike_is_judged_against_the_comparison_areas():
    """A rise the comparison areas share is no spike; the market's own rise against them is."""
    rng = np.random.default_rng(5)
    cf = np.full(36, 20.0)
    y = rng.poisson(cf).astype(float)
    shifted_cf = cf.copy()
    shifted_cf[-3:] *= 1.8  # a city-wide level shift: the comparison areas rose too
    shifted_y = y.copy()
    shifted_y[-3:] = rng.poisson(shifted_cf[-3:])
    # against its own level the shift looks like a spike ...
    assert pre_period_spike(shifted_y, "month") is not None
    # ... against comparison areas that share it, it is not one
    donors = 15 * shifted_cf  # a donor total 15 times the market's level
    assert pre_period_spike(shifted_y, "month", comparison=donors) is None
    # the market alone rising 80% in its last three months is a spike the donors lack
    text = pre_period_spike(shifted_y, "month", comparison=15 * cf)
    assert text is not None and "comparison areas do not share" in text
    assert "regression to the mean" in text
    with pytest.raises(ValueError, match="comparison has 35 periods"):
        pre_period_spike(y, "month", comparison=cf[1:])


def test_still_dropped_is_the_persistence_comparison():
    rules = VerdictRules()
    need = rules.lasting_drop()
    assert still_dropped(-need, rules) and still_dropped(-0.4, rules)
    assert not still_dropped(-need + 1e-9, rules)
    assert not still_dropped(float("nan"), rules) and not still_dropped(0.1, rules)
    assert drop_held(evidence(last=(-need - 0.01, 0.3)), rules)
    assert not drop_held(evidence(last=(-need + 0.01, 0.3)), rules)


def test_spike_variance_grows_with_the_comparison_level():
    """A city-wide doubling doubles the counts' noise too: the market at 2 x its usual high
    against doubled comparison areas is no spike, the same counts against flat ones are."""
    y = np.tile([14.0, 26.0], 18)[:36]  # mean 20, variance 36
    donors = np.full(36, 300.0)
    y[-3:] = 2 * 26.0  # the market's usual high, doubled with the city
    doubled = donors.copy()
    doubled[-3:] *= 2
    assert pre_period_spike(y, "month", comparison=doubled) is None
    text = pre_period_spike(y, "month", comparison=donors)
    assert text is not None and "160% higher" in text
