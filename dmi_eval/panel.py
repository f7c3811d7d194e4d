"""The Panel: area x period x outcome counts, and a site's view of it.

A :class:`Panel` holds non-negative integer counts for every area, period and
outcome in the observed range (cells without incidents are zeros). A
:class:`SiteData` is what every design receives: the panel plus one site's
treated, catchment and donor areas and the role of every period (pre,
transition, post).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd

from dmi_eval.config import PANDAS_FREQ_OF, Frequency, Site, Study, Transition, duration_text
from dmi_eval.errors import ConfigError, DesignError

PANDAS_FREQ: dict[str, str] = PANDAS_FREQ_OF
"""pandas period frequency of each study frequency (weeks run Monday to Sunday)."""

MIN_PRE_PERIODS = 8
"""Fewest pre periods any design is fitted with (segmented regression needs a trend)."""

PERIODS_PER_YEAR: dict[str, int] = {"month": 12, "week": 52, "quarter": 4}


@dataclass(frozen=True)
class Panel:
    """Counts of every outcome in every area and period.

    Parameters
    ----------
    frequency
        ``"month"``, ``"week"`` or ``"quarter"``.
    periods
        The observed periods, consecutive and sorted.
    areas
        Area ids (strings), sorted.
    counts
        Outcome name -> integer array of shape ``(len(areas), len(periods))``.
    covariates
        Optional numeric covariates indexed by area id.
    """

    frequency: Frequency
    periods: pd.PeriodIndex
    areas: pd.Index
    counts: Mapping[str, np.ndarray]
    covariates: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        frozen = {}
        for outcome, arr in self.counts.items():
            a = np.array(arr, dtype=np.int64, copy=True)
            if a.shape != (len(self.areas), len(self.periods)):
                raise ValueError(f"counts[{outcome!r}] has shape {a.shape}")
            a.setflags(write=False)
            frozen[outcome] = a
        object.__setattr__(self, "counts", MappingProxyType(frozen))
        if self.covariates is not None:
            object.__setattr__(self, "covariates", self.covariates.copy())

    @property
    def outcomes(self) -> tuple[str, ...]:
        return tuple(self.counts)

    def matrix(self, outcome: str, areas: Sequence[str] | None = None) -> pd.DataFrame:
        """Counts of one outcome as an areas x periods DataFrame (a copy)."""
        frame = pd.DataFrame(self._array(outcome), index=self.areas, columns=self.periods)
        return frame if areas is None else frame.loc[list(areas)]

    def series(self, outcome: str, areas: Sequence[str]) -> pd.Series:
        """Total of one outcome over ``areas``, per period."""
        idx = self.areas.get_indexer(list(areas))
        if (idx < 0).any():
            missing = [a for a, i in zip(areas, idx, strict=True) if i < 0]
            raise KeyError(f"areas not in panel: {missing}")
        return pd.Series(self._array(outcome)[idx].sum(axis=0), index=self.periods, name=outcome)

    def totals(self) -> pd.Series:
        """Grand total of every outcome."""
        return pd.Series({o: int(a.sum()) for o, a in self.counts.items()}, dtype="int64")

    def long(self) -> pd.DataFrame:
        """Tidy frame ``area_id, period, outcome, count`` (every cell, zeros included)."""
        parts = []
        for outcome, arr in self.counts.items():
            parts.append(
                pd.DataFrame(
                    {
                        "area_id": np.repeat(self.areas.to_numpy(), len(self.periods)),
                        "period": np.tile(self.periods.astype(str).to_numpy(), len(self.areas)),
                        "outcome": outcome,
                        "count": arr.reshape(-1),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    def _array(self, outcome: str) -> np.ndarray:
        try:
            return self.counts[outcome]
        except KeyError:
            raise KeyError(
                f"outcome {outcome!r} not in panel; it has {', '.join(self.outcomes)}"
            ) from None

    def donor_pool(self, study: Study, site: Site) -> tuple[str, ...]:
        """The site's donors: its ``donor_areas``, or every area outside all sites'
        treated and catchment areas."""
        if site.donor_areas:
            return tuple(site.donor_areas)
        excluded = study.intervention_areas
        return tuple(a for a in self.areas if a not in excluded)

    def site_data(self, study: Study, site_id: str) -> SiteData:
        """The view of this panel that the designs fit for one site.

        Donor areas default to every area outside every site's treated and
        catchment areas. Raises :class:`ConfigError` when the site names areas or
        outcomes the panel lacks, and :class:`DesignError` when the call-in date
        falls outside the observed periods.
        """
        site = study.site(site_id)
        where = f"{study.path.name}: [[sites]] id={site.id!r}"
        known = set(self.areas)
        for key in ("treated_areas", "catchment_areas", "donor_areas"):
            missing = [a for a in getattr(site, key) if a not in known]
            if missing:
                raise ConfigError(
                    f"{where}.{key}: area(s) {', '.join(missing[:5])} have no data; "
                    "check the area ids against the data file"
                )
        missing_outcomes = [o for o in site.outcomes if o not in self.counts]
        if missing_outcomes:
            raise ConfigError(
                f"{where}.outcomes: {', '.join(missing_outcomes)} not in the data; "
                f"available: {', '.join(self.outcomes)}"
            )
        try:
            return SiteData(
                panel=self,
                site=site,
                donor_areas=self.donor_pool(study, site),
                transition=study.transition,
            )
        except DesignError as exc:  # the call-in date or pool: name the file to fix
            raise DesignError(f"{study.path}: {exc}") from exc


@dataclass(frozen=True)
class SiteData:
    """One site's view of a panel: what every design's ``Model`` receives.

    Attributes
    ----------
    panel, site
        The whole panel and the site's configuration.
    donor_areas
        Resolved donor pool (never empty).
    transition
        ``"exclude"``: the period containing the call-in date is left out of
        both the fit and the effect; ``"post"``: it is the first post period.
    """

    panel: Panel
    site: Site
    donor_areas: tuple[str, ...]
    transition: Transition = "exclude"
    roles: pd.Series = field(init=False, repr=False)

    def __post_init__(self) -> None:
        periods = self.panel.periods
        call_in = pd.Period(self.site.intervention, freq=periods.freq)
        where = f"the data run from {periods[0]} to {periods[-1]}"
        if call_in > periods[-1]:
            raise DesignError(
                f"site {self.site.id!r}: call-in date {self.site.intervention} is after the data "
                f"end ({where}); check [[sites]].intervention, or use data that run past it"
            )
        if call_in <= periods[0]:
            raise DesignError(
                f"site {self.site.id!r}: call-in date {self.site.intervention} leaves no period "
                f"before it ({where}); check [[sites]].intervention, or use data that start "
                "earlier"
            )
        role = np.where(periods < call_in, "pre", np.where(periods > call_in, "post", "transition"))
        if self.transition == "post":
            role = np.where(role == "transition", "post", role)
        roles = pd.Series(role, index=periods, name="role")
        object.__setattr__(self, "roles", roles)
        n_pre = int((role == "pre").sum())
        if n_pre < MIN_PRE_PERIODS:
            raise DesignError(
                f"site {self.site.id!r}: call-in date {self.site.intervention} leaves "
                f"{duration_text(n_pre, 'pre period')} in the data; the designs need at least "
                f"{MIN_PRE_PERIODS} (and the closure rule 12 by default): check "
                "[[sites]].intervention, or use data that start earlier"
            )
        if not self.donor_areas:
            raise DesignError(f"site {self.site.id!r}: the donor pool is empty")
        if self.n_post == 0:
            raise DesignError(
                f"site {self.site.id!r}: call-in date {self.site.intervention} leaves no period "
                f"after it ({where}; the call-in's own period is the transition); check "
                "[[sites]].intervention, or use data that run past it"
            )

    # --- periods -------------------------------------------------------
    @property
    def frequency(self) -> Frequency:
        return self.panel.frequency

    @property
    def periods(self) -> pd.PeriodIndex:
        return self.panel.periods

    @property
    def call_in_period(self) -> pd.Period:
        """The period that contains the call-in date."""
        return pd.Period(self.site.intervention, freq=self.periods.freq)

    @property
    def intervention_date(self) -> dt.date:
        return self.site.intervention

    @property
    def pre_mask(self) -> np.ndarray:
        return (self.roles == "pre").to_numpy()

    @property
    def post_mask(self) -> np.ndarray:
        return (self.roles == "post").to_numpy()

    @property
    def used_mask(self) -> np.ndarray:
        """Periods used in fits (pre or post; the excluded transition is not)."""
        return (self.roles != "transition").to_numpy()

    @property
    def n_pre(self) -> int:
        return int(self.pre_mask.sum())

    @property
    def n_post(self) -> int:
        return int(self.post_mask.sum())

    # --- areas -----------------------------------------------------------
    @property
    def site_id(self) -> str:
        return self.site.id

    @property
    def outcomes(self) -> tuple[str, ...]:
        return self.site.outcomes

    @property
    def primary_outcome(self) -> str:
        return self.site.primary_outcome

    @property
    def treated_areas(self) -> tuple[str, ...]:
        return self.site.treated_areas

    @property
    def catchment_areas(self) -> tuple[str, ...]:
        return self.site.catchment_areas

    def treated_series(self, outcome: str) -> pd.Series:
        """Total count of ``outcome`` over the treated areas, per period."""
        return self.panel.series(outcome, self.treated_areas)

    def catchment_series(self, outcome: str) -> pd.Series | None:
        """Total over the catchment areas, or ``None`` when the site has none."""
        if not self.catchment_areas:
            return None
        return self.panel.series(outcome, self.catchment_areas)

    def donor_matrix(self, outcome: str) -> pd.DataFrame:
        """Counts of ``outcome`` for every donor area (donors x periods)."""
        return self.panel.matrix(outcome, self.donor_areas)

    def area_matrix(self, outcome: str, areas: Sequence[str]) -> pd.DataFrame:
        """Counts of ``outcome`` for the given areas (areas x periods)."""
        return self.panel.matrix(outcome, areas)

    def change_by_area(self, outcome: str, areas: Sequence[str]) -> pd.Series:
        """Mean count per post period minus mean per pre period, for each of ``areas``."""
        matrix = self.panel.matrix(outcome, areas).to_numpy(dtype=float)
        change = matrix[:, self.post_mask].mean(axis=1) - matrix[:, self.pre_mask].mean(axis=1)
        return pd.Series(change, index=pd.Index(list(areas), name="area_id"), name=outcome)

    def covariates(self, areas: Sequence[str]) -> pd.DataFrame | None:
        """Area covariates for ``areas`` (``None`` when the study has none)."""
        cov = self.panel.covariates
        if cov is None:
            return None
        missing = [a for a in areas if a not in cov.index]
        if missing:
            raise ConfigError(
                f"site {self.site_id!r}: the areas file lacks area(s) {', '.join(missing[:5])}; "
                "add them to areas.csv"
            )
        return cov.loc[list(areas)].copy()


def site_roles(panel: Panel, study: Study) -> pd.DataFrame:
    """``site, role, area_id`` of every site: what ``results/sites.csv`` records.

    Roles are ``treated``, ``catchment`` and ``donor`` (the resolved donor pool),
    so a reviewer sees exactly which blocks each site used.
    """
    rows = [
        (site.id, role, area)
        for site in study.sites
        for role, areas in (
            ("treated", site.treated_areas),
            ("catchment", site.catchment_areas),
            ("donor", panel.donor_pool(study, site)),
        )
        for area in areas
    ]
    return pd.DataFrame(rows, columns=["site", "role", "area_id"])


def range_periods(
    frequency: str, start: dt.date | None, end: dt.date | None
) -> tuple[pd.Period | None, pd.Period | None]:
    """The periods holding ``start`` and ``end`` (``None`` where not given)."""
    freq = PANDAS_FREQ[frequency]
    return (
        None if start is None else pd.Period(start, freq=freq),
        None if end is None else pd.Period(end, freq=freq),
    )


def whole_period_dates(
    frequency: str, start: dt.date | None, end: dt.date | None
) -> tuple[dt.date | None, dt.date | None]:
    """``start`` and ``end`` moved inward to the first and last period they cover whole."""
    first, last = range_periods(frequency, start, end)
    if first is not None and first.start_time.date() < start:
        first += 1
    if last is not None and last.end_time.date() > end:
        last -= 1
    return (
        None if first is None else first.start_time.date(),
        None if last is None else last.end_time.date(),
    )
