"""The joint generalized synthetic control (``SyntheticControl(estimator="joint")``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dmi_eval.designs.synth.factor import poisson_fit
from dmi_eval.designs.synth.joint import JointFactorModel, joint_poisson
from dmi_eval.inference.noise import regressors


def _two_outcome_city(seed: int, *, n_donors: int = 150, T: int = 72, T0: int = 40):
    """Donors and a market whose two outcomes share loadings ``l`` on two random-walk
    factors (``log mu_o = a_o + l'f_t``); the market's loadings are far outside the
    donors' range and its second outcome is three times as busy as its first."""
    rng = np.random.default_rng(seed)
    f = rng.normal(0.0, 0.05, (2, T)).cumsum(axis=1)
    load = rng.normal(0.0, 0.5, (n_donors, 2))
    levels = [rng.uniform(10.0, 40.0, n_donors), rng.uniform(10.0, 40.0, n_donors)]
    mu0 = [lv[:, None] * np.exp(load @ f) for lv in levels]
    l1 = np.array([1.6, -1.4])
    mu1 = [15.0 * np.exp(l1 @ f), 45.0 * np.exp(l1 @ f)]
    pre = np.arange(T) < T0
    Y0s = [rng.poisson(m).astype(float) for m in mu0]
    y1s = [rng.poisson(m).astype(float) for m in mu1]
    return y1s, Y0s, mu1, pre


def test_joint_poisson_recovers_intercepts_and_shared_loadings():
    rng = np.random.default_rng(0)
    T = 300
    pre = np.ones(T, dtype=bool)
    F = rng.normal(size=(T, 2))
    offs = [rng.normal(0.0, 0.1, T), rng.normal(0.0, 0.1, T)]
    b = np.array([0.3, -0.2])
    ys = [rng.poisson(np.exp(offs[0] + 2.0 + F @ b)), rng.poisson(np.exp(offs[1] + 1.0 + F @ b))]
    coef = joint_poisson(ys, offs, F, pre)
    np.testing.assert_allclose(coef, [2.0, 1.0, 0.3, -0.2], atol=0.04)
    # one outcome: the same as the single-outcome quasi-Poisson fit
    one = joint_poisson(ys[:1], offs[:1], F, pre)
    np.testing.assert_allclose(one, poisson_fit(ys[0], offs[0], regressors(F)), atol=1e-6)


def test_second_outcome_sharpens_the_market_loadings():
    """Fitting the loadings on both outcomes' pre periods beats the first outcome alone
    (same factors), over 12 simulated cities."""
    err_joint, err_one = [], []
    for seed in range(12):
        y1s, Y0s, mu1, pre = _two_outcome_city(seed)
        post = ~pre
        model = JointFactorModel(Y0s, pre, 2)
        truth = mu1[0][post].sum()
        err_joint.append(np.log(model.path(y1s).cf[post].sum() / truth))
        err_one.append(np.log(model.path(y1s[:1]).cf[post].sum() / truth))
    rmse_joint = np.sqrt(np.mean(np.square(err_joint)))
    rmse_one = np.sqrt(np.mean(np.square(err_one)))
    assert rmse_joint < 0.85 * rmse_one
    assert rmse_joint < 0.12


def test_leaving_a_donor_out_is_the_decomposition_without_it():
    y1s, Y0s, _, pre = _two_outcome_city(1)
    model = JointFactorModel(Y0s, pre, 2)
    i = 7
    deltas, F = model.factors(exclude=i)
    # each area's residual is the precision-weighted mean of its outcomes' residuals
    n, T = Y0s[0].shape[0], pre.size
    weighted, W, dref = np.zeros((n, T)), np.zeros(n), []
    for blk in model.blocks:
        keep = blk.rows != i
        Z, a = blk.Z[keep], blk.a[keep]
        d = a @ Z / a.sum()
        R = Z - d
        weighted[blk.rows[keep]] += a[:, None] * (R - R.mean(axis=1, keepdims=True))
        W[blk.rows[keep]] += a
        dref.append(d)
    used = W > 0
    rows = weighted[used] / np.sqrt(W[used])[:, None]
    vt = np.linalg.svd(rows, full_matrices=False)[2][:2].T
    np.testing.assert_allclose(F @ F.T, vt @ vt.T, atol=1e-8)
    for d, e in zip(deltas, dref, strict=True):
        np.testing.assert_allclose(d, e, rtol=1e-12)
    # the placebo gap is donor i's counts less its fit on the other donors
    gap = model.placebo_gap(i)
    fit = model.path([Y[i] for Y in Y0s], exclude=i)
    np.testing.assert_allclose(gap, Y0s[0][i] - fit.cf)
    assert fit.omega[i] == 0.0 and fit.omega.sum() == pytest.approx(1.0)
    assert not np.allclose(model.factors()[1] @ model.factors()[1].T, F @ F.T, atol=1e-6)


def _quiet_two_outcome_donors(seed: int, *, n: int = 150, T: int = 72):
    """Quiet donors (0.3-3 incidents a period) whose two outcomes share loadings on three
    random-walk factors ``f``."""
    rng = np.random.default_rng(seed)
    f = rng.normal(0.0, 0.05, (3, T)).cumsum(axis=1)
    load = rng.normal(0.0, 0.6, (n, 3))
    Y0s = [rng.poisson(rng.uniform(0.3, 3.0, n)[:, None] * np.exp(load @ f)) for _ in range(2)]
    return [Y.astype(float) for Y in Y0s], f, np.arange(T) < 48


def _share_of_factors(F: np.ndarray, f: np.ndarray) -> float:
    """Mean share of each true factor's variance over time that the span of ``F`` holds."""
    Q = np.linalg.qr(np.column_stack([F, np.ones(F.shape[0])]))[0]
    fc = f.T - f.T.mean(axis=0)
    return float(np.mean([np.sum((Q.T @ x) ** 2) / np.sum(x**2) for x in fc.T]))


def _stacked_factors(blocks, r: int) -> np.ndarray:
    """The earlier estimator: every outcome's donors as separate rows of ``G``."""
    T = blocks[0].c.shape[1]
    G = np.zeros((T, T))
    for blk in blocks:
        res = blk.c - blk.s / blk.a.sum()
        G += (res.T * blk.a) @ res
    return np.linalg.eigh(G)[1][:, -r:]


def test_pooling_outcomes_by_area_finds_the_factors_that_stacking_them_blurs():
    """An area's outcomes share its loadings, so their residuals are averaged before the
    decomposition; stacking them as separate donors (the earlier estimator) adds the
    difference of their noise as if it were signal."""
    pooled, stacked = [], []
    for seed in range(10):
        Y0s, f, pre = _quiet_two_outcome_donors(seed)
        model = JointFactorModel(Y0s, pre, 3)
        pooled.append(_share_of_factors(model.factors()[1], f))
        stacked.append(_share_of_factors(_stacked_factors(model.blocks, 3), f))
    assert np.mean(pooled) > np.mean(stacked) + 0.03
    assert sum(p > s for p, s in zip(pooled, stacked, strict=True)) >= 8
    # one outcome: pooling changes nothing
    Y0s, _, pre = _quiet_two_outcome_donors(0)
    one = JointFactorModel(Y0s[:1], pre, 3)
    F_one = _stacked_factors(one.blocks, 3)
    np.testing.assert_allclose(one.factors()[1] @ one.factors()[1].T, F_one @ F_one.T, atol=1e-10)


def test_joint_beats_simplex_at_markets_with_large_own_exposure():
    """Cities whose markets' own loadings are large (SD 1.5, factor innovations 0.06):
    pooled over six cities, the joint estimator's counterfactual of the post period is
    closer to the truth than simplex SC's (which fails badly where a market is far
    outside its donors; city by city either can be closer)."""
    from dmi_eval.calibration.city import CitySpec, simulate_city
    from dmi_eval.designs.synth.paths import path_for

    spec = CitySpec(market_loading_sd=1.5, factor_sd=0.06, covariates=False)
    err_joint, err_aug, err_simplex = [], [], []
    for seed in range(11, 17):
        city = simulate_city(spec, seed=seed)
        study = city.study()
        for m in city.markets:
            sd = city.panel.site_data(study, m.id)
            pre, post = sd.pre_mask, sd.post_mask
            cells = city.panel.areas.get_indexer(list(m.areas))
            truth = city.expected["drug"][cells][:, post].sum()
            order = ("drug", "violent")
            y1s = [sd.panel.series(o, m.areas).to_numpy().astype(float) for o in order]
            Y0s = [sd.donor_matrix(o).to_numpy().astype(float) for o in order]
            model = JointFactorModel(Y0s, pre, 3)
            err_joint.append(np.log(truth / model.path(y1s).cf[post].sum()))
            keep = Y0s[0][:, pre].sum(axis=1) >= 45
            n = len(m.areas)
            simplex = path_for(y1s[0] / n, Y0s[0][keep], pre, post, "sc", "exact", n, True, 0.3)
            err_simplex.append(np.log(truth / (n * simplex.cf[post].sum())))
            w = np.zeros(keep.size)
            w[keep] = simplex.omega
            err_aug.append(np.log(truth / model.path(y1s, weights=w).cf[post].sum()))
    rmse_joint = np.sqrt(np.mean(np.square(err_joint)))
    rmse_aug = np.sqrt(np.mean(np.square(err_aug)))
    rmse_simplex = np.sqrt(np.mean(np.square(err_simplex)))
    assert rmse_joint < 0.9 * rmse_simplex
    assert rmse_aug < 0.85 * rmse_simplex


def test_site_sc_with_the_joint_estimator_uses_every_outcome():
    from dmi_eval.calibration.city import simulate_city
    from dmi_eval.designs.synth import SyntheticControl

    city = simulate_city(seed=5)
    data = city.panel.site_data(city.study(), city.markets[0].id)
    common = dict(outcomes=["drug"], anchor="ratio", n_jobs=1, max_placebos=60)
    res = SyntheticControl(data, estimator="joint", **common).fit()
    diag = res.diagnostics.loc["drug"]
    assert diag["estimator_weights"] == "joint" and diag["n_factors"] == 3
    assert res.choices["estimator"] == "joint"
    row = res.table.query("window == 'post'").iloc[0]
    assert row["ci_low"] < row["pct_change"] < row["ci_high"]
    assert len(res.placebo_in_time) == 1
    # the market's violent series informs its drug counterfactual
    cells = city.panel.areas.get_indexer(list(city.markets[0].areas))
    violent = city.panel.counts["violent"].copy()
    pre_cols = np.flatnonzero(data.pre_mask)
    violent[np.ix_(cells, pre_cols[: len(pre_cols) // 2])] *= 3
    panel = replace(city.panel, counts={**city.panel.counts, "violent": violent})
    data2 = panel.site_data(city.study(), city.markets[0].id)
    res2 = SyntheticControl(data2, estimator="joint", placebo_time=False, **common).fit()
    cf1 = res.paths["drug"]["synthetic"].to_numpy()
    cf2 = res2.paths["drug"]["synthetic"].to_numpy()
    assert np.max(np.abs(cf2 / cf1 - 1)) > 0.01
    with pytest.raises(ValueError, match="joint"):
        SyntheticControl(data, method="sdid", estimator="joint")
    with pytest.raises(ValueError, match="n_factors"):
        SyntheticControl(data, estimator="joint", n_factors=-1)


def test_a_short_pre_period_gets_no_factor_correction():
    """The factor correction is calibrated with at least 24 pre periods; on a shorter one a
    quiet placebo's loadings can make its extrapolated counterfactual explode."""
    from dmi_eval.calibration.city import simulate_city
    from dmi_eval.designs.synth import SyntheticControl
    from dmi_eval.designs.synth.joint import MIN_PRE_FOR_FACTORS, default_factors
    from dmi_eval.panel import Panel

    assert default_factors(MIN_PRE_FOR_FACTORS) == 3 and default_factors(23) == 0
    city = simulate_city(seed=5)
    study = city.study()
    market = city.markets[0].id
    full = city.panel.site_data(study, market)
    n_pre = int(full.pre_mask.sum())
    assert n_pre >= MIN_PRE_FOR_FACTORS
    # the same market seen from 12 periods before its call-in
    cut = n_pre - 12
    panel = city.panel
    short_panel = Panel(
        frequency=panel.frequency,
        periods=panel.periods[cut:],
        areas=panel.areas,
        counts={o: np.asarray(a)[:, cut:] for o, a in panel.counts.items()},
        covariates=panel.covariates,
    )
    short = short_panel.site_data(study, market)
    assert int(short.pre_mask.sum()) == 12
    common = dict(outcomes=["drug"], anchor="ratio", n_jobs=1, max_placebos=60)
    for data, factors in ((full, 3), (short, 0)):
        res = SyntheticControl(data, estimator="augmented", placebo_time=False, **common).fit()
        assert res.diagnostics.loc["drug", "n_factors"] == factors


def test_augmented_without_factors_is_the_simplex_sc():
    """With no factors the correction is one multiplicative level, which ratio
    scaling already matches: the augmented estimator is the simplex SC, for the
    market, every placebo and the placebo in time."""
    from dmi_eval.calibration.city import simulate_city
    from dmi_eval.designs.synth import SyntheticControl

    city = simulate_city(seed=6, spec=None)
    data = city.panel.site_data(city.study(), city.markets[1].id)
    common = dict(outcomes=["drug"], anchor="ratio", n_jobs=1, max_placebos=40)
    simplex = SyntheticControl(data, leave_one_out=False, **common).fit()
    aug0 = SyntheticControl(data, estimator="augmented", n_factors=0, **common).fit()
    np.testing.assert_allclose(
        aug0.paths["drug"]["synthetic"], simplex.paths["drug"]["synthetic"], rtol=1e-7
    )
    np.testing.assert_allclose(
        aug0.placebos["drug"].gaps.to_numpy(), simplex.placebos["drug"].gaps.to_numpy(), atol=1e-6
    )
    np.testing.assert_allclose(aug0.placebo_in_time["effect"], simplex.placebo_in_time["effect"])
    # the same with placebos drawn from the eligible donors only (RMSPE statistic)
    rm = dict(common, placebo_statistic="rmspe", placebo_time=False, leave_one_out=False)
    np.testing.assert_allclose(
        SyntheticControl(data, estimator="augmented", n_factors=0, **rm)
        .fit()
        .placebos["drug"]
        .gaps,
        SyntheticControl(data, **rm).fit().placebos["drug"].gaps,
        atol=1e-6,
    )
    aug = SyntheticControl(data, estimator="augmented", **common).fit()
    assert aug.diagnostics.loc["drug", "estimator_weights"] == "augmented"
    w_aug = aug.weights.set_index("area")["weight"].sort_index()
    w_simplex = simplex.weights.set_index("area")["weight"].sort_index()
    np.testing.assert_allclose(w_aug, w_simplex)  # the weights are the simplex SC's
    gap_aug = aug.placebos["drug"].gaps.to_numpy()
    assert np.max(np.abs(gap_aug - simplex.placebos["drug"].gaps.to_numpy())) > 0.01
    # what the site page's figure draws as "weighted donors alone" is this simplex SC, and the
    # factor term moves the fitted synthetic control off it
    alone = aug.paths["drug"]["synthetic_weights_only"].to_numpy()
    np.testing.assert_allclose(alone, simplex.paths["drug"]["synthetic"], rtol=1e-7)
    assert np.max(np.abs(aug.paths["drug"]["synthetic"].to_numpy() / alone - 1)) > 0.01
    assert np.isnan(simplex.paths["drug"]["synthetic_weights_only"]).all()


def test_site_figures_show_the_fitted_estimator_and_the_test_used():
    """The correction figure draws the weights-only and the fitted synthetic control; the
    placebo figure marks the market's noise-standardised statistic and states the table's p."""
    import matplotlib.pyplot as plt

    from dmi_eval.calibration.city import simulate_city
    from dmi_eval.designs.synth import SyntheticControl
    from dmi_eval.plots import plot_placebo_statistics, plot_synth_correction

    city = simulate_city(seed=6, spec=None)
    data = city.panel.site_data(city.study(), city.markets[1].id)
    aug = SyntheticControl(
        data, estimator="augmented", outcomes=["drug"], anchor="ratio", n_jobs=1,
        max_placebos=40, placebo_time=False, leave_one_out=False,
    ).fit()  # fmt: skip
    path = aug.path_data("drug")
    fig, ax = plot_synth_correction(aug, outcome="drug")
    drawn = [line.get_ydata() for line in ax.lines if len(line.get_ydata()) == len(path)]
    np.testing.assert_allclose(drawn[1], path["synthetic_weights_only"])
    np.testing.assert_allclose(drawn[2], path["synthetic"])
    post = path["role"] == "post"
    assert f"{path['synthetic'][post].sum():,.0f} (fitted)" in ax.get_title()
    plt.close(fig)
    fig, ax = plot_placebo_statistics(aug, outcome="drug")
    test = aug.noise_test("drug")
    assert ax.lines[0].get_xdata()[0] == pytest.approx(float(test.z[0]))
    p_lower = aug.table.query("window == 'post'")["p_lower"].iloc[0]
    assert ax.get_title() == f"p (fall) = {p_lower:.3f}"
    plt.close(fig)


def test_leverage_factors_give_the_joint_fits_leverage():
    """With level counts (mu_d a period for the first outcome, mu_v for the other),
    the variance of the first outcome's fitted level over a post window, from
    pre-period counting noise, relative to a pre-period mean's, is
    ``mu_d T_0 x_W' (X' W X)^{-1} x_W`` for the stacked design; the single-outcome
    leverage of :meth:`JointSite.leverage_factors` equals it."""
    from dmi_eval.designs.synth.joint import JointSite
    from dmi_eval.inference.noise import leverage

    y1s, Y0s, _, pre = _two_outcome_city(3)
    model = JointFactorModel(Y0s, pre, 2)
    T0 = int(pre.sum())
    mu_d, mu_v = 15.0, 45.0
    flat = [np.full(pre.size, mu_d), np.full(pre.size, mu_v)]
    site = JointSite(flat, Y0s, 2, None, model)
    F = model.factors()[1]
    window = ~pre
    X = np.zeros((2 * T0, 4))
    X[:T0, 0] = X[T0:, 1] = 1.0
    X[:T0, 2:] = X[T0:, 2:] = F[pre]
    W = np.r_[np.full(T0, mu_d), np.full(T0, mu_v)]
    xw = np.r_[1.0, 0.0, F[window].mean(axis=0)]
    exact = mu_d * T0 * xw @ np.linalg.solve(X.T @ (W[:, None] * X), xw)
    assert leverage(site.leverage_factors(), pre, window) == pytest.approx(exact, rel=1e-9)
    one = leverage(F, pre, window)
    assert 1.0 < exact < one  # the second outcome's counts shrink the excess over 1
    assert exact - 1 == pytest.approx((one - 1) / 4.0, rel=1e-9)  # kappa = 3


def test_placebo_figure_draws_no_cut_off_where_no_p_can_reach_alpha():
    """With n placebos no p goes below 1 / (n + 1): below 19 placebos no cut-off is drawn, and
    where one is, the market is significant exactly when it lies below it."""
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    from dmi_eval.inference.noise import NoiseStandardisedTest
    from dmi_eval.plots import plot_placebo_statistics

    rng = np.random.default_rng(3)
    for n, market, drawn in ((12, -30.0, False), (19, -30.0, False), (40, -30.0, True)):
        L = np.r_[market * 0.1, rng.normal(0.0, 0.1, n)]
        test = NoiseStandardisedTest(log_ratio=L, variance=np.full(n + 1, 0.01), tau2=0.0)
        results = SimpleNamespace(primary_outcome="drug", noise_test=lambda o, w, t=test: t)
        fig, ax = plot_placebo_statistics(results, alpha=0.05)
        assert len(ax.lines) == (2 if drawn else 1), n
        p_lower = test.p_values()[0]
        assert (p_lower < 0.05) == drawn
        if drawn:
            assert float(test.z[0]) < ax.lines[1].get_xdata()[0]
        plt.close(fig)
