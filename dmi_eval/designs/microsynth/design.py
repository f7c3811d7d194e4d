"""The site-level micro-synthetic design (``MicroSynth(site_data, ...).fit()``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dmi_eval.designs.microsynth.calibration import (
    MatchPeriods,
)
from dmi_eval.designs.microsynth.inference import MATCH_PERIODS, PRIMARY, SIDED, Primary, Sided
from dmi_eval.designs.microsynth.model import fit_microsynth
from dmi_eval.designs.microsynth.results import MicroSynthResults
from dmi_eval.errors import DesignError
from dmi_eval.options import check_alpha, check_last_k, check_level
from dmi_eval.panel import SiteData

# ---------------------------------------------------------------------------
# site level


class MicroSynth:
    """Micro-level synthetic control for one DMI site.

    Parameters
    ----------
    site_data
        The site's view of the panel. Treated units are the site's treated
        areas; control units its donor areas (catchment areas are never
        controls). The transition period is left out as configured.
    outcomes
        Outcomes to match and report (default: the site's outcomes).
    covariates
        ``True``: match every area covariate exactly (none when the study has
        no areas file); ``False``: outcomes only; or a list of covariate names.
    match_periods
        ``"each"`` pre period, ``"blocks"`` of ``block_length`` periods, or the
        pre-period ``"total"``. With monthly data and few donors, ``"blocks"``
        keeps the number of constraints manageable.
    block_length
        Periods per block for ``match_periods="blocks"``.
    level
        Confidence level of the intervals (default 0.90, as the Seattle
        evaluation).
    mde_alpha
        One-sided level of the test whose minimum detectable reduction the
        diagnostics report (``mde``, ``mde_last``; default 0.05; the site path
        passes the verdict's ``alpha``).
    sided
        ``"lower"`` (default, as the Seattle evaluation), ``"two-sided"``, ``"greater"``.
    n_permutations
        Placebo treated sets drawn from all treated and donor areas (0: none).
    jackknife
        Jackknife over groups of areas (needs at least two treated areas).
    last_k
        ``k`` of the ``"last{k}"`` window (the last ``min(k, n_post)`` post periods).
    primary
        Inference behind :meth:`MicroSynthResults.effects`: ``"auto"`` is the
        permutation test when run, else jackknife when run, else linearization.
    seed
        Required with permutations or jackknife (use the study's seed).
    n_jobs
        Worker processes for the placebo weights; results do not depend on it.
    fallback
        Least-squares fallback when exact balance is infeasible.

    Notes
    -----
    See :func:`fit_microsynth` for the estimator. The verdict's one-sided
    p-value for a reduction is :meth:`MicroSynthResults.p_lower`.
    """

    def __init__(
        self,
        site_data: SiteData,
        *,
        outcomes: Sequence[str] | None = None,
        covariates: bool | Sequence[str] = True,
        match_periods: MatchPeriods = "each",
        block_length: int = 3,
        level: float = 0.90,
        mde_alpha: float = 0.05,
        sided: Sided = "lower",
        n_permutations: int = 0,
        jackknife: bool = False,
        last_k: int = 6,
        primary: Primary = "auto",
        seed: int | None = None,
        n_jobs: int = 1,
        fallback: bool = True,
    ) -> None:
        if not isinstance(site_data, SiteData):
            raise TypeError("site_data must be a dmi_eval.panel.SiteData")
        if match_periods not in MATCH_PERIODS:
            raise ValueError(
                f"match_periods must be one of {', '.join(MATCH_PERIODS)}; got {match_periods!r}"
            )
        if sided not in SIDED:
            raise ValueError(f"sided must be one of {', '.join(SIDED)}; got {sided!r}")
        if primary not in PRIMARY:
            raise ValueError(f"primary must be one of {', '.join(PRIMARY)}; got {primary!r}")
        check_level(level)
        check_last_k(last_k)
        for key, val, low in (
            ("n_permutations", n_permutations, 0),
            ("block_length", block_length, 1),
            ("n_jobs", n_jobs, 1),
        ):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < low:
                raise ValueError(f"{key} must be an integer >= {low}; got {val!r}")
        if not isinstance(jackknife, bool):
            raise ValueError(f"jackknife must be True or False; got {jackknife!r}")
        if (n_permutations > 0 or jackknife) and seed is None:
            raise ValueError("seed is required with n_permutations > 0 or jackknife=True")
        outs = tuple(site_data.outcomes if outcomes is None else outcomes)
        unknown = [o for o in outs if o not in site_data.panel.outcomes]
        if not outs or unknown:
            raise ValueError(f"outcomes not in the panel: {unknown or 'none given'}")
        if not isinstance(covariates, bool):
            covariates = tuple(covariates)
        self.site_data = site_data
        self.outcomes = outs
        self.covariates = covariates
        self.match_periods = match_periods
        self.block_length = int(block_length)
        self.level = float(level)
        self.mde_alpha = check_alpha(float(mde_alpha))
        self.sided = sided
        self.n_permutations = int(n_permutations)
        self.jackknife = jackknife
        self.last_k = int(last_k)
        self.primary = primary
        self.seed = seed
        self.n_jobs = int(n_jobs)
        self.fallback = fallback
        if site_data.n_pre < 1:
            raise DesignError(
                f"site {site_data.site_id!r}: microsynth needs at least one pre period"
            )

    def fit(self) -> MicroSynthResults:
        """Compute the weights, effects and requested inference."""
        sd = self.site_data
        units = list(dict.fromkeys([*sd.treated_areas, *sd.donor_areas]))
        used = sd.used_mask
        periods = sd.periods[used]
        pre = sd.periods[sd.pre_mask]
        post = sd.periods[sd.post_mask]
        k = min(self.last_k, len(post))
        windows = {"post": list(post), f"last{self.last_k}": list(post[-k:])}
        counts = {o: sd.area_matrix(o, units).loc[:, periods] for o in self.outcomes}
        cov = None
        if self.covariates is not False:
            cov = sd.covariates(units)
            if cov is not None:
                if self.covariates is not True:
                    missing = [c for c in self.covariates if c not in cov.columns]
                    if missing:
                        raise DesignError(
                            f"site {sd.site_id!r}: covariates {missing} not in the areas file"
                        )
                    cov = cov.loc[:, list(self.covariates)]
                cov = cov.select_dtypes("number")
        return fit_microsynth(
            counts,
            sd.treated_areas,
            list(pre),
            windows,
            covariates=cov,
            match_periods=self.match_periods,
            block_length=self.block_length,
            level=self.level,
            mde_alpha=self.mde_alpha,
            sided=self.sided,
            n_permutations=self.n_permutations,
            jackknife=self.jackknife,
            primary=self.primary,
            seed=self.seed,
            n_jobs=self.n_jobs,
            fallback=self.fallback,
            site=sd.site_id,
        )
