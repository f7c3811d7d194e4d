"""Write ``results/calibration.csv`` and ``appendix/calibration.md`` (deterministic text)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from dmi_eval.calibration.accuracy import accuracy_note
from dmi_eval.calibration.runner import Scenario
from dmi_eval.calibration.summary import (
    ALPHA,
    CALIBRATION_COLUMNS,
    COVERAGE_TOLERANCE,
    DETECTION_TARGET,
    FALSE_CLOSED_TARGET,
    MIN_JUDGED,
    SIZE_TARGET,
    TARGET_POST_MONTHS,
    TARGET_RATE,
    binomial_se,
    target_of,
)
from dmi_eval.config import VerdictRules
from dmi_eval.render import markdown_to_html
from dmi_eval.verdict import BASES

_RULES = VerdictRules()

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
    "catchment_size": (
        "markets whose catchment had no effect with a significant rise there (the catchment's "
        "one-sided 5% test of a rise)"
    ),
    "catchment_coverage": "coverage of the catchment's stated interval (its true change inside)",
    "displaced_not_ruled_out": (
        "+35% catchment rises the test missed that its interval still reaches (the verdict "
        "says a rise up to the interval's upper end is not ruled out)"
    ),
    "median_mde": "median minimum detectable reduction reported by the design",
    "error_rmse_45": "root mean square error of the estimated log change, sustained -45% markets",
    "power_45_if_exact": "power at a sustained -45% of a test of exact size with errors that large",
    "detection_error_rmse": "the same error at the markets of the detection target",
    "detection_if_exact": "that power at the markets of the detection target (primary design)",
    "detection_tested": "markets of the detection target whose primary test rejected",
    "held_45": (
        "sustained -45% markets whose last-window change is still a drop of at least "
        f"{_RULES.lasting_drop():.1%} (the persistence test)"
    ),
    "held_fading": (
        "-45% drops that fade after 6 months whose last-window change is still a drop of at "
        f"least {_RULES.lasting_drop():.1%}"
    ),
    "detectable_null": (
        f"no-effect markets where the design could have detected a {_RULES.min_reduction:.0%} "
        "drop (MDE and smallest attainable p)"
    ),
    "fading_closed": "fading closures called closed (-45% for 6 months, then back to normal)",
    "spike_null": (
        "no-effect markets whose pre period ends in a spike against their comparison areas "
        "(the verdict's check)"
    ),
    "spike_own_null": (
        "no-effect markets whose pre period ends in a spike against their own earlier level "
        "(the check before, not used)"
    ),
    "spike_plant_50": (
        "no-effect markets with a planted +50% spike of the market alone over its last three "
        "pre months: flagged"
    ),
    "spike_plant_100": (
        "no-effect markets with a planted +100% spike of the market alone over its last three "
        "pre months: flagged"
    ),
    "spike_shared_50": "the whole city +50% over those months (a shared level shift): flagged",
    "spike_shared_100": "the whole city +100% over those months (a shared level shift): flagged",
    "spike_shared_own_50": (
        "the whole city +50% over those months: flagged by the check against the market's own "
        "level (not used)"
    ),
    "spike_shared_own_100": (
        "the whole city +100% over those months: flagged by the check against the market's own "
        "level (not used)"
    ),
    "spike_closure": (
        "sustained -45% closures whose pre period ends in a spike against their comparison areas"
    ),
}


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.3f}"


def quantity_words(quantity: str) -> str:
    """A calibration quantity in words (``coverage_90`` -> the coverage of the 90% interval)."""
    if quantity.startswith("coverage_"):
        return f"coverage of the stated {quantity.split('_')[1]}% interval (true post-period change inside)"
    if quantity.startswith("share_"):
        label = quantity[len("share_") : -len("_null")]
        return f"no-effect markets called {label.replace('_', ' ')}"
    if quantity.startswith("closure_share_"):
        label = quantity[len("closure_share_") :]
        return f"sustained -45% closures called {label.replace('_', ' ')}"
    if quantity.startswith("null_basis_"):
        basis = quantity[len("null_basis_") :]
        return f"no-effect markets decided by: {BASES.get(basis, basis)}"
    if quantity.startswith("closure_basis_"):
        basis = quantity[len("closure_basis_") :]
        return f"sustained -45% closures decided by: {BASES.get(basis, basis)}"
    return _QUANTITY_WORDS.get(quantity, quantity)


def calibration_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The ``calibration.csv`` columns, in order."""
    out = table.copy()
    out["met"] = out["met"].map(lambda m: "" if m == "" else str(bool(m)).lower())
    return out[list(CALIBRATION_COLUMNS)]


