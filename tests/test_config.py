"""study.toml validation: every error names the file, the key and what is allowed."""

from __future__ import annotations

import datetime as dt

import pytest

from dmi_eval.config import VerdictRules, load_study
from dmi_eval.errors import ConfigError, DmiEvalError
from tests.helpers import BASE_TOML, write_toml


def test_valid_study_is_read_into_frozen_objects(tmp_path):
    study = load_study(write_toml(tmp_path))
    assert study.name == "Test study"
    assert study.frequency == "month"
    assert study.transition == "exclude"
    assert study.data.incidents == (tmp_path / "incidents.csv").resolve()
    assert study.data.offense_map == "nibrs"
    site = study.site("east")
    assert site.intervention == dt.date(2019, 6, 15)
    assert site.treated_areas == ("A1",)
    assert site.name == "east"
    assert study.intervention_areas == frozenset({"A1", "A2"})
    with pytest.raises(AttributeError):
        site.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('frequency = "month"', 'frequency = "monthly"', r"\[study\]\.frequency: must be one of"),
        (
            'name = "Test study"',
            'name = "Test study"\nfreqency = "month"',
            r"\[study\]\.freqency: unknown key",
        ),
        ('id = "east"', 'id = "East Side"', r"id: 'East Side' is not a safe file name"),
        (
            'primary_outcome = "drug"',
            'primary_outcome = "weapons"',
            r"primary_outcome: 'weapons' is not among outcomes",
        ),
        (
            'intervention = "2019-06-15"',
            'intervention = "15/06/2019"',
            r"intervention: must be an ISO date",
        ),
        (
            'catchment_areas = ["A2"]',
            'catchment_areas = ["A1"]',
            r"catchment_areas: A1 also listed in treated_areas",
        ),
        (
            'incidents = "incidents.csv"',
            'incidents = "incidents.csv"\ncounts = "c.csv"',
            r"give exactly one of 'incidents'",
        ),
        ('treated_areas = ["A1"]', "treated_areas = []", r"treated_areas: must name at least one"),
        ('treated_areas = ["A1"]', 'treated_areas = "A1"', r"treated_areas: must be a list"),
        (
            'treated_areas = ["A1"]\n',
            "",
            r"treated_areas: is required .*or draw the market.*market =",
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path, old, new, expected):
    assert old in BASE_TOML
    path = write_toml(tmp_path, BASE_TOML.replace(old, new))
    with pytest.raises(ConfigError, match=expected) as info:
        load_study(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, DmiEvalError)


def test_syntax_error_reports_the_line(tmp_path):
    path = write_toml(tmp_path, BASE_TOML.replace('frequency = "month"', "frequency = month"))
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 4"):
        load_study(path)


def test_missing_file_and_missing_section(tmp_path):
    with pytest.raises(ConfigError, match="study file not found"):
        load_study(tmp_path / "nope.toml")
    text = BASE_TOML.split("[[sites]]")[0]
    with pytest.raises(ConfigError, match=r"sites: section is required"):
        load_study(write_toml(tmp_path, text))


def test_duplicate_site_ids_and_shared_treated_areas(tmp_path):
    second = BASE_TOML.split("[[sites]]")[1]
    with pytest.raises(ConfigError, match="duplicate site id"):
        load_study(write_toml(tmp_path, BASE_TOML + "[[sites]]" + second))
    other = second.replace('id = "east"', 'id = "west"').replace('["A2"]', '["A3"]')
    with pytest.raises(ConfigError, match="A1 is already treated by site 'east'"):
        load_study(write_toml(tmp_path, BASE_TOML + "[[sites]]" + other))


def test_unknown_site_lists_the_known_ones(tmp_path):
    study = load_study(write_toml(tmp_path))
    with pytest.raises(ConfigError, match="no site with id 'west'; the study has: east"):
        study.site("west")


def test_verdict_and_report_tables(tmp_path):
    text = BASE_TOML + "\n[verdict]\nmin_reduction = 0.3\n\n[report]\nsuppress_below = 5\n"
    study = load_study(write_toml(tmp_path, text))
    assert study.verdict.min_reduction == 0.3
    assert study.verdict.alpha == 0.05
    assert study.report.suppress_below == 5
    with pytest.raises(ConfigError, match=r"\[verdict\]\.min_reductoin: unknown key"):
        load_study(write_toml(tmp_path, BASE_TOML + "\n[verdict]\nmin_reductoin = 0.3\n"))


