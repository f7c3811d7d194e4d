"""Fit every design to one site, choose the primary design and apply the verdict.

This is the one place that knows which designs a site gets; the analysis
scripts and the CLI call :func:`evaluate_site` and read its frames.

Primary design rule (stated in every site report by :func:`primary_rule_text`):
the first available of synthetic control and controlled ITS; plain ITS when
neither can be fitted. The other designs, micro-level synthetic control among
them, are shown as robustness checks (:data:`PRIMARY_ORDER` says why
microsynth is not primary).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd

from dmi_eval.config import DAYS_PER, Study
from dmi_eval.designs.did import DID
from dmi_eval.designs.its import ITS
from dmi_eval.designs.microsynth import MicroSynth
from dmi_eval.designs.synth import SyntheticControl
from dmi_eval.displacement import catchment_view
from dmi_eval.donor_pool import restrict_donors
from dmi_eval.errors import DesignError
from dmi_eval.inference.parallel import parallel_map
from dmi_eval.inference.placebo import shared_placebo_gaps
from dmi_eval.options import check_choice
from dmi_eval.panel import Panel, SiteData
from dmi_eval.results import EFFECT_COLUMNS, TABLE_COLUMNS, DesignResults, as_rise_test
from dmi_eval.spike import pre_period_spike
from dmi_eval.verdict import PLACEBO_FAIL_SHARE, Evidence, Verdict, WindowEvidence, decide

MIN_MICRO_DONORS = 50
MICRO_PERMUTATIONS = 200
MAX_PLACEBOS = 300
"""Placebo areas drawn (seeded) for the synthetic-control tests when the pool is larger."""
MAX_DONORS = 1000
"""Largest donor pool of a site: a larger one keeps the areas most like the market.

A site with more comparison areas is evaluated on the ``MAX_DONORS`` nearest to
its market in pre-period level and trend (:func:`dmi_eval.donor_pool.restrict_donors`),
the donor-pool restriction Abadie (2021) recommends; it bounds the cost of a site
in a city of ten thousand areas (the synthetic controls refit every placebo area
against the pool). Smaller pools (the shipped study, the calibration cities) are
used whole, so their results do not depend on it."""
PRIMARY_ORDER: tuple[str, ...] = ("sc", "cits", "its")
"""The primary design is the first of these that can be fitted.

