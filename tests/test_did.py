"""DID / event study / stacked event study: simulations with known truth, Prop 99."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmi_eval.config import parse_study
from dmi_eval.designs.did import DID, fit_fe
from dmi_eval.errors import DesignError
from dmi_eval.panel import Panel
from dmi_eval.results import EFFECT_COLUMNS
from dmi_eval.stacked import stacked_event_study


# ---------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------
def build(counts: np.ndarray, sites: list[dict], *, start: str = "2016-01", transition="exclude"):
    """Panel and Study from an areas x periods count array (areas A000, A001, ...)."""
    n_areas, n_periods = counts.shape
    areas = pd.Index([f"A{i:03d}" for i in range(n_areas)])
    periods = pd.period_range(start, periods=n_periods, freq="M")
    panel = Panel(frequency="month", periods=periods, areas=areas, counts={"drug": counts})
    raw = {
        "study": {"name": "test", "frequency": "month", "transition": transition},
        "data": {"counts": "counts.csv"},
        "sites": [
            {
                "id": s["id"],
                "name": s["id"],
                "intervention": s["intervention"],
                "treated_areas": [areas[i] for i in s["treated"]],
                "catchment_areas": [areas[i] for i in s.get("catchment", [])],
                "outcomes": ["drug"],
                "primary_outcome": "drug",
            }
            for s in sites
        ],
    }
    return panel, parse_study(raw, file=Path("study.toml"))


def simulate_site(
    seed: int,
    *,
    effect: float = 0.0,
    n_areas: int = 80,
    n_treated: int = 6,
    n_periods: int = 48,
    call_in: int = 30,
    pretrend: float = 0.0,
    base: float = 4.0,
    catchment: tuple[int, ...] = (),
):
    """Poisson counts with area and period effects and log-normal noise.

    Treated areas are 0..n_treated-1; their post-period mean is multiplied by
    ``1 + effect``; ``pretrend`` adds a treated-only linear trend in log rate
    (per period, before and after the call-in).
    """
    rng = np.random.default_rng(seed)
    a = rng.normal(np.log(base), 0.4, n_areas)
    g = np.cumsum(rng.normal(0, 0.03, n_periods)) + 0.1 * np.sin(np.arange(n_periods) / 2)
    log_mu = a[:, None] + g[None, :] + rng.normal(0, 0.05, (n_areas, n_periods))
    t = np.arange(n_periods)
    log_mu[:n_treated] += pretrend * (t - call_in)[None, :]
    post = t > call_in
    log_mu[:n_treated, post] += np.log1p(effect)
    counts = rng.poisson(np.exp(log_mu))
    start = pd.Period("2016-01", freq="M")
    date = (start + call_in).start_time.date() + pd.Timedelta(days=14)
    sites = [
        {
            "id": "site",
            "intervention": date.isoformat(),
            "treated": list(range(n_treated)),
            "catchment": list(catchment),
        }
    ]
    panel, study = build(counts, sites)
    return panel.site_data(study, "site"), counts


# ---------------------------------------------------------------------------
# numeric core
# ---------------------------------------------------------------------------
def test_poisson_fe_matches_statsmodels_glm_with_dummies():
    import statsmodels.api as sm

    rng = np.random.default_rng(1)
    n, T = 25, 10
    a = rng.normal(0, 0.5, n)
    g = rng.normal(0, 0.2, T)
    d = (np.arange(n) < 5)[:, None] & (np.arange(T) >= 6)[None, :]
    y = rng.poisson(np.exp(1 + a[:, None] + g[None, :] - 0.4 * d) * rng.gamma(2, 0.5, (n, T)))
    ent = np.repeat(np.arange(n), T)
    tim = np.tile(np.arange(T), n)
    X = pd.DataFrame({"d": d.ravel().astype(float)})
    ours = fit_fe(y.ravel(), ent, tim, X)
    dummies = pd.get_dummies(
        pd.DataFrame({"e": ent.astype(str), "t": tim.astype(str)}), drop_first=True
    ).astype(float)
    glm = sm.GLM(
        y.ravel(), sm.add_constant(pd.concat([X, dummies], axis=1)), family=sm.families.Poisson()
    ).fit(cov_type="cluster", cov_kwds={"groups": ent, "use_correction": False})
    assert ours.converged
    assert ours.params[0] == pytest.approx(glm.params["d"], abs=1e-8)
    # our sandwich carries the G/(G-1) small-sample factor
    assert np.sqrt(ours.cov[0, 0]) == pytest.approx(glm.bse["d"] * np.sqrt(n / (n - 1)), rel=1e-6)


def test_prop99_twfe_did_matches_arkhangelsky(reference_dir):
    df = pd.read_csv(reference_dir / "prop99.csv")
    treated = (df["state_name"] == "California") & (df["year"] >= 1989)
    fit = fit_fe(
        df["cigsale"].to_numpy(),
        df["state_name"],
        df["year"],
        pd.DataFrame({"d": treated.astype(float).to_numpy()}),
        model="level",
    )
    # Arkhangelsky et al. (2021) Table 1: DID -27.3 (synthdid: -27.35)
    assert fit.params[0] == pytest.approx(-27.35, abs=0.005)


# ---------------------------------------------------------------------------
# site design
# ---------------------------------------------------------------------------
def test_known_percent_effect_recovered():
    sd, counts = simulate_site(11, effect=-0.4)
    res = DID(sd, seed=3).fit()
    eff = res.effects()
    assert list(eff.columns) == list(EFFECT_COLUMNS)
    assert set(eff["window"]) == {"post", "last6"}
    assert (eff["design"] == "did").all()
    for _, row in eff.iterrows():
        assert row["ci_low"] < -0.4 < row["ci_high"]
        assert row["pct_change"] == pytest.approx(-0.4, abs=0.08)
        # beyond every placebo area: the smallest equal-tailed two-sided p a rank test over
        # ~75 areas allows, twice the one-sided 1/(n + 1)
        assert row["p_value"] < 0.03
        assert row["effect"] == pytest.approx(row["observed"] - row["counterfactual"])
        assert row["pct_change"] == pytest.approx(row["observed"] / row["counterfactual"] - 1)
        assert "two-sided" in row["method"] and "95%" in row["method"]
    post = eff.set_index("window").loc["post"]
    assert post["observed"] == counts[:6, 31:].sum()  # treated areas, periods after the call-in
    assert res.p_value_lower("drug") < 0.02
    # event study: post coefficients near log(0.6), leads near 0, no pre-trend flagged
    es = res.event_study()
    lags = es[(es["event_time"] >= 1) & (es["event_time"] < 12)]["estimate"].mean()
    leads = es[(es["event_time"] > -12) & (es["event_time"] <= -1)]["estimate"].mean()
    assert lags - leads == pytest.approx(np.log(0.6), abs=0.2)
    assert res.pretrend_test()["p_value"] > 0.05


def test_pretrend_detected_and_cluster_inference():
    sd, _ = simulate_site(5, effect=0.0, pretrend=0.03)
    for inference in ("placebo", "cluster"):
        res = DID(sd, inference=inference, seed=1).fit()
        assert res.pretrend_test()["p_value"] < 0.01, inference


def test_no_effect_coverage_sanity():
    covered = []
    for seed in range(6):
        sd, _ = simulate_site(100 + seed, effect=0.0, n_areas=60, n_periods=36, call_in=20)
        row = DID(sd, seed=seed, event_study=False).fit().effects().iloc[0]
        covered.append(row["ci_low"] <= 0.0 <= row["ci_high"])
    assert sum(covered) >= 5


def test_transition_period_and_catchment_are_left_out():
    sd, counts = simulate_site(7, effect=-0.3, catchment=(6, 7))
    spiked = counts.copy()
    spiked[:, 30] *= 50  # the call-in month (transition, excluded)
    spiked[6:8, :] = spiked[6:8, :] * np.arange(48)  # catchment areas: wild, never compared
    panel2 = Panel(
        frequency="month", periods=sd.periods, areas=sd.panel.areas, counts={"drug": spiked}
    )
    study = sd.site
    a = DID(sd, seed=0, event_study=False).fit().effects()
    sd2 = dataclasses.replace(sd, panel=panel2)
    assert sd2.site is study
    b = DID(sd2, seed=0, event_study=False).fit().effects()
    np.testing.assert_allclose(a["pct_change"], b["pct_change"], rtol=1e-8)
    np.testing.assert_allclose(a["ci_low"], b["ci_low"], rtol=1e-8)


def test_window_without_events_is_minus_100_percent():
    sd, counts = simulate_site(12, effect=-0.5)
    zeroed = counts.copy()
    zeroed[:6, -6:] = 0  # the market is gone in the last six months
    panel = Panel(
        frequency="month", periods=sd.periods, areas=sd.panel.areas, counts={"drug": zeroed}
    )
    sd0 = dataclasses.replace(sd, panel=panel)
    res = DID(sd0, seed=0).fit()
    last = res.window_effect("drug", "last6")
    assert last.observed == 0 and last.pct_change == -1.0
    assert last.ci_low == -1.0 < last.ci_high < 0
    # beyond every placebo area: the smallest one-sided p, and twice it two-sided (equal-tailed)
    assert last.p_lower == last.min_p and last.p_value == pytest.approx(2 * last.min_p)
    post = res.window_effect("drug", "post")
    assert -1.0 < post.pct_change < -0.5
    cluster = DID(sd0, inference="cluster", event_study=False).fit()
    assert np.isnan(cluster.window_effect("drug", "last6").p_value)


def _with_market_counts(sd, counts, cells):
    """``sd`` with the market's (areas 0-5) counts set to zero in the periods ``cells``."""
    zeroed = counts.copy()
    zeroed[:6, cells] = 0
    panel = Panel(
        frequency="month", periods=sd.periods, areas=sd.panel.areas, counts={"drug": zeroed}
    )
    return dataclasses.replace(sd, panel=panel)


