"""Read the study's inputs, validate them and aggregate them into a :class:`Panel`.

Every input row is accounted for: it is either counted into exactly one
``area x period x outcome`` cell or written to the reject log with a reason.
``rows_read == rows_counted + rows_rejected`` is checked on every run, not assumed.

Reject reasons (:data:`dmi_eval.reject_reasons.REJECT_REASONS`) come in two kinds. *Quality* rejects
(unparseable date, unknown area, missing value, duplicate id, bad period,
duplicate cell) point at a broken extract: when their share exceeds
``[data].max_reject_share`` (default 5%) the run stops with
:class:`RejectThresholdError`. *Scope* rejects (a date outside the study range,
an offense the map leaves out) are expected in a real extract; they are logged
and reported but do not count toward the threshold.

Incidents may come as a police extract: the department's own column names
(``[data.columns]``), any delimiter, dates per ``[data].date_format`` /
``[data].timezone`` (see :mod:`dmi_eval.extract`), and x/y coordinates instead
of an area id — then :mod:`dmi_eval.geo` places each point in its area and
``bad_coordinates`` (quality) and ``outside_areas`` (scope) rejects are added.

Privacy: the reject log holds the file name, the row number, the reason, the
field and, for area / offense / outcome / period fields only, the offending
value. Incident ids, dates, addresses and any other column never leave this
module.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dmi_eval.config import ColumnMap, CountsLayout, Study
from dmi_eval.errors import DataError, NoUsableRowsError
from dmi_eval.extract import (
    CellTally,
    Rejects,
    RowStream,
    check_conservation,
    header,
    parse_dates,
    seen_in,
)
from dmi_eval.offenses import load_offense_map, normalise_code
from dmi_eval.panel import PANDAS_FREQ, Panel, range_periods, whole_period_dates
from dmi_eval.point_tally import PointTally
from dmi_eval.reject_reasons import (
    QUALITY_REASONS,
    check_date_order,
    check_reject_share,
    describe_reason,
    example_date,
    swap_hint,
)

if TYPE_CHECKING:  # geopandas, shapely and pyproj load only when points are placed
    from dmi_eval.geo import PointLocator

INCIDENT_COLUMNS: tuple[str, ...] = ("incident_id", "date", "offense", "area_id")
COUNT_COLUMNS: tuple[str, ...] = ("area_id", "period", "outcome", "count")

DATE_SAMPLE = 1000
"""Rejected date texts kept in memory to name an example and test a day/month swap."""


@dataclass(frozen=True)
class Ingest:
    """The outcome of reading a study's data.

    Attributes
    ----------
    panel
        Zero-filled counts over the observed (or configured) range.
    rejects
        One row per unused input row: ``file, row, reason, field, value``.
    file
        Name (not path) of the data file read.
    rows_read, rows_counted
        Input rows read and counted into the panel. For ``counts.csv`` a row is
        one cell; the panel total equals the sum of the counted rows' ``count``.
    """

    panel: Panel
    rejects: pd.DataFrame
    file: str
    rows_read: int
    rows_counted: int
    date_format: str | None = None
    bad_date_sample: tuple[str, ...] = field(default=(), repr=False)
    """Some rejected date texts, for the error messages only (never written anywhere)."""
    dates: tuple[dt.date, dt.date] | None = None
    """First and last date of the counted incidents (``None`` for a counts file)."""

    @property
    def rows_rejected(self) -> int:
        return len(self.rejects)

    def reject_summary(self) -> pd.DataFrame:
        """Rejected rows per reason, with the reason in words and its kind."""
        counts = self.rejects["reason"].value_counts()
        return pd.DataFrame(
            {
                "reason": list(counts.index),
                "description": [describe_reason(r, self.date_format) for r in counts.index],
                "kind": ["quality" if r in QUALITY_REASONS else "scope" for r in counts.index],
                "rows": counts.to_numpy(dtype="int64"),
            }
        )


def load_study_data(study: Study) -> Ingest:
    """Read ``study``'s incidents or counts (and areas) into an :class:`Ingest`.

    Raises
    ------
    DataError
        A file is missing, empty or lacks a required column; counts are negative
        or not integers; the areas file is malformed.
    RejectThresholdError
        More than ``[data].max_reject_share`` of the rows were rejected for
        data-quality reasons.
    """
    covariates = read_areas(study.data.areas) if study.data.areas else None
    known = None if covariates is None else frozenset(covariates.index)
    locator = None
    if study.geo is not None:
        from dmi_eval.geo import PointLocator, check_covariate_ids, load_areas

        layer = load_areas(study.geo, study_file=study.path, data=study.data)
        if covariates is not None and study.data.areas is not None:
            check_covariate_ids(covariates.index, layer, study.data.areas.name)
        known = frozenset(layer.ids)
        if study.data.columns.geocoded:
            assert study.geo.crs is not None
            locator = PointLocator(layer, study.geo.crs)
    if study.data.incidents is not None:
        ingest = read_incidents(
            study.data.incidents,
            frequency=study.frequency,
            offense_map=load_offense_map(study.data.offense_map),
            known_areas=known,
            start=study.start,
            end=study.end,
            covariates=covariates,
            columns=study.data.columns,
            date_format=study.data.date_format,
            timezone=study.data.timezone,
            delimiter=study.data.delimiter,
            locator=locator,
        )
    else:
        assert study.data.counts is not None
        ingest = read_counts(
            study.data.counts,
            frequency=study.frequency,
            layout=study.data.layout,
            known_areas=known,
            delimiter=study.data.delimiter,
            start=study.start,
            end=study.end,
            covariates=covariates,
        )
    check_date_order(ingest)
    check_reject_share(ingest, study.data.max_reject_share)
    return ingest


# --- readers -----------------------------------------------------------------


def read_incidents(
    path: Path,
    *,
    frequency: str,
    offense_map: dict[str, str],
    known_areas: frozenset[str] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    covariates: pd.DataFrame | None = None,
    columns: ColumnMap | None = None,
    date_format: str | None = None,
    timezone: str | None = None,
    delimiter: str | None = None,
    locator: PointLocator | None = None,
) -> Ingest:
    """Read an incidents file (one row per incident) into a Panel.

    Rows are streamed in chunks; only the required columns are read, so other
    columns (addresses, narratives) never enter memory. Duplicate
    ``incident_id`` values are detected with 64-bit hashes; the first
    occurrence is counted, later ones are rejected.

    Parameters
    ----------
    columns
        The file's own names for ``incident_id, date, offense`` and either
        ``area_id`` or ``x, y`` (default: those names, with ``area_id``).
    date_format, timezone
        See :func:`dmi_eval.extract.parse_dates`.
    delimiter
        ``None``: detected from the header (``,``, ``;``, ``|`` or tab).
    locator
        Required with coordinates: places each point in an area.

    Raises
    ------
    DataError
        Missing file or column, an empty or header-only file.
    GeoError
        Most points with usable coordinates fall in no area (x/y swapped, wrong CRS).
    NoUsableRowsError
        Every row was rejected (the error carries the reject log).
    """
    path = Path(path)
    columns = columns or ColumnMap()
    fields = {"incident_id": columns.incident_id, "date": columns.date, "offense": columns.offense}
    if columns.geocoded:
        if locator is None:
            raise ValueError("incidents with x/y coordinates need a PointLocator")
        fields.update(x=columns.x, y=columns.y)  # type: ignore[arg-type]
        known_areas = frozenset(locator.layer.ids)
    else:
        fields["area_id"] = columns.area_id or "area_id"
    sep = header(path, fields, delimiter=delimiter)
    freq = PANDAS_FREQ[frequency]
    rejects = Rejects(path.name)
    seen_ids = np.empty(0, dtype=np.uint64)  # sorted hashes of the ids counted so far
    cells = CellTally()
    bad_dates: list[str] = []
    d_start = None if start is None else pd.Timestamp(start)
    d_end = None if end is None else pd.Timestamp(end + dt.timedelta(days=1))
    # a week (month, quarter) that [study].start or end cuts would look quieter than it was
    whole_start, whole_end = whole_period_dates(frequency, start, end)
    w_start = None if whole_start is None else pd.Timestamp(whole_start)
    w_end = None if whole_end is None else pd.Timestamp(whole_end + dt.timedelta(days=1))
    geo = PointTally()
    first_date = last_date = None
    known_list = None if known_areas is None else list(known_areas)
    nonempty = ("incident_id", "date", "offense") if columns.geocoded else None
    stream = RowStream(path, fields, rejects, delimiter=sep, nonempty=nonempty)
    for chunk, chunk_filter in stream:
        n = len(chunk)
        reject = chunk_filter.reject
        keep = chunk_filter.keep  # the same array, narrowed in place by reject()
        dates = parse_dates(chunk["date"], date_format=date_format, timezone=timezone)
        bad = dates.isna().to_numpy()
        room = DATE_SAMPLE - len(bad_dates)
        if room > 0:
            bad_dates += chunk["date"].to_numpy()[bad & keep][:room].tolist()
        reject(bad, "bad_date", fields["date"])
        if locator is not None:
            area = geo.locate(chunk, chunk_filter, locator, fields)
        else:
            area = chunk["area_id"].str.strip().to_numpy(dtype=object)
            if known_list is not None:
                unknown = ~pd.Index(area).isin(known_list)
                reject(unknown, "unknown_area", fields["area_id"], area)
        in_range = np.ones(n, dtype=bool)
        if d_start is not None:
            in_range &= (dates >= d_start).fillna(False).to_numpy()
        if d_end is not None:
            in_range &= (dates < d_end).fillna(False).to_numpy()
        reject(~in_range, "outside_range", fields["date"])
        partial = np.zeros(n, dtype=bool)
        if w_start is not None:
            partial |= (dates < w_start).fillna(False).to_numpy()
        if w_end is not None:
            partial |= (dates >= w_end).fillna(False).to_numpy()
        reject(partial, "partial_period", fields["date"])
        codes = normalise_code(chunk["offense"])
        outcome = codes.map(offense_map).to_numpy(dtype=object)
        reject(
            pd.isna(outcome), "unmapped_offense", fields["offense"], codes.to_numpy(dtype=object)
        )
        # Last check: an id counts as seen only once its row is counted.
        ids = pd.util.hash_array(chunk["incident_id"].str.strip().to_numpy(dtype=object))
        dup_within = pd.Series(np.where(keep, ids, 0)).duplicated().to_numpy() & keep
        reject(dup_within | seen_in(seen_ids, ids), "duplicate_id", fields["incident_id"])
        # Sorted run + new hashes: a stable (merge) sort keeps this linear in the ids seen.
        seen_ids = np.sort(np.concatenate([seen_ids, ids[keep]]), kind="stable")

        if keep.any():
            kept = dates[keep]
            low, high = kept.min(), kept.max()
            first_date = low if first_date is None else min(first_date, low)
            last_date = high if last_date is None else max(last_date, high)
        ordinals = dates[keep].dt.to_period(freq).array.asi8
        cells.add(area[keep], ordinals, outcome[keep])

    rejected = rejects.frame()
    counted = cells.total
    rows_read = stream.rows_read
    check_conservation(path.name, rows_read, counted, len(rejected))
    if locator is not None:
        geo.check(path.name, locator, fields)
    if not cells:
        _no_usable_rows(
            path.name, rejected, rows_read, date_format, tuple(bad_dates), geo.hint(fields)
        )
    panel = _build_panel(
        cells, frequency, known_areas, whole_start, whole_end, covariates, path.name
    )
    return Ingest(
        panel=panel,
        rejects=rejected,
        file=path.name,
        rows_read=rows_read,
        rows_counted=counted,
        date_format=date_format,
        bad_date_sample=tuple(bad_dates),
        dates=None if first_date is None else (first_date.date(), last_date.date()),
    )


EDGE_SHARE = 0.7
""":func:`edge_period_note` flags an edge period with less than this share of its neighbours'."""


