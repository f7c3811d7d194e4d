"""Small builders shared by tests (not fixtures, so tests read top to bottom)."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

BASE_TOML = """
[study]
name = "Test study"
frequency = "month"

[data]
incidents = "incidents.csv"

[[sites]]
id = "east"
intervention = "2019-06-15"
treated_areas = ["A1"]
catchment_areas = ["A2"]
outcomes = ["drug", "violent"]
primary_outcome = "drug"
"""


def write_toml(folder: Path, text: str = BASE_TOML, name: str = "study.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def write_csv(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def tiny_city_spec(**changes: Any):
    """A 10 x 10 calibration city with two markets and 12-18 post months (seconds to evaluate)."""
    from dmi_eval.calibration.city import CitySpec

    tiny = dict(n_rows=10, n_cols=10, n_markets=2, n_years=4, post_months=(12, 18))
    return replace(CitySpec(), **(tiny | changes))


def fake_calibration_rows() -> pd.DataFrame:
    """Hand-made calibration runner rows: 4 no-effect, 4 sustained -45%, 2 fading markets, one city."""
    rows = []
    markets = [
        ("n1", "none", "not_closed", "no_reduction", 0.0, 0.3, True),
        ("n2", "none", "inconclusive", "undetectable", 0.0, 0.4, False),
        ("n3", "none", "closed", "closed", -0.3, 0.01, True),
        ("n4", "none", "not_closed", "ruled_out", 0.05, 0.6, True),
        ("s1", "-45% sustained", "closed", "closed", -0.45, 0.01, True),
        ("s2", "-45% sustained", "closed", "closed", -0.4, 0.02, True),
        ("s3", "-45% sustained", "closed", "closed", -0.5, 0.01, True),
        ("s4", "-45% sustained", "not_closed", "faded", -0.3, 0.03, True),
        ("f1", "-45% relapsing", "not_closed", "faded", -0.2, 0.04, True),
        ("f2", "-45% relapsing", "closed", "closed", -0.3, 0.01, True),
    ]
    for site, effect, label, basis, pct, p, detectable in markets:
        truth = {
            "scenario": "fake",
            "city": 1,
            "site": site,
            "effect": effect,
            "rate_per_month": 12.0,
            "post_months": 30,
            "true_post": pct,
        }
        held = label == "closed"
        design = {
            "pct_change": pct,
            "ci_low": pct - 0.2,
            "ci_high": pct + 0.2,
            "level": 0.9,
            "p_lower": p,
            "p_upper": 1 - p,
            "p_two_sided": 2 * min(p, 1 - p),
            "mde": 0.2 if detectable else 0.4,
            "detectable": detectable,
            "p_lower_last": 0.5,
            "pct_last": -0.3 if held else 0.0,
            "held": held,
        }
        rows.append({**truth, "design": "primary", "primary": "sc", **design})
        spike = {"spike": site in ("n2", "s4"), "spike_own": site in ("n1", "n2")}
        rows.append({**truth, "design": "verdict", "verdict": label, "basis": basis, **spike})
    return pd.DataFrame(rows)
