"""``dmi-eval power``: the verdict on simulated cities like one site, under the study's rules."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from dmi_eval.calibration.city import CitySpec, Effect
from dmi_eval.calibration.like_site import VERDICTS, rules_like_site, spec_like_site
from dmi_eval.calibration.runner import default_scenarios, evaluate_city, sensitivity_scenarios
from dmi_eval.cli import main
from dmi_eval.config import VerdictRules, load_study
from dmi_eval.data import load_study_data
from dmi_eval.errors import ConfigError
from dmi_eval.synthetic import simulate_study, write_study
from tests.helpers import tiny_city_spec


def test_rules_keep_their_durations_in_the_simulated_cities() -> None:
    quarterly = VerdictRules(persistence_periods=4, min_pre_periods=12, min_reduction=0.3)
    monthly = rules_like_site(quarterly, "quarter", "month")
    assert monthly.persistence_in("month") == 12  # 4 quarters
    assert monthly.min_pre_periods == 36  # 12 quarters
    assert (monthly.min_reduction, monthly.alpha) == (0.3, quarterly.alpha)
    weekly = rules_like_site(VerdictRules(persistence="3 months"), "week", "week")
    assert weekly.persistence_in("week") == 13
    assert weekly.min_pre_periods == 12


def test_the_cities_are_judged_by_the_rules_given() -> None:
    spec = tiny_city_spec(covariates=False, effects=(Effect("-45% sustained", -0.45),))
    default = evaluate_city("t", spec, 5)
    strict = evaluate_city("t", spec, 5, VerdictRules(min_reduction=0.9))
    verdicts = {
        name: list(rows.loc[rows["design"] == "verdict", "verdict"])
        for name, rows in (("default", default), ("strict", strict))
    }
    # the same city and fits: a -45% drop is closed under the default rule (25%),
    # never under one that asks for 90%
    assert "closed" in verdicts["default"]
    assert "closed" not in verdicts["strict"]


@pytest.fixture(scope="module")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("power")
    return write_study(simulate_study(seed=3, n_rows=8, n_cols=14, n_months=48, n_sites=2), folder)


def test_power_command_answers_for_one_site(small_study, tmp_path, capsys) -> None:
    site = load_study(small_study).sites[0]
    csv = tmp_path / "power.csv"
    argv = ["power", str(small_study), "--site", site.id, "--cities", "1", "--jobs", "1"]
    assert main([*argv, "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{site.name}: what the verdict would say at sites like it")
    table = pd.read_csv(csv)
    # one city of six markets: no effect, -25% and -45% in turn
    assert list(table["effect"]) == ["none", "-25% sustained", "-45% sustained"]
    assert list(table["markets"]) == [2, 2, 2]
    shares = table[[*VERDICTS, "error"]].sum(axis=1)
    assert shares.round(6).eq(1.0).all()
    for label in ("no effect", "-25%, lasting", "-45%, lasting"):
        assert any(line.startswith(label) for line in out.splitlines())
    # the numbers in the text are the table's
    null = table.iloc[0]
    assert f"closed or displaced at {null['closed'] + null['displaced']:.2f}" in out
    assert "times an area's" not in out  # default exposure: nothing to say


def test_exposure_sets_the_markets_own_loading_deviation(small_study) -> None:
    study = load_study(small_study)
    data = load_study_data(study).panel.site_data(study, study.sites[0].id)
    default = spec_like_site(data)
    assert default.market_loading_sd == CitySpec().market_loading_sd
    stressed = spec_like_site(data, exposure=2)
    assert stressed.market_loading_sd == pytest.approx(2 * default.market_loading_sd)
    assert replace(stressed, market_loading_sd=default.market_loading_sd) == default
    # the calibration's stress scenario is exposure 2 of the same default
    exposed = next(s for s in default_scenarios() if s.id == "monthly-exposed")
    assert exposed.spec.market_loading_sd == pytest.approx(stressed.market_loading_sd)
    with pytest.raises(ConfigError, match="exposure"):
        spec_like_site(data, exposure=float("inf"))


def test_market_trend_gives_the_markets_a_trend_of_their_own(small_study) -> None:
    study = load_study(small_study)
    data = load_study_data(study).panel.site_data(study, study.sites[0].id)
    default = spec_like_site(data)
    assert default.market_trend_sd == 0.0
    trended = spec_like_site(data, market_trend=0.05)
    assert replace(trended, market_trend_sd=0.0) == default
    # the calibration's market-trends scenario is the same what-if
    scenario = next(s for s in sensitivity_scenarios() if s.id == "market-trends")
    assert scenario.spec.market_trend_sd == trended.market_trend_sd
    for bad in (-0.01, float("nan"), True):
        with pytest.raises(ConfigError, match="market_trend: pass the SD"):
            spec_like_site(data, market_trend=bad)


def test_power_command_says_how_exposed_its_markets_were(small_study, capsys) -> None:
    site = load_study(small_study).sites[0]
    argv = ["power", str(small_study), "--site", site.id, "--cities", "1", "--jobs", "1"]
    assert main([*argv, "--exposure", "2", "--market-trend", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "its own exposure to city-wide swings 2 times an area's" in out
    assert "a trend of its own (SD 0.05 a year, log scale)" in out


def test_power_command_judges_by_the_studys_own_rules(tmp_path, capsys) -> None:
    study = write_study(
        simulate_study(seed=3, n_rows=8, n_cols=14, n_months=48, n_sites=2), tmp_path / "s"
    )
    with study.open("a", encoding="utf-8") as f:
        f.write("\n[verdict]\nmin_reduction = 0.9\n")
    site = load_study(study).sites[0]
    csv = tmp_path / "power.csv"
    argv = ["power", str(study), "--site", site.id, "--cities", "1", "--jobs", "1"]
    assert main([*argv, "--csv", str(csv)]) == 0
    assert "at least 90%, still a drop of at least 45% over the last 6 months" in (
        capsys.readouterr().out
    )
    # a lasting -45% drop is never a 90% one: nothing is called closed
    assert pd.read_csv(csv)["closed"].eq(0).all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--site", "nowhere"], "nowhere"),
        (["--site", "{site}", "--cities", "0"], "--cities"),
        (["--site", "{site}", "--csv", "no/such/folder/power.csv"], "folder does not exist"),
        (["--site", "{site}", "--exposure", "-1"], "--exposure: pass a finite number"),
        (["--site", "{site}", "--exposure", "nan"], "--exposure: pass a finite number"),
        (["--site", "{site}", "--market-trend", "-1"], "--market-trend: pass the SD"),
    ],
)
def test_power_command_errors_are_plain(small_study, capsys, extra, message) -> None:
    site = load_study(small_study).sites[0]
    argv = ["power", str(small_study), *(a.format(site=site.id) for a in extra)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmi-eval: error:") and message in err
