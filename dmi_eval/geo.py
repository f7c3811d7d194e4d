"""Coordinates -> areas, market polygons and buffer catchments.

The study's small areas are polygons read from ``[geo].areas`` (GeoJSON,
GeoPackage, shapefile; via geopandas + pyogrio) or square cells of
``[geo].grid_m`` metres. Geometry questions are answered with shapely and pyproj:

- **Incident -> area.** Each point is placed in the polygon that contains it,
  found with a shapely ``STRtree`` (a spatial index), chunk by chunk. A point
  on a shared edge or corner touches several polygons: it goes to the one whose
  ``area_id`` sorts first (string order) — a fixed rule, so a re-run gives the
  same cell. A point inside no polygon is rejected as ``outside_areas``, one
  outside ``[geo].boundary`` as ``outside_boundary`` (areas wholly outside it
  are dropped); an empty, non-numeric, ``(0, 0)`` or
  out-of-range coordinate as ``bad_coordinates``.
- **Distances** are measured in metres in a projected CRS chosen for the
  study's location (:func:`metric_crs`): the areas' own CRS when it is
  projected (metres or US feet, converted), otherwise the UTM zone of the
  areas' centre. Never in degrees.
- **Sites.** An area is *treated* when its centroid lies inside (or on the
  edge of) the market polygon; *catchment* when its centroid lies within
  ``catchment_buffer_m`` of the market and not inside it; with
  ``donor_buffer_m``, areas whose centroid lies within that distance of the
  market are never donors. Explicit ``treated_areas`` / ``catchment_areas`` win.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj.exceptions
import shapely
from pyproj import CRS, Transformer

from dmi_eval.errors import ConfigError, GeoError
from dmi_eval.polygons import read_polygons

if TYPE_CHECKING:
    from dmi_eval.study_spec import DataSpec, GeoSpec, Site

SWAP_SAMPLE = 5_000
OUTSIDE_BOUNDARY = -2
"""What :meth:`PointLocator.locate` returns for a point outside ``[geo].boundary``."""


# --- distances in metres ------------------------------------------------------------------


def _distorts_distances(crs: CRS) -> bool:
    """Mercator-type projections (Web Mercator, EPSG:3857) stretch metres by 1 / cos(lat)."""
    operation = crs.coordinate_operation
    method = (operation.method_name if operation is not None else "").lower()
    return "mercator" in method and "transverse" not in method


def metric_crs(frame: gpd.GeoDataFrame) -> tuple[CRS, float]:
    """The projected CRS distances are measured in, and metres per unit of that CRS.

    The frame's own CRS when it is projected (metres, or feet converted by the
    axis's unit factor) and not a Mercator projection, whose units are metres
    only at the equator (a "200 m" buffer of Web Mercator is 162 m at 36 N);
    otherwise the UTM zone of the frame's centre.
    """
    crs = CRS.from_user_input(frame.crs)
    if crs.is_projected and not _distorts_distances(crs):
        return crs, float(crs.axis_info[0].unit_conversion_factor)
    # The UTM zone depends on the frame's CRS and extent only; pyproj's database
    # query behind estimate_utm_crs costs ~0.3 s, and a study asks for it several
    # times (config, data, maps) with the same polygons.
    key = (crs.to_wkt(), tuple(float(b) for b in frame.total_bounds))
    if key not in _UTM_CACHE:
        _UTM_CACHE[key] = CRS.from_user_input(frame.estimate_utm_crs())
    return _UTM_CACHE[key], 1.0


_UTM_CACHE: dict[tuple[str, tuple[float, ...]], CRS] = {}


# --- the area layer ------------------------------------------------------------------


@dataclass(frozen=True)
class AreaLayer:
    """The study's areas: polygons sorted by ``area_id``, and their metric twin.

    Attributes
    ----------
    polygons
        ``area_id`` index (strings, sorted), geometry in the file's CRS.
    metric
        The same polygons in :attr:`crs` (distance units: :attr:`unit_m` metres).
    source
        File name (or ``grid_m=...``) for messages.
    boundary
        Optional city limits, in the polygons' CRS.
    """

    polygons: gpd.GeoDataFrame
    metric: gpd.GeoDataFrame
    crs: CRS
    unit_m: float
    source: str
    boundary: shapely.Geometry | None = None

    @property
    def ids(self) -> pd.Index:
        return self.polygons.index

    @property
    def crs_label(self) -> str:
        """E.g. ``EPSG:32617 (WGS 84 / UTM zone 17N)``, for reports."""
        code = self.crs.to_epsg()
        return f"EPSG:{code} ({self.crs.name})" if code else self.crs.name

    def centroids(self) -> gpd.GeoSeries:
        """Area centroids computed in the metric CRS."""
        return self.metric.geometry.centroid


def load_areas(geo: GeoSpec, *, study_file: Path, data: DataSpec | None = None) -> AreaLayer:
    """Read ``[geo]``'s areas (or build its grid) into an :class:`AreaLayer`."""
    boundary_frame = None
    if geo.boundary is not None:
        boundary_frame = read_polygons(geo.boundary, key="[geo].boundary")
    if geo.areas is not None:
        frame = read_polygons(geo.areas, key="[geo].areas", id_field=geo.area_id_field)
        polygons = _area_ids(frame, geo.areas, geo.area_id_field or "area_id")
        source = geo.areas.name
    else:
        polygons = _grid(geo, study_file=study_file, boundary=boundary_frame, data=data)
        source = f"grid_m={geo.grid_m:g}"
    crs, unit_m = metric_crs(polygons)
    boundary = None
    if boundary_frame is not None:
        boundary = shapely.union_all(boundary_frame.to_crs(polygons.crs).geometry.to_numpy())
        if geo.areas is not None:  # a grid is laid over the boundary already
            polygons = _within_boundary(polygons, boundary, geo.areas)
    return AreaLayer(
        polygons=polygons,
        metric=polygons.to_crs(crs),
        crs=crs,
        unit_m=unit_m,
        source=source,
        boundary=boundary,
    )


