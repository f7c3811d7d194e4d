"""Coordinates -> areas, markets and buffers: edges, metres in two CRSs, every geo error."""

from __future__ import annotations

import json
import textwrap

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer

from dmi_eval.config import GeoSpec, load_study
from dmi_eval.data import load_study_data
from dmi_eval.errors import ConfigError, GeoError, NoUsableRowsError
from dmi_eval.geo import PointLocator, load_areas, metric_crs

UTM = "EPSG:32617"
CRS_2285_WKT = __import__("pyproj").CRS("EPSG:2285").to_wkt()
ORIGIN = (586_000.0, 3_981_000.0)  # UTM 17N, near High Point NC


def square_grid(n: int, size: float, origin=(0.0, 0.0), prefix="a"):
    """``n x n`` squares; ids sort row by row (a00, a01, ...)."""
    ids, geoms = [], []
    for r in range(n):
        for c in range(n):
            x0, y0 = origin[0] + c * size, origin[1] + r * size
            ids.append(f"{prefix}{r}{c}")
            geoms.append(shapely.box(x0, y0, x0 + size, y0 + size))
    return ids, geoms


def write_layer(path, ids, geoms, crs, field="GEOID"):
    frame = gpd.GeoDataFrame({field: ids}, geometry=geoms, crs=crs)
    frame.to_file(path, driver="GPKG" if path.suffix == ".gpkg" else "GeoJSON", engine="pyogrio")
    return path


def write_geojson(path, polygons, crs_from=UTM, properties=None):
    """Polygons given in ``crs_from`` written as GeoJSON (lon/lat)."""
    to_ll = Transformer.from_crs(crs_from, "EPSG:4326", always_xy=True)
    features = []
    for i, poly in enumerate(polygons):
        xs, ys = poly.exterior.coords.xy
        lon, lat = to_ll.transform(np.asarray(xs), np.asarray(ys))
        features.append(
            {
                "type": "Feature",
                "properties": (properties or [{}] * len(polygons))[i],
                "geometry": {"type": "Polygon", "coordinates": [list(zip(lon, lat, strict=True))]},
            }
        )
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


# --- incident -> area: edges and corners ------------------------------------------------


def test_points_on_edges_and_corners_go_to_the_area_whose_id_sorts_first(tmp_path):
    ids, geoms = square_grid(2, 100.0, ORIGIN)  # a00 a01 (bottom row), a10 a11 (top row)
    # Written in reverse order: the rule must not depend on the file's feature order.
    path = write_layer(tmp_path / "blocks.gpkg", ids[::-1], geoms[::-1], UTM)
    layer = load_areas(GeoSpec(crs=UTM, areas=path, area_id_field="GEOID"), study_file=path)
    locator = PointLocator(layer, UTM)
    x0, y0 = ORIGIN
    points = {
        "inside a11": (x0 + 150, y0 + 150, "a11"),
        "edge a00|a01": (x0 + 100, y0 + 50, "a00"),
        "edge a01|a11": (x0 + 150, y0 + 100, "a01"),
        "edge a10|a11": (x0 + 100, y0 + 150, "a10"),
        "centre corner of all four": (x0 + 100, y0 + 100, "a00"),
        "outer corner of a11": (x0 + 200, y0 + 200, "a11"),
        "outer edge of a01": (x0 + 200, y0 + 50, "a01"),
    }
    x = np.array([p[0] for p in points.values()])
    y = np.array([p[1] for p in points.values()])
    got = layer.ids[locator.locate(x, y)]
    assert dict(zip(points, got, strict=True)) == {k: v[2] for k, v in points.items()}
    outside = locator.locate(np.array([x0 - 0.01]), np.array([y0 + 50]))
    assert outside.tolist() == [-1]


# --- buffers in metres -------------------------------------------------------------------

STUDY_GEO = """
[study]
name = "Geo study"
frequency = "month"

[data]
incidents = "extract.csv"

[data.columns]
x = "X"
y = "Y"

[geo]
crs = "{crs}"
areas = "{areas}"
area_id_field = "GEOID"

[[sites]]
id = "east"
intervention = "2019-06-15"
market = "market.geojson"
catchment_buffer_m = {buffer}
outcomes = ["drug"]
"""


