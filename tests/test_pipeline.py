"""Reading a study once and evaluating its sites (dmi_eval.pipeline)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from dmi_eval import pipeline
from dmi_eval.config import load_study
from dmi_eval.datacache import load_study_data_cached
from dmi_eval.errors import DesignError
from dmi_eval.synthetic import simulate_study, write_study


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("two")
    return write_study(simulate_study(seed=4, n_rows=8, n_cols=14, n_months=48, n_sites=2), folder)


def test_a_call_in_the_data_cannot_take_stops_the_study_before_any_site_is_fitted(
    two_sites: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = load_study(two_sites)
    periods = load_study_data_cached(study).panel.periods
    after_end = periods[-1].end_time.date() + dt.timedelta(days=60)
    before_start = periods[0].start_time.date() - dt.timedelta(days=60)
    good, late = study.sites
    early = dataclasses.replace(late, id="early", name="Early")
    bad = dataclasses.replace(
        study,
        sites=(
            good,
            dataclasses.replace(late, intervention=after_end),
            dataclasses.replace(early, intervention=before_start),
        ),
    )
    fitted: list[str] = []
    real = pipeline.evaluate_site

    def record(panel, study, site_id, **kwargs):
        fitted.append(site_id)
        return real(panel, study, site_id, **kwargs)

    monkeypatch.setattr(pipeline, "evaluate_site", record)
    with pytest.raises(DesignError) as err:
        pipeline.evaluate_study_sites(bad, geo=False)
    message = str(err.value)
    # both sites are named, each with the fix, and no site was fitted first
    assert f"site {late.id!r}: call-in date {after_end}" in message
    assert f"site {early.id!r}: call-in date {before_start}" in message
    assert message.count("check [[sites]].intervention") == 2
    assert good.id not in message
    assert fitted == []