def test_event_bins_without_market_incidents_are_not_estimable_and_the_rest_are():
    """A Poisson event-time bin the market has no incidents in has its MLE at -inf; the
    design must not fail (it once dropped DID at about 5% of weekly calibration markets)."""
    sd, counts = simulate_site(12, effect=-0.3)
    res = DID(_with_market_counts(sd, counts, [27, 33]), seed=0).fit()  # e-3 and e+3
    ev = res.event_study("drug").set_index("event_time")
    assert np.isnan(ev.loc[[-3, 3], "estimate"]).all()
    assert (ev.loc[[-3, 3], "treated_count"] == 0).all()
    others = ev.drop(index=[-3, 3, -1])
    assert np.isfinite(others["estimate"]).all() and np.isfinite(others["p_value"]).all()
    full = DID(sd, seed=0).fit().event_study("drug").set_index("event_time")
    # the other bins are estimated as before, near the same values (a -inf bin's cells out)
    assert np.allclose(others["estimate"], full.drop(index=[-3, 3, -1])["estimate"], atol=0.15)
    assert np.isfinite(res.pretrend_test("drug")["p_value"])  # from the estimable leads
    assert np.isfinite(res.window_effect("drug", "post").pct_change)


def test_a_reference_period_without_market_incidents_leaves_only_the_event_study_out():
    from dmi_eval.plots.did import event_study_caption, plot_event_study

    sd, counts = simulate_site(12, effect=-0.3)
    res = DID(_with_market_counts(sd, counts, [29]), seed=0).fit()  # event time -1
    ev = res.event_study("drug")
    assert ev.loc[ev["event_time"] == -1, "estimate"].item() == 0.0
    assert np.isnan(ev.loc[ev["event_time"] != -1, "estimate"]).all()
    assert np.isnan(res.pretrend_test("drug")["p_value"])
    post = res.window_effect("drug", "post")
    assert np.isfinite(post.pct_change) and post.ci_low < post.pct_change < post.ci_high
    assert len(res.series) == len(ev)
    fig, ax = plot_event_study(res)
    assert "none could be estimated" in event_study_caption(res)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_linear_models_and_last_k():
    sd, _ = simulate_site(21, effect=-0.4, base=20.0)
    for model in ("level", "log1p"):
        res = DID(sd, model=model, last_k=3).fit()
        eff = res.effects().set_index("window")
        assert res.inference == "cluster"
        assert list(eff.index) == ["post", "last3"]
        assert eff.loc["post", "pct_change"] == pytest.approx(-0.4, abs=0.08)
        assert (
            eff.loc["post", "ci_low"] < eff.loc["post", "pct_change"] < eff.loc["post", "ci_high"]
        )