def geo_study(tmp_path, *, crs, areas, buffer, extra=""):
    text = textwrap.dedent(STUDY_GEO).format(crs=crs, areas=areas, buffer=buffer) + extra
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def metre_layout(tmp_path, crs: str, unit_m: float, origin):
    """Five 100 m cells in a row (in ``crs`` units); a market inside the first one.

    Cell centroids lie 50, 150, 250, 350, 450 m east of the market's west edge; the
    market is 20 m wide (x from 40 to 60 m), so centroid distances to it are
    0, 90, 190, 290, 390 m.
    """
    size = 100.0 / unit_m
    ids = [f"c{i}" for i in range(5)]
    geoms = [
        shapely.box(origin[0] + i * size, origin[1], origin[0] + (i + 1) * size, origin[1] + size)
        for i in range(5)
    ]
    suffix = ".gpkg" if crs != "EPSG:4326" else ".geojson"
    areas = write_layer(tmp_path / f"blocks{suffix}", ids, geoms, crs)
    market = shapely.box(
        origin[0] + 40 / unit_m,
        origin[1] + 40 / unit_m,
        origin[0] + 60 / unit_m,
        origin[1] + 60 / unit_m,
    )
    frame = gpd.GeoDataFrame({"name": ["m"]}, geometry=[market], crs=crs).to_crs("EPSG:4326")
    frame.to_file(tmp_path / "market.geojson", driver="GeoJSON", engine="pyogrio")
    return areas


@pytest.mark.parametrize("buffer", [180, 200, 300])
def test_catchment_buffer_is_in_metres_in_state_plane_feet(tmp_path, buffer):
    # EPSG:2285: NAD83 / Washington North, US survey feet; Seattle downtown.
    feet = 1200 / 3937
    areas = metre_layout(tmp_path, "EPSG:2285", feet, (1_270_000.0, 220_000.0))
    study = load_study(geo_study(tmp_path, crs="EPSG:2285", areas=areas.name, buffer=buffer))
    site = study.site("east")
    assert site.treated_areas == ("c0",)
    expected = {180: ("c1",), 200: ("c1", "c2"), 300: ("c1", "c2", "c3")}[buffer]
    assert site.catchment_areas == expected
    crs, unit_m = metric_crs(gpd.read_file(areas))
    assert crs.to_epsg() == 2285 and unit_m == pytest.approx(feet)


@pytest.mark.parametrize("buffer", [180, 200, 300])
def test_catchment_buffer_is_in_metres_for_a_study_in_longitude_latitude(tmp_path, buffer):
    ids, geoms = [f"c{i}" for i in range(5)], []
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    for i in range(5):
        cell = shapely.box(
            ORIGIN[0] + i * 100, ORIGIN[1], ORIGIN[0] + (i + 1) * 100, ORIGIN[1] + 100
        )
        geoms.append(shapely.transform(cell, lambda xy: np.column_stack(to_ll.transform(*xy.T))))
    write_layer(tmp_path / "blocks.geojson", ids, geoms, "EPSG:4326")
    market = shapely.box(ORIGIN[0] + 40, ORIGIN[1] + 40, ORIGIN[0] + 60, ORIGIN[1] + 60)
    write_geojson(tmp_path / "market.geojson", [market])
    study = load_study(geo_study(tmp_path, crs="EPSG:4326", areas="blocks.geojson", buffer=buffer))
    site = study.site("east")
    expected = {180: ("c1",), 200: ("c1", "c2"), 300: ("c1", "c2", "c3")}[buffer]
    assert site.treated_areas == ("c0",)
    assert site.catchment_areas == expected
    crs, _ = metric_crs(gpd.read_file(tmp_path / "blocks.geojson"))
    assert crs.to_epsg() == 32617  # the UTM zone of the study's location


