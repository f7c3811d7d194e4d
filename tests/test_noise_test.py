"""The noise-standardised placebo test (dmi_eval.inference.noise), as the synthetic control uses it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dmi_eval.inference.noise import (
    NoiseStandardisedTest,
    dersimonian_laird,
    dispersion,
    market_dispersion,
    select_window_placebos,
)


def test_dispersion_recovers_phi_and_ignores_slow_trends():
    rng = np.random.default_rng(0)
    phi = 0.2
    mu = rng.uniform(1, 6, 400)[:, None] * np.exp(np.linspace(0, 0.6, 60))[None, :]
    counts = rng.poisson(mu * rng.gamma(1 / phi, phi, mu.shape))
    assert dispersion(counts) == pytest.approx(phi, abs=0.04)
    assert dispersion(rng.poisson(mu)) < 0.03  # pure Poisson: about 0
    # A market of k equal areas behaves like one count with phi / k
    assert market_dispersion(phi, np.full(4, 3.0)) == pytest.approx(phi / 4)


def test_dersimonian_laird_recovers_between_unit_variance():
    rng = np.random.default_rng(1)
    v = rng.uniform(0.01, 0.2, 3000)
    effects = rng.normal(0, 0.15, v.size) + rng.normal(0, np.sqrt(v))
    assert math.sqrt(dersimonian_laird(effects, v)) == pytest.approx(0.15, abs=0.01)
    assert dersimonian_laird(rng.normal(0, np.sqrt(v)), v) < 0.002


def _test(L, v=None, tau2=0.0):
    L = np.asarray(L, dtype=float)
    v = np.full(L.size, 0.01) if v is None else np.asarray(v, dtype=float)
    return NoiseStandardisedTest(log_ratio=L, variance=v, tau2=tau2)


def test_each_tail_is_counted_with_the_site_included():
    # site first, 19 placebos with median 0.1625: 2 at or below the site (-0.3), and none of
    # their mirror images 0.325 - z is (the highest placebo, 0.5, mirrors to -0.175)
    placebos = np.r_[-0.5, -0.4, np.linspace(-0.1, 0.5, 17)]
    t = _test(np.r_[-0.3, placebos])
    z = placebos / 0.1
    assert t.reference.tolist() == pytest.approx(np.sort(np.r_[z, 2 * np.median(z) - z]).tolist())
    lower, upper, two = t.p_values()
    assert lower == pytest.approx(3 / 39)  # ranked among 38 reference values, itself included
    assert upper == pytest.approx((1 + 17 + 19) / 39)
    assert two == pytest.approx(2 * 3 / 39)  # equal-tailed: twice the smaller tail
    assert lower + upper > 1  # never 1 - p: ties with the site count in both tails
    # the most extreme site: p is 1/(n+1) over the 19 placebos, never 0 and never 1/39
    assert _test(np.r_[-9.0, placebos]).p_values()[0] == pytest.approx(1 / 20)


def test_a_symmetric_market_among_left_skewed_placebos_is_held_less_to_their_long_tail():
    """Placebo statistics with a lower tail 1.5 times their upper one (as single quiet areas
    give) and a market whose statistic is symmetric with the upper tail's spread: ranked among
    the placebos as they are, a one-sided 5% test rejects a true null less than 1% of the time
    (cut-off near 1.5 x -1.645); among the placebos and their mirror images, whose lower 5%
    point solves (Phi(c / 1.5) + Phi(c)) / 2 = 0.05 (c = -2.09), about twice as often (a
    normal market: 1.8%); neither exceeds 5%."""
    rng = np.random.default_rng(11)
    mirrored, plain = [], []
    for _ in range(4000):
        zp = rng.normal(0, 1, 99)
        zp[zp < 0] *= 1.5
        t = _test(np.r_[rng.normal(0, 1), zp], v=np.ones(100))
        mirrored.append(t.p_values()[0] < 0.05)
        plain.append((1 + np.sum(t.z[1:] <= t.z[0])) / 100 < 0.05)
    assert np.mean(plain) < 0.009  # 0.005 with this seed
    assert 0.01 < np.mean(mirrored) < 0.03  # 0.014
    assert np.mean(mirrored) > 2 * np.mean(plain)


@pytest.mark.parametrize("level", [0.9, 0.95])
def test_two_sided_p_agrees_with_the_interval(level):
    rng = np.random.default_rng(7)
    alpha = 1 - level
    for _ in range(200):
        # skewed placebos (a long lower tail, as quiet areas give): |z| ranks would disagree
        placebos = np.r_[rng.normal(0, 0.1, 60), -rng.exponential(0.4, 20)]
        t = _test(np.r_[rng.normal(-0.1, 0.4), placebos])
        low, high = t.interval(level)
        zero_outside = not (low <= 0.0 <= high)
        assert zero_outside == (t.p_values()[2] <= alpha + 1e-12)


def test_interval_inverts_the_test_and_mde_needs_enough_placebos():
    rng = np.random.default_rng(2)
    placebos = rng.normal(0, 0.1, 199)
    t = _test(np.r_[math.log(0.6), placebos], v=np.full(200, 0.0025), tau2=0.0)
    low, high = t.interval(0.9)
    assert low < -0.4 < high
    # at the interval's ends the shifted statistic sits on the 19th of the 398 reference values
    # from each end (floor(0.05 * 399) = 19)
    s = float(t.sd[0])
    z = t.reference
    assert z.size == 398
    assert math.log1p(low) == pytest.approx(math.log(0.6) - z[-19] * s)
    assert math.log1p(high) == pytest.approx(math.log(0.6) - z[18] * s)
    # MDE: 80% power one-sided 5% with normal placebos ~ (1.645 + 0.84) sd
    mde = t.mde()
    assert -math.log1p(-mde) == pytest.approx(2.49 * s * (0.1 / s), rel=0.25)
    # 19 placebos: p can never be below 0.05; 18: no 90% interval either
    assert _test(np.r_[-2.0, rng.normal(0, 0.1, 19)]).mde() == float("inf")
    assert math.isfinite(_test(np.r_[-2.0, rng.normal(0, 0.1, 19)]).interval(0.9)[1])
    assert _test(np.r_[-2.0, rng.normal(0, 0.1, 18)]).interval(0.9) == (-1.0, float("inf"))


def test_noise_standardisation_puts_busy_and_quiet_units_on_one_scale():
    """A busy market and quiet placebo areas without any effect: the market's p is uniform."""
    rng = np.random.default_rng(3)
    T0, T1, n = 36, 24, 150
    pre = np.r_[np.ones(T0, bool), np.zeros(T1, bool)]
    post = ~pre
    p_values = []
    for _ in range(200):
        mu = np.r_[60.0, rng.uniform(1, 4, n)]
        drift = np.exp(rng.normal(0, 0.1, n + 1))  # every unit drifts by ~10% after T0
        lam = mu[:, None] * np.r_[np.ones(T0), np.ones(T1)][None, :]
        lam[:, post] *= drift[:, None]
        obs = rng.poisson(lam)
        syn = np.broadcast_to(obs[:, pre].mean(axis=1)[:, None], obs.shape)
        test = NoiseStandardisedTest.from_paths(obs, syn, pre, post, np.zeros(n + 1))
        p_values.append(test.p_values()[0])
    p = np.asarray(p_values)
    assert 0.02 <= np.mean(p < 0.05) <= 0.1
    assert 0.4 <= np.mean(p < 0.5) <= 0.6