def run_facts_text(facts: Mapping[str, float], n_markets: int, n_cities: int) -> str:
    """The run's wall-clock time, workers and load average, in one sentence."""
    load = facts.get("load")
    load_text = ""
    if load is not None:
        one, five, fifteen = load  # type: ignore[misc]
        load_text = (
            f"; load average at the end of the run {one:.1f} / {five:.1f} / {fifteen:.1f} "
            f"(1 / 5 / 15 minutes) on {int(facts.get('cores', 0))} cores"
        )
    return (
        f"**This run**: {n_markets} simulated markets in {n_cities} cities, "
        f"{facts['minutes']:.1f} minutes wall clock with {int(facts.get('jobs', 1))} worker "
        f"processes{load_text}. These facts are the only text that changes between runs with "
        "the same seed."
    )


def within_mc_error(quantity: str, value: float, mc_se: float) -> bool:
    """Whether two Monte Carlo SEs either way of ``value`` would reverse its target's call."""
    target = target_of(quantity)
    if target is None or not (math.isfinite(value) and math.isfinite(mc_se)):
        return False
    met = target[1]
    return any(met(value + k * mc_se) != met(value) for k in (-2, 2))


def undetected_notes(table: pd.DataFrame, scenario_ids: Sequence[str]) -> list[str]:
    """For a judged scenario whose markets never meet the detection target's conditions: what
    became of its sustained -45% closures (so that the missing target is not read as met)."""
    out = []
    for sc in scenario_ids:
        sub = table[(table["scenario"] == sc) & (table["design"] == "verdict")]
        if (sub["quantity"] == "detection_target").any():
            continue
        got = sub.set_index("quantity")
        if "detection" not in got.index:
            continue
        parts = [f"*closed* {_fmt(got.loc['detection', 'value'])}"]
        for label in ("inconclusive", "not_closed", "displaced"):
            q = f"closure_share_{label}"
            if q in got.index and got.loc[q, "value"] > 0:
                parts.append(f"*{label.replace('_', ' ')}* {_fmt(got.loc[q, 'value'])}")
        out.append(
            f"- Not judged: detection in {sc}, whose markets never have "
            f"{TARGET_POST_MONTHS} post months; its sustained -45% closures (n = "
            f"{int(got.loc['detection', 'n'])}) were called " + ", ".join(parts) + "."
        )
    return out


def primary_note(rows: pd.DataFrame) -> list[str]:
    """Which designs the primary-design rule chose across the study: what `primary` calibrates."""
    used = rows.loc[rows["design"] == "primary", "primary"].dropna().astype(str)
    if used.empty:
        return []
    counts = used.value_counts()
    if len(counts) == 1:
        only = str(counts.index[0])
        return [
            f"Across every scenario the primary-design rule chose `{only}` at all "
            f"{int(counts.iloc[0])} markets, so the `primary` rows calibrate `{only}` as primary; "
            "the rule's other choices are calibrated here only as designs of their own "
            "(their rows), not as primary. No scenario has quarterly data.",
            "",
        ]
    listed = ", ".join(f"`{k}` at {v}" for k, v in counts.items())
    return [
        f"Across every scenario the primary-design rule chose {listed} markets. "
        "No scenario has quarterly data.",
        "",
    ]