def test_donor_buffer_excludes_nearby_areas_and_lists_win(tmp_path):
    feet = 1200 / 3937
    areas = metre_layout(tmp_path, "EPSG:2285", feet, (1_270_000.0, 220_000.0))
    extra = "donor_buffer_m = 300\n"
    study = load_study(
        geo_study(tmp_path, crs="EPSG:2285", areas=areas.name, buffer=100, extra=extra)
    )
    assert study.site("east").donor_areas == ("c4",)  # c2 (190 m), c3 (290 m) too close
    extra = 'catchment_areas = ["c3"]\n'
    study = load_study(
        geo_study(tmp_path, crs="EPSG:2285", areas=areas.name, buffer=100, extra=extra)
    )
    assert study.site("east").catchment_areas == ("c3",)


# --- a small geocoded study: rejects and errors -------------------------------------------


@pytest.fixture
def city(tmp_path):
    """A 3 x 3 grid of 100 m blocks in lon/lat, a market on the centre block."""
    ids, geoms = square_grid(3, 100.0, ORIGIN, prefix="b")
    write_geojson(tmp_path / "blocks.geojson", geoms, properties=[{"GEOID": i} for i in ids])
    write_geojson(
        tmp_path / "market.geojson", [shapely.box(*(np.array(ORIGIN * 2) + [130, 130, 170, 170]))]
    )
    return tmp_path


def lonlat(dx, dy):
    return Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(
        ORIGIN[0] + dx, ORIGIN[1] + dy
    )


def write_extract(folder, rows, header="ID,When,Code,X,Y", sep=","):
    lines = [header.replace(",", sep)] + [sep.join(map(str, r)) for r in rows]
    (folder / "extract.csv").write_text("\n".join(lines) + "\n")


def geo_toml(
    folder,
    buffer=100,
    extra_data="",
    columns='incident_id = "ID"\ndate = "When"\noffense = "Code"\nx = "X"\ny = "Y"',
):
    text = f"""
[study]
name = "City"
frequency = "month"

[data]
incidents = "extract.csv"
{extra_data}

[data.columns]
{columns}

[geo]
crs = "EPSG:4326"
areas = "blocks.geojson"
area_id_field = "GEOID"

[[sites]]
id = "centre"
intervention = "2019-03-15"
market = "market.geojson"
catchment_buffer_m = {buffer}
outcomes = ["drug"]
"""
    path = folder / "study.toml"
    path.write_text(text)
    return path


def test_bad_coordinates_and_outside_areas_are_counted_like_other_rejects(city):
    x, y = lonlat(150, 150)
    far_x, far_y = lonlat(5000, 150)
    rows = [(i, f"2019-0{1 + i % 6}-10", "35A", f"{x:.6f}", f"{y:.6f}") for i in range(1, 41)]
    rows += [
        (101, "2019-01-10", "35A", "", ""),
        (102, "2019-01-10", "35A", "0", "0"),
        (103, "2019-01-10", "35A", "n/a", f"{y:.6f}"),
        (104, "2019-01-10", "35A", f"{x:.6f}", "95.5"),  # latitude beyond the CRS's range
        (105, "2019-01-10", "35A", f"{far_x:.6f}", f"{far_y:.6f}"),  # 5 km away: in no block
    ]
    write_extract(city, rows)
    study = load_study(geo_toml(city, extra_data="max_reject_share = 0.2"))
    ingest = load_study_data(study)
    reasons = ingest.rejects.set_index("row")["reason"].to_dict()
    assert reasons == {
        41: "bad_coordinates",
        42: "bad_coordinates",
        43: "bad_coordinates",
        44: "bad_coordinates",
        45: "outside_areas",
    }
    assert set(ingest.rejects["field"]) == {"X,Y"}
    assert ingest.rows_counted == 40
    assert ingest.panel.series("drug", ["b11"]).sum() == 40
    summary = ingest.reject_summary().set_index("reason")
    assert summary.loc["bad_coordinates", "kind"] == "quality"
    assert summary.loc["outside_areas", "kind"] == "scope"


