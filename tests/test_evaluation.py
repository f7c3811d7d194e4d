"""Evidence for the verdict: persistence honoured by every design, catchment fallback, warnings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmi_eval import evaluation
from dmi_eval.config import parse_study
from dmi_eval.evaluation import design_warnings, evaluate_site, fit_catchment
from tests.test_did import simulate_site


def _study(site_data, verdict: dict) -> object:
    raw = {
        "study": {"name": "t", "frequency": "month"},
        "data": {"counts": "counts.csv"},
        "sites": [
            {
                "id": site_data.site.id,
                "intervention": site_data.site.intervention.isoformat(),
                "treated_areas": list(site_data.treated_areas),
                "catchment_areas": list(site_data.catchment_areas),
                "outcomes": ["drug"],
            }
        ],
        "verdict": verdict,
    }
    return parse_study(raw, file=Path("study.toml"))


@pytest.mark.slow
def test_persistence_other_than_six_periods_is_honoured_by_every_design():
    # regression: [verdict] persistence_periods = 4 crashed (designs were built with last_k=6)
    sd, _ = simulate_site(3, effect=-0.4, n_areas=40, base=8.0)
    study = _study(sd, {"persistence": "4 months", "min_pre_periods": 12})
    ev = evaluate_site(sd.panel, study, "site")
    assert ev.evidence.last.window == "last4" and ev.evidence.last_k == 4
    for name, res in ev.results.items():
        assert "last4" in set(res.table["window"]), name
    assert "last 4 months" in ev.verdict.reasons_text()
    # what the closure rule says of its gates (verdict.rule_text): only DID, never primary, has
    # a pre-trend test, and the synthetic control runs one fake call-in date where ITS runs several
    has_pretrend = {n for n, r in ev.results.items() if "pretrend_p" in r.diagnostics.columns}
    assert has_pretrend == {"did"} and not has_pretrend & set(evaluation.PRIMARY_ORDER)
    fake_dates = {n: len(r.checks.get("placebo_time", ())) for n, r in ev.results.items()}
    assert fake_dates["sc"] == 1 and fake_dates["its"] >= 2 and fake_dates["cits"] >= 2


@pytest.mark.slow
def test_every_design_states_its_detectable_reduction_at_the_verdicts_alpha():
    # the verdict says "not closed" only if the design could have detected a min_reduction
    # drop at its own level: every design's MDE was at a fixed 5% whatever [verdict] alpha
    sd, _ = simulate_site(3, effect=0.0, n_areas=40, base=8.0)
    mde = {}
    for alpha in (0.05, 0.01):
        study = _study(sd, {"alpha": alpha, "min_pre_periods": 12})
        ev = evaluate_site(sd.panel, study, "site")
        mde[alpha] = {name: evaluation.design_mde(res, "drug") for name, res in ev.results.items()}
        assert ev.primary == "sc"
        assert ev.evidence.post.mde == ev.results["sc"].noise_test("drug").mde(alpha)
    assert set(mde[0.05]) == set(mde[0.01]) == {"sc", "sdid", "did", "its", "cits"}
    for name, at_5 in mde[0.05].items():
        assert mde[0.01][name] > at_5, name  # a stricter test needs a larger drop


def test_catchment_never_receives_a_not_used_string(monkeypatch):
    # regression: a design's "not used" message for the catchment (microsynth's, when it
    # was primary) reached the evidence; the next design of the primary order is fitted
    sd, _ = simulate_site(1, n_areas=30, catchment=(6, 7))
    study = _study(sd, {})
    fitted = object()
    monkeypatch.setattr(
        evaluation,
        "DESIGNS",
        {
            "sc": lambda data, study: "no synthetic control for these areas",
            "cits": lambda data, study: fitted,
            "its": lambda data, study: None,
        },
    )
    results, notes = fit_catchment(sd, study, "sc")
    assert results == {"cits": fitted}
    assert notes == ("sc (catchment): not used — no synthetic control for these areas",)


def test_microsynth_is_never_the_primary_design():
    # its permutation intervals under-cover at markets sharing one exposure (PRIMARY_ORDER notes)
    fitted = {name: object() for name in evaluation.DESIGNS}
    assert "microsynth" not in evaluation.PRIMARY_ORDER
    assert evaluation.choose_primary(fitted) == "sc"
    del fitted["sc"]
    assert evaluation.choose_primary(fitted) == "cits"
    assert "Micro-level synthetic control is one of them" in evaluation.primary_rule_text()


@dataclasses.dataclass(frozen=True)
class _Fitted:
    """What a fake design returns: its name and the areas it was fitted to."""

    design: str
    areas: tuple[str, ...]


def _fake_designs(failing: tuple[str, ...], micro: bool = False) -> dict:
    def fitter(name):
        def fit(data, study):
            if name == "microsynth" and not micro:
                return "not used here"
            if name in failing:
                raise evaluation.DesignError(f"{name} cannot be fitted here")
            return _Fitted(name, tuple(data.treated_areas))

        return fit

    return {name: fitter(name) for name in evaluation.DESIGNS}


@pytest.mark.parametrize("micro", [False, True])
@pytest.mark.parametrize("failing", [(), ("sc",), ("sc", "cits")])
def test_site_tasks_give_what_the_sequential_steps_give(monkeypatch, failing, micro):
    """The designs and the catchment's fit (started before the primary design is known)
    run as concurrent tasks: same results, primary, catchment and notes as one after
    the other, whichever design is primary, with or without microsynth fitted, in forked
    workers and in one process."""
    from dmi_eval.inference.parallel import compute

    sd, _ = simulate_site(1, n_areas=30, catchment=(6, 7))
    study = _study(sd, {})
    monkeypatch.setattr(evaluation, "DESIGNS", _fake_designs(failing, micro))
    results, notes = evaluation.fit_designs(sd, study)
    primary = evaluation.choose_primary(results)
    catchment, c_notes = fit_catchment(sd, study, primary)
    expected = (results, notes, primary, catchment, c_notes)
    assert primary == ("sc" if not failing else "cits" if failing == ("sc",) else "its")
    assert ("microsynth" in results) == micro
    assert set(catchment) == {primary}
    assert catchment[primary].areas == tuple(sd.catchment_areas)
    assert evaluation._fit_site(sd, study) == expected
    with compute(n_jobs=1):
        assert evaluation._fit_site(sd, study) == expected


def test_warnings_gate_closed_spike_and_in_time_placebo():
    from dmi_eval.designs.its import ITS

    sd, counts = simulate_site(2, n_areas=30, n_periods=48, call_in=30, base=20.0)
    study = _study(sd, {})
    res = ITS(sd, placebo=True).fit()
    assert design_warnings(sd, res, "drug", study) == ()
    # a spike in the last three pre months: a warning naming regression to the mean
    spiked = counts.copy()
    spiked[:6, 27:30] *= 3
    panel = dataclasses.replace(sd.panel, counts={"drug": spiked})
    sd2 = panel.site_data(study, "site")
    warns = design_warnings(sd2, ITS(sd2, placebo=False).fit(), "drug", study)
    assert len(warns) == 1 and "regression to the mean" in warns[0]
    # an in-time placebo that finds effects at most fake dates fails
    placebo = res.checks["placebo_time"].copy()
    placebo["p_value"] = 0.001

    class Fake:
        design = "its"
        diagnostics = res.diagnostics
        checks = {"placebo_time": placebo}

    warns = design_warnings(sd, Fake(), "drug", study)  # type: ignore[arg-type]
    assert any("in-time placebo fails" in w for w in warns)
    assert np.isfinite(res.diagnostics["mde"]).all()


class _Results:
    """The row and diagnostics ``window_evidence`` reads, with the given diagnostics columns."""

    def __init__(self, design: str, diagnostics: dict):
        import pandas as pd

        self.design = design
        self.diagnostics = pd.DataFrame({"outcome": ["drug"], **diagnostics})

    def row(self, outcome, window):
        import pandas as pd

        return pd.Series(
            {
                "design": self.design,
                "pct_change": -0.2,
                "ci_low": -0.4,
                "ci_high": 0.1,
                "p_lower": 0.2,
                "p_upper": 0.8,
                "p_two_sided": 0.4,
                "level": 0.9,
            }
        )


def test_every_designs_mde_reaches_the_verdict():
    # regression: synthetic control reports its MDE as mde_placebo; the verdict read only mde
    from dmi_eval.config import VerdictRules
    from dmi_eval.evaluation import window_evidence
    from dmi_eval.verdict import undetectable

    sc = _Results("sc", {"mde_placebo": 0.42, "mde_placebo_last": 0.5, "min_p": 1 / 301})
    post, last = window_evidence(sc, "drug", "post"), window_evidence(sc, "drug", "last6")
    assert (post.mde, last.mde, post.min_p) == (0.42, 0.5, 1 / 301)
    reason = undetectable(post, VerdictRules())
    assert reason is not None and "synthetic control test could not have detected a 25%" in reason
    # a design's own mde wins over a placebo MDE; NaN falls through to the next name
    both = _Results("did", {"mde": 0.2, "mde_placebo": 0.42})
    assert window_evidence(both, "drug", "post").mde == 0.2
    nan = _Results("sc", {"mde": float("nan"), "mde_placebo": 0.3})
    assert window_evidence(nan, "drug", "post").mde == 0.3
    assert np.isnan(window_evidence(_Results("its", {}), "drug", "post").mde)


def test_pre_fit_is_judged_on_monthly_totals_for_weekly_data():
    # regression: 2-6 drug incidents a week miss any fit by half their mean from counting
    # noise alone, so every weekly market of the calibration was "poor pre-period fit"
    import pandas as pd

    from dmi_eval.evaluation import monthly_fit_ratio

    rng = np.random.default_rng(4)
    n = 156
    y = rng.poisson(3.0, n).astype(float)

    class Weekly:
        def pre_fit_ratio(self, outcome):
            return float(np.sqrt(np.mean((y - 3.0) ** 2)) / y.mean())

        def get_plot_data(self, outcome):
            return pd.DataFrame(
                {"role": ["pre"] * n + ["post"] * 4, "observed": [*y, 0, 0, 0, 0]}
            ).assign(counterfactual=3.0)

    res = Weekly()
    weekly = res.pre_fit_ratio("drug")
    assert weekly > 0.5  # per week: fails the default 50% limit on noise alone
    monthly = monthly_fit_ratio(res, "drug", "week")
    assert monthly < 0.35 and monthly == pytest.approx(
        np.sqrt(np.mean((y.reshape(-1, 4).sum(axis=1) - 12.0) ** 2)) / (4 * y.mean())
    )
    assert monthly_fit_ratio(res, "drug", "month") == weekly  # the design's own value


def test_spike_warning_asks_whether_the_market_rose_against_its_comparison():
    """On simulated cities: a planted spike of the market alone (its level doubles over the
    last three pre months) is flagged; the whole city rising 150% in those months (a level
    shift every area takes) is not, although a check against the market's own level flags it."""
    from dmi_eval.calibration.city import NULL, CitySpec, simulate_city

    spec = dataclasses.replace(CitySpec(), n_markets=1, effects=(NULL,), covariates=False)
    for seed in (3, 4, 5, 6):
        city = simulate_city(spec, seed=seed)
        study = city.study()
        site = city.markets[0]
        counts = city.panel.counts["drug"]
        sd = city.panel.site_data(study, site.id)
        last3 = np.flatnonzero(sd.pre_mask)[-3:]
        market = np.flatnonzero(city.panel.areas.isin(site.areas))
        level = sd.treated_series("drug").to_numpy(dtype=float)[sd.pre_mask][-15:-3].mean()

        def warnings_for(drug, city=city, study=study, site=site):
            panel = dataclasses.replace(city.panel, counts={**city.panel.counts, "drug": drug})
            data = panel.site_data(study, site.id)
            return (
                evaluation.spike_warning(data, "drug", study),
                evaluation.spike_warning(data, "drug", study, own=True),
            )

        assert warnings_for(counts) == (None, None), seed
        planted = counts.copy()
        planted[market[0], last3] += int(round(level))
        against, own = warnings_for(planted)
        assert against is not None and "comparison areas do not share" in against, seed
        assert own is not None
        shared = counts.copy()
        shared[:, last3] = np.round(shared[:, last3] * 2.5).astype(shared.dtype)
        against, own = warnings_for(shared)
        assert own is not None and "regression to the mean" in own, seed
        assert against is None, seed


