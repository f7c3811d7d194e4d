"""Random-effects pooling: a published meta-analysis (BCG vaccine trials) and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from dmi_eval.errors import DesignError
from dmi_eval.pooling import (
    log_ratio_inputs,
    pool_effects,
    pool_log_ratios,
)
from dmi_eval.results import effects_frame

# BCG vaccine trials (Colditz et al. 1994; metafor's dat.bcg): tpos, tneg, cpos, cneg
BCG = np.array(
    [
        [4, 119, 11, 128],
        [6, 300, 29, 274],
        [3, 228, 11, 209],
        [62, 13536, 248, 12619],
        [33, 5036, 47, 5761],
        [180, 1361, 372, 1079],
        [8, 2537, 10, 619],
        [505, 87886, 499, 87892],
        [29, 7470, 45, 7232],
        [17, 1699, 65, 1600],
        [186, 50448, 141, 27197],
        [5, 2493, 3, 2338],
        [27, 16886, 29, 17825],
    ],
    dtype=float,
)


def bcg_log_rr():
    tp, tn, cp, cn = BCG.T
    yi = np.log((tp / (tp + tn)) / (cp / (cp + cn)))
    vi = 1 / tp - 1 / (tp + tn) + 1 / cp - 1 / (cp + cn)
    return yi, vi


def frame_from(yi, vi, *, level=0.95, design="its", outcome="drug", window="post"):
    z = stats.norm.isf((1 - level) / 2)
    se = np.sqrt(vi)
    frame = effects_frame(
        {
            "site": f"s{i + 1:02d}",
            "outcome": outcome,
            "design": design,
            "window": window,
            "observed": np.nan,
            "counterfactual": np.nan,
            "effect": np.nan,
            "pct_change": math.expm1(y),
            "ci_low": math.expm1(y - z * s),
            "ci_high": math.expm1(y + z * s),
            "p_value": np.nan,
            "method": f"test delta {100 * level:g}%, two-sided",
        }
        for i, (y, s) in enumerate(zip(yi, se, strict=True))
    )
    frame["level"] = level
    return frame


def test_bcg_dersimonian_laird_matches_metafor():
    # metafor: rma(measure="RR", ai=tpos, bi=tneg, ci=cpos, di=cneg, data=dat.bcg, method="DL")
    # estimate -0.7141 (se 0.1787), tau^2 0.3088, I^2 92.12%, Q(df=12) = 152.2330
    yi, vi = bcg_log_rr()
    res = pool_effects(frame_from(yi, vi), method_re="dl", interval="normal")
    assert res.k == 13
    assert res.pooled_log == pytest.approx(-0.7141, abs=5e-5)
    assert res.pooled_se == pytest.approx(0.1787, abs=5e-5)
    assert res.tau2 == pytest.approx(0.3088, abs=5e-5)
    assert res.i2 == pytest.approx(0.9212, abs=5e-5)
    assert res.q == pytest.approx(152.2330, abs=5e-5)
    assert res.q_df == 12
    assert res.pct_change == pytest.approx(math.expm1(-0.7141), abs=1e-4)


def test_dl_and_pm_match_hand_computation():
    yi, vi = bcg_log_rr()
    yi, vi = yi[:6], vi[:6]
    w = 1 / vi
    q = np.sum(w * (yi - np.sum(w * yi) / w.sum()) ** 2)
    tau2_dl = max(0.0, (q - 5) / (w.sum() - np.sum(w**2) / w.sum()))

    def pm_eq(t2):
        ws = 1 / (vi + t2)
        mu = np.sum(ws * yi) / ws.sum()
        return np.sum(ws * (yi - mu) ** 2) - 5

    tau2_pm = optimize.brentq(pm_eq, 0, 10)
    for method, tau2 in (("dl", tau2_dl), ("pm", tau2_pm)):
        res = pool_effects(frame_from(yi, vi), method_re=method, interval="normal")
        ws = 1 / (vi + tau2)
        mu = np.sum(ws * yi) / ws.sum()
        se = 1 / math.sqrt(ws.sum())
        assert res.tau2 == pytest.approx(tau2, rel=1e-3), method
        assert res.pooled_log == pytest.approx(mu, abs=1e-4), method
        assert res.pooled_se == pytest.approx(se, rel=1e-3), method
        np.testing.assert_allclose(res.weights, ws / ws.sum(), rtol=1e-3)
        half = stats.t.isf(0.025, 4) * math.sqrt(tau2 + se**2)  # Higgins et al. 2009
        assert res.pi_low_log == pytest.approx(mu - half, abs=1e-3)
        assert res.pi_high_log == pytest.approx(mu + half, abs=1e-3)
        assert res.q == pytest.approx(q)
        assert res.q_p_value == pytest.approx(stats.chi2.sf(q, 5))


def test_dl_negative_tau2_truncated_and_homogeneous_sites():
    yi = np.array([-0.30, -0.31, -0.29, -0.30])
    vi = np.array([0.04, 0.05, 0.03, 0.06])
    res = pool_effects(frame_from(yi, vi), method_re="dl")
    assert res.tau2 == 0.0
    assert res.i2 == 0.0
    assert res.pooled_log == pytest.approx(res.fixed_log)


def test_level_read_from_the_level_column_and_se_recovered():
    yi, vi = bcg_log_rr()
    eff = frame_from(yi[:4], vi[:4], level=0.90)
    inputs = log_ratio_inputs(eff)
    np.testing.assert_allclose(inputs["se"], np.sqrt(vi[:4]), rtol=1e-10)
    np.testing.assert_allclose(inputs["asymmetry"], 0.0, atol=1e-9)
    assert (inputs["level"] == 0.90).all()
    # the level column is what counts (not the method text): a wrong level -> a different SE
    wrong = log_ratio_inputs(eff.assign(level=0.95))
    assert (wrong["se"] < inputs["se"]).all()
    with pytest.raises(ValueError, match="no 'level' column"):
        log_ratio_inputs(eff.drop(columns="level"))
    with pytest.raises(ValueError, match="not a confidence level"):
        log_ratio_inputs(eff.assign(level=float("nan")))


def test_filtering_exclusions_and_errors():
    yi, vi = bcg_log_rr()
    a = frame_from(yi[:5], vi[:5], design="its")
    b = frame_from(yi[5:10], vi[5:10], design="synth")
    bad = a.iloc[[0]].copy()
    bad["site"] = "broken"
    bad["ci_low"] = -1.0
    both = pd.concat([a, b, bad], ignore_index=True)
    with pytest.raises(ValueError, match="design"):
        pool_effects(both)
    res = pool_effects(both, design="its")
    assert res.sites == tuple(a["site"])
    assert "broken" in res.excluded
    assert "broken" in res.sentence()
    with pytest.raises(ValueError, match="method_re"):
        pool_effects(a, method_re="reml")  # type: ignore[arg-type]
    with pytest.raises(DesignError, match="pooling needs 2"):
        pool_effects(a.iloc[[0]])
    with pytest.raises(ValueError, match="several rows"):
        pool_effects(pd.concat([a, a]))


def test_summary_sentence_read_only_and_forest_plot():
    yi, vi = bcg_log_rr()
    res = pool_effects(frame_from(yi, vi))
    summ = res.summary()
    assert len(summ) == 13 + 3
    assert summ["weight"].iloc[:13].sum() == pytest.approx(1.0)
    assert summ.iloc[13]["pct_change"] == pytest.approx(res.pct_change)
    text = res.sentence()
    assert f"{res.pct_change:+.0%}" in text and "prediction interval" in text
    assert f"against the {res.design} counterfactual" in text
    named = res.sentence("synthetic control")
    assert "against the synthetic control counterfactual" in named
    assert named.replace("synthetic control", res.design) == text
    with pytest.raises(ValueError):
        res.weights[0] = 1.0
    from dmi_eval.plots.pooling import plot_forest

    fig, ax = plot_forest(res)
    assert len(ax.get_yticklabels()) == 15
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_hksj_interval_matches_hand_computation():
    # Hartung-Knapp-Sidik-Jonkman: q = sum w*(y - mu)^2 / (k-1), se = sqrt(max(1, q)) se_RE,
    # t interval on k-1 df (metafor: test="knha")
    yi, vi = bcg_log_rr()
    yi, vi = yi[:5], vi[:5]
    normal = pool_effects(frame_from(yi, vi), method_re="dl", interval="normal")
    res = pool_effects(frame_from(yi, vi), method_re="dl")
    assert res.interval == "hksj"
    ws = 1 / (vi + normal.tau2)
    mu = np.sum(ws * yi) / ws.sum()
    q = np.sum(ws * (yi - mu) ** 2) / 4
    se = math.sqrt(max(1.0, q) / ws.sum())
    t = stats.t.isf(0.025, 4)
    assert res.pooled_log == pytest.approx(mu, abs=1e-8)
    assert res.re_se == pytest.approx(normal.pooled_se)
    assert res.pooled_se == pytest.approx(se, rel=1e-8)
    assert res.ci_low == pytest.approx(math.expm1(mu - t * se), rel=1e-8)
    assert res.ci_high == pytest.approx(math.expm1(mu + t * se), rel=1e-8)
    assert res.p_value == pytest.approx(2 * stats.t.sf(abs(mu) / se, 4), rel=1e-8)
    # with 5 sites the t(4) interval is wider than the normal one
    assert res.ci_high - res.ci_low > normal.ci_high - normal.ci_low
    assert "Hartung-Knapp" in res.method and "HKSJ" in res.sentence()


def test_hksj_floor_keeps_homogeneous_sites_from_a_narrow_interval():
    # homogeneous sites: q < 1; the floor keeps the HKSJ SE at the random-effects SE
    yi = np.array([-0.30, -0.31, -0.29, -0.30])
    vi = np.array([0.04, 0.05, 0.03, 0.06])
    res = pool_effects(frame_from(yi, vi))
    assert res.pooled_se == pytest.approx(res.re_se)
    assert res.crit == pytest.approx(stats.t.isf(0.025, 3))


def test_pooling_uses_the_designs_own_se_not_an_asymmetric_interval():
    yi, vi = bcg_log_rr()
    frame = frame_from(yi[:4], vi[:4])
    # a placebo interval: asymmetric on the log scale, much wider on one side
    frame["ci_high"] = np.expm1(np.log1p(frame["ci_high"]) + 1.0)
    read_back = log_ratio_inputs(frame)
    assert (read_back["se"] > np.sqrt(vi[:4]) + 0.2).all()
    assert (read_back["se_source"] == "interval").all()
    frame["se"] = np.sqrt(vi[:4])
    inputs = log_ratio_inputs(frame)
    np.testing.assert_allclose(inputs["se"], np.sqrt(vi[:4]))
    assert (inputs["se_source"] == "design").all()
    assert (inputs["asymmetry"] < 0).all()
    res = pool_effects(frame, method_re="dl", interval="normal")
    ref = pool_log_ratios(frame["site"], yi[:4], np.sqrt(vi[:4]), method_re="dl", interval="normal")
    assert res.pooled_log == pytest.approx(ref.pooled_log)
    assert res.pooled_se == pytest.approx(ref.pooled_se)
    with pytest.raises(ValueError, match="interval"):
        pool_effects(frame, interval="knha")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="se finite"):
        pool_log_ratios(["a", "b"], [0.1, 0.2], [0.1, 0.0])


# ---------------------------------------------------------------------------
# the summary's prose: no change, prediction interval, sites left out, sensitivity
# ---------------------------------------------------------------------------
def _sites_frame(pcts, se=0.1, design="sc"):
    """Rows of sites ``s1, s2, ...`` with these percent changes and one log-ratio SE."""
    yi = np.log1p(np.asarray(pcts, dtype=float))
    return frame_from(yi, np.full(yi.size, se**2), design=design)


def test_sentence_says_whether_the_pooled_interval_includes_no_change():
    spread = pool_effects(_sites_frame([-0.9, 0.3, -0.5, 0.2, -0.2], se=0.2))
    assert spread.ci_low < 0 < spread.ci_high and spread.includes_no_change
    text = spread.sentence()
    assert "95% interval includes no change (0%)" in text
    assert "do not show that drug offences changed" in text
    assert f"two-sided p = {spread.p_value:.3f}" in text
    falls = pool_effects(_sites_frame([-0.5, -0.4, -0.45, -0.35]))
    assert falls.ci_high < 0 and not falls.includes_no_change
    assert (
        "95% interval lies below no change (0%): on average across these sites, drug offences fell"
        in (falls.sentence())
    )


def test_prose_prediction_interval_follows_the_tables_too_wide_rule():
    from dmi_eval.tables import fmt_interval, fmt_pct

    wide = pool_effects(_sites_frame([-0.94, 0.0, -0.43, -0.2, -0.46, -0.5], se=0.05))
    assert wide.pi_high > 5  # beyond the tables' +500%: the table shows "too wide to tell"
    assert fmt_interval(wide.pi_low, wide.pi_high) == "too wide to tell"
    text = wide.sentence()
    assert f"{fmt_pct(wide.pi_low)} to beyond +500%, too wide to tell" in text
    assert fmt_pct(wide.pi_high) not in text  # the prose no longer prints the raw top end
    narrow = pool_effects(_sites_frame([-0.5, -0.4, -0.45, -0.35, -0.3]))
    lo, hi = fmt_interval(narrow.pi_low, narrow.pi_high).split(" to ")
    assert f"between {lo} and {hi} (95% prediction interval)" in narrow.sentence()


def test_left_out_sites_are_named_with_their_reasons():
    from dmi_eval.pooling import missing_sites

    frame = _sites_frame([-0.5, -0.4, -0.45, -0.35])
    absent = missing_sites(frame, ["s01", "s02", "s03", "s04", "gone"], {"gone": "not fitted"})
    assert absent == {"gone": "not fitted"}
    assert missing_sites(frame, ["other"]) == {"other": "no estimate"}
    res = pool_effects(frame, leave_out={**absent, "s04": "left out on purpose"})
    assert res.sites == ("s01", "s02", "s03")  # a left-out site with a row is not pooled
    assert dict(res.excluded) == {"gone": "not fitted", "s04": "left out on purpose"}
    names = {"gone": "Gone Town", "s04": "Fourth"}
    assert res.left_out(names) == "Gone Town (not fitted); Fourth (left out on purpose)"
    assert "Not pooled: Gone Town (not fitted); Fourth (left out on purpose)." in res.sentence(
        names=names
    )
    assert pool_effects(frame).left_out() == "none"
    with pytest.raises(DesignError, match="left out"):
        pool_effects(frame, leave_out={s: "x" for s in frame["site"]})


def test_unreadable_sites_are_those_whose_data_cannot_tell():
    from dmi_eval.pooling import unreadable_sites
    from dmi_eval.verdict import BASES, Verdict

    verdicts = {
        "few": Verdict("few", "inconclusive", ("r",), basis="low_count"),
        "fit": Verdict("fit", "inconclusive", ("r",), basis="poor_fit"),
        "weak": Verdict("weak", "inconclusive", ("r",), basis="undetectable"),
        "shut": Verdict("shut", "closed", ("r",), basis="closed"),
    }
    assert unreadable_sites(verdicts) == {
        "few": f"inconclusive: {BASES['low_count']}",
        "fit": f"inconclusive: {BASES['poor_fit']}",
    }


def test_sensitivity_sentence_names_the_sites_and_both_estimates():
    from dmi_eval.tables import fmt_pct

    frame = _sites_frame([-0.94, 0.0, -0.43, -0.2, -0.46, -0.5], se=0.05)
    full = pool_effects(frame)
    without = pool_effects(frame, leave_out={"s01": "inconclusive: poor pre-period fit"})
    assert without.k == full.k - 1 and without.tau2 < full.tau2
    text = without.sensitivity(full, "synthetic control", {"s01": "Millbrook"})
    assert text.startswith("Sensitivity: without Millbrook (inconclusive: poor pre-period fit)")
    assert f"the {without.k} other sites' pooled change" in text
    assert f"is {fmt_pct(without.pct_change)} (95% HKSJ interval" in text
    assert f"against {fmt_pct(full.pct_change)} (tau^2 = {full.tau2:.3f}) with all 6" in text
    assert f"which {without.zero_words()} no change" in text


def test_forest_plot_labels_levels_shows_intervals_and_clips_the_axis():
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PathCollection

    from dmi_eval.plots.pooling import AXIS_CAP, forest_caption, forest_limits, plot_forest

    res = pool_effects(_sites_frame([-0.94, 0.0, -0.43, -0.2, -0.46, -0.5], se=0.05))
    assert 100 * res.pi_high > AXIS_CAP
    fig, ax = plot_forest(res, names={"s01": "Millbrook"})
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("site" in t and "95% interval" in t for t in legend)
    assert any("pooled" in t and "95% HKSJ" in t for t in legend)
    assert any("95% prediction" in t for t in legend)
    assert "Millbrook" in [t.get_text() for t in ax.get_yticklabels()]
    # site intervals drawn over the weight squares
    squares = [c for c in ax.collections if isinstance(c, PathCollection)]
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert squares and lines
    assert min(c.get_zorder() for c in lines) > max(c.get_zorder() for c in squares)
    # the axis is not stretched by the prediction interval; its clipped end has an arrow
    assert ax.get_xlim() == pytest.approx(forest_limits(res))
    assert ax.get_xlim()[1] < 100 * res.pi_high and ax.get_xlim()[1] <= AXIS_CAP * 1.1
    arrows = [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None]
    assert arrows
    assert f"to {100 * res.pi_high:+.0f}%" in [t.get_text() for t in ax.texts]
    assert "95% interval" in forest_caption(res) and "95% HKSJ" in forest_caption(res)
    plt.close(fig)
    # nothing clipped when every interval fits: no arrow
    narrow = pool_effects(_sites_frame([-0.5, -0.4, -0.45, -0.35, -0.3]))
    fig, ax = plot_forest(narrow)
    assert not [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None]
    assert ax.get_xlim()[1] > 100 * narrow.pi_high
    plt.close(fig)