def test_points_outside_the_boundary_are_rejected_as_such_and_its_areas_dropped(city):
    boundary = shapely.box(ORIGIN[0], ORIGIN[1], ORIGIN[0] + 200, ORIGIN[1] + 300)
    write_geojson(city / "city.geojson", [boundary])
    inside, east = lonlat(150, 150), lonlat(250, 150)  # block b12 lies beyond the city limits
    rows = [(i, "2019-01-10", "35A", *inside) for i in range(1, 20)] + [
        (99, "2019-01-10", "35A", *east)
    ]
    write_extract(city, rows)
    path = geo_toml(city)
    path.write_text(
        path.read_text().replace(
            'area_id_field = "GEOID"', 'area_id_field = "GEOID"\nboundary = "city.geojson"'
        )
    )
    ingest = load_study_data(load_study(path))
    assert ingest.rejects.set_index("row")["reason"].to_dict() == {20: "outside_boundary"}
    # the blocks beyond the limits are no comparison areas (they would be all zeros)
    assert sorted(ingest.panel.areas) == ["b00", "b01", "b10", "b11", "b20", "b21"]
    # a county-wide extract: most points beyond the city limits do not stop the run
    rows += [(100 + i, "2019-01-10", "35A", *east) for i in range(30)]
    write_extract(city, rows)
    ingest = load_study_data(load_study(path))
    assert (ingest.rejects["reason"] == "outside_boundary").sum() == 31
    assert ingest.rows_counted == 19
    # a market beyond the limits covers no area left, and the message says why it may be
    write_geojson(
        city / "market.geojson", [shapely.box(*(np.array(ORIGIN * 2) + [230, 130, 270, 170]))]
    )
    with pytest.raises(GeoError, match=r"covers no area.*inside \[geo\].boundary"):
        load_study(path)


def test_swapped_x_and_y_are_named(city):
    x, y = lonlat(150, 150)
    rows = [(i, "2019-01-10", "35A", f"{y:.6f}", f"{x:.6f}") for i in range(1, 30)]
    write_extract(city, rows)
    with pytest.raises(GeoError, match=r"x and y look swapped.*x = 'Y', y = 'X'"):
        load_study_data(load_study(geo_toml(city)))


def test_most_points_outside_every_area_stops_the_run(city):
    x, y = lonlat(30_000, 150)
    write_extract(city, [(i, "2019-01-10", "35A", f"{x:.6f}", f"{y:.6f}") for i in range(1, 30)])
    with pytest.raises(
        GeoError, match=r"29 of 29 points \(100%\) fall in no area of blocks.geojson.*\[geo\].crs"
    ) as caught:
        load_study_data(load_study(geo_toml(city)))
    # where the points are against the areas, in [geo].crs units: here 30 km east
    message = str(caught.value)
    assert f"most of them have x {x:.4f} to {x:.4f}" in message
    west, _ = lonlat(0, 0)
    assert f"where the areas lie at x {west:.4f} to " in message and "'EPSG:4326'" in message


def test_every_row_rejected_carries_the_reject_log_and_names_the_reasons(city):
    x, y = lonlat(150, 150)
    write_extract(city, [(i, f"13/0{i}/2019", "35A", f"{x:.6f}", f"{y:.6f}") for i in range(1, 5)])
    path = geo_toml(city, extra_data='date_format = "%m/%d/%Y"\nmax_reject_share = 1.0')
    with pytest.raises(
        NoUsableRowsError, match=r"all 4 rows were rejected — 4 bad_date .*'%m/%d/%Y'"
    ) as err:
        load_study_data(load_study(path))
    assert err.value.rejects["reason"].tolist() == ["bad_date"] * 4


def test_header_only_extract_says_so(city):
    write_extract(city, [])
    with pytest.raises(GeoError.__mro__[1], match="has a header but no data rows"):
        load_study_data(load_study(geo_toml(city)))


def test_invalid_geometry_is_named_by_file_and_feature(city):
    bowtie = shapely.Polygon([(0, 0), (100, 100), (100, 0), (0, 100)])
    polys = [shapely.box(0, 0, 100, 100), shapely.affinity.translate(bowtie, ORIGIN[0], ORIGIN[1])]
    write_geojson(city / "blocks.geojson", polys, properties=[{"GEOID": "x1"}, {"GEOID": "x2"}])
    with pytest.raises(
        GeoError,
        match=r"blocks.geojson: feature 2 \(GEOID='x2'\) is not a valid polygon \(Self-intersection"
        r".*re-export \(\[geo\].areas\)",
    ):
        load_study(geo_toml(city))


