"""Drift variance that grows with the factor correction (``dmi_eval.inference.drift``)."""

from __future__ import annotations

import numpy as np
import pytest

from dmi_eval.inference.drift import correction_size, exposure_drift
from dmi_eval.inference.noise import NoiseStandardisedTest, dersimonian_laird


def test_correction_size_is_the_log_ratio_of_window_totals():
    c = correction_size(np.array([12.0, 5.0, 3.0]), np.array([10.0, 5.0, 0.0]))
    np.testing.assert_allclose(c, [np.log(1.2), 0.0, 0.0])


def test_meta_regression_recovers_intercept_and_slope():
    """Placebos whose drift variance is 0.01 + 0.5 c^2: both are recovered."""
    rng = np.random.default_rng(3)
    n = 6000
    c = rng.normal(0.0, 0.3, n)
    v = rng.uniform(0.01, 0.2, n)
    L = rng.normal(0.0, np.sqrt(0.01 + 0.5 * c**2 + v))
    tau2 = dersimonian_laird(L, v)
    t0, t1 = exposure_drift(L, v, c, tau2)
    assert t0 == pytest.approx(0.01, abs=0.006)
    assert t1 == pytest.approx(0.5, abs=0.1)


def test_no_relation_with_the_correction_keeps_a_small_slope_and_a_negative_one_falls_back():
    rng = np.random.default_rng(4)
    n = 6000
    c = rng.normal(0.0, 0.3, n)
    v = rng.uniform(0.01, 0.2, n)
    L = rng.normal(0.0, np.sqrt(0.02 + v))
    tau2 = dersimonian_laird(L, v)
    t0, t1 = exposure_drift(L, v, c, tau2)
    assert t1 < 0.05 and t0 == pytest.approx(0.02, abs=0.006)
    # drift that shrinks with the correction: the shared tau^2
    L2 = rng.normal(0.0, np.sqrt(np.maximum(0.05 - 0.3 * c**2, 0.0) + v))
    tau2 = dersimonian_laird(L2, v)
    assert exposure_drift(L2, v, c, tau2) == (tau2, 0.0)
    # every correction the same: nothing to regress on
    assert exposure_drift(L, v, np.full(n, 0.1), 0.02) == (0.02, 0.0)


def _paths(rng, n, T, T0, drift_sd):
    """Units x periods counts at 30 a period, each unit's window level off by its drift."""
    mu = np.full((n, T), 30.0)
    obs = rng.poisson(mu).astype(float)
    post = np.arange(T) >= T0
    obs[:, post] = rng.poisson(mu[:, post] * np.exp(drift_sd * rng.normal(size=n))[:, None])
    return obs, mu, post


def test_the_market_with_a_large_correction_gets_a_wider_interval():
    """Placebos whose drift grows with their correction; the market, corrected more than
    any placebo, gets its own larger drift variance and a wider interval, and the
    test is the shared-tau^2 one when no unit is corrected."""
    rng = np.random.default_rng(5)
    n, T, T0 = 301, 60, 36
    c = np.r_[0.6, rng.normal(0.0, 0.15, n - 1)]
    obs, syn, post = _paths(rng, n, T, T0, np.sqrt(0.005 + 0.8 * c**2))
    pre = ~post
    ref = syn * np.exp(-c)[:, None]  # the simplex path: corrected by exp(c)
    phi = np.zeros(n)
    shared = NoiseStandardisedTest.from_paths(obs, syn, pre, post, phi, min_count=0)
    own = NoiseStandardisedTest.from_paths(obs, syn, pre, post, phi, min_count=0, reference=ref)
    assert shared.drift is None and own.drift is not None
    assert own.drift[0] > 2 * shared.tau2
    lo_s, hi_s = shared.interval(0.9)
    lo_o, hi_o = own.interval(0.9)
    assert hi_o - lo_o > 1.5 * (hi_s - lo_s)
    same = NoiseStandardisedTest.from_paths(obs, syn, pre, post, phi, min_count=0, reference=syn)
    np.testing.assert_allclose(same.sd, shared.sd)
    assert same.interval(0.9) == pytest.approx(shared.interval(0.9))