def test_same_seed_same_numbers_and_read_only():
    sd, _ = simulate_site(3, effect=-0.2)
    a = DID(sd, seed=9).fit()
    b = DID(sd, seed=9).fit()
    pd.testing.assert_frame_equal(a.effects(), b.effects())
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.level = 0.9  # type: ignore[misc]


def test_bad_options_and_too_few_pre_periods():
    sd, _ = simulate_site(3)
    with pytest.raises(ValueError, match="model"):
        DID(sd, model="ols")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="placebo"):
        DID(sd, model="level", inference="placebo")
    with pytest.raises(ValueError, match="last_k"):
        DID(sd, last_k=0)
    # Too few pre periods is caught when the site's view is built, before any design.
    with pytest.raises(DesignError, match="the designs need at least 8"):
        simulate_site(3, call_in=1)


def test_plot_event_study():
    from dmi_eval.plots.did import plot_event_study

    sd, _ = simulate_site(2, effect=-0.3)
    res = DID(sd, seed=0).fit()
    data = res.event_plot_data()
    assert {"event_time", "estimate", "ci_low", "ci_high", "reference"} <= set(data.columns)
    assert data.loc[data["event_time"] == -1, "estimate"].item() == 0.0
    fig, ax = plot_event_study(res)
    assert ax.get_title().startswith("site: drug")
    import matplotlib.pyplot as plt

    plt.close(fig)