def test_unreadable_polygon_file(city):
    (city / "blocks.geojson").write_text("{not json")
    with pytest.raises(GeoError, match=r"blocks.geojson: cannot read it as a polygon file"):
        load_study(geo_toml(city))


def test_market_covering_no_area(city):
    write_geojson(
        city / "market.geojson",
        [shapely.box(ORIGIN[0] + 5, ORIGIN[1] + 5, ORIGIN[0] + 20, ORIGIN[1] + 20)],
    )
    with pytest.raises(
        GeoError,
        match=r"market.geojson: the market of site 'centre' covers no area.*nearest: b00, 4\d m away",
    ):
        load_study(geo_toml(city))


def test_markets_and_catchments_overlapping_another_sites_market(city):
    write_geojson(
        city / "m2.geojson",
        [shapely.box(ORIGIN[0] + 140, ORIGIN[1] + 20, ORIGIN[0] + 160, ORIGIN[1] + 80)],
    )
    second = '\n[[sites]]\nid = "south"\nintervention = "2019-03-15"\nmarket = "m2.geojson"\noutcomes = ["drug"]\n'
    path = geo_toml(city, buffer=100)
    path.write_text(path.read_text() + second)
    with pytest.raises(
        GeoError,
        match=r"the catchment of site 'centre' \(100 m around its market\) overlaps the market of site 'south'",
    ):
        load_study(path)
    write_geojson(
        city / "m2.geojson",
        [shapely.box(ORIGIN[0] + 150, ORIGIN[1] + 20, ORIGIN[0] + 160, ORIGIN[1] + 140)],
    )
    with pytest.raises(GeoError, match=r"the markets of sites 'centre' and 'south' overlap"):
        load_study(path)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'area_id_field = "GEOID"',
            'area_id_field = "GEOID10"',
            r"no property 'GEOID10' \(did you mean 'GEOID'\?\)",
        ),
        (
            'crs = "EPSG:4326"',
            'crs = "EPSG:999999"',
            r"\[geo\]\.crs: 'EPSG:999999' is not a CRS pyproj can read",
        ),
    ],
)
def test_area_field_and_crs_errors(city, old, new, expected):
    path = geo_toml(city)
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises((GeoError, ConfigError), match=expected):
        load_study(path)


def test_area_id_field_must_be_unique(city):
    ids, geoms = square_grid(3, 100.0, ORIGIN, prefix="b")
    props = [{"GEOID": "b00" if i == "b22" else i} for i in ids]
    write_geojson(city / "blocks.geojson", geoms, properties=props)
    with pytest.raises(
        GeoError, match=r"GEOID 'b00' names features 1, 9; \[geo\].area_id_field must be unique"
    ):
        load_study(geo_toml(city))


def test_grid_cells_over_the_incidents(city):
    x, y = lonlat(150, 150)
    x2, y2 = lonlat(420, 150)
    rows = [(i, "2019-01-10", "35A", f"{x:.6f}", f"{y:.6f}") for i in range(1, 11)]
    rows += [(i, "2019-02-10", "35A", f"{x2:.6f}", f"{y2:.6f}") for i in range(11, 14)]
    write_extract(city, rows)
    path = geo_toml(city)
    text = path.read_text().replace(
        'areas = "blocks.geojson"\narea_id_field = "GEOID"', "grid_m = 100"
    )
    text = text.replace(
        'market = "market.geojson"\ncatchment_buffer_m = 100\n', 'treated_areas = ["G0000_0000"]\n'
    )
    path.write_text(text)
    ingest = load_study_data(load_study(path))
    assert ingest.rows_counted == 13
    totals = ingest.panel.matrix("drug").sum(axis=1)
    assert sorted(totals[totals > 0].tolist()) == [3, 10]
    n_cells = len(ingest.panel.areas)
    # one stray point 25 km away (a typo) must not stretch the grid over empty land
    far_x, far_y = lonlat(25_000, 150)
    many = [(k * 100 + i, *row[1:]) for k in range(20) for i, row in enumerate(rows)]  # 260
    write_extract(city, [*many, (99, "2019-02-10", "35A", f"{far_x:.6f}", f"{far_y:.6f}")])
    ingest = load_study_data(load_study(path))
    assert len(ingest.panel.areas) == n_cells  # it was about 250 times as many cells
    assert ingest.rows_counted == 260
    assert ingest.rejects.set_index("row")["reason"].to_dict() == {261: "outside_areas"}