Micro-level synthetic control was first until issue #10's calibration reached
it: it is fitted only where exact balance is reachable, which a hot-spot
market of 2-6 busy areas rarely allows (7 of the 900 judged calibration
markets), so the calibration study could not judge it. Its check on markets
where it can be fitted (:mod:`dmi_eval.calibration.microsynth_check`, ``nox -s
calibrate -- --microsynth``: cities with markets of 6-9 areas at 8-18 drug
incidents a month, 50 with no effect and 50 with a sustained -45% drop; the
markets with an exact microsynth solution, about one a city) found its
permutation intervals too narrow, missing the true change on both sides at
no-effect markets and at closures, and its two-sided test rejecting true
nulls too often, while synthetic control at the same markets held its size
(numbers: ``reports/appendix/calibration_microsynth.md``, which that check writes).
Its placebo treated sets are areas drawn anywhere in the city, whose own
deviations from the city-wide factors average out, while a market's areas
share one deviation; so a market drifts further from its synthetic control
than the placebo sets that calibrate its interval (the synthetic control's
noise-standardised test puts that drift into the interval:
:mod:`dmi_eval.inference.noise`). Microsynth is still fitted at every site
with covariates and shown as a robustness check."""
CATCHMENT_SUFFIX = "-catchment"
"""Designs fitted to the catchment areas carry this suffix in the ``design`` column."""


@dataclass(frozen=True)
class SiteEvaluation:
    """Every design fitted to one site, the primary design, the evidence and the verdict.

    Attributes
    ----------
    data
        The site's view of the panel.
    results
        Design name -> results object for the market (treated areas).
    catchment_results
        Design name -> results object for the catchment areas (empty without one).
    primary
        Name of the primary design.
    evidence, verdict
        What the closure rule read, and its answer.
    """

    data: SiteData
    results: dict[str, DesignResults]
    catchment_results: dict[str, DesignResults]
    primary: str
    evidence: Evidence
    verdict: Verdict
    notes: tuple[str, ...] = field(default=())

    @property
    def site_id(self) -> str:
        return self.data.site_id

    def effects(self) -> pd.DataFrame:
        """All designs' effects for this site (catchment designs suffixed), tidy contract.

        A catchment row's ``p_value`` is the one-sided test of a rise
        (:func:`~dmi_eval.results.as_rise_test`).
        """
        frames = [r.effects() for r in self.results.values()]
        for name, r in self.catchment_results.items():
            frames.append(as_rise_test(r.table).assign(design=name + CATCHMENT_SUFFIX))
        if not frames:
            return pd.DataFrame(columns=list(EFFECT_COLUMNS))
        return pd.concat(frames, ignore_index=True)[list(EFFECT_COLUMNS)]

    def table(self) -> pd.DataFrame:
        """All designs' ``table`` rows (effects, level, the three tails, log-ratio ``se``).

        What ``results/effects.csv`` holds; catchment designs suffixed, and their
        ``p_value`` the test of a rise, as in :meth:`effects`.
        """
        frames = [r.table for r in self.results.values()]
        for name, r in self.catchment_results.items():
            frames.append(as_rise_test(r.table).assign(design=name + CATCHMENT_SUFFIX))
        if not frames:
            return pd.DataFrame(columns=list(TABLE_COLUMNS))
        return pd.concat(frames, ignore_index=True)[list(TABLE_COLUMNS)]


def fit_designs(data: SiteData, study: Study) -> tuple[dict[str, DesignResults], tuple[str, ...]]:
    """Fit every design available for ``data``.

    Returns the results by design name and notes on designs that could not be
    used (a :class:`DesignError` is reported, not hidden, and does not stop the
    other designs).
    """
    return _collect([(name, *_fit_one(name, data, study)) for name in DESIGNS])


def _fit_one(name: str, data: SiteData, study: Study) -> tuple[DesignResults | None, str | None]:
    """``(results, None)`` of design ``name``, or ``(None, note)`` saying why it was not used."""
    try:
        fitted = DESIGNS[name](data, study)
    except DesignError as exc:
        return None, f"{name}: not fitted — {exc}"
    except np.linalg.LinAlgError as exc:
        return None, f"{name}: not fitted — numerical failure in the estimator ({exc})"
    if isinstance(fitted, str):
        return None, f"{name}: not used — {fitted}"
    return fitted, None


def _collect(
    fits: list[tuple[str, DesignResults | None, str | None]],
) -> tuple[dict[str, DesignResults], tuple[str, ...]]:
    results = {name: fitted for name, fitted, _ in fits if fitted is not None}
    return results, tuple(note for _, _, note in fits if note is not None)


SPECULATIVE_CATCHMENT = "catchment"
"""The task of :func:`_site_task` that fits the catchment as if synthetic control were primary."""

SC_AND_CATCHMENT = "sc+catchment"
"""The task of :func:`_site_task` that fits synthetic control, then the catchment as if it were
primary: one process, so the catchment's placebo fits (the market's: same donors) are reused."""


def _site_task(data: SiteData, study: Study, task: str) -> Any:
    """One design of the market, or the catchment's fit with synthetic control primary.

    The results' diagnostics, which the verdict's evidence reads from every
    design, are computed here (they are computed once, when first read), so
    that they are computed in the task's worker.
    """
    if task == SC_AND_CATCHMENT:
        with shared_placebo_gaps():
            return _site_task(data, study, "sc"), _site_task(data, study, SPECULATIVE_CATCHMENT)
    if task == SPECULATIVE_CATCHMENT:
        try:
            out = fit_catchment(data, study, "sc")
        except Exception as exc:  # raised by _fit_site only if this fit is the one used
            return exc
        fitted = list(out[0].values())
    else:
        out = _fit_one(task, data, study)
        fitted = [out[0]] if out[0] is not None else []
    for results in fitted:
        getattr(results, "diagnostics", None)
    return out


def _fit_site(
    data: SiteData, study: Study
) -> tuple[dict[str, DesignResults], tuple[str, ...], str, dict[str, DesignResults], tuple]:
    """``(results, notes, primary, catchment results, catchment notes)`` of a site.

    What :func:`fit_designs`, :func:`choose_primary` and :func:`fit_catchment`
    give one after the other, computed concurrently: microsynth runs first
    (with its own workers for its permutation test, and costing milliseconds
    where it cannot be used); then the other designs of the market are
    independent tasks of one :func:`~dmi_eval.inference.parallel_map` (on 2
    cores about halving a site's time). The synthetic control task also fits
    the catchment with synthetic control as the primary design, after the
    market and in the same process, so that the catchment's placebo test reuses
    the market's placebo fits (the same donors refitted on the same donors:
    :func:`~dmi_eval.inference.placebo.shared_placebo_gaps`). The catchment fit is kept only if
    synthetic control is indeed primary (it is refitted otherwise), so the
    results are those of the sequential steps, whatever runs where.
    """
    first, *rest = DESIGNS
    fits = [(first, *_fit_one(first, data, study))]
    speculate = bool(data.catchment_areas) and "sc" in rest
    tasks = [SC_AND_CATCHMENT if t == "sc" and speculate else t for t in rest]
    # the longest first, so that two workers finish together
    order = sorted(range(len(tasks)), key=lambda i: TASK_ORDER.get(tasks[i], len(TASK_ORDER)))
    done = parallel_map(
        partial(_site_task, data, study),
        [tasks[i] for i in order],
        n_jobs=2,
        min_items=2,
        desc=None,
        chunk_size=1,
        probe=False,
        loop="the designs of a site",
    )
    by_task = {tasks[i]: out for i, out in zip(order, done, strict=True)}
    if speculate:
        by_task["sc"], by_task[SPECULATIVE_CATCHMENT] = by_task.pop(SC_AND_CATCHMENT)
    fits += [(name, *by_task[name]) for name in rest]
    results, notes = _collect(fits)
    if "its" not in results:
        return results, notes, "", {}, ()
    primary = choose_primary(results)
    if not data.catchment_areas:
        return results, notes, primary, {}, ()
    if speculate and primary == "sc":
        if isinstance(by_task[SPECULATIVE_CATCHMENT], Exception):
            raise by_task[SPECULATIVE_CATCHMENT]
        catchment, c_notes = by_task[SPECULATIVE_CATCHMENT]
    else:
        catchment, c_notes = fit_catchment(data, study, primary)
    return results, notes, primary, catchment, c_notes


TASK_ORDER = {name: i for i, name in enumerate((SC_AND_CATCHMENT, "sc", "sdid", "did"))}
"""Tasks of :func:`_fit_site` started first (the longest on the synthetic study)."""


def last_k(study: Study) -> int:
    """The persistence window in the study's periods (``[verdict] persistence``)."""
    return study.verdict.persistence_in(study.frequency)


