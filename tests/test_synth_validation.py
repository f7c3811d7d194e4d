"""Synthetic control against published results on the reference datasets."""

from __future__ import annotations

import numpy as np
import pytest

from dmi_eval.validation.synth_cases import (
    BASQUE_PUBLISHED_MSPE,
    CASES,
    basque_model,
    prop99_adh2010_model,
)

pytestmark = pytest.mark.reference


def _as_dict(checks):
    return {c.quantity: c for c in checks}


def test_case_names():
    assert set(CASES) == {
        "basque_synth_fixedv",
        "basque_synth",
        "prop99_sc",
        "prop99_did",
        "prop99_sdid",
        "prop99_adh2010",
        "germany_adh2015",
    }


def test_basque_fixed_v_gives_published_weights(reference_dir):
    checks = _as_dict(CASES["basque_synth_fixedv"](reference_dir))
    assert len(checks) == 17  # every donor, Spain included
    assert all(c.passed for c in checks.values())
    assert checks["weight[Cataluna]"].value == pytest.approx(0.8508, abs=5e-5)
    assert checks["weight[Madrid (Comunidad De)]"].value == pytest.approx(0.1492, abs=5e-5)
    # the clarabel QP gives the same weights
    fit = basque_model(reference_dir, with_spain=True, v=[1] * 14, solver="clarabel").fit()
    fit2 = basque_model(reference_dir, with_spain=True, v=[1] * 14).fit()
    assert np.allclose(fit.weights, fit2.weights, atol=1e-5)


def test_basque_search_meets_published_mspe(reference_dir):
    checks = _as_dict(CASES["basque_synth"](reference_dir))
    assert checks["pre_mspe"].passed
    assert checks["pre_mspe"].value <= BASQUE_PUBLISHED_MSPE
    assert checks["pre_mspe_lower_bound"].value <= checks["pre_mspe"].value + 1e-12
    assert (
        checks["effect_mean_min"].value
        <= checks["effect_mean"].value
        <= checks["effect_mean_max"].value
    )
    weights = [c.value for q, c in checks.items() if q.startswith("weight[")]
    assert len(weights) == 16 and sum(weights) == pytest.approx(1)


@pytest.mark.parametrize("case", ["prop99_sc", "prop99_did", "prop99_sdid"])
def test_prop99_outcome_only(reference_dir, case):
    checks = _as_dict(CASES[case](reference_dir))
    assert checks["effect_mean"].passed, checks["effect_mean"]
    assert checks["effect_mean_synthdid_package"].passed


def test_prop99_exact_sc_matches_readme(reference_dir):
    checks = _as_dict(CASES["prop99_sc"](reference_dir))
    assert checks["effect_mean_exact"].value == pytest.approx(-19.51, abs=0.005)


def test_prop99_adh2010(reference_dir):
    checks = CASES["prop99_adh2010"](reference_dir)
    failed = [c for c in checks if c.passed is False]
    assert not failed, failed
    d = _as_dict(checks)
    assert d["pre_rmspe"].value <= 1.76
    assert d["placebo_p"].value == pytest.approx(1 / 39)
    assert sum(c.value for q, c in d.items() if q.startswith("weight[")) == pytest.approx(1)


def test_prop99_adh2010_deterministic(reference_dir):
    a = prop99_adh2010_model(reference_dir).fit()
    b = prop99_adh2010_model(reference_dir).fit()
    assert a.pre_mspe == b.pre_mspe
    assert np.array_equal(a.weights.to_numpy(), b.weights.to_numpy())
    assert "near-optimal" in a.robustness()


def test_germany_record(reference_dir):
    checks = _as_dict(CASES["germany_adh2015"](reference_dir))
    assert all(c.published is None for c in checks.values())
    assert len([q for q in checks if q.startswith("weight[")]) == 16
    # cross-validated V reproduces the published donors to about 0.01
    assert checks["weight[Austria]"].value == pytest.approx(0.42, abs=0.02)
    assert checks["weight[USA]"].value == pytest.approx(0.22, abs=0.02)