def _target_lines(frame: pd.DataFrame) -> list[str]:
    """One line per target: met or missed, with the number (and whether within MC error)."""
    out = []
    for _, r in frame[frame["met"].astype(str).isin(["True", "False"])].iterrows():
        verdict = "Met" if str(r["met"]) == "True" else "**Missed**"
        close = (
            ", *within Monte Carlo error*"
            if within_mc_error(str(r["quantity"]), float(r["value"]), float(r["mc_se"]))
            else ""
        )
        out.append(
            f"- {verdict}: {r['design']}, {r['scenario']}, {quantity_words(r['quantity'])}: "
            f"{_fmt(r['value'])} (target {r['target']}, Monte Carlo SE {_fmt(r['mc_se'])}, "
            f"n = {int(r['n'])}{close})."
        )
    return out


SCENARIO_MISS_NOTES: dict[str, str] = {
    "monthly-exposed": (
        "*monthly-exposed* is a stress: each market's own loading on the city factors deviates "
        "twice as far as an area's, and the factors move faster. The market's pre-period fit "
        "absorbs that deviation, so neither its comparison areas nor its own pre period show "
        "it (the studies are in the notes of `dmi_eval.designs.synth.joint`); after the "
        "call-in it drifts further than the placebo areas whose drift sets its interval, so "
        "the interval is too narrow and the one-sided test rejects more often than 5% at "
        "no-effect markets. `dmi-eval power STUDY --site ID --exposure 2` gives the verdict's "
        "error rates at a site like yours if it is this exposed."
    ),
}
"""Why a judged scenario misses its targets, printed under the target lines when it does."""


def miss_notes(frame: pd.DataFrame) -> list[str]:
    """What the missed targets mean: intervals that over-cover, and :data:`SCENARIO_MISS_NOTES`."""
    judged = frame[frame["met"].astype(str).isin(["True", "False"])]
    missed = judged[judged["met"].astype(str) == "False"]
    if missed.empty:
        return []
    out = ["", "What the misses mean:", ""]
    cover = missed[missed["quantity"].str.startswith("coverage_")]
    wide = sorted(
        {
            str(r["scenario"])
            for _, r in cover.iterrows()
            if r["value"] > int(str(r["quantity"]).split("_")[1]) / 100
        }
    )
    if wide:
        out.append(
            f"- Where a stated interval covers more often than its level ({', '.join(wide)}), "
            "it is wider than it need be: conservative, it makes a false *closed* less likely "
            "and a missed closure more likely. It is wider because the market's statistic "
            "spreads less than those of the single-area placebos that set the interval "
            "(measured in the notes of `dmi_eval.inference.noise`)."
        )
    for scenario in dict.fromkeys(missed["scenario"].astype(str)):
        if scenario in SCENARIO_MISS_NOTES:
            out.append(f"- {SCENARIO_MISS_NOTES[scenario]}")
    detection = missed[missed["quantity"] == "detection_target"]
    for scenario in detection["scenario"].astype(str):
        out.extend(accuracy_note(frame, scenario, target=DETECTION_TARGET))
    return out if len(out) > 3 else []


