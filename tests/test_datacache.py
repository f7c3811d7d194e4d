"""The data cache returns what reading returns, and reads again when anything it read changed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dmi_eval import datacache
from dmi_eval.config import load_study
from dmi_eval.data import load_study_data
from tests.helpers import write_csv, write_toml

INCIDENTS = """
incident_id,date,offense,area_id
1,2019-01-03,35A,A1
2,2019-01-20,13A,A1
3,2019-02-11,35A,A2
4,2019-03-02,35A,A2
5,2019-04-02,13A,A1
6,2019-13-02,13A,A1
"""
TOML = """
[study]
name = "Cache study"
frequency = "month"

[data]
incidents = "incidents.csv"
max_reject_share = 0.5

[[sites]]
id = "east"
intervention = "2019-03-01"
treated_areas = ["A1"]
outcomes = ["drug", "violent"]
primary_outcome = "drug"
"""


@pytest.fixture
def counting_reader(monkeypatch, tmp_path):
    """The cache in a fresh folder; counts the real reads behind it."""
    monkeypatch.setenv(datacache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(datacache.CACHE_ENV, raising=False)
    reads: list[str] = []

    def reader(study):
        reads.append(study.name)
        return load_study_data(study)

    monkeypatch.setattr(datacache, "load_study_data", reader)
    return reads


def _same(a, b) -> None:
    assert (a.file, a.rows_read, a.rows_counted) == (b.file, b.rows_read, b.rows_counted)
    pd.testing.assert_frame_equal(a.rejects, b.rejects)
    assert list(a.panel.counts) == list(b.panel.counts)
    for name in a.panel.counts:
        np.testing.assert_array_equal(a.panel.counts[name], b.panel.counts[name])
    pd.testing.assert_index_equal(a.panel.areas, b.panel.areas)
    pd.testing.assert_index_equal(a.panel.periods, b.panel.periods)


def test_a_second_read_comes_from_the_cache_and_equals_the_first(tmp_path, counting_reader):
    write_csv(tmp_path, "incidents.csv", INCIDENTS)
    study = load_study(write_toml(tmp_path, TOML))
    first = datacache.load_study_data_cached(study)
    second = datacache.load_study_data_cached(load_study(study.path))
    assert counting_reader == ["Cache study"]  # one real read
    _same(first, second)
    _same(first, load_study_data(study))
    assert second.rows_rejected == 1


def test_a_changed_input_or_setting_is_read_again(tmp_path, counting_reader):
    path = write_csv(tmp_path, "incidents.csv", INCIDENTS)
    study = load_study(write_toml(tmp_path, TOML))
    before = datacache.load_study_data_cached(study)
    path.write_text(path.read_text() + "7,2019-04-09,35A,A2\n")
    after = datacache.load_study_data_cached(study)
    assert len(counting_reader) == 2
    assert after.rows_counted == before.rows_counted + 1
    monthly = load_study(write_toml(tmp_path, TOML.replace('"month"', '"week"')))
    assert datacache.load_study_data_cached(monthly).panel.frequency == "week"
    assert len(counting_reader) == 3


def test_the_cache_can_be_turned_off(tmp_path, counting_reader, monkeypatch):
    monkeypatch.setenv(datacache.CACHE_ENV, "0")
    write_csv(tmp_path, "incidents.csv", INCIDENTS)
    study = load_study(write_toml(tmp_path, TOML))
    datacache.load_study_data_cached(study)
    datacache.load_study_data_cached(study)
    assert len(counting_reader) == 2
    assert not (tmp_path / "cache").exists()


def test_an_unreadable_entry_is_read_again_and_replaced(tmp_path, counting_reader):
    write_csv(tmp_path, "incidents.csv", INCIDENTS)
    study = load_study(write_toml(tmp_path, TOML))
    datacache.load_study_data_cached(study)
    (entry,) = (tmp_path / "cache" / "ingest").glob("*.pickle")
    entry.write_bytes(b"not a pickle")
    again = datacache.load_study_data_cached(study)
    assert len(counting_reader) == 2
    _same(again, load_study_data(study))
    assert datacache.load_study_data_cached(study).rows_counted == again.rows_counted
    assert len(counting_reader) == 2


def test_only_the_most_recently_used_entries_are_kept(tmp_path, counting_reader, monkeypatch):
    monkeypatch.setattr(datacache, "MAX_ENTRIES", 2)
    path = write_csv(tmp_path, "incidents.csv", INCIDENTS)
    study = load_study(write_toml(tmp_path, TOML))
    folder = tmp_path / "cache" / "ingest"
    datacache.load_study_data_cached(study)
    (first,) = folder.glob("*.pickle")
    for extra in ("7,2019-04-09,35A,A2\n", "8,2019-04-10,35A,A2\n"):
        path.write_text(path.read_text() + extra)
        datacache.load_study_data_cached(study)
    assert len(list(folder.glob("*.pickle"))) == 2
    assert not first.exists()  # the oldest entry went
    assert len(counting_reader) == 3


def test_market_areas_come_from_the_cache_until_a_polygon_changes(
    tmp_path, monkeypatch, project_root
):
    """``check`` loads the study with the areas of its market polygons from the cache:
    the same study as reading the polygons, read again when a polygon file changes,
    and every time with the cache off."""
    import json
    import shutil

    from dmi_eval import geo

    monkeypatch.setenv(datacache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(datacache.CACHE_ENV, raising=False)
    shutil.copytree(project_root / "data" / "synthetic", tmp_path / "study")
    path = tmp_path / "study" / "study.toml"
    expected = load_study(path)
    calls = []
    real = geo.resolve_sites
    monkeypatch.setattr(geo, "resolve_sites", lambda *a: calls.append(1) or real(*a))
    assert datacache.load_study_cached(path) == expected
    assert datacache.load_study_cached(path) == expected
    assert len(calls) == 1
    market = expected.sites[0].market
    drawn = json.loads(market.read_text())
    drawn["name"] = "redrawn"  # any change to the file's bytes
    market.write_text(json.dumps(drawn))
    assert datacache.load_study_cached(path) == expected
    assert len(calls) == 2
    monkeypatch.setenv(datacache.CACHE_ENV, "0")
    assert datacache.load_study_cached(path) == expected
    assert len(calls) == 3
