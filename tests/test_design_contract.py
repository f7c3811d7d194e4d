"""The contract every registered design keeps (one results shape: DesignResults).

Each design is fitted (small, seeded settings so the suite stays fast) to one simulated
site with a known 30% fall in drug incidents; the same checks then run on every design.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dmi_eval.config import parse_study
from dmi_eval.designs.did import DID
from dmi_eval.designs.its import ITS
from dmi_eval.designs.microsynth import MicroSynth
from dmi_eval.designs.synth import SyntheticControl
from dmi_eval.evaluation import DESIGNS
from dmi_eval.panel import Panel
from dmi_eval.plots import plot_counterfactual
from dmi_eval.results import (
    DIAGNOSTIC_COLUMNS,
    EFFECT_COLUMNS,
    SERIES_COLUMNS,
    TABLE_COLUMNS,
    DesignResults,
)

N_AREAS = 80
N_TREATED = 3
N_PERIODS = 36
CALL_IN = "2019-12-15"  # period 23 of 36 is the transition


def _site(seed: int = 3):
    """Counts with area rates x a seasonal factor; the treated areas fall 30% after the call-in."""
    rng = np.random.default_rng(seed)
    periods = pd.period_range("2018-01", periods=N_PERIODS, freq="M")
    areas = pd.Index([f"A{i:03d}" for i in range(N_AREAS)])
    base = rng.gamma(2.0, 3.0, size=N_AREAS)
    base[:N_TREATED] = rng.uniform(8, 12, size=N_TREATED)
    season = 1 + 0.3 * np.sin(np.arange(N_PERIODS) / 12 * 2 * np.pi)
    mu = base[:, None] * season[None, :]
    post = np.arange(N_PERIODS) >= 24
    mu_t = mu.copy()
    mu_t[:N_TREATED, post] *= 0.7
    counts = {"drug": rng.poisson(mu_t), "violent": rng.poisson(0.5 * mu)}
    cov = pd.DataFrame({"pop": base * 100 + rng.normal(0, 5, N_AREAS)}, index=areas)
    panel = Panel(frequency="month", periods=periods, areas=areas, counts=counts, covariates=cov)
    study = parse_study(
        {
            "study": {"name": "contract", "frequency": "month"},
            "data": {"counts": "counts.csv"},
            "sites": [
                {
                    "id": "east",
                    "intervention": CALL_IN,
                    "treated_areas": list(areas[:N_TREATED]),
                    "outcomes": ["drug", "violent"],
                    "primary_outcome": "drug",
                }
            ],
        },
        file=Path("study.toml"),
    )
    return panel.site_data(study, "east")


FITTERS = {
    "its": lambda sd: ITS(sd).fit(),
    "cits": lambda sd: ITS(sd, comparison="donor_total").fit(),
    "sc": lambda sd: SyntheticControl(
        sd, method="sc", anchor="ratio", seed=1, max_placebos=19, n_jobs=1
    ).fit(),
    "sdid": lambda sd: SyntheticControl(
        sd,
        method="sdid",
        seed=1,
        placebo_time=False,
        leave_one_out=False,
        max_placebos=19,
        n_jobs=1,
    ).fit(),
    "did": lambda sd: DID(sd, seed=1, n_placebo=40).fit(),
    "microsynth": lambda sd: MicroSynth(
        sd, match_periods="total", n_permutations=19, seed=1, n_jobs=1
    ).fit(),
}
"""The contract's fitting settings: every design the evaluation registers, small and seeded."""


def test_every_registered_design_is_under_contract():
    assert set(FITTERS) == set(DESIGNS)


@pytest.fixture(scope="module")
def site():
    return _site()


@pytest.fixture(scope="module", params=sorted(FITTERS))
def fitted(request, site):
    name = request.param
    return name, FITTERS[name](site), FITTERS[name](site)