def test_window_placebos_need_enough_incidents_and_are_topped_up_by_the_busiest():
    expected = np.r_[300.0, 25.0, 3.0, 20.0, 19.9, 0.5, 40.0]
    keep = select_window_placebos(expected, min_count=20, min_placebos=2)
    assert keep.tolist() == [True, True, False, True, False, False, True]
    # fewer than min_placebos qualify: the busiest others fill up, the quietest stay out
    keep = select_window_placebos(expected, min_count=30, min_placebos=4)
    assert keep.tolist() == [True, True, False, True, True, False, True]
    # the market is kept even when it is quiet itself; min_count=0 keeps every placebo
    assert select_window_placebos(np.r_[0.0, expected], min_count=50, min_placebos=1)[0]
    assert select_window_placebos(expected, min_count=0).all()


def test_quiet_placebos_do_not_inflate_the_drift_or_the_interval():
    """Known drift SD 0.1 at every unit, 60 busy and 120 quiet placebo areas (1-7 incidents
    in the window): a quiet area's log ratio is far from normal, and counting it read
    noise as drift. With the window's busy placebos tau^2 is right and the 90% interval
    of a no-effect market covers zero about 90% of the time."""
    rng = np.random.default_rng(4)
    T0, T1 = 36, 12
    pre = np.r_[np.ones(T0, bool), np.zeros(T1, bool)]
    post = ~pre
    tau2 = {0: [], 20: []}
    cover = {0: [], 20: []}
    for _ in range(300):
        mu = np.r_[15.0, rng.uniform(2, 6, 60), rng.uniform(0.1, 0.6, 120)]
        lam = np.repeat(mu[:, None], T0 + T1, axis=1)
        lam[:, post] *= np.exp(rng.normal(0, 0.1, mu.size))[:, None]
        obs = rng.poisson(lam).astype(float)
        syn = np.broadcast_to(np.maximum(obs[:, pre].mean(axis=1), 1e-9)[:, None], obs.shape)
        for m in tau2:
            t = NoiseStandardisedTest.from_paths(
                obs, syn, pre, post, np.zeros(mu.size), min_count=m, min_placebos=40
            )
            low, high = t.interval(0.9)
            tau2[m].append(t.tau2)
            cover[m].append(low <= 0 <= high)
            if m == 20:
                assert 55 <= t.n_placebos <= 60  # the busy areas only
    assert np.mean(tau2[20]) == pytest.approx(0.01, abs=0.003)
    assert np.mean(tau2[0]) > 0.018  # every placebo: noise read as drift
    assert 0.85 <= np.mean(cover[20]) <= 0.94


