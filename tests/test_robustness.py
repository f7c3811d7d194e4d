"""Bad input never ends in a traceback: corrupted files give a clear error or rejects."""

from __future__ import annotations

import re
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmi_eval.cli import main
from tests.helpers import write_csv, write_toml

STUDY = """
[study]
name = "Fuzz"
frequency = "month"

[data]
incidents = "incidents.csv"
areas = "areas.csv"
max_reject_share = 1.0

[[sites]]
id = "east"
intervention = "2019-03-15"
treated_areas = ["A1"]
catchment_areas = ["A2"]
outcomes = ["drug"]
"""

VALID = "incident_id,date,offense,area_id,narrative\n" + "".join(
    f'{i},2019-{1 + i % 6:02d}-{1 + i % 27:02d},{"35A" if i % 3 else "13A"},A{1 + i % 4},"note {i}"\n'
    for i in range(40)
)
AREAS = "area_id,population\nA1,100\nA2,200\nA3,300\nA4,400\n"

edits = st.lists(
    st.tuples(
        st.integers(0, len(VALID) - 1),
        st.sampled_from(["delete", "insert", "replace"]),
        st.sampled_from(
            [
                b",",
                b'"',
                b"\n",
                b"\r",
                b"\x00",
                "é".encode(),
                b"\xff",
                b";",
                b"-",
                b"9",
                b"",
                b"A",
                b"\t",
                b"=",
                b"[",
                b"]",
            ]
        ),
    ),
    min_size=1,
    max_size=12,
)


def corrupt(text: str, ops) -> bytes:
    chars = [bytes([b]) for b in text.encode("utf-8")]
    for pos, op, ch in ops:
        pos = min(pos, len(chars) - 1) if chars else 0
        if op == "delete" and chars:
            del chars[pos]
        elif op == "insert":
            chars.insert(pos, ch)
        elif chars:
            chars[pos] = ch
    return b"".join(chars)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=edits, target=st.sampled_from(["incidents.csv", "areas.csv", "study.toml"]))
def test_random_corruption_never_raises_a_traceback(tmp_path, capsys, ops, target):
    write_toml(tmp_path, STUDY)
    write_csv(tmp_path, "incidents.csv", VALID)
    write_csv(tmp_path, "areas.csv", AREAS)
    original = (tmp_path / target).read_text()
    (tmp_path / target).write_bytes(corrupt(original, ops))
    code = main(["validate-data", str(tmp_path / "study.toml")])
    captured = capsys.readouterr()
    assert code in (0, 2)
    if code == 2:
        message = captured.err.strip()
        assert message.startswith("dmi-eval: error: ")
        assert len(message.splitlines()) <= 3


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        ("incidents.csv", "", "incidents.csv: the file is empty"),
        (
            "incidents.csv",
            "id,when,what,where\n1,2019-01-01,35A,A1\n",
            "incidents.csv: missing column(s)",
        ),
        ("areas.csv", "area_id,population\nA1,many\n", "areas.csv: column 'population', area A1"),
        ("areas.csv", "area_id,population\nA1,1\nA1,2\n", "appears twice"),
        ("areas.csv", "area_id,population\nA1,1\n,2\n", "areas.csv: row 2: area_id is empty"),
    ],
)
def test_named_data_errors(tmp_path, capsys, filename, content, expected):
    write_toml(tmp_path, STUDY)
    write_csv(tmp_path, "incidents.csv", VALID)
    write_csv(tmp_path, "areas.csv", AREAS)
    (tmp_path / filename).write_text(content)
    assert main(["validate-data", str(tmp_path / "study.toml")]) == 2
    assert expected in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    from dmi_eval.synthetic import simulate_study, write_study

    folder = tmp_path_factory.mktemp("small")
    write_study(simulate_study(seed=2, n_rows=8, n_cols=14, n_months=48, n_sites=1), folder)
    return folder


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (r'intervention = "[0-9-]+"', 'intervention = "2031-01-10"', "is after the data end"),
        # the data run from 2015-01 to 2018-12: a call-in in their last month leaves no after
        (r'intervention = "[0-9-]+"', 'intervention = "2018-12-10"', "leaves no period after"),
        (r'intervention = "[0-9-]+"', 'intervention = "2014-06-10"', "leaves no period before"),
        (r'intervention = "[0-9-]+"', 'intervention = "2015-03-10"', "the designs need at least 8"),
        (
            r"market = ",
            'treated_areas = ["Z99", "37081000016"]\nmarket = ',
            "area(s) Z99 have no data",
        ),
        (r'primary_outcome = "drug"', 'primary_outcome = "arson"', "'arson' is not among outcomes"),
        (r"market = ", 'donor_areas = ["37081000016"]\nmarket = ', "an area has one role"),
    ],
)
def test_site_errors_name_the_site_and_the_fix(small_study, tmp_path, capsys, old, new, expected):
    text = (small_study / "study.toml").read_text()
    changed = re.sub(old, new.replace("\\", "\\\\"), text, count=1)
    assert changed != text, old
    shutil.copytree(small_study, tmp_path, dirs_exist_ok=True)
    (tmp_path / "study.toml").write_text(changed)
    assert main(["validate-data", str(tmp_path / "study.toml")]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "study.toml" in err  # which file to fix
    if "intervention" in old:
        assert "check [[sites]].intervention" in err  # which key to fix
    assert "Traceback" not in err
