"""Site and study maps: what they show, and the same PNG bytes on every run."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import shapely

from dmi_eval.config import GeoSpec
from dmi_eval.geo import StudyGeo, load_areas
from dmi_eval.plots.common import save_figure
from dmi_eval.plots.maps import plot_site_map, plot_study_map
from tests.test_geo import ORIGIN, square_grid, write_layer

UTM = "EPSG:32617"


@pytest.fixture(scope="module")
def study_geo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maps")
    ids, geoms = square_grid(5, 100.0, ORIGIN, prefix="b")
    path = write_layer(folder / "blocks.gpkg", ids, geoms, UTM)
    layer = load_areas(GeoSpec(crs=UTM, areas=path, area_id_field="GEOID"), study_file=path)
    market = shapely.box(ORIGIN[0] + 220, ORIGIN[1] + 220, ORIGIN[0] + 280, ORIGIN[1] + 280)
    return StudyGeo(layer=layer, markets={"east": market}, catchment_m={"east": 120.0})


def site_map(study_geo):
    ring = ("b11", "b12", "b13", "b21", "b23", "b31", "b32", "b33")
    donors = ("b00", "b04", "b40", "b44")
    weights = pd.Series({"b00": 0.7, "b04": 0.3, "b40": 0.0, "b44": 0.0})
    change = pd.Series({"b22": -4.0, **dict.fromkeys(ring, 0.5)})
    return plot_site_map(
        study_geo,
        "east",
        treated=("b22",),
        catchment=ring,
        donors=donors,
        weights=weights,
        change=change,
    )


def test_site_map_shows_market_ring_weights_and_change(study_geo):
    fig, ax = site_map(study_geo)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["market", "catchment (120 m)", "treated areas"]
    colorbars = [a.get_ylabel() for a in fig.axes if a is not ax]
    assert colorbars == [
        "synthetic-control weight (comparison areas)",
        "change in drug incidents per period, post - pre",
    ]
    # Donors are shaded by weight: the heaviest donor is darker than a zero-weight one.
    donor_faces = ax.collections[1].get_facecolor()
    assert donor_faces.shape[0] == 4
    assert donor_faces[0, :3].sum() < donor_faces[2, :3].sum()
    # Incidents are never drawn as points: every drawn collection is polygons or lines.
    assert not [c for c in ax.collections if type(c).__name__ == "PathCollection"]
    # The axes are in metres of the study's CRS and the scale bar says so.
    assert any(t.get_text().endswith(" m") for t in ax.texts)


def test_maps_are_byte_identical_across_runs(study_geo, tmp_path):
    digests = []
    for i in range(2):
        fig, _ = site_map(study_geo)
        digests.append(hashlib.sha256(save_figure(fig, tmp_path / f"s{i}.png").read_bytes()))
    assert digests[0].hexdigest() == digests[1].hexdigest()


def test_study_map_marks_every_site(study_geo):
    fig, ax = plot_study_map(
        study_geo,
        {"east": ("b22",), "west": ("b00", "b01")},
        labels={"east": "Eastside: closed", "west": "Westend"},
        catchments={"east": ("b12", "b21")},
    )
    assert sorted(
        t.get_text() for t in ax.texts if ":" in t.get_text() or "end" in t.get_text()
    ) == [
        "Eastside: closed",
        "Westend",
    ]
    x0, x1 = ax.get_xlim()
    assert x0 <= ORIGIN[0] and x1 >= ORIGIN[0] + 500  # the whole city is in view
    assert np.isfinite(ax.get_ylim()).all()
