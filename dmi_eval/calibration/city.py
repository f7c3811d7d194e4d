"""Realistic simulated DMI cities with known truth, for calibrating the designs.

A city is a grid of micro-areas observed monthly or weekly. Expected counts
follow a latent factor model with random-walk factors,

.. math::

    \\log \\lambda_{a,o,t} = \\mu_{a,o} + \\delta_a t + \\ell_a' f_t + s_o(t)
    \\qquad
    Y_{a,o,t} \\sim \\mathrm{Poisson}(\\lambda_{a,o,t} \\, G_{a,o,t} \\, m_{a,o,t}),
    \\quad G_{a,o,t} \\sim \\mathrm{Gamma}(1/\\phi, \\phi),

where :math:`f_t` are ``n_factors`` random walks (the first with a drift that
every area shares on average), :math:`\\ell_a` the area's loadings -- a smooth
spatial field plus an area deviation, and for the areas of one market a
*shared* market deviation, identical for every outcome (unless
``outcome_loading_sd`` gives the violent outcome loadings of its own) -- :math:`\\delta_a` a
slow area-specific trend (plus, with ``market_trend_sd``, one trend of its
own shared by a market's areas), :math:`s_o` a common seasonal term, :math:`G` the
gamma frailty of one area, outcome and period (negative-binomial counts with
variance :math:`\\lambda + \\phi \\lambda^2`) and :math:`m` the intervention
multiplier (1 except in a market or its catchment after its call-in).

Markets are hot spots of 2 to 6 contiguous areas whose drug counts total
``market_rate`` incidents a month (default 8 to 25) against donor areas at
``donor_rate`` (default 0.3 to 3 a month, with a few untreated hot spots);
the catchment of a market is the ring of areas around it. Call-ins are
staggered, and each market is assigned one :class:`Effect` (no effect, a
sustained or relapsing reduction, displacement into the catchment). The truth
of each market -- the ratio of expected counts with and without the
intervention over the post period and the last ``k`` periods -- is recorded.

:func:`city_study` turns a simulated city into the package's own in-memory
:class:`~dmi_eval.config.Study` and :class:`~dmi_eval.panel.Panel`, so that the
calibration runs the exact site path (:func:`dmi_eval.evaluation.evaluate_site`).
:func:`~dmi_eval.calibration.like_site.spec_like_site` builds a :class:`CitySpec`
that resembles a real site's pre-period, so a user can read the power of the
verdict at their own site (``dmi-eval power``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from dmi_eval.config import Study, parse_study
from dmi_eval.options import check_choice
from dmi_eval.panel import PANDAS_FREQ, PERIODS_PER_YEAR, Panel
from dmi_eval.study_spec import VerdictRules

CityFrequency = Literal["month", "week"]

OUTCOMES: tuple[str, ...] = ("drug", "violent")
"""Simulated outcomes; loadings are shared across them unless ``outcome_loading_sd`` > 0."""


@dataclass(frozen=True)
class Effect:
    """A market's true intervention effect.

    Parameters
    ----------
    name
        Label used in the calibration tables.
    reduction
        Multiplicative change of the market's drug counts after the call-in
        (``-0.45`` = a 45% drop; 0 = no effect).
    relapse_after, relapse_length
        When set, the effect fades linearly to nothing over ``relapse_length``
        months starting ``relapse_after`` months after the call-in.
    catchment
        Multiplicative change of the catchment's drug counts (``+0.3`` = the
        market moved next door).
    """

    name: str
    reduction: float = 0.0
    relapse_after: int | None = None
    relapse_length: int = 4
    catchment: float = 0.0

    @property
    def sustained(self) -> bool:
        return self.reduction < 0 and self.relapse_after is None


NULL = Effect("none")
CLOSURE = Effect("-45% sustained", -0.45)
EFFECTS: tuple[Effect, ...] = (
    NULL,
    CLOSURE,
    NULL,
    Effect("-25% sustained", -0.25),
    NULL,
    CLOSURE,
    NULL,
    Effect("-45% relapsing", -0.45, relapse_after=6),
    Effect("-45% displaced", -0.45, catchment=0.35),
)
"""The default mix, assigned to a city's markets in turn: with nine markets, four
without an effect (size, false verdicts), two sustained -45% closures, one -25%
drop, one relapse and one displacement."""


@dataclass(frozen=True)
class CitySpec:
    """What kind of city to simulate (every rate is per month whatever the frequency).

    Parameters
    ----------
    frequency
        ``"month"`` or ``"week"`` (weekly rates are monthly rates times 12/52,
        and factor innovations are scaled so a month's variance is the same).
    n_rows, n_cols
        The grid of micro-areas.
    n_years
        Length of the data.
    n_markets
        Markets (sites) placed on the grid, each with a 1-area catchment ring.
    market_areas
        Smallest and largest number of contiguous areas in a market.
    market_rate
        Range of a market's total drug incidents per month (uniform).
    donor_rate
        Range of a non-market area's drug incidents per month (log-uniform).
    hotspot_share
        Share of non-market areas that are untreated hot spots (2 to 8 a month).
    post_months
        Range of months after the call-in month (staggered call-ins).
    min_pre_months
        Fewest months before the call-in.
    dispersion
        :math:`\\phi` of the gamma frailty (variance ``lam + phi lam^2``).
    n_factors, factor_sd
        Random-walk factors and the SD of their monthly innovations.
    trend_drift
        Drift of the first factor per year (a city-wide decline when negative).
    loading_sd
        SD of the area loadings on each factor; ``spatial_share`` of the
        variance is a smooth spatial field.
    market_loading_sd
        SD of a market's own loading deviation, one draw shared by all its
        areas and every outcome (it replaces the areas' independent
        deviations, so it does not average out over the market; the default
        equals an area's own deviation, ``loading_sd * sqrt(1 - spatial_share)``).
    trend_sd
        SD of the areas' own slow log-linear trends, per year.
    outcome_loading_sd
        SD of an outcome's own deviation from the drug loadings, added to every
        area's loadings for the other outcomes (violent), one draw shared by a
        market's areas: with it a place's exposure to city-wide change differs
        between its drug and its violent incidents, against which the site's
        augmented SC (loadings shared across outcomes) is checked. The violent
        counts are then redrawn from a stream of their own, so the drug counts,
        call-in dates and covariates are those of the same city without it; the
        default 0 draws nothing.
    market_trend_sd
        SD of a market's own slow log-linear trend per year, one draw shared by
        all its areas and added to their own trends (so it does not average out
        over the market as theirs do). The default 0 draws nothing: the city is
        the same as before the field existed.
    season_amplitude
        Amplitude of the common seasonal cosine (log scale).
    effects
        Effects assigned to the markets in turn.
    covariates
        Simulate census-style area covariates (population, households, renter
        and vacancy shares, a deprivation index; see :func:`_covariates`), as a
        real study's ``areas.csv``, so that micro-level synthetic control (a
        robustness check wherever a study has covariates) is tried at every
        market as at a real site. It costs one microsynth calibration per
        market (about 0.05 s of CPU) plus, at the few markets where exact
        balance is reachable, microsynth's permutation test; ``False`` leaves
        the city without covariates (microsynth is then never fitted). The
        counts do not depend on this switch.
    """

    frequency: CityFrequency = "month"
    n_rows: int = 18
    n_cols: int = 18
    n_years: int = 6
    n_markets: int = 9
    market_areas: tuple[int, int] = (2, 6)
    market_rate: tuple[float, float] = (8.0, 25.0)
    donor_rate: tuple[float, float] = (0.3, 3.0)
    hotspot_share: float = 0.04
    post_months: tuple[int, int] = (24, 36)
    min_pre_months: int = 24
    dispersion: float = 0.15
    n_factors: int = 3
    factor_sd: float = 0.035
    trend_drift: float = -0.04
    loading_sd: float = 0.45
    spatial_share: float = 0.5
    market_loading_sd: float = 0.32
    trend_sd: float = 0.03
    market_trend_sd: float = 0.0
    outcome_loading_sd: float = 0.0
    season_amplitude: float = 0.08
    effects: tuple[Effect, ...] = EFFECTS
    covariates: bool = True

    def __post_init__(self) -> None:
        check_choice("frequency", self.frequency, CityFrequency)
        lo, hi = self.market_areas
        if not 1 <= lo <= hi <= 9:
            raise ValueError(f"market_areas must satisfy 1 <= low <= high <= 9, got {lo, hi}")
        for name in ("market_trend_sd", "outcome_loading_sd"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.n_markets < 1 or not self.effects:
            raise ValueError("a city needs at least one market and one effect")
        if self.min_pre_months + self.post_months[1] + 1 > 12 * self.n_years:
            raise ValueError("n_years is too short for min_pre_months + post_months")
        if len(_slots(self)) < self.n_markets:
            raise ValueError(
                f"a {self.n_rows} x {self.n_cols} grid holds {len(_slots(self))} markets, "
                f"not {self.n_markets}"
            )


@dataclass(frozen=True)
class Market:
    """One simulated market: its areas, call-in, effect and truth."""

    id: str
    areas: tuple[str, ...]
    catchment: tuple[str, ...]
    intervention: dt.date
    effect: Effect
    n_pre: int
    n_post: int
    rate_per_month: float
    truth: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class City:
    """A simulated city: the panel, its markets with their truth, and the spec."""

    spec: CitySpec
    seed: int
    panel: Panel
    markets: tuple[Market, ...]
    loadings: pd.DataFrame
    expected: dict[str, np.ndarray]

    def study(self, *, persistence_months: int = 6, rules: VerdictRules | None = None) -> Study:
        """The package's :class:`~dmi_eval.config.Study` for this city (one site per market)."""
        return city_study(self, persistence_months=persistence_months, rules=rules)

    def truth(self) -> pd.DataFrame:
        """One row per market: effect, truth and the facts the targets are conditioned on."""
        rows = []
        for m in self.markets:
            rows.append(
                {
                    "site": m.id,
                    "effect": m.effect.name,
                    "n_areas": len(m.areas),
                    "n_pre": m.n_pre,
                    "n_post": m.n_post,
                    "rate_per_month": m.rate_per_month,
                    **m.truth,
                }
            )
        return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------
def _slots(spec: CitySpec) -> list[tuple[int, int]]:
    """Top-left corners of non-overlapping 3x3 market boxes with a ring and a gap."""
    return [(r, c) for r in range(1, spec.n_rows - 3, 5) for c in range(1, spec.n_cols - 3, 5)]


def _polyomino(rng: np.random.Generator, size: int) -> list[tuple[int, int]]:
    """A random set of ``size`` edge-connected cells inside a 3x3 box."""
    cells = [(1, 1)]
    while len(cells) < size:
        r, c = cells[rng.integers(len(cells))]
        dr, dc = ((0, 1), (1, 0), (0, -1), (-1, 0))[rng.integers(4)]
        nxt = (r + dr, c + dc)
        if 0 <= nxt[0] < 3 and 0 <= nxt[1] < 3 and nxt not in cells:
            cells.append(nxt)
    return sorted(cells)


def _smooth_field(rng: np.random.Generator, n_rows: int, n_cols: int, k: int) -> np.ndarray:
    """``k`` unit-variance spatially smooth fields on the grid (Gaussian-kernel blur)."""
    rr, cc = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    pts = np.column_stack([rr.ravel(), cc.ravel()]).astype(float)
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(axis=2)
    kernel = np.exp(-d2 / (2 * 3.0**2))
    out = kernel @ rng.normal(size=(pts.shape[0], k))
    out = (out - out.mean(axis=0)) / out.std(axis=0)
    return out


# ---------------------------------------------------------------------------
# Simulation
# ---------------------------------------------------------------------------
def simulate_city(spec: CitySpec | None = None, *, seed: int = 0) -> City:
    """Simulate one city (deterministic given ``spec`` and ``seed``).

    Parameters
    ----------
    spec
        The kind of city (default :class:`CitySpec`).
    seed
        Seed of the random generator (and, with ``outcome_loading_sd``, of the
        outcomes' own loadings' stream ``[seed, 1]``).

    Returns
    -------
    City
        The panel (``drug`` and ``violent`` counts), the markets with their
        truth, the loadings and the expected counts without any intervention.
    """
    spec = spec or CitySpec()
    rng = np.random.default_rng(seed)
    n_rows, n_cols = spec.n_rows, spec.n_cols
    n_areas = n_rows * n_cols
    area_ids = np.array([f"C{i + 1:04d}" for i in range(n_areas)], dtype=object)
    ppy = PERIODS_PER_YEAR[spec.frequency]
    per_month = 12 / ppy  # periods -> months
    n_periods = spec.n_years * ppy
    first = pd.Period("2014-01", freq="M").start_time
    periods = pd.period_range(first, periods=n_periods, freq=PANDAS_FREQ[spec.frequency])
    t_years = np.arange(n_periods) / ppy

    # Factors: random walks with monthly innovation SD factor_sd.
    innov = rng.normal(0.0, spec.factor_sd * np.sqrt(per_month), (spec.n_factors, n_periods))
    f = np.cumsum(innov, axis=1)
    f[0] += spec.trend_drift * t_years
    f -= f[:, :1]

    # Loadings: spatial field + area deviation; markets add a shared deviation below.
    spatial = _smooth_field(rng, n_rows, n_cols, spec.n_factors)
    s_sp = np.sqrt(spec.spatial_share) * spec.loading_sd
    s_id = np.sqrt(1 - spec.spatial_share) * spec.loading_sd
    load = s_sp * spatial + rng.normal(0.0, s_id, (n_areas, spec.n_factors))
    load[:, 0] += 1.0
    trend = rng.normal(0.0, spec.trend_sd, n_areas)

    drug_month = np.exp(
        rng.uniform(np.log(spec.donor_rate[0]), np.log(spec.donor_rate[1]), n_areas)
    )
    violent_month = drug_month**0.5 * np.exp(rng.normal(0.0, 0.4, n_areas))

    def gid(r: int, c: int) -> int:
        return r * n_cols + c

    slots = _slots(spec)
    chosen = sorted(rng.choice(len(slots), size=spec.n_markets, replace=False))
    market_cells: list[list[int]] = []
    ring_cells: list[list[int]] = []
    for s in chosen:
        r0, c0 = slots[s]
        size = int(rng.integers(spec.market_areas[0], spec.market_areas[1] + 1))
        cells = [gid(r0 + r, c0 + c) for r, c in _polyomino(rng, size)]
        ring = sorted(
            {
                gid(r, c)
                for i in cells
                for r in range(i // n_cols - 1, i // n_cols + 2)
                for c in range(i % n_cols - 1, i % n_cols + 2)
                if 0 <= r < n_rows and 0 <= c < n_cols
            }
            - set(cells)
        )
        market_cells.append(cells)
        ring_cells.append(ring)
    in_site = np.zeros(n_areas, dtype=bool)
    for cells, ring in zip(market_cells, ring_cells, strict=True):
        in_site[cells] = True
        in_site[ring] = True
    # Untreated hot spots among the other areas.
    free = np.flatnonzero(~in_site)
    n_hot = int(round(spec.hotspot_share * free.size))
    hot = rng.choice(free, size=n_hot, replace=False)
    drug_month[hot] = rng.uniform(2.0, 8.0, n_hot)

    rates = []
    for cells in market_cells:
        total = rng.uniform(*spec.market_rate)
        share = rng.dirichlet(np.full(len(cells), 4.0))
        drug_month[cells] = total * share
        violent_month[cells] = 1.5 * np.sqrt(total / len(cells)) * rng.uniform(0.7, 1.3, len(cells))
        # The market's areas share one deviation instead of averaging independent ones.
        shared = rng.normal(0.0, spec.market_loading_sd, spec.n_factors)
        load[cells] = s_sp * spatial[cells] + shared
        load[cells, 0] += 1.0
        rates.append(total)
    if spec.market_trend_sd > 0:
        market_trends = rng.normal(0.0, spec.market_trend_sd, len(market_cells))
        for cells, own in zip(market_cells, market_trends, strict=True):
            trend[cells] += own

    season = spec.season_amplitude * np.cos(2 * np.pi * (periods.start_time.month - 7) / 12)
    log_common = load @ f + trend[:, None] * t_years[None, :] + np.asarray(season)[None, :]
    # Markets' expected totals are anchored at their pre-period rate below.
    base = {"drug": drug_month * per_month, "violent": violent_month * per_month}

    # Staggered call-ins.
    min_pre = int(np.ceil(spec.min_pre_months / per_month))
    post_lo, post_hi = (int(round(p / per_month)) for p in spec.post_months)
    markets_out: list[Market] = []
    multiplier = {o: np.ones((n_areas, n_periods)) for o in OUTCOMES}
    meta = []
    for j, (cells, ring) in enumerate(zip(market_cells, ring_cells, strict=True)):
        n_post = int(rng.integers(post_lo, post_hi + 1))
        call = n_periods - n_post - 1
        call = max(call, min_pre)
        eff = spec.effects[j % len(spec.effects)]
        k = np.arange(n_periods) - call
        path = (k >= 1).astype(float)
        if eff.relapse_after is not None:
            months_after = k * per_month
            fade = np.clip((months_after - eff.relapse_after) / eff.relapse_length, 0.0, 1.0)
            path *= 1.0 - fade
        multiplier["drug"][cells] *= 1.0 + eff.reduction * path
        multiplier["drug"][ring] *= 1.0 + eff.catchment * path
        meta.append((j, cells, ring, call, n_post, eff))

    frailty = {
        o: rng.gamma(1.0 / spec.dispersion, spec.dispersion, (n_areas, n_periods)) for o in OUTCOMES
    }

    def expected_counts(o: str, log_path: np.ndarray) -> np.ndarray:
        lam = base[o][:, None] * np.exp(log_path)
        # Scale each area so that its pre-city-history mean equals its base rate.
        lam = lam / np.exp(log_path[:, :min_pre]).mean(axis=1, keepdims=True)
        return lam * frailty[o]

    expected = {}
    counts = {}
    for o in OUTCOMES:
        expected[o] = expected_counts(o, log_common)
        counts[o] = rng.poisson(expected[o] * multiplier[o])
    if spec.outcome_loading_sd > 0:
        # the other outcomes redrawn from a stream of their own, after the city's counts were
        # drawn from the main one: every other draw (call-in dates, covariates) is the same city's
        orng = np.random.default_rng([seed, 1])
        own = orng.normal(0.0, spec.outcome_loading_sd, (n_areas, spec.n_factors))
        for cells in market_cells:
            own[cells] = orng.normal(0.0, spec.outcome_loading_sd, spec.n_factors)
        for o in OUTCOMES[1:]:
            expected[o] = expected_counts(o, log_common + own @ f)
            counts[o] = orng.poisson(expected[o] * multiplier[o])

    for j, cells, ring, call, n_post, eff in meta:
        start, end = periods[call].start_time.date(), periods[call].end_time.date()
        date = start + dt.timedelta(days=int(rng.integers(0, (end - start).days + 1)))
        k = np.arange(n_periods) - call
        post = k >= 1
        last_k = int(round(6 / per_month))
        last = post & (k > k.max() - last_k)
        truth = {
            "true_post": _ratio(expected["drug"], multiplier["drug"], cells, post),
            "true_last": _ratio(expected["drug"], multiplier["drug"], cells, last),
            "true_catchment_post": _ratio(expected["drug"], multiplier["drug"], ring, post),
            "pre_mean": float(counts["drug"][cells][:, k < 0].sum(axis=0).mean()),
            "post_months": float(n_post * per_month),
        }
        markets_out.append(
            Market(
                id=f"m{j + 1:02d}",
                areas=tuple(area_ids[cells]),
                catchment=tuple(area_ids[ring]),
                intervention=date,
                effect=eff,
                n_pre=int((k < 0).sum()),
                n_post=n_post,
                rate_per_month=float(rates[j]),
                truth=truth,
            )
        )

    covariates = _covariates(rng, area_ids, drug_month, load) if spec.covariates else None
    panel = Panel(
        frequency=spec.frequency,
        periods=periods,
        areas=pd.Index(area_ids, name="area_id"),
        counts=counts,
        covariates=covariates,
    )
    loadings = pd.DataFrame(
        load,
        index=pd.Index(area_ids, name="area_id"),
        columns=[f"f{k + 1}" for k in range(spec.n_factors)],
    )
    return City(
        spec=spec,
        seed=seed,
        panel=panel,
        markets=tuple(markets_out),
        loadings=loadings,
        expected=expected,
    )


def _ratio(expected: np.ndarray, mult: np.ndarray, areas: list[int], mask: np.ndarray) -> float:
    """True change: expected counts with over without the intervention, minus 1."""
    if not areas or not mask.any():
        return float("nan")
    cf = expected[areas][:, mask].sum()
    return float((expected[areas] * mult[areas])[:, mask].sum() / cf - 1.0)


COVARIATE_COLUMNS = ("population", "households", "pct_renter", "pct_vacant", "deprivation")
"""Columns of a simulated city's ``areas.csv`` (besides ``area_id``)."""


def _covariates(
    rng: np.random.Generator, area_ids: np.ndarray, drug_month: np.ndarray, load: np.ndarray
) -> pd.DataFrame:
    """Census-style area covariates tied to the areas' crime levels and loadings.

    With :math:`z_a` the standardised log drug level and :math:`\\ell_{a2}` the
    area's loading on the second factor (both known to the simulator only),

    .. math::

        D_a &= 0.6 z_a + 0.35 \\ell_{a2} / \\mathrm{sd}(\\ell_{2}) + 0.5 e_a
        &\\text{(deprivation score)}\\\\
        \\log P_a &= \\log 800 + 0.15 z_a + 0.3 u_a &\\text{(population)}\\\\
        H_a &= P_a / (2.4 + 0.25 D_a + 0.15 v_a) &\\text{(households)}

    with independent standard normal noise :math:`e, u, v`; the renter and
    vacancy shares rise with :math:`D_a`, and the published deprivation index
    is the score's percentile rank (1-100) in the city, like an area
    deprivation index. Values are rounded as a census table is, and the frame
    is exactly what :func:`dmi_eval.data.read_areas` returns for the
    ``areas.csv`` :func:`write_areas` writes: float64 columns, indexed by
    ``area_id``, sorted.
    """
    n = len(area_ids)
    z = np.log(drug_month)
    z = (z - z.mean()) / z.std()
    second = load[:, 1] if load.shape[1] > 1 else np.zeros(n)
    second = (second - second.mean()) / max(float(second.std()), 1e-12)
    score = 0.45 * z + 0.3 * second + 0.7 * rng.normal(size=n)
    population = np.maximum(np.round(np.exp(np.log(800) + 0.15 * z + 0.3 * rng.normal(size=n))), 50)
    household_size = np.clip(2.4 + 0.25 * score + 0.15 * rng.normal(size=n), 1.3, 4.5)
    households = np.maximum(np.round(population / household_size), 1)
    renter = np.clip(0.4 + 0.1 * score + rng.normal(0, 0.06, n), 0.02, 0.98)
    vacant = np.clip(0.07 + 0.03 * score + rng.normal(0, 0.02, n), 0.0, 0.6)
    deprivation = np.round(100 + 15 * (score - score.mean()) / score.std(), 1)
    frame = pd.DataFrame(
        {
            "population": population,
            "households": households,
            "pct_renter": np.round(renter, 3),
            "pct_vacant": np.round(vacant, 3),
            "deprivation": deprivation,
        },
        index=pd.Index(area_ids.astype(str), name="area_id"),
    ).astype("float64")
    return frame.sort_index()


def write_areas(city: City, path: str | Path) -> Path:
    """Write the city's covariates as an ``areas.csv`` a real study would ship.

    Integer-valued columns are written without a decimal point; reading the
    file back with :func:`dmi_eval.data.read_areas` gives ``city.panel.covariates``
    exactly. Raises ``ValueError`` when the city was simulated without covariates.
    """
    cov = city.panel.covariates
    if cov is None:
        raise ValueError("this city has no covariates: simulate it with CitySpec(covariates=True)")
    out = cov.copy()
    for col in out.columns:
        values = out[col].to_numpy()
        if np.all(values == np.round(values)):
            out[col] = values.astype(np.int64)
    path = Path(path)
    out.reset_index().to_csv(path, index=False, lineterminator="\n")
    return path


def city_study(
    city: City, *, persistence_months: int = 6, rules: VerdictRules | None = None
) -> Study:
    """The in-memory :class:`~dmi_eval.config.Study` of a simulated city.

    One site per market (drug as the primary and only outcome), default
    verdict rules with the persistence window converted to the city's
    frequency, or ``rules`` (a user's own, see
    :func:`~dmi_eval.calibration.like_site.rules_like_site`). The
    study's ``path`` is a placeholder used in messages only; nothing is read
    from disk.
    """
    ppy = PERIODS_PER_YEAR[city.spec.frequency]
    raw: dict[str, Any] = {
        "study": {
            "name": f"Calibration city (seed {city.seed})",
            "frequency": city.spec.frequency,
            "seed": int(city.seed % (2**32)),
        },
        "data": {"counts": "counts.csv"}
        | ({"areas": "areas.csv"} if city.panel.covariates is not None else {}),
        "sites": [
            {
                "id": m.id,
                "intervention": m.intervention.isoformat(),
                "treated_areas": list(m.areas),
                "catchment_areas": list(m.catchment),
                "outcomes": ["drug"],
                "primary_outcome": "drug",
            }
            for m in city.markets
        ],
        "verdict": {"persistence_periods": int(round(persistence_months * ppy / 12))},
    }
    study = parse_study(raw, file=Path(f"calibration-city-{city.seed}.toml"))
    return study if rules is None else replace(study, verdict=rules)
