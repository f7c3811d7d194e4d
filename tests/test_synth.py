"""Synthetic control, SDID, DID and placebo inference on data whose truth we know."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from dmi_eval.config import parse_study
from dmi_eval.designs.synth import Synth, SyntheticControl, predictor_table
from dmi_eval.designs.synth.core import (
    fit_path,
    search_v,
    simplex_ls,
    standardise,
    w_given_v,
)
from dmi_eval.errors import DesignError
from dmi_eval.inference import PlaceboTest, parallel_map, select_placebos
from dmi_eval.panel import Panel
from dmi_eval.plots.synth import (
    plot_rmspe_ratios,
    plot_synth_gaps,
    plot_synth_weights,
)
from dmi_eval.results import EFFECT_COLUMNS


# ---------------------------------------------------------------------------
# simulated DMI city
# ---------------------------------------------------------------------------
def simulate_city(
    n_areas: int = 80,
    n_periods: int = 48,
    n_treated: int = 3,
    multiplier: float = 0.6,
    seed: int = 1,
    t0: int = 30,
):
    """A city of micro-areas with Poisson counts; the busiest areas form the market.

    ``drug`` falls to ``multiplier`` times its expected value in the treated
    areas after the call-in period ``t0`` and rises by half in the three
    catchment areas; ``violent`` is untouched. Returns the
    site data and the true expected counterfactual totals over the post period.
    """
    rng = np.random.default_rng(seed)
    periods = pd.period_range("2016-01", periods=n_periods, freq="M")
    areas = pd.Index([f"A{i:03d}" for i in range(n_areas)])
    base = np.exp(rng.normal(1.2, 0.7, n_areas))
    order = np.argsort(-base)
    tidx = order[:n_treated]
    factors = rng.normal(0, 0.08, (3, n_periods)).cumsum(axis=1)
    load = rng.dirichlet(np.ones(3), n_areas)
    season = 0.15 * np.sin(2 * np.pi * np.arange(n_periods) / 12)
    mu = base[:, None] * np.exp(load @ factors + season)
    cidx = order[n_treated : n_treated + 3]  # catchment: the next busiest areas
    mult = np.ones_like(mu)
    mult[np.ix_(tidx, np.arange(t0 + 1, n_periods))] = multiplier
    mult[np.ix_(cidx, np.arange(t0 + 1, n_periods))] = 1.5  # displacement
    counts = {"drug": rng.poisson(mu * mult), "violent": rng.poisson(mu)}
    cov = pd.DataFrame({"pop": rng.integers(500, 3000, n_areas)}, index=areas)
    panel = Panel(frequency="month", periods=periods, areas=areas, counts=counts, covariates=cov)
    call_in = periods[t0].start_time.date() + pd.Timedelta(days=14)
    study = parse_study(
        {
            "study": {"name": "sim", "frequency": "month"},
            "data": {"counts": "counts.csv"},
            "sites": [
                {
                    "id": "market",
                    "intervention": str(call_in),
                    "treated_areas": [areas[i] for i in tidx],
                    "catchment_areas": [areas[i] for i in cidx],
                    "outcomes": ["drug", "violent"],
                    "primary_outcome": "drug",
                }
            ],
        },
        file=Path("study.toml"),
    )
    site = panel.site_data(study, "market")
    true_cf = float(mu[tidx][:, site.post_mask].sum())
    return site, true_cf


@pytest.fixture(scope="module")
def city():
    return simulate_city()


# ---------------------------------------------------------------------------
# numeric core
# ---------------------------------------------------------------------------
def test_simplex_ls_matches_clarabel_and_kkt():
    rng = np.random.default_rng(3)
    for k, J, ridge in [(6, 10, 0.0), (12, 30, 0.0), (20, 8, 0.5)]:
        A = rng.normal(size=(k, J))
        b = rng.normal(size=k)
        w1 = simplex_ls(A, b, ridge=ridge)
        w2 = simplex_ls(A, b, ridge=ridge, solver="clarabel")
        assert w1.min() >= 0 and abs(w1.sum() - 1) < 1e-12
        obj1 = np.sum((A @ w1 - b) ** 2) + ridge * w1 @ w1
        obj2 = np.sum((A @ w2 - b) ** 2) + ridge * w2 @ w2
        assert obj1 <= obj2 + 1e-8
        # KKT: gradient is equal (= multiplier) on the support and not smaller elsewhere
        grad = 2 * A.T @ (A @ w1 - b) + 2 * ridge * w1
        on = w1 > 1e-9
        mu = grad[on].mean()
        assert np.allclose(grad[on], mu, atol=1e-6)
        assert (grad[~on] >= mu - 1e-6).all()


def test_simplex_ls_recovers_convex_combination():
    rng = np.random.default_rng(0)
    X0 = rng.normal(size=(15, 9))
    w_true = np.array([0.5, 0.3, 0.2, 0, 0, 0, 0, 0, 0])
    w = simplex_ls(X0, X0 @ w_true)
    assert np.allclose(w, w_true, atol=1e-8)


def test_v_search_is_deterministic_and_beats_equal_v():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4, 13))
    Z = rng.normal(size=(13, 8)).cumsum(axis=1)
    x1, X0, _ = standardise(X[:, 0], X[:, 1:])
    a = search_v(x1, X0, Z[0], Z[1:], n_random=3)
    b = search_v(x1, X0, Z[0], Z[1:], n_random=3)
    assert np.array_equal(a.best.v, b.best.v) and a.best.loss == b.best.loss
    w_eq = w_given_v(x1, X0, np.full(4, 0.25))
    loss_eq = np.mean((Z[0] - w_eq @ Z[1:]) ** 2)
    assert a.lower_bound - 1e-12 <= a.best.loss <= loss_eq + 1e-12


def test_did_and_sdid_formulas():
    rng = np.random.default_rng(2)
    Y0 = rng.normal(10, 1, size=(6, 10))
    y1 = Y0.mean(axis=0) + 3.0
    y1[7:] -= 2.0  # effect -2 in the last three periods
    pre = np.arange(10) < 7
    post = ~pre
    did = fit_path(y1, Y0, pre, post, method="did")
    hand = (y1[post].mean() - y1[pre].mean()) - (Y0[:, post].mean() - Y0[:, pre].mean())
    assert np.isclose((y1 - did.cf)[post].mean(), hand)
    assert np.isclose(hand, -2.0)
    sdid = fit_path(y1, Y0, pre, post, method="sdid")
    assert np.isclose((y1 - sdid.cf)[post].mean(), -2.0, atol=1e-6)
    assert np.isclose(sdid.omega.sum(), 1) and np.isclose(sdid.lam.sum(), 1)


def test_synth_recovers_weights_and_effect():
    rng = np.random.default_rng(11)
    donors = [f"d{i}" for i in range(8)]
    Y0 = rng.normal(size=(8, 30)).cumsum(axis=1) + 20
    w_true = np.array([0.6, 0.4, 0, 0, 0, 0, 0, 0])
    y1 = w_true @ Y0
    y1[20:] += 5.0
    Y = pd.DataFrame(np.vstack([y1, Y0]), index=["T", *donors], columns=range(30))
    X = Y.loc[:, [0, 3, 6, 9, 12, 15, 18, 19]].rename(columns=lambda c: f"y{c}")
    for preds in (None, X):
        fit = Synth(
            Y, "T", predictors=preds, fit_periods=range(20), post_periods=range(20, 30)
        ).fit()
        assert np.allclose(fit.weights.to_numpy(), w_true, atol=1e-3)
        assert fit.effect_mean() == pytest.approx(5.0, abs=1e-2)
        assert fit.pre_mspe < 1e-6
    fixed = Synth(
        Y, "T", predictors=X, v=[2] * 8, fit_periods=range(20), post_periods=range(20, 30)
    )
    assert fixed.fit().v.to_numpy() == pytest.approx([1 / 8] * 8)


def test_predictor_table_means_skip_missing():
    data = pd.DataFrame(
        {"u": ["a", "a", "b", "b"], "t": [1, 2, 1, 2], "x": [1.0, np.nan, 2.0, 4.0]}
    )
    table = predictor_table(data, unit="u", time="t", predictors=[("x12", "x", [1, 2])])
    assert table.loc["a", "x12"] == 1.0 and table.loc["b", "x12"] == 3.0


# ---------------------------------------------------------------------------
# inference helpers
# ---------------------------------------------------------------------------
def test_placebo_test_rank_p_values():
    periods = pd.Index(range(6))
    pre = np.array([True] * 4 + [False] * 2)
    gaps = np.array(
        [
            [1, -1, 1, -1, -10, -10],  # treated: big fall
            [1, -1, 1, -1, 1, -1],
            [2, -2, 2, -2, 3, 3],
            [1, -1, 1, -1, -2, -2],
        ],
        dtype=float,
    )
    test = PlaceboTest("T", pd.DataFrame(gaps, index=list("TABC"), columns=periods), pre, ~pre)
    assert test.p_value(sided="lower") == pytest.approx(1 / 4)
    assert test.p_value(sided="greater") == pytest.approx(4 / 4)
    assert test.p_ratio() == pytest.approx(1 / 4)
    # drop placebos with pre-MSPE > 2x the treated's (unit B has 4x)
    assert test.p_ratio(max_pre_mspe_multiple=2) == pytest.approx(1 / 3)
    lo, hi = test.interval(level=0.5)
    assert lo < -10 < hi


def test_parallel_map_is_order_stable_and_core_independent():
    items = list(range(23))
    serial = parallel_map(np.sqrt, items, n_jobs=1)
    assert parallel_map(np.sqrt, items, n_jobs=2) == serial
    assert parallel_map(np.sqrt, items, n_jobs=2, min_seconds=0.0) == serial  # joblib path
    assert np.array_equal(select_placebos(50, 10, 7), select_placebos(50, 10, 7))
    assert len(select_placebos(50, None, 7)) == 50


# ---------------------------------------------------------------------------
# site-level model
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["sc", "sdid"])
def test_site_model_recovers_known_effect(city, method):
    site, true_cf = city
    res = SyntheticControl(site, method=method, n_jobs=1).fit()
    eff = res.effects()
    assert list(eff.columns) == list(EFFECT_COLUMNS)
    assert set(eff["design"]) == {method}
    assert set(eff["window"]) == {"post", "last6"}
    drug = eff[(eff.outcome == "drug") & (eff.window == "post")].iloc[0]
    violent = eff[(eff.outcome == "violent") & (eff.window == "post")].iloc[0]
    truth = drug["observed"] / true_cf - 1  # about -0.4
    assert drug["pct_change"] == pytest.approx(truth, abs=0.1)
    # violent has no effect; its expected counts equal drug's counterfactual.
    # Monte Carlo RMSE of the violent estimate over 40 cities of 150 areas (ratio
    # scaling, the default here): SC 0.07, SDID 0.07, DID 0.08.
    truth_violent = violent["observed"] / true_cf - 1
    assert violent["pct_change"] == pytest.approx(truth_violent, abs=0.2)
    assert drug["ci_low"] <= drug["pct_change"] <= drug["ci_high"]
    assert drug["p_value"] < violent["p_value"]
    assert "one-sided" in drug["method"] and "90%" in drug["method"]
    assert res.p_value("drug", sided="lower") == drug["p_value"]
    assert res.pre_rmspe("drug") > 0
    diag = res.diagnostics.loc["drug"]
    assert bool(diag["outside_hull"])  # the market is the busiest areas
    if method == "sc":
        assert diag["estimator"] == "sc_ratio"
    assert np.isclose(res.weights_table("drug")["weight"].sum(), 1)


def test_site_model_flags_hull_and_levels(city):
    site, _ = city
    res = SyntheticControl(site, method="sc", anchor="match", n_jobs=1, max_placebos=5).fit()
    diag = res.diagnostics.loc["drug"]
    assert diag["estimator"] == "sc" and bool(diag["outside_hull"])
    assert diag["share_pre_outside_range"] > 0.5
    # SC in levels cannot reach the market: it undershoots badly
    assert (
        res.effects().query("outcome == 'violent' and window == 'post'")["pct_change"].iloc[0] > 0.3
    )
    balance = res.balance("drug")
    assert {"treated", "synthetic", "donor_mean"} <= set(balance.columns)
    assert "covariate pop (per area)" in balance.index


def test_site_model_deterministic_and_core_independent(city):
    site, _ = city
    a = SyntheticControl(site, max_placebos=20, seed=4, n_jobs=1).fit().effects()
    b = SyntheticControl(site, max_placebos=20, seed=4, n_jobs=2).fit().effects()
    pd.testing.assert_frame_equal(a, b)
    c = SyntheticControl(site, max_placebos=20, seed=5, n_jobs=1).fit()
    assert c.placebos["drug"].n_placebos == 20


def test_site_model_validates_and_does_not_mutate(city):
    site, _ = city
    before = site.panel.counts["drug"].copy()
    with pytest.raises(ValueError):
        SyntheticControl(site, method="synth")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):  # the DID is designs.did.DID
        SyntheticControl(site, method="did")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SyntheticControl(site, level="log")  # type: ignore[arg-type]
    with pytest.raises(DesignError, match="pre periods"):
        SyntheticControl(site, min_pre_periods=100)
    res = SyntheticControl(site, outcomes=["drug"], n_jobs=1, max_placebos=5).fit()
    assert np.array_equal(site.panel.counts["drug"], before)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.method = "sdid"  # type: ignore[misc]
    assert list(res.leave_one_out.columns) == [
        "outcome",
        "dropped",
        "weight",
        "effect",
        "pct_change",
    ]
    assert len(res.leave_one_out) > 0
    assert len(res.placebo_in_time) == 1
    # a placebo date inside the pre period finds no effect
    assert abs(res.placebo_in_time["pct_change"].iloc[0]) < 0.15


def test_plots_return_figure_and_axes(city):
    site, _ = city
    res = SyntheticControl(site, outcomes=["drug"], n_jobs=1, max_placebos=10).fit()
    for fn in (plot_synth_gaps, plot_rmspe_ratios, plot_synth_weights):
        fig, ax = fn(res)
        assert ax.has_data()
        plt.close(fig)
    data = res.path_data("drug")
    assert {"observed", "synthetic", "gap", "gap_per_area", "role"} <= set(data.columns)
    assert res.placebo_gaps("drug").shape == (len(site.periods), 10)


def test_catchment_target_detects_displacement(city):
    site, _ = city
    res = SyntheticControl(
        site, target="catchment", outcomes=["drug"], sided="greater", n_jobs=1
    ).fit()
    row = res.effects().query("window == 'post'").iloc[0]
    # +50% in expectation on three Poisson catchment areas: the estimate is +63% with
    # SDID's full ridge and +67% with the default light ridge (sc_ridge = 0.3).
    assert row["pct_change"] == pytest.approx(0.5, abs=0.2)
    assert row["p_value"] < 0.05
    assert res.p_value("drug", sided="lower") > 0.5
    assert "greater" in row["method"]


def test_sc_placebo_inference_is_calibrated():
    """Over simulated cities, the 90% placebo interval covers the truth about 90% of
    the time and the one-sided test rarely rejects for an outcome without effect
    (40 cities of 150 areas: coverage 0.90, size 0.05, power 0.97; here 20 cities of
    100 areas: 20/20 covered, 2 false positives, 20 detected)."""
    n, covered, false_pos, detected = 20, 0, 0, 0
    for seed in range(100, 100 + n):
        site, true_cf = simulate_city(seed=seed, n_areas=100)
        res = SyntheticControl(site, n_jobs=1, leave_one_out=False, placebo_time=False).fit()
        eff = res.effects().query("window == 'post'").set_index("outcome")
        truth = eff.loc["drug", "observed"] / true_cf - 1
        covered += eff.loc["drug", "ci_low"] <= truth <= eff.loc["drug", "ci_high"]
        false_pos += eff.loc["violent", "p_value"] < 0.05
        detected += eff.loc["drug", "p_value"] < 0.05
    assert covered >= 16
    assert false_pos <= 4
    assert detected >= 18
