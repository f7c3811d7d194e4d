"""The estimate's accuracy at known closures and the power it allows (calibration appendix)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm

from dmi_eval.calibration.accuracy import (
    accuracy_note,
    error_rmse,
    power_if_exact,
    power_if_exact_se,
)
from dmi_eval.calibration.report import miss_notes
from dmi_eval.calibration.summary import summarise
from tests.helpers import fake_calibration_rows


def test_error_rmse_is_the_root_mean_square_of_the_log_errors():
    truth = np.array([-0.45, -0.45, 0.0, 0.0])
    est = (1 + truth) * np.exp([0.2, -0.2, 0.1, -0.3]) - 1
    rows = pd.DataFrame({"pct_change": [*est, np.nan], "true_post": [*truth, 0.0]})
    # the NaN estimate is left out; errors 0.2, -0.2, 0.1, -0.3 on the log scale
    assert math.isclose(error_rmse(rows), math.sqrt((0.04 + 0.04 + 0.01 + 0.09) / 4))
    assert math.isnan(error_rmse(rows.iloc[4:]))


def test_power_if_exact_is_the_power_of_a_test_of_exact_size_with_normal_errors():
    rng = np.random.default_rng(3)
    s, effect = 0.25, -0.45
    null = rng.normal(0.0, s, 200_000)
    cut = np.quantile(null, 0.05)  # the exact 5% test: reject below its null quantile
    closure = math.log1p(effect) + rng.normal(0.0, s, 200_000)
    assert abs(power_if_exact(s, effect, 0.05) - float(np.mean(closure < cut))) < 0.005
    # half the time when the drop is exactly the critical value; NaN without errors
    assert math.isclose(power_if_exact(-math.log(0.55) / norm.ppf(0.95), effect, 0.05), 0.5)
    assert math.isnan(power_if_exact(0.0, effect, 0.05))


def test_power_if_exact_se_is_the_spread_of_the_yardstick_over_repeated_studies():
    rng = np.random.default_rng(5)
    n, s, effect = 150, 0.25, -0.45

    def study(err):
        return pd.DataFrame({"pct_change": 0.55 * np.exp(err) - 1, "true_post": effect})

    draws = [study(rng.standard_t(6, n) * s / math.sqrt(1.5)) for _ in range(1500)]
    spread = np.std([power_if_exact(error_rmse(d), effect, 0.05) for d in draws])
    se = np.median([power_if_exact_se(d, effect, 0.05) for d in draws[:200]])
    assert abs(se / spread - 1) < 0.15  # heavy tails (t with 6 df) included
    assert math.isnan(power_if_exact_se(draws[0].iloc[:1], effect, 0.05))


def _rows_with_errors(err: float) -> pd.DataFrame:
    rows = fake_calibration_rows()
    sustained = rows["effect"] == "-45% sustained"
    rows.loc[sustained, "true_post"] = -0.45
    primary = sustained & (rows["design"] == "primary")
    signs = np.resize([1.0, -1.0], int(primary.sum()))
    rows.loc[primary, "pct_change"] = 0.55 * np.exp(err * signs) - 1
    return rows


def test_summarise_reports_the_accuracy_and_the_power_it_allows():
    rows = _rows_with_errors(0.2)
    table = summarise(rows).set_index(["design", "quantity"])
    value = table["value"]
    assert math.isclose(value["primary", "error_rmse_45"], 0.2, abs_tol=1e-4)
    expected = round(power_if_exact(0.2, -0.45, 0.05), 4)
    assert value["primary", "power_45_if_exact"] == expected
    # the detection target's markets (all four here: 12 a month, 30 post months)
    assert value["verdict", "detection_if_exact"] == expected
    assert math.isclose(value["verdict", "detection_error_rmse"], 0.2, abs_tol=1e-4)
    sustained = rows[(rows["design"] == "primary") & (rows["effect"] == "-45% sustained")]
    assert table.loc[("verdict", "detection_if_exact"), "mc_se"] == round(
        power_if_exact_se(sustained, -0.45, 0.05), 4
    )
    assert value["verdict", "detection_tested"] == 1.0  # every p_lower below 0.05
    # with estimates exactly right there is no error to speak of: no row
    exact = summarise(fake_calibration_rows()).set_index(["design", "quantity"])["value"]
    assert ("primary", "power_45_if_exact") not in exact.index


def _table(detected: float, exact: float, se: float = 0.01) -> pd.DataFrame:
    numbers = {
        ("verdict", "detection_target"): detected,
        ("verdict", "detection_if_exact"): exact,
        ("verdict", "detection_error_rmse"): 0.246,
        ("verdict", "detection_tested"): 0.82,
        ("primary", "size"): 0.0625,
    }
    return pd.DataFrame(
        [
            {
                "design": d,
                "scenario": "stress",
                "quantity": q,
                "value": v,
                "mc_se": se if q == "detection_if_exact" else 0.03,
                "target": ">= 0.8" if q == "detection_target" else "",
                "met": (v >= 0.8) if q == "detection_target" else "",
            }
            for (d, q), v in numbers.items()
        ]
    )


def test_a_missed_detection_target_says_whether_the_estimate_could_meet_it():
    below = accuracy_note(_table(0.77, 0.70), "stress", target=0.8)
    assert len(below) == 1 and "more than two Monte Carlo SEs" in below[0]
    assert "0.246" in below[0] and "0.700" in below[0] and "0.820" in below[0]
    assert "size 0.062" in below[0] and "to 0.770" in below[0]
    close = accuracy_note(_table(0.77, 0.785, se=0.057), "stress", target=0.8)
    assert "within Monte Carlo error" in close[0] and "counterfactual" not in close[0]
    above = accuracy_note(_table(0.77, 0.93), "stress", target=0.8)
    assert "at or above the target" in above[0]
    # the appendix's notes on its misses carry it; a met target gets none
    assert below[0] in miss_notes(_table(0.77, 0.70))
    assert miss_notes(_table(0.85, 0.79)) == []
    assert accuracy_note(_table(0.77, 0.79).iloc[1:], "stress", target=0.8) == []
