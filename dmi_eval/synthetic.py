"""A seeded generator of synthetic DMI studies that also returns the truth.

The city is a grid of micro-areas. Expected counts follow a latent factor model

.. math::

    \\log \\lambda_{a,o,t} = \\mu_{a,o} + \\sum_k L_{a,k} f_{k,t} + s_o(t) + \\varepsilon_{a,t}
                          + \\log m_{a,o,t}

with a city-wide declining trend :math:`f_1` loaded unevenly across areas and two
persistent AR(1) factors, seasonal terms :math:`s_o`, small area-period noise
:math:`\\varepsilon` (over-dispersion) and the intervention multiplier
:math:`m` (1 outside treated and catchment areas after the call-in). Because
areas load differently on the factors, a naive before/after comparison and a
plain difference-in-differences against the city are biased, while a weighted
combination of donors (synthetic control) can reproduce a market's path.
Counts are Poisson draws, expanded into incident rows with NIBRS codes.

The study is written as a police records-system extract, so that the shipped
study runs the path a real site runs: the micro-areas are 150 m square blocks
of a fictional city in North Carolina (laid out in UTM zone 17N, written as
GeoJSON in longitude/latitude), each incident is a point drawn uniformly inside
its block (never within 5% of a block's edge), columns carry police-style
names (``Case Number``, ``Date Occurred``, ``UCR Code``, ``Block Address``,
``Latitude``, ``Longitude``) and dates are US timestamps. Each market is drawn
as a polygon inside its treated blocks; its catchment is every block whose
centroid is within ``CATCHMENT_M`` metres of the market, which is exactly the
ring of blocks around it. Planted failures — bad dates, unmapped codes,
duplicate ids, empty / (0, 0) / text coordinates and points outside the city —
are rejected, never counted.

Six scenarios cover what a DMI evaluation must tell apart: a sustained
closure, no effect, displacement into the catchment area, a relapse, a
closure with diffusion of benefits, and a market too small to judge.
``truth.json`` records each site's true effects and the verdict it should get.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

OUTCOMES: tuple[str, ...] = ("drug", "violent", "property", "disorder", "weapons")
SITE_OUTCOMES: tuple[str, ...] = ("drug", "violent", "property", "disorder")

_CODES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "drug": (("35A", "35B"), (0.8, 0.2)),
    "violent": (("13B", "13A", "120", "13C", "11D"), (0.45, 0.25, 0.15, 0.1, 0.05)),
    "property": (("23H", "220", "23F", "240", "23C"), (0.35, 0.2, 0.2, 0.15, 0.1)),
    "disorder": (("290", "90C", "90J", "40A"), (0.4, 0.3, 0.2, 0.1)),
    "weapons": (("520",), (1.0,)),
}
#: File name of the generated extract (gzip: reproducible bytes, under the 8 MB file limit).
EXTRACT_NAME = "extract.csv.gz"

_BASE_MEDIAN = {"drug": 0.6, "violent": 0.8, "property": 2.0, "disorder": 0.8, "weapons": 0.15}
_SEASON_AMP = {"drug": 0.06, "violent": 0.15, "property": 0.08, "disorder": 0.12, "weapons": 0.1}


@dataclass(frozen=True)
class Scenario:
    """One synthetic site: its intent and the multipliers that realise it."""

    id: str
    name: str
    kind: str
    verdict: str
    intervention: str
    treated_drug: float = 1.0
    treated_other: float = 1.0
    catchment_drug: float = 1.0
    relapse_after: int | None = None
    relapse_length: int = 4
    block: tuple[int, int] = (2, 2)
    market_rate: float = 7.0
    catchment_rate: float = 2.0
    factor_trend: float | None = None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "eastside",
        "Eastside",
        "sustained closure",
        "closed",
        "2018-04-12",
        treated_drug=0.55,
        treated_other=0.85,
    ),
    Scenario("northgate", "Northgate", "no effect", "not_closed", "2018-07-19", factor_trend=1.35),
    Scenario(
        "riverside",
        "Riverside",
        "closure displaced into the catchment area",
        "displaced",
        "2018-10-03",
        treated_drug=0.6,
        catchment_drug=1.5,
    ),
    Scenario(
        "southpark",
        "Southpark",
        "relapse: the effect fades after six months",
        "not_closed",
        "2019-01-16",
        treated_drug=0.5,
        relapse_after=6,
    ),
    Scenario(
        "westend",
        "Westend",
        "closure with diffusion of benefits",
        "closed",
        "2019-03-21",
        treated_drug=0.55,
        catchment_drug=0.75,
    ),
    Scenario(
        "millbrook",
        "Millbrook",
        "market too small to judge",
        "inconclusive",
        "2019-06-06",
        treated_drug=0.6,
        block=(1, 2),
        market_rate=0.5,
        catchment_rate=0.15,
    ),
)


CELL_M = 150.0
"""Side of a synthetic block, metres."""
CATCHMENT_M = 200.0
"""Catchment distance of every synthetic site: the ring of blocks around its market."""
UTM_CRS = "EPSG:32617"
ORIGIN = (586_000.0, 3_981_000.0)
"""North-west corner of the synthetic city in UTM 17N (near High Point, NC)."""
DATE_FORMAT = "%m/%d/%Y %I:%M:%S %p"
COLUMNS = {
    "incident_id": "Case Number",
    "date": "Date Occurred",
    "offense": "UCR Code",
    "x": "Longitude",
    "y": "Latitude",
}
_STREETS = ("ELM ST", "OAK AVE", "MAIN ST", "PARK DR", "HIGH ST", "MILL RD", "LEE ST", "KING ST")


@dataclass(frozen=True)
class SyntheticStudy:
    """A generated study: the extract, area covariates and polygons, the study table, the truth.

    ``site_areas`` maps each site to the ``treated`` and ``catchment`` area ids
    the generator used; the study file gives markets instead, and reading it
    must recover exactly these lists.
    """

    incidents: pd.DataFrame
    areas: pd.DataFrame
    study: dict[str, Any]
    truth: dict[str, Any]
    blocks: dict[str, Any]
    markets: dict[str, dict[str, Any]]
    site_areas: dict[str, dict[str, tuple[str, ...]]]


def simulate_study(
    seed: int = 20070501,
    *,
    n_rows: int = 15,
    n_cols: int = 20,
    start: str = "2015-01",
    n_months: int = 72,
    n_sites: int | None = None,
    junk_share: float = 0.004,
) -> SyntheticStudy:
    """Generate a synthetic DMI study.

    Parameters
    ----------
    seed
        Seed of the only random generator used; same seed, same study.
    n_rows, n_cols
        Size of the grid of micro-areas.
    start, n_months
        First month and number of months of data.
    n_sites
        Number of scenarios to place (in the order of :data:`SCENARIOS`);
        default: as many as fit on the grid (at most six).
    junk_share
        Share of extra malformed rows (bad dates, unknown areas, duplicate ids,
        unmapped offense codes) mixed in to exercise the reject log. They never
        change the true counts.
    """
    rng = np.random.default_rng(seed)
    n_areas = n_rows * n_cols
    area_ids = np.array([f"37081{i + 1:06d}" for i in range(n_areas)], dtype=object)
    months = pd.period_range(start, periods=n_months, freq="M")
    t = np.arange(n_months)

    positions = [(r, c) for r in range(1, n_rows - 3, 6) for c in range(1, n_cols - 3, 6)]
    scenarios = SCENARIOS[: min(len(positions), n_sites or len(SCENARIOS))]
    if not scenarios:
        raise ValueError("grid too small for any site: use at least 5 x 5 areas")

    # Latent factors: a city-wide decline and two persistent AR(1) processes.
    f = np.zeros((3, n_months))
    f[0] = -0.3 * t / (n_months - 1)
    for k in (1, 2):
        e = rng.normal(0.0, 0.05, n_months)
        for i in range(1, n_months):
            f[k, i] = 0.95 * f[k, i - 1] + e[i]
    loadings = np.column_stack(
        [
            rng.normal(1.0, 0.35, n_areas),
            rng.normal(0.0, 1.0, n_areas),
            rng.normal(0.0, 1.0, n_areas),
        ]
    )
    log_base = {o: np.log(_BASE_MEDIAN[o]) + rng.normal(0.0, 0.8, n_areas) for o in OUTCOMES}

    # Untreated hot spots among the donors, so that markets are not outside the hull.
    hot = rng.choice(n_areas, size=max(3, n_areas // 25), replace=False)
    log_base["drug"][hot] = np.log(rng.uniform(3.0, 9.0, len(hot)))

    def grid_id(r: int, c: int) -> int:
        return r * n_cols + c

    multiplier = {o: np.ones((n_areas, n_months)) for o in OUTCOMES}
    sites_toml: list[dict[str, Any]] = []
    markets: dict[str, dict[str, Any]] = {}
    site_areas: dict[str, dict[str, tuple[str, ...]]] = {}
    roles: list[tuple[Scenario, dt.date, list[int], list[int], np.ndarray]] = []
    for scen, (r0, c0) in zip(scenarios, positions, strict=False):
        h, w = scen.block
        treated = [grid_id(r0 + i, c0 + j) for i in range(h) for j in range(w)]
        ring = [
            grid_id(r, c)
            for r in range(r0 - 1, r0 + h + 1)
            for c in range(c0 - 1, c0 + w + 1)
            if 0 <= r < n_rows and 0 <= c < n_cols and grid_id(r, c) not in treated
        ]
        hot = hot[~np.isin(hot, treated + ring)]
        log_base["drug"][treated] = np.log(scen.market_rate) + rng.normal(0, 0.15, len(treated))
        log_base["drug"][ring] = np.log(scen.catchment_rate) + rng.normal(0, 0.2, len(ring))
        for o in ("violent", "disorder"):
            log_base[o][treated] += np.log(2.0)
        if scen.factor_trend is not None:
            loadings[treated, 0] = scen.factor_trend
        call_in_date = _call_in_date(scen, months)
        call_in = pd.Period(call_in_date, freq="M")
        path = _effect_path(months, call_in, scen)
        multiplier["drug"][treated] *= 1 + (scen.treated_drug - 1) * path
        for o in ("violent", "disorder"):
            multiplier[o][treated] *= 1 + (scen.treated_other - 1) * path
        multiplier["drug"][ring] *= 1 + (scen.catchment_drug - 1) * path
        roles.append((scen, call_in_date, treated, ring, path))
        site_areas[scen.id] = {
            "treated": tuple(sorted(area_ids[i] for i in treated)),
            "catchment": tuple(sorted(area_ids[i] for i in ring)),
        }
        markets[scen.id] = _market_geojson(scen, r0, c0)
        sites_toml.append(
            {
                "id": scen.id,
                "name": scen.name,
                "intervention": call_in_date.isoformat(),
                "market": f"markets/{scen.id}.geojson",
                "catchment_buffer_m": CATCHMENT_M,
                "outcomes": list(SITE_OUTCOMES),
                "primary_outcome": "drug",
            }
        )

    month_of_year = months.month.to_numpy()
    noise = rng.normal(0.0, 0.1, (n_areas, n_months))
    expected_cf: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for o in OUTCOMES:
        season = _SEASON_AMP[o] * np.cos(2 * np.pi * (month_of_year - 7) / 12)
        log_lam = log_base[o][:, None] + loadings @ f + season[None, :] + noise
        expected_cf[o] = np.exp(log_lam)
        counts[o] = rng.poisson(expected_cf[o] * multiplier[o])

    incidents = _expand_incidents(rng, counts, area_ids, months)
    incidents = _add_junk(rng, incidents, junk_share, n_areas)
    areas = _covariates(rng, area_ids, log_base, loadings)
    # Points, times and failed geocodes come from their own stream: the counts,
    # covariates and truth above are those of the area-id generator this replaced.
    geo_rng = np.random.default_rng([seed, 11])
    incidents = _add_failed_geocodes(geo_rng, incidents, junk_share)
    incidents = _as_extract(geo_rng, incidents, n_cols)
    truth = _truth(seed, roles, expected_cf, multiplier, counts, months, area_ids)
    first = months[0].start_time.date()
    last = months[-1].end_time.date()
    study = {
        "study": {
            "name": "Synthetic DMI study",
            "frequency": "month",
            "seed": seed,
            "start": first.isoformat(),
            "end": last.isoformat(),
        },
        "data": {
            "incidents": EXTRACT_NAME,
            "areas": "areas.csv",
            "offense_map": "nibrs",
            "date_format": DATE_FORMAT,
        },
        "data.columns": dict(COLUMNS),
        "geo": {"crs": "EPSG:4326", "areas": "blocks.geojson", "area_id_field": "GEOID"},
        "sites": sites_toml,
    }
    return SyntheticStudy(
        incidents=incidents,
        areas=areas,
        study=study,
        truth=truth,
        blocks=_blocks_geojson(area_ids, n_rows, n_cols),
        markets=markets,
        site_areas=site_areas,
    )


def _call_in_date(scen: Scenario, months: pd.PeriodIndex) -> dt.date:
    """The scenario's call-in date, placed at the same share of a shorter or longer series.

    Dates in :data:`SCENARIOS` are written for the default 72 months from January 2015.
    """
    written = dt.date.fromisoformat(scen.intervention)
    offset = (pd.Period(written, freq="M") - pd.Period("2015-01", freq="M")).n
    month = months[int(round(offset * len(months) / 72))]
    return dt.date(month.year, month.month, min(written.day, 28))


def _effect_path(months: pd.PeriodIndex, call_in: pd.Period, scen: Scenario) -> np.ndarray:
    """Share of the full effect present in each month (0 before and in the call-in month)."""
    k = np.array([(m - call_in).n for m in months])
    path = (k >= 1).astype(float)
    if scen.relapse_after is not None:
        fade = np.clip((k - scen.relapse_after) / scen.relapse_length, 0.0, 1.0)
        path = path * (1.0 - fade)
    return path


def _expand_incidents(rng, counts, area_ids, months) -> pd.DataFrame:
    parts = []
    days_in = months.days_in_month.to_numpy()
    starts = months.start_time.to_numpy().astype("datetime64[D]")
    for o in OUTCOMES:
        a_idx, m_idx = np.nonzero(counts[o])
        reps = counts[o][a_idx, m_idx]
        a = np.repeat(a_idx, reps)
        m = np.repeat(m_idx, reps)
        day = (rng.random(len(m)) * days_in[m]).astype(int)
        codes, probs = _CODES[o]
        parts.append(
            pd.DataFrame(
                {
                    "date": starts[m] + day.astype("timedelta64[D]"),
                    "offense": rng.choice(np.array(codes, dtype=object), size=len(m), p=probs),
                    "area_id": area_ids[a],
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.sort_values(["date", "area_id", "offense"], kind="stable").reset_index(drop=True)
    frame.insert(0, "incident_id", [f"INC{i + 1:07d}" for i in range(len(frame))])
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    frame["cell"] = pd.Index(area_ids).get_indexer(frame["area_id"])
    return frame


def _add_junk(rng, incidents: pd.DataFrame, share: float, n_areas: int) -> pd.DataFrame:
    """Append malformed rows of four kinds; none of them may be counted.

    Bad dates, points geocoded outside the city (``cell = -1``), unmapped offense
    codes and exact duplicates. (The draws are those of the area-id generator
    this one replaced, so the covariates drawn next are unchanged.)
    """
    n = int(round(share * len(incidents) / 4))
    if n == 0:
        return incidents
    take = incidents.iloc[rng.choice(len(incidents), size=4 * n, replace=False)].copy()
    take = take.reset_index(drop=True)
    base = len(incidents)
    take["incident_id"] = [f"INC{base + i + 1:07d}" for i in range(4 * n)]
    take.loc[: n - 1, "date"] = take.loc[: n - 1, "date"].str.slice(0, 8) + "32"  # bad date
    take.loc[n : 2 * n - 1, "cell"] = -1  # geocoded outside the city
    take.loc[2 * n : 3 * n - 1, "offense"] = rng.choice(["90Z", "90D", "09C"], size=n)
    dup_source = incidents.iloc[rng.choice(len(incidents), size=n, replace=False)]
    take.loc[3 * n :, :] = dup_source.to_numpy()  # exact duplicates of counted rows
    out = pd.concat([incidents, take], ignore_index=True)
    order = rng.permutation(len(out))
    # Keep the file roughly chronological: shuffle only the junk into place by date.
    out = out.iloc[order].sort_values("date", kind="stable").reset_index(drop=True)
    return out


def _add_failed_geocodes(rng, incidents: pd.DataFrame, share: float) -> pd.DataFrame:
    """Append rows whose geocoding failed (``cell = -2``: empty, (0, 0) or text x/y)."""
    n = int(round(share * len(incidents) / 4.004))
    if n == 0:
        return incidents
    take = incidents.iloc[rng.choice(len(incidents), size=n, replace=False)].copy()
    take["incident_id"] = [f"INC{len(incidents) + i + 1:07d}" for i in range(n)]
    take["cell"] = -2
    out = pd.concat([incidents, take], ignore_index=True)
    return out.sort_values("date", kind="stable").reset_index(drop=True)


def _as_extract(rng, frame: pd.DataFrame, n_cols: int) -> pd.DataFrame:
    """Police-style columns, US timestamps and a point inside each incident's block."""
    from pyproj import Transformer

    n = len(frame)
    cell = frame["cell"].to_numpy()
    row, col = np.divmod(np.maximum(cell, 0), n_cols)
    u, v = rng.uniform(0.05, 0.95, n), rng.uniform(0.05, 0.95, n)
    east = ORIGIN[0] + (col + u) * CELL_M
    north = ORIGIN[1] - (row + v) * CELL_M
    outside = cell == -1  # a few kilometres east of the city
    east = np.where(outside, ORIGIN[0] + (n_cols + 20 + u * 10) * CELL_M, east)
    lon, lat = Transformer.from_crs(UTM_CRS, "EPSG:4326", always_xy=True).transform(east, north)
    lon_text = np.char.mod("%.6f", lon).astype(object)
    lat_text = np.char.mod("%.6f", lat).astype(object)
    failed = np.flatnonzero(cell == -2)
    kinds = np.array([("", ""), ("0", "0"), ("#N/A", "#N/A")], dtype=object)
    pick = kinds[np.arange(len(failed)) % 3]
    lat_text[failed], lon_text[failed] = pick[:, 0], pick[:, 1]
    minutes = rng.integers(0, 24 * 60, n)
    hour, minute = np.divmod(minutes, 60)
    clock = pd.Series(
        [
            f"{(h + 11) % 12 + 1:02d}:{m:02d}:00 {'AM' if h < 12 else 'PM'}"
            for h, m in zip(hour, minute, strict=True)
        ]
    )
    iso = frame["date"].str
    date = iso.slice(5, 7) + "/" + iso.slice(8, 10) + "/" + iso.slice(0, 4) + " " + clock
    address = [
        f"{(c + 1) * 100 + int(w * 90):d} {_STREETS[r % len(_STREETS)]}"
        for r, c, w in zip(row, col, u, strict=True)
    ]
    return pd.DataFrame(
        {
            COLUMNS["incident_id"]: frame["date"].str.slice(2, 4)
            + "-"
            + frame["incident_id"].str.slice(3),
            COLUMNS["date"]: date.to_numpy(),
            COLUMNS["offense"]: frame["offense"].to_numpy(),
            "Block Address": address,
            COLUMNS["y"]: lat_text,
            COLUMNS["x"]: lon_text,
        }
    )