def test_sites_csv_rows_list_every_role(city):
    from dmi_eval.panel import site_roles

    x, y = lonlat(150, 150)
    write_extract(city, [(i, "2019-01-10", "35A", f"{x:.6f}", f"{y:.6f}") for i in range(1, 5)])
    study = load_study(geo_toml(city, buffer=100))
    roles = site_roles(load_study_data(study).panel, study)
    assert list(roles.columns) == ["site", "role", "area_id"]
    got = roles.groupby("role")["area_id"].apply(tuple).to_dict()
    # Orthogonal neighbours' centroids are 80 m from the market, diagonal ones 113 m.
    assert got == {
        "treated": ("b11",),
        "catchment": ("b01", "b10", "b12", "b21"),
        "donor": ("b00", "b02", "b20", "b22"),
    }


def test_vectorised_locate_agrees_with_geopandas_sjoin_on_the_synthetic_extract():
    """Every point of the shipped synthetic extract, plus every block corner and edge
    midpoint, lands where a geopandas spatial join (lowest id on ties) puts it."""
    from pathlib import Path

    import pandas as pd

    study = load_study(Path(__file__).parents[1] / "data" / "synthetic" / "study.toml")
    layer = load_areas(study.geo, study_file=study.path, data=study.data)
    cols = study.data.columns
    extract = pd.read_csv(study.data.incidents, usecols=[cols.x, cols.y], dtype=str)
    x = pd.to_numeric(extract[cols.x], errors="coerce").to_numpy()
    y = pd.to_numeric(extract[cols.y], errors="coerce").to_numpy()
    ok = np.isfinite(x) & np.isfinite(y) & ~((x == 0) & (y == 0))
    corners = shapely.get_coordinates(shapely.segmentize(layer.polygons.geometry.to_numpy(), 1.0))
    px = np.concatenate([x[ok], corners[:, 0]])
    py = np.concatenate([y[ok], corners[:, 1]])
    got = PointLocator(layer, study.geo.crs).locate(px, py)

    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(px, py), crs=layer.polygons.crs)
    polys = layer.polygons.reset_index(drop=True)
    joined = gpd.sjoin(points, polys, how="left", predicate="intersects")
    expected = joined["index_right"].groupby(level=0).min().fillna(-1).astype(np.int64)
    assert len(got) > 100_000 and (got >= 0).mean() > 0.99
    assert (got[len(x[ok]) :] >= 0).all()  # corners and edges are inside some block
    np.testing.assert_array_equal(got, expected.sort_index().to_numpy())


# --- files as users export them (review of 2026-11-30) -------------------------------------


def test_web_mercator_areas_are_measured_in_true_metres(tmp_path):
    # EPSG:3857's unit is a metre only at the equator: near 36 N a "200 m" buffer in its
    # units is 162 m. Distances go to the UTM zone instead.
    metre_layout(tmp_path, UTM, 1.0, ORIGIN)
    blocks = gpd.read_file(tmp_path / "blocks.gpkg").to_crs("EPSG:3857")
    blocks.to_file(tmp_path / "mercator.gpkg", driver="GPKG", engine="pyogrio")
    crs, unit_m = metric_crs(blocks)
    assert crs.to_epsg() == 32617 and unit_m == 1.0
    study = load_study(geo_study(tmp_path, crs=UTM, areas="mercator.gpkg", buffer=200))
    assert study.site("east").catchment_areas == ("c1", "c2")  # 90 and 190 m away