def check_covariate_ids(covariate_ids: pd.Index, layer: AreaLayer, file: str) -> None:
    """Every area of the layer needs its row in ``areas.csv`` (``file``); say which do not.

    Ids that differ only by leading zeros (a GEOID stored as a number in the
    polygon file) are named as such.
    """
    have = set(map(str, covariate_ids))
    missing = [a for a in map(str, layer.ids) if a not in have]
    if not missing:
        return
    hint = "add them, or write the ids the same way in both files"
    stripped = {a.lstrip("0"): a for a in have}
    twin = next((stripped[m.lstrip("0")] for m in missing if m.lstrip("0") in stripped), None)
    if twin is not None:
        example = next(m for m in missing if m.lstrip("0") in stripped)
        hint = (
            f"the ids differ by leading zeros ({twin!r} in {file}, {example!r} in "
            f"{layer.source}): store the id as text in {layer.source} ([geo].area_id_field; a "
            "number loses its leading zeros)"
        )
    raise GeoError(
        f"{file}: {len(missing):,} of the {len(layer.ids):,} areas of {layer.source} have no "
        f"row (e.g. {', '.join(map(repr, missing[:3]))}); {hint}"
    )


MIN_SHARE_INSIDE = 0.01
"""An area is kept when at least this share of it lies inside ``[geo].boundary``."""


def _within_boundary(
    polygons: gpd.GeoDataFrame, boundary: shapely.Geometry, path: Path
) -> gpd.GeoDataFrame:
    """The areas with at least :data:`MIN_SHARE_INSIDE` of their area inside the boundary.

    An area outside it (or along its edge: reprojected edges overlap by slivers)
    would be an all-zero comparison area, its points being rejected.
    """
    geoms = polygons.geometry.to_numpy()
    inside = shapely.area(shapely.intersection(geoms, boundary))
    keep = inside >= MIN_SHARE_INSIDE * shapely.area(geoms)
    if not keep.any():
        raise GeoError(
            f"{path.name}: no area overlaps [geo].boundary; check that both files show the same "
            "place (and their CRS)"
        )
    return polygons[keep]