def edge_period_note(ingest: Ingest, start: dt.date | None, end: dt.date | None) -> str | None:
    """A note when the panel's first or last period looks cut short by the extract's dates.

    Without ``[study].start`` / ``end`` the panel runs from the first to the
    last incident's period, so an extract that began or ended inside a week
    (month, quarter) counts that period from a few days, and it looks quieter
    than it was (inside the post period and the persistence window, like a
    drop). Flagged where the data's first (last) date is not its period's first
    (last) day and the period holds less than :data:`EDGE_SHARE` of the median
    of the four periods next to it; ``[study].start`` and ``end`` fix it
    (rows of the periods they cut are then ``partial_period`` rejects).
    """
    if ingest.dates is None or len(ingest.panel.periods) < 5:
        return None
    periods = ingest.panel.periods
    totals = np.sum([np.asarray(c).sum(axis=0) for c in ingest.panel.counts.values()], axis=0)
    edges = []
    for which, given, i, near in (
        ("first", start, 0, slice(1, 5)),
        ("last", end, -1, slice(-5, -1)),
    ):
        period, date = periods[i], ingest.dates[i]
        inside = date > period.start_time.date() if i == 0 else date < period.end_time.date()
        typical = float(np.median(totals[near]))
        if given is None and inside and totals[i] < EDGE_SHARE * typical:
            edges.append((which, period, date, totals[i], typical))
    if not edges:
        return None
    said = "; ".join(
        f"its {which} period ({p.start_time.date()} to {p.end_time.date()}) holds {n:,.0f} "
        f"incidents against about {m:,.0f} in the periods next to it, and the data "
        f"{'begin' if which == 'first' else 'end'} on {date}"
        for which, p, date, n, m in edges
    )
    return (
        f"the panel may start or end with a partial period: {said}. If the extract began or "
        "ended there, set [study].start and end to its first and last days: the periods they "
        "cut are then left out (partial_period) instead of looking like a drop."
    )


