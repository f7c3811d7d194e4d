"""Interrupted time series: core, site-level design, plots (simulated truth)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmi_eval.config import parse_study
from dmi_eval.designs.its import (
    ITS,
    ITSResults,
    default_hac_lags,
    fit_multigroup,
    fit_segmented,
    segmented_design,
)
from dmi_eval.errors import DesignError
from dmi_eval.inference.delta import log_ratio_interval
from dmi_eval.panel import Panel
from dmi_eval.results import EFFECT_COLUMNS

AREAS = ["T1", "T2", "D1", "D2", "D3", "D4", "D5"]


def make_site(
    *,
    effect: float = 0.7,
    shock: float = 1.0,
    n_periods: int = 60,
    start: str = "2016-01",
    intervention: str = "2019-06-15",
    base: float = 40.0,
    seed: int = 0,
    transition_spike: float = 1.0,
):
    """Monthly panel: two treated areas multiplied by ``effect`` after the call-in,
    every area by ``shock`` (a common change), Poisson counts."""
    rng = np.random.default_rng(seed)
    periods = pd.period_range(start, periods=n_periods, freq="M")
    call_in = pd.Period(intervention, freq="M")
    post = np.asarray(periods > call_in)
    t = np.arange(n_periods)
    season = np.exp(0.2 * np.sin(2 * np.pi * (np.asarray(periods.month) - 1) / 12))
    trend = np.exp(0.002 * t)
    level = np.array([base, base * 0.8, 10, 12, 8, 9, 11])[:, None]
    mu = level * season[None, :] * trend[None, :]
    mu[:, post] *= shock
    no_effect = mu.copy()
    mu[:2, post] *= effect
    counts = rng.poisson(mu)
    counts[:2, periods == call_in] = np.round(
        counts[:2, periods == call_in] * transition_spike
    ).astype(int)
    panel = Panel(
        frequency="month",
        periods=periods,
        areas=pd.Index(AREAS),
        counts={"drug": counts, "violent": rng.poisson(no_effect / no_effect.mean() * 15)},
    )
    study = parse_study(
        {
            "study": {"name": "test", "frequency": "month"},
            "data": {"counts": "counts.csv"},
            "sites": [
                {
                    "id": "east",
                    "intervention": intervention,
                    "treated_areas": ["T1", "T2"],
                    "outcomes": ["drug", "violent"],
                }
            ],
        },
        file=Path("study.toml"),
    )
    return panel.site_data(study, "east")


@pytest.fixture(scope="module")
def site():
    return make_site()


@pytest.fixture(scope="module")
def results(site) -> ITSResults:
    return ITS(site, max_placebos=10).fit()


# --- core -----------------------------------------------------------------------------
def test_default_hac_lags():
    assert default_hac_lags(100) == 4
    assert default_hac_lags(60) == 3
    assert default_hac_lags(31) == 3


def test_design_matrix_terms():
    time = np.arange(10.0)
    post = time >= 6
    x, terms = segmented_design(time, post, seasonality="fourier", n_harmonics=1, ramp=3)
    assert terms == ["level", "slope"]
    np.testing.assert_allclose(x["level"], [0, 0, 0, 0, 0, 0, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(x["slope"], [0, 0, 0, 0, 0, 0, 0, 1, 2, 3])
    np.testing.assert_allclose(x["sin1"], np.sin(2 * np.pi * time / 12))
    d, _ = segmented_design(time, post, seasonality="dummies", period_length=4)
    assert [c for c in d.columns if c.startswith("season")] == ["season1", "season2", "season3"]


def test_ols_hac_matches_newey_west_formula():
    rng = np.random.default_rng(3)
    n = 50
    post = np.arange(n) >= 30
    y = 10 + 0.1 * np.arange(n) - 3 * post + rng.normal(size=n)
    fit = fit_segmented(y, post=post, family="ols", hac_lags=2, small_sample=True)
    x = fit.exog.to_numpy()
    e = y - fit.fitted
    u = x * e[:, None]
    s = u.T @ u
    for lag in (1, 2):
        g = u[lag:].T @ u[:-lag]
        s += (1 - lag / 3) * (g + g.T)
    bread = np.linalg.inv(x.T @ x)
    v = bread @ s @ bread * n / (n - x.shape[1])
    np.testing.assert_allclose(fit.cov.to_numpy(), v, rtol=1e-10)
    coef = fit.coefficients().set_index("term")
    assert abs(coef.loc["level", "estimate"] + 3) < 3 * coef.loc["level", "se"]


def test_poisson_level_dummy_fitted_sum_equals_observed():
    rng = np.random.default_rng(5)
    n = 48
    post = np.arange(n) >= 30
    y = rng.poisson(30 * np.exp(-0.4 * post))
    fit = fit_segmented(y, post=post, family="poisson", slope_change=False)
    eff = fit.window_effect(fit.post)
    assert fit.fitted[post].sum() == pytest.approx(y[post].sum(), rel=1e-8)
    assert eff.rate_ratio == pytest.approx(eff.observed / eff.counterfactual, rel=1e-8)
    # counterfactual = fitted with the level term zeroed
    level = fit.params["level"]
    np.testing.assert_allclose(fit.counterfactual()[post], fit.fitted[post] * np.exp(-level))
    assert eff.rate_ratio == pytest.approx(np.exp(level), rel=1e-8)
    assert eff.ci_low < np.expm1(-0.4) < eff.ci_high


@pytest.mark.parametrize("family", ["poisson", "quasipoisson", "negbin", "ols", "sarimax"])
def test_every_family_recovers_a_level_change(family):
    rng = np.random.default_rng(11)
    n = 60
    t = np.arange(n)
    post = t >= 40
    u = np.zeros(n)
    for i in range(1, n):
        u[i] = 0.3 * u[i - 1] + rng.normal(0, 0.05)
    y = rng.poisson(200 * np.exp(0.002 * t - 0.3 * post + u))
    fit = fit_segmented(y, post=post, family=family, slope_change=False)
    eff = fit.window_effect(fit.post)
    assert eff.ci_low < np.expm1(-0.3) < eff.ci_high
    assert abs(eff.pct_change - np.expm1(-0.3)) < 0.06
    assert eff.p_value < 0.001
    if family == "negbin":
        assert fit.extra["nb_alpha"] > 0
    if family == "sarimax":
        assert 0 < fit.extra["arma_params"]["ar.L1"] < 0.9


def test_quasipoisson_dispersion_is_pearson_chi2_over_df():
    rng = np.random.default_rng(2)
    n = 60
    post = np.arange(n) >= 40
    y = rng.negative_binomial(5, 5 / (5 + 30), size=n)  # mean 30, variance 30 + 30^2/5
    q = fit_segmented(y, post=post, family="quasipoisson")
    p = fit_segmented(y, post=post, family="poisson")
    assert q.dispersion > 3
    np.testing.assert_allclose(q.cov.to_numpy(), p.cov.to_numpy() * q.dispersion, rtol=1e-6)
    pearson = np.sum((y - p.fitted) ** 2 / p.fitted) / (n - p.exog.shape[1])
    assert q.dispersion == pytest.approx(pearson, rel=1e-8)


def test_multigroup_difference_terms_equal_mean_comparison():
    rng = np.random.default_rng(4)
    t = np.arange(30)
    post = t >= 20
    controls = 50 + 0.5 * t + rng.normal(0, 2, size=(5, 30))
    y = 60 + 0.5 * t - 8 * post + rng.normal(0, 2, size=30)
    many = fit_multigroup(y, controls, post=post, family="ols", hac_lags=1)
    mean = fit_multigroup(y, controls.mean(axis=0), post=post, family="ols", hac_lags=1)
    np.testing.assert_allclose(
        many.params[["z_level", "z_slope"]], mean.params[["z_level", "z_slope"]], rtol=1e-9
    )
    coef = mean.coefficients().set_index("term")
    assert coef.loc["z_level", "ci_low"] < -8 < coef.loc["z_level", "ci_high"]
    # within-unit HAC differs from treating the stack as one series
    stacked = fit_multigroup(y, controls, post=post, family="ols", hac_lags=1, hac_panel="stacked")
    assert not np.allclose(stacked.cov.to_numpy(), many.cov.to_numpy())


def test_ar1_sandwich_widens_intervals_for_autocorrelated_counts():
    rng = np.random.default_rng(21)
    n = 80
    t = np.arange(n)
    post = t >= 60
    u = np.zeros(n)
    for i in range(1, n):
        u[i] = 0.7 * u[i - 1] + rng.normal(0, 0.15)
    y = rng.poisson(100 * np.exp(u))
    plain = fit_segmented(y, post=post, family="quasipoisson")
    ar1 = fit_segmented(y, post=post, family="quasipoisson", count_cov="ar1")
    np.testing.assert_allclose(ar1.params, plain.params)
    assert ar1.extra["ar1_rho"] > 0.3
    assert (
        ar1.window_effect(ar1.post).log_ratio_se
        > 1.5 * plain.window_effect(plain.post).log_ratio_se
    )
    # independent counts: rho estimated near 0, covariance close to quasi-Poisson
    white = rng.poisson(100, size=n)
    w_plain = fit_segmented(white, post=post, family="quasipoisson")
    w_ar1 = fit_segmented(white, post=post, family="quasipoisson", count_cov="ar1")
    assert w_ar1.extra["ar1_rho"] < 0.25
    ratio = w_ar1.cov.loc["level", "level"] / w_plain.cov.loc["level", "level"]
    assert 1.0 <= ratio < 1.6


def test_negbin_without_overdispersion_falls_back_to_poisson():
    rng = np.random.default_rng(0)
    post = np.arange(54) >= 36
    y = rng.poisson(3, size=54)
    nb = fit_segmented(y, post=post, family="negbin")
    pois = fit_segmented(y, post=post, family="poisson")
    assert np.isfinite(nb.window_effect(nb.post).ci_low)
    assert nb.extra["nb_alpha"] == 0.0
    assert any("boundary" in note for note in nb.notes)
    np.testing.assert_allclose(nb.params, pois.params, rtol=1e-6)
    np.testing.assert_allclose(nb.cov, pois.cov, rtol=1e-6)


def test_diagnostics_detect_autocorrelation():
    rng = np.random.default_rng(8)
    n = 80
    post = np.arange(n) >= 60
    u = np.zeros(n)
    for i in range(1, n):
        u[i] = 0.8 * u[i - 1] + rng.normal()
    white = fit_segmented(rng.normal(size=n) + 10, post=post, family="ols")
    ar = fit_segmented(u + 10, post=post, family="ols")
    dw, da = white.diagnostics(), ar.diagnostics()
    assert da["ljung_box_p"] < 0.01 < dw["ljung_box_p"]
    assert da["breusch_godfrey_p"] < 0.01 < dw["breusch_godfrey_p"]
    assert da["durbin_watson"] < 1.0 < dw["durbin_watson"]


def test_core_rejects_bad_options_and_short_series():
    y = np.arange(20.0)
    post = np.arange(20) >= 10
    with pytest.raises(ValueError, match="family"):
        fit_segmented(y, post=post, family="logit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exposure"):
        fit_segmented(y, post=post, family="ols", exposure=np.ones(20))
    with pytest.raises(DesignError, match="pre-intervention"):
        fit_segmented(y, post=np.arange(20) >= 2, family="ols")
    with pytest.raises(DesignError, match="non-negative"):
        fit_segmented(y - 5, post=post, family="poisson")


# --- site level -------------------------------------------------------------------------
def test_effects_frame_contract(results):
    eff = results.effects()
    assert list(eff.columns) == list(EFFECT_COLUMNS)
    assert set(eff["window"]) == {"post", "last6"}
    assert set(eff["design"]) == {"its"}
    assert set(eff["outcome"]) == {"drug", "violent"}
    assert (
        eff["method"].str.startswith("quasi-Poisson AR(1)-sandwich delta 95%, two-sided (t)").all()
    )
    np.testing.assert_allclose(eff["effect"], eff["observed"] - eff["counterfactual"])
    np.testing.assert_allclose(eff["pct_change"], eff["observed"] / eff["counterfactual"] - 1)


def test_site_effect_recovered(site, results):
    row = results.effects().set_index(["outcome", "window"]).loc[("drug", "post")]
    assert row["ci_low"] < -0.3 < row["ci_high"]
    assert abs(row["pct_change"] + 0.3) < 0.1
    post = site.post_mask
    assert row["observed"] == site.treated_series("drug").to_numpy()[post].sum()
    assert results.p_value_lower("drug", "post") < 0.01
    assert results.p_value_lower("drug", "post") == pytest.approx(row["p_value"] / 2)
    last = results.window_effect("drug", "last6")
    assert last.n_periods == 6
    # no effect on "violent": the interval covers zero
    v = results.window_effect("violent", "post")
    assert v.ci_low < 0 < v.ci_high


def test_transition_period_is_excluded():
    a = ITS(make_site(seed=1), placebo=False).fit().effects()
    b = ITS(make_site(seed=1, transition_spike=10.0), placebo=False).fit().effects()
    pd.testing.assert_frame_equal(a, b)


def test_choices_recorded_and_auto_seasonality(results):
    c = results.outcome_choices("drug")
    assert c["family"] == "quasipoisson" and c["seasonality"] == "fourier"
    assert c["count_cov"] == "ar1" and c["t_inference"] is True and 0 <= c["ar1_rho"] <= 0.9
    assert c["n_pre"] == 41 and c["n_post"] == 18 and c["n_transition"] == 1
    assert "fourier" in results.describe()
    short = ITS(make_site(start="2018-01", n_periods=36), placebo=False).fit()
    assert short.outcome_choices("drug")["seasonality"] == "none"
    assert "< two years" in short.outcome_choices("drug")["seasonality_reason"]


@pytest.mark.parametrize("comparison", ["none", "donor_total"])
def test_one_or_two_post_periods_fit_a_level_change_alone(comparison):
    # call-in in the second-to-last month: one post month (the call-in month is a transition)
    site = make_site(n_periods=41, start="2016-01", intervention="2019-04-15")
    res = ITS(site, outcomes=["drug"], comparison=comparison, placebo=False).fit()
    choices = res.outcome_choices("drug")
    assert choices["n_post"] == 1 and choices["slope_change"] is False
    assert "slope change" not in res.describe()
    assert np.isfinite(res.window_effect("drug", "post").pct_change)
    longer = ITS(make_site(), outcomes=["drug"], comparison=comparison, placebo=False).fit()
    assert longer.outcome_choices("drug")["slope_change"] is True


def test_one_post_period_with_no_incidents_has_no_upper_limit_not_an_overflow():
    # a late call-in (one post month) on a quiet outcome: the level change's SE runs to
    # thousands and e^(1.96 se) overflows; the whole study used to stop on it
    site = make_site(n_periods=41, intervention="2019-04-15", effect=0.0, base=1.0)
    res = ITS(site, outcomes=["drug"], placebo=False).fit()
    w = res.window_effect("drug", "post")
    assert w.log_ratio_se > 400  # past e^709: the case that overflowed
    assert (w.pct_change, w.ci_low, w.ci_high) == (-1.0, -1.0, np.inf)
    assert np.isinf(res.coefficients("drug")["rr_high"]).any()  # no overflow warning either
    assert log_ratio_interval(0.0, 500.0, 1.96) == (-1.0, np.inf)


def test_controlled_its_removes_a_common_shock():
    site = make_site(effect=1.0, shock=0.6, base=200.0, seed=2)
    single = ITS(site, outcomes=["drug"], placebo=False).fit()
    controlled = ITS(site, outcomes=["drug"], comparison="donor_total", placebo=False).fit()
    mean = ITS(site, outcomes=["drug"], comparison="donor_mean", placebo=False).fit()
    s = single.window_effect("drug", "post")
    c = controlled.window_effect("drug", "post")
    m = mean.window_effect("drug", "post")
    assert s.ci_high < -0.2  # the shock looks like an effect without a comparison
    assert c.ci_low < 0 < c.ci_high
    # the donor total is a count: its variance is the total's, not a single area's; the
    # donor mean treated as one Poisson count inflates the SE
    assert c.log_ratio_se < 0.75 * m.log_ratio_se
    assert c.pct_change == pytest.approx(m.pct_change, abs=0.02)
    eff = controlled.effects()
    assert set(eff["design"]) == {"cits"}
    assert "comparison" in controlled.get_plot_data("drug").columns
    # the method text names the series the market was compared with
    assert "comparison-area total, areas as offset" in controlled.method("drug")
    assert "comparison-area total" in controlled.describe()
    assert "comparison-area mean" in mean.method("drug")
    assert "vs" not in single.method("drug") and "controlled" not in single.describe()
    import matplotlib.pyplot as plt

    from dmi_eval.plots.its import plot_its

    fig, ax = plot_its(controlled, "drug")
    line = next(ln for ln in ax.get_lines() if ln.get_label().startswith("comparison areas"))
    observed = controlled.get_plot_data("drug")
    pre = (observed["role"] == "pre").to_numpy()
    # drawn on the market's scale: the same pre-period mean as the market's counts
    assert line.get_ydata()[pre].mean() == pytest.approx(observed["observed"][pre].mean())
    plt.close(fig)


def test_plot_data_and_diagnostics(site, results):
    data = results.get_plot_data("drug")
    assert list(data.columns) == [
        "period",
        "observed",
        "fitted",
        "counterfactual",
        "low",
        "high",
        "role",
    ]
    assert len(data) == len(site.periods)
    trans = data["role"] == "transition"
    assert trans.sum() == 1 and data.loc[trans, "fitted"].isna().all()
    pre = data["role"] == "pre"
    np.testing.assert_allclose(data.loc[pre, "fitted"], data.loc[pre, "counterfactual"])
    used = ~trans
    assert (data.loc[used, "low"] < data.loc[used, "counterfactual"]).all()
    assert (data.loc[used, "counterfactual"] < data.loc[used, "high"]).all()
    diag = results.diagnostics
    assert list(diag["outcome"]) == ["drug", "violent"]
    for col in ("ljung_box_p", "breusch_godfrey_p", "durbin_watson", "dispersion", "pre_rmse"):
        assert diag[col].notna().all()
    assert diag.loc[0, "p_lower_post"] == results.p_value_lower("drug", "post")
    assert diag.loc[0, "placebo_rank_p"] == results.placebo_summary("drug")["p_two_sided"]


def test_placebo_in_time_ranks_a_real_effect_first(results):
    placebo = results.placebo("drug")
    summary = results.placebo_summary("drug")
    assert 5 <= len(placebo) <= 10
    assert (placebo["period"] < pd.Period("2019-06", freq="M")).all()
    assert summary["rank"] == 1
    assert summary["real_pct_change"] < placebo["pct_change"].min()


def test_no_placebo_date_gives_no_placebo_p():
    # 9 pre months leave no room for a fake call-in: no rank and no p (not p = 1 of 1)
    short = ITS(make_site(intervention="2016-10-15", n_periods=30), max_placebos=10).fit()
    summary = short.placebo_summary("drug")
    assert summary["n"] == 0 and np.isnan(summary["p_two_sided"]) and np.isnan(summary["rank"])
    assert np.isnan(short.diagnostics.loc[0, "placebo_rank_p"])


def test_results_are_read_only_and_deterministic(site, results):
    with pytest.raises(dataclasses.FrozenInstanceError):
        results.design = "x"  # type: ignore[misc]
    again = ITS(site, max_placebos=10).fit()
    pd.testing.assert_frame_equal(results.effects(), again.effects())
    pd.testing.assert_frame_equal(results.placebo("drug"), again.placebo("drug"))


def test_site_level_option_checks(site):
    with pytest.raises(ValueError, match="family"):
        ITS(site, family="gaussian")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="comparison"):
        ITS(site, comparison="synth")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outcomes"):
        ITS(site, outcomes=["burglary"])
    with pytest.raises(ValueError, match="last_k"):
        ITS(site, last_k=0)
    short = make_site(start="2018-10", n_periods=24)  # 8 pre periods: too few for 11 dummies
    with pytest.raises(DesignError, match="pre-intervention periods are too few"):
        ITS(short, seasonality="dummies").fit()


def test_plots(results):
    import matplotlib.pyplot as plt

    from dmi_eval.plots.its import plot_its, plot_placebo_in_time

    fig, ax = plot_its(results, "drug")
    labels = [h.get_label() for h in ax.get_legend().legend_handles]
    assert {"observed", "fitted", "counterfactual", "call-in"} <= set(labels)
    fig2, ax2 = plot_placebo_in_time(results, "drug")
    assert any("real call-in" in t.get_text() for t in ax2.get_legend().get_texts())
    plt.close(fig)
    plt.close(fig2)


def test_quarterly_fourier_drops_the_zero_nyquist_sine():
    from dmi_eval.designs.its.model import _seasonal_columns

    cols = _seasonal_columns(np.arange(12.0), "fourier", 2, 4, None)
    assert sorted(cols) == ["cos1", "cos2", "sin1"]
    assert all(np.any(np.abs(v) > 1e-9) for v in cols.values())


def test_cits_gives_market_and_donor_total_their_own_dispersion():
    rng = np.random.default_rng(8)
    T, post = 60, np.arange(60) >= 40
    # market: 3 busy, over-dispersed areas; donors: 60 quiet Poisson areas
    market = rng.poisson(25 * rng.gamma(1 / 0.15, 0.15, (3, T))).sum(axis=0)
    donors = rng.poisson(rng.uniform(0.3, 3, (60, 1)) * np.ones((1, T))).sum(axis=0)
    fit = fit_multigroup(
        market,
        donors[None, :],
        post=post,
        family="quasipoisson",
        exposure=[3, 60],
        unit_dispersion=True,
    )
    target, donor = fit.extra["unit_dispersion"]
    assert target > 3 and donor < 2 and fit.extra["target_dispersion"] == target
    pooled = fit_multigroup(market, donors[None, :], post=post, family="quasipoisson")
    # the market's own (larger) dispersion widens its interval relative to a pooled scale
    assert fit.window_effect(fit.post).log_ratio_se > pooled.window_effect(pooled.post).log_ratio_se
    # the offset (areas per series) only moves the intercepts: the level change is the same
    assert fit.params["z_level"] == pytest.approx(pooled.params["z_level"], abs=1e-6)
    with pytest.raises(ValueError, match="unit_dispersion"):
        fit_multigroup(market, donors[None, :], post=post, family="poisson", unit_dispersion=True)
    with pytest.raises(ValueError, match="exposure needs 2"):
        fit_multigroup(market, donors[None, :], post=post, family="poisson", exposure=[3])


def test_last_k_test_includes_the_windows_own_noise():
    rng = np.random.default_rng(9)
    t = np.arange(54)
    post = t >= 36
    y = rng.poisson(20 * np.exp(0.2 * np.sin(2 * np.pi * t / 12)))
    fit = fit_segmented(y, post=post, family="quasipoisson", count_cov="ar1")
    whole = fit.window_effect(fit.post)
    last = np.zeros(t.size, dtype=bool)
    last[-6:] = True
    w = fit.window_effect(last)
    # model-only delta SE of the window, as before the fix
    x, xc = fit.exog.to_numpy(), fit._counterfactual_exog()
    mu, cf = fit.fitted, fit.counterfactual()
    g = (mu[last] @ x[last]) / mu[last].sum() - (cf[last] @ xc[last]) / cf[last].sum()
    model_only = float(np.sqrt(g @ fit._vbeta() @ g))
    rho = fit.extra["ar1_rho"]
    infl = 1 + 2 * sum((1 - j / 6) * rho**j for j in range(1, 6))
    expected = np.sqrt(model_only**2 + fit.dispersion * infl / mu[last].sum())
    assert w.log_ratio_se == pytest.approx(expected, rel=1e-9)
    assert w.log_ratio_se > 1.1 * model_only
    # the whole post period: O equals the fitted total, nothing added
    g = (mu[fit.post] @ x[fit.post]) / mu[fit.post].sum() - (cf[fit.post] @ xc[fit.post]) / cf[
        fit.post
    ].sum()
    assert whole.log_ratio_se == pytest.approx(float(np.sqrt(g @ fit._vbeta() @ g)), rel=1e-9)
    assert w.p_lower + w.p_upper == pytest.approx(1.0)
