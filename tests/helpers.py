"""Small builders shared by tests (not fixtures, so tests read top to bottom)."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

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
