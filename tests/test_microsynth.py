"""Micro-level synthetic control: calibration core, simulations with known truth,
the Seattle DMI published results, determinism of the permutation test, plots."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from dmi_eval.config import parse_study
from dmi_eval.designs.microsynth import MicroSynth, fit_microsynth
from dmi_eval.designs.microsynth.calibration import (
    calibrate,
    grake_linear,
    independent_columns,
    pre_period_blocks,
)
from dmi_eval.errors import DesignError
from dmi_eval.panel import Panel
from dmi_eval.results import EFFECT_COLUMNS

# ---------------------------------------------------------------------------
# calibration core


def _problem(seed: int = 0, n: int = 400, p: int = 6):
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(n), rng.poisson(3.0, size=(n, p - 1))]).astype(float)
    treated = np.zeros(n, dtype=bool)
    treated[rng.choice(n, 10, replace=False)] = True
    return x, treated


def test_grake_linear_balances_and_has_calibration_form():
    x, treated = _problem()
    xc, t = x[~treated], x[treated].sum(axis=0)
    d = np.full(len(xc), treated.sum() / len(xc))
    w, iters, worst, ok = grake_linear(xc, t, d, epsilon=1e-10, maxit=100)
    assert ok and worst < 1e-10 and iters >= 1
    np.testing.assert_allclose(w @ xc, t, rtol=1e-9)
    assert (w >= 0).all()
    # w_i = d (1 + x_i'eta)_+ : on the positive weights, w/d - 1 is linear in x
    pos = w > 0
    eta, *_ = np.linalg.lstsq(xc[pos], w[pos] / d[pos] - 1, rcond=None)
    np.testing.assert_allclose(xc[pos] @ eta, w[pos] / d[pos] - 1, atol=1e-8)


def test_collinear_constraint_is_dropped_and_balance_still_exact():
    x, treated = _problem(1)
    x = np.column_stack([x, x[:, 1] + x[:, 2]])  # last column = sum of two earlier ones
    assert independent_columns(x[~treated]).tolist() == [True] * 6 + [False]
    fit = calibrate(x, treated, epsilon=1e-8)
    assert fit.method == "exact" and not fit.kept[-1]
    np.testing.assert_allclose(fit.weights[~treated] @ x[~treated], x[treated].sum(0), rtol=1e-6)


def test_infeasible_balance_uses_documented_fallback():
    x, treated = _problem(2)
    x[treated, 3] = 50.0  # treated covariate far above every control: exact balance impossible
    names = ["Intercept", "a", "b", "c", "y.1", "y.2"]
    fit = calibrate(x, treated, names=names, totals=[(4, 5)], maxit=50)
    assert fit.method == "fallback"
    assert "fallback" in fit.message
    assert fit.exact_names == ("Intercept", "y.total")
    w = fit.weights[~treated]
    assert (w >= -1e-12).all()
    t = x[treated].sum(0)
    assert w.sum() == pytest.approx(t[0], rel=1e-6)  # intercept exact
    assert w @ (x[~treated, 4] + x[~treated, 5]) == pytest.approx(t[4] + t[5], rel=1e-5)


def test_pre_period_blocks_run_back_from_last_pre_period():
    assert pre_period_blocks(7, "blocks", 3) == [(4, 7), (1, 4), (0, 1)]
    assert pre_period_blocks(3, "each") == [(2, 3), (1, 2), (0, 1)]
    assert pre_period_blocks(5, "total") == [(0, 5)]


# ---------------------------------------------------------------------------
# simulation with known truth


def _simulate(effect: float, seed: int, n_areas: int = 240, n_treated: int = 6):
    """Counts with area rates x common monthly factor; treated areas x (1+effect) after."""
    rng = np.random.default_rng(seed)
    periods = pd.period_range("2018-01", periods=24, freq="M")
    areas = pd.Index([f"A{i:03d}" for i in range(n_areas)])
    base = rng.gamma(2.0, 3.0, size=n_areas)
    base[:n_treated] = rng.uniform(8, 12, size=n_treated)
    season = 1 + 0.3 * np.sin(np.arange(24) / 12 * 2 * np.pi)
    mu = base[:, None] * season[None, :]
    mu2 = 0.5 * mu
    post = np.arange(24) >= 13  # call-in 2019-01-xx (period 12) is the transition
    mu_t = mu.copy()
    mu_t[:n_treated, post] *= 1 + effect
    counts = {"drug": rng.poisson(mu_t), "violent": rng.poisson(mu2)}
    cov = pd.DataFrame({"pop": base * 100 + rng.normal(0, 5, n_areas)}, index=areas)
    panel = Panel(frequency="month", periods=periods, areas=areas, counts=counts, covariates=cov)
    study = parse_study(
        {
            "study": {"name": "sim", "frequency": "month"},
            "data": {"counts": "counts.csv"},
            "sites": [
                {
                    "id": "east",
                    "intervention": "2019-01-15",
                    "treated_areas": list(areas[:n_treated]),
                    "catchment_areas": list(areas[n_treated : n_treated + 3]),
                    "outcomes": ["drug", "violent"],
                    "primary_outcome": "drug",
                }
            ],
        },
        file=Path("study.toml"),
    )
    expected = mu[:n_treated][:, post].sum()
    return panel.site_data(study, "east"), expected


def test_site_fit_recovers_known_reduction_and_balances_pre_period():
    sd, expected = _simulate(effect=-0.4, seed=0)
    res = MicroSynth(sd, match_periods="blocks", block_length=3).fit()
    eff = res.effects()
    assert list(eff.columns) == list(EFFECT_COLUMNS)
    assert set(eff["window"]) == {"post", "last6"}
    assert (eff["design"] == "microsynth").all()
    drug = eff[(eff["outcome"] == "drug") & (eff["window"] == "post")].iloc[0]
    # the synthetic control estimates the no-intervention expectation
    assert drug["counterfactual"] == pytest.approx(expected, rel=0.12)
    assert drug["pct_change"] == pytest.approx(-0.4, abs=0.1)
    assert drug["ci_low"] < -0.4 < drug["ci_high"] < 0  # interval covers the truth
    assert res.p_value_lower("drug") < 0.01
    # exact balance on the pre-period blocks and the covariate
    bal = res.balance[res.balance["used"]]
    np.testing.assert_allclose(bal["synthetic"], bal["target"], rtol=1e-3)
    plot = res.get_plot_data("drug")
    pre = plot["role"] == "pre"
    assert plot.loc[pre, "counterfactual"].sum() == pytest.approx(
        plot.loc[pre, "observed"].sum(), rel=1e-3
    )
    assert "one-sided lower" in eff["method"].iloc[0] and "90%" in eff["method"].iloc[0]
    # its detectable reduction is stated at mde_alpha (the site path passes the verdict's alpha)
    strict = MicroSynth(sd, match_periods="blocks", block_length=3, mde_alpha=0.01).fit()
    mde = {
        r.mde_alpha: r.diagnostics.set_index("outcome").loc["drug", "mde"] for r in (res, strict)
    }
    assert 0 < mde[0.05] < mde[0.01] < 1


def test_estimates_unbiased_and_intervals_cover_over_replications():
    pct, cover_drug, cover_violent = [], [], []
    for seed in range(12):
        sd, _ = _simulate(effect=-0.4, seed=100 + seed)
        eff = (
            MicroSynth(sd, match_periods="blocks").fit().effects().set_index(["outcome", "window"])
        )
        d, v = eff.loc[("drug", "post")], eff.loc[("violent", "post")]
        pct.append(d["pct_change"])
        cover_drug.append(d["ci_low"] < -0.4 < d["ci_high"])
        cover_violent.append(v["ci_low"] < 0 < v["ci_high"])
    assert np.mean(pct) == pytest.approx(-0.4, abs=0.04)
    # nominal 90%: 12 replications, allow up to 3 misses each
    assert sum(cover_drug) >= 9 and sum(cover_violent) >= 9


def test_permutation_and_jackknife_on_site_null_effect():
    sd, _ = _simulate(effect=0.0, seed=5)
    res = MicroSynth(
        sd,
        match_periods="blocks",
        block_length=6,
        n_permutations=30,
        jackknife=True,
        seed=11,
        sided="two-sided",
        level=0.95,
    ).fit()
    assert res.placebos["exact"].mean() > 0.8
    assert res.primary == "permutation"
    assert set(res.methods) == {"linearization", "jackknife", "permutation"}
    eff = res.effects()
    assert "two-sided" in eff["method"].iloc[0] and "95%" in eff["method"].iloc[0]
    drug = eff[(eff["outcome"] == "drug") & (eff["window"] == "post")].iloc[0]
    assert drug["p_value"] > 0.05 and drug["ci_low"] < 0 < drug["ci_high"]
    perm = res.get_permutation_data("drug")
    assert (perm["kind"] == "placebo").sum() == 30
    p = res.p_value_lower("drug", method="permutation")
    obs = perm["statistic"].iloc[0]
    usable = res.placebos.query("outcome == 'drug' and window == 'post'")["exact"].to_numpy()
    placebo_stats = perm["statistic"].iloc[1:][usable]
    # a rank test counts the observed set (+1): never 0
    assert p == pytest.approx((1 + np.sum(placebo_stats <= obs)) / (1 + placebo_stats.size))
    upper = float(
        res.inference.query("method == 'permutation' and outcome == 'drug'")["p_upper"].iloc[0]
    )
    assert upper == pytest.approx((1 + np.sum(placebo_stats >= obs)) / (1 + placebo_stats.size))
    assert res.diagnostics.set_index("outcome").loc["drug", "min_p"] == pytest.approx(
        1 / (1 + placebo_stats.size)
    )
    jk = res.effects("jackknife")
    assert jk["ci_low"].notna().all()
    # the permutation test's detectable reduction too
    strict = dataclasses.replace(res, mde_alpha=0.01)
    at = {r.mde_alpha: r.diagnostics.set_index("outcome").loc["drug", "mde"] for r in (res, strict)}
    assert res.mde_alpha == 0.05 and at[0.01] > at[0.05]


def test_options_checked_on_entry():
    sd, _ = _simulate(effect=0.0, seed=1, n_areas=40)
    with pytest.raises(ValueError, match="match_periods"):
        MicroSynth(sd, match_periods="weekly")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sided"):
        MicroSynth(sd, sided="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        MicroSynth(sd, n_permutations=10)
    with pytest.raises(ValueError, match="level"):
        MicroSynth(sd, level=1.5)
    with pytest.raises(DesignError, match="covariates"):
        MicroSynth(sd, covariates=["income"]).fit()


def test_fit_does_not_mutate_inputs_and_results_are_frozen():
    rng = np.random.default_rng(0)
    units = [f"u{i}" for i in range(60)]
    frame = pd.DataFrame(rng.poisson(4, size=(60, 8)), index=units, columns=range(1, 9))
    before = frame.copy()
    res = fit_microsynth({"y": frame}, units[:3], [1, 2, 3, 4, 5], {"post": [6, 7, 8]})
    pd.testing.assert_frame_equal(frame, before)
    with pytest.raises(AttributeError):
        res.level = 0.5  # type: ignore[misc]
    assert res.calibration["method"] in {"exact", "fallback"}
    assert res.notes  # three treated units: the few-treated warning is in the notes


# ---------------------------------------------------------------------------
# Seattle DMI (published numbers; microsynth vignette example 1)


@pytest.fixture(scope="module")
def seattle(reference_dir):
    from dmi_eval.validation.microsynth_cases import load_seattle

    return load_seattle(reference_dir)


@pytest.mark.reference
def test_seattle_example1_matches_published(seattle):
    counts, cov, treated = seattle
    res = fit_microsynth(
        counts, treated, list(range(1, 13)), {"post": [13, 14, 15, 16]}, covariates=cov
    )
    est = res.estimates.set_index("outcome")
    assert est.loc["i_felony", "synthetic"] == pytest.approx(68.22, abs=0.005)
    assert est.loc["any_crime", "synthetic"] == pytest.approx(986.44, abs=0.005)
    assert res.calibration["n_constraints"] == 58
    assert res.p_value_lower("i_misdemea") == pytest.approx(0.0019, abs=5e-5)
    eff = res.effects().set_index("outcome")
    assert eff.loc["i_drugs", "ci_low"] == pytest.approx(-0.464, abs=5e-4)
    assert eff.loc["i_drugs", "ci_high"] == pytest.approx(0.321, abs=5e-4)
    share = res.calibration["nonzero_weights"] / (len(res.weights) - len(treated))
    assert 0.01 < share < 0.03  # "only about 2% of the control blocks get non-zero weight"


def test_permutations_deterministic_for_a_seed_however_many_workers():
    sd, _ = _simulate(effect=-0.2, seed=4, n_areas=150)
    opts = dict(match_periods="blocks", block_length=4, n_permutations=12, jackknife=True)
    one = MicroSynth(sd, seed=7, n_jobs=1, **opts).fit()
    two = MicroSynth(sd, seed=7, n_jobs=2, **opts).fit()
    pd.testing.assert_frame_equal(one.placebos, two.placebos)
    pd.testing.assert_frame_equal(one.inference, two.inference)
    again = MicroSynth(sd, seed=7, n_jobs=1, **opts).fit()
    pd.testing.assert_frame_equal(one.inference, again.inference)
    other = MicroSynth(sd, seed=8, n_jobs=1, **opts).fit()
    assert not np.allclose(other.placebos["statistic"], one.placebos["statistic"])


@pytest.mark.reference
def test_site_level_model_reproduces_seattle(seattle):
    """Seattle as a DMI site (quarters 2010Q1-2013Q4, call-in 2013-01-01, transition "post")."""
    counts, cov, treated = seattle
    areas = pd.Index([str(i) for i in counts["i_felony"].index])
    panel = Panel(
        frequency="quarter",
        periods=pd.period_range("2010Q1", periods=16, freq="Q"),
        areas=areas,
        counts={o: c.to_numpy() for o, c in counts.items()},
        covariates=cov.set_axis(areas),
    )
    study = parse_study(
        {
            "study": {"name": "Seattle", "frequency": "quarter", "transition": "post"},
            "data": {"counts": "counts.csv"},
            "sites": [
                {
                    "id": "seattle",
                    "intervention": "2013-01-01",
                    "treated_areas": [str(t) for t in treated],
                    "outcomes": list(counts),
                    "primary_outcome": "i_drugs",
                }
            ],
        },
        file=Path("study.toml"),
    )
    res = MicroSynth(panel.site_data(study, "seattle"), last_k=2).fit()
    eff = res.effects().set_index(["outcome", "window"])
    assert eff.loc[("i_misdemea", "post"), "counterfactual"] == pytest.approx(71.80, abs=0.005)
    assert eff.loc[("any_crime", "post"), "p_value"] == pytest.approx(0.0146, abs=5e-5)
    assert eff.loc[("i_felony", "post"), "ci_high"] == pytest.approx(-0.084, abs=5e-4)
    assert res.p_value_lower("i_drugs") == pytest.approx(0.2559, abs=5e-5)


# ---------------------------------------------------------------------------
# plots


def test_permutation_plot_marks_the_observed_statistic():
    from dmi_eval.plots.microsynth import plot_microsynth_permutation

    sd, _ = _simulate(effect=-0.3, seed=2, n_areas=80)
    res = MicroSynth(sd, match_periods="total", n_permutations=8, seed=1).fit()
    fig, ax = plot_microsynth_permutation(res, outcome="drug")
    obs = res.get_permutation_data("drug")["statistic"].iloc[0]
    assert ax.lines[0].get_xdata()[0] == pytest.approx(obs)
    plt.close(fig)


def test_small_pool_uses_every_placebo_set_once():
    rng = np.random.default_rng(1)
    units = [f"u{i}" for i in range(8)]
    frame = pd.DataFrame(rng.poisson(20, (8, 6)), index=units, columns=range(6))
    res = fit_microsynth(
        {"y": frame},
        ["u0", "u1"],
        [0, 1, 2],
        {"post": [3, 4, 5]},
        match_periods="total",
        n_permutations=100,
        seed=1,
    )
    assert res.n_permutations == 27  # C(8, 2) - 1
    assert any("exact permutation test" in n for n in res.notes)
    assert any("cannot reach p < 0.05" in n for n in res.notes)
