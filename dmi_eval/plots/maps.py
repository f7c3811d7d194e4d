"""Maps: one site (market, catchment ring, comparison weights, change per area) and the study.

Drawn with matplotlib from the study's own polygons (no web tiles). Incidents
appear only as counts aggregated to areas — never as points. Coordinates are
those of the study's metric CRS (:attr:`dmi_eval.geo.AreaLayer.crs`), with a
scale bar in metres.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import geopandas as gpd
import matplotlib as mpl
import numpy as np
import pandas as pd
import shapely
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dmi_eval.geo import StudyGeo
from dmi_eval.plots.common import new_axes

__all__ = ["plot_site_map", "plot_study_map"]

EDGE = "0.75"


def _scale_bar(ax: Axes, unit_m: float) -> None:
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    span_m = (x1 - x0) * unit_m
    length_m = next((v for v in (5000, 2000, 1000, 500, 200, 100, 50) if v <= span_m / 4), 50)
    length = length_m / unit_m
    x, y = x0 + 0.04 * (x1 - x0), y0 + 0.05 * (y1 - y0)
    ax.plot([x, x + length], [y, y], color="black", lw=2.5, solid_capstyle="butt")
    label = f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m"
    ax.text(x + length / 2, y + 0.015 * (y1 - y0), label, ha="center", va="bottom", fontsize=8)


def _frame(ax: Axes) -> None:
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("")  # the scale bar gives the distances
    ax.set_ylabel("")
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_site_map(
    geo: StudyGeo,
    site_id: str,
    *,
    treated: Sequence[str],
    catchment: Sequence[str] = (),
    donors: Sequence[str] = (),
    weights: pd.Series | None = None,
    change: pd.Series | None = None,
    outcome: str = "drug",
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """Map of one site: its market, catchment ring, donors by weight, change per area.

    Parameters
    ----------
    geo
        The study's areas and markets (:func:`dmi_eval.geo.load_study_geo`).
    treated, catchment, donors
        The site's area ids by role.
    weights
        Synthetic-control weight of each donor area (index: area id); donors
        are shaded by it (greens). ``None``: donors drawn in one light shade.
    change
        Change in ``outcome`` incidents per period (post mean minus pre mean)
        for the treated and catchment areas (index: area id), on a diverging
        scale (blue: fewer, red: more).
    """
    layer = geo.layer
    areas = layer.metric
    fig, ax = new_axes(ax, size=(7.0, 6.0))
    areas.plot(ax=ax, facecolor="white", edgecolor=EDGE, linewidth=0.3)
    donor_frame = areas.loc[[a for a in donors if a in areas.index]]
    if weights is not None and len(donor_frame):
        w = weights.reindex(donor_frame.index).fillna(0.0).clip(lower=0.0)
        vmax = float(max(w.max(), 1e-9))
        donor_frame = donor_frame.assign(weight=w.to_numpy())
        donor_frame.plot(
            ax=ax,
            column="weight",
            cmap="Greens",
            vmin=0.0,
            vmax=vmax,
            edgecolor=EDGE,
            linewidth=0.3,
        )
        sm = mpl.cm.ScalarMappable(cmap="Greens", norm=mpl.colors.Normalize(0.0, vmax))
        fig.colorbar(sm, ax=ax, shrink=0.5, label="synthetic-control weight (comparison areas)")
    elif len(donor_frame):
        donor_frame.plot(ax=ax, facecolor="0.93", edgecolor=EDGE, linewidth=0.3)
    focus = [a for a in (*treated, *catchment) if a in areas.index]
    if change is not None and focus:
        values = change.reindex(focus).astype(float)
        limit = float(max(np.nanmax(np.abs(values.to_numpy())), 1e-9))
        areas.loc[focus].assign(change=values.to_numpy()).plot(
            ax=ax,
            column="change",
            cmap="RdBu_r",
            vmin=-limit,
            vmax=limit,
            edgecolor="0.4",
            linewidth=0.4,
        )
        sm = mpl.cm.ScalarMappable(cmap="RdBu_r", norm=mpl.colors.Normalize(-limit, limit))
        fig.colorbar(
            sm, ax=ax, shrink=0.5, label=f"change in {outcome} incidents per period, post - pre"
        )
    handles = []
    market = geo.markets.get(site_id)
    if market is not None:
        gpd.GeoSeries([market], crs=layer.crs).boundary.plot(ax=ax, color="black", linewidth=1.8)
        handles.append(Line2D([], [], color="black", lw=1.8, label="market"))
        distance = geo.catchment_m.get(site_id, 0.0)
        if distance > 0:
            ring = market.buffer(distance / layer.unit_m)
            gpd.GeoSeries([ring], crs=layer.crs).boundary.plot(
                ax=ax, color="black", linewidth=1.0, linestyle="--"
            )
            handles.append(
                Line2D([], [], color="black", lw=1.0, ls="--", label=f"catchment ({distance:g} m)")
            )
    treated_frame = areas.loc[[a for a in treated if a in areas.index]]
    treated_frame.boundary.plot(ax=ax, color="C3", linewidth=1.0)
    handles.append(Patch(facecolor="none", edgecolor="C3", label="treated areas"))
    if weights is None and len(donor_frame):
        handles.append(Patch(facecolor="0.93", edgecolor=EDGE, label="comparison areas"))
    _frame(ax)
    _scale_bar(ax, layer.unit_m)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    ax.set_title(f"{site_id}: market, catchment and comparison areas")
    return fig, ax


def plot_study_map(
    geo: StudyGeo,
    sites: Mapping[str, Sequence[str]],
    *,
    labels: Mapping[str, str] | None = None,
    catchments: Mapping[str, Sequence[str]] | None = None,
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """Every site on one map: treated areas filled, catchments hatched, markets outlined.

    Parameters
    ----------
    sites
        Site id -> treated area ids.
    labels
        Site id -> text written at the site (default: the id).
    catchments
        Site id -> catchment area ids.
    """
    layer = geo.layer
    areas = layer.metric
    fig, ax = new_axes(ax, size=(7.0, 6.0))
    areas.plot(ax=ax, facecolor="white", edgecolor=EDGE, linewidth=0.3)
    for i, (site_id, treated) in enumerate(sites.items()):
        color = f"C{i % 10}"
        ring = [a for a in (catchments or {}).get(site_id, ()) if a in areas.index]
        if ring:
            areas.loc[ring].plot(ax=ax, facecolor=color, alpha=0.25, edgecolor=EDGE, linewidth=0.3)
        block = areas.loc[[a for a in treated if a in areas.index]]
        block.plot(ax=ax, facecolor=color, edgecolor="0.3", linewidth=0.4)
        market = geo.markets.get(site_id)
        if market is not None:
            gpd.GeoSeries([market], crs=layer.crs).boundary.plot(ax=ax, color="black", lw=1.2)
        anchor = market if market is not None else shapely.union_all(block.geometry.to_numpy())
        x0, y0, x1, y1 = anchor.bounds
        ax.annotate(
            (labels or {}).get(site_id, site_id),
            ((x0 + x1) / 2, y1),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": color, "lw": 0.8},
        )
    _frame(ax)
    _scale_bar(ax, layer.unit_m)
    ax.set_title("Sites: treated areas (filled), catchments (light), markets (outlined)")
    return fig, ax
