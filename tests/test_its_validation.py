"""ITS against published results (Stata itsa on Prop 99; the Sicily tutorial)."""

from __future__ import annotations

import math

import pytest

from dmi_eval.validation.its_cases import CASES

pytestmark = pytest.mark.reference


@pytest.mark.parametrize("case", sorted(CASES))
def test_its_case_matches_published(case, reference_dir):
    checks = CASES[case](reference_dir)
    assert checks, case
    for check in checks:
        assert check.case == case
        assert math.isfinite(check.value), check
        if check.published is not None:
            assert check.passed, (
                f"{case}.{check.quantity}: {check.value!r} vs published {check.published} "
                f"(tolerance {check.tolerance})"
            )


def test_expected_quantities(reference_dir):
    names = {c: [k.quantity for k in CASES[c](reference_dir)] for c in CASES}
    assert names["prop99_itsa_single"] == [
        "level_change",
        "level_change_se",
        "slope_change",
        "slope_change_se",
        "pre_trend",
        "post_trend",
    ]
    assert names["prop99_itsa_multi"] == [
        "diff_level_change",
        "diff_level_change_se",
        "diff_level_change_p",
        "diff_slope_change_p",
    ]
    assert names["sicily_qp_fourier"] == [
        "level_rr",
        "level_rr_ci_low",
        "level_rr_ci_high",
        "dispersion",
    ]
    assert names["sicily_qp"] == ["level_rr", "level_rr_ci_low", "level_rr_ci_high"]
    assert names["boston_bartley_fox"][:2] == ["level_change_pct", "p_value"]