def closure_table(rows: pd.DataFrame) -> list[str]:
    """Why sustained -45% closures got the verdict they got, by scenario and deciding condition.

    One line per scenario and :data:`dmi_eval.verdict.BASES` code: how many
    sustained -45% closures the verdict decided that way, and the medians of
    the primary design's change, one-sided ``p_lower`` and MDE at those
    markets, and how many of them had the pre-period spike warning.
    """
    verdict = rows[(rows["design"] == "verdict") & (rows["effect"] == "-45% sustained")]
    primary = rows[(rows["design"] == "primary") & (rows["effect"] == "-45% sustained")]
    keys = ["scenario", "city", "site"]
    both = verdict[[*keys, "basis", *(["spike"] if "spike" in verdict else [])]].merge(
        primary[[*keys, "pct_change", "p_lower", "mde"]], on=keys, how="left"
    )
    out = [
        "| scenario | decided by | markets | median change | median p_lower | median MDE "
        "| spike warning |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scenario, by_s in both.groupby("scenario", sort=False):
        for basis, g in by_s.groupby("basis", sort=True):
            spikes = int(g["spike"].eq(True).sum()) if "spike" in g else 0
            out.append(
                f"| {scenario} | {BASES.get(str(basis), str(basis))} | {len(g)} | "
                f"{g['pct_change'].median():+.1%} | {_fmt(float(g['p_lower'].median()))} | "
                f"{_fmt(float(g['mde'].median()))} | {spikes} |"
            )
    return out


def calibration_markdown(
    table: pd.DataFrame,
    rows: pd.DataFrame,
    scenarios: Sequence[Scenario],
    *,
    seed: int,
    facts: Mapping[str, float] | None = None,
) -> str:
    """The calibration appendix: targets, per-scenario verdict and primary-design tables.

    ``facts`` (``minutes``, ``jobs``, ``load``, ``cores``) describe the run; without
    them the text is a function of the table alone (byte-identical for one seed).
    """
    n_markets = int(rows[["scenario", "city", "site"]].drop_duplicates().shape[0])
    n_cities = int(rows[["scenario", "city"]].drop_duplicates().shape[0])
    rules = _RULES
    judged = [sc for sc in scenarios if sc.judged]
    sensitivity = [sc for sc in scenarios if not sc.judged]
    judged_ids = [sc.id for sc in judged]
    judged_rows = rows[rows["scenario"].isin(judged_ids)]
    judged_table = table[table["scenario"].isin(judged_ids)]
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
        "city's nine markets are assigned where the targets are judged: no effect (four) and a "
        "sustained -45% drop (four); the ninth is, in turn from city to city, a sustained -25% "
        "drop, a -45% drop that fades after 6 months, or a -45% drop displaced into the "
        "catchment (+35%).",
        "",
        f"Seed {seed}. Monte Carlo standard errors (`mc_se`) are binomial, "
        "sqrt(p (1 - p) / n), with n the number of simulated markets behind the number (the "
        "`n` column of the tables below), floored at 0.5 / n so that a share of 0 or 1 does "
        "not read as exact. A target is judged on the point estimate, and only from at least "
        f"{MIN_JUDGED} markets (`met` is blank below that); a call that two Monte "
        "Carlo SEs either way would reverse is marked *within Monte Carlo error*. Reproduce with "
        + (
            "`nox -s calibrate -- --sensitivity` (`nox -s calibrate` runs the four judged "
            "scenarios alone and leaves out the sensitivity section)."
            if sensitivity
            else "`nox -s calibrate`."
        ),
        "",
        *([run_facts_text(facts, n_markets, n_cities), ""] if facts else []),
        "**The verdict's persistence test.** A significant post-period drop of at least "
        f"{rules.min_reduction:.0%} is called *closed* only if it held: over the last 6 months "
        "the primary design's estimated change is still a drop of at least "
        f"{rules.lasting_drop():.1%} ({rules.lasting_share:g} of {rules.min_reduction:.0%}, "
        "`[verdict] lasting_share`). It is not tested for significance on its own: the "
        "row `power at a sustained -45% over the persistence window` shows how often a "
        "test on those months alone reaches p < 0.05, against the post-period test's power "
        "in the row above it. `held_45` and `held_fading` are the "
        "persistence test on sustained and on fading drops; `fading_closed` is how often a "
        "-45% drop that fades after 6 months is still called *closed* (it should not be). "
        "*Not closed* is said only where the design could have detected a "
        f"{rules.min_reduction:.0%} drop or its interval rules one out; `detectable_null` is "
        "the share of no-effect markets where the design's MDE allowed it, and the "
        "`decided by` rows give the condition behind each no-effect market's verdict. "
        f"`min_expected_count` is {rules.min_expected_count:g} incidents a month, "
        "converted to weeks for weekly data.",
        "",
        "**The pre-period spike check.** A closure is not claimed when the market's pre "
        "period ends in a spike that would regress to the mean: over its last three months "
        "the market ran at least "
        f"{rules.min_reduction:.0%} higher against the total of its comparison areas than "
        "over the year before, at one-sided level 0.01 (`dmi_eval.spike.pre_period_spike`). "
        "It is asked against the comparison areas, not against the market's own earlier "
        "level, because a rise they share (a level shift of a random-walk city factor) is in "
        "the counterfactual too and does not regress against it; and not against the "
        "design's fitted counterfactual, because a synthetic control fitted over the whole "
        "pre period picks donors that were high in the same months and absorbs much of a "
        "spike. "
        "`spike_null` is how often the check fires at no-effect markets, `spike_own_null` how "
        "often the same test against the market's own level would, and `spike_closure` how "
        "often it fires at a true closure (it stops one only where the rest of the rule held). "
        "At every no-effect market the study also plants "
        "spikes: the market alone +50% or +100% over its last three pre months "
        "(`spike_plant_*`: how often the check flags them; a three-month spike of counts this "
        "small is often within their noise), and the whole city +50% or +100% over "
        "those months (`spike_shared_*`: a shared level shift the check should not flag; "
        "`spike_shared_own_*`: how often the check against the market's own level would).",
        "",
        "**The displacement test.** A market that fell is called *displaced* when its "
        "catchment (the ring of areas around it) rose significantly: the catchment is fitted "
        "as the market is, with the primary design, and its one-sided test of a rise is read. "
        "`catchment_size` is how often that test reads a rise where the catchment had none "
        "(every market but the displaced ones), `catchment_coverage` how often its stated "
        "interval holds the catchment's true change, and `displaced_detected` how often a "
        "+35% rise next to a -45% closure is found. Where the test finds no rise the verdict "
        "says how large a rise the interval still allows; `displaced_not_ruled_out` is how "
        "often that sentence holds a +35% rise the test missed. The catchment's interval has "
        "the primary design's level (90% for the synthetic control). These rows are not "
        "judged against the issue's targets: the catchment's placebos are single areas, which "
        "drift more than a ring of them, so its test is conservative (size below 5%, coverage "
        "above its level) and misses many displacements; the references of ring-sized "
        "placebo groups that were tried are in the notes of `dmi_eval.inference.noise`.",
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
        "one-sided 5% test). `microsynth` can be fitted only where exact balance is reachable, "
        "which these hot-spot markets rarely allow, so its rows rest on a handful of markets: "
        "it is a robustness check, never the primary design, and its calibration where it can "
        "be fitted is in [calibration_microsynth.md](calibration_microsynth.md) "
        "(`nox -s calibrate -- --microsynth`).",
        "",
        *primary_note(rows),
        "## Targets, met or missed",
        "",
        "The primary design and the verdict, every scenario:",
        "",
        *_target_lines(judged_table[judged_table["design"].isin(["primary", "verdict"])]),
        *undetected_notes(judged_table, [sc.id for sc in judged]),
        *miss_notes(judged_table[judged_table["design"].isin(["primary", "verdict"])]),
        "",
        "## Scenarios",
        "",
        "| scenario | description | cities | markets |",
        "|---|---|---:|---:|",
    ]
    for sc in judged:
        lines.append(f"| {sc.id} | {sc.description} | {sc.n_cities} | {_n_markets(rows, sc.id)} |")
    lines += ["", "## Primary design and verdict, by scenario", ""]
    for sc in judged:
        sub = table[(table["scenario"] == sc.id) & table["design"].isin(["primary", "verdict"])]
        if sub.empty:
            continue
        primaries = rows[(rows["scenario"] == sc.id) & (rows["design"] == "primary")]["primary"]
        used = ", ".join(f"{k} ({v})" for k, v in primaries.value_counts().sort_index().items())
        lines += [f"### {sc.id}", "", f"Primary design used: {used or 'none'}.", ""]
        lines += _table(sub)
        missed = sub[sub["met"].astype(str) == "False"]
        met = sub[sub["met"].astype(str) == "True"]
        lines += [
            "",
            f"Targets here: {len(met)} met, {len(missed)} missed (see *Targets, met or missed*).",
            "",
        ]
    lines += [
        "## Why sustained closures are or are not called closed",
        "",
        "Every sustained -45% closure, by the condition that decided its verdict "
        "(`closure_basis_*` in calibration.csv), with the primary design's estimate there. "
        "*No significant reduction* means the primary design's one-sided p_lower was at least "
        f"{ALPHA:g}; a median MDE above 0.45 means the design could not, with 80% power, "
        "have detected the drop that was planted; *a closure with a failed check* means the "
        "reduction met the rule but a pre-trend, in-time placebo or pre-period spike warning "
        "stood (the last column counts the spike warnings).",
        "",
        *closure_table(judged_rows),
        "",
    ]
    if sensitivity:
        lines += sensitivity_section(table, rows, sensitivity)
    lines += ["## Every design, every scenario", ""]
    lines += _table(judged_table[judged_table["design"] != "verdict"])
    lines.append("")
    return "\n".join(lines)