# ---------------------------------------------------------------------------
# cross-site stacked event study vs naive TWFE
# ---------------------------------------------------------------------------
def _staggered(
    seed: int,
    calls: tuple[int, ...] = (12, 30, 48),
    slopes: tuple[float, ...] = (0.05, 0.03, 0.01),
):
    """Cohorts (sites; three by default) with effects that grow with event time at different
    speeds.

    Log effect of cohort c at event time k > 0: ``-slope_c * k``.
    """
    rng = np.random.default_rng(seed)
    n_per, n_ctrl, T = 8, 24, 72
    n = len(calls) * n_per + n_ctrl
    a = rng.normal(np.log(30), 0.3, n)
    g = np.cumsum(rng.normal(0, 0.02, T))
    log_mu = a[:, None] + g[None, :]
    truth_cells = []
    for c, (call, slope) in enumerate(zip(calls, slopes, strict=True)):
        rows = slice(c * n_per, (c + 1) * n_per)
        k = np.arange(T) - call
        eff = np.where(k > 0, -slope * k, 0.0)
        log_mu[rows] += eff[None, :]
        truth_cells.append(eff[k > 0])
    counts = rng.poisson(np.exp(log_mu))
    sites = [
        {
            "id": f"c{c}",
            "intervention": (pd.Period("2016-01", freq="M") + call).start_time.date().isoformat(),
            "treated": list(range(c * n_per, (c + 1) * n_per)),
        }
        for c, call in enumerate(calls)
    ]
    panel, study = build(counts, sites)
    # truths: stacked average over k = 1..12 (equal-sized cohorts); ATT over all treated post cells
    stacked_truth = -np.mean(slopes) * np.mean(np.arange(1, 13))
    att = float(np.mean(np.concatenate(truth_cells)))
    return panel, study, counts, calls, n_per, stacked_truth, att, slopes


def test_stacked_recovers_truth_where_naive_twfe_is_biased():
    panel, study, counts, calls, n_per, stacked_truth, att, slopes = _staggered(4)
    res = stacked_event_study(panel, study, window=(-6, 12))
    avg = res.average_post["estimate"]
    assert avg == pytest.approx(stacked_truth, abs=0.03)
    es = res.event_study().set_index("event_time")
    ks = np.arange(1, 13)
    slope = np.polyfit(ks, es.loc[ks, "estimate"].to_numpy(), 1)[0]
    assert slope == pytest.approx(-np.mean(slopes), abs=0.01)
    # three sites: too few for inference by site (the estimate stands, no p-value)
    assert np.isnan(res.pretrend_test()["p_value"]) and np.isnan(res.average_post["p_value"])
    assert "already-treated" in res.describe() and "3 sites" in res.describe()
    # naive static TWFE on every area with already-treated areas as controls
    n, T = counts.shape
    treated_post = np.zeros((n, T), dtype=bool)
    for c, call in enumerate(calls):
        treated_post[c * n_per : (c + 1) * n_per, call + 1 :] = True
    keep = np.ones((n, T), dtype=bool)
    for call in calls:
        keep[:, call] = False  # transition periods, as in the stacked fit
    naive = fit_fe(
        counts[keep],
        np.repeat(np.arange(n), T).reshape(n, T)[keep],
        np.tile(np.arange(T), n).reshape(n, T)[keep],
        pd.DataFrame({"d": treated_post[keep].astype(float)}),
    )
    # the naive coefficient is far from the ATT it claims to estimate
    assert abs(naive.params[0] - att) > 0.25