def verdict_options(study: Study) -> dict[str, Any]:
    """What the verdict sets in every design: its persistence window (``last_k``) and the
    one-sided level of the detectable reduction it reads (``mde_alpha = [verdict] alpha``)."""
    return {"last_k": last_k(study), "mde_alpha": study.verdict.alpha}


def _fit_its(data: SiteData, study: Study) -> DesignResults | str:
    return ITS(data, **verdict_options(study)).fit()


def _fit_cits(data: SiteData, study: Study) -> DesignResults | str:
    return ITS(data, comparison="donor_total", **verdict_options(study)).fit()


def _fit_microsynth(data: SiteData, study: Study) -> DesignResults | str:
    """Microsynth, when covariates exist, the pool is large and exact balance is reachable."""
    if data.panel.covariates is None:
        return "the study has no area covariates (areas.csv)"
    if len(data.donor_areas) < MIN_MICRO_DONORS:
        return f"only {len(data.donor_areas)} comparison areas (needs {MIN_MICRO_DONORS})"
    # matched on every outcome of the site, also when only the primary one is evaluated
    outcomes = study.site(data.site_id).outcomes
    first = MicroSynth(
        data, outcomes=outcomes, match_periods="blocks", **verdict_options(study)
    ).fit()
    if first.calibration["method"] != "exact":
        misfit = first.calibration["max_misfit"]
        return (
            "no exact synthetic control exists for this market (the calibration's largest "
            f"relative misfit is {misfit:.0%}); micro-level synthetic control needs the market's "
            "totals to lie within what weighted comparison areas can reproduce"
        )
    return MicroSynth(
        data,
        outcomes=outcomes,
        match_periods="blocks",
        n_permutations=MICRO_PERMUTATIONS,
        seed=study.seed,
        n_jobs=2,
        **verdict_options(study),
    ).fit()