def _area_ids(frame: gpd.GeoDataFrame, path: Path, field: str) -> gpd.GeoDataFrame:
    if field not in frame.columns or field == "geometry":
        fields = [c for c in frame.columns if c != "geometry"]
        close = difflib.get_close_matches(field, fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise GeoError(
            f"{path.name}: no property {field!r}{hint}; its features have: "
            f"{', '.join(fields) or 'no properties'}. Set [geo].area_id_field to the one "
            "that names each area"
        )
    raw = frame[field]
    if pd.api.types.is_float_dtype(raw) and raw.dropna().mod(1).eq(0).all():
        raw = raw.astype("Int64")
    ids = raw.astype("string").str.strip()
    empty = ids.isna() | (ids == "")
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise GeoError(
            f"{path.name}: feature {i + 1} has no {field}; every area needs an id ([geo].area_id_field)"
        )
    dup = ids.duplicated(keep=False)
    if dup.any():
        value = ids[dup].iloc[0]
        where = ", ".join(str(i + 1) for i in np.flatnonzero((ids == value).to_numpy())[:5])
        raise GeoError(
            f"{path.name}: {field} {value!r} names features {where}; [geo].area_id_field must "
            "be unique (dissolve the pieces into one multipolygon, or pick another field)"
        )
    out = gpd.GeoDataFrame(
        {"area_id": ids.astype(object).to_numpy()},
        geometry=frame.geometry.to_numpy(),
        crs=frame.crs,
    )
    return out.set_index("area_id").sort_index()


def _grid(
    geo: GeoSpec,
    *,
    study_file: Path,
    boundary: gpd.GeoDataFrame | None,
    data: DataSpec | None,
) -> gpd.GeoDataFrame:
    """Square cells of ``grid_m`` metres over the boundary (or over the incidents)."""
    assert geo.grid_m is not None
    if boundary is not None:
        crs, unit_m = metric_crs(boundary)
        shape = shapely.union_all(boundary.to_crs(crs).geometry.to_numpy())
        bounds = shape.bounds
    else:
        if data is None or data.incidents is None or geo.crs is None:
            raise ConfigError(f"{study_file}: [geo].grid_m needs a boundary or geocoded incidents")
        bounds, crs, unit_m = _incident_bounds(data, geo.crs)
        shape = None
    size = geo.grid_m / unit_m
    x0 = np.floor(bounds[0] / size) * size
    y0 = np.floor(bounds[1] / size) * size
    nx = max(1, int(np.ceil((bounds[2] - x0) / size)))
    ny = max(1, int(np.ceil((bounds[3] - y0) / size)))
    if nx * ny > 2_000_000:
        raise ConfigError(
            f"{study_file}: [geo].grid_m = {geo.grid_m:g} makes {nx * ny:,} cells; use larger cells"
        )
    col, row = np.meshgrid(np.arange(nx), np.arange(ny))
    col, row = col.ravel(), row.ravel()
    cells = shapely.box(
        x0 + col * size, y0 + row * size, x0 + (col + 1) * size, y0 + (row + 1) * size
    )
    ids = np.array([f"G{r:04d}_{c:04d}" for r, c in zip(row, col, strict=True)], dtype=object)
    if shape is not None:
        keep = shapely.intersects(cells, shape)
        cells, ids = cells[keep], ids[keep]
    frame = gpd.GeoDataFrame({"area_id": ids}, geometry=cells, crs=crs)
    return frame.set_index("area_id").sort_index()


def _incident_bounds(data: DataSpec, points_crs: str) -> tuple[tuple[float, ...], CRS, float]:
    """Bounds of the incidents' valid coordinates in a metric CRS, stray points left out.

    A point further than :data:`GRID_FENCE` times the span of the central 98%
    of points beyond it (a typo, a lost minus sign) would stretch the grid over
    empty land, whose thousands of zero cells become comparison areas: it is
    left out of the bounds, so it falls in no cell (``outside_areas``). With
    fewer than :data:`GRID_MIN_POINTS` points every point is kept.
    """
    from dmi_eval.extract import chunks, header

    cols = {"x": data.columns.x or "x", "y": data.columns.y or "y"}
    assert data.incidents is not None
    sep = header(data.incidents, cols, delimiter=data.delimiter)
    source = CRS.from_user_input(points_crs)
    valid = _valid_box(source)
    xs, ys = [], []
    for chunk in chunks(data.incidents, cols, delimiter=sep):
        x, y, bad = parse_xy(chunk["x"], chunk["y"], valid)
        xs.append(x[~bad])
        ys.append(y[~bad])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if not len(x):
        raise GeoError(f"{data.incidents.name}: no row has usable coordinates to lay a grid over")
    keep = np.ones(len(x), dtype=bool)
    for v in (x, y) if len(x) >= GRID_MIN_POINTS else ():
        low, high = np.percentile(v, [1, 99])
        fence = GRID_FENCE * (high - low)
        keep &= (v >= low - fence) & (v <= high + fence)
    lo = [x[keep].min(), y[keep].min()]
    hi = [x[keep].max(), y[keep].max()]
    frame = gpd.GeoDataFrame(geometry=shapely.points([lo, hi]), crs=source)
    crs, unit_m = metric_crs(frame)
    b = frame.to_crs(crs).total_bounds
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3])), crs, unit_m