EXTRACT_TOML = BASE_TOML.replace(
    'incidents = "incidents.csv"',
    'incidents = "extract.csv"\ndate_format = "%m/%d/%Y"\ntimezone = "America/Chicago"\n'
    'delimiter = "tab"\n\n[data.columns]\nincident_id = "Case Number"\ndate = "Date Occurred"\n'
    'offense = "UCR"\narea_id = "Beat"',
)


def test_extract_keys_are_read(tmp_path):
    study = load_study(write_toml(tmp_path, EXTRACT_TOML))
    data = study.data
    assert (data.date_format, data.timezone, data.delimiter) == (
        "%m/%d/%Y",
        "America/Chicago",
        "\t",
    )
    assert (data.columns.incident_id, data.columns.date, data.columns.offense) == (
        "Case Number",
        "Date Occurred",
        "UCR",
    )
    assert data.columns.area_id == "Beat" and not data.columns.geocoded
    assert study.geo is None


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'date_format = "%m/%d/%Y"',
            'date_format = "MM/DD/YYYY"',
            r"\[data\]\.date_format: 'MM/DD/YYYY' has no strftime codes",
        ),
        (
            'timezone = "America/Chicago"',
            'timezone = "Central"',
            r"\[data\]\.timezone: 'Central' is not a time zone",
        ),
        ('delimiter = "tab"', 'delimiter = ":"', r"\[data\]\.delimiter: must be one of"),
        (
            'area_id = "Beat"',
            'area_id = "Beat"\nbeat = "x"',
            r"\[data.columns\]\.beat: unknown key",
        ),
        ('area_id = "Beat"', 'x = "Lon"', r"\[data.columns\]\.y: give both x and y"),
        (
            'area_id = "Beat"',
            'area_id = "Beat"\nx = "Lon"\ny = "Lat"',
            r"give either area_id or x and y",
        ),
        (
            'area_id = "Beat"',
            'x = "Lon"\ny = "Lat"',
            r"study.toml\.geo: section is required when \[data.columns\] gives x and y",
        ),
        ('area_id = "Beat"', 'area_id = "UCR"', r"column 'UCR' is given for two fields"),
        (
            'treated_areas = ["A1"]',
            'treated_areas = ["A1"]\nmarket = "m.geojson"',
            r"id='east'.*market: needs a \[geo\] section",
        ),
        (
            'treated_areas = ["A1"]',
            'treated_areas = ["A1"]\ncatchment_buffer_m = 200',
            r"catchment_buffer_m: needs market",
        ),
    ],
)
def test_extract_key_errors(tmp_path, old, new, expected):
    assert old in EXTRACT_TOML
    with pytest.raises(ConfigError, match=expected):
        load_study(write_toml(tmp_path, EXTRACT_TOML.replace(old, new, 1)))


GEO_TOML = (
    EXTRACT_TOML.replace('area_id = "Beat"', 'x = "Lon"\ny = "Lat"')
    + """
[geo]
crs = "EPSG:4326"
areas = "blocks.geojson"
area_id_field = "GEOID"
"""
)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('crs = "EPSG:4326"\n', "", r"\[geo\]\.crs: is required"),
        (
            'crs = "EPSG:4326"',
            'crs = "WGS 84 please"',
            r"\[geo\]\.crs: 'WGS 84 please' is not a CRS",
        ),
        ('area_id_field = "GEOID"\n', "", r"\[geo\]\.area_id_field: is required with areas"),
        (
            'areas = "blocks.geojson"',
            'areas = "blocks.geojson"\ngrid_m = 100',
            r"give exactly one of 'areas'",
        ),
        (
            'area_id_field = "GEOID"',
            'area_id_field = "GEOID"\ncell = 3',
            r"\[geo\]\.cell: unknown key",
        ),
    ],
)
def test_geo_key_errors(tmp_path, old, new, expected):
    assert old in GEO_TOML
    with pytest.raises(ConfigError, match=expected):
        load_study(write_toml(tmp_path, GEO_TOML.replace(old, new, 1)))


def test_counts_files_refuse_extract_keys(tmp_path):
    text = BASE_TOML.replace('incidents = "incidents.csv"', 'counts = "c.csv"\ndate_format = "%Y"')
    with pytest.raises(ConfigError, match=r"date_format: applies to an incidents file only"):
        load_study(write_toml(tmp_path, text))


