"""Incidents' coordinates -> areas, chunk by chunk, and what the placement tells the user.

:class:`PointTally` places each chunk's points with a
:class:`~dmi_eval.geo.PointLocator`, rejects what cannot be placed
(``bad_coordinates``, ``outside_areas``, ``outside_boundary``) and keeps, in
memory only, what the messages need: a sample of the points in no area (to
spot swapped x/y and show where they lie) and how many values were written
with a thousands separator or a decimal comma. No coordinate is quoted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dmi_eval.errors import GeoError
from dmi_eval.extract import ChunkFilter

if TYPE_CHECKING:  # geopandas, shapely and pyproj load only when points are placed
    from dmi_eval.geo import PointLocator

MOSTLY_OUTSIDE = 0.5
"""Stop when more than this share of rows with usable coordinates fall in no area."""

_SEPARATED = r"\s*[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?\s*|\s*[-+]?\d+,\d+\s*"
"""A number written with thousands separators or a decimal comma (``pd.to_numeric`` rejects it)."""


class PointTally:
    """Places a chunk's points in areas and keeps what the x/y-swap check needs."""

    def __init__(self) -> None:
        self.numeric = 0  # rows reaching the geo step with numeric coordinates
        self.missed = 0  # ... of which out of range or in no area
        self.sample_x: list[np.ndarray] = []
        self.sample_y: list[np.ndarray] = []
        self.sampled = 0
        self.separated = 0  # bad coordinates written with a thousands separator or decimal comma

    def locate(
        self,
        chunk: pd.DataFrame,
        chunk_filter: ChunkFilter,
        locator: PointLocator,
        fields: Mapping[str, str],
    ) -> np.ndarray:
        from dmi_eval.geo import OUTSIDE_BOUNDARY, SWAP_SAMPLE, parse_xy

        x, y, bad = parse_xy(chunk["x"], chunk["y"], locator.valid)
        if bad.any():
            for column in ("x", "y"):
                text = chunk[column].to_numpy(dtype=object)[bad & chunk_filter.keep]
                self.separated += int(pd.Series(text, dtype="string").str.fullmatch(
                    _SEPARATED).fillna(False).sum())  # fmt: skip
        with np.errstate(invalid="ignore"):
            numeric = np.isfinite(x) & np.isfinite(y) & ~((x == 0) & (y == 0)) & chunk_filter.keep
        shown = f"{fields['x']},{fields['y']}"
        chunk_filter.reject(bad, "bad_coordinates", shown)
        live = np.flatnonzero(chunk_filter.keep)
        index = np.full(len(chunk), -1, dtype=np.int64)
        index[live] = locator.locate(x[live], y[live])
        beyond = chunk_filter.keep & (index == OUTSIDE_BOUNDARY)  # excluded on purpose
        outside = chunk_filter.keep & (index < 0) & ~beyond
        numeric &= ~beyond  # the share that stops the run counts points meant to be placed
        missed = numeric & (index < 0)
        self.numeric += int(numeric.sum())
        self.missed += int(missed.sum())
        if self.sampled < SWAP_SAMPLE and missed.any():
            take = np.flatnonzero(missed)[: SWAP_SAMPLE - self.sampled]
            self.sample_x.append(x[take])
            self.sample_y.append(y[take])
            self.sampled += len(take)
        chunk_filter.reject(outside, "outside_areas", shown)
        chunk_filter.reject(beyond, "outside_boundary", shown)
        ids = locator.layer.ids.to_numpy(dtype=object)
        return np.where(index >= 0, ids[np.maximum(index, 0)], None)

    def hint(self, fields: Mapping[str, str]) -> str:
        """Why coordinates were unreadable, when the values show it (no value is quoted)."""
        if not self.separated:
            return ""
        return (
            f"; {self.separated:,} values of {fields['x']}/{fields['y']} are written with a "
            "thousands separator or a decimal comma (as 1,693,990.63 or 35,95): export the "
            "coordinates as plain numbers with a decimal point"
        )

    def check(self, file: str, locator: PointLocator, fields: Mapping[str, str]) -> None:
        """Stop when most numeric points fall in no area; say so when x/y look swapped."""
        if not self.numeric or self.missed <= MOSTLY_OUTSIDE * self.numeric:
            return
        x, y = np.concatenate(self.sample_x), np.concatenate(self.sample_y)
        share = f"{self.missed:,} of {self.numeric:,} points ({self.missed / self.numeric:.0%})"
        if locator.swapped_share(x, y) > 0.5:
            raise GeoError(
                f"{file}: x and y look swapped: {share} fall in no area of "
                f"{locator.layer.source}, but most do once x and y are exchanged. In study.toml "
                f"[data.columns] swap them: x = {fields['y']!r}, y = {fields['x']!r} "
                "(x is the longitude or easting)"
            )
        raise GeoError(
            f"{file}: {share} fall in no area of {locator.layer.source} (or outside the CRS's "
            f"range){_where_they_are(x, y, locator)}; check [geo].crs (the CRS of the x/y "
            "columns), that x is the longitude or easting, and that the areas file covers the "
            "extract"
        )


def _where_they_are(x: np.ndarray, y: np.ndarray, locator: PointLocator) -> str:
    """Where the missed points lie against the areas, in [geo].crs units (for the message)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return ""
    qx = np.percentile(x[ok], [5, 95])
    qy = np.percentile(y[ok], [5, 95])
    text = f": most of them have x {_coord(qx[0])} to {_coord(qx[1])} and y {_coord(qy[0])} to "
    text += _coord(qy[1])
    extent = locator.areas_extent()
    if extent is not None:
        text += (
            f", where the areas lie at x {_coord(extent[0])} to {_coord(extent[2])} and y "
            f"{_coord(extent[1])} to {_coord(extent[3])} read in [geo].crs = "
            f"{locator.points_crs!r}"
        )
    return text


def _coord(v: float) -> str:
    """A coordinate for a message: degrees to 4 decimals, metres or feet whole (1,690,890)."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4f}"
