r"""The donor pool of a site in a large city: the comparison areas most like its market.

A city of thousands of areas gives every design thousands of comparison
(donor) areas, and the synthetic controls refit against all of them for each
of their placebo areas. Restricting the pool to units similar to the treated
one is what Abadie (2021, *J. Econ. Lit.* 59(2), section 6) recommends: it
limits interpolation bias and over-fitting, and it bounds the cost of a site.
:func:`restrict_donors` keeps the ``max_donors`` donor areas whose pre-period
level and trend of the primary outcome are nearest to the market's (per
treated area), among the areas with at least :data:`MIN_PRE_COUNT` pre-period
incidents (those that can serve as placebo areas; when there are fewer, all of
them and the nearest of the others); every design of the site, its catchment
fit and its placebos then use that pool. A pool of at most ``max_donors`` areas is kept whole, so
a smaller city's results do not depend on the rule.

Notes
-----
For an area's pre-period counts :math:`y_1..y_T` (the market's: its total
over its :math:`n` treated areas, divided by :math:`n`) with :math:`m_1` and
:math:`m_2` the means of the first and second half of the pre period (the
middle period of an odd count in neither), the features are the level
:math:`\log(1 + \bar y)` and the trend :math:`\log((m_2 + 0.5) / (m_1 + 0.5))`.
Each is divided by its robust spread over the pool (1.4826 times the median
absolute deviation; the standard deviation when that is 0; 1 when both are);
the distance is Euclidean and ties go to the donor listed first.
"""

from __future__ import annotations

import numpy as np

from dmi_eval.panel import SiteData

MIN_PRE_COUNT = 12.0
"""Pre-period incidents (primary outcome) an area needs to come first into a restricted pool.

The synthetic controls' placebo areas need as many
(:class:`~dmi_eval.designs.synth.SyntheticControl` ``min_placebo_pre_count``); a quieter
area can be neither a placebo nor, under ratio scaling, a weighted donor."""


def level_trend(Y: np.ndarray) -> np.ndarray:
    """``(n, 2)`` features (level, trend) of the rows of ``Y`` (series over pre periods)."""
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    half = Y.shape[1] // 2
    first = Y[:, :half].mean(axis=1) if half else Y.mean(axis=1)
    second = Y[:, Y.shape[1] - half :].mean(axis=1) if half else Y.mean(axis=1)
    level = np.log1p(np.maximum(Y.mean(axis=1), 0.0))
    trend = np.log((np.maximum(second, 0.0) + 0.5) / (np.maximum(first, 0.0) + 0.5))
    return np.column_stack([level, trend])


def feature_scale(features: np.ndarray) -> np.ndarray:
    """Robust spread of each feature over the pool (MAD, else SD, else 1)."""
    mad = 1.4826 * np.median(np.abs(features - np.median(features, axis=0)), axis=0)
    sd = features.std(axis=0)
    return np.where(mad > 0, mad, np.where(sd > 0, sd, 1.0))


def nearest_donors(target: np.ndarray, pool: np.ndarray, n: int) -> np.ndarray:
    """Indices (ascending) of the ``n`` rows of ``pool`` nearest to ``target``.

    ``target`` is a ``(2,)`` and ``pool`` an ``(m, 2)`` array of
    :func:`level_trend` features; all ``m`` rows when ``m <= n``.
    """
    if n < 1:
        raise ValueError(f"the donor cap must be at least 1, got {n}")
    m = pool.shape[0]
    if m <= n:
        return np.arange(m)
    dist = np.sqrt((((pool - target) / feature_scale(pool)) ** 2).sum(axis=1))
    return np.sort(np.argsort(dist, kind="stable")[:n])


def restrict_donors(
    data: SiteData, max_donors: int | None, *, label: str | None = None
) -> tuple[SiteData, str | None]:
    """The site with at most ``max_donors`` donor areas, and a note saying so.

    ``label``: the primary outcome in words for the note (default: its id).

    Returns ``data`` itself and ``None`` when the pool is no larger (or
    ``max_donors`` is None); otherwise a view of the site whose donor areas are
    the ``max_donors`` nearest to the market (:func:`nearest_donors`, on the
    primary outcome's pre period) among those with at least :data:`MIN_PRE_COUNT`
    pre-period incidents (all of those and the nearest others when they are
    fewer), in their original order, and a sentence for the site's notes.
    """
    donors = data.donor_areas
    if max_donors is None or len(donors) <= max_donors:
        return data, None
    outcome = data.primary_outcome
    pre = data.pre_mask
    market = data.treated_series(outcome).to_numpy(dtype=float)[pre] / len(data.treated_areas)
    counts = data.donor_matrix(outcome).to_numpy(dtype=float)[:, pre]
    pool = level_trend(counts)
    target = level_trend(market)[0]
    busy = np.flatnonzero(counts.sum(axis=1) >= MIN_PRE_COUNT)
    if busy.size >= max_donors:
        keep = busy[nearest_donors(target, pool[busy], max_donors)]
    else:  # every area that can be a placebo, then the nearest of the others
        quiet = np.setdiff1d(np.arange(len(donors)), busy)
        extra = quiet[nearest_donors(target, pool[quiet], max_donors - busy.size)]
        keep = np.sort(np.r_[busy, extra])
    view = SiteData(
        panel=data.panel,
        site=data.site,
        donor_areas=tuple(donors[i] for i in keep),
        transition=data.transition,
    )
    note = (
        f"donor pool: the {max_donors:,} of {len(donors):,} comparison areas nearest to the "
        f"market in pre-period level and trend of {label or outcome}, areas with at least "
        f"{MIN_PRE_COUNT:g} pre-period incidents first (a large city's pool is restricted "
        "to areas like the market; every design uses this pool)"
    )
    return view, note