@pytest.mark.slow
def test_primary_outcome_only_gives_the_verdict_of_every_outcome():
    """``dmi-eval check`` evaluates the primary outcome only: the evidence, verdict and
    primary design's numbers are those of a run on every outcome — also when the
    primary outcome is not the site's first (designs that draw by outcome position)."""
    from dmi_eval.calibration.city import CitySpec, simulate_city

    spec = dataclasses.replace(CitySpec(), n_markets=1)
    city = simulate_city(spec, seed=11)
    study = city.study()
    site = dataclasses.replace(study.sites[0], outcomes=city.panel.outcomes)
    assert len(site.outcomes) > 1 and site.catchment_areas
    second = dataclasses.replace(site, primary_outcome=site.outcomes[1])
    for chosen in (site, second):
        st = dataclasses.replace(study, sites=(chosen,))
        every = evaluate_site(city.panel, st, site.id)
        only = evaluate_site(city.panel, st, site.id, outcomes="primary")
        assert only.data.outcomes == (chosen.primary_outcome,)
        assert set(only.results[only.primary].table["outcome"]) == {chosen.primary_outcome}
        assert only.primary == every.primary and only.catchment_results.keys() == (
            every.catchment_results.keys()
        )
        assert repr(only.evidence) == repr(every.evidence)
        assert only.verdict == every.verdict
        # effects.csv: a catchment row's p_value is the test of a rise, and says so
        rows = every.table()
        near = rows[rows["design"].str.endswith("-catchment")]
        assert len(near) and (near["p_value"] == near["p_upper"]).all()
        assert near["method"].str.endswith("upper, one-sided (the test of a rise)").all()
        assert not near["method"].str.contains("lower, one-sided").any()
        tidy = every.effects()
        assert (tidy.loc[tidy["design"].str.endswith("-catchment"), "p_value"].to_numpy()
                == near["p_value"].to_numpy()).all()  # fmt: skip
        effects = every.results[every.primary].effects()
        pd.testing.assert_frame_equal(
            only.results[only.primary].effects(),
            effects[effects["outcome"] == chosen.primary_outcome].reset_index(drop=True),
        )