def _no_usable_rows(
    file: str,
    rejected: pd.DataFrame,
    rows_read: int,
    date_format,
    bad_dates: tuple[str, ...] = (),
    hint: str = "",
) -> None:
    if rows_read == 0:
        raise DataError(f"{file}: the file has a header but no data rows; export it again")
    top = rejected["reason"].value_counts().head(3)
    reasons = "; ".join(
        f"{n:,} {r} ({describe_reason(r, date_format)}{example_date(bad_dates, r)})"
        for r, n in top.items()
    )
    n_bad = int((rejected["reason"] == "bad_date").sum())
    reasons += swap_hint(bad_dates, n_bad, date_format) + hint
    raise NoUsableRowsError(
        f"{file}: no usable rows: all {rows_read:,} rows were rejected — {reasons}. "
        "The reject log (results/rejects.csv, written by `dmi-eval evaluate`) lists every row "
        "and its reason; fix the most common reason first "
        "(for bad_date: [data].date_format; for bad_period: labels at [study].frequency, or "
        "[data].first_period for periods numbered 1, 2, ...; for missing columns: "
        "[data.columns])",
        rejected,
    )


def read_counts(
    path: Path,
    *,
    frequency: str,
    layout: CountsLayout | None = None,
    known_areas: frozenset[str] | None = None,
    delimiter: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    covariates: pd.DataFrame | None = None,
) -> Ingest:
    """Read an already-aggregated counts file into a Panel.

    The default *long* layout is ``area_id, period, outcome, count``: one row per
    cell. The *wide* layout has one row per area and period and one column per
    outcome (as in R's microsynth data); its covariate columns, if named, become
    the area covariates (taken from each area's first row). ``period`` is any
    string pandas reads as a period at the study frequency (``2019-06``,
    ``2019Q2``, a date inside the week), or, with ``first_period``, an integer
    1, 2, ... counted from that period. Counts must be non-negative integers:
    anything else is an error naming the row, because a wrong count cannot be
    rejected without biasing the totals. In the wide layout a row is one input
    record (all its outcomes are counted or rejected together).
    """
    path = Path(path)
    layout = layout or CountsLayout()
    wide = layout.layout == "wide"
    value_columns = layout.outcome_columns if wide else ("count",)
    key_columns = (layout.area_column, layout.period_column)
    required = (
        *key_columns,
        *(value_columns if wide else ("outcome", "count")),
        *layout.covariate_columns,
    )
    sep = header(path, {c: c for c in required}, delimiter=delimiter, mapping_key=None)
    freq = PANDAS_FREQ[frequency]
    first = None if layout.first_period is None else pd.Period(layout.first_period, freq=freq)
    rejects = Rejects(path.name)
    cells = CellTally()
    seen: set[tuple] = set()
    cov_rows: list[pd.DataFrame] = []
    rows_counted = 0
    p_start, p_end = range_periods(frequency, start, end)
    stream = RowStream(path, {c: c for c in required}, rejects, delimiter=sep)
    for chunk, chunk_filter in stream:
        n = len(chunk)
        rows = chunk_filter.rows
        reject = chunk_filter.reject
        keep = chunk_filter.keep  # the same array, narrowed in place by reject()
        values = {}
        for col in value_columns:
            raw = chunk[col].str.strip()
            numeric = pd.to_numeric(raw, errors="coerce")
            bad = keep & (numeric.isna() | (numeric < 0) | (numeric % 1 != 0)).to_numpy()
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{path.name}: row {rows[i]}, column {col!r}: count {raw.iloc[i]!r} is not a "
                    "non-negative integer; counts need whole numbers of incidents"
                )
            values[col] = numeric.fillna(0).to_numpy(dtype=np.int64)
        area = chunk[layout.area_column].str.strip().to_numpy(dtype=object)
        if known_areas is not None:
            reject(~pd.Index(area).isin(list(known_areas)), "unknown_area", "area_id", area)
        raw_period = chunk[layout.period_column].str.strip()
        periods = _parse_periods(raw_period, freq, first)
        shown_period = raw_period.to_numpy(dtype=object)
        reject(periods.isna().to_numpy(), "bad_period", "period", shown_period)
        ordinal = np.array([-1 if pd.isna(p) else p.ordinal for p in periods], dtype=np.int64)
        if p_start is not None:
            reject(
                (ordinal < p_start.ordinal) & (ordinal >= 0),
                "outside_range",
                "period",
                shown_period,
            )
        if p_end is not None:
            reject(ordinal > p_end.ordinal, "outside_range", "period", shown_period)
        outcome = None if wide else chunk["outcome"].str.strip().to_numpy(dtype=object)
        keys = (
            list(zip(area, ordinal, strict=True))
            if wide
            else list(zip(area, ordinal, outcome, strict=True))
        )
        dup = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(keep):
            if keys[i] in seen:
                dup[i] = True
            else:
                seen.add(keys[i])
        reject(dup, "duplicate_cell", "area_id,period" if wide else "area_id,period,outcome")
        idx = np.flatnonzero(keep)
        if wide:
            for col in value_columns:
                label = np.full(len(idx), col, dtype=object)
                cells.add(area[idx], ordinal[idx], label, values[col][idx])
            if layout.covariate_columns:
                cov = chunk.iloc[idx][[layout.area_column, *layout.covariate_columns]].copy()
                cov["_ordinal"] = ordinal[idx]
                cov_rows.append(cov)
        else:
            assert outcome is not None
            cells.add(area[idx], ordinal[idx], outcome[idx], values["count"][idx])
        rows_counted += len(idx)

    rejected = rejects.frame()
    rows_read = stream.rows_read
    check_conservation(path.name, rows_read, rows_counted, len(rejected))
    if not cells:
        _no_usable_rows(path.name, rejected, rows_read, None)
    if layout.covariate_columns:
        covariates = _first_period_covariates(path.name, cov_rows, layout)
        if known_areas is None:
            known_areas = frozenset(covariates.index)
    panel = _build_panel(cells, frequency, known_areas, start, end, covariates, path.name)
    return Ingest(
        panel=panel,
        rejects=rejected,
        file=path.name,
        rows_read=rows_read,
        rows_counted=rows_counted,
    )


