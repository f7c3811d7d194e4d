"""Read ``study.toml`` into validated, frozen :class:`Study` and :class:`Site` objects.

Every problem raises :class:`~dmi_eval.errors.ConfigError` naming the file, the
key (and the site) and what is allowed. Unknown keys are errors, so that a typo
never passes silently. Paths in the file are relative to the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import tomllib
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from dmi_eval.errors import ConfigError
from dmi_eval.options import scheduler_problem
from dmi_eval.study_spec import (
    _DURATION as _DURATION,
)
from dmi_eval.study_spec import (
    DAYS_PER as DAYS_PER,
)
from dmi_eval.study_spec import (
    DELIMITERS as DELIMITERS,
)
from dmi_eval.study_spec import (
    FREQUENCIES as FREQUENCIES,
)
from dmi_eval.study_spec import (
    PANDAS_FREQ_OF as PANDAS_FREQ_OF,
)
from dmi_eval.study_spec import (
    SITE_ID_PATTERN as SITE_ID_PATTERN,
)
from dmi_eval.study_spec import (
    TRANSITIONS as TRANSITIONS,
)
from dmi_eval.study_spec import (  # re-exported: callers import these from config
    ColumnMap as ColumnMap,
)
from dmi_eval.study_spec import (
    Compute as Compute,
)
from dmi_eval.study_spec import (
    CountsLayout as CountsLayout,
)
from dmi_eval.study_spec import (
    DataSpec as DataSpec,
)
from dmi_eval.study_spec import (
    Frequency as Frequency,
)
from dmi_eval.study_spec import (
    GeoSpec as GeoSpec,
)
from dmi_eval.study_spec import (
    ReportOptions as ReportOptions,
)
from dmi_eval.study_spec import (
    Site as Site,
)
from dmi_eval.study_spec import (
    Study as Study,
)
from dmi_eval.study_spec import (
    Transition as Transition,
)
from dmi_eval.study_spec import (
    VerdictRules as VerdictRules,
)
from dmi_eval.study_spec import (
    duration_text as duration_text,
)
from dmi_eval.study_spec import (
    parse_duration as parse_duration,
)

_STUDY_KEYS = {"name", "frequency", "transition", "seed", "start", "end"}
_LAYOUT_KEYS = {
    "layout",
    "area_column",
    "period_column",
    "first_period",
    "outcome_columns",
    "covariate_columns",
}
_EXTRACT_KEYS = {"date_format", "timezone", "delimiter", "columns"}
_DATA_KEYS = {
    "incidents",
    "counts",
    "areas",
    "offense_map",
    "max_reject_share",
    *_LAYOUT_KEYS,
    *_EXTRACT_KEYS,
}
_COLUMN_KEYS = {"incident_id", "date", "offense", "area_id", "x", "y"}
_GEO_KEYS = {"crs", "areas", "area_id_field", "grid_m", "boundary"}
_SITE_KEYS = set(
    "id name intervention treated_areas catchment_areas donor_areas outcomes primary_outcome "
    "market catchment_buffer_m donor_buffer_m".split()
)
_TOP_KEYS = {"study", "data", "sites", "verdict", "report", "geo", "compute"}
_COMPUTE_KEYS = {"scheduler", "jobs"}


def _spelled(key: str, value: Any) -> str:
    """How a key is written in TOML: ``[[sites]]`` for a list of tables, ``[verdict]`` ..."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return f"[[{key}]]"
    if isinstance(value, dict):
        return f"[{key}]"
    return repr(key)