def test_microsynth_matches_every_outcome_when_only_the_primary_is_evaluated(monkeypatch):
    from dmi_eval.calibration.city import CitySpec, simulate_city

    city = simulate_city(dataclasses.replace(CitySpec(), n_markets=1), seed=11)
    study = city.study()
    site = dataclasses.replace(study.sites[0], outcomes=city.panel.outcomes)
    study = dataclasses.replace(study, sites=(site,))
    data = evaluation.primary_outcome_only(city.panel.site_data(study, site.id))
    assert data.outcomes == (site.primary_outcome,) and data.panel is city.panel
    seen = []

    class Recording:
        def __init__(self, data, *, outcomes, **kwargs):
            seen.append(outcomes)

        def fit(self):
            return dataclasses.make_dataclass("R", ["calibration"])(
                {"method": "x", "max_misfit": 1}
            )

    monkeypatch.setattr(evaluation, "MicroSynth", Recording)
    monkeypatch.setattr(evaluation, "MIN_MICRO_DONORS", 1)
    assert "no exact synthetic control" in evaluation._fit_microsynth(data, study)
    assert seen == [site.outcomes]


def _gap_of(shift: float, i: int) -> np.ndarray:
    return np.arange(3.0) * i + shift


def test_shared_placebo_gaps_reuse_only_an_equal_gap_function(monkeypatch):
    from functools import partial

    from dmi_eval.inference import placebo

    computed = []
    real = placebo.parallel_map

    def counting(fn, items, **kwargs):
        computed.append(fn.args)
        return real(fn, items, **kwargs)

    monkeypatch.setattr(placebo, "parallel_map", counting)
    args = dict(
        treated="m", labels=list("abcd"), periods=pd.RangeIndex(3), pre=np.array([1, 1, 0], bool)
    )
    args["post"] = ~args["pre"]
    run = partial(placebo.placebo_in_space, treated_gap=np.zeros(3), n_jobs=1, **args)
    with placebo.shared_placebo_gaps():
        first = run(partial(_gap_of, 0.5), [1, 2, 3])
        again = run(partial(_gap_of, 0.5), [1, 2, 3])  # an equal function: reused
        other = run(partial(_gap_of, 0.25), [1, 2, 3])  # other data: computed
        fewer = run(partial(_gap_of, 0.5), [1, 2])  # other placebos: computed
    assert computed == [(0.5,), (0.25,), (0.5,)]
    pd.testing.assert_frame_equal(first.gaps, again.gaps)
    assert not np.allclose(first.gaps.to_numpy(), other.gaps.to_numpy())
    assert fewer.gaps.shape[0] == 3
    run(partial(_gap_of, 0.5), [1, 2, 3])  # after the block nothing is kept
    assert computed[-1] == (0.5,) and len(computed) == 4