def test_site_sc_reports_each_tail_an_mde_and_weights_that_choose():
    """On a simulated city the site SC counts both tails, reports its MDE and does not
    spread its weights evenly (SDID's full ridge made every weight about 1/J)."""
    from dmi_eval.calibration.city import simulate_city
    from dmi_eval.designs.synth import SyntheticControl

    city = simulate_city(seed=5)
    study = city.study()
    data = city.panel.site_data(study, city.markets[0].id)
    res = SyntheticControl(
        data, outcomes=["drug"], anchor="ratio", n_jobs=1, leave_one_out=False, placebo_time=False
    ).fit()
    row = res.table.query("window == 'post'").iloc[0]
    n = int(res.diagnostics.loc["drug", "n_placebos"])
    assert n >= 80  # the busiest areas, at least 80 of them
    # the test used exactly the placebos busy enough for the post window (or the busiest 80)
    inputs = res.noise["drug"]
    expected = inputs.synthetic[1:, data.post_mask].sum(axis=1)
    assert n == max(int(np.sum(expected >= 20)), min(80, expected.size))
    assert row["p_lower"] >= 1 / (n + 1) and row["p_upper"] >= 1 / (n + 1)
    # ranked among the 2n placebo statistics and their mirror images
    assert row["p_lower"] + row["p_upper"] == pytest.approx(1 + 1 / (2 * n + 1), abs=1e-9)
    assert row["ci_low"] < row["pct_change"] < row["ci_high"]
    diag = res.diagnostics.loc["drug"]
    assert 0 < diag["mde_placebo"] < 1 and diag["drift_sd"] > 0 and diag["dispersion"] > 0
    assert diag["min_p"] == pytest.approx(1 / (n + 1))
    weights = res.weights_table("drug")["weight"]
    assert len(weights) < 0.8 * diag["n_donors"]
    assert weights.max() > 2 / diag["n_donors"]
    assert "counting-noise" in row["method"]
    # each window's log-ratio SE is its own test's, so pooling reads the design's variance
    for window, se in zip(res.table["window"], res.table["se"], strict=True):
        assert se == res.noise_test("drug", window).log_se() and 0 < se < 1, window
    from dmi_eval.pooling import log_ratio_inputs

    assert (log_ratio_inputs(res.table)["se_source"] == "design").all()
    # each window's method names the placebos its own test ranked
    for window, method in zip(res.table["window"], res.table["method"], strict=True):
        used = res.noise_test("drug", window).n_placebos
        assert f"rank test over {used} placebo areas" in method, window


