"""Drift variance that grows with the size of a unit's factor correction.

The noise-standardised placebo test (:mod:`dmi_eval.inference.noise`) gives
every unit the same drift variance :math:`\\tau^2`. Under the augmented
synthetic control (:mod:`dmi_eval.designs.synth.joint`) the part of a unit's
error that is not counting noise comes mostly from the city's factors, which
the donors estimate poorly: a unit whose own exposure to them differs much
from its synthetic control's is corrected a lot, and carries more of the
factors' estimation error. A market's areas share one loading deviation, so
in a city where that deviation is large (the ``monthly-exposed`` calibration
scenario) the market is corrected more than almost any single placebo area,
and one :math:`\\tau^2` shared with the placebos understates its drift.

With ``c_j`` the size of unit ``j``'s factor correction over the window,

.. math::

    c_j = \\log \\frac{\\sum_{t \\in W} \\hat y^{aug}_{jt}}{\\sum_{t \\in W} \\hat y^{sc}_{jt}}

(its augmented over its simplex synthetic control), the drift variance of
unit ``j`` is modelled as :math:`\\tau_j^2 = \\tau_0^2 + \\tau_1^2 c_j^2`, fitted
on the placebos by the weighted least-squares meta-regression of
:math:`L_j^2 - v_j` (an unbiased estimate of unit ``j``'s drift variance) on
:math:`(1, c_j^2)`, with weights :math:`1 / (\\tau_j^2 + v_j)^2`, the inverse of
the variance of :math:`L_j^2` under normality up to a factor 2, iterated
:data:`ITERATIONS` times from :math:`\\tau_j^2 = \\tau^2` (the shared
DerSimonian-Laird estimate). Both coefficients
are kept non-negative: a negative slope falls back to the shared
:math:`\\tau^2`, a negative intercept to a fit through the origin.
"""

from __future__ import annotations

import numpy as np

ITERATIONS = 3
"""Reweighting passes of :func:`exposure_drift` (weights from the previous fit)."""


def correction_size(synthetic: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``c_j = log(sum_W synthetic / sum_W reference)`` of every unit (window totals).

    Units whose reference total is not positive get ``c_j = 0``.
    """
    s = np.asarray(synthetic, dtype=float)
    r = np.asarray(reference, dtype=float)
    ok = (s > 0) & (r > 0)
    out = np.zeros(s.shape, dtype=float)
    out[ok] = np.log(s[ok] / r[ok])
    return out


def exposure_drift(
    log_ratio: np.ndarray, variance: np.ndarray, correction: np.ndarray, tau2: float
) -> tuple[float, float]:
    """``(tau0^2, tau1^2)`` of ``tau_j^2 = tau0^2 + tau1^2 c_j^2`` from the placebos.

    Parameters
    ----------
    log_ratio, variance, correction
        ``L_j``, ``v_j`` and ``c_j`` of the placebos (the market excluded).
    tau2
        The shared drift variance (DerSimonian-Laird), used in the weights and
        as the fallback ``(tau2, 0)`` when the slope is not positive.
    """
    L = np.asarray(log_ratio, dtype=float)
    v = np.asarray(variance, dtype=float)
    c2 = np.asarray(correction, dtype=float) ** 2
    ok = np.isfinite(L) & np.isfinite(v) & np.isfinite(c2)
    L, v, c2 = L[ok], v[ok], c2[ok]
    if L.size < 3 or float(np.ptp(c2)) <= 0:
        return tau2, 0.0
    y = L**2 - v
    X = np.column_stack([np.ones(L.size), c2])
    t0, t1 = tau2, 0.0
    for _ in range(ITERATIONS):
        w = 1.0 / (t0 + t1 * c2 + v) ** 2
        sw = np.sqrt(w)
        b0, b1 = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
        if b1 <= 0:
            return tau2, 0.0
        if b0 < 0:
            b0, b1 = 0.0, float(np.sum(w * c2 * y) / np.sum(w * c2**2))
        t0, t1 = float(b0), float(b1)
    return t0, t1