def _fit_sc(data: SiteData, study: Study) -> DesignResults | str:
    # Simplex SC corrected by a factor model whose loadings are fitted on every
    # outcome (issue #10; calibration numbers in dmi_eval.designs.synth.joint).
    # With one outcome the loadings would rest on the drug series alone, a
    # configuration the calibration found to under-cover: simplex SC then.
    return SyntheticControl(
        data,
        method="sc",
        anchor="ratio",
        estimator="augmented" if len(data.panel.outcomes) > 1 else "simplex",
        seed=study.seed,
        max_placebos=MAX_PLACEBOS,
        **verdict_options(study),
    ).fit()


def _fit_sdid(data: SiteData, study: Study) -> DesignResults | str:
    return SyntheticControl(
        data,
        method="sdid",
        seed=study.seed,
        placebo_time=False,
        leave_one_out=False,
        max_placebos=MAX_PLACEBOS,
        **verdict_options(study),
    ).fit()


def _fit_did(data: SiteData, study: Study) -> DesignResults | str:
    return DID(data, seed=study.seed, **verdict_options(study)).fit()


DESIGNS: dict[str, Callable[[SiteData, Study], DesignResults | str]] = {
    "microsynth": _fit_microsynth,
    "sc": _fit_sc,
    "sdid": _fit_sdid,
    "did": _fit_did,
    "cits": _fit_cits,
    "its": _fit_its,
}
"""Design name -> ``fit(data, study)``; returns results, or a string saying why not used."""


def choose_primary(results: dict[str, DesignResults]) -> str:
    """The first fitted design in :data:`PRIMARY_ORDER`."""
    for name in PRIMARY_ORDER:
        if name in results:
            return name
    raise ValueError("no design was fitted")


def primary_rule_text() -> str:
    return (
        "**Primary design.** The first that can be fitted of: synthetic control, controlled "
        "interrupted time series (against the comparison areas' total), interrupted time "
        "series. The others are shown as robustness checks. Micro-level synthetic control is "
        "one of them: its placebo sets of areas scattered over the city drift less than a "
        "market whose areas share their exposure to city-wide swings, so its intervals were "
        "too narrow in the calibration study (`nox -s calibrate -- --microsynth`)."
    )


def _diagnostic(results: DesignResults, outcome: str, column: str, default: float) -> float:
    """One number from a design's ``diagnostics`` (``default`` when it does not report it)."""
    d = results.diagnostics
    if column not in d.columns:
        return default
    rows = d[d["outcome"] == outcome]
    if rows.empty:
        return default
    value = float(rows[column].iloc[0])
    return value if np.isfinite(value) or np.isinf(value) else default


