"""Placebo and permutation inference shared by the designs.

The functions here know nothing about a particular estimator: they take a
callable that returns the gap path (observed minus counterfactual) of one unit
when that unit is treated as if it had been treated, and turn the collection
of gaps into rank p-values and effect intervals.

Parallel loops use joblib with child work split deterministically up front, so
results do not depend on the number of cores.
"""

from __future__ import annotations

from dmi_eval.inference.parallel import PROGRESS_ENV, Alternative, parallel_map, progress_bar
from dmi_eval.inference.placebo import PlaceboTest, placebo_in_space, select_placebos

__all__ = [
    "PROGRESS_ENV",
    "Alternative",
    "PlaceboTest",
    "parallel_map",
    "placebo_in_space",
    "progress_bar",
    "select_placebos",
]
