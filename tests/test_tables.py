"""Report tables: numbers come from the frames; small counts can be suppressed."""

from __future__ import annotations

from dmi_eval.results import effects_frame
from dmi_eval.tables import effects_table, fmt_count, fmt_interval, fmt_p, fmt_pct

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


def test_formatting():
    assert fmt_pct(-0.253) == "-25%"
    assert fmt_interval(-0.4, 0.05) == "-40% to +5%"
    assert fmt_p(0.0004) == "<0.001" and fmt_p(0.0312) == "0.031"
    assert fmt_count(1234.0) == "1,234" and fmt_count(12.4) == "12.4"


def test_suppression_hides_small_counts_but_not_estimates():
    frame = effects_frame([ROW])
    public = effects_table(frame, suppress_below=5)
    assert "<5" in public and "| 3 " not in public
    assert "12.4" in public and "-76%" in public  # estimates unchanged
    assert "| 3 " in effects_table(frame)
