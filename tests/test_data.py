"""Readers, aggregation and the reject log: every input row is counted or rejected."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmi_eval.config import load_study
from dmi_eval.data import load_study_data, read_counts, read_incidents
from dmi_eval.errors import ConfigError, DataError, NoUsableRowsError, RejectThresholdError
from dmi_eval.offenses import load_offense_map, nibrs_map
from dmi_eval.reject_reasons import QUALITY_REASONS, REJECT_REASONS
from tests.helpers import BASE_TOML, write_csv, write_toml

NIBRS = load_offense_map("nibrs")

INCIDENTS = """
incident_id,date,offense,area_id,narrative
1,2019-01-03,35A,A1,"sold at the corner, see report"
2,2019-01-20T13:45:00,13A,A1,
3,2019-02-11,35b,A2,
4,2019-02-30,35A,A1,bad date
5,2019-03-01,35A,A9,unknown area
3,2019-03-02,35A,A2,duplicate id
6,2019-03-05,90Z,A1,unmapped offense
7,,35A,A1,missing date
8,2019-04-02,35A,A2,
"""


def test_incidents_are_counted_or_rejected_with_a_reason(tmp_path):
    path = write_csv(tmp_path, "incidents.csv", INCIDENTS)
    ingest = read_incidents(
        path, frequency="month", offense_map=NIBRS, known_areas=frozenset({"A1", "A2", "A3"})
    )
    assert ingest.rows_read == 9
    assert ingest.rows_counted == 4
    assert ingest.rows_counted + ingest.rows_rejected == ingest.rows_read
    rejects = ingest.rejects.set_index("row")["reason"].to_dict()
    assert rejects == {
        4: "bad_date",
        5: "unknown_area",
        6: "duplicate_id",
        7: "unmapped_offense",
        8: "missing_value",
    }
    assert set(ingest.rejects.columns) == {"file", "row", "reason", "field", "value"}
    panel = ingest.panel
    assert [str(p) for p in panel.periods] == ["2019-01", "2019-02", "2019-03", "2019-04"]
    assert list(panel.areas) == ["A1", "A2", "A3"]
    drug = panel.matrix("drug")
    assert drug.loc["A1"].tolist() == [1, 0, 0, 0]
    assert drug.loc["A2"].tolist() == [0, 1, 0, 1]  # "35b" normalised to 35B
    assert drug.loc["A3"].tolist() == [0, 0, 0, 0]  # zero-filled
    assert panel.matrix("violent").to_numpy().sum() == 1


def test_private_columns_never_reach_the_reject_log(tmp_path):
    path = write_csv(tmp_path, "incidents.csv", INCIDENTS)
    ingest = read_incidents(
        path, frequency="month", offense_map=NIBRS, known_areas=frozenset({"A1", "A2"})
    )
    text = ingest.rejects.to_csv(index=False)
    for secret in ("corner", "bad date", "2019-02-30", "narrative"):
        assert secret not in text
    assert str(tmp_path) not in text


def test_study_range_rejects_are_scope_not_quality(tmp_path):
    path = write_csv(tmp_path, "incidents.csv", INCIDENTS)
    ingest = read_incidents(
        path,
        frequency="month",
        offense_map=NIBRS,
        start=dt.date(2019, 2, 1),
        end=dt.date(2019, 3, 31),
    )
    reasons = ingest.rejects["reason"].tolist()
    assert reasons.count("outside_range") == 3  # Jan x2 and Apr
    assert "outside_range" not in QUALITY_REASONS
    assert [str(p) for p in ingest.panel.periods] == ["2019-02", "2019-03"]


@pytest.mark.parametrize(("frequency", "n_periods"), [("week", 14), ("quarter", 2)])
def test_other_frequencies(tmp_path, frequency, n_periods):
    path = write_csv(tmp_path, "incidents.csv", INCIDENTS)
    ingest = read_incidents(path, frequency=frequency, offense_map=NIBRS)
    assert len(ingest.panel.periods) == n_periods
    assert ingest.panel.totals().sum() == ingest.rows_counted


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_blank_lines_and_rows_of_the_wrong_shape_are_rejected_with_their_row(tmp_path, suffix):
    import gzip

    text = (
        "incident_id,date,offense,area_id,address\n"
        "1,2019-01-03,35A,A1,Main St\n"
        "\n"  # row 2: a blank line
        "2,2019-01-04,35A,A1,12 Oak St, Apt 4\n"  # row 3: an unquoted comma, 6 fields
        "3,35A,A1,Elm St\n"  # row 4: the date is missing, the rest shifted left
        "4,2019-01-05,35A,A2,Pine St\n"
        "5,2019-01-06,35A,A9\n"  # row 6: 4 fields
        "\n"
    )
    text = "\n\n" + text  # blank lines before the header do not count as rows
    path = tmp_path / f"incidents{suffix}"
    if suffix.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    ingest = read_incidents(
        path, frequency="month", offense_map=NIBRS, known_areas=frozenset({"A1", "A2"})
    )
    rejects = ingest.rejects.set_index("row")
    # row n is the n-th record after the header: blank lines keep their place
    assert rejects["reason"].to_dict() == {
        2: "empty_row",
        3: "wrong_field_count",
        4: "wrong_field_count",
        6: "wrong_field_count",
        7: "empty_row",
    }
    assert rejects.loc[[3, 4, 6], "value"].tolist() == ["6", "4", "4"]
    assert ingest.rows_read == 7 and ingest.rows_counted == 2
    assert ingest.rows_counted + ingest.rows_rejected == ingest.rows_read


def test_periods_cut_by_the_study_range_are_left_out_whole(tmp_path):
    # Thursday 3 January to Wednesday 27 February 2019: the first and last weeks are cut
    rows = ["incident_id,date,offense,area_id"] + [
        f"{i},{day},35A,A1"
        for i, day in enumerate(["2019-01-03", "2019-01-07", "2019-02-24", "2019-02-25"])
    ]
    path = write_csv(tmp_path, "incidents.csv", "\n".join(rows) + "\n")
    ingest = read_incidents(
        path,
        frequency="week",
        offense_map=NIBRS,
        start=dt.date(2019, 1, 3),
        end=dt.date(2019, 2, 27),
    )
    periods = ingest.panel.periods
    assert str(periods[0].start_time.date()) == "2019-01-07"  # the first whole week
    assert str(periods[-1].end_time.date()) == "2019-02-24"  # the last whole week
    assert ingest.rejects.set_index("row")["reason"].to_dict() == {
        1: "partial_period",
        4: "partial_period",
    }
    assert ingest.rows_counted == 2
    # a monthly study from the 1st to the 31st loses nothing
    monthly = read_incidents(
        path,
        frequency="month",
        offense_map=NIBRS,
        start=dt.date(2019, 1, 1),
        end=dt.date(2019, 2, 28),
    )
    assert monthly.rows_counted == 4 and [str(p) for p in monthly.panel.periods] == [
        "2019-01",
        "2019-02",
    ]


def test_missing_column_suggests_the_right_name(tmp_path):
    path = write_csv(
        tmp_path, "incidents.csv", "incident_id,date,offence,area_id\n1,2019-01-01,35A,A1\n"
    )
    with pytest.raises(
        DataError, match=r"incidents.csv: missing column\(s\) offense \(did you mean 'offence'\?\)"
    ):
        read_incidents(path, frequency="month", offense_map=NIBRS)


def test_empty_and_missing_files(tmp_path):
    empty = write_csv(tmp_path, "incidents.csv", "")
    with pytest.raises(DataError, match="the file is empty"):
        read_incidents(empty, frequency="month", offense_map=NIBRS)
    with pytest.raises(DataError, match="file not found"):
        read_incidents(tmp_path / "nope.csv", frequency="month", offense_map=NIBRS)
    header_only = write_csv(tmp_path, "h.csv", "incident_id,date,offense,area_id\n")
    with pytest.raises(DataError, match="h.csv: the file has a header but no data rows"):
        read_incidents(header_only, frequency="month", offense_map=NIBRS)


def test_reject_threshold_is_a_clear_error(tmp_path):
    write_csv(tmp_path, "incidents.csv", INCIDENTS)
    study = load_study(write_toml(tmp_path))
    with pytest.raises(
        RejectThresholdError,
        match=r"incidents.csv: .* rows rejected for data quality .*max_reject_share",
    ):
        load_study_data(study)
    relaxed = BASE_TOML.replace(
        'incidents = "incidents.csv"', 'incidents = "incidents.csv"\nmax_reject_share = 0.6'
    )
    ingest = load_study_data(load_study(write_toml(tmp_path, relaxed)))
    assert ingest.rows_counted == 5  # no areas file: A9 is a real area


def day_first_extract(tmp_path, n=60):
    rows = [f"{i},{1 + i % 28:02d}/{1 + i % 12:02d}/2019,35A,A1" for i in range(n)]
    write_csv(tmp_path, "incidents.csv", "incident_id,date,offense,area_id\n" + "\n".join(rows))


def test_dates_with_day_and_month_exchanged_stop_the_run_and_say_so(tmp_path):
    day_first_extract(tmp_path)
    # a generous reject limit would let the rows with a day up to 12 through, in the wrong month
    toml = BASE_TOML.replace(
        'incidents = "incidents.csv"',
        'incidents = "incidents.csv"\ndate_format = "%m/%d/%Y"\nmax_reject_share = 0.9',
    )
    with pytest.raises(RejectThresholdError) as err:
        load_study_data(load_study(write_toml(tmp_path, toml)))
    message = str(err.value)
    assert "date_format = '%d/%m/%Y'" in message and "wrong month" in message
    assert re.search(r"dates \(e\.g\. '\d\d/\d\d/2019'\) do not match", message)
    # the reject log itself never records a date
    assert (err.value.ingest.rejects["value"] == "").all()
    fixed = toml.replace('"%m/%d/%Y"', '"%d/%m/%Y"')
    assert load_study_data(load_study(write_toml(tmp_path, fixed))).rows_counted == 60


def test_iso_dates_expected_but_not_given_name_an_example(tmp_path):
    day_first_extract(tmp_path)
    with pytest.raises(NoUsableRowsError, match=r"bad_date \(.*ISO 8601.*, e\.g\. '01/01/2019'\)"):
        load_study_data(load_study(write_toml(tmp_path)))


def test_a_run_stopped_by_the_reject_threshold_leaves_the_reject_log(tmp_path):
    from dmi_eval.report import evaluate_study

    write_csv(tmp_path, "incidents.csv", INCIDENTS)
    out = tmp_path / "out"
    with pytest.raises(RejectThresholdError, match="results/rejects.csv") as err:
        evaluate_study(write_toml(tmp_path), out)
    # the user needs every rejected row and its reason to fix the file
    rejects = pd.read_csv(out / "results" / "rejects.csv")
    ingest = pd.read_csv(out / "results" / "ingest.csv").set_index("quantity")["rows"]
    assert len(rejects) == ingest["rows_rejected"] == err.value.ingest.rows_rejected > 0
    assert ingest["rows_read"] == ingest["rows_counted"] + ingest["rows_rejected"]


def test_counts_reader(tmp_path):
    path = write_csv(
        tmp_path,
        "counts.csv",
        """
        area_id,period,outcome,count
        A1,2019-01,drug,3
        A1,2019-03,drug,2
        A2,2019-02,drug,0
        A2,2019-02,drug,4
        A2,2019-13,drug,1
        A2,2019-02,violent,5
    """,
    )
    ingest = read_counts(path, frequency="month")
    assert ingest.rows_read == 6 and ingest.rows_counted == 4
    assert ingest.rejects["reason"].tolist() == ["duplicate_cell", "bad_period"]
    assert ingest.panel.matrix("drug").loc["A1"].tolist() == [3, 0, 2]
    assert ingest.panel.totals().to_dict() == {"drug": 5, "violent": 5}


@pytest.mark.parametrize(
    ("frequency", "fine", "coarse"),
    [
        ("month", "2019-04", "2019Q2"),
        ("week", "2019-06-05", "2019-06"),
        ("month", "2019-04", "2019"),
    ],
)
def test_period_labels_coarser_than_the_study_are_rejected(tmp_path, frequency, fine, coarse):
    path = write_csv(
        tmp_path,
        "counts.csv",
        f"area_id,period,outcome,count\nA1,{fine},drug,3\nA1,{coarse},drug,9\n",
    )
    ingest = read_counts(path, frequency=frequency)
    # a quarter's total cannot be put in its first month (nor a month's in its first week)
    assert ingest.rejects.set_index("row")["reason"].to_dict() == {2: "bad_period"}
    assert ingest.panel.totals().to_dict() == {"drug": 3}


@pytest.mark.parametrize("bad", ["-1", "2.5", "many"])
def test_bad_counts_are_errors_naming_the_row(tmp_path, bad):
    path = write_csv(
        tmp_path,
        "counts.csv",
        f"area_id,period,outcome,count\nA1,2019-01,drug,1\nA1,2019-02,drug,{bad}\n",
    )
    with pytest.raises(
        DataError,
        match=rf"counts.csv: row 2, column 'count': count '{bad}' is not a non-negative integer",
    ):
        read_counts(path, frequency="month")


def test_nibrs_map_covers_five_outcomes_and_user_maps(tmp_path):
    table = nibrs_map()
    assert set(table["outcome"]) == {"drug", "violent", "property", "disorder", "weapons"}
    assert NIBRS["35A"] == "drug" and NIBRS["13A"] == "violent" and NIBRS["520"] == "weapons"
    assert "90Z" not in NIBRS and "09C" not in NIBRS
    custom = write_csv(tmp_path, "map.csv", "offense,outcome\nSALE,drug\nsale,drug\n")
    assert load_offense_map(custom) == {"SALE": "drug"}
    clash = write_csv(tmp_path, "clash.csv", "offense,outcome\nX,drug\nX,violent\n")
    with pytest.raises(DataError, match="mapped to both"):
        load_offense_map(clash)


def test_every_reason_is_described():
    assert QUALITY_REASONS <= set(REJECT_REASONS)


rows = st.lists(
    st.tuples(
        st.integers(0, 30),  # incident id (duplicates likely)
        st.one_of(
            st.dates(dt.date(2018, 1, 1), dt.date(2019, 12, 31)).map(str),
            st.sampled_from(["", "2019-02-30", "yesterday"]),
        ),
        st.sampled_from(["35A", "13A", "23H", "90Z", "", "xx"]),
        st.sampled_from(["A1", "A2", "A3", "B9", ""]),
    ),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rows)
def test_conservation_property(tmp_path, rows):
    frame = pd.DataFrame(rows, columns=["incident_id", "date", "offense", "area_id"])
    path = tmp_path / "incidents.csv"
    frame.to_csv(path, index=False)
    known = frozenset({"A1", "A2", "A3"})
    try:
        ingest = read_incidents(path, frequency="month", offense_map=NIBRS, known_areas=known)
    except DataError as exc:
        assert "no usable rows" in str(exc)
        return
    assert ingest.rows_read == len(frame)
    assert ingest.rows_counted + ingest.rows_rejected == len(frame)
    assert ingest.panel.totals().sum() == ingest.rows_counted
    assert ingest.rejects["row"].is_unique
    # The counted rows are exactly the valid, first-seen, mapped, known-area rows.
    valid = frame.copy()
    valid["parsed"] = pd.to_datetime(valid["date"], format="%Y-%m-%d", errors="coerce")
    ok = (
        valid["parsed"].notna()
        & valid["area_id"].isin(known)
        & valid["offense"].isin(NIBRS.keys())
        & (valid["incident_id"].astype(str) != "")
    )
    expected = valid[ok]
    expected = expected[~expected["incident_id"].astype(str).duplicated()]
    assert ingest.rows_counted == len(expected)
    by_outcome = expected["offense"].map(NIBRS).value_counts().to_dict()
    totals = {k: int(v) for k, v in ingest.panel.totals().items()}
    assert totals == by_outcome
    assert np.all(ingest.panel.totals().to_numpy() >= 0)


def test_wide_counts_with_integer_periods_and_covariates(tmp_path):
    write_csv(
        tmp_path,
        "wide.csv",
        """
        ID,time,drugs,felony,pop
        b1,1,2,0,100
        b1,2,0,1,100
        b2,1,1,1,50
        b2,2,3,0,55
        b2,2,9,9,55
        b3,x,1,1,10
    """,
    )
    text = BASE_TOML.replace(
        'incidents = "incidents.csv"',
        """counts = "wide.csv"