def test_stacked_controls_exclude_catchments_and_other_sites():
    sd, counts = simulate_site(8, effect=-0.3, catchment=(6, 7, 8))
    res = stacked_event_study(sd.panel, _study_of(sd), window=(-4, 4))
    assert res.n_controls == 80 - 6 - 3
    assert dict(res.sites) == {"site": "drug"}


def _study_of(site_data):
    raw = {
        "study": {"name": "t", "frequency": "month"},
        "data": {"counts": "counts.csv"},
        "sites": [
            {
                "id": site_data.site.id,
                "intervention": site_data.site.intervention.isoformat(),
                "treated_areas": list(site_data.treated_areas),
                "catchment_areas": list(site_data.catchment_areas),
                "outcomes": ["drug"],
            }
        ],
    }
    return parse_study(raw, file=Path("study.toml"))


def test_stacked_inference_is_by_site_with_a_wild_bootstrap():
    calls = (12, 20, 28, 36, 44, 52)
    panel, study, *_ = _staggered(4, calls=calls, slopes=(0.0,) * 6)
    res = stacked_event_study(panel, study, window=(-6, 12), n_boot=999)
    assert res.inference == "wild" and "wild cluster bootstrap by site" in res.method()
    infl = res.fit.influence
    assert infl.shape[0] == 6  # one row per site: treatment is assigned by site
    # the cluster-robust covariance by site is the sum of the sites' influences
    ok = np.isfinite(res.fit.params)
    np.testing.assert_allclose(
        res.fit.cov[np.ix_(ok, ok)], (infl.T @ infl * 6 / 5)[np.ix_(ok, ok)], rtol=1e-8
    )
    avg = res.average_post
    assert 0 < avg["p_lower"] <= 1 and 0 < avg["p_upper"] <= 1
    assert avg["p_lower"] + avg["p_upper"] >= 1  # each tail counted
    # no effect anywhere: the by-site test does not reject, and the interval covers 0
    assert avg["p_value"] > 0.05 and avg["ci_low"] < 0 < avg["ci_high"]
    assert res.pretrend_test()["p_value"] > 0.05
    # the text says which tail and what the pre-trend statistic is, with its own p
    text = res.describe()
    assert f"two-sided p = {avg['p_value']:.3f}" in text
    pt = res.pretrend_test()
    assert f"squared bootstrap z-scores sum to {pt['stat']:.2f}" in text
    assert f"wild-bootstrap p = {pt['p_value']:.3f}" in text


def test_stacked_with_one_site_says_it_cannot_be_estimated():
    sd, _ = simulate_site(8, effect=-0.3)
    res = stacked_event_study(sd.panel, _study_of(sd), window=(-4, 4))
    assert np.isnan(res.average_post["p_value"]) and np.isnan(res.average_post["ci_low"])
    assert "cannot be estimated" in res.describe()
    assert res.event_study()["p_value"].isna().all()


def test_wild_cluster_bootstrap_enumerates_and_counts_tails():
    from dmi_eval.inference.wild import WEBB_WEIGHTS, wild_cluster_bootstrap

    assert WEBB_WEIGHTS.mean() == pytest.approx(0) and np.mean(WEBB_WEIGHTS**2) == pytest.approx(1)
    c = np.array([0.1, -0.05, 0.2])
    boot = wild_cluster_bootstrap(0.5, c, n_boot=9999)
    assert boot.enumerated and boot.draws.size == 216
    assert boot.se == pytest.approx(np.sqrt(np.sum(c**2)), rel=1e-9)
    lower, upper, two = boot.p_values()
    assert lower == 1.0 and upper == pytest.approx(1 / 217) and two == pytest.approx(1 / 217)
    with pytest.raises(ValueError, match="at least 2"):
        wild_cluster_bootstrap(0.5, c[:1])


