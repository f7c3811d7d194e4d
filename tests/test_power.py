"""Minimum detectable effects: closed forms, rank-test limits, and a power simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dmi_eval.power import mde_from_placebos, mde_from_se, min_rank_p, reduction_from_log


def test_mde_from_se_closed_form_and_simulated_power():
    se = 0.12
    mde = mde_from_se(se)
    delta = -math.log1p(-mde)
    assert delta == pytest.approx((stats.norm.isf(0.05) + stats.norm.ppf(0.8)) * se)
    # a drop of exactly the MDE is detected 80% of the time by the one-sided 5% test
    rng = np.random.default_rng(1)
    est = -delta + se * rng.standard_normal(20_000)
    assert np.mean(est / se < -stats.norm.isf(0.05)) == pytest.approx(0.8, abs=0.01)
    assert mde_from_se(se, df=5) > mde  # t quantiles are wider
    assert math.isnan(mde_from_se(0.0))
    with pytest.raises(ValueError, match="alpha"):
        mde_from_se(se, alpha=1.5)


def test_rank_test_limits():
    assert min_rank_p(11) == pytest.approx(1 / 12)
    rng = np.random.default_rng(2)
    assert mde_from_placebos(rng.standard_normal(19)) == float("inf")  # p >= 1/20 always
    assert math.isfinite(mde_from_placebos(rng.standard_normal(20)))
    # 39 placebos: only a treated statistic below all of them gives p = 1/40 < 0.05
    forty = np.arange(39.0)
    assert mde_from_placebos(forty, 0.1) == pytest.approx(reduction_from_log(0.1 * (0.8 * 38)))
    assert reduction_from_log(float("inf")) == float("inf")


def test_mde_from_placebos_matches_the_normal_case_and_power():
    rng = np.random.default_rng(3)
    placebos = rng.standard_normal(4000)
    scale = 0.1
    mde = mde_from_placebos(placebos, scale)
    delta = -math.log1p(-mde)
    assert delta == pytest.approx((stats.norm.isf(0.05) + stats.norm.ppf(0.8)) * scale, rel=0.05)
    # simulated rank test at that drop: power ~ 80%
    treated = -delta / scale + rng.standard_normal(2000)
    sorted_pl = np.sort(placebos)
    p = (1 + np.searchsorted(sorted_pl, treated, side="right")) / (placebos.size + 1)
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.03)
