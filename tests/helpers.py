"""Small builders shared by tests (not fixtures, so tests read top to bottom)."""

from __future__ import annotations

import textwrap
from pathlib import Path

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