GRID_FENCE = 0.5
"""A grid without a boundary spans the points within this multiple of their central 98% span
beyond it (each axis)."""
GRID_MIN_POINTS = 200
"""Fewer points than this are too few for a 1% quantile: the grid spans them all."""


# --- points -> areas ---------------------------------------------------------------------


def _valid_box(crs: CRS) -> tuple[float, float, float, float] | None:
    """The CRS's valid coordinate range (its area of use, plus 10% each side)."""
    if crs.is_geographic:
        return (-180.0, -90.0, 180.0, 90.0)
    aou = crs.area_of_use
    if aou is None:
        return None
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x0, y0, x1, y1 = to_crs.transform_bounds(*aou.bounds)
    dx, dy = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    return (x0 - dx, y0 - dy, x1 + dx, y1 + dy)


def parse_xy(
    x_text: pd.Series, y_text: pd.Series, valid: tuple[float, float, float, float] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates as floats and the mask of ``bad_coordinates`` rows.

    Bad: empty, non-numeric, not finite, exactly ``(0, 0)``, or outside ``valid``.
    """
    x = pd.to_numeric(x_text, errors="coerce").to_numpy(dtype="float64")  # blanks: NaN
    y = pd.to_numeric(y_text, errors="coerce").to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(x) & np.isfinite(y)) | ((x == 0) & (y == 0))
        if valid is not None:
            bad |= (x < valid[0]) | (x > valid[2]) | (y < valid[1]) | (y > valid[3])
    return x, y, bad


class PointLocator:
    """Places points given in ``points_crs`` into the areas of ``layer``.

    Parameters
    ----------
    layer
        The study's areas.
    points_crs
        The CRS of the incidents' x/y columns (x = easting or longitude).
    """

    def __init__(self, layer: AreaLayer, points_crs: str):
        self.layer = layer
        self.points_crs = points_crs
        source = CRS.from_user_input(points_crs)
        target = CRS.from_user_input(layer.polygons.crs)
        self.valid = _valid_box(source)
        self.transformer = (
            None if source.equals(target) else Transformer.from_crs(source, target, always_xy=True)
        )
        self.geoms = layer.polygons.geometry.to_numpy()
        self.tree = shapely.STRtree(self.geoms)
        shapely.prepare(self.geoms)
        self.boundary = layer.boundary
        if self.boundary is not None:
            shapely.prepare(self.boundary)

    def locate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index (into ``layer.ids``) of the area holding each point; -1 for none,
        :data:`OUTSIDE_BOUNDARY` for a point outside ``[geo].boundary``.

        A point on an edge or corner shared by several areas goes to the area
        whose id sorts first (the layer is sorted by id, so: the lowest index).
        """
        if len(x) == 0:
            return np.empty(0, dtype=np.int64)
        if self.transformer is not None:
            x, y = self.transformer.transform(x, y)
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        # Candidates from the index's bounding boxes, then one vectorised exact test
        # against the prepared polygons (a point on an edge intersects both sides).
        point_i, area_i = self.tree.query(shapely.points(x, y))
        hit = shapely.intersects_xy(self.geoms[area_i], x[point_i], y[point_i])
        none = len(self.geoms)
        first = np.full(len(x), none, dtype=np.int64)
        np.minimum.at(first, point_i[hit], area_i[hit])
        out = np.where(first < none, first, -1)
        if self.boundary is not None:
            out[~shapely.intersects_xy(self.boundary, x, y)] = OUTSIDE_BOUNDARY
        return out

    def areas_extent(self) -> tuple[float, float, float, float] | None:
        """The areas' bounds in the points' CRS (``None`` if they cannot be projected there)."""
        try:
            bounds = self.layer.polygons.to_crs(self.points_crs).total_bounds
        except (pyproj.exceptions.CRSError, pyproj.exceptions.ProjError):
            return None
        return tuple(float(b) for b in bounds) if np.isfinite(bounds).all() else None

    def swapped_share(self, x: np.ndarray, y: np.ndarray) -> float:
        """Share of the given points that land in an area once x and y are swapped."""
        if len(x) == 0:
            return 0.0
        sx, sy = np.asarray(y), np.asarray(x)
        if self.valid is not None:
            ok = (sx >= self.valid[0]) & (sx <= self.valid[2])
            ok &= (sy >= self.valid[1]) & (sy <= self.valid[3])
            if not ok.any():
                return 0.0
            sx, sy = sx[ok], sy[ok]
            scale = ok.mean()
        else:
            scale = 1.0
        return float((self.locate(sx, sy) >= 0).mean() * scale)


# --- markets and site areas ----------------------------------------------------------------


@dataclass(frozen=True)
class StudyGeo:
    """Everything a map needs: areas, each site's market and catchment distance."""

    layer: AreaLayer
    markets: dict[str, shapely.Geometry]
    """Site id -> market polygon in the metric CRS (sites with ``market`` only)."""
    catchment_m: dict[str, float]


MARKET_SITE_FIELD = "site"
"""Property that says which site a market polygon belongs to, in a file of several sites."""


def read_market(path: Path, layer: AreaLayer, site_id: str) -> shapely.Geometry:
    """The union of a market file's polygons for one site, in the layer's metric CRS.

    A file may hold several sites' markets: as layers (a GeoPackage; the layer
    named after the site is read) or as features with a ``site`` property
    (:data:`MARKET_SITE_FIELD`, case aside; the site's features are read).
    Otherwise every polygon in the file is the site's market (one market drawn
    in pieces).
    """
    key = f"[[sites]] id={site_id!r}.market"
    path = Path(path)
    frame = read_polygons(path, key=key, layer=site_id)
    if MARKET_SITE_FIELD in frame.columns and len(frame) > 1:
        values = frame[MARKET_SITE_FIELD].astype("string").str.strip()
        mine = (values.str.lower() == site_id).fillna(False).to_numpy(dtype=bool)
        if not mine.any():
            found = sorted({str(v) for v in values.dropna()})
            raise GeoError(
                f"{path.name}: no feature has {MARKET_SITE_FIELD} = {site_id!r} (it has "
                f"{', '.join(map(repr, found[:8])) or 'none'}); give each site's polygon its "
                f"site id in the {MARKET_SITE_FIELD!r} property, or point {key} at a file of "
                "that site's market alone"
            )
        frame = frame[mine]
    return shapely.union_all(frame.to_crs(layer.crs).geometry.to_numpy())


def resolve_sites(
    study_file: Path, geo: GeoSpec, sites: tuple[Site, ...], data: DataSpec | None = None
) -> tuple[Site, ...]:
    """Fill in the treated / catchment / donor areas of sites drawn as market polygons.

    Raises
    ------
    GeoError
        A market covers no area centroid, or a market or catchment overlaps
        another site's market.
    """
    layer = load_areas(geo, study_file=study_file, data=data)
    study_geo = _study_geo(layer, sites)
    centroids = layer.centroids()
    ids = layer.ids
    _check_overlaps(study_geo, sites)
    resolved: list[Site] = []
    for site in sites:
        if site.market is None:
            resolved.append(site)
            continue
        market = study_geo.markets[site.id]
        treated = site.treated_areas or tuple(ids[shapely.covers(market, centroids.to_numpy())])
        if not treated:
            distance = centroids.distance(market) * layer.unit_m
            nearest = distance.idxmin()
            raise GeoError(
                f"{site.market.name}: the market of site {site.id!r} covers no area: no centroid "
                f"of the {len(ids)} areas in {layer.source} lies inside it (nearest: {nearest}, "
                f"{distance.min():,.0f} m away). Check that the market and the areas show the "
                "same place, or draw the market around the blocks it covers"
                + (
                    ", or that it lies inside [geo].boundary (areas outside it are left out)"
                    if layer.boundary is not None
                    else ""
                )
            )
        catchment = site.catchment_areas
        if not catchment and site.catchment_buffer_m is not None:
            near = centroids.distance(market).to_numpy() * layer.unit_m <= site.catchment_buffer_m
            catchment = tuple(a for a in ids[near] if a not in set(treated))
        resolved.append(dataclasses.replace(site, treated_areas=treated, catchment_areas=catchment))
    busy = {a for s in resolved for a in (*s.treated_areas, *s.catchment_areas)}
    out = []
    for site in resolved:
        if site.market is not None and site.donor_buffer_m is not None and not site.donor_areas:
            market = study_geo.markets[site.id]
            far = centroids.distance(market).to_numpy() * layer.unit_m > site.donor_buffer_m
            donors = tuple(a for a in ids[far] if a not in busy)
            if not donors:
                raise GeoError(
                    f"{site.market.name}: [[sites]] id={site.id!r}.donor_buffer_m = "
                    f"{site.donor_buffer_m:g} m leaves no comparison area: every area of "
                    f"{layer.source} is that close to the market or in a site. Lower it"
                )
            site = dataclasses.replace(site, donor_areas=donors)
        out.append(site)
    return tuple(out)


def _study_geo(layer: AreaLayer, sites: tuple[Site, ...]) -> StudyGeo:
    markets = {s.id: read_market(s.market, layer, s.id) for s in sites if s.market is not None}
    catchment = {s.id: float(s.catchment_buffer_m or 0.0) for s in sites if s.market is not None}
    return StudyGeo(layer=layer, markets=markets, catchment_m=catchment)


def _check_overlaps(study_geo: StudyGeo, sites: tuple[Site, ...]) -> None:
    unit = study_geo.layer.unit_m
    by_id = {s.id: s for s in sites}
    items = list(study_geo.markets.items())
    for i, (a, market_a) in enumerate(items):
        zone_a = market_a.buffer(study_geo.catchment_m[a] / unit)
        for b, market_b in items:
            if a == b:
                continue
            file_a = by_id[a].market.name  # type: ignore[union-attr]
            if i < [k for k, _ in items].index(b) and market_a.intersection(market_b).area > 0:
                raise GeoError(
                    f"{file_a}: the markets of sites {a!r} and {b!r} overlap; a block belongs "
                    "to one market: redraw them so they do not overlap"
                )
            if study_geo.catchment_m[a] > 0 and zone_a.intersects(market_b):
                raise GeoError(
                    f"{file_a}: the catchment of site {a!r} ({study_geo.catchment_m[a]:g} m "
                    f"around its market) overlaps the market of site {b!r}; lower "
                    f"[[sites]] id={a!r}.catchment_buffer_m or list catchment_areas yourself"
                )


def load_study_geo(study) -> StudyGeo | None:
    """The study's areas and markets for maps (``None`` when it has no ``[geo]``)."""
    if study.geo is None:
        return None
    layer = load_areas(study.geo, study_file=study.path, data=study.data)
    return _study_geo(layer, study.sites)
