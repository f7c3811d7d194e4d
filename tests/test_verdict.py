"""The market-closure rule: unit cases, and every synthetic site gets its true verdict."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from dmi_eval.config import VerdictRules, load_study
from dmi_eval.data import load_study_data
from dmi_eval.evaluation import evaluate_site
from dmi_eval.verdict import (
    VERDICT_COLUMNS,
    Evidence,
    WindowEvidence,
    decide,
    headline,
    pre_period_spike,
    rule_text,
    verdict_row,
)

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
        (evidence(catchment=(-0.3, 0.01)), "closed", "benefits spread"),
        (evidence(last=(-0.05, 0.4)), "not_closed", "came back"),
        (evidence(post=(-0.15, 0.01)), "not_closed", "smaller than the 25%"),
        (evidence(pre_mean=2.0), "inconclusive", "too few for the test"),
        (evidence(n_pre=8), "inconclusive", "Only 8 pre-intervention periods"),
        (evidence(fit=0.9), "inconclusive", "Poor pre-period fit"),
        (evidence(others=[(0.3, 0.01)]), "inconclusive", "Designs disagree"),
        (evidence(others=[(0.3, 0.3)]), "closed", "held"),
        # the data cannot tell
        (
            evidence(post=(-0.1, 0.3), post_kw={"min_p": 1 / 12, "mde": float("inf")}),
            "inconclusive",
            "With 11 comparison areas the sc test can never reach p < 0.05",
        ),
        (
            evidence(post=(-0.1, 0.3), post_kw={"mde": 0.4}),
            "inconclusive",
            "could not have detected a 25% drop: with 80% power it detects drops of 40%",
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
        (
            evidence(last=(-0.35, 0.09), last_kw={"mde": 0.5}),
            "inconclusive",
            "too few periods to show it held",
        ),
        (evidence(warnings=[SPIKE]), "inconclusive", "a closure cannot be claimed: The pre"),
        (evidence(post=(-0.4, 0.2), warnings=[SPIKE]), "not_closed", "No significant"),
    ],
)
def test_rule(ev, label, phrase):
    verdict = decide(ev, RULES)
    assert verdict.label == label
    assert phrase in verdict.reasons_text()
    assert verdict.warnings == ev.warnings


def test_catchment_rise_uses_its_own_upper_tail_not_one_minus_p():
    # a rank test: p_lower and p_upper both count their own tail (they sum to more than 1)
    ev = evidence(catchment=(0.7, 1.0), catchment_kw={"p_upper": 1 / 67})
    verdict = decide(ev, RULES)
    assert verdict.label == "displaced"
    assert "test of a rise p = 0.015" in verdict.reasons_text()
    assert "p < 0.001" not in headline(ev, verdict, "X", "month")
    assert "nearby areas rose 70% (one-sided p = 0.015)" in headline(ev, verdict, "X", "month")


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
    weekly = rule_text(VerdictRules(), "week")
    assert "last 6 months (26 weeks)" in weekly


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
    folder = project_root / "data" / "synthetic"
    study = load_study(folder / "study.toml")
    truth = json.loads((folder / "truth.json").read_text())["sites"]
    panel = load_study_data(study).panel
    got = {s.id: evaluate_site(panel, study, s.id).verdict.label for s in study.sites}
    assert got == {site: t["verdict"] for site, t in truth.items()}