def test_results_are_design_results_with_the_shared_frames(fitted):
    name, res, _ = fitted
    assert isinstance(res, DesignResults)
    assert res.design == name and res.site_id == "east"
    assert 0 < res.level < 1
    assert list(res.effects().columns) == list(EFFECT_COLUMNS)
    assert list(res.table.columns) == list(TABLE_COLUMNS)
    assert list(res.series.columns) == list(SERIES_COLUMNS)
    assert list(res.diagnostics.columns[: len(DIAGNOSTIC_COLUMNS)]) == list(DIAGNOSTIC_COLUMNS)
    outcomes = list(dict.fromkeys(res.table["outcome"]))
    assert outcomes == ["drug", "violent"]
    assert list(res.diagnostics["outcome"]) == outcomes
    assert set(res.series["outcome"]) == set(outcomes)
    assert len(res.table) == len(outcomes) * len(res.windows)
    assert tuple(dict.fromkeys(res.table["window"])) == tuple(res.windows)
    assert (res.table["level"] == res.level).all()
    for frame in res.checks.values():
        assert isinstance(frame, pd.DataFrame)
    assert isinstance(dict(res.choices), dict)
    assert all(isinstance(n, str) for n in res.notes)
    # the effects row the verdict reads is the table row
    row = res.row("drug", "post")
    eff = res.effects()
    first = eff[(eff["outcome"] == "drug") & (eff["window"] == "post")].iloc[0]
    assert row["pct_change"] == first["pct_change"]
    assert res.p_value_lower("drug") == row["p_lower"]


def test_results_are_read_only(fitted):
    _, res, _ = fitted
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.site_id = "west"
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.table = res.table.iloc[:0]
    # a caller's edit of a frame it was handed never reaches the results
    before = (res.table.copy(), res.series.copy(), res.diagnostics.copy(), dict(res.checks))
    table, series, diagnostics, checks = res.table, res.series, res.diagnostics, res.checks
    table["pct_change"] = 0.0
    series["observed"] = -1.0
    diagnostics["outcome"] = "edited"
    checks["added"] = table
    pd.testing.assert_frame_equal(res.table, before[0])
    pd.testing.assert_frame_equal(res.series, before[1])
    pd.testing.assert_frame_equal(res.diagnostics, before[2])
    assert set(res.checks) == set(before[3])
    pd.testing.assert_frame_equal(res.effects(), res.table[list(EFFECT_COLUMNS)])


def test_same_seed_same_results(fitted):
    _, res, again = fitted
    pd.testing.assert_frame_equal(res.table, again.table)
    pd.testing.assert_frame_equal(res.series, again.series)
    pd.testing.assert_frame_equal(res.diagnostics, again.diagnostics)


def test_p_values_are_probabilities_and_tails_agree(fitted):
    name, res, _ = fitted
    t = res.table
    cols = ["p_value", "p_lower", "p_upper", "p_two_sided"]
    values = t[cols].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    assert finite.size > 0
    assert ((finite >= 0) & (finite <= 1)).all()
    for r in t.itertuples(index=False):
        tails = (r.p_lower, r.p_upper, r.p_two_sided)
        if not all(math.isfinite(p) for p in tails):
            continue
        # each tail counted on its own: together they cover every outcome at least once
        assert r.p_lower + r.p_upper >= 1 - 1e-9, name
        assert r.p_two_sided >= min(r.p_lower, r.p_upper) - 1e-9, name
        # the reported p-value is one of the design's own tails
        assert any(math.isclose(r.p_value, p, rel_tol=0, abs_tol=1e-12) for p in tails), name
    # the simulated 30% fall is found: a small one-sided p-value of a reduction
    assert res.p_value_lower("drug") < 0.2, name


def test_counterfactual_plot_returns_figure_and_axes(fitted):
    _, res, _ = fitted
    fig, ax = plot_counterfactual(res, "drug")
    assert isinstance(fig, Figure) and isinstance(ax, Axes)
    assert ax.has_data()
    plt.close(fig)
    data = res.get_plot_data("drug")
    assert set(SERIES_COLUMNS) - {"outcome"} <= set(data.columns)
