"""Power and false-closure rate at a site: the calibration study on cities like it.

``dmi-eval power STUDY --site ID`` (and :func:`power_like_site`) simulates
cities whose markets copy one real site's pre-period -- the market's level and
number of areas, the comparison areas' levels, the counts' overdispersion, the
pre and post lengths (:func:`spec_like_site`) --
plants no effect, a sustained -25% drop and a sustained -45% drop at their
markets in turn, and runs the exact site path with the study's own verdict
rules (:func:`rules_like_site`). The answer is how
often the verdict would say *closed*, *displaced*, *not closed* or
*inconclusive* at a site like this one, for each true change: the false-closure
rate at no effect, the chance of detecting a lasting closure otherwise.

What it cannot tell: the simulated cities copy the site's levels, not its
city-wide trends or how exposed its market is to them (those are the default
scenario's, :class:`~dmi_eval.calibration.city.CitySpec`); a market much more
exposed to city-wide swings than its comparison areas is called *closed* by
mistake more often (the ``monthly-exposed`` scenario of the calibration
appendix). No site's data can tell how exposed its market is -- the market's
own swings look like its counting noise before the call-in and like an effect
after it -- so ``exposure`` (``--exposure``) lets a user ask "what if":
the market's own deviation of its factor loadings as a multiple of the
default, which equals one area's (2 is the market exposure of the calibration's
``monthly-exposed`` stress, which also has faster city-wide swings). A market
with a slow trend of its own, one its comparison areas do not share, is the
same kind of blind spot (the ``market-trends`` sensitivity scenario): over a
pre period of two to four years such a trend is as steep as the swings of
random-walk city-wide factors, so ``market_trend`` (``--market-trend``) asks
"what if" for it: the SD of the markets' own log-linear trend per year.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from dmi_eval.calibration.city import NULL, CitySpec, Effect
from dmi_eval.calibration.runner import DEFAULT_SEED, Scenario, run
from dmi_eval.calibration.summary import binomial_share, covers_truth, summarise, target_of
from dmi_eval.config import VerdictRules
from dmi_eval.errors import ConfigError
from dmi_eval.panel import PERIODS_PER_YEAR, SiteData
from dmi_eval.study_spec import DAYS_PER, duration_text
from dmi_eval.tables import design_label

VERDICTS: tuple[str, ...] = ("closed", "displaced", "not_closed", "inconclusive")
"""The verdict labels, in the order the table shows them."""


@dataclass(frozen=True)
class SitePower:
    """What :func:`power_like_site` found: the simulated cities' rows and their summaries.

    Attributes
    ----------
    site_id, site_areas, site_frequency
        The site, its market's number of areas and its data's frequency.
    spec, rules, n_cities, seed
        The simulated cities' :class:`CitySpec`, the verdict rules they were
        judged by (converted to the cities' frequency), how many cities and the
        seed.
    rows
        :func:`~dmi_eval.calibration.runner.run`'s rows: one per market and design.
    """

    site_id: str
    site_areas: int
    site_frequency: str
    spec: CitySpec
    rules: VerdictRules
    n_cities: int
    seed: int
    rows: pd.DataFrame

    def table(self) -> pd.DataFrame:
        """One row per planted effect: the primary design's test and the verdict's labels.

        Columns: ``effect, reduction, markets``; ``primary_significant`` (share
        of markets with the primary design's one-sided ``p_lower < alpha``),
        ``primary_covered`` (its interval holds the true post-period change),
        ``closed, displaced, not_closed, inconclusive`` (shares of the
        verdict), ``closed_or_displaced`` (at no effect, the false-closure rate;
        at a true drop, how often it is claimed) and ``error`` (markets where no design could be
        fitted), each share with its Monte Carlo SE in ``*_se``;
        ``median_mde`` of the primary design.
        """
        primary = self.rows[self.rows["design"] == "primary"]
        verdict = self.rows[self.rows["design"] == "verdict"]
        out = []
        for effect in self.spec.effects:
            p = primary[primary["effect"] == effect.name]
            v = verdict[verdict["effect"] == effect.name]
            row: dict[str, object] = {
                "effect": effect.name,
                "reduction": effect.reduction,
                "markets": len(v),
            }
            shares = {
                "primary_significant": p["p_lower"] < self.rules.alpha,
                "primary_covered": covers_truth(p),
                **{label: v["verdict"] == label for label in VERDICTS},
                "closed_or_displaced": v["verdict"].isin(["closed", "displaced"]),
                "error": v["verdict"] == "error",
            }
            for name, hits in shares.items():
                value, se, _ = binomial_share(hits.astype(float))
                row[name], row[f"{name}_se"] = round(value, 4), round(se, 4)
            mde = p["mde"].dropna()
            row["median_mde"] = round(float(mde.median()), 4) if len(mde) else None
            out.append(row)
        return pd.DataFrame(out)

    def summary(self) -> pd.DataFrame:
        """Every design's size, coverage and power: the calibration table of these cities.

        As in ``calibration.csv`` (tests at one-sided 0.05 whatever the study's
        ``alpha``), without the package's targets: these cities are a site's, not
        the calibration study's scenarios.
        """
        scenario = self.rows["scenario"].iloc[0] if len(self.rows) else ""
        return summarise(self.rows, unjudged=[scenario])

    def text(self, *, site_name: str, outcome_label: str) -> str:
        """The answer in words and a plain table, every number read from :meth:`table`
        or (pooled over the effects) from the primary design's rows."""
        t = self.table()
        spec = self.spec
        unit = spec.frequency
        n_pre = spec.min_pre_months
        n_post = spec.post_months[0]
        lines = [
            f"{site_name}: what the verdict would say at sites like it",
            (
                f"{self.n_cities} simulated {'city' if self.n_cities == 1 else 'cities'}, "
                f"{int(t['markets'].sum())} markets (seed "
                f"{self.seed}). Each market: {_areas(spec.market_areas[0])}"
                f"{_capped(self.site_areas, spec.market_areas[0])} at "
                f"{spec.market_rate[0]:.3g}-{spec.market_rate[1]:.3g} {outcome_label} a month "
                f"before the call-in{_what_if(spec)}; comparison areas at "
                f"{spec.donor_rate[0]:.2g}-"
                f"{spec.donor_rate[1]:.2g} a month; overdispersion {spec.dispersion:.2f}; "
                f"at least {n_pre} months before and {n_post} after the call-in ({unit}ly data"
                f"{_resampled(self.site_frequency, unit)}). "
                f"The study's rule: closed when the drop is significant (one-sided p < "
                f"{self.rules.alpha:g}), at least {self.rules.min_reduction:.0%}, still a drop "
                f"of at least {100 * self.rules.lasting_drop():.3g}% over the last "
                f"{self.rules.persistence_text(unit)}, and nearby areas did not rise "
                "significantly."
            ),
            "",
        ]
        header = (
            f"{'true change':<16}{'markets':>8}{'primary p<' + format(self.rules.alpha, 'g'):>16}"
            + "".join(f"{label.replace('_', ' '):>15}" for label in VERDICTS)
        )
        lines.append(header)
        for r in t.itertuples(index=False):
            name = "no effect" if r.reduction == 0 else f"{r.reduction:+.0%}, lasting"
            cells = [f"{name:<16}", f"{r.markets:>8}", f"{_cell(r, 'primary_significant'):>16}"]
            cells += [f"{_cell(r, label):>15}" for label in VERDICTS]
            lines.append("".join(cells))
        lines.append("")
        null = t[t["reduction"] == 0]
        if len(null):
            n = null.iloc[0]
            target = target_of("false_closed_displaced")
            lines.append(
                "At no effect the verdict said closed or displaced at "
                f"{n['closed_or_displaced']:.2f} (SE {n['closed_or_displaced_se']:.2f}) of "
                f"{n['markets']} "
                f"markets (the package's calibration target: {target[0] if target else 'none'})."
            )
        fitted = self.rows[self.rows["design"] == "primary"]
        used = ", ".join(
            f"{design_label(d)} at {k}" for d, k in fitted["primary"].value_counts().items()
        )
        lines.append(f"Primary design: {used} of {len(fitted)} markets.")
        mde = fitted["mde"].dropna()
        if len(mde):
            median = float(mde.median())
            detects = f"{median:.0%}" if np.isfinite(median) else "none (no drop is detectable)"
            lines.append(
                f"Median smallest drop the primary design detects with 80% power (one-sided "
                f"{self.rules.alpha:g}), all markets: {detects}. Its {_level(fitted)} interval "
                f"covered the true change at {_cover(fitted)} of them."
            )
        if t["error"].sum() > 0:
            lines.append("Some markets could not be fitted by any design (column error in --csv).")
        lines += [
            "Shares of markets, with Monte Carlo standard errors in brackets (more cities "
            "narrow them).",
            "What this cannot tell: the cities copy the site's levels, not its city-wide trends "
            "or how exposed its market is to them; no data can tell the latter. A market far "
            "more exposed to city-wide swings than its comparison areas is called closed by "
            "mistake more often (the monthly-exposed scenario of the calibration appendix, "
            "reports/appendix/calibration.md): --exposure 2 simulates markets twice as exposed "
            "as an area. So is a market with a slow trend of its own (the market-trends "
            "scenario): --market-trend 0.05 simulates markets whose own trends have an SD of "
            "0.05 a year.",
        ]
        return "\n".join(lines)


def _what_if(spec: CitySpec) -> str:
    """The simulated markets' own exposure and trend where they differ from the default."""
    times = spec.market_loading_sd / CitySpec().market_loading_sd
    text = ""
    if not np.isclose(times, 1.0):
        text = f", its own exposure to city-wide swings {times:.3g} times an area's"
    if spec.market_trend_sd > 0:
        text += f", a trend of its own (SD {spec.market_trend_sd:.3g} a year, log scale)"
    return text


def _cell(row: object, name: str) -> str:
    value, se = getattr(row, name), getattr(row, f"{name}_se")
    return "-" if pd.isna(value) else f"{value:.2f} ({se:.2f})"


def _areas(n: int) -> str:
    return f"{n} area" if n == 1 else f"{n} areas"


def _capped(site_areas: int, simulated: int) -> str:
    if site_areas == simulated:
        return ""
    return f" (the site's market has {site_areas}; simulated markets have at most {simulated})"


def _resampled(site_frequency: str, unit: str) -> str:
    return (
        ""
        if site_frequency == unit
        else f"; the site's {site_frequency}ly data simulated {unit}ly, so the pre-period fit "
        f"check runs on noisier {unit}ly counts and inconclusive may be more common than at "
        "the site"
    )


def _level(fitted: pd.DataFrame) -> str:
    level = fitted["level"].median()
    return "stated" if pd.isna(level) else f"{level:.0%}"


def _cover(fitted: pd.DataFrame) -> str:
    return f"{float(covers_truth(fitted).mean()):.2f}" if len(fitted) else "-"


def spec_like_site(
    data: SiteData,
    *,
    outcome: str | None = None,
    effects: tuple[Effect, ...] = (
        NULL,
        Effect("-25% sustained", -0.25),
        Effect("-45% sustained", -0.45),
    ),
    n_markets: int = 6,
    exposure: float = 1.0,
    market_trend: float = 0.0,
) -> CitySpec:
    """A :class:`CitySpec` resembling one real site's pre-period.

    The market's monthly level, its number of areas, the donor areas' range
    of levels, the counts' overdispersion (method of moments on the donors'
    pre-period counts around their own means), the pre and post lengths and
    whether the study has area covariates are read from ``data``; everything else keeps the defaults. Simulating
    cities from it and running :func:`dmi_eval.calibration.runner.run` gives
    the size and power the designs would have at a site like this one.

    Parameters
    ----------
    data
        The site's view of its panel (only pre-period counts are read).
    outcome
        Outcome to mimic (default: the site's primary outcome).
    effects
        Effects to simulate.
    n_markets
        Simulated markets per city.
    exposure
        The markets' own loading deviation (one draw shared by their areas and
        outcomes) as a multiple of the default's, which equals one area's own
        deviation: ``CitySpec.market_loading_sd = exposure * 0.32``. The data
        cannot tell it (see the module notes); 2 is the market exposure of the
        calibration's ``monthly-exposed`` stress.
    market_trend
        SD of each simulated market's own slow log-linear trend per year, one
        draw shared by its areas (``CitySpec.market_trend_sd``; default 0: the
        markets trend only as their areas do). The data cannot tell it either;
        the calibration's ``market-trends`` scenario uses 0.05.
    """
    check_exposure(exposure)
    check_market_trend(market_trend)
    outcome = outcome or data.primary_outcome
    freq = "week" if data.frequency == "week" else "month"
    per_month = 12 / PERIODS_PER_YEAR[data.frequency]
    pre = data.pre_mask
    market = data.treated_series(outcome).to_numpy()[pre].astype(float)
    rate = float(market.mean() / per_month)
    donors = data.donor_matrix(outcome).to_numpy()[:, pre].astype(float)
    means = donors.mean(axis=1)
    busy = means > 0
    lo, hi = np.quantile(means[busy] / per_month, [0.1, 0.9]) if busy.any() else (0.3, 3.0)
    var = donors[busy].var(axis=1, ddof=1)
    m = means[busy]
    phi = (
        float(np.clip(np.sum(var - m) / max(np.sum(m**2), 1e-9), 0.01, 2.0)) if busy.any() else 0.15
    )
    n_areas = min(max(len(data.treated_areas), 1), 9)
    pre_months = int(round(data.n_pre * per_month))
    post_months = max(int(round(data.n_post * per_month)), 1)
    n_years = int(np.ceil((pre_months + post_months + 2) / 12))
    return replace(
        CitySpec(),
        covariates=data.panel.covariates is not None,
        frequency=freq,
        n_years=n_years,
        n_markets=n_markets,
        market_areas=(n_areas, n_areas),
        market_rate=(0.9 * rate, 1.1 * rate),
        donor_rate=(float(max(lo, 0.05)), float(max(hi, lo + 0.1))),
        post_months=(post_months, post_months),
        min_pre_months=min(pre_months, 12 * n_years - post_months - 1),
        dispersion=phi,
        effects=effects,
        market_loading_sd=exposure * CitySpec().market_loading_sd,
        market_trend_sd=float(market_trend),
    )


def check_exposure(exposure: float, *, name: str = "exposure") -> None:
    """Raise :class:`ConfigError` (naming ``name``) unless ``exposure`` is a finite number >= 0."""
    _check_what_if(
        exposure,
        name,
        "a finite number of 0 or more (1: the market as exposed to city-wide swings as an area)",
    )


def check_market_trend(market_trend: float, *, name: str = "market_trend") -> None:
    """Raise :class:`ConfigError` (naming ``name``) unless ``market_trend`` is finite and >= 0."""
    _check_what_if(
        market_trend,
        name,
        "the SD of the market's own trend, log per year, a finite number of "
        "0 or more (0: none; 0.05 is about 5% a year)",
    )


def _check_what_if(value: float, name: str, what: str) -> None:
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not (number and np.isfinite(value) and value >= 0):
        raise ConfigError(f"{name}: pass {what}; got {value!r}")


def rules_like_site(rules: VerdictRules, frequency: str, city_frequency: str) -> VerdictRules:
    """A study's verdict rules for a simulated city of ``city_frequency``.

    The cities like a site are weekly or monthly (:func:`spec_like_site`: a
    quarterly site's are monthly), so the rules' period counts are carried over
    as durations: the persistence window (``"4 quarters"`` is 12 months) and
    ``min_pre_periods`` (12 quarters are 36 months). Every threshold is kept;
    the pre-period fit check (``max_pre_rmspe_ratio``) then runs on the city's
    counts, which for a quarterly site are noisier than its own.
    """
    persistence = duration_text(rules.persistence_in(frequency), frequency)
    ratio = DAYS_PER[frequency] / DAYS_PER[city_frequency]
    return replace(
        rules,
        persistence=persistence,
        persistence_periods=None,
        min_pre_periods=max(1, round(rules.min_pre_periods * ratio)),
    )


def power_like_site(
    data: SiteData,
    rules: VerdictRules | None = None,
    *,
    n_cities: int = 10,
    seed: int = DEFAULT_SEED,
    n_jobs: int = 2,
    exposure: float = 1.0,
    market_trend: float = 0.0,
) -> SitePower:
    """The verdict's false-closure rate and power at simulated sites like ``data``.

    Parameters
    ----------
    data
        The site's view of its panel (its pre-period is read).
    rules
        The study's verdict rules (default: the package's), judged in the
        simulated cities with their durations kept.
    n_cities
        Simulated cities, six markets each: no effect, -25% and -45% sustained
        drops in turn. About 10 s of CPU a monthly city.
    seed, n_jobs
        Seed of the first city (city ``c`` uses ``seed + c``); worker processes.
    exposure
        The simulated markets' own exposure to city-wide swings, a multiple of
        one area's (:func:`spec_like_site`).
    market_trend
        SD of the simulated markets' own trend, log per year (:func:`spec_like_site`).

    Examples
    --------
    >>> from dmi_eval.config import load_study
    >>> from dmi_eval.data import load_study_data
    >>> study = load_study("data/synthetic/study.toml")  # doctest: +SKIP
    >>> panel = load_study_data(study).panel  # doctest: +SKIP
    >>> found = power_like_site(panel.site_data(study, "eastside"), study.verdict)  # doctest: +SKIP
    >>> found.table()  # doctest: +SKIP
    """
    if not isinstance(n_cities, int) or n_cities < 1:
        raise ConfigError(f"n_cities: pass a whole number of 1 or more; got {n_cities!r}")
    spec = spec_like_site(data, exposure=exposure, market_trend=market_trend)
    rules = rules_like_site(rules or VerdictRules(), data.frequency, spec.frequency)
    scenario = Scenario(
        f"like-{data.site_id}", f"cities like site {data.site_id}", spec, n_cities, rules=rules
    )
    rows = run((scenario,), seed=seed, n_jobs=n_jobs)
    return SitePower(
        data.site_id,
        len(data.treated_areas),
        data.frequency,
        spec,
        rules,
        n_cities,
        seed,
        rows,
    )


__all__ = [
    "SitePower",
    "check_exposure",
    "check_market_trend",
    "power_like_site",
    "rules_like_site",
    "spec_like_site",
]
