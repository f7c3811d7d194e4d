"""The study summary page (analyses/study_summary.py) as a user reads it.

The script is run in-process on the committed results of the synthetic study (copied to a
temporary folder, so reports/ is never written), without the fitted results: what it reads
is ``results/*.csv`` and the study's data.
"""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest

from dmi_eval.pooling import pool_effects
from dmi_eval.tables import fmt_pct

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def summary(project_root, tmp_path_factory):
    """The summary page's Markdown, run on a copy of reports/results."""
    out = tmp_path_factory.mktemp("summary")
    shutil.copytree(project_root / "reports" / "results", out / "results")
    return _run_summary(project_root, out), out


def _run_summary(project_root, out) -> str:
    """Run analyses/study_summary.py on ``out/results``; the Markdown it displays."""
    import IPython.display

    script = (project_root / "analyses" / "study_summary.py").read_text(encoding="utf-8")
    params = (
        f"study_path = {str(project_root / 'data' / 'synthetic' / 'study.toml')!r}\n"
        f"out_dir = {str(out)!r}\nresults_path = ''\n"
    )
    head, tail = script.split("# %%\nfrom pathlib import Path", 1)
    shown: list[str] = []
    mp = pytest.MonkeyPatch()
    mp.setattr(IPython.display, "display", lambda obj: shown.append(obj.data))
    try:
        exec(head + params + "# %%\nfrom pathlib import Path" + tail, {"__name__": "summary"})
    finally:
        mp.undo()
    return "\n".join(shown)


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0].strip()


def test_pooled_prose_says_whether_the_interval_includes_no_change(summary):
    text, out = summary
    pooled = _section(text, "Pooled effect across sites")
    effects = pd.read_csv(out / "results" / "effects.csv")
    sc = effects[
        (effects.design == "sc") & (effects.window == "post") & (effects.outcome == "drug")
    ]
    result = pool_effects(sc, design="sc")
    assert f"changed by {fmt_pct(result.pct_change)} on average" in pooled
    if result.includes_no_change:
        assert "The 95% interval includes no change (0%)" in pooled
    else:  # the committed synthetic study: -55% to -4%
        side = "below" if result.ci_high < 0 else "above"
        assert f"The 95% interval lies {side} no change (0%)" in pooled
    assert "keeps every site whose estimate can be pooled, whatever its verdict" in pooled


def test_the_pool_says_which_pooled_markets_were_displaced(summary):
    text, out = summary
    pooled = _section(text, "Pooled effect across sites").split("\n\n", 1)[0]
    verdicts = pd.read_csv(out / "results" / "verdicts.csv")
    effects = pd.read_csv(out / "results" / "effects.csv")
    sc = effects[
        (effects.design == "sc") & (effects.window == "post") & (effects.outcome == "drug")
    ]
    in_pool = set(pool_effects(sc, design="sc").sites)
    displaced = set(verdicts.loc[verdicts.verdict == "displaced", "site"]) & in_pool
    assert ("does not net out" in pooled) == bool(displaced)
    for site in displaced:  # the committed study: Riverside
        assert site.capitalize() in pooled.split("The pool is of the markets alone:", 1)[1]


def test_prediction_interval_prose_and_table_agree(summary):
    text, out = summary
    pooled = _section(text, "Pooled effect across sites")
    prose = pooled.split("\n\n", 1)[0]
    effects = pd.read_csv(out / "results" / "effects.csv")
    sc = effects[
        (effects.design == "sc") & (effects.window == "post") & (effects.outcome == "drug")
    ]
    result = pool_effects(sc, design="sc")
    low = fmt_pct(result.pi_low)
    if result.pi_high > 5:  # beyond the tables' +500%
        assert "| too wide to tell*" in pooled  # the table's cell for synthetic control
        assert f"prediction interval runs from {low} to beyond +500%, too wide to tell" in prose
        assert f"synthetic control: {low} to beyond +500%" in pooled  # the table's footnote
        assert fmt_pct(result.pi_high) not in prose
    else:  # the committed synthetic study: -75% to +74%
        assert f"between {low} and {fmt_pct(result.pi_high)} (95% prediction interval)" in prose
    # a design whose prediction interval runs past +500% is footnoted, never printed
    for row in [r for r in pooled.splitlines() if "| too wide to tell*" in r]:
        design = row.split("|")[1].strip()
        assert re.search(rf"\({re.escape(design)}: -?\d+% to beyond \+500%\)", pooled), design


def test_every_pooled_row_names_the_sites_it_leaves_out(summary):
    text, out = summary
    pooled = _section(text, "Pooled effect across sites")
    rows = [r for r in pooled.splitlines() if r.startswith("| ") and "design" not in r]
    n_sites = len(pd.read_csv(out / "results" / "verdicts.csv"))
    short = [r for r in rows if int(r.split("|")[2]) < n_sites]
    assert short  # Millbrook's drug market vanished: its intervals reach -100%
    for row in short:
        assert row.split("|")[3].strip() not in ("", "none")
    assert (
        "difference-in-differences: Millbrook (a -100% interval bound has no log rate ratio)"
        in pooled
    )
    # without the fitted verdicts the sensitivity analysis says why it is not given
    assert "No sensitivity analysis: it needs the fitted verdicts" in pooled


def test_a_site_without_a_designs_estimate_is_named_with_the_reason(project_root, tmp_path):
    out = tmp_path / "summary"
    shutil.copytree(project_root / "reports" / "results", out / "results")
    effects = pd.read_csv(out / "results" / "effects.csv")
    gone = (effects.site == "westend") & (effects.design == "did")
    assert gone.any()
    effects[~gone].to_csv(out / "results" / "effects.csv", index=False)
    pooled = _section(_run_summary(project_root, out), "Pooled effect across sites")
    assert "difference-in-differences: Westend (no estimate in results/effects.csv)" in pooled


def test_stacked_prose_and_caption_match_the_figure(summary):
    text, _ = summary
    stacked = _section(text, "Staggered event study")
    prose = stacked.split("\n\n", 1)[0]
    assert prose.startswith("Stacked event study of 6 sites")
    assert not re.search(r"[;,] [A-Z][a-z]", prose.replace("; Webb", ""))
    caption = stacked.split("*Figure:", 1)[1]
    assert "log rate ratio" not in caption and "% changes" in caption
    assert ("with their 95% intervals" in caption) != ("without intervals" in caption)


def test_the_committed_summary_never_names_an_empty_sensitivity_pool(project_root):
    # regression: with Millbrook already out of the SC pool, the sensitivity sentence read
    # "Sensitivity: without , the 5 other sites' ..." beside a row that repeated the pool
    text = (project_root / "reports" / "README.md").read_text(encoding="utf-8")
    pooled = _section(text, "Pooled effect across sites")
    assert "without ," not in pooled
    rows = [r.split("|")[1].strip() for r in pooled.splitlines() if r.startswith("| ")]
    caption = pooled.split("*Table:", 1)[1].split("*\n", 1)[0]
    # the caption explains a sensitivity row only where the table has one
    assert ("sensitivity" in caption) == any(r.endswith(", sensitivity") for r in rows)
    if "synthetic control, sensitivity" not in rows:
        assert re.search(
            r"Sensitivity: no site|No separate sensitivity analysis|No sensitivity analysis", pooled
        )
