"""Dispersion estimates for over-dispersed counts: hand computations and gamma-Poisson data."""

from __future__ import annotations

import numpy as np
import pytest

from dmi_eval.overdispersion import (
    ar1_sum_inflation,
    group_dispersion,
    pearson_dispersion,
    unit_dispersions,
)


def test_pearson_dispersion_by_hand_and_floor():
    y = np.array([[4.0, 10.0, 6.0], [5.0, 5.0, 5.0]])
    e = np.full((2, 3), 5.0)
    got = pearson_dispersion(y, e, df=2)
    assert got[0] == pytest.approx((1 + 25 + 1) / 5 / 2)
    assert got[1] == 1.0  # floored at the Poisson variance
    with pytest.raises(ValueError, match="df"):
        pearson_dispersion(y, e, df=0)


def test_group_dispersion_recovers_gamma_poisson_excess():
    rng = np.random.default_rng(7)
    phi, mu, T = 0.15, 20.0, 400
    rest_mu = 200 * (1 + 0.3 * np.sin(np.arange(T) / 5))
    pre = np.ones(T, dtype=bool)
    group = rng.poisson(mu * rest_mu / rest_mu.mean() * rng.gamma(1 / phi, phi, T))
    rest = rng.poisson(rest_mu)
    got = float(group_dispersion(group, rest, pre))
    # variance mu + phi mu^2 -> dispersion 1 + phi mu = 4, plus the rest's own noise
    assert 3.2 < got < 4.8
    poisson = rng.poisson(mu * rest_mu / rest_mu.mean())
    assert float(group_dispersion(poisson, rest, pre)) < 1.3


def test_unit_dispersions_and_ar1_inflation():
    r = np.array([1.0, -1.0, 2.0, -2.0, 0.5, 0.5])
    units = np.array([0, 0, 0, 1, 1, 1])
    got = unit_dispersions(r, units, [1, 1])
    assert got[0] == pytest.approx(6.0 / 2)
    assert got[1] == pytest.approx(4.5 / 2)
    with pytest.raises(ValueError, match="degrees of freedom"):
        unit_dispersions(r, units, [3, 1])
    assert ar1_sum_inflation(0.0, 6) == 1.0
    assert ar1_sum_inflation(0.5, 2) == pytest.approx(1 + 2 * 0.5 * 0.5)
    rho, k = 0.3, 6
    cov = rho ** np.abs(np.subtract.outer(np.arange(k), np.arange(k)))
    assert ar1_sum_inflation(rho, k) == pytest.approx(cov.sum() / k)
