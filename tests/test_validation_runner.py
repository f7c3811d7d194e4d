"""The validation runner writes validation.csv / validation.md and says when data are missing."""

from __future__ import annotations

import pandas as pd
import pytest

from dmi_eval.errors import ReferenceDataMissing
from dmi_eval.validation.check import Check
from dmi_eval.validation.runner import (
    VALIDATION_COLUMNS,
    all_cases,
    run_validation,
    write_validation,
)


def test_check_passes_only_within_tolerance():
    assert Check("c", "q", 1.00004, 1.0, 5e-5).passed is True
    assert Check("c", "q", 1.0001, 1.0, 5e-5).passed is False
    assert Check("c", "q", float("nan"), 1.0, 5e-5).passed is False
    assert Check("c", "q", 3.0).passed is None


def test_every_issue_case_is_registered():
    names = set(all_cases())
    for case in (
        "prop99_itsa_single",
        "prop99_itsa_multi",
        "sicily_qp_fourier",
        "sicily_qp",
        "boston_bartley_fox",
        "basque_synth_fixedv",
        "basque_synth",
        "prop99_sc",
        "prop99_did",
        "prop99_sdid",
        "prop99_adh2010",
        "germany_adh2015",
        "seattle_microsynth",
        "seattle_microsynth_q14",
        "wdd_example",
    ):
        assert case in names


def test_missing_reference_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ReferenceDataMissing, match="pass --reference DIR"):
        run_validation(tmp_path / "nowhere")


def test_runner_writes_csv_and_markdown(reference_dir, tmp_path):
    checks = run_validation(reference_dir, only=["wdd_example", "sicily_qp"])
    write_validation(checks, tmp_path, "reference")
    frame = pd.read_csv(tmp_path / "results" / "validation.csv")
    assert tuple(frame.columns) == VALIDATION_COLUMNS
    assert set(frame["case"]) == {"wdd_example", "sicily_qp"}
    assert frame["passed"].all()
    text = (tmp_path / "appendix" / "validation.md").read_text()
    assert "passed, 0 failed" in text and "## `wdd_example`" in text
    assert (tmp_path / "appendix" / "validation.html").is_file()
    # no Seattle report in this folder: it is named, not linked
    assert "../seattle/README.md" not in text and "`reports/seattle/README.md`" in text
    (tmp_path / "seattle").mkdir()
    (tmp_path / "seattle" / "README.md").write_text("x")
    write_validation(checks, tmp_path, "reference")
    assert "(../seattle/README.md)" in (tmp_path / "appendix" / "validation.md").read_text()
