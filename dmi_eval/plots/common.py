"""Shared figure helpers: a fixed style and deterministic PNG output."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "dmi_eval",
}


def new_axes(
    ax: Axes | None = None, *, size: tuple[float, float] = (7.0, 3.6)
) -> tuple[Figure, Axes]:
    """Return ``(fig, ax)``: the given axes' figure, or a new figure."""
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=size, layout="constrained")
    return fig, ax


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as a PNG with no timestamp or software metadata, then close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(STYLE):
        fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
