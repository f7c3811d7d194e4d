"""The first paragraph a police chief reads: one verdict, the change, how sure, why."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dmi_eval.wording import VERDICT_SENTENCES, chance, first_paragraph, verdict_words

ROW = {
    "pct_change": -0.94,
    "observed": 12.0,
    "counterfactual": 200.0,
    "ci_low": -0.97,
    "ci_high": -0.88,
    "p_lower": 0.013,
}


def paragraph(label, reasons, **row):
    return first_paragraph(
        label=label,
        reasons=reasons,
        row={**ROW, **row},
        outcome_label="drug offences",
        unit="month",
        n_post=18,
        rule_summary="every condition of the closure rule holds.",
    )


def test_closed_states_the_verdict_once_with_the_rows_numbers():
    text = paragraph("closed", ["Drug offences fell 94%."])
    assert text.startswith("**The market closed.**") and text.count("closed") == 1
    assert "94% below" in text and "12 in the 18 months" in text and "200 expected" in text
    assert "one-sided p = 0.013" in text and "about 1 time in 100" in text
    assert "Decided by: every condition" in text


@pytest.mark.parametrize(
    ("label", "reasons"),
    [
        ("inconclusive", ["The market averaged 2.1 drug incidents per period, too few."]),
        ("not_closed", ["Fell 94%.", "The drop did not hold over the last 6 periods."]),
    ],
)
def test_inconclusive_and_not_closed_never_read_as_successes(label, reasons):
    text = paragraph(label, reasons)
    assert text.startswith(f"**{VERDICT_SENTENCES[label]}**")
    assert "held" not in text.replace("did not hold", "")
    deciding = reasons[0] if label == "inconclusive" else reasons[-1]
    assert "Decided by: " + deciding[0].lower() + deciding[1:] in text
    if label == "inconclusive":
        assert "should not be read as a success" in text
        assert text.index("Decided by") < text.index("94%")  # the reason comes first


def test_a_rise_is_no_sign_of_a_fall_and_a_weak_fall_could_be_chance():
    rise = paragraph("not_closed", ["No significant reduction."], pct_change=0.12, p_lower=0.8)
    assert "12% above" in rise and "no sign of a fall" in rise.lower()
    weak = paragraph("not_closed", ["No significant reduction."], pct_change=-0.1, p_lower=0.455)
    assert "could well be chance" in weak and "about 46 times in 100" in weak


def test_absurd_interval_is_said_in_words():
    text = paragraph("not_closed", ["x."], ci_low=-1.0, ci_high=2796412.2, p_lower=0.3)
    assert "too wide to tell" in text and "2796412" not in text


def test_a_p_value_at_the_tests_floor_says_so():
    # 1/94: the smallest p a rank test over 93 placebos gives; a smaller p cannot be reached
    at = chance(1 / 94, "fall", floor=1 / 94)
    assert at.endswith("(one-sided p = 0.011, the smallest p its test over 93 placebos can give)")
    assert "smallest" not in chance(0.02, "fall", floor=1 / 94)
    assert "smallest" not in chance(1 / 94, "fall")  # a continuous test has no floor


def test_chance_and_verdict_words():
    assert chance(0.0004, "fall").startswith("a fall this large would show up by chance less")
    assert "1,000" in chance(0.0004, "fall")
    assert verdict_words("not_closed") == "not closed"


def test_reasons_name_designs_and_outcomes_in_words():
    from dmi_eval.wording import plain_reason

    reason = "I_drugs offences fell 10% against the microsynth counterfactual (p = 0.455)."
    text = plain_reason(reason, outcome="i_drugs", label="drug offences")
    assert text == (
        "Drug offences fell 10% against the micro-level synthetic control counterfactual "
        "(p = 0.455)."
    )
    assert "did" in plain_reason("the design did not hold", outcome="x", label="y")
    # the catchment is called what the headline calls it
    rose = plain_reason("The catchment area rose 64% (one-sided test of a rise p = 0.012).")
    assert rose.startswith("The nearby (catchment) areas rose 64%")
    none = plain_reason("No significant rise in the catchment area (-3%, one-sided test).")
    assert none == "No significant rise in the nearby (catchment) areas (-3%, one-sided test)."


def test_first_paragraph_suppresses_small_counts_as_the_tables_do():
    # regression: with [report] suppress_below = 100 the tables said "<100" and the opening
    # paragraph printed the exact count it hides
    text = first_paragraph(
        label="not_closed",
        reasons=["No significant reduction."],
        row={**ROW, "observed": 12.0, "counterfactual": 15.4},
        outcome_label="drug offences",
        unit="month",
        n_post=18,
        rule_summary="every condition of the closure rule holds.",
        suppress_below=100,
    )
    assert "<100 in the 18 months" in text and "against <100 expected" in text
    assert "12 in" not in text and "15.4" not in text


def test_closure_summary_without_a_catchment_claims_nothing_about_nearby_areas():
    from dmi_eval.study_spec import VerdictRules
    from dmi_eval.wording import closure_summary

    with_ring = closure_summary(VerdictRules(), "month")
    alone = closure_summary(VerdictRules(), "month", catchment=False)
    assert "nearby areas did not rise significantly" in with_ring
    assert "did not rise" not in alone and "not assessed" in alone


def test_closure_summary_says_the_rise_the_catchment_cannot_rule_out():
    from dmi_eval.study_spec import VerdictRules
    from dmi_eval.verdict import Evidence, WindowEvidence
    from dmi_eval.wording import catchment_high, closure_summary

    rules = VerdictRules()
    wide = closure_summary(rules, "month", catchment_high=0.084)
    assert "did not rise significantly (though a rise of up to 8% is not ruled out)." in wide
    unbounded = closure_summary(rules, "month", catchment_high=float("inf"))
    assert "(though the data cannot rule out a rise there)" in unbounded and "inf" not in unbounded
    excluded = closure_summary(rules, "month", catchment_high=-0.02)
    assert excluded == closure_summary(rules, "month")  # an interval below zero rules a rise out
    assert closure_summary(rules, "month", catchment_high=float("nan")) == excluded  # none given
    assert "not ruled out" not in closure_summary(rules, "month", catchment=False, catchment_high=1)
    post = WindowEvidence("sc", "post", -0.5, -0.6, -0.4, 0.01, 0.99, 0.02)
    ev = Evidence("s", "drug", post, post, 40, 30.0, 0.2, 24, 6)
    assert catchment_high(ev) is None
    ev = Evidence(
        "s", "drug", post, post, 40, 30.0, 0.2, 24, 6, catchment=replace(post, ci_high=0.3)
    )
    assert catchment_high(ev) == 0.3
