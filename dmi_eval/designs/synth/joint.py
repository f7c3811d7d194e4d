"""Generalized synthetic control fitted on every outcome of the panel jointly.

The generalized synthetic control of :mod:`dmi_eval.designs.synth.factor`
fits the market's loadings on the city-wide factors from its own pre-period
series of one outcome. Over 24 to 48 monthly counts of 8 to 25 incidents
those loadings are about as uncertain as they are spread, so the extrapolated
counterfactual is hardly better than simplex weights. When the market's
exposure to the factors is a property of the place (the same for drug and
violent incidents, as in :mod:`dmi_eval.calibration.city`), every outcome's
pre-period series informs the same loadings: this estimator pools the
outcomes, in the factors and in the market's fit.

With ``z_{o,it}`` donor ``i``'s counts of outcome ``o`` over their pre-period
mean and ``a_{o,i} = 1 / (1 / m_{o,i} + phi_o)`` its precision (as in
:func:`~dmi_eval.designs.synth.factor.donor_precision`; every donor with a
positive pre-period mean is used, a quiet one with a small weight):

.. math::

    \\delta_{o,t} = \\frac{\\sum_i a_{o,i} z_{o,it}}{\\sum_i a_{o,i}}, \\quad
    W_i = \\sum_o a_{o,i}, \\quad
    v_i = \\frac{1}{W_i} \\sum_o a_{o,i} (c_{o,i} - d_o), \\quad
    G = \\sum_i W_i v_i v_i', \\quad
    F = \\text{the first } r \\text{ eigenvectors of } G

(``c_{o,i}`` the series ``z_{o,i}`` less its mean over all periods, ``d_o``
the same for ``delta_o``; ``v_i`` is area ``i``'s two-way residual averaged
over its outcomes, since they share its loadings, and ``F`` are the right
singular vectors of the weighted ``v_i``). The market's counts ``y_{o,t}``
of every outcome with a positive pre-period total are fitted by one
quasi-Poisson regression over the pre period,

.. math::

    \\log E\\, y_{o,t} = \\log \\delta_{o,t} + c_o + F_t' b

(an intercept per outcome, loadings ``b`` shared), and the counterfactual of
the outcome evaluated is ``delta_{1,t} exp(c_1 + F_t' b)``. A placebo area is
fitted the same way on the donors without it: ``G`` is kept as sums over the
areas (:class:`~dmi_eval.designs.synth.donor_sums.PooledDonors`) from which one area's terms are removed exactly, so
a placebo costs one ``T x T`` eigen-decomposition and a small regression.

The augmented estimator (``estimator="augmented"``, in the spirit of the
augmented SC of Ben-Michael, Feller & Rothstein 2021 with this factor model as
the outcome model) keeps the simplex SC weights ``w`` and replaces
``delta_{o,t}`` by the synthetic control ``w'z_{o,t}`` of every outcome (the
same weights on each outcome's ratio-scaled donors): the shared loadings then
correct only the part of the market's path that its synthetic control misses.
With ``r = 0`` it is the ratio-scaled simplex SC.

Calibration (scratch study of gsc4, issue #10: the counterfactual alone, no
placebos; 20 cities = 180 markets per scenario, seeds as ``nox -s calibrate``;
error = log of the market's expected post-period drug count without the
intervention over the estimator's; mean / RMSE; ``r = 3``):

===============  ==============  ==============  ==============  ==============
scenario         simplex SC      joint           augmented       factor (drug,
                                                                 CV ``r``)
===============  ==============  ==============  ==============  ==============
monthly-long     -0.011 / 0.192  -0.018 / 0.178  -0.013 / 0.181  -0.012 / 0.183
monthly-short    -0.024 / 0.164  -0.022 / 0.163  -0.018 / 0.156  -0.020 / 0.169
weekly-long       0.007 / 0.147  -0.011 / 0.146   0.003 / 0.148   0.007 / 0.149
monthly-exposed  -0.023 / 0.344  -0.009 / 0.316  -0.004 / 0.302  -0.021 / 0.346
===============  ==============  ==============  ==============  ==============

Paired differences of the squared error, augmented less simplex (SE):
-0.027 (0.009) monthly-exposed, -0.004 (0.002) monthly-long, -0.003 (0.002)
monthly-short, 0.000 (0.001) weekly-long. Simplex SC fitted on both outcomes'
pre-series (one set of weights) gave 0.339 in monthly-exposed and the ridge
augmented SC (a ridge regression of the post periods on the pre periods
across donors) 0.328.
A placebo fit costs about 4 ms (simplex), 5 ms (joint), 8 ms (augmented) in
monthly cities and 6, 20 and 22 ms in weekly ones (one BLAS thread on a loaded
machine; the weekly ``T x T`` eigen-decomposition dominates) once the site's
decomposition is made. The gain comes from the second
outcome: the same factors with the loadings fitted on drug counts alone gave
0.292 in monthly-exposed (joint), and grouping donor areas into contiguous
blocks before the decomposition changed little (0.247 to 0.280 by block
size). With ``r`` from 1 to 5 the joint errors moved by less than 0.01 except
in monthly-exposed (0.276 to 0.255). A ridge on the loadings (prior SD 0.5)
made them worse. City by city the gain is uneven: it comes mostly from the
markets where simplex SC fails badly (a market far outside its donors).

Placebo test (``nox -s calibrate`` cities, 10 per scenario, the site path with
the augmented estimator as the site SC; simplex SC on the same cities in
brackets, design level): the pre-period leverage of the noise-standardised
test matters. With the drug-only factor leverage every placebo's noise was
overstated, the drift variance understated and the intervals too narrow
(coverage 0.78 monthly-exposed, 0.86 monthly-long on 4-5 cities); with none
(``h = 1``) they were too wide (0.93, 1.00) and no more powerful than simplex.
With the joint fit's leverage (:meth:`JointSite.leverage_factors`):

===============  =============  ==============  ===========  ===============
scenario         size           coverage (90%)  power -45%   verdict: false
                                                             closed /
                                                             detection
===============  =============  ==============  ===========  ===============
monthly-long     0.025 (0.025)  0.911 (0.933)   0.93 (0.88)  0.025 / 0.900
monthly-short    0.000 (0.000)  0.944 (0.944)   0.53 (0.48)  0.000 / --
weekly-long      0.000 (0.025)  0.944 (0.944)   0.90 (0.90)  0.000 / 0.875
monthly-exposed  0.025 (0.075)  0.867 (0.889)   0.78 (0.63)  0.025 / 0.750
===============  =============  ==============  ===========  ===============

(40 no-effect and 40 sustained -45% markets per scenario; detection = sustained
-45% closures called *closed*, 0.722 in monthly-exposed where the market has
at least 10 incidents a month, target 0.80; before, with simplex SC on 15
cities: 0.593.) Every target met with simplex SC stayed met, and monthly-exposed
improved, so the augmented estimator is the site SC
(:func:`dmi_eval.evaluation._fit_sc`). The joint estimator on 10 cities (with
the drug-only leverage) over-rejected in monthly-long (size 0.10), so it is an
option only.

The full study (``nox -s calibrate``: 15 cities, 60 no-effect and 60
sustained -45% markets per scenario, primary design and verdict; simplex SC
before in brackets) confirmed it: monthly-long size 0.033 (0.033), coverage
0.904 (0.918), false *closed* 0.033 (0.033), detection 0.895 (0.860);
monthly-short 0.000 (0.000), 0.926 (0.941), 0.000 (0.000); weekly-long 0.000
(0.017), 0.948 (0.948), 0.000 (0.017), 0.865 (0.865); monthly-exposed 0.067
(0.100), 0.807 (0.844), 0.067 (0.100), 0.648 (0.593). Coverage in
monthly-exposed fell while size, false *closed* and detection improved: the
market's error is smaller but, relative to the placebos' spread, still larger
than a placebo area's.

Why monthly-exposed still misses (scratch diagnosis on the simulator's truth,
issue #10; the ``nox -s calibrate`` cities, seed 20240601, 10 cities = 90
markets a scenario, weekly 6 = 54). Log RMSE of the market's post-period
counterfactual as fitted / refitted on the true factors (the loadings still
fitted on the counts) / on the true factors and area trends with noise-free
market series / the true path with only its level fitted (counting noise):

===============  =====  ============  ===================  ==========
scenario         as is  true factors  + noise-free market  level only
===============  =====  ============  ===================  ==========
monthly-exposed  0.259  0.163         0.116                0.065
monthly-long     0.168  0.168         0.143                0.075
monthly-short    0.154  0.143         0.108                0.089
weekly-long      0.126  0.151         0.082                0.057
===============  =====  ============  ===================  ==========

With the estimated factors and a noise-free market series the error stays
0.241 in monthly-exposed: the donors' factor estimate, not the market's
loadings or its counts, is most of the error there (about 60% of its
variance); elsewhere the factors hardly matter. The donors' eigenvalues barely
leave the noise bulk (the first 2.4 times the 21st in a stress city), and the
estimated factors explain 64-79% of each true factor's variance in a stress
city, 4-34% in a default one. Against the placebo test, the market's log-ratio
error at the truth has RMSE 0.263 where the test's ``sqrt(tau^2 + v_1)`` is
0.216 (SD of the market's ``z`` at the truth 1.26); 0.182 against 0.203
(0.93) in monthly-long, 0.195 against 0.278 (0.88) monthly-short, 0.158
against 0.188 (0.85) weekly-long. Placebo areas' drift grows with their true
exposure (mean ``L^2 - v`` 0.021, 0.048, 0.075 over exposure quantiles 0-50,
50-80, 80-100%; markets above the median exposure 0.082 where the test's
``tau^2`` was 0.032), and a market's true loading deviation from its synthetic
control is 1.14 (RMS) against 0.76 for a placebo area in monthly-exposed
(0.78 against 0.76 in monthly-long): the market is further out than the
placebos that calibrate its drift.

Tried and not adopted (same cities): (a) smoothing the donors' residuals
before the decomposition (``G`` projected on its DCT components slower than
6 months; 8 cities, weekly 5): RMSE 0.274 to 0.233 in monthly-exposed with
``r = 4``, but 0.149 to 0.159 monthly-long, 0.166 to 0.190 monthly-short,
0.110 to 0.123 weekly-long; a 12-month cut-off gave 0.205 in monthly-exposed
and 0.235 in monthly-long, and slower ones extrapolate wildly (RMSE above
0.7). Six unsmoothed factors: 0.261, 0.160, 0.163, 0.111. (b) A drift
variance per unit, ``tau_j^2 = tau_0^2 + tau_1^2 c_j^2`` with ``c_j`` the log
ratio of the augmented to the simplex synthetic control over the window,
fitted on the placebos by a weighted meta-regression: the market's ``|c|``
correlates only 0.32 with its error in monthly-exposed, the placebos' fit
lowers ``tau_0^2`` below the shared ``tau^2`` and the slope rarely lifts the
market's drift. Full site path on 6 cities a scenario (54 markets; size /
coverage / false *closed* / detection, before -> after): monthly-long 0.042 /
0.963 / 0.042 / 0.955 -> 0.125 / 0.870 / 0.042 / 0.864; monthly-exposed
0.042 / 0.852 / 0.042 / 0.619 -> 0.042 / 0.833 / 0.042 / 0.619. Raising only
the market's drift to ``max(tau^2, tau_0^2 + tau_1^2 c_1^2)`` changed none of
these eight numbers. (c) The pre-period excess misfit of the market's simplex
or augmented synthetic control (squared log ratio over 3-, 6- or 12-month
blocks less its counting variance) as its exposure: negative on average (the
weights fit the pre-period noise) and unrelated to the market's error
(correlation with its ``z^2`` at the truth between -0.27 and 0.13).
(d) The donors' factor-estimation error as a variance of the market (calib6):
a delete-one-donor jackknife of the market's log counterfactual over the
window, ``V = (n - 1) / n sum_i (L_(i) - Lbar)^2`` (each ``F_(i)`` from
:meth:`~dmi_eval.designs.synth.donor_sums.PooledDonors.matrix`, the simplex weights fixed or refitted), whose excess
over the mean (or median, or ``1 / (tau^2 + v_j)``-weighted mean) jackknife
variance of 20 seeded placebos would be added to ``v_1``. On the simulator's
truth (seed 20240601, 8 cities = 72 markets a scenario, weekly 4 = 36; post
window; a jackknife over 20 groups of donors correlates 0.80-0.92 with the
exact one): the market's ``V`` is 0.0065 exact (0.0054 in 20 groups, 0.0085
with the weights refitted) in monthly-exposed, where its squared error at the
truth exceeds ``tau^2 + v_1`` by 0.030 on average (0.077 against 0.047);
0.0036 in monthly-long, 0.0040 monthly-short, 0.0007 weekly-long (20
groups). A placebo area's ``V``
is 8-12 times the market's (median ratio; mean 0.072 in monthly-exposed,
0.031, 0.029, 0.006 elsewhere): its loadings, fitted on one area's counts,
are large and noisy. So the excess is zero at 74-100% of markets in every
scenario and the normal coverage of the market's statistic at the truth moves
0.819 -> 0.819-0.833 in monthly-exposed (0.944, 0.931, 0.917 unchanged
elsewhere). Even the market's whole ``V`` added (no reference) gives only
0.847 (0.861 refitted) in monthly-exposed while widening the others (to
0.944-0.958, 0.944-0.958, 0.917-0.944); its correlation with the
squared error is 0.38 in monthly-exposed and -0.14 to 0.30 elsewhere. A donor
bootstrap (30 resamples, factors only) is smaller still (0.0017 market
against 0.0146 placebos in monthly-exposed; no market above its placebos).
The reason, at the truth: the market's counterfactual with the estimated
factors differs from its refit on the 3 true factors by a mean square of
0.066 in monthly-exposed (RMSE 0.278 as fitted, 0.168 with the true factors)
and 0.028 in monthly-long, 10 and 8 times its jackknife ``V`` (correlation
0.41, 0.20). The error of the estimated factor space is mostly systematic
given the city (factors that barely leave the noise bulk are missed), not
variance across donors, which is all that resampling donors measures. Cost,
had it worked: 0.12-0.17 s CPU per market and outcome for the exact
jackknife (monthly, 148-195 donors), 0.02-0.03 s in 20 groups (0.10 s
weekly).
(e) The city's other markets in the factors (calib7): busy, exposed series
that should reveal the weak factors the quiet donors miss. Each other market's
total of every outcome, ratio-scaled by its own pre-period mean and weighted
by its precision (times 1, 5 or 25), joins the donors' rows of ``G``; its
months from its own call-in on are missing and filled by EM (15 rounds of
fitting its observed months on the current factors and imputing the rest).
The market's own series stays out. Log RMSE of the market's post-period
counterfactual (8 cities = 72 markets a scenario, seed 20240601, the site's
simplex weights kept): monthly-exposed 0.278 as is, 0.262 / 0.248 / 0.273
with the other markets at 1 / 5 / 25 times their precision (no-effect markets
0.262 -> 0.245 / 0.225 / 0.253); monthly-long 0.158 -> 0.160 (1 times). That
is at best about a third of what the true factors gain (0.259 -> 0.163 on the
10 cities above, whose first 8 these are); it would need every other site's
series inside a site's fit, and a study of one market gains nothing: not
adopted.
(f) The market's own out-of-sample errors in its pre period (calib8): the
augmented path refitted on the pre period cut at rolling origins (every 6 or
12 months back, at least 18 months kept) and its log ratio over the next 6 or
12 months, less its counting variance, averaged as the market's drift ``D``
(12 cities = 108 markets a scenario, seed as ``nox -s calibrate``). ``D`` is
0.74, 0.71 and 0.39 of the placebos' ``tau^2`` in monthly-exposed,
monthly-long and monthly-short (6-month windows, 3.4 and 4.8 of them), while
the market's squared error at the truth less ``v_1`` is 1.14, 0.75 and 0.35
of it; its correlation with that error is 0.13, -0.05 and -0.11 (0.10, -0.07,
-0.08 with 12-month windows). The pre-period fit absorbs the market's own
exposure, so its out-of-sample errors look like any market's: the normal
coverage of ``max(tau^2, D)`` moved 0.852 -> 0.880 in monthly-exposed and
0.935 -> 0.954 in monthly-long, the same as widening every interval by 15%:
not adopted.

Pooling the outcomes by area (adopted; the tables above are of the earlier
estimator, which stacked each outcome's donors as rows of ``G`` and so took the
difference of an area's drug and violent noise for signal). The pooled factors
hold 0.68 of the true factors' variance against 0.62 stacked
(``tests/test_synth_joint.py``); the counterfactual's log RMSE (20 cities, the
site's simplex weights kept) fell 0.281 -> 0.267 in monthly-exposed (paired SE
0.0030) and by at most 0.005 elsewhere. Stacked -> pooled on the same cities,
in-house (``nox -s calibrate``, 40 cities a scenario; the pooled rows are
``reports/results/calibration.csv``) and held out (an independent scratch
simulator: irregular Delaunay areas, an AR(1) factor beside three random
walks, area-specific dispersion; 44 cities, 283-294 markets a setting):

================  =============  =============  =============  =============
setting           size           coverage 90%   false c/d      RMSE at -45%
================  =============  =============  =============  =============
monthly-long      0.025 / 0.025  0.903 / 0.900  0.019 / 0.013  0.187 / 0.184
monthly-short     0.031 / 0.044  0.925 / 0.919  0.025 / 0.037  0.228 / 0.223
weekly-long       0.025 / 0.037  0.919 / 0.922  0.013 / 0.019  0.160 / 0.158
monthly-exposed   0.062 / 0.075  0.853 / 0.847  0.056 / 0.062  0.251 / 0.237
held-out monthly  0.034 / 0.055  0.901 / 0.866  0.028 / 0.048  0.237 / 0.230
held-out weekly   0.048 / 0.055  0.903 / 0.889  0.034 / 0.027  0.190 / 0.187
held-out trends   0.082 / 0.082  0.830 / 0.827  0.082 / 0.068  0.277 / 0.271
================  =============  =============  =============  =============

In-house, power at -45% rose in every scenario and detection in
monthly-exposed 0.770 -> 0.813 (its target 0.80); the RMSE fell in 11 of 13
scenarios. Held out, the intervals are 1-9% narrower, which cost the monthly
setting 3.5 points of coverage (paired SE 1.6), to just below its 0.87 target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import get_lapack_funcs

from dmi_eval.designs.synth.core import PathFit
from dmi_eval.designs.synth.donor_sums import OutcomeDonors, PooledDonors
from dmi_eval.designs.synth.factor import poisson_fit
from dmi_eval.designs.synth.paths import path_for
from dmi_eval.panel import SiteData

JOINT_FACTORS = 3
"""Default number of factors of the joint estimator (see the module notes)."""
MIN_PRE_FOR_FACTORS = 24
"""Fewest pre periods for the factor correction; every calibration city has at least this
many (24 pre months; weekly cities more). With 12 pre quarters even one factor let some
placebos' extrapolated counterfactuals explode (synthetic counts of 1e9 where 10-50 were
observed, drift variance 6.3 instead of 0.14), so a shorter pre period gets simplex SC."""


def default_factors(n_pre: int) -> int:
    """:data:`JOINT_FACTORS`, or 0 (the ratio-scaled simplex SC) below
    :data:`MIN_PRE_FOR_FACTORS` pre periods: the configuration is used only where it was
    calibrated."""
    return JOINT_FACTORS if n_pre >= MIN_PRE_FOR_FACTORS else 0


class JointFactorModel:
    """The city's factors from every outcome's donors, fitted once per site.

    Parameters
    ----------
    Y0s
        One ``(J, T)`` donor count matrix per outcome, the same ``J`` donors in
        the same order; the first is the outcome evaluated.
    pre
        Pre-period mask.
    n_factors
        Number of factors ``r``.
    """

    def __init__(self, Y0s: Sequence[np.ndarray], pre: np.ndarray, n_factors: int) -> None:
        if n_factors < 0:
            raise ValueError(f"n_factors must be >= 0, got {n_factors}")
        self.pre = np.asarray(pre, dtype=bool)
        self.n_factors = int(n_factors)
        self.Y0s = tuple(np.asarray(Y, dtype=float) for Y in Y0s)
        self.blocks = tuple(OutcomeDonors.of(Y, self.pre) for Y in self.Y0s)
        n_donors = self.Y0s[0].shape[0] if self.Y0s else 0
        self.pooled = PooledDonors.of(self.blocks, n_donors, self.pre.size)

    def factors(self, exclude: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """``(deltas, F)``: each outcome's common path and the ``(T, r)`` factors.

        ``exclude`` leaves one donor out of every outcome (a placebo).
        """
        T = self.pre.size
        sums = [blk.sums_without(exclude) for blk in self.blocks]
        deltas = [az / A for _, A, az in sums]
        r = min(self.n_factors, T)
        if r == 0:
            return deltas, np.zeros((T, 0))
        G = self.pooled.matrix(np.vstack([s / A for s, A, _ in sums]), exclude)
        return deltas, _top_eigenvectors(G, r)[:, ::-1]

    def path(
        self,
        y1s: Sequence[np.ndarray],
        exclude: int | None = None,
        *,
        weights: np.ndarray | None = None,
    ) -> PathFit:
        """Counterfactual counts of ``y1s[0]`` from the loadings fitted on every ``y1s``.

        ``y1s`` are the unit's counts of each outcome (the scale matters: the
        fit is Poisson). ``omega`` of the result are the donors' shares of the
        first outcome's common path (zero for donors not used); the loadings
        are not donor weights. ``weights`` (one per donor, e.g. simplex SC
        weights) replace the common paths ``delta_o`` by the weighted mean of
        the donors' ratio-scaled series of each outcome (the augmented
        estimator: the loadings then correct the synthetic control).
        """
        deltas, F = self.factors(exclude)
        pre = self.pre
        if weights is not None:
            deltas = [
                self._synthetic(blk, weights, d) for blk, d in zip(self.blocks, deltas, strict=True)
            ]
        use = [
            o
            for o, y in enumerate(y1s)
            if o == 0 or float(np.asarray(y, dtype=float)[pre].sum()) > 0
        ]
        offs = [np.log(np.maximum(deltas[o], 1e-9)) for o in use]
        coef = joint_poisson([np.asarray(y1s[o], dtype=float) for o in use], offs, F, pre)
        cf = np.exp(np.clip(offs[0] + coef[0] + F @ coef[len(use) :], -30, 30))
        blk = self.blocks[0]
        omega = np.zeros(self.Y0s[0].shape[0])
        a = blk.a.copy()
        if exclude is not None:
            a[blk.rows == exclude] = 0.0
        omega[blk.rows] = a / a.sum()
        return PathFit(cf, omega, None, float(coef[0]))

    @staticmethod
    def _synthetic(blk: OutcomeDonors, weights: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """``w'z`` over the block's donors (``delta`` if none of them is weighted)."""
        w = np.asarray(weights, dtype=float)[blk.rows]
        return w @ blk.Z / w.sum() if w.sum() > 0 else delta

    def placebo_gap(self, i: int) -> np.ndarray:
        """Gap of donor ``i`` treated as if treated, fitted on the other donors."""
        fit = self.path([Y[i] for Y in self.Y0s], exclude=i)
        return self.Y0s[0][i] - fit.cf


_SYEVR: dict[int, tuple] = {}


def _top_eigenvectors(G: np.ndarray, r: int) -> np.ndarray:
    """Eigenvectors of the ``r`` largest eigenvalues of the symmetric ``G``, ascending.

    ``scipy.linalg.eigh(G, subset_by_index=[T - r, T - 1])`` without its
    argument checks and workspace query, which cost as much as the LAPACK call
    (``dsyevr``, the driver ``eigh`` uses, with the same arguments and
    workspace: the same numbers) for the ``T x T`` matrix of every placebo.
    """
    if not np.isfinite(G).all():
        raise ValueError("the factors' matrix must not contain infs or NaNs")  # as eigh
    T = G.shape[0]
    if T not in _SYEVR:
        drv, drv_lwork = get_lapack_funcs(("syevr", "syevr_lwork"), (G,))
        work, iwork, info = drv_lwork(n=T, lower=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"dsyevr workspace query failed (info={info})")
        _SYEVR[T] = (drv, int(work), int(iwork))
    drv, lwork, liwork = _SYEVR[T]
    _, vec, m, _, info = drv(
        a=G, compute_v=1, range="I", il=T - r + 1, iu=T, lower=True, lwork=lwork, liwork=liwork
    )
    if info != 0:
        raise np.linalg.LinAlgError(f"dsyevr failed (info={info}) on the factors' matrix")
    return vec[:, :m]


def joint_poisson(
    ys: Sequence[np.ndarray],
    offsets: Sequence[np.ndarray],
    F: np.ndarray,
    pre: np.ndarray,
    *,
    max_iter: int = 50,
    tol: float = 1e-9,
) -> np.ndarray:
    """``(c_1, ..., c_k, b)`` of ``log E y_{o,t} = offset_{o,t} + c_o + F_t' b`` over ``pre``.

    :func:`~dmi_eval.designs.synth.factor.poisson_fit` on the stacked pre
    periods of the ``k`` outcomes, with ``k`` intercepts (each started at its
    outcome's log ratio of counts to offsets) and the tiny ridge on ``b``.
    """
    k, r, n = len(ys), F.shape[1], int(pre.sum())
    X = np.zeros((k * n, k + r))
    for o in range(k):
        X[o * n : (o + 1) * n, o] = 1.0
        X[o * n : (o + 1) * n, k:] = F[pre]
    y = np.concatenate([np.asarray(v, dtype=float)[pre] for v in ys])
    off = np.concatenate([np.asarray(v, dtype=float)[pre] for v in offsets])
    b = np.zeros(k + r)
    for o in range(k):
        seg = slice(o * n, (o + 1) * n)
        b[o] = np.log(max(y[seg].sum(), 0.5) / np.exp(off[seg]).sum())
    return poisson_fit(y, off, X, max_iter=max_iter, tol=tol, n_intercepts=k, start=b)


@dataclass(frozen=True)
class JointPlaceboGap:
    """Picklable placebo gap: placebo ``i`` is donor ``rows[i]`` of ``model``."""

    model: JointFactorModel
    rows: np.ndarray

    def __call__(self, i: int) -> np.ndarray:
        return self.model.placebo_gap(int(self.rows[i]))


@dataclass(frozen=True)
class AugmentedPlaceboGap:
    """Picklable placebo gap of the augmented estimator: donor ``rows[i]`` gets
    simplex weights on the other ``fit_rows`` donors (ratio-scaled, ridge
    ``sc_ridge``, as :func:`~dmi_eval.designs.synth.paths.placebo_gap_site`),
    then the joint factor correction of ``model`` without it."""

    model: JointFactorModel
    rows: np.ndarray
    fit_rows: np.ndarray
    post: np.ndarray
    sc_ridge: float
    ratio: bool = True

    def __call__(self, i: int) -> np.ndarray:
        j = int(self.rows[i])
        Y0s, pre = self.model.Y0s, self.model.pre
        keep = self.fit_rows.copy()
        keep[j] = False
        sc = path_for(
            Y0s[0][j], Y0s[0][keep], pre, self.post, "sc", "exact", 1, self.ratio, self.sc_ridge
        )
        w = np.zeros(Y0s[0].shape[0])
        w[keep] = sc.omega
        return Y0s[0][j] - self.model.path([Y[j] for Y in Y0s], exclude=j, weights=w).cf


def site_inputs(site_data: SiteData, outcome: str, areas: Sequence[str]) -> tuple[list, list]:
    """``(y1s, Y0s)``: the treated total and donor counts of ``outcome``, then of
    every other outcome of the panel (same donors, same order)."""
    panel = site_data.panel
    order = [outcome, *(o for o in panel.outcomes if o != outcome)]
    y1s = [panel.series(o, areas).to_numpy().astype(float) for o in order]
    Y0s = [site_data.donor_matrix(o).to_numpy().astype(float) for o in order]
    return y1s, Y0s


def spread(omega: np.ndarray, idx: np.ndarray | None, n: int) -> np.ndarray | None:
    """Weights ``omega`` of the donors ``idx`` as one weight per donor (``None``: no ``idx``)."""
    if idx is None:
        return None
    w = np.zeros(n)
    w[idx] = omega
    return w


@dataclass(frozen=True)
class JointSite:
    """One outcome of a site under the joint or augmented estimator (built by :func:`site_fit`).

    ``y1s`` and ``Y0s`` are the treated totals and donor counts of the outcome
    evaluated and then every other outcome of the panel; ``aug`` the donors
    whose simplex weights the augmented estimator corrects (``None``: joint).
    """

    y1s: list
    Y0s: list
    r: int
    aug: np.ndarray | None
    model: JointFactorModel

    def placebo_gap(
        self, rows: np.ndarray, post: np.ndarray, sc_ridge: float, ratio: bool
    ) -> JointPlaceboGap | AugmentedPlaceboGap:
        """The placebo gap function (placebo ``i`` is donor ``rows[i]``): of the joint
        estimator, or of the augmented one whose simplex weights use the donors ``aug``."""
        if self.aug is None:
            return JointPlaceboGap(self.model, rows)
        fit_rows = np.zeros(self.model.Y0s[0].shape[0], dtype=bool)
        fit_rows[self.aug] = True
        return AugmentedPlaceboGap(self.model, rows, fit_rows, post, sc_ridge, ratio)

    def leverage_factors(self) -> np.ndarray:
        """Factors whose single-outcome leverage is the joint fit's (for the placebo test).

        :func:`~dmi_eval.inference.noise.leverage` gives ``1 + T_0 (Fbar_W -
        m)' (F_c' F_c)^{-1} (Fbar_W - m)`` for one outcome (``m`` the pre-period
        mean of ``F``, ``F_c`` the centred pre-period factors). Loadings
        fitted on outcomes with ``1 + kappa`` times the first outcome's
        counts (``kappa``: the other outcomes' pre-period total over the first's,
        the market's) have ``1 + kappa`` times its information, so the excess
        over 1 is divided by ``1 + kappa``: here by shrinking the factors
        outside the pre period towards ``m`` by ``1 / sqrt(1 + kappa)``.
        """
        pre = self.model.pre
        F = self.model.factors()[1].copy()
        first = float(np.asarray(self.y1s[0])[pre].sum())
        other = sum(float(np.asarray(y)[pre].sum()) for y in self.y1s[1:])
        kappa = other / first if first > 0 else 0.0
        m = F[pre].mean(axis=0)
        F[~pre] = m + (F[~pre] - m) / np.sqrt(1.0 + kappa)
        return F

    def fake_pre_path(self, fake_pre: np.ndarray, simplex: PathFit, factor: float) -> PathFit:
        """The joint or augmented path fitted on a fake pre period (placebo in time).

        ``simplex`` is the simplex fit on the same fake pre period; the path is
        divided by ``factor`` (the design's per-area scale).
        """
        w = spread(simplex.omega, self.aug, self.Y0s[0].shape[0])
        f = JointFactorModel(self.Y0s, fake_pre, self.r).path(self.y1s, weights=w)
        return PathFit(f.cf / factor, f.omega, None, 0.0)


def site_fit(
    site_data: SiteData,
    outcome: str,
    areas: Sequence[str],
    simplex: PathFit,
    idx: np.ndarray,
    factor: float,
    estimator: str,
    n_factors: int | None,
) -> tuple[JointSite, PathFit]:
    """The site's joint (``estimator="joint"``) or augmented fit of one outcome.

    ``simplex`` is the simplex SC fit on the eligible donors ``idx`` (its
    weights are corrected by the augmented estimator); ``factor`` the
    design's per-area divisor. The returned path is per area like
    ``simplex``; its ``omega`` are the simplex weights (augmented) or the
    donors' shares of the common path (joint), over ``idx``.
    """
    r = default_factors(int(site_data.pre_mask.sum())) if n_factors is None else int(n_factors)
    aug = idx if estimator == "augmented" else None
    y1s, Y0s = site_inputs(site_data, outcome, areas)
    model = JointFactorModel(Y0s, site_data.pre_mask, r)
    jf = model.path(y1s, weights=spread(simplex.omega, aug, Y0s[0].shape[0]))
    omega = simplex.omega if aug is not None else jf.omega[idx] / jf.omega[idx].sum()
    return JointSite(y1s, Y0s, r, aug, model), PathFit(jf.cf / factor, omega, None, 0.0)