_SENSITIVITY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("primary", "size", "primary: size"),
    ("primary", "coverage", "primary: coverage of its interval"),
    ("primary", "power_45", "primary: power at -45%"),
    ("verdict", "false_closed_displaced", "verdict: false closed or displaced"),
    (
        "verdict",
        "detection_target",
        f"verdict: -45% called closed ({TARGET_RATE:g}+ a month, {TARGET_POST_MONTHS}+ months)",
    ),
    ("verdict", "closure_share_inconclusive", "verdict: -45% called inconclusive"),
    ("verdict", "closure_share_not_closed", "verdict: -45% called not closed"),
)


def _n_markets(rows: pd.DataFrame, scenario: str) -> int:
    """Simulated markets of one scenario in the runner's rows."""
    return int(rows.loc[rows["scenario"] == scenario, ["city", "site"]].drop_duplicates().shape[0])


def sensitivity_section(
    table: pd.DataFrame, rows: pd.DataFrame, scenarios: Sequence[Scenario]
) -> list[str]:
    """The appendix section on the sensitivity scenarios: one row each, no targets judged."""
    n_cities = sorted({sc.n_cities for sc in scenarios})
    cities = ", ".join(str(n) for n in n_cities) + (" city" if n_cities == [1] else " cities")
    out = [
        "## Sensitivity: cities unlike the four scenarios",
        "",
        "Each of these scenarios changes the simulated city in one respect (weekly-short: "
        "the frequency, post period, grid and years of data; small-city: the grid and the "
        "number of markets; small-markets: the markets' size and rate; the others one "
        "setting) and runs the same site path "
        f"on {cities} each (seeds continue after the four scenarios'). Each is too small "
        "to judge the targets, so none is judged here; a number in **bold** is on the wrong "
        "side of the four scenarios' target: read it with its Monte Carlo SE (in brackets, "
        "then n), and read the bold numbers together, below the table. The coverage is of the primary design's "
        "stated interval (90% for the synthetic control). The last two columns are shares "
        "of all sustained -45% closures: called *inconclusive* (the data could not tell, "
        "e.g. the design could not have detected the drop), the honest answer to a miss, "
        "and called *not closed*, the wrong plain one; the rest were called *closed* or "
        "*displaced* (`closure_share_*` and `closure_basis_*` in the csv). A blank "
        "detection cell means no market of the scenario had the post months the target "
        "needs. Every design's numbers are in `results/calibration.csv`.",
        "",
        "| scenario | what changes | cities | markets | "
        + " | ".join(label for _, _, label in _SENSITIVITY_COLUMNS)
        + " |",
        "|---|---|---:|---:|" + "---:|" * len(_SENSITIVITY_COLUMNS),
    ]
    flagged: dict[str, list[str]] = {}
    for sc in scenarios:
        sub = table[table["scenario"] == sc.id]
        cells = []
        for design, quantity, label in _SENSITIVITY_COLUMNS:
            mine = sub[sub["design"] == design]
            if quantity == "coverage":
                mine = mine[mine["quantity"].str.startswith("coverage_")]
            else:
                mine = mine[mine["quantity"] == quantity]
            if mine.empty:
                cells.append("")
                continue
            r = mine.iloc[0]
            text = f"{_fmt(r['value'])} ({_fmt(r['mc_se'])}; {int(r['n'])})"
            target = target_of(str(r["quantity"]))
            if target is not None and not target[1](float(r["value"])):
                cells.append(f"**{text}**")
                flagged.setdefault(label, []).append(f"{sc.id} {_fmt(r['value'])}")
            else:
                cells.append(text)
        out.append(
            f"| {sc.id} | {sc.description} | {sc.n_cities} | {_n_markets(rows, sc.id)} | "
            + " | ".join(cells)
            + " |"
        )
    out.append("")
    if flagged:
        parts = [f"{label}: {', '.join(items)}" for label, items in flagged.items()]
        out += ["On the wrong side of a target (" + "; ".join(parts) + ").", ""]
    else:
        out += ["No number is on the wrong side of a target.", ""]
    out += pooled_sensitivity(table, [sc.id for sc in scenarios])
    return out