def _lonlat_ring(east: list[float], north: list[float]) -> list[list[float]]:
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(UTM_CRS, "EPSG:4326", always_xy=True).transform(east, north)
    return [[round(float(x), 7), round(float(y), 7)] for x, y in zip(lon, lat, strict=True)]


def _feature(properties: dict[str, Any], east: list[float], north: list[float]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": properties,
        "geometry": {"type": "Polygon", "coordinates": [_lonlat_ring(east, north)]},
    }


def _blocks_geojson(area_ids: np.ndarray, n_rows: int, n_cols: int) -> dict[str, Any]:
    """One square polygon per block (counter-clockwise rings, RFC 7946)."""
    features = []
    for i, area in enumerate(area_ids):
        r, c = divmod(i, n_cols)
        x0, x1 = ORIGIN[0] + c * CELL_M, ORIGIN[0] + (c + 1) * CELL_M
        y1, y0 = ORIGIN[1] - r * CELL_M, ORIGIN[1] - (r + 1) * CELL_M
        features.append(_feature({"GEOID": area}, [x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0]))
    return {"type": "FeatureCollection", "features": features}


def _market_geojson(scen: Scenario, r0: int, c0: int) -> dict[str, Any]:
    """The market as the DMI team would draw it: inside its treated blocks, corners cut."""
    h, w = scen.block
    inset, cut = 0.2 * CELL_M, 0.15 * CELL_M
    x0, x1 = ORIGIN[0] + c0 * CELL_M + inset, ORIGIN[0] + (c0 + w) * CELL_M - inset
    y1, y0 = ORIGIN[1] - r0 * CELL_M - inset, ORIGIN[1] - (r0 + h) * CELL_M + inset
    east = [x0 + cut, x1 - cut, x1, x1, x1 - cut, x0 + cut, x0, x0, x0 + cut]
    north = [y0, y0, y0 + cut, y1 - cut, y1, y1, y1 - cut, y0 + cut, y0]
    feature = _feature({"site": scen.id, "name": f"{scen.name} market"}, east, north)
    return {"type": "FeatureCollection", "features": [feature]}


