"""The synthetic study generator: deterministic, truthful, and read back intact."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest

from dmi_eval.config import load_study
from dmi_eval.data import load_study_data
from dmi_eval.synthetic import SCENARIOS, simulate_study, write_study


def _digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def full_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    sim = simulate_study(seed=11)
    path = write_study(sim, folder)
    return sim, path


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = write_study(simulate_study(seed=5, n_rows=8, n_cols=14, n_months=36), tmp_path / "a")
    b = write_study(simulate_study(seed=5, n_rows=8, n_cols=14, n_months=36), tmp_path / "b")
    c = write_study(simulate_study(seed=6, n_rows=8, n_cols=14, n_months=36), tmp_path / "c")
    assert _digest(a.parent) == _digest(b.parent)
    assert _digest(a.parent)["extract.csv.gz"] != _digest(c.parent)["extract.csv.gz"]
    assert "markets/eastside.geojson" in _digest(a.parent)


def test_extract_is_gzip_without_time_or_name_and_reads_back(tmp_path):
    """The shipped extract is gzip with mtime 0 and no file name: same bytes on every run."""
    sim = simulate_study(seed=5, n_rows=8, n_cols=14, n_months=36)
    path = write_study(sim, tmp_path)
    raw = (tmp_path / "extract.csv.gz").read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"
    flags, mtime = raw[3], int.from_bytes(raw[4:8], "little")
    assert flags & 0x08 == 0  # FNAME not set: no file name in the header
    assert mtime == 0
    assert not (tmp_path / "extract.csv").exists()
    text = gzip.decompress(raw).decode("utf-8")
    assert text == sim.incidents.to_csv(index=False, lineterminator="\n")
    assert load_study(path).data.incidents.name == "extract.csv.gz"


def test_six_scenarios_with_their_verdicts(full_study):
    sim, path = full_study
    truth = sim.truth["sites"]
    assert len(truth) == 6
    assert {s["verdict"] for s in truth.values()} == {
        "closed",
        "not_closed",
        "displaced",
        "inconclusive",
    }
    kinds = " ".join(s["scenario"] for s in truth.values())
    for word in ("sustained", "no effect", "displaced", "relapse", "diffusion", "too small"):
        assert word in kinds
    dates = [s["intervention"] for s in truth.values()]
    assert len(set(dates)) == 6  # staggered call-ins
    eff = {k: v["true_effects"]["drug"] for k, v in truth.items()}
    assert eff["eastside"]["treated_post"] < -0.3
    assert eff["northgate"]["treated_post"] == 0.0
    assert eff["riverside"]["catchment_post"] > 0.3
    assert eff["southpark"]["treated_post"] < 0 and eff["southpark"]["treated_last6"] == 0.0
    assert eff["westend"]["catchment_post"] < -0.1
    assert truth["millbrook"]["mean_monthly_drug_pre"] < 3
    assert truth["eastside"]["mean_monthly_drug_pre"] > 15
    # The city-wide decline makes a naive before/after comparison wrong for the no-effect site.
    assert truth["northgate"]["naive_before_after_drug"] < -0.1


def test_written_study_reads_back_with_every_row_accounted(full_study):
    sim, path = full_study
    study = load_study(path)
    assert [s.id for s in study.sites] == [s.id for s in SCENARIOS]
    ingest = load_study_data(study)
    assert ingest.rows_read == len(sim.incidents)
    assert ingest.rows_counted + ingest.rows_rejected == ingest.rows_read
    # The junk rows (six kinds, four of them geocoding or extract failures) are exactly the
    # rejects; true counts are untouched.
    n_junk = int(round(0.004 * (ingest.rows_read * 4 / 4.02) / 4))
    assert ingest.rejects["reason"].value_counts().to_dict() == {
        reason: n_junk
        for reason in (
            "bad_date",
            "outside_areas",
            "bad_coordinates",
            "unmapped_offense",
            "duplicate_id",
        )
    }
    assert len(study.sites[0].treated_areas) == 4
    # The markets and 200 m catchments recover exactly the blocks the generator used.
    for site in study.sites:
        assert site.treated_areas == sim.site_areas[site.id]["treated"]
        assert site.catchment_areas == sim.site_areas[site.id]["catchment"]
    for site in study.sites:
        data = ingest.panel.site_data(study, site.id)
        assert data.n_pre >= 36 and data.n_post >= 17
        assert not set(data.donor_areas) & study.intervention_areas
    assert path.parent.joinpath("truth.json").exists()
    sizes = sum(p.stat().st_size for p in path.parent.rglob("*") if p.is_file())
    assert sizes < 20_000_000


def test_factor_structure_makes_areas_differ_in_trend(full_study):
    sim, path = full_study
    ingest = load_study_data(load_study(path))
    prop = ingest.panel.matrix("property").to_numpy().astype(float)
    first, last = prop[:, :24].sum(axis=1) + 1, prop[:, -24:].sum(axis=1) + 1
    growth = np.log(last / first)
    assert growth.std() > 0.15  # areas follow different paths: a city mean is no counterfactual


def test_panel_totals_baseline(full_study, data_regression):
    """Guards the validated generator: any change to the synthetic panel shows up here."""
    sim, path = full_study
    ingest = load_study_data(load_study(path))
    panel = ingest.panel
    totals = {o: int(v) for o, v in panel.totals().items()}
    per_site = {}
    study = load_study(path)
    for site in study.sites:
        data = panel.site_data(study, site.id)
        per_site[site.id] = {o: int(data.treated_series(o).sum()) for o in site.outcomes}
    data_regression.check(
        {
            "totals": totals,
            "sites": per_site,
            "rows_read": ingest.rows_read,
            "rejected": ingest.rows_rejected,
            "truth": json.loads(json.dumps(sim.truth["sites"]["eastside"])),
        }
    )


def test_simulate_keeps_a_users_files_unless_forced(tmp_path, capsys):
    from dmi_eval.cli import main

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "study.toml").write_text("my own study\n")
    (folder / "notes.txt").write_text("n\n")
    assert main(["simulate", str(folder), "--seed", "3"]) == 2
    assert "study.toml, not written by dmi-eval simulate" in capsys.readouterr().err
    assert (folder / "study.toml").read_text() == "my own study\n"  # untouched
    assert main(["simulate", str(folder), "--seed", "3", "--force"]) == 0
    assert (folder / "notes.txt").read_text() == "n\n"  # other files kept
    # a previous simulation is replaced without --force (nox -s data rewrites data/synthetic)
    before = (folder / "truth.json").read_bytes()
    assert main(["simulate", str(folder), "--seed", "3"]) == 0
    assert (folder / "truth.json").read_bytes() == before