def pooled_sensitivity(table: pd.DataFrame, scenario_ids: Sequence[str]) -> list[str]:
    """The sensitivity scenarios read together: pooled detection and how many over-cover."""
    sub = table[table["scenario"].isin(scenario_ids)]
    det = sub[(sub["design"] == "verdict") & (sub["quantity"] == "detection_target")]
    det = det[det["n"] > 0]
    out = []
    if not det.empty:
        n = int(det["n"].sum())
        hits = int(round(float((det["value"] * det["n"]).sum())))
        share = hits / n
        se = binomial_se(share, n)
        met = target_of("detection_target")[1]
        out.append(
            f"Read together, the sensitivity scenarios called {hits} of their {n} sustained "
            f"-45% closures that meet the target's conditions *closed*: {_fmt(share)} (Monte "
            f"Carlo SE {_fmt(se)}), against the target of {DETECTION_TARGET:g}"
            + (
                ": the verdict detects fewer closures in cities unlike the four scenarios."
                if not met(share + 2 * se)
                else "."
            )
        )
    cov = sub[(sub["design"] == "primary") & sub["quantity"].str.startswith("coverage_")]
    if not cov.empty:
        level = cov["quantity"].map(lambda q: int(str(q).split("_")[1]) / 100)
        wide = int((cov["value"] > level + COVERAGE_TOLERANCE).sum())
        narrow = int((cov["value"] < level - COVERAGE_TOLERANCE).sum())
        out.append(
            f"The primary design's interval covered more than its level allows in {wide} of "
            f"{len(cov)} scenarios and less in {narrow}."
        )
    return [" ".join(out), ""] if out else []