def _covariates(rng, area_ids, log_base, loadings) -> pd.DataFrame:
    n = len(area_ids)
    population = np.round(np.exp(rng.normal(np.log(800), 0.35, n)))
    renter = np.clip(
        0.35 + 0.08 * (log_base["drug"] - log_base["drug"].mean()) + rng.normal(0, 0.08, n),
        0.02,
        0.98,
    )
    vacant = np.clip(0.08 + 0.03 * loadings[:, 1] + rng.normal(0, 0.02, n), 0.0, 0.6)
    income = np.round(np.exp(rng.normal(np.log(52000), 0.3, n) - 0.15 * loadings[:, 0]), -2)
    return pd.DataFrame(
        {
            "area_id": area_ids,
            "population": population.astype(int),
            "pct_renter": np.round(renter, 3),
            "pct_vacant": np.round(vacant, 3),
            "median_income": income.astype(int),
        }
    )


def _truth(seed, roles, expected_cf, multiplier, counts, months, area_ids) -> dict[str, Any]:
    sites = {}
    for scen, call_in_date, treated, ring, _path in roles:
        k = np.array([(m - pd.Period(call_in_date, freq="M")).n for m in months])
        post = k >= 1
        last6 = post & (k > k.max() - 6)
        pre = k < 0

        def ratio(areas, outcome, mask):
            cf = expected_cf[outcome][areas][:, mask].sum()
            ob = (expected_cf[outcome][areas] * multiplier[outcome][areas])[:, mask].sum()
            return float(ob / cf - 1.0)

        drug = counts["drug"][treated]
        effects = {}
        for o in SITE_OUTCOMES:
            effects[o] = {
                "treated_post": round(ratio(treated, o, post), 4),
                "treated_last6": round(ratio(treated, o, last6), 4),
                "catchment_post": round(ratio(ring, o, post), 4),
            }
        sites[scen.id] = {
            "scenario": scen.kind,
            "verdict": scen.verdict,
            "intervention": call_in_date.isoformat(),
            "true_effects": effects,
            "naive_before_after_drug": round(
                float(drug.sum(axis=0)[post].mean() / drug.sum(axis=0)[pre].mean() - 1), 4
            ),
            "mean_monthly_drug_pre": round(float(drug[:, pre].sum(axis=0).mean()), 2),
        }
    return {
        "generator": "dmi_eval.synthetic.simulate_study",
        "seed": seed,
        "note": (
            "true_effects are ratios of expected counts with and without the intervention "
            "minus 1 (fractions); post = months after the call-in month; last6 = the last "
            "six months of data."
        ),
        "sites": sites,
    }


