"""Write ``results/calibration.csv`` and ``appendix/calibration.md`` (deterministic text)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dmi_eval.calibration.runner import (
    ALPHA,
    CALIBRATION_COLUMNS,
    COVERAGE_TOLERANCE,
    DETECTION_TARGET,
    FALSE_CLOSED_TARGET,
    SIZE_TARGET,
    TARGET_POST_MONTHS,
    TARGET_RATE,
    Scenario,
)

_QUANTITY_WORDS = {
    "size": "size of the one-sided 5% test (no-effect markets with p_lower < 0.05)",
    "power_25": "power at a sustained -25% (p_lower < 0.05)",
    "power_45": "power at a sustained -45% (p_lower < 0.05)",
    "power_45_last": "power at a sustained -45% over the persistence window (last periods)",
    "false_closed_displaced": "no-effect markets called closed or displaced",
    "detection": "sustained -45% closures called closed",
    "detection_target": (
        f"sustained -45% closures called closed, markets of at least {TARGET_RATE:g} drug "
        f"incidents a month with at least {TARGET_POST_MONTHS} post months"
    ),
    "displaced_detected": "-45% closures with +35% in the catchment called displaced",
    "median_mde": "median minimum detectable reduction reported by the design",
}


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.3f}"


def _words(quantity: str) -> str:
    if quantity.startswith("coverage_"):
        return f"coverage of the stated {quantity.split('_')[1]}% interval (true post-period change inside)"
    if quantity.startswith("share_"):
        label = quantity[len("share_") : -len("_null")]
        return f"no-effect markets called {label.replace('_', ' ')}"
    return _QUANTITY_WORDS.get(quantity, quantity)


def calibration_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The ``calibration.csv`` columns, in order."""
    out = table.copy()
    out["met"] = out["met"].map(lambda m: "" if m == "" else str(bool(m)).lower())
    return out[list(CALIBRATION_COLUMNS)]


def calibration_markdown(
    table: pd.DataFrame,
    rows: pd.DataFrame,
    scenarios: Sequence[Scenario],
    *,
    seed: int,
) -> str:
    """The calibration appendix: targets, per-scenario verdict and primary-design tables."""
    lines = [
        "# Calibration: size, coverage and power of the designs as used at sites",
        "",
        "Every design is run exactly as `dmi-eval evaluate` runs it at a site "
        "(`dmi_eval.evaluation.evaluate_site`: all designs, the primary-design rule and the "
        "market-closure verdict) on simulated cities with known truth "
        "(`dmi_eval.calibration.city`): a latent factor model with random-walk factors, "
        "area loadings that are a smooth spatial field plus an area deviation, markets whose "
        "2-6 contiguous areas share one loading deviation (the same for every outcome), slow "
        "area-specific trends, gamma-Poisson overdispersion at area x period, hot-spot markets "
        "of 8-25 drug incidents a month against comparison areas at 0.3-3 (and a few untreated "
        "hot spots), a one-area catchment ring around each market, staggered call-ins. Each "
        "city's nine markets are assigned: no effect (four), a sustained -45% drop (two), a "
        "sustained -25% drop, a -45% drop that fades after 6 months, and a -45% drop displaced "
        "into the catchment (+35%).",
        "",
        f"Seed {seed}. Monte Carlo standard errors (`mc_se`) are binomial, "
        "sqrt(p (1 - p) / n), with n the number of simulated markets behind the number (the "
        "`n` column below). Reproduce with `nox -s calibrate`.",
        "",
        "**Targets** (issue #10): one-sided 5% test size at most "
        f"{SIZE_TARGET:.0%}; stated interval coverage within {COVERAGE_TOLERANCE * 100:.0f} "
        "points of its nominal level; no-effect markets called *closed* or *displaced* at most "
        f"{FALSE_CLOSED_TARGET:.0%}; sustained -45% closures called *closed* at least "
        f"{DETECTION_TARGET:.0%} where the market averages at least {TARGET_RATE:g} drug "
        f"incidents a month with at least {TARGET_POST_MONTHS} post months. The test level is "
        f"alpha = {ALPHA:g} throughout.",
        "",
        "**Designs.** `sc`, `sdid`, `did`, `cits`, `its` (and `microsynth` where the study "
        "has covariates) are fitted exactly as at sites; `primary` is whichever of them the "
        "primary-design rule chose at each market, the one the verdict reads; `verdict` is the "
        "market-closure rule. `sc_previous` is the site-level synthetic control as configured "
        "before issue #10 (SDID's full ridge on the weights and the placebo statistic "
        "standardised by the pre-period RMSPE), fitted to the same markets for comparison. "
        "`median_mde` is the median minimum detectable reduction the design reports (80% power, "
        "one-sided 5% test).",
        "",
        "## Scenarios",
        "",
        "| scenario | description | cities | markets |",
        "|---|---|---:|---:|",
    ]
    for sc in scenarios:
        n_markets = int(
            rows.loc[rows["scenario"] == sc.id, ["city", "site"]].drop_duplicates().shape[0]
        )
        lines.append(f"| {sc.id} | {sc.description} | {sc.n_cities} | {n_markets} |")
    lines += ["", "## Primary design and verdict, by scenario", ""]
    for sc in scenarios:
        sub = table[(table["scenario"] == sc.id) & table["design"].isin(["primary", "verdict"])]
        if sub.empty:
            continue
        primaries = rows[(rows["scenario"] == sc.id) & (rows["design"] == "primary")]["primary"]
        used = ", ".join(f"{k} ({v})" for k, v in primaries.value_counts().sort_index().items())
        lines += [f"### {sc.id}", "", f"Primary design used: {used or 'none'}.", ""]
        lines += _table(sub)
        missed = sub[sub["met"].astype(str) == "False"]
        if missed.empty:
            lines += ["", "Every target with a number is met in this scenario.", ""]
        else:
            lines += [""]
            for _, r in missed.iterrows():
                lines.append(
                    f"- **Missed**: {r['design']} {_words(r['quantity'])}: {_fmt(r['value'])} "
                    f"(target {r['target']}, Monte Carlo SE {_fmt(r['mc_se'])})."
                )
            lines.append("")
    lines += ["## Every design, every scenario", ""]
    lines += _table(table[table["design"] != "verdict"])
    lines.append("")
    return "\n".join(lines)


def _table(frame: pd.DataFrame) -> list[str]:
    out = [
        "| design | scenario | quantity | value | mc_se | n | target | met |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for _, r in frame.iterrows():
        met = "" if r["met"] == "" else ("yes" if bool(r["met"]) else "**no**")
        out.append(
            f"| {r['design']} | {r['scenario']} | {_words(r['quantity'])} | {_fmt(r['value'])} | "
            f"{_fmt(r['mc_se'])} | {int(r['n'])} | {r['target']} | {met} |"
        )
    return out


def write_outputs(
    table: pd.DataFrame,
    rows: pd.DataFrame,
    scenarios: Sequence[Scenario],
    out: str | Path,
    *,
    seed: int,
) -> tuple[Path, Path]:
    """Write ``results/calibration.csv`` and ``appendix/calibration.md`` under ``out``."""
    out = Path(out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "appendix").mkdir(parents=True, exist_ok=True)
    csv = out / "results" / "calibration.csv"
    calibration_frame(table).to_csv(csv, index=False, lineterminator="\n")
    md = out / "appendix" / "calibration.md"
    md.write_text(calibration_markdown(table, rows, scenarios, seed=seed), encoding="utf-8")
    return csv, md