def test_the_interval_tests_a_change_with_the_counting_noise_of_its_count():
    # a -45% market's window holds 0.55 times its no-change count: the counting noise the
    # interval's lower end is tested with is that of the smaller count (held-out weekly cities
    # under-covered true closures with v_1 fixed at no change)
    rng = np.random.default_rng(3)
    placebos = rng.normal(0, 1, 99)
    m = 60.0  # the market's synthetic count over the window
    v1 = 1 / m + 0.002
    L = np.r_[math.log(0.55), placebos * math.sqrt(0.02 + 0.02)]
    v = np.r_[v1, np.full(99, 0.02)]
    fixed = NoiseStandardisedTest(log_ratio=L, variance=v, tau2=0.02)
    moving = NoiseStandardisedTest(log_ratio=L, variance=v, tau2=0.02, market_count=m)
    assert moving.p_values() == fixed.p_values()  # the test of no change is the same
    low, high = moving.interval(0.9)
    f_low, f_high = fixed.interval(0.9)
    # both ends are drops here, each tested with the noise of its smaller count: wider
    assert low < f_low < f_high < high
    ref = moving.reference  # 198 values: k = floor(0.05 * 199) = 9 from each end
    for end, q in ((low, ref[198 - 9]), (high, ref[8])):
        u = math.log1p(end)
        assert (L[0] - u) / moving.market_sd(u) == pytest.approx(q, abs=1e-9)
    # zero lies outside the interval exactly when the equal-tailed p is at most 0.10
    assert (low > 0 or high < 0) == (moving.p_values()[2] <= 0.10)


def test_the_mde_sees_a_drop_through_the_counting_noise_of_its_smaller_count():
    # a market expecting 60 incidents in the window: a drop to 0.6 of them is seen with the
    # noise of 36; at the MDE's log drop u, -u = Q s(u) - c s_0 (Q the reference's 80%
    # quantile, c its critical value); with s(u) fixed at s_0 the MDE is the smaller one
    rng = np.random.default_rng(5)
    m = 60.0
    L = np.r_[0.0, rng.normal(0, 1, 199) * 0.2]
    v = np.r_[1 / m + 0.004, np.full(199, 0.02)]
    fixed = NoiseStandardisedTest(log_ratio=L, variance=v, tau2=0.02)
    moving = NoiseStandardisedTest(log_ratio=L, variance=v, tau2=0.02, market_count=m)
    assert moving.p_values() == fixed.p_values()
    d_fixed, d_moving = fixed.mde(), moving.mde()
    assert 0 < d_fixed < d_moving < 1
    ref, s0 = moving.reference, float(moving.sd[0])
    q = float(np.quantile(ref, 0.8))
    c = float(ref[math.ceil(0.05 * (ref.size + 1) - 1 - 1e-9) - 1])
    u = math.log1p(-d_moving)
    assert -u == pytest.approx(q * moving.market_sd(u) - c * s0, abs=1e-9)
    assert -math.log1p(-d_fixed) == pytest.approx((q - c) * s0, abs=1e-9)
    # the counting noise of the smaller count is what the MDE gains: a busy market barely moves
    busy = NoiseStandardisedTest(log_ratio=L, variance=v, tau2=0.02, market_count=1e9)
    assert busy.mde() == pytest.approx(d_fixed, rel=1e-6)