def _parse_periods(raw: pd.Series, freq: str, first: pd.Period | None) -> pd.Series:
    """Period strings, or integers 1, 2, ... counted from ``first``; unreadable -> NaN."""
    if first is not None:
        k = pd.to_numeric(raw, errors="coerce")
        ok = k.notna() & (k >= 1) & (k % 1 == 0)
        return pd.Series(
            [first + int(v) - 1 if good else np.nan for v, good in zip(k, ok, strict=True)],
            index=raw.index,
            dtype=object,
        )
    cache: dict[str, pd.Period | float] = {}
    for value in raw.unique():
        try:
            period = pd.Period(value, freq=freq)
        except (ValueError, TypeError):
            period = np.nan
        # "2019Q2" in a monthly study would be read as April alone, "2019-06" in a weekly one
        # as the week of 1 June: a label coarser than the study's periods cannot be placed
        cache[value] = np.nan if _coarser_label(value, period) else period
    return raw.map(cache).astype(object)


def _coarser_label(value: str, period: pd.Period | float) -> bool:
    """Whether ``value`` names a longer span than the study period it was read as."""
    if not isinstance(period, pd.Period):
        return False
    try:
        natural = pd.Period(value)
    except (ValueError, TypeError):
        return False
    return natural.end_time - natural.start_time > period.end_time - period.start_time


