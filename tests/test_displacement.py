"""Displacement: WDQ, WDD test, catchment view and plain-language summary."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmi_eval.config import parse_study
from dmi_eval.displacement import (
    catchment_summary,
    catchment_view,
    wdd_test,
    weighted_displacement_quotient,
)
from dmi_eval.errors import DesignError
from dmi_eval.panel import Panel
from dmi_eval.results import effects_frame


def test_wdd_reproduces_wheeler_ratcliffe_example():
    res = wdd_test((207, 110), (308, 318), (178, 157), (150, 140), level=0.95)
    assert res["estimate"] == -118
    assert res["se"] == pytest.approx(math.sqrt(1568))
    assert round(res["z"], 2) == -2.98
    # the paper's 95% interval: -196 to -40
    assert round(res["ci_low"]) == -196 and round(res["ci_high"]) == -40
    assert res["local_estimate"] == -107 and res["displacement_estimate"] == -11
    assert res["estimate"] == res["local_estimate"] + res["displacement_estimate"]
    assert res["p_lower"] == pytest.approx(0.00144, abs=1e-5)


def test_wdd_local_only_and_input_checks():
    res = wdd_test((20, 10), (20, 20))
    assert res["estimate"] == -10 and res["se"] == pytest.approx(math.sqrt(70))
    with pytest.raises(ValueError, match="both"):
        wdd_test((20, 10), (20, 20), displacement=(5, 5))
    with pytest.raises(ValueError, match="non-negative"):
        wdd_test((20, -1), (20, 20))


def test_wdd_z_is_standard_normal_under_poisson_null():
    rng = np.random.default_rng(0)
    lam = np.array([40, 40, 60, 60, 30, 30, 50, 50])  # before/after equal: no effect
    draws = rng.poisson(lam, size=(4000, 8))
    z = np.array([wdd_test(d[0:2], d[2:4], d[4:6], d[6:8])["z"] for d in draws])
    assert abs(z.mean()) < 0.06 and z.std() == pytest.approx(1.0, abs=0.05)


def test_wdq_hand_example_and_readings():
    # A: 100 -> 60, C: 200 -> 200, B: 80 -> 70
    res = weighted_displacement_quotient((100, 60), (200, 200), (80, 70))
    assert res["success_measure"] == pytest.approx(60 / 200 - 100 / 200)
    assert res["buffer_measure"] == pytest.approx(70 / 200 - 80 / 200)
    assert res["wdq"] == pytest.approx((-0.05) / (-0.2))
    assert "diffusion" in res["reading"]
    res = weighted_displacement_quotient((100, 60), (200, 200), (80, 120))
    assert res["wdq"] == pytest.approx(-1.0) and "displacement" in res["reading"]
    res = weighted_displacement_quotient((100, 120), (200, 200), (80, 90))
    assert math.isnan(res["wdq"]) and "not interpretable" in res["reading"]


def _effects(pct: float, lo: float, hi: float, p: float, method: str) -> pd.DataFrame:
    cf = 100.0
    return effects_frame(
        [
            {
                "site": "east",
                "outcome": "drug",
                "design": "microsynth",
                "window": "post",
                "observed": cf * (1 + pct),
                "counterfactual": cf,
                "effect": cf * pct,
                "pct_change": pct,
                "ci_low": lo,
                "ci_high": hi,
                "p_value": p,
                "method": method,
            }
        ]
    )


def test_catchment_summary_labels_and_sentence():
    rise = _effects(0.3, 0.1, 0.5, 0.01, "x 90%, two-sided")
    target = _effects(-0.4, -0.6, -0.2, 0.001, "x 90%, two-sided")
    out = catchment_summary(rise, "drug", target_effects=target)
    assert out["label"] == "displacement" and out["significant"]
    assert out["offset_share"] == pytest.approx(30 / 40)
    assert "moved next door" in out["sentence"] and "75%" in out["sentence"]
    fall = catchment_summary(_effects(-0.3, -0.5, -0.1, 0.01, "x 90%, two-sided"), "drug")
    assert fall["label"] == "diffusion" and "spread" in fall["sentence"]
    flat = catchment_summary(_effects(0.05, -0.2, 0.3, 0.6, "x 90%, two-sided"), "drug")
    assert flat["label"] == "no_change"
    # a one-sided lower p-value says nothing about a rise
    lower = _effects(0.2, -0.05, 0.5, 0.01, "x 90%, one-sided lower")
    assert catchment_summary(lower, "drug")["label"] == "no_change"
    with pytest.raises(ValueError, match="expected one effects row"):
        catchment_summary(rise, "violent")


def test_catchment_view_puts_catchment_in_treated_role():
    periods = pd.period_range("2018-09", periods=16, freq="M")
    areas = pd.Index([f"A{i}" for i in range(6)])
    counts = {"drug": np.arange(96).reshape(6, 16)}
    panel = Panel(frequency="month", periods=periods, areas=areas, counts=counts)
    raw = {
        "study": {"name": "s", "frequency": "month"},
        "data": {"counts": "c.csv"},
        "sites": [
            {
                "id": "east",
                "intervention": "2019-06-15",
                "treated_areas": ["A0"],
                "catchment_areas": ["A1", "A2"],
                "outcomes": ["drug"],
            }
        ],
    }
    sd = panel.site_data(parse_study(raw, file=Path("study.toml")), "east")
    view = catchment_view(sd)
    assert view.treated_areas == ("A1", "A2") and view.catchment_areas == ()
    assert view.donor_areas == sd.donor_areas and "A0" not in view.donor_areas
    pd.testing.assert_series_equal(view.treated_series("drug"), sd.catchment_series("drug"))
    raw["sites"][0]["catchment_areas"] = []
    sd2 = panel.site_data(parse_study(raw, file=Path("study.toml")), "east")
    with pytest.raises(DesignError, match="catchment"):
        catchment_view(sd2)