MDE_COLUMNS: dict[str, tuple[str, ...]] = {
    "post": ("mde", "mde_placebo"),
    "last": ("mde_last", "mde_placebo_last"),
}
"""Where a design reports its minimum detectable effect, in order of preference.

``mde`` / ``mde_last`` is the design's own statement; synthetic control reports
its placebo-distribution MDE as ``mde_placebo`` / ``mde_placebo_last``. Every
design's MDE reaches the verdict through these names."""


def _first_diagnostic(
    results: DesignResults, outcome: str, columns: tuple[str, ...], default: float
) -> float:
    """The first of ``columns`` the design reports for ``outcome`` as a number (not NaN)."""
    for column in columns:
        value = _diagnostic(results, outcome, column, float("nan"))
        if not np.isnan(value):
            return value
    return default


def design_mde(results: DesignResults, outcome: str, window: str = "post") -> float:
    """The design's minimum detectable reduction for ``outcome`` over ``window`` (NaN if none).

    The first of :data:`MDE_COLUMNS` the design reports (``mde`` or
    ``mde_placebo``; ``mde_last`` or ``mde_placebo_last`` for a ``last{k}`` window).
    """
    columns = MDE_COLUMNS["post" if window == "post" else "last"]
    return _first_diagnostic(results, outcome, columns, float("nan"))


def window_evidence(results: DesignResults, outcome: str, window: str) -> WindowEvidence:
    """One row of a design's ``table`` with its three tails, and its detectable effect.

    ``mde`` is the first the design reports of :data:`MDE_COLUMNS` (``mde``,
    then ``mde_placebo``; the ``_last`` names for the ``last{k}`` window), NaN
    when it reports none; ``min_p`` its ``diagnostics.min_p`` (0 when absent).
    """
    row = results.row(outcome, window)
    return WindowEvidence(
        design=str(row["design"]),
        window=window,
        pct_change=float(row["pct_change"]),
        ci_low=float(row["ci_low"]),
        ci_high=float(row["ci_high"]),
        p_lower=float(row["p_lower"]),
        p_upper=float(row["p_upper"]),
        p_two_sided=float(row["p_two_sided"]),
        level=f"{100 * float(row['level']):g}%",
        mde=design_mde(results, outcome, window),
        min_p=_diagnostic(results, outcome, "min_p", 0.0),
    )


def design_warnings(
    data: SiteData, results: DesignResults, outcome: str, study: Study
) -> tuple[str, ...]:
    """Warnings that gate *closed* and *displaced*: pre-trend and in-time placebo failures, a pre-period spike.

    * a design that reports a pre-trend test (``diagnostics.pretrend_p``)
      and rejects parallel pre-trends at ``alpha``;
    * the in-time placebo (``checks["placebo_time"]``: fake call-in dates in
      the pre period) finds a significant effect (two-sided ``p < alpha``, or
      ``|z| > 1.96`` where the check reports ``z``) at more than
      :data:`PLACEBO_FAIL_SHARE` of the fake dates (at least two);
    * the market's pre period ends in a spike against its comparison areas
      (:func:`spike_warning`).
    """
    alpha = study.verdict.alpha
    out: list[str] = []
    p_trend = _diagnostic(results, outcome, "pretrend_p", float("nan"))
    if np.isfinite(p_trend) and p_trend < alpha:
        out.append(
            f"The {results.design} pre-trend test rejects parallel trends before the call-in "
            f"(p = {p_trend:.3f}): the comparison areas may not show what the market would "
            "have done."
        )
    placebo = results.checks.get("placebo_time")
    if placebo is not None and len(placebo):
        rows = placebo[placebo["outcome"] == outcome] if "outcome" in placebo else placebo
        hits = None
        if "p_value" in rows:
            p = rows["p_value"].to_numpy(dtype=float)
            p = p[np.isfinite(p)]
            hits, n = int(np.sum(p < alpha)), p.size
        elif "z" in rows:
            z = rows["z"].to_numpy(dtype=float)
            z = z[np.isfinite(z)]
            hits, n = int(np.sum(np.abs(z) > 1.96)), z.size
        if hits is not None and n and hits >= 2 and hits / n > PLACEBO_FAIL_SHARE:
            out.append(
                f"The in-time placebo fails: {hits} of {n} fake call-in dates before the real "
                f"one show a significant {results.design} effect, so the model finds effects "
                "where there were none."
            )
    spike = spike_warning(data, outcome, study)
    if spike is not None:
        out.append(spike)
    return tuple(out)