@pytest.mark.slow
def test_catchment_reuses_the_markets_placebo_fits_with_identical_results(monkeypatch):
    """The site's SC task fits the catchment after the market in one process: its placebo
    test (the same donors refitted on the same donors) computes no placebo fit and gives
    exactly what a catchment fit on its own gives."""
    from dmi_eval.calibration.city import CitySpec, simulate_city
    from dmi_eval.inference import placebo
    from dmi_eval.inference.parallel import compute

    city = simulate_city(dataclasses.replace(CitySpec(), n_markets=1), seed=11)
    study = city.study()
    data = city.panel.site_data(study, study.sites[0].id)
    with compute(n_jobs=1):
        alone, _ = fit_catchment(data, study, "sc")
        calls = []
        real = placebo.parallel_map
        monkeypatch.setattr(
            placebo, "parallel_map", lambda *a, **k: calls.append(1) or real(*a, **k)
        )
        sc, shared = evaluation._site_task(data, study, evaluation.SC_AND_CATCHMENT)
    assert sc[0] is not None and len(calls) == 1  # the market's placebo loop only
    (name,) = alone
    assert name == "sc" and shared[0].keys() == alone.keys()
    pd.testing.assert_frame_equal(shared[0][name].effects(), alone[name].effects())
    for outcome, test in alone[name].placebos.items():
        pd.testing.assert_frame_equal(shared[0][name].placebos[outcome].gaps, test.gaps)