def test_the_mde_finds_a_narrow_range_of_detectable_drops():
    # a market expecting a handful of incidents: drops are detectable only over a narrow range
    # of u = log(1 - delta) (below it the counting noise of what is left swamps the drop), which
    # a search in growing steps jumped over (inf where a dense grid finds 0.92-0.97: 22 of
    # 3,000 such draws); the MDE is the grid's smallest detectable drop, finite where one is
    rng = np.random.default_rng(1)
    grid = np.linspace(-20.0, 0.0, 100_001)
    checked = 0
    for _ in range(1500):
        n = int(rng.integers(40, 121))
        zp = rng.normal(rng.choice([-0.5, 0.5]), 1.0, n)
        m = float(rng.uniform(1.0, 8.0))
        tau2, v_rest, v_p = rng.uniform(0, 0.1), rng.uniform(0, 0.05), rng.uniform(0.01, 0.2)
        v1 = 1.0 / m + v_rest
        t = NoiseStandardisedTest(
            log_ratio=np.r_[0.0, zp * math.sqrt(tau2 + v_p)],
            variance=np.r_[v1, np.full(n, v_p)],
            tau2=tau2,
            market_count=m,
        )
        ref, s0 = t.reference, float(t.sd[0])
        q = float(np.quantile(ref, 0.8))
        c = float(ref[math.ceil(0.05 * (ref.size + 1) - 1 - 1e-9) - 1])
        g = grid + q * np.sqrt(tau2 + v1 + (np.exp(-grid) - 1.0) / m) - c * s0
        hits = np.flatnonzero(g <= 0)
        mde = t.mde()
        if hits.size == 0:
            assert mde == float("inf")
            continue
        checked += 1
        assert math.isfinite(mde)
        assert math.log1p(-mde) == pytest.approx(grid[hits[-1]], abs=4e-4)
    assert checked > 300


def test_a_reference_value_of_zero_or_a_tie_keeps_the_interval_dual_to_the_p_value():
    # a market statistic within rounding of the reference value that sets an interval end is a
    # tie for the p-value, so zero must lie inside the interval (an end of +-3e-17 put it
    # outside); and an end set by a reference value of exactly 0 is the estimate itself (the
    # root search stepped away from it, to an infinite end)
    base = np.r_[-0.3, np.linspace(-0.5, 0.5, 41)]
    ref = _test(base).reference
    k = math.floor(0.05 * (ref.size + 1) + 1e-9)
    for q in (ref[k - 1], ref[ref.size - k]):
        for market in (np.nextafter(q * 0.1, -np.inf), q * 0.1, np.nextafter(q * 0.1, np.inf)):
            tied = _test(np.r_[market, base[1:]])
            low, high = tied.interval(0.9)
            assert (low > 0 or high < 0) == (tied.p_values()[2] <= 0.1), (q, market)
    t = _test(base)
    assert t._solve(0.0) == pytest.approx(float(t.log_ratio[0]))