def _first_period_covariates(
    file: str, parts: list[pd.DataFrame], layout: CountsLayout
) -> pd.DataFrame:
    """Area covariates from a wide counts file: each area's row in its first period."""
    frame = pd.concat(parts, ignore_index=True).sort_values("_ordinal", kind="stable")
    frame = frame.drop_duplicates(layout.area_column).drop(columns="_ordinal")
    frame = frame.rename(columns={layout.area_column: "area_id"}).set_index("area_id")
    for col in layout.covariate_columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any():
            area = frame.index[values.isna().to_numpy()][0]
            raise DataError(f"{file}: covariate column {col!r} is not numeric for area {area}")
        frame[col] = values.astype("float64")
    return frame.sort_index()


def _build_panel(
    cells: CellTally,
    frequency: str,
    known_areas: frozenset[str] | None,
    start: dt.date | None,
    end: dt.date | None,
    covariates: pd.DataFrame | None,
    file: str,
) -> Panel:
    if not cells:
        raise DataError(f"{file}: no usable rows; every row was rejected (see rejects.csv)")
    frame = cells.frame()
    freq = PANDAS_FREQ[frequency]
    ordinal = frame["period"].to_numpy(dtype=np.int64)
    p_start, p_end = range_periods(frequency, start, end)
    first = p_start if p_start is not None else pd.Period(ordinal=int(ordinal.min()), freq=freq)
    last = p_end if p_end is not None else pd.Period(ordinal=int(ordinal.max()), freq=freq)
    periods = pd.period_range(first, last, freq=freq)
    area_ids = set(known_areas) if known_areas is not None else set(frame["area"].unique())
    areas = pd.Index(sorted(area_ids), dtype=object, name="area_id")
    outcomes = sorted(set(frame["outcome"].unique()))
    a_idx = areas.get_indexer(frame["area"].to_numpy(dtype=object))
    p_idx = ordinal - periods[0].ordinal
    if (a_idx < 0).any() or (p_idx < 0).any() or (p_idx >= len(periods)).any():
        raise AssertionError(
            f"{file}: a counted cell lies outside the panel's areas or periods; "
            "this is a bug in dmi_eval, please report it"
        )
    n = frame["n"].to_numpy(dtype=np.int64)
    kind = frame["outcome"].to_numpy(dtype=object)
    counts = {}
    for o in outcomes:
        sel = kind == o
        counts[o] = np.zeros((len(areas), len(periods)), dtype=np.int64)
        np.add.at(counts[o], (a_idx[sel], p_idx[sel]), n[sel])
    return Panel(
        frequency=frequency, periods=periods, areas=areas, counts=counts, covariates=covariates
    )