class _Reader:
    """Typed access to one TOML table with errors that name file and key."""

    def __init__(self, file: Path, table: dict[str, Any], where: str, allowed: set[str]):
        self.file = file
        self.table = table
        self.where = where
        unknown = sorted(set(table) - allowed)
        if unknown:
            # keys are lower case: "ID" is "id" mistyped, whatever difflib makes of the case
            same = [k for k in sorted(allowed) if k.casefold() == unknown[0].casefold()]
            close = same or difflib.get_close_matches(unknown[0], sorted(allowed), n=1, cutoff=0.75)
            hint = f"did you mean {_spelled(close[0], table[unknown[0]])}? " if close else ""
            raise self.error(
                unknown[0], f"unknown key; {hint}allowed keys are: {', '.join(sorted(allowed))}"
            )

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.where}.{key}: {message}")

    def has(self, key: str) -> bool:
        return key in self.table

    def str(
        self, key: str, default: str | None = None, *, required: bool = False, hint: str = ""
    ) -> str | None:
        """The key's string; ``hint`` (``{value}``: what was given) follows the error."""
        if key not in self.table:
            if required:
                raise self.error(key, "is required (a string)")
            return default
        value = self.table[key]
        if not isinstance(value, str) or not value.strip():
            more = f"; {hint.format(value=value)}" if hint else ""
            raise self.error(key, f"must be a non-empty string, got {value!r}{more}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.str(key, default)
        if value not in allowed:
            raise self.error(key, f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be a number, got {value!r}")
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return float(value)

    def optional_number(self, key: str, *, low: float, high: float) -> float | None:
        return self.number(key, 0.0, low=low, high=high) if key in self.table else None

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return value

    def date(self, key: str, *, required: bool = False) -> dt.date | None:
        if key not in self.table:
            if required:
                raise self.error(key, "is required (an ISO date such as 2019-06-15)")
            return None
        value = self.table[key]
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise self.error(key, f"must be an ISO date such as 2019-06-15, got {value!r}")

    def str_list(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        if key not in self.table:
            if required:
                raise self.error(key, "is required (a list of strings)")
            return ()
        value = self.table[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, f"must be a list of non-empty strings, got {value!r}")
        duplicates = sorted({v for v in value if value.count(v) > 1})
        if duplicates:
            raise self.error(key, f"lists {', '.join(duplicates)} more than once")
        return tuple(value)

    def path(self, key: str) -> Path | None:
        value = self.str(key)
        return None if value is None else (self.file.parent / value).resolve()


SiteResolver = Callable[[Path, GeoSpec, tuple[Site, ...], DataSpec], tuple[Site, ...]]
"""``(study file, [geo], sites, [data]) -> sites`` with the areas of market polygons filled in."""


def load_study(path: str | Path, *, resolve_sites: SiteResolver | None = None) -> Study:
    """Read and validate a ``study.toml``.

    Parameters
    ----------
    path
        The study file. Data paths inside it are relative to its folder.
    resolve_sites
        What fills in the areas of sites drawn as market polygons (default
        :func:`dmi_eval.geo.resolve_sites`, which reads the polygons;
        :func:`dmi_eval.datacache.load_study_cached` passes a cached one).

    Returns
    -------
    Study
        A frozen, validated study.

    Raises
    ------
    ConfigError
        When the file is missing, is not valid TOML, or any key is missing,
        unknown, of the wrong type or inconsistent. The message names the key.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: study file not found; pass the path to a study.toml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the study file ({exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_study(raw, file=file.resolve(), text=text, resolve_sites=resolve_sites)


def parse_study(
    raw: dict[str, Any],
    *,
    file: Path,
    text: str = "",
    resolve_sites: SiteResolver | None = None,
) -> Study:
    """Validate an already-parsed study mapping (see :func:`load_study`)."""
    top = _Reader(file, raw, "study.toml", _TOP_KEYS)
    for section in ("study", "data", "sites"):
        if section not in raw:
            raise top.error(section, "section is required")

    if not isinstance(raw["study"], dict):
        raise top.error("study", "must be a table: [study]")
    s = _Reader(file, raw["study"], "[study]", _STUDY_KEYS)
    name = s.str("name", required=True)
    frequency = s.choice("frequency", FREQUENCIES, "month")
    transition = s.choice("transition", TRANSITIONS, "exclude")
    seed = s.integer("seed", 20070501, low=0, high=2**32 - 1)
    start, end = s.date("start"), s.date("end")
    if start and end and start >= end:
        raise s.error("end", f"must be after start ({start}), got {end}")

    if not isinstance(raw["data"], dict):
        raise top.error("data", "must be a table: [data]")
    d = _Reader(file, raw["data"], "[data]", _DATA_KEYS)
    if d.has("incidents") == d.has("counts"):
        raise d.error("incidents", "give exactly one of 'incidents' (raw rows) or 'counts'")
    offense_map: str | Path = d.str("offense_map", "nibrs")
    if offense_map != "nibrs":
        offense_map = (file.parent / offense_map).resolve()
    if d.has("incidents"):
        used = sorted(k for k in _LAYOUT_KEYS if d.has(k))
        if used:
            raise d.error(used[0], "applies to a counts file only (give counts = ...)")
    layout_name = d.choice("layout", ("long", "wide"), "long")
    outcome_columns = d.str_list("outcome_columns")
    if layout_name == "wide" and not outcome_columns:
        raise d.error("outcome_columns", 'is required with layout = "wide"')
    if layout_name == "long" and (outcome_columns or d.has("covariate_columns")):
        raise d.error("layout", 'set layout = "wide" to use outcome_columns / covariate_columns')
    first_period = d.str("first_period")
    if first_period is not None:
        try:
            pd.Period(first_period, freq=PANDAS_FREQ_OF[frequency])
        except (ValueError, TypeError):
            raise d.error("first_period", f"{first_period!r} is not a {frequency}") from None
    layout = CountsLayout(
        layout=layout_name,  # type: ignore[arg-type]
        area_column=d.str("area_column", "area_id"),
        period_column=d.str("period_column", "period"),
        first_period=first_period,
        outcome_columns=outcome_columns,
        covariate_columns=d.str_list("covariate_columns"),
    )
    if d.has("counts"):
        used = sorted(k for k in _EXTRACT_KEYS - {"delimiter"} if d.has(k))
        if used:
            raise d.error(used[0], "applies to an incidents file only (give incidents = ...)")
    data = DataSpec(
        layout=layout,
        incidents=d.path("incidents"),
        counts=d.path("counts"),
        areas=d.path("areas"),
        offense_map=offense_map,
        max_reject_share=d.number("max_reject_share", 0.05, low=0.0, high=1.0),
        **_parse_extract(file, d),
    )
    geo = _parse_geo(file, top, raw.get("geo"), data.columns)

    sites_raw = raw["sites"]
    if not isinstance(sites_raw, list) or not sites_raw:
        raise top.error("sites", "must be one or more [[sites]] tables")
    sites = tuple(_parse_site(file, i, t, geo) for i, t in enumerate(sites_raw))
    if any(site.market is not None for site in sites):
        if resolve_sites is None:
            from dmi_eval.geo import resolve_sites  # reads polygons: only when a site needs it
        sites = resolve_sites(file, geo, sites, data)  # type: ignore[arg-type]
    _check_sites(file, sites)

    verdict = _parse_verdict(file, raw.get("verdict", {}))
    report = _parse_report(file, raw.get("report", {}))
    compute = _parse_compute(file, raw.get("compute", {}))
    return Study(
        name=name,
        frequency=frequency,  # type: ignore[arg-type]
        transition=transition,  # type: ignore[arg-type]
        seed=seed,
        start=start,
        end=end,
        data=data,
        sites=sites,
        verdict=verdict,
        report=report,
        path=file,
        text=text,
        geo=geo,
        compute=compute,
    )


def _parse_compute(file: Path, table: Any) -> Compute:
    """``[compute]``: ``scheduler = "tcp://HOST:PORT"`` and/or ``jobs = N``."""
    if not isinstance(table, dict):
        raise ConfigError(f"{file.name}: [compute] must be a table")
    c = _Reader(file, table, "[compute]", _COMPUTE_KEYS)
    scheduler = c.str("scheduler")
    if scheduler is not None and (problem := scheduler_problem(scheduler)):
        raise c.error("scheduler", problem)
    jobs = c.integer("jobs", 0, low=0, high=4096) if c.has("jobs") else None
    if jobs == 0:
        raise c.error("jobs", "must be at least 1 (the number of local worker processes)")
    return Compute(scheduler=scheduler, jobs=jobs)


def _parse_extract(file: Path, d: _Reader) -> dict[str, Any]:
    """``[data]`` keys that describe a police extract: formats and column names."""
    date_format = d.str("date_format")
    if date_format is not None and date_format != "epoch_ms" and "%" not in date_format:
        raise d.error(
            "date_format",
            f'{date_format!r} has no strftime codes; use e.g. "%m/%d/%Y %I:%M:%S %p", '
            '"epoch_ms", or leave it out for ISO 8601 dates',
        )
    timezone = d.str("timezone")
    if timezone is not None:
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise d.error(
                "timezone",
                f'{timezone!r} is not a time zone; use an IANA name such as "America/New_York"',
            ) from None
    delimiter = None
    if d.has("delimiter"):
        raw = d.table["delimiter"]
        if raw not in DELIMITERS:
            raise d.error(
                "delimiter", f'must be one of ",", ";", "|", "\\t" (or "tab"); got {raw!r}'
            )
        delimiter = DELIMITERS[raw]
    columns = ColumnMap()
    if d.has("columns"):
        table = d.table["columns"]
        if not isinstance(table, dict):
            raise d.error("columns", "must be a table: [data.columns]")
        c = _Reader(file, table, "[data.columns]", _COLUMN_KEYS)
        x, y = c.str("x"), c.str("y")
        if (x is None) != (y is None):
            raise c.error("y" if y is None else "x", "give both x and y (the coordinate columns)")
        if x is not None and c.has("area_id"):
            raise c.error("area_id", "give either area_id or x and y (coordinates), not both")
        columns = ColumnMap(
            incident_id=c.str("incident_id", "incident_id"),
            date=c.str("date", "date"),
            offense=c.str("offense", "offense"),
            area_id=None if x is not None else c.str("area_id", "area_id"),
            x=x,
            y=y,
        )
        names = [v for v in (columns.incident_id, columns.date, columns.offense) if v]
        names += [v for v in (columns.area_id, columns.x, columns.y) if v]
        repeated = sorted({v for v in names if names.count(v) > 1})
        if repeated:
            raise c.error("columns", f"column {repeated[0]!r} is given for two fields")
    return {
        "date_format": date_format,
        "timezone": timezone,
        "delimiter": delimiter,
        "columns": columns,
    }


def _parse_geo(file: Path, top: _Reader, table: Any, columns: ColumnMap) -> GeoSpec | None:
    if table is None:
        if columns.geocoded:
            raise top.error(
                "geo",
                "section is required when [data.columns] gives x and y: add [geo] with "
                "crs and areas (a polygon file) or grid_m",
            )
        return None
    if not isinstance(table, dict):
        raise top.error("geo", "must be a table: [geo]")
    g = _Reader(file, table, "[geo]", _GEO_KEYS)
    areas = g.path("areas")
    grid_m = g.optional_number("grid_m", low=1.0, high=100_000.0)
    if (areas is None) == (grid_m is None):
        raise g.error("areas", "give exactly one of 'areas' (a polygon file) or 'grid_m'")
    if areas is not None and not g.has("area_id_field"):
        raise g.error("area_id_field", "is required with areas: the property naming each area")
    if grid_m is not None and g.has("area_id_field"):
        raise g.error("area_id_field", "applies to an areas file only (not to grid_m)")
    if grid_m is not None and not columns.geocoded:
        raise g.error("grid_m", "needs incidents with coordinates: set x and y in [data.columns]")
    crs = g.str("crs")
    if columns.geocoded and crs is None:
        raise g.error("crs", 'is required: the CRS of the x/y columns, e.g. "EPSG:4326"')
    if crs is not None:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(crs)
        except CRSError:
            raise g.error(
                "crs", f'{crs!r} is not a CRS pyproj can read; use e.g. "EPSG:4326" or "EPSG:2285"'
            ) from None
    return GeoSpec(
        crs=crs,
        areas=areas,
        area_id_field=g.str("area_id_field"),
        grid_m=grid_m,
        boundary=g.path("boundary"),
    )


def _parse_site(file: Path, index: int, table: Any, geo: GeoSpec | None = None) -> Site:
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [[sites]] #{index + 1} must be a table")
    label = f"[[sites]] #{index + 1}"
    if isinstance(table.get("id"), str):
        label = f"[[sites]] id={table['id']!r}"
    r = _Reader(file, table, label, _SITE_KEYS)
    site_id = r.str("id", required=True)
    if not SITE_ID_PATTERN.match(site_id):
        raise r.error(
            "id", f"{site_id!r} is not a safe file name: use lower-case letters, digits, _ and -"
        )
    market = r.path("market")
    if market is not None and geo is None:
        raise r.error("market", "needs a [geo] section with the area polygons (areas or grid_m)")
    buffers = {}
    for key in ("catchment_buffer_m", "donor_buffer_m"):
        buffers[key] = r.optional_number(key, low=0.0, high=100_000.0)
        if buffers[key] is not None and market is None:
            raise r.error(key, "needs market = (the market polygon file) to measure from")
    treated = r.str_list("treated_areas")
    if not treated and market is None:
        empty = "treated_areas" in r.table
        hint = 'is required (area ids), or draw the market: market = "FILE" (with [geo])'
        raise r.error("treated_areas", "must name at least one area" if empty else hint)
    outcomes = r.str_list("outcomes", required=True)
    if not outcomes:
        raise r.error("outcomes", "must name at least one outcome")
    primary = r.str("primary_outcome", outcomes[0])
    if primary not in outcomes:
        raise r.error(
            "primary_outcome", f"{primary!r} is not among outcomes ({', '.join(outcomes)})"
        )
    catchment = r.str_list("catchment_areas")
    donors = r.str_list("donor_areas")
    for key, other in (("catchment_areas", catchment), ("donor_areas", donors)):
        overlap = sorted(set(treated) & set(other))
        if overlap:
            raise r.error(
                key, f"{', '.join(overlap)} also listed in treated_areas; an area has one role"
            )
    overlap = sorted(set(catchment) & set(donors))
    if overlap:
        raise r.error("donor_areas", f"{', '.join(overlap)} also listed in catchment_areas")
    return Site(
        id=site_id,
        name=r.str("name", site_id),
        intervention=r.date("intervention", required=True),
        treated_areas=treated,
        catchment_areas=catchment,
        donor_areas=donors,
        outcomes=outcomes,
        primary_outcome=primary,
        market=market,
        **buffers,
    )


def _check_sites(file: Path, sites: tuple[Site, ...]) -> None:
    seen: set[str] = set()
    for site in sites:
        if site.id in seen:
            raise ConfigError(
                f"{file}: [[sites]] id={site.id!r}: duplicate site id; ids must be unique"
            )
        seen.add(site.id)
    for site in sites:
        if site.market is None:
            continue  # list-only sites were checked as they were read
        for key, other in (
            ("catchment_areas", site.catchment_areas),
            ("donor_areas", site.donor_areas),
        ):
            overlap = sorted(set(site.treated_areas) & set(other))
            if overlap:
                raise ConfigError(
                    f"{file}: [[sites]] id={site.id!r}.{key}: {', '.join(overlap[:5])} lie in the "
                    "market (treated); an area has one role"
                )
    owner: dict[str, str] = {}
    for site in sites:
        for area in site.treated_areas:
            if area in owner:
                raise ConfigError(
                    f"{file}: [[sites]] id={site.id!r}.treated_areas: {area} is already treated "
                    f"by site {owner[area]!r}; a treated area belongs to one site"
                )
            owner[area] = site.id
    for site in sites:
        donors_treated = sorted(a for a in site.donor_areas if a in owner)
        if donors_treated:
            raise ConfigError(
                f"{file}: [[sites]] id={site.id!r}.donor_areas: {', '.join(donors_treated)} "
                "is treated by a site and cannot be a donor"
            )


def _parse_report(file: Path, table: Any) -> ReportOptions:
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [report] must be a table")
    table = dict(table)
    labels = table.pop("outcome_labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(v, str) and v.strip() for v in labels.values()
    ):
        raise ConfigError(
            f'{file}: [report].outcome_labels: must be a table of outcome = "words", '
            'e.g. outcome_labels = { i_drugs = "drug offences" }'
        )
    report = _parse_dataclass(file, table, "[report]", ReportOptions)
    return dataclasses.replace(report, outcome_labels=tuple(sorted(labels.items())))


def _parse_verdict(file: Path, table: Any) -> VerdictRules:
    """``[verdict]``: numbers, ``persistence`` (a duration) or ``persistence_periods``.

    ``min_expected_count`` is incidents a month; ``alpha``, ``min_reduction`` and
    ``lasting_share`` must lie in (0, 0.5], (0, 1] and (0, 1] (checked by
    :class:`VerdictRules`, re-raised naming the file).
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [verdict] must be a table")
    defaults = VerdictRules()
    names = set(VerdictRules.__dataclass_fields__)
    r = _Reader(file, table, "[verdict]", names)
    if r.has("persistence") and r.has("persistence_periods"):
        raise r.error(
            "persistence_periods",
            'give either persistence (a duration such as "6 months") or persistence_periods, '
            "not both",
        )
    persistence = r.str(
        "persistence",
        defaults.persistence,
        hint='write a duration with its unit, e.g. persistence = "{value} months", or the '
        "number of the study's periods as persistence_periods = {value}",
    )
    try:
        parse_duration(persistence)
    except ValueError as exc:
        raise r.error("persistence", str(exc)) from None
    periods = None
    if r.has("persistence_periods"):
        periods = r.integer("persistence_periods", 6, low=1, high=10_000)
    values: dict[str, Any] = {"persistence": persistence, "persistence_periods": periods}
    values |= _numbers(r, {n: getattr(defaults, n) for n in sorted(names - set(values))})
    try:
        return VerdictRules(**values)
    except ConfigError as exc:  # alpha, min_reduction, lasting_share out of range
        raise ConfigError(f"{file}: {exc}") from None


def _parse_dataclass(file: Path, table: Any, where: str, cls: type) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: {where} must be a table")
    defaults = cls()
    fields = {name: getattr(defaults, name) for name in cls.__dataclass_fields__}
    r = _Reader(file, table, where, set(fields))
    # tuple fields are parsed by the caller
    return cls(**_numbers(r, {n: d for n, d in fields.items() if not isinstance(d, tuple)}))


def _numbers(r: _Reader, defaults: dict[str, Any]) -> dict[str, Any]:
    """Each key's integer (an integer default) or number, 0 or more."""
    return {
        name: r.integer(name, default, low=0, high=10_000)
        if isinstance(default, int) and not isinstance(default, bool)
        else r.number(name, default, low=0.0, high=1e6)
        for name, default in defaults.items()
    }
