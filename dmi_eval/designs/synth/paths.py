"""Counterfactual paths of the site-level synthetic control, for the market and each placebo.

:func:`path_for` fits one treated series against donor series: simplex SC,
SDID or DID (:func:`~dmi_eval.designs.synth.core.fit_path`), optionally on
ratio-scaled series, or the generalized synthetic control
(:mod:`dmi_eval.designs.synth.factor`). :func:`placebo_gap_site` is the same fit
for a donor treated as if treated; :func:`factor_count` and
:func:`factor_matrix` give the factor model's number of factors and factors.
"""

from __future__ import annotations

import numpy as np

from dmi_eval.designs.synth.core import Algorithm, PathFit, fit_path
from dmi_eval.designs.synth.factor import (
    choose_n_factors_market,
    city_factors,
    donor_precision,
    factor_path,
)
from dmi_eval.designs.synth.reference import Estimator
from dmi_eval.errors import DesignError


def path_for(
    y1: np.ndarray,
    Y0: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    core_method: str,
    algorithm: Algorithm,
    n_treated: int,
    ratio: bool = False,
    sc_ridge: float = 0.0,
    n_factors: int | None = None,
) -> PathFit:
    """Counterfactual path; ``ratio`` fits series divided by their pre-period means.

    With ``ratio``, donors whose pre-period mean is zero get weight zero and the
    counterfactual is scaled back by the treated unit's pre-period mean.
    ``n_factors`` (SC only) fits the generalized synthetic control with that
    many factors (:mod:`dmi_eval.designs.synth.factor`) instead of simplex weights.
    """
    if n_factors is not None and core_method == "sc":
        return _factor_path_for(y1, Y0, pre, ratio, n_factors)
    if not ratio:
        return fit_path(
            y1, Y0, pre, post, method=core_method, algorithm=algorithm, n_treated=n_treated,
            sc_ridge=sc_ridge,
        )  # type: ignore[arg-type]  # fmt: skip
    s1, valid, Z0 = _scaled(y1, Y0, pre)
    fit = fit_path(
        y1 / s1, Z0, pre, post,
        method=core_method, algorithm=algorithm, n_treated=n_treated, sc_ridge=sc_ridge,
    )  # type: ignore[arg-type]  # fmt: skip
    omega = np.zeros(Y0.shape[0])
    omega[valid] = fit.omega
    return PathFit(fit.cf * s1, omega, fit.lam, fit.intercept * s1)


def _scaled(
    y1: np.ndarray, Y0: np.ndarray, pre: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """``(s1, valid, Z0)``: the treated pre-period mean, the donors with a positive
    pre-period mean, and their series over their pre-period means."""
    s1 = float(y1[pre].mean())
    s0 = Y0[:, pre].mean(axis=1)
    valid = s0 > 0
    if s1 <= 0 or valid.sum() < 2:
        raise DesignError(
            "ratio scaling needs a positive pre-period mean for the treated series and at "
            "least two donors; use level='match' or 'demean'"
        )
    return s1, valid, Y0[valid] / s0[valid, None]


def _factor_path_for(
    y1: np.ndarray, Y0: np.ndarray, pre: np.ndarray, ratio: bool, n_factors: int
) -> PathFit:
    """Generalized SC path (:func:`~dmi_eval.designs.synth.factor.factor_path`)."""
    if not ratio:
        return factor_path(y1, Y0, pre, weights=np.ones(Y0.shape[0]), n_factors=n_factors)
    s1, valid, Z0 = _scaled(y1, Y0, pre)
    fit = factor_path(
        y1 / s1, Z0, pre, weights=donor_precision(Y0[valid], pre), n_factors=n_factors
    )
    omega = np.zeros(Y0.shape[0])
    omega[valid] = fit.omega
    return PathFit(fit.cf * s1, omega, None, fit.intercept * s1)


def placebo_gap_site(
    i: int,
    *,
    Y0: np.ndarray,
    fit_rows: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    core_method: str,
    algorithm: Algorithm,
    ratio: bool,
    sc_ridge: float,
    n_factors: int | None = None,
) -> np.ndarray:
    """Gap of donor ``i`` treated as if treated, fitted on the ``fit_rows`` donors but itself."""
    keep = fit_rows.copy()
    keep[i] = False
    fit = path_for(
        Y0[i], Y0[keep], pre, post, core_method, algorithm, 1, ratio, sc_ridge, n_factors
    )
    return Y0[i] - fit.cf


def factor_count(
    estimator: Estimator,
    n_factors: int | None,
    y1: np.ndarray,
    Y0: np.ndarray,
    pre: np.ndarray,
    core: str,
    ratio: bool,
) -> tuple[int | None, np.ndarray | None]:
    """``(number of factors, CV criterion)``; ``(None, None)`` for simplex weights.

    The number is ``n_factors`` when given, else chosen by cross-validation
    on the market's pre period
    (:func:`~dmi_eval.designs.synth.factor.choose_n_factors_market`);
    the market and every placebo then use it.
    """
    if estimator != "factor" or core != "sc":
        return None, None
    if n_factors is not None:
        return int(n_factors), None
    Z0, a = _factor_inputs(Y0, pre, ratio)
    return choose_n_factors_market(y1, Z0, pre, a)


def _factor_inputs(Y0: np.ndarray, pre: np.ndarray, ratio: bool) -> tuple[np.ndarray, np.ndarray]:
    """Donor series and weights the factor model is fitted to."""
    if not ratio:
        return Y0, np.ones(Y0.shape[0])
    s0 = Y0[:, pre].mean(axis=1)
    valid = s0 > 0
    return Y0[valid] / s0[valid, None], donor_precision(Y0[valid], pre)


def factor_matrix(
    Y0: np.ndarray, pre: np.ndarray, ratio: bool, nf: int | None
) -> np.ndarray | None:
    """The market's factors ``F`` (periods x r), for the placebo test's leverage."""
    if nf is None:
        return None
    Z0, a = _factor_inputs(Y0, pre, ratio)
    return city_factors(Z0, a, nf)[1]