def test_a_market_file_of_several_sites_is_read_by_site(tmp_path):
    metre_layout(tmp_path, UTM, 1.0, ORIGIN)
    east = shapely.box(ORIGIN[0] + 40, ORIGIN[1] + 40, ORIGIN[0] + 60, ORIGIN[1] + 60)
    west = shapely.box(ORIGIN[0] + 440, ORIGIN[1] + 40, ORIGIN[0] + 460, ORIGIN[1] + 60)
    write_geojson(
        tmp_path / "market.geojson", [west, east], properties=[{"site": "West"}, {"site": "east"}]
    )
    study = load_study(geo_study(tmp_path, crs=UTM, areas="blocks.gpkg", buffer=0))
    assert study.site("east").treated_areas == ("c0",)  # not the union with c4
    write_geojson(
        tmp_path / "market.geojson", [west, east], properties=[{"site": "w"}, {"site": "e"}]
    )
    with pytest.raises(GeoError, match=r"no feature has site = 'east' \(it has 'e', 'w'\)"):
        load_study(geo_study(tmp_path, crs=UTM, areas="blocks.gpkg", buffer=0))


def test_a_geopackage_of_several_layers_is_read_by_site_or_refused(tmp_path):
    metre_layout(tmp_path, UTM, 1.0, ORIGIN)
    gpkg = tmp_path / "markets.gpkg"
    for name, x in (("north", 440), ("east", 40)):
        box = shapely.box(ORIGIN[0] + x, ORIGIN[1] + 40, ORIGIN[0] + x + 20, ORIGIN[1] + 60)
        gpd.GeoDataFrame(geometry=[box], crs=UTM).to_file(gpkg, layer=name, engine="pyogrio")
    text = geo_study(tmp_path, crs=UTM, areas="blocks.gpkg", buffer=0).read_text()
    study_file = tmp_path / "study.toml"
    study_file.write_text(text.replace('market = "market.geojson"', 'market = "markets.gpkg"'))
    assert load_study(study_file).site("east").treated_areas == ("c0",)  # not the first layer
    study_file.write_text(text.replace('areas = "blocks.gpkg"', 'areas = "markets.gpkg"'))
    with pytest.raises(
        GeoError, match=r"markets.gpkg: holds 2 layers \(north, east\); \[geo\].areas"
    ):
        load_study(study_file)


def test_projected_coordinates_saved_without_a_crs_are_named(tmp_path):
    metre_layout(tmp_path, UTM, 1.0, ORIGIN)
    box = shapely.box(ORIGIN[0] + 40, ORIGIN[1] + 40, ORIGIN[0] + 60, ORIGIN[1] + 60)
    feature = {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(box)}
    (tmp_path / "market.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [feature]})
    )  # no "crs" member: read as degrees
    with pytest.raises(
        GeoError, match=r"market.geojson: its CRS is in degrees .* x runs from 586,040"
    ):
        load_study(geo_study(tmp_path, crs=UTM, areas="blocks.gpkg", buffer=0))


def test_a_donor_buffer_that_leaves_no_comparison_area_stops(tmp_path):
    feet = 1200 / 3937
    areas = metre_layout(tmp_path, "EPSG:2285", feet, (1_270_000.0, 220_000.0))
    extra = "donor_buffer_m = 1000\n"
    with pytest.raises(GeoError, match=r"donor_buffer_m = 1000 m leaves no comparison area"):
        load_study(geo_study(tmp_path, crs="EPSG:2285", areas=areas.name, buffer=100, extra=extra))