def test_the_interval_finds_the_lower_end_of_a_quiet_market():
    # at a market expecting a handful of incidents the lower end's equation holds only over a
    # narrow range of u below the estimate (further down, the counting noise of the smaller
    # count swamps it), which a search in growing steps jumped over: an end of -100% where a
    # dense grid finds one (110 of 16,000 draws); the end is the grid's root nearest the estimate
    rng = np.random.default_rng(3)
    steps = np.linspace(0.0, 20.0, 200_001)
    finite = 0
    for _ in range(600):
        n = int(rng.integers(20, 121))
        m = float(rng.uniform(0.5, 6.0))
        tau2, v_rest, v_p = rng.uniform(0, 0.1), rng.uniform(0, 0.05), rng.uniform(0.01, 0.2)
        L1, v1 = float(rng.uniform(-1.0, 2.5)), 1.0 / m + v_rest
        t = NoiseStandardisedTest(
            log_ratio=np.r_[L1, rng.normal(0, 1, n) * math.sqrt(tau2 + v_p)],
            variance=np.r_[v1, np.full(n, v_p)],
            tau2=tau2,
            market_count=m,
        )
        ref = t.reference
        q = float(ref[ref.size - math.floor(0.05 * (ref.size + 1) + 1e-9)])
        if q <= 0:
            continue
        u = L1 - steps
        h = L1 - u - q * np.sqrt(tau2 + v1 + (np.exp(-u) - 1.0) / m)
        hits = np.flatnonzero(h >= 0)
        low = t.interval(0.9)[0]
        if hits.size == 0:
            assert low == -1.0
            continue
        finite += 1
        assert low > -1.0
        assert math.log1p(low) == pytest.approx(u[hits[0]], abs=2e-4)
    assert finite > 300


def test_the_log_se_is_the_markets_sd_at_its_estimate_times_the_references_spread():
    rng = np.random.default_rng(11)
    placebos = rng.normal(0, 1, 99) * math.sqrt(0.02 + 0.02)
    m, v1 = 60.0, 1 / 60.0 + 0.002
    L = np.r_[math.log(0.55), placebos]
    v = np.r_[v1, np.full(99, 0.02)]
    t = NoiseStandardisedTest(log_ratio=L, variance=v, tau2=0.02, market_count=m)
    spread = float(np.std(t.reference))
    # the 33 incidents left by the drop carry more counting noise than the 60 expected
    expected = math.sqrt(0.02 + v1 + (1 / 0.55 - 1) / m) * spread
    assert t.log_se() == pytest.approx(expected, rel=1e-12)
    assert t.log_se() > float(t.sd[0]) * spread
    # a window of fewer than 20 incidents (0.55 x 30), no placebos or no count: no SE
    assert math.isnan(NoiseStandardisedTest(L, v, 0.02, market_count=30.0).log_se())
    assert math.isnan(NoiseStandardisedTest(L[:1], v[:1], 0.02, market_count=m).log_se())
    assert math.isnan(NoiseStandardisedTest(L, v, 0.02).log_se())
    # 19 placebos: a rank test over them never reaches p < 0.05; 18: no bounded 90% interval
    assert math.isnan(NoiseStandardisedTest(L[:20], v[:20], 0.02, market_count=m).log_se())
    assert NoiseStandardisedTest(L[:19], v[:19], 0.02, market_count=m).interval(0.9) == (
        -1.0,
        math.inf,
    )
    assert math.isfinite(NoiseStandardisedTest(L[:21], v[:21], 0.02, market_count=m).log_se())


def test_the_log_se_covers_the_truth_as_a_standard_error_should():
    # markets and placebos drawn from the test's own model: L_1 - u ~ N(0, tau^2 + v_1(u));
    # a 90% normal interval from log_se covers u about 90% of the time (here 0.92; half the
    # variance would cover 0.80, the variance in place of the SD 0.22)
    rng = np.random.default_rng(12)
    tau2, phi, hits, n = 0.015, 0.1, 0, 400
    for _ in range(n):
        m = rng.uniform(40, 400)
        u = math.log(rng.choice([1.0, 0.55]))
        v_pl = rng.uniform(0.01, 0.08, 120)
        pl = rng.normal(0, np.sqrt(tau2 + v_pl))
        v1 = 1 / m + phi / 30
        sd_u = math.sqrt(tau2 + v1 + (math.exp(-u) - 1) / m)
        L1 = u + rng.normal(0, sd_u)
        t = NoiseStandardisedTest(np.r_[L1, pl], np.r_[v1, v_pl], tau2, market_count=m)
        hits += abs(L1 - u) <= 1.645 * t.log_se()
    assert 0.86 <= hits / n <= 0.94
