"""Report tables: numbers come from the frames; small counts can be suppressed; tables stay
narrow, right-aligned, and never print an absurd interval."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from dmi_eval.results import effects_frame
from dmi_eval.tables import (
    DESIGN_CAVEATS,
    DESIGN_LABELS,
    TOO_WIDE,
    effects_table,
    fmt_count,
    fmt_interval,
    fmt_p,
    fmt_pct,
    interval_too_wide,
    without_capped_window,
)

ROW = {
    "site": "s",
    "outcome": "drug",
    "design": "sc",
    "window": "post",
    "observed": 3.0,
    "counterfactual": 12.4,
    "effect": -9.4,
    "pct_change": -0.758,
    "ci_low": -0.9,
    "ci_high": -0.2,
    "p_value": 0.0004,
    "method": "placebo 90%, one-sided",
}


def cells(table: str) -> list[list[str]]:
    lines = [line for line in table.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_an_interval_holds_a_change_of_minus_100_percent_when_nothing_was_seen():
    zero = {**ROW, "observed": 0.0, "effect": -12.4, "pct_change": -1.0, "ci_low": -0.95}
    frame = effects_frame([zero, ROW])
    # no incident: the data cannot rule out a complete stop, so the interval starts at -100%
    assert frame["ci_low"].tolist() == [-1.0, ROW["ci_low"]]
    assert frame["ci_high"].tolist() == [ROW["ci_high"], ROW["ci_high"]]


def test_formatting():
    assert fmt_pct(-0.253) == "-25%"
    # a change that rounds to nothing is shown without a sign
    assert fmt_pct(-0.004) == "0%" and fmt_pct(0.004) == "0%" and fmt_pct(-0.006) == "-1%"
    assert fmt_pct(-0.0004, 1) == "0.0%" and fmt_interval(-0.7, -0.004) == "-70% to 0%"
    assert fmt_interval(-0.4, 0.05) == "-40% to +5%"
    assert fmt_p(0.0004) == "<0.001" and fmt_p(0.0312) == "0.031"
    assert fmt_count(1234.0) == "1,234" and fmt_count(12.4) == "12.4"


def test_suppression_hides_small_counts_but_not_estimates():
    frame = effects_frame([ROW])
    public = effects_table(frame, suppress_below=5)
    assert "<5" in cells(public)[2] and "3" not in cells(public)[2]
    assert "12.4" in public and "-76%" in public  # estimates unchanged
    assert "3" in cells(effects_table(frame))[2]


def test_method_once_per_design_numbers_right_aligned_and_narrow():
    rows = [
        {**ROW, "outcome": o, "window": w, "method": f"{d} method text"} | {"design": d}
        for d in ("sc", "its")
        for o in ("drug", "violent")
        for w in ("post", "last6")
    ]
    text = effects_table(effects_frame(rows), unit="month", outcome_label=lambda o: f"{o} crimes")
    table = cells(text)
    header, rule = table[0], table[1]
    assert len(header) <= 8 and "method" not in header
    assert text.count("sc method text") == 1 and text.count("its method text") == 1
    assert header[0] == "outcome" and table[2][0] == "drug crimes"
    for name, align in zip(header, rule, strict=True):
        numeric = name in {"observed", "expected without the DMI", "change", "interval", "p"}
        assert align.endswith(":") == numeric, name
    assert "last 6 months" in text and "synthetic control" in text
    assert max(len(line) for line in text.splitlines() if line.startswith("|")) < 160
    # each design's limit is said once, where its p-value is printed, after its own method
    assert text.count("a city-wide change after the call-in reads as an effect") == 1
    sc_note = next(line for line in text.splitlines() if line.startswith("- **synthetic control"))
    assert sc_note == f"- **synthetic control**: sc method text; {DESIGN_CAVEATS['sc']}."


def test_a_table_that_mixes_interval_levels_states_each_cells_level():
    rows = [ROW, {**ROW, "design": "did"}]
    mixed = effects_table(effects_frame(rows).assign(level=[0.9, 0.95]))
    body = cells(mixed)[2:]
    assert body[0][-2].endswith("(90%)") and body[1][-2].endswith("(95%)")
    same = effects_table(effects_frame(rows).assign(level=0.9))
    assert "(90%)" not in same and "(90%)" not in effects_table(effects_frame(rows))


def test_absurd_intervals_are_too_wide_to_tell_with_the_reason():
    assert interval_too_wide(-1.0, 2796412.2) and not interval_too_wide(-0.62, -0.43)
    assert interval_too_wide(float("nan"), 0.1)
    rows = [ROW, {**ROW, "design": "cits", "ci_low": -1.0, "ci_high": 2796412.2}]
    text = effects_table(effects_frame(rows))
    assert "279641220" not in text
    assert f"{TOO_WIDE}*" in text
    assert re.search(
        rf"\*{TOO_WIDE}\*: the interval \(controlled interrupted time series: "
        r"-100% to beyond \+500%\)",
        text,
    )
    assert "-90% to -20%" in text


def test_p_column_is_the_requested_tail():
    frame = effects_frame([ROW]).assign(p_lower=0.017, p_upper=0.983)
    assert "p (rise)" in effects_table(frame, p="p_upper") and "0.983" in effects_table(
        frame, p="p_upper"
    )
    assert "p (fall)" in effects_table(frame) and "0.017" in effects_table(frame)


def test_method_notes_leave_the_tail_to_the_p_column():
    methods = {
        "sc": "placebo rank test over 80 areas, lower, one-sided; 90% interval inverting the test",
        "did": "placebo rank test over the control areas, two-sided; 95% interval inverting it",
        "its": "quasi-Poisson delta 95%, two-sided (t); test of log(observed/counterfactual)",
        "microsynth": "microsynth permutation (200 placebo sets) 90%, one-sided lower",
    }
    rows = [{**ROW, "design": d, "method": m} for d, m in methods.items()]
    text = effects_table(effects_frame(rows).assign(p_lower=0.02, p_upper=0.98), p="p_upper")
    notes = text.split("*Methods:*")[1]
    # the table's column is the rise for every design: no note may call it lower or two-sided
    assert "p (rise)" in text
    assert "sided" not in notes and "lower" not in notes
    assert "over 80 areas; 90% interval inverting the test" in notes
    assert "quasi-Poisson delta 95% (t); test of log(observed/counterfactual)" in notes
    assert "microsynth permutation (200 placebo sets) 90%." in notes


def test_method_notes_give_the_range_of_placebo_counts_a_design_ranked():
    text = "synthetic control; placebo-in-space rank test over {} placebo areas, lower, one-sided"
    rows = [
        {**ROW, "design": "sc", "outcome": o, "window": w, "method": text.format(n)}
        for o, w, n in (("drug", "post", 93), ("drug", "last6", 80), ("violent", "post", 1012))
    ] + [{**ROW, "design": "sdid", "method": text.format(87)}]
    notes = effects_table(effects_frame(rows)).split("*Methods:*")[1]
    # one note per design, and it may not give the first row's 93 for all three
    assert "over 80 to 1,012 placebo areas (by outcome and window" in notes
    assert "over 93 placebo areas" not in notes
    assert "over 87 placebo areas" in notes  # one count: stated as is


CALIBRATION = Path(__file__).parents[1] / "reports" / "results" / "calibration.csv"


def _misses(design: str) -> dict[str, bool]:
    """Which ways ``design`` misses its size / coverage targets in the committed calibration."""
    table = pd.read_csv(CALIBRATION, keep_default_na=False)
    judged = table[(table["design"] == design) & (table["met"].astype(str).str.lower() == "false")]
    size = judged["quantity"] == "size"
    cover = judged["quantity"].str.startswith("coverage")
    low, high = judged["target"].str.extract(r"([\d.]+)-([\d.]+)").astype(float).T.values
    value = judged["value"].astype(float).values
    return {
        "liberal": bool(size.any() or (cover & (value < low)).any()),
        "conservative": bool((cover & (value > high)).any()),
    }


def test_every_design_that_missed_a_calibration_target_says_so_under_its_table():
    # a caveat neither goes missing nor outlives the calibration that justified it
    for design in DESIGN_LABELS:
        missed = _misses(design)
        caveat = DESIGN_CAVEATS.get(design, "")
        if not any(missed.values()):
            assert design not in DESIGN_CAVEATS, design
            continue
        assert "calibration appendix" in caveat, design
        assert missed["liberal"] == ("more often than its nominal level" in caveat), design
        assert missed["conservative"] == ("wider than its stated level" in caveat), design


def test_the_catchment_caveat_says_what_the_calibration_found_for_catchments():
    table = pd.read_csv(CALIBRATION, keep_default_na=False)
    judged = table.loc[(table["design"] == "sc") & (table["met"] != ""), "scenario"].unique()
    catch = table[(table["quantity"] == "catchment_coverage") & table["scenario"].isin(judged)]
    # the catchment's interval is the SC's 90% one: above the SC target's upper end, 0.93
    conservative = bool((catch["value"].astype(float) > 0.93).all())
    assert len(catch) == len(judged) >= 4
    caveat = DESIGN_CAVEATS["sc-catchment"]
    assert conservative == ("wider than its stated level" in caveat)
    assert "more often than its nominal level" not in caveat


def test_a_persistence_window_as_long_as_the_post_period_is_not_shown_apart():
    effects = pd.DataFrame(
        {
            "design": ["sc", "sc", "did", "did"],
            "window": ["post", "last6", "post", "last6"],
            "pct_change": [-0.4, -0.4, -0.3, -0.3],
        }
    )
    # 4 post months: "last6" covers the same 4 months as "post" and is left out
    short = without_capped_window(effects, n_post=4, last_k=6)
    assert list(short["window"]) == ["post", "post"]
    assert list(without_capped_window(effects, n_post=6, last_k=6)["window"]) == ["post", "post"]
    # 7 post months: the last 6 are a window of their own
    assert without_capped_window(effects, n_post=7, last_k=6).equals(effects)
    # only the window of that length is left out
    two = effects.assign(window=effects["window"].str.replace("last6", "last2"))
    assert without_capped_window(two, n_post=4, last_k=6).equals(two)
    assert list(without_capped_window(two, n_post=2, last_k=2)["window"]) == ["post", "post"]