layout = "wide"
area_column = "ID"
period_column = "time"
first_period = "2019Q1"
outcome_columns = ["drugs", "felony"]
covariate_columns = ["pop"]
max_reject_share = 0.5""",
    ).replace('frequency = "month"', 'frequency = "quarter"')
    study = load_study(write_toml(tmp_path, text))
    ingest = load_study_data(study)
    assert ingest.rows_read == 6 and ingest.rows_counted == 4
    assert ingest.rejects["reason"].tolist() == ["duplicate_cell", "bad_period"]
    panel = ingest.panel
    assert [str(p) for p in panel.periods] == ["2019Q1", "2019Q2"]
    assert panel.matrix("drugs").loc["b2"].tolist() == [1, 3]
    assert panel.totals().to_dict() == {"drugs": 6, "felony": 2}
    assert panel.covariates.loc["b2", "pop"] == 50.0  # first period's row
    with pytest.raises(ConfigError, match=r"\[data\]\.layout: applies to a counts file only"):
        load_study(
            write_toml(
                tmp_path,
                BASE_TOML.replace(
                    'incidents = "incidents.csv"', 'incidents = "incidents.csv"\nlayout = "wide"'
                ),
            )
        )


# --- police extracts: column names, delimiters, date formats, time zones ------------------


def read_one_month(path, **options):
    """Counted rows per month for a file with areas A1 (drug codes only)."""
    ingest = read_incidents(path, frequency="month", offense_map=NIBRS, **options)
    series = ingest.panel.series("drug", ["A1"])
    return ingest, {str(p): int(v) for p, v in series.items()}


@pytest.mark.parametrize("sep", [",", ";", "|", "\t"])
def test_delimiter_is_detected_from_the_header(tmp_path, sep):
    rows = ["incident_id,date,offense,area_id", "1,2019-01-03,35A,A1", "2,2019-02-03,35A,A1"]
    path = tmp_path / "x.csv"
    path.write_text("\n".join(r.replace(",", sep) for r in rows) + "\n")
    ingest, months = read_one_month(path)
    assert months == {"2019-01": 1, "2019-02": 1}
    assert ingest.rows_rejected == 0


def test_column_mapping_reads_the_departments_own_names(tmp_path):
    from dmi_eval.config import ColumnMap

    path = write_csv(
        tmp_path,
        "extract.csv",
        """
        Case Number;Date Occurred;UCR Code;Beat;Address
        19-1;2019-01-03;35A;A1;100 BLOCK ELM ST
        19-2;2019-01-05;35B;A1;200 BLOCK OAK AVE
        19-2;2019-01-06;35B;A1;duplicate
        """,
    )
    columns = ColumnMap(
        incident_id="Case Number", date="Date Occurred", offense="UCR Code", area_id="Beat"
    )
    ingest, months = read_one_month(path, columns=columns)
    assert months == {"2019-01": 2}
    assert ingest.rejects[["row", "reason", "field"]].to_dict("records") == [
        {"row": 3, "reason": "duplicate_id", "field": "Case Number"}
    ]
    with pytest.raises(DataError, match=r"missing column\(s\) incident_id.*\[data.columns\]"):
        read_incidents(path, frequency="month", offense_map=NIBRS)


def test_wrong_case_column_names_point_to_the_mapping(tmp_path):
    path = write_csv(tmp_path, "x.csv", "Incident_ID,date,offense,area_id\n1,2019-01-03,35A,A1\n")
    with pytest.raises(
        DataError,
        match=r"incident_id \(did you mean 'Incident_ID'\?\).*incident_id = \"Incident_ID\"",
    ):
        read_incidents(path, frequency="month", offense_map=NIBRS)


@pytest.mark.parametrize(
    ("date_format", "values", "expected"),
    [
        (None, ["2019-01-31", "2019-02-01T00:30:00", "2019/01/01"], [1, 1, "bad"]),
        ("%m/%d/%Y", ["01/31/2019", "02/01/2019", "2019-01-31"], [1, 1, "bad"]),
        ("%Y/%m/%d", ["2019/01/31", "2019/02/01", "31/01/2019"], [1, 1, "bad"]),
        (
            "%m/%d/%Y %I:%M:%S %p",
            ["01/31/2019 11:59:00 PM", "02/01/2019 12:10:00 AM", "01/31/2019 23:59"],
            [1, 1, "bad"],
        ),
        # 1548979140000 ms = 2019-01-31 23:59 UTC; 1548979260000 = 2019-02-01 00:01 UTC
        ("epoch_ms", ["1548979140000", "1548979260000", "1.5e99"], [1, 1, "bad"]),
    ],
)
def test_each_date_format(tmp_path, date_format, values, expected):
    rows = "\n".join(f"{i},{v},35A,A1" for i, v in enumerate(values, 1))
    path = write_csv(tmp_path, "x.csv", "incident_id,date,offense,area_id\n" + rows + "\n")
    ingest, months = read_one_month(path, date_format=date_format)
    assert months == {"2019-01": expected[0], "2019-02": expected[1]}
    assert ingest.rejects[["row", "reason"]].to_dict("records") == [
        {"row": 3, "reason": "bad_date"}
    ]
    described = ingest.reject_summary().set_index("reason").loc["bad_date", "description"]
    assert (date_format or "ISO 8601") in described


def test_offsets_and_z_are_converted_to_the_local_time_zone(tmp_path):
    # 2019-02-01 03:30Z is 2019-01-31 22:30 in New York: counted in January with the zone.
    # 01:00-04:00 is 05:00Z, i.e. 00:00 EST on 1 February; a time without an offset is local.
    values = ["2019-02-01T03:30:00Z", "2019-02-01T01:00:00-04:00", "2019-02-01T00:30:00"]
    rows = "\n".join(f"{i},{v},35A,A1" for i, v in enumerate(values, 1))
    path = write_csv(tmp_path, "x.csv", "incident_id,date,offense,area_id\n" + rows + "\n")
    _, local = read_one_month(path, timezone="America/New_York")
    assert local == {"2019-01": 1, "2019-02": 2}
    _, as_written = read_one_month(path)
    assert as_written == {"2019-02": 3}
    epoch = write_csv(
        tmp_path, "e.csv", "incident_id,date,offense,area_id\n1,1548991800000,35A,A1\n"
    )
    _, ny = read_one_month(epoch, date_format="epoch_ms", timezone="America/New_York")
    _, utc = read_one_month(epoch, date_format="epoch_ms")
    assert ny == {"2019-01": 1} and utc == {"2019-02": 1}  # 2019-02-01 03:30 UTC


def test_every_row_rejected_names_the_top_reasons(tmp_path):
    from dmi_eval.errors import NoUsableRowsError

    path = write_csv(
        tmp_path,
        "x.csv",
        "incident_id,date,offense,area_id\n1,01/02/2019,35A,A1\n2,01/03/2019,35A,A1\n3,2019-01-04,90Z,A1\n",
    )
    with pytest.raises(
        NoUsableRowsError,
        match=r"all 3 rows were rejected — 2 bad_date .*ISO 8601.*; 1 unmapped_offense",
    ) as err:
        read_incidents(path, frequency="month", offense_map=NIBRS)
    assert err.value.rejects["row"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("values", "date_format"),
    [(["-019-01-01", "2019-02-02"], None), (["01/02/0019", "01/02/2019"], "%m/%d/%Y")],
)
def test_dates_outside_the_nanosecond_range_are_bad_dates_not_tracebacks(values, date_format):
    # found by the corruption fuzz test: pandas parses year -19 but cannot hold it in ns
    from dmi_eval.extract import parse_dates

    parsed = parse_dates(pd.Series(values), date_format=date_format)
    assert parsed.isna().tolist() == [True, False]


def test_delimiter_of_a_gzipped_extract_is_read_from_its_text(tmp_path):
    # the Seattle reference file is a .csv.gz; its compressed bytes must not be sniffed
    import gzip

    from dmi_eval.extract import detect_delimiter

    path = tmp_path / "extract.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("ID,time,i_drugs\n1,1,0\n")
    assert detect_delimiter(path) == ","


def test_cell_tally_sums_like_value_counts_across_chunks_and_compaction(monkeypatch):
    """Chunked, compacted integer-coded tallies give the same cells as one value_counts."""
    from dmi_eval.extract import CellTally

    rng = np.random.default_rng(3)
    n = 20_000
    area = np.array([f"A{i}" for i in rng.integers(0, 40, n)], dtype=object)
    ordinal = rng.integers(500, 520, n)
    outcome = np.array(["drug", "violent", "zero"], dtype=object)[rng.integers(0, 3, n)]
    weight = np.where(outcome == "zero", 0, rng.integers(1, 4, n))
    monkeypatch.setattr(CellTally, "_COMPACT_ROWS", 1_000)
    tally = CellTally()
    assert not tally
    for part in np.array_split(np.arange(n), 7):
        tally.add(area[part], ordinal[part], outcome[part], weight[part])
    assert len(tally.parts) == 1  # compacted along the way
    got = tally.frame().set_index(["area", "period", "outcome"])["n"].sort_index()
    frame = pd.DataFrame({"area": area, "period": ordinal, "outcome": outcome, "n": weight})
    expected = frame.groupby(["area", "period", "outcome"])["n"].sum().sort_index()
    pd.testing.assert_series_equal(got, expected, check_dtype=False)
    assert tally.total == int(weight.sum())
    assert (got.xs("zero", level="outcome") == 0).all()  # zero-count cells are kept


def test_seen_in_matches_isin():
    from dmi_eval.extract import seen_in

    rng = np.random.default_rng(4)
    seen = np.sort(rng.integers(0, 2**63, 5_000, dtype=np.uint64))
    ids = np.concatenate([seen[rng.integers(0, len(seen), 300)], rng.integers(0, 2**63, 300)])
    ids = ids.astype(np.uint64)
    np.testing.assert_array_equal(seen_in(seen, ids), np.isin(ids, seen))
    assert not seen_in(np.empty(0, dtype=np.uint64), ids).any()


def test_duplicate_ids_across_chunks_are_rejected(tmp_path, monkeypatch):
    """An id first seen in an earlier chunk is a duplicate in a later one (sorted search)."""
    import dmi_eval.extract as extract

    monkeypatch.setattr(extract, "CHUNK_ROWS", 3)
    lines = ["incident_id,date,offense,area_id"]
    ids = [5, 1, 9, 7, 1, 3, 9, 2, 5, 8]
    lines += [f"{i},2019-01-0{k % 9 + 1},35A,A1" for k, i in enumerate(ids)]
    path = tmp_path / "incidents.csv"
    path.write_text("\n".join(lines) + "\n")
    ingest = read_incidents(path, frequency="month", offense_map=NIBRS)
    assert ingest.rows_counted == 7
    assert ingest.rejects["reason"].tolist() == ["duplicate_id"] * 3
    assert ingest.rejects["row"].tolist() == [5, 7, 9]


def test_an_edge_period_the_extract_cuts_short_is_noted_without_start_and_end(tmp_path):
    # regression: an extract from Thursday 1 January to Thursday 3 December 2015, read weekly
    # with no [study].start/end, counted its first and last weeks from 4 days each and said
    # nothing (161 incidents against ~300 in a real case, inside the persistence window)
    from dmi_eval.data import edge_period_note

    days = pd.date_range("2015-01-01", "2015-12-03", freq="D")
    rows = ["incident_id,date,offense,area_id"] + [
        f"{i},{day.date()},35A,A1" for i, day in enumerate(d for d in days for _ in range(3))
    ]
    path = write_csv(tmp_path, "incidents.csv", "\n".join(rows) + "\n")
    ingest = read_incidents(path, frequency="week", offense_map=NIBRS)
    assert ingest.dates == (dt.date(2015, 1, 1), dt.date(2015, 12, 3))
    note = edge_period_note(ingest, None, None)
    assert note is not None
    assert "its first period (2014-12-29 to 2015-01-04) holds 12 incidents against about 21" in note
    assert "its last period (2015-11-30 to 2015-12-06) holds 12" in note
    assert "set [study].start and end" in note
    # given the dates, the cut weeks are left out and nothing is noted
    ranged = read_incidents(
        path,
        frequency="week",
        offense_map=NIBRS,
        start=dt.date(2015, 1, 1),
        end=dt.date(2015, 12, 3),
    )
    assert edge_period_note(ranged, dt.date(2015, 1, 1), dt.date(2015, 12, 3)) is None
    # whole months from the 1st to the last day: nothing to note
    monthly = read_incidents(path, frequency="month", offense_map=NIBRS)
    assert edge_period_note(monthly, None, None) is not None  # December has 3 of 31 days
    whole = write_csv(tmp_path, "whole.csv", "\n".join(rows[: 1 + 3 * 334]) + "\n")  # to 30 Nov
    assert (
        edge_period_note(read_incidents(whole, frequency="month", offense_map=NIBRS), None, None)
        is None
    )