STUDY_FILES = ("study.toml", EXTRACT_NAME, "areas.csv", "blocks.geojson", "truth.json", "markets")
"""What :func:`write_study` writes into its folder."""
GENERATED_MARK = "# Generated by `dmi-eval simulate`"
"""First line of a simulated ``study.toml``: the folder holds a previous simulation."""


def files_in_the_way(out_dir: str | Path) -> list[str]:
    """Files :func:`write_study` would replace in a folder that is not a previous simulation."""
    out = Path(out_dir)
    toml = out / "study.toml"
    if toml.is_file() and toml.read_text(encoding="utf-8").startswith(GENERATED_MARK):
        return []
    return [name for name in STUDY_FILES if (out / name).exists()]


def write_study(sim: SyntheticStudy, out_dir: str | Path) -> Path:
    """Write ``study.toml``, ``extract.csv.gz``, ``areas.csv``, ``blocks.geojson``,
    ``markets/<site>.geojson`` and ``truth.json``; return the toml path.

    The extract is gzip-compressed (the plain CSV is over the repository's 8 MB per-file
    limit) with a zero modification time and no file name in the gzip header, so the same
    study gives the same bytes wherever and whenever it is written.
    """
    out = Path(out_dir)
    (out / "markets").mkdir(parents=True, exist_ok=True)
    _write_gzip_csv(out / EXTRACT_NAME, sim.incidents)
    _write_json(out / "blocks.geojson", sim.blocks)
    for site_id, market in sim.markets.items():
        _write_json(out / "markets" / f"{site_id}.geojson", market)
    sim.areas.to_csv(out / "areas.csv", index=False, lineterminator="\n")
    (out / "truth.json").write_text(
        json.dumps(sim.truth, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    path = out / "study.toml"
    path.write_text(_toml(sim.study), encoding="utf-8")
    return path


def _write_gzip_csv(path: Path, frame: pd.DataFrame) -> None:
    """gzip a CSV reproducibly: mtime 0, no name in the header, fixed compression level."""
    text = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
    ):
        gz.write(text)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Compact, key-ordered JSON: same study, same bytes."""
    path.write_text(json.dumps(value, separators=(",", ":")) + "\n", encoding="utf-8")


def _toml(study: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dt.date):
            return v.isoformat()
        raise TypeError(type(v))

    lines = [f"{GENERATED_MARK} (dmi_eval.synthetic); do not edit by hand.", ""]
    for table in ("study", "data", "data.columns", "geo"):
        if table not in study:
            continue
        lines.append(f"[{table}]")
        lines += [f"{k} = {value(v)}" for k, v in study[table].items()]
        lines.append("")
    for site in study["sites"]:
        lines.append("[[sites]]")
        lines += [f"{k} = {value(v)}" for k, v in site.items()]
        lines.append("")
    return "\n".join(lines)