def spike_warning(data: SiteData, outcome: str, study: Study, *, own: bool = False) -> str | None:
    """The pre-period spike warning of :func:`dmi_eval.spike.pre_period_spike`, or None.

    The market's pre-period counts are compared with the total of its
    comparison (donor) areas, so a rise the comparison areas share is not a
    spike; ``own=True`` compares the market with its own earlier level instead
    (the check before, kept for the calibration study's comparison).
    """
    pre = data.pre_mask
    market = data.treated_series(outcome).to_numpy(dtype=float)[pre]
    comparison = None if own else data.donor_matrix(outcome).to_numpy(dtype=float).sum(axis=0)[pre]
    return pre_period_spike(
        market, study.frequency, comparison=comparison, min_rise=study.verdict.min_reduction
    )


def monthly_fit_ratio(results: DesignResults, outcome: str, frequency: str) -> float:
    r"""The pre-period fit error over the pre-period mean, on (about) monthly totals.

    ``max_pre_rmspe_ratio`` is a share of a month's count. For monthly and
    quarterly data this is the design's own ``pre_fit_ratio``. Weekly counts
    of a market of 8-25 incidents a month (2-6 a week) miss any fit by half
    their mean from counting noise alone, so for weekly data the design's
    pre-period series is summed over blocks of
    ``round(DAYS_PER["month"] / DAYS_PER["week"]) = 4`` weeks (aligned to end
    at the call-in; an incomplete first block is dropped) and the ratio is
    taken on those sums.

    Notes
    -----
    With :math:`g_b = \sum_{t \in b} (y_t - \hat y_t)` and
    :math:`Y_b = \sum_{t \in b} y_t` over the :math:`B` pre-period blocks,
    the ratio is :math:`\sqrt{B^{-1} \sum_b g_b^2} / (B^{-1} \sum_b Y_b)`.
    """
    own = results.pre_fit_ratio(outcome)
    block = max(1, round(DAYS_PER["month"] / DAYS_PER[frequency]))
    if block == 1:
        return own
    s = results.get_plot_data(outcome)
    pre = s[s["role"] == "pre"]
    y = pre["observed"].to_numpy(dtype=float)
    cf = pre["counterfactual"].to_numpy(dtype=float)
    n = (y.size // block) * block
    if n < 2 * block or not np.all(np.isfinite(cf[-n:])):
        return own
    y_b = y[-n:].reshape(-1, block).sum(axis=1)
    gap_b = (y[-n:] - cf[-n:]).reshape(-1, block).sum(axis=1)
    mean = float(y_b.mean())
    return float(np.sqrt(np.mean(gap_b**2)) / mean) if mean > 0 else float("inf")


def build_evidence(
    data: SiteData,
    results: dict[str, DesignResults],
    catchment_results: dict[str, DesignResults],
    primary: str,
    study: Study,
) -> Evidence:
    """Collect what the closure rule reads for the site's primary outcome."""
    outcome = data.primary_outcome
    main = results[primary]
    k = last_k(study)
    pre_mean = float(data.treated_series(outcome).to_numpy()[data.pre_mask].mean())
    others = tuple(
        window_evidence(r, outcome, "post") for name, r in results.items() if name != primary
    )
    catchment = None
    if catchment_results:
        (c_results,) = catchment_results.values()
        catchment = window_evidence(c_results, outcome, "post")
    return Evidence(
        site=data.site_id,
        outcome=outcome,
        post=window_evidence(main, outcome, "post"),
        last=window_evidence(main, outcome, f"last{k}"),
        n_pre=data.n_pre,
        pre_mean=pre_mean,
        pre_fit_ratio=monthly_fit_ratio(main, outcome, study.frequency),
        n_post=data.n_post,
        last_k=k,
        frequency=study.frequency,
        catchment=catchment,
        others=others,
        warnings=design_warnings(data, main, outcome, study),
        outcome_label=study.report.outcome_label(outcome),
    )


def fit_catchment(
    data: SiteData, study: Study, primary: str
) -> tuple[dict[str, DesignResults], tuple[str, ...]]:
    """The catchment's design: the primary one, else the next that can be fitted.

    A design that cannot be used for the catchment (microsynth without an
    exact synthetic control, say) is noted, never passed on as evidence.
    """
    view = catchment_view(data)
    notes: list[str] = []
    start = PRIMARY_ORDER.index(primary) if primary in PRIMARY_ORDER else 0
    for name in PRIMARY_ORDER[start:]:
        try:
            fitted = DESIGNS[name](view, study)
        except DesignError as exc:
            notes.append(f"{name} (catchment): not fitted — {exc}")
            continue
        if isinstance(fitted, str):
            notes.append(f"{name} (catchment): not used — {fitted}")
            continue
        return {name: fitted}, tuple(notes)
    return {}, tuple(notes)


Outcomes = Literal["all", "primary"]
"""Which outcomes :func:`evaluate_site` evaluates: every outcome of the site, or the primary one."""


def primary_outcome_only(data: SiteData) -> SiteData:
    """``data`` with the primary outcome as the site's only outcome (the panel keeps every one).

    What the verdict reads, and nothing else: the site's other outcomes still
    inform the estimators that use them as covariates (microsynth matches on
    every outcome of the study's site; the synthetic control's factors come from
    every outcome of the panel), so the primary outcome's results are those of a
    run on every outcome.
    """
    site = dataclasses.replace(data.site, outcomes=(data.primary_outcome,))
    return dataclasses.replace(data, site=site)


def evaluate_site(
    panel: Panel, study: Study, site_id: str, *, outcomes: Outcomes = "all"
) -> SiteEvaluation:
    """Fit the site's designs, choose the primary one and apply the closure rule.

    Parameters
    ----------
    panel
        The study's panel (from :func:`dmi_eval.data.load_study_data`).
    study
        The validated study (its ``[verdict]`` thresholds are used).
    site_id
        Which site.
    outcomes
        ``"all"``: every outcome of the site (what a report shows); ``"primary"``:
        the primary outcome only (what the verdict reads; the same verdict and
        evidence in about a quarter of the time with four outcomes).
    """
    check_choice("outcomes", outcomes, Outcomes)
    site_data = panel.site_data(study, site_id)
    label = study.report.outcome_label(site_data.primary_outcome)
    data, pool_note = restrict_donors(site_data, MAX_DONORS, label=label)
    if outcomes == "primary":
        data = primary_outcome_only(data)
    results, notes, primary, catchment_results, c_notes = _fit_site(data, study)
    if pool_note is not None:
        notes = (pool_note, *notes)
    if "its" not in results:
        raise DesignError(f"site {site_id!r}: the designs cannot be fitted: " + "; ".join(notes))
    notes = (*notes, *c_notes)
    evidence = build_evidence(data, results, catchment_results, primary, study)
    verdict = decide(evidence, study.verdict)
    return SiteEvaluation(
        data=data,
        results=results,
        catchment_results=catchment_results,
        primary=primary,
        evidence=evidence,
        verdict=verdict,
        notes=notes,
    )