def test_a_misspelt_table_gets_a_did_you_mean(tmp_path):
    from dmi_eval.config import load_study
    from dmi_eval.errors import ConfigError

    study = tmp_path / "study.toml"
    study.write_text(
        '[study]\nname = "x"\n[data]\ncounts = "c.csv"\n[[site]]\nid = "a"\n'
        'intervention = "2019-01-01"\ntreated_areas = ["A"]\n'
    )
    with pytest.raises(
        ConfigError, match=r"study\.toml\.site: unknown key; did you mean \[\[sites\]\]"
    ):
        load_study(study)


def test_outcome_labels_name_outcomes_in_words(tmp_path):
    from dmi_eval.config import ReportOptions

    report = ReportOptions(outcome_labels=(("i_drugs", "drug offences"),))
    assert report.outcome_label("i_drugs") == "drug offences"
    assert report.outcome_label("any_crime") == "any crime offences"


def test_version_flag():
    import subprocess
    import sys

    from dmi_eval import __version__

    result = subprocess.run(
        [sys.executable, "-m", "dmi_eval.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip() == f"dmi-eval {__version__}"


@pytest.mark.parametrize(
    ("frequency", "persistence", "periods", "words"),
    [
        ("month", "6 months", 6, "6 months"),
        ("week", "6 months", 26, "26 weeks"),
        ("quarter", "6 months", 2, "2 quarters"),
        ("quarter", "1 month", 1, "1 quarter"),
        ("month", "1 year", 12, "12 months"),
        ("week", "4 weeks", 4, "4 weeks"),
    ],
)
def test_persistence_is_a_duration_converted_by_frequency(
    tmp_path, frequency, persistence, periods, words
):
    text = BASE_TOML.replace('frequency = "month"', f'frequency = "{frequency}"')
    text += f'\n[verdict]\npersistence = "{persistence}"\n'
    study = load_study(write_toml(tmp_path, text))
    assert study.verdict.persistence_in(study.frequency) == periods
    assert study.verdict.persistence_text(study.frequency) == words


def test_persistence_periods_still_works_and_errors_are_clear(tmp_path):
    study = load_study(write_toml(tmp_path, BASE_TOML + "\n[verdict]\npersistence_periods = 4\n"))
    assert study.verdict.persistence_in("month") == 4
    assert study.verdict.persistence_in("week") == 4
    assert VerdictRules().persistence_in("month") == 6
    both = BASE_TOML + '\n[verdict]\npersistence = "6 months"\npersistence_periods = 4\n'
    with pytest.raises(ConfigError, match=r"persistence_periods: give either persistence"):
        load_study(write_toml(tmp_path, both))
    bad = BASE_TOML + '\n[verdict]\npersistence = "six months"\n'
    with pytest.raises(ConfigError, match=r"\[verdict\]\.persistence: 'six months' is not a"):
        load_study(write_toml(tmp_path, bad))
    with pytest.raises(ConfigError, match=r"persistence_periods: must be between 1"):
        load_study(write_toml(tmp_path, BASE_TOML + "\n[verdict]\npersistence_periods = 0\n"))
    with pytest.raises(ValueError, match="not a duration"):
        VerdictRules(persistence="6 fortnights")


def test_persistence_given_as_a_bare_number_says_how_to_write_it(tmp_path):
    # regression: persistence = 6 gave "must be a non-empty string, got 6"
    path = write_toml(tmp_path, BASE_TOML + "\n[verdict]\npersistence = 6\n")
    with pytest.raises(ConfigError, match=r'persistence = "6 months".*persistence_periods = 6'):
        load_study(path)


def test_a_key_in_the_wrong_case_gets_a_did_you_mean(tmp_path):
    from dmi_eval.config import load_study
    from dmi_eval.errors import ConfigError

    study = tmp_path / "study.toml"
    study.write_text(
        '[study]\nname = "x"\n[data]\ncounts = "c.csv"\n[[sites]]\nID = "a"\n'
        'intervention = "2019-01-01"\ntreated_areas = ["A"]\n'
    )
    with pytest.raises(ConfigError, match=r"\.ID: unknown key; did you mean 'id'\?"):
        load_study(study)
