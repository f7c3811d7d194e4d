"""Reading the study's polygon files: areas, markets, a boundary.

GeoJSON, GeoPackage and shapefiles are read with geopandas and pyogrio, and
every feature is checked before it is used: a missing CRS, coordinates that
are not what the CRS says, a file of several layers, a feature that is not a
valid polygon. Every error names the file, the feature and the study.toml key.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio.errors
import shapely
from pyproj import CRS

from dmi_eval.errors import GeoError

POLYGON_TYPES = frozenset({"Polygon", "MultiPolygon"})


def read_polygons(
    path: Path, *, key: str, id_field: str | None = None, layer: str | None = None
) -> gpd.GeoDataFrame:
    """Read a polygon file, checking every feature; errors name the file and the feature.

    Parameters
    ----------
    path
        GeoJSON, GeoPackage or shapefile.
    key
        The study.toml key that names the file (for messages).
    id_field
        Property used to name a feature in messages, when present.
    layer
        The layer to read from a file of several (a GeoPackage), when the file
        has a layer of that name; a file of several layers without it is an
        error, never read by its first layer.
    """
    path = Path(path)
    if not path.exists():
        raise GeoError(f"{path.name}: file not found at {path}; fix {key} in study.toml")
    try:
        names = [str(n) for n in pyogrio.list_layers(path)[:, 0]]
        layer = layer if layer in names and len(names) > 1 else None
        if layer is None and len(names) > 1:
            raise GeoError(
                f"{path.name}: holds {len(names)} layers ({', '.join(names[:8])}); {key} "
                "reads one: export the layer you mean to its own file"
            )
        frame = gpd.read_file(path, engine="pyogrio", layer=layer)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, ValueError) as exc:
        raise GeoError(
            f"{path.name}: cannot read it as a polygon file ({exc}); {key} needs GeoJSON, "
            "GeoPackage or a shapefile"
        ) from None
    if frame.empty:
        raise GeoError(f"{path.name}: has no features; {key} needs at least one polygon")
    if frame.crs is None:
        raise GeoError(
            f"{path.name}: has no CRS (a shapefile without its .prj?); save it with its "
            f"coordinate reference system ({key})"
        )
    _check_degrees(frame, path, key)
    for i, geom in enumerate(frame.geometry):
        name = f"feature {i + 1}"
        if id_field is not None and id_field in frame.columns:
            name += f" ({id_field}={frame[id_field].iloc[i]!r})"
        if geom is None or geom.is_empty:
            raise GeoError(
                f"{path.name}: {name} has no geometry; delete it or draw its polygon ({key})"
            )
        if geom.geom_type not in POLYGON_TYPES:
            raise GeoError(
                f"{path.name}: {name} is a {geom.geom_type}, not a polygon; {key} needs "
                "polygons (areas drawn as shapes, not points or lines)"
            )
        if not geom.is_valid:
            raise GeoError(
                f"{path.name}: {name} is not a valid polygon ({shapely.is_valid_reason(geom)}); "
                f"repair it in a GIS (QGIS: Fix geometries; shapely: make_valid) and re-export ({key})"
            )
    return frame


def _check_degrees(frame: gpd.GeoDataFrame, path: Path, key: str) -> None:
    """A file in degrees whose coordinates are not longitudes and latitudes is an error.

    A GeoJSON without a ``crs`` member is read as WGS 84 degrees whatever it
    holds; State Plane feet read that way fail later, far from the cause.
    """
    if not CRS.from_user_input(frame.crs).is_geographic:
        return
    x0, y0, x1, y1 = (float(b) for b in frame.total_bounds)
    if min(x0, y0) < -180 or x1 > 180 or y1 > 90 or y0 < -90:
        raise GeoError(
            f"{path.name}: its CRS is in degrees ({frame.crs.name}) but x runs from {x0:,.0f} "
            f"to {x1:,.0f} and y from {y0:,.0f} to {y1:,.0f}: projected coordinates (metres or "
            f"feet) saved without their CRS. Re-export it with its CRS ({key})"
        )