def test_placebo_studentisation_uses_each_groups_own_dispersion():
    from dmi_eval.designs.did.inference import (
        _calibrated,
        _dispersions,
        _draw_placebos,
        _log_ratio,
        _placebo_window,
    )

    rng = np.random.default_rng(12)
    T, pre = 60, np.arange(36)
    w = np.arange(36, 60)
    # a busy, over-dispersed market (3 areas at 10 a month, gamma-Poisson phi = 0.15) and
    # 60 quiet comparison areas: a pure-Poisson SE understates the market's noise ~2x
    treated = rng.poisson(10 * rng.gamma(1 / 0.15, 0.15, (3, T)))
    controls = rng.poisson(rng.uniform(0.3, 3, (60, 1)) * np.ones((1, T)))
    pl = _draw_placebos(treated, controls, 200, rng)
    phi = _dispersions(pl, pre)
    assert phi[0] > 1.5 and np.median(phi[1]) < 1.3
    t_pois, se_pois, _ = _placebo_window(pl, w, pre)
    t_rob, se_rob, t_pl = _placebo_window(pl, w, pre, phi)
    assert se_rob == pytest.approx(se_pois * np.sqrt(phi[0]))
    assert t_rob == pytest.approx(t_pois / np.sqrt(phi[0]))
    est, _ = _log_ratio(
        pl.treated[w].sum(), pl.treated[pre].sum(), pl.controls[w].sum(), pl.controls[pre].sum()
    )
    assert t_rob * se_rob == pytest.approx(est)
    cal = _calibrated(t_rob, t_pl, 0.05)
    n = t_pl.size
    assert cal["p_lower"] == pytest.approx((1 + np.sum(t_pl <= t_rob)) / (n + 1))
    assert cal["p_upper"] == pytest.approx((1 + np.sum(t_pl >= t_rob)) / (n + 1))
    assert cal["min_p"] == pytest.approx(1 / (n + 1))


def _drifting_site(market_shift: float):
    """Control areas whose post-period level shifts by their own drift (SD 0.2 on the log
    scale); the market's three areas all shift by ``market_shift`` (log scale)."""
    rng = np.random.default_rng(5)
    n_areas, n_tr, n_periods, call_in = 83, 3, 48, 30
    base = np.r_[np.full(n_tr, 15.0), rng.uniform(6, 14, n_areas - n_tr)]
    shift = np.r_[np.full(n_tr, market_shift), rng.normal(0, 0.2, n_areas - n_tr)]
    post = np.arange(n_periods) > call_in
    counts = rng.poisson(base[:, None] * np.exp(np.outer(shift, post)))
    start = pd.Period("2016-01", freq="M")
    date = (start + call_in).start_time.date() + pd.Timedelta(days=14)
    sites = [{"id": "site", "intervention": date.isoformat(), "treated": [0, 1, 2]}]
    panel, study = build(counts, sites)
    return panel.site_data(study, "site")


def test_a_market_drifting_like_the_comparison_areas_is_not_an_effect():
    """Parallel trends fail area by area: a market that moved like a typical comparison area
    (-18%, one SD of their drift) is no evidence of an effect, though its counting noise alone
    would call it highly significant; a move far beyond the areas' drift still is."""
    like_others = DID(_drifting_site(np.log(0.82)), seed=0, event_study=False).fit()
    post = like_others.window_effect("drug", "post")
    assert post.pct_change == pytest.approx(-0.18, abs=0.05)
    assert post.p_lower > 0.05
    assert post.ci_low < 0 < post.ci_high
    beyond = DID(_drifting_site(np.log(0.5)), seed=0, event_study=False).fit()
    assert beyond.window_effect("drug", "post").p_lower < 0.05


def test_a_placebo_group_with_no_other_incidents_in_a_lead_is_dropped_quietly():
    """Its Wald statistic is undefined (inf - inf); it is left out of the reference, and no
    numpy warning reaches the user (pytest turns warnings into errors)."""
    from dmi_eval.designs.did.inference import _Placebo, _placebo_wald

    sums = np.array([[5.0, 3.0, 4.0, 6.0], [1.0, 2.0, 3.0, 2.0], [2.0, 1.0, 2.0, 3.0]])
    total = np.array([5.0, 6.0, 9.0, 11.0])  # group 0 holds every incident of period 0
    pl = _Placebo(
        sums=sums, rest=total - sums, treated=np.array([3.0, 2.0, 4.0, 5.0]), controls=total
    )
    w_t, w_p = _placebo_wald(pl, [np.array([0]), np.array([1])], np.array([2, 3]))
    assert np.isfinite(w_t) and w_p.size == 2 and np.isfinite(w_p).all()
