"""The generalized synthetic control (``SyntheticControl(estimator="factor")``)."""

from __future__ import annotations

import numpy as np
import pytest

from dmi_eval.designs.synth.core import fit_path
from dmi_eval.designs.synth.factor import (
    choose_n_factors_market,
    city_factors,
    donor_precision,
    factor_path,
    poisson_fit,
)
from dmi_eval.inference.noise import leverage


def _factor_city(seed: int = 0, *, n_donors: int = 120, T: int = 72, T0: int = 48, noise: bool):
    """Donors and a market following ``log mu = a + l'f_t`` with the market's loadings
    1.5 times the donors' largest: outside what simplex weights can reach."""
    rng = np.random.default_rng(seed)
    f = rng.normal(0.0, 0.03, (2, T)).cumsum(axis=1)
    load = rng.normal(0.0, 0.5, (n_donors, 2))
    level = rng.uniform(20.0, 60.0, n_donors)
    mu0 = level[:, None] * np.exp(load @ f)
    l1 = 1.5 * np.abs(load).max(axis=0)
    mu1 = 200.0 * np.exp(l1 @ f)
    pre = np.arange(T) < T0
    if noise:
        return rng.poisson(mu1).astype(float), rng.poisson(mu0).astype(float), mu1, pre
    return mu1, mu0, mu1, pre


def test_factor_path_extrapolates_a_market_outside_the_donors_range():
    y1, Y0, mu1, pre = _factor_city(noise=False)
    post = ~pre
    a = donor_precision(Y0, pre)
    s0 = Y0[:, pre].mean(axis=1, keepdims=True)
    fit = factor_path(y1, Y0 / s0, pre, weights=a, n_factors=2)
    # noiseless: the multiplicative model is recovered (up to the SVD's linear
    # approximation of the donors' exp(l'f)), far better than simplex weights
    err_factor = abs(fit.cf[post].sum() / mu1[post].sum() - 1)
    sc = fit_path(y1 / y1[pre].mean(), Y0 / s0, pre, post, method="sc")
    err_sc = abs(sc.cf[post].sum() * y1[pre].mean() / mu1[post].sum() - 1)
    assert err_factor < 0.01
    assert err_sc > 0.1
    np.testing.assert_allclose(fit.omega, a / a.sum())


def test_no_factors_is_the_weighted_ratio_did():
    y1, Y0, _, pre = _factor_city(noise=True)
    a = donor_precision(Y0, pre)
    s0 = Y0[:, pre].mean(axis=1, keepdims=True)
    fit = factor_path(y1, Y0 / s0, pre, weights=a, n_factors=0)
    delta = a @ (Y0 / s0) / a.sum()
    np.testing.assert_allclose(fit.cf, delta * y1[pre].sum() / delta[pre].sum(), rtol=1e-8)
    delta2, F = city_factors(Y0 / s0, a, 0)
    assert F.shape == (Y0.shape[1], 0)
    np.testing.assert_allclose(delta2, delta)


def test_poisson_fit_recovers_coefficients():
    rng = np.random.default_rng(2)
    X = np.column_stack([np.ones(400), rng.normal(size=(400, 2))])
    b = np.array([2.0, 0.3, -0.2])
    off = rng.normal(0.0, 0.1, 400)
    y = rng.poisson(np.exp(off + X @ b))
    np.testing.assert_allclose(poisson_fit(y, off, X), b, atol=0.05)


def test_donor_precision_weights_busy_donors_more_up_to_one_over_phi():
    rng = np.random.default_rng(3)
    mu = np.repeat([[0.5], [5.0], [50.0], [500.0]], 120, axis=1)
    Y0 = rng.poisson(mu * rng.gamma(1 / 0.2, 0.2, mu.shape)).astype(float)
    a = donor_precision(Y0, np.ones(120, dtype=bool))
    assert a[0] < a[1] < a[2] < a[3] < 1 / 0.1  # phi is about 0.2: capped near 1/phi
    assert a[0] == pytest.approx(0.5, rel=0.3)  # a quiet donor: about its mean


def test_cross_validation_finds_the_factors_and_leverage_grows_with_them():
    y1, Y0, _, pre = _factor_city(seed=0, noise=True)
    a = donor_precision(Y0, pre)
    Z0 = Y0 / Y0[:, pre].mean(axis=1, keepdims=True)
    r, crit = choose_n_factors_market(y1, Z0, pre, a)
    assert r >= 2 and crit[2] < 0.5 * crit[0]
    _, F = city_factors(Z0, a, 2)
    post = ~pre
    assert leverage(F[:, :0], pre, post) == pytest.approx(1.0)
    assert leverage(F, pre, post) > 1.0


def test_site_sc_with_the_factor_estimator_records_it_and_validates_options():
    from dmi_eval.calibration.city import simulate_city
    from dmi_eval.designs.synth import SyntheticControl

    city = simulate_city(seed=5)
    data = city.panel.site_data(city.study(), city.markets[0].id)
    common = dict(outcomes=["drug"], anchor="ratio", n_jobs=1, max_placebos=60)
    res = SyntheticControl(
        data, estimator="factor", n_factors=2, leave_one_out=False, **common
    ).fit()
    diag = res.diagnostics.loc["drug"]
    assert diag["estimator_weights"] == "factor" and diag["n_factors"] == 2
    assert res.choices["estimator"] == "factor"
    row = res.table.query("window == 'post'").iloc[0]
    assert row["ci_low"] < row["pct_change"] < row["ci_high"]
    simplex = SyntheticControl(data, placebo_time=False, leave_one_out=False, **common).fit()
    assert simplex.choices["estimator"] == "simplex"
    assert simplex.diagnostics.loc["drug", "n_factors"] == -1
    with pytest.raises(ValueError, match="estimator"):
        SyntheticControl(data, estimator="svd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="factor"):
        SyntheticControl(data, method="sdid", estimator="factor")
    with pytest.raises(ValueError, match="n_factors"):
        SyntheticControl(data, n_factors=2)