def read_areas(path: Path) -> pd.DataFrame:
    """Read ``areas.csv``: ``area_id`` plus numeric covariates, indexed by ``area_id``."""
    path = Path(path)
    sep = header(path, {"area_id": "area_id"}, mapping_key=None)
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            dtype={"area_id": str},
            keep_default_na=True,
            encoding="utf-8",
            encoding_errors="replace",
        )
    except pd.errors.ParserError as exc:
        raise DataError(f"{path.name}: malformed CSV ({exc}); fix that row and re-run") from None
    if frame.empty:
        raise DataError(f"{path.name}: no area rows; list one row per area after the header")
    frame.columns = [str(c).strip() for c in frame.columns]
    ids = frame["area_id"].fillna("").astype(str).str.strip()
    for bad, problem in (
        (ids.eq(""), "area_id is empty; every row needs the id of its area"),
        (ids.duplicated(), "area_id {id!r} appears twice; each area needs one row"),
    ):
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path.name}: row {i + 1}: " + problem.format(id=ids.iloc[i]))
    frame["area_id"] = ids
    frame = frame.set_index("area_id")
    for col in frame.columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna()
        if bad.any():
            area = frame.index[bad.to_numpy()][0]
            raw = frame[col].to_numpy()[bad.to_numpy()][0]
            shown = "is empty" if pd.isna(raw) else f"{str(raw)!r} is not a number"
            raise DataError(
                f"{path.name}: column {col!r}, area {area}: {shown}; covariates must be "
                "numeric and complete (drop the column or fill it)"
            )
        frame[col] = values.astype("float64")
    return frame.sort_index()