def _table(frame: pd.DataFrame) -> list[str]:
    out = [
        "| design | scenario | quantity | value | mc_se | n | target | met |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for _, r in frame.iterrows():
        met = "" if r["met"] == "" else ("yes" if bool(r["met"]) else "**no**")
        out.append(
            f"| {r['design']} | {r['scenario']} | {quantity_words(r['quantity'])} | {_fmt(r['value'])} | "
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
    facts: Mapping[str, float] | None = None,
) -> tuple[Path, Path]:
    """Write ``results/calibration.csv`` and ``appendix/calibration.md`` (and its HTML page) under ``out``.

    ``facts``: the run's ``minutes``, ``jobs``, ``load`` and ``cores``, stated in the appendix.
    """
    page = calibration_markdown(table, rows, scenarios, seed=seed, facts=facts)
    return write_table_and_page(out, "calibration", calibration_frame(table), page)


def write_table_and_page(
    out: str | Path, name: str, table: pd.DataFrame, page: str
) -> tuple[Path, Path]:
    """``results/NAME.csv`` and ``appendix/NAME.md`` (and its HTML page) under ``out``."""
    out = Path(out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "appendix").mkdir(parents=True, exist_ok=True)
    csv = out / "results" / f"{name}.csv"
    table.to_csv(csv, index=False, lineterminator="\n")
    md = out / "appendix" / f"{name}.md"
    md.write_text(page, encoding="utf-8")
    markdown_to_html(md)
    return csv, md