def test_a_shapefiles_companions_are_inputs(tmp_path):
    from dmi_eval.datacache import _key
    from dmi_eval.report import input_files
    from dmi_eval.study_spec import with_companions

    metre_layout(tmp_path, UTM, 1.0, ORIGIN)
    gpd.read_file(tmp_path / "blocks.gpkg").to_file(tmp_path / "blocks.shp", engine="pyogrio")
    parts = with_companions(tmp_path / "blocks.shp")
    assert [p.suffix for p in parts] == [".shp", ".shx", ".dbf", ".prj", ".cpg"]
    assert with_companions(tmp_path / "blocks.gpkg") == [tmp_path / "blocks.gpkg"]
    study = load_study(geo_study(tmp_path, crs=UTM, areas="blocks.shp", buffer=0))
    assert {p.name for p in input_files(study)} >= {"blocks.shp", "blocks.prj", "blocks.dbf"}
    before = _key("s", [tmp_path / "blocks.shp"])
    (tmp_path / "blocks.prj").write_text(CRS_2285_WKT)
    assert _key("s", [tmp_path / "blocks.shp"]) != before  # a new CRS is a new input


def test_areas_csv_must_name_the_polygons_areas(city):
    x, y = lonlat(150, 150)
    write_extract(city, [(1, "2019-01-10", "35A", f"{x:.6f}", f"{y:.6f}")])
    ids, geoms = square_grid(3, 100.0, ORIGIN, prefix="b")
    rows = "\n".join(f"{i},{k}" for k, i in enumerate(ids[:-1]))
    (city / "areas.csv").write_text(f"area_id,population\n{rows}\n")
    study = load_study(geo_toml(city, extra_data='areas = "areas.csv"'))
    with pytest.raises(
        GeoError, match=r"areas.csv: 1 of the 9 areas of blocks.geojson have no row \(e.g. 'b22'\)"
    ):
        load_study_data(study)
    # GEOIDs saved as numbers lose their leading zero: named as such
    numbers = [{"GEOID": 7081000000 + k} for k in range(9)]
    write_geojson(city / "blocks.geojson", geoms, properties=numbers)
    rows = "\n".join(f"0{7081000000 + k},{k}" for k in range(9))
    (city / "areas.csv").write_text(f"area_id,population\n{rows}\n")
    write_geojson(
        city / "market.geojson", [shapely.box(*(np.array(ORIGIN * 2) + [130, 130, 170, 170]))]
    )
    with pytest.raises(
        GeoError,
        match=r"differ by leading zeros \('07081000000' in areas.csv, '7081000000' in blocks",
    ):
        load_study_data(load_study(geo_toml(city, extra_data='areas = "areas.csv"')))


def test_validate_data_names_each_sites_areas_and_a_large_share_in_no_area(city, capsys):
    from dmi_eval.cli import main

    x, y = lonlat(150, 150)
    far_x, far_y = lonlat(5000, 150)  # a lost minus sign looks like this: in no area
    months = [f"{2018 + k // 12}-{1 + k % 12:02d}-10" for k in range(20)]  # 2018-01 to 2019-08
    rows = [(i, months[i % 20], "35A", f"{x:.6f}", f"{y:.6f}") for i in range(1, 41)]
    rows += [(100 + i, "2019-01-10", "35A", f"{far_x:.6f}", f"{far_y:.6f}") for i in range(10)]
    write_extract(city, rows)
    assert main(["validate-data", str(geo_toml(city))]) == 0
    out = capsys.readouterr().out
    assert "Note: 10 rows (20%) fall in no area" in out
    assert "  centre: 1 market area(s), 4 nearby, 4 comparison" in out
    write_extract(city, rows[:41])  # one row of 41 outside: no note
    assert main(["validate-data", str(geo_toml(city))]) == 0
    assert "Note:" not in capsys.readouterr().out


def test_coordinates_with_a_decimal_comma_are_named_without_quoting_them(city):
    x, y = lonlat(150, 150)
    comma = lambda v: f"{v:.6f}".replace(".", ",")  # noqa: E731
    rows = [(i, "2019-01-10", "35A", comma(x), comma(y)) for i in range(1, 11)]
    write_extract(city, rows, sep=";")
    study = load_study(geo_toml(city, extra_data='delimiter = ";"'))
    with pytest.raises(
        NoUsableRowsError,
        match=r"10 bad_coordinates.*20 values of X/Y are written with a thousands separator or a decimal comma",
    ) as caught:
        load_study_data(study)
    assert comma(x) not in str(caught.value)  # an incident's place is never quoted
