"""Validation of the DID core and the pooling against published numbers ."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from dmi_eval.designs.did import fit_fe
from dmi_eval.validation.check import Check, reference_file


def prop99_did_fe(reference: Path) -> list[Check]:
    """Arkhangelsky et al. (2021) Table 1: TWFE DID for Prop 99 = -27.3 (synthdid -27.35)."""
    df = pd.read_csv(reference_file(reference, "prop99.csv"))
    d = ((df["state_name"] == "California") & (df["year"] >= 1989)).astype(float)
    fit = fit_fe(
        df["cigsale"].to_numpy(),
        df["state_name"],
        df["year"],
        pd.DataFrame({"d": d.to_numpy()}),
        model="level",
    )
    return [
        Check(
            "prop99_did_fe",
            "did_effect",
            float(fit.params[0]),
            -27.35,
            0.005,
            "TWFE DID, level model (synthdid's printed -27.35)",
        )
    ]


CASES: dict[str, Callable[[Path], list[Check]]] = {"prop99_did_fe": prop99_did_fe}
