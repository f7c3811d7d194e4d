"""The frozen objects a ``study.toml`` is read into (:class:`Study`, :class:`Site` and
their sections), the vocabularies they allow, and durations such as ``"6 months"``.

:mod:`dmi_eval.config` reads and validates the file; this module only says what a valid
study is made of.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from dmi_eval.errors import ConfigError

Frequency = Literal["month", "week", "quarter"]
Transition = Literal["exclude", "post"]

FREQUENCIES: tuple[str, ...] = get_args(Frequency)
TRANSITIONS: tuple[str, ...] = get_args(Transition)
PANDAS_FREQ_OF: dict[str, str] = {"month": "M", "week": "W-SUN", "quarter": "Q"}
SITE_ID_PATTERN = re.compile(r"^[a-z0-9_-]+$")
DAYS_PER: dict[str, float] = {
    "week": 7.0,
    "month": 365.25 / 12,
    "quarter": 365.25 / 4,
    "year": 365.25,
}
_DURATION = re.compile(r"^\s*(\d+)\s*(week|month|quarter|year)s?\s*$")


def parse_duration(text: str) -> tuple[int, str]:
    """``"6 months"`` -> ``(6, "month")``; units week, month, quarter, year.

    Raises :class:`ValueError` (saying what is allowed) for anything else.
    """
    m = _DURATION.match(str(text).lower()) if isinstance(text, str) else None
    if not m or int(m.group(1)) < 1:
        raise ValueError(
            f"{text!r} is not a duration; write a whole number and a unit, "
            'e.g. "6 months", "26 weeks", "2 quarters" or "1 year"'
        )
    return int(m.group(1)), m.group(2)


def duration_text(n: int, frequency: str) -> str:
    """``(6, "month")`` -> ``"6 months"``; ``(1, "quarter")`` -> ``"1 quarter"``."""
    return f"{n} {frequency}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class VerdictRules:
    """Thresholds of the market-closure rule (``[verdict]`` in study.toml).

    The default rule is stated in DESIGN.md: *closed* when the primary outcome's
    post-period reduction is significant (one-sided ``p < alpha``), at least
    ``min_reduction``, still present over the last ``persistence`` of the post
    period (a duration such as ``"6 months"``, converted to the study's
    periods by :meth:`persistence_in`) and not offset by a significant rise in
    the catchment area. "Still present" means the estimated change over that
    window is a drop of at least ``lasting_share * min_reduction`` (half of it
    by default), not a second significance test: the window is a fraction of the
    post period, and a test on it alone has too little power (the calibration
    appendix, ``reports/appendix/calibration.md``, gives the power of that test
    at a sustained 45% drop beside the post-period test's).

    ``persistence_periods`` (an integer number of the data's periods) is the
    older spelling; when given it replaces ``persistence``.
    ``min_expected_count`` is in incidents **a month** before the call-in,
    converted to the study's periods by :meth:`min_expected_in`.
    """

    alpha: float = 0.05
    min_reduction: float = 0.25
    persistence: str = "6 months"
    persistence_periods: int | None = None
    min_pre_periods: int = 12
    min_expected_count: float = 5.0
    max_pre_rmspe_ratio: float = 0.5
    lasting_share: float = 0.5

    def __post_init__(self) -> None:
        parse_duration(self.persistence)
        if self.persistence_periods is not None and self.persistence_periods < 1:
            raise ValueError(
                f"persistence_periods must be a positive integer; got {self.persistence_periods}"
            )
        checks = (
            ("alpha", self.alpha, 0.0, 0.5, "a one-sided level such as 0.05"),
            ("min_reduction", self.min_reduction, 0.0, 1.0, "a fraction such as 0.25 for 25%"),
            (
                "lasting_share",
                self.lasting_share,
                0.0,
                1.0,
                "the share of min_reduction the drop must still reach over the persistence "
                "window, e.g. 0.5",
            ),
        )
        for name, value, low, high, what in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"[verdict].{name}: must be a number ({what}); got {value!r}")
            if not low < value <= high:
                raise ConfigError(
                    f"[verdict].{name}: must be above {low:g} and at most {high:g} ({what}); "
                    f"got {value!r}"
                )
        if self.min_expected_count < 0:
            raise ConfigError(
                "[verdict].min_expected_count: must be 0 or more (incidents a month before the "
                f"call-in); got {self.min_expected_count!r}"
            )

    def persistence_in(self, frequency: str) -> int:
        """The persistence window in periods of ``frequency`` (at least 1).

        ``"6 months"`` is 6 months, 26 weeks or 2 quarters: the duration in days
        (a month is 365.25/12 days) divided by the period's length, rounded.
        """
        if self.persistence_periods is not None:
            return int(self.persistence_periods)
        n, unit = parse_duration(self.persistence)
        return max(1, round(n * DAYS_PER[unit] / DAYS_PER[frequency]))

    def persistence_text(self, frequency: str) -> str:
        """The persistence window in words, in the study's periods (``"26 weeks"``)."""
        return duration_text(self.persistence_in(frequency), frequency)

    def lasting_drop(self) -> float:
        """The drop (positive fraction) the persistence window must still show."""
        return self.lasting_share * self.min_reduction

    def min_expected_in(self, frequency: str) -> float:
        """``min_expected_count`` (incidents a month) per period of ``frequency``.

        5 a month is 1.15 a week or 15 a quarter (a month is 365.25/12 days).
        """
        return self.min_expected_count * DAYS_PER[frequency] / DAYS_PER["month"]


@dataclass(frozen=True)
class ReportOptions:
    """``[report]`` options: small-cell suppression, outcome names in words.

    ``outcome_labels`` maps an outcome (a data column such as ``i_drugs``) to
    the words reports use for it (``"drug offences"``); an outcome without a
    label reads as its name with ``_`` as spaces, followed by "offences".
    """

    suppress_below: int = 0
    outcome_labels: tuple[tuple[str, str], ...] = ()

    def outcome_label(self, outcome: str) -> str:
        """How reports name ``outcome`` in prose and tables (``"drug offences"``)."""
        labels = dict(self.outcome_labels)
        if outcome in labels:
            return labels[outcome]
        return f"{outcome.replace('_', ' ')} offences"


Layout = Literal["long", "wide"]


@dataclass(frozen=True)
class CountsLayout:
    """How a counts file is laid out (keys in ``[data]``, used with ``counts`` only).

    ``long`` (default): ``area_id, period, outcome, count``. ``wide``: one row
    per area and period, one column per outcome (``outcome_columns``); the
    ``covariate_columns`` of each area's first row become its covariates.
    ``first_period``: the period column holds integers 1, 2, ... counted from
    this period (e.g. ``"2010Q1"``).
    """

    layout: Layout = "long"
    area_column: str = "area_id"
    period_column: str = "period"
    first_period: str | None = None
    outcome_columns: tuple[str, ...] = ()
    covariate_columns: tuple[str, ...] = ()


DELIMITERS: dict[str, str] = {",": ",", ";": ";", "|": "|", "\t": "\t", "tab": "\t"}
"""Accepted ``[data].delimiter`` values and the character each stands for."""


@dataclass(frozen=True)
class ColumnMap:
    """``[data.columns]``: the extract's own names for the columns dmi_eval reads.

    ``area_id`` is read unless ``x`` and ``y`` (coordinates in ``[geo].crs``)
    are given; then each incident is placed in the area polygon that contains it.
    """

    incident_id: str = "incident_id"
    date: str = "date"
    offense: str = "offense"
    area_id: str | None = "area_id"
    x: str | None = None
    y: str | None = None

    @property
    def geocoded(self) -> bool:
        """True when incidents carry coordinates instead of an area id."""
        return self.x is not None


@dataclass(frozen=True)
class DataSpec:
    """``[data]``: where the inputs are, resolved to absolute paths, and how to read them.

    ``date_format`` is ``None`` (ISO 8601), strftime codes, or ``"epoch_ms"``;
    ``timezone`` (an IANA name) converts offsets / ``Z`` / epoch times to local
    time before counting; ``delimiter`` is ``None`` (detected from the header).
    """

    incidents: Path | None
    counts: Path | None
    areas: Path | None
    offense_map: str | Path
    max_reject_share: float = 0.05
    layout: CountsLayout = field(default_factory=CountsLayout)
    date_format: str | None = None
    timezone: str | None = None
    delimiter: str | None = None
    columns: ColumnMap = field(default_factory=ColumnMap)


@dataclass(frozen=True)
class GeoSpec:
    """``[geo]``: the study's small areas as polygons (or a square grid).

    ``crs`` is the CRS of the incidents' x/y columns; ``areas`` a polygon file
    (GeoJSON, GeoPackage, shapefile) whose ``area_id_field`` names each area;
    or ``grid_m``: square cells of that many metres over ``boundary`` (or over
    the incidents). ``boundary``: optional city limits; points outside it are
    rejected as ``outside_areas``.
    """

    crs: str | None = None
    areas: Path | None = None
    area_id_field: str | None = None
    grid_m: float | None = None
    boundary: Path | None = None


@dataclass(frozen=True)
class Compute:
    """``[compute]``: where the work runs (``--scheduler`` / ``--jobs`` override it).

    Results do not depend on it: 1 core, N local processes and a Dask cluster
    give byte-identical reports.
    """

    scheduler: str | None = None  # a Dask scheduler, tcp://HOST:PORT
    jobs: int | None = None  # local worker processes


@dataclass(frozen=True)
class Site:
    """One DMI site (one ``[[sites]]`` table)."""

    id: str
    name: str
    intervention: dt.date
    treated_areas: tuple[str, ...]
    catchment_areas: tuple[str, ...]
    donor_areas: tuple[str, ...]
    outcomes: tuple[str, ...]
    primary_outcome: str
    market: Path | None = None
    catchment_buffer_m: float | None = None
    donor_buffer_m: float | None = None


@dataclass(frozen=True)
class Study:
    """A validated study: options, inputs and sites."""

    name: str
    frequency: Frequency
    transition: Transition
    seed: int
    start: dt.date | None
    end: dt.date | None
    data: DataSpec
    sites: tuple[Site, ...]
    verdict: VerdictRules
    report: ReportOptions
    path: Path
    text: str = field(repr=False, default="")
    geo: GeoSpec | None = None
    compute: Compute = field(default_factory=Compute)

    def site(self, site_id: str) -> Site:
        """Return the site with id ``site_id``."""
        for site in self.sites:
            if site.id == site_id:
                return site
        known = ", ".join(s.id for s in self.sites)
        raise ConfigError(f"{self.path.name}: no site with id {site_id!r}; the study has: {known}")

    @property
    def intervention_areas(self) -> frozenset[str]:
        """Areas treated or in the catchment of any site (never default donors)."""
        areas: set[str] = set()
        for site in self.sites:
            areas.update(site.treated_areas)
            areas.update(site.catchment_areas)
        return frozenset(areas)


SHAPEFILE_COMPANIONS: tuple[str, ...] = (".shx", ".dbf", ".prj", ".cpg")
"""Files beside a ``.shp`` that change what it means (index, attributes, CRS, encoding)."""


def with_companions(path: Path) -> list[Path]:
    """``path`` and, for a shapefile, its companion files that exist (same stem)."""
    path = Path(path)
    if path.suffix.lower() != ".shp":
        return [path]
    out = [path]
    for suffix in SHAPEFILE_COMPANIONS:
        for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
            if candidate.is_file():
                out.append(candidate)
                break
    return out
