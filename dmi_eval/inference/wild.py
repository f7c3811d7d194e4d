"""Wild cluster (score) bootstrap with Webb weights, for inference by cluster with few clusters.

When treatment is assigned to a handful of clusters (the sites of a stacked
event study), cluster-robust standard errors are far too small and their
normal p-values far too liberal (MacKinnon & Webb 2017). The score bootstrap
(Kline & Santos 2012) perturbs each cluster's influence on the estimate by an
independent random weight; Webb's six-point weights keep the bootstrap
distribution rich with as few as five clusters (Webb 2023).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

WEBB_WEIGHTS = np.array(
    [-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)]
)
"""Webb's six-point distribution: mean 0, variance 1, six equally likely values."""

MIN_CLUSTERS = 2
"""Fewer clusters than this: the bootstrap cannot be run (no variation across clusters)."""


@dataclass(frozen=True)
class WildBootstrap:
    """A wild cluster bootstrap of one estimate (read-only).

    Attributes
    ----------
    estimate
        The estimate (e.g. a log rate ratio).
    draws
        Bootstrap draws of the estimation error (centred at 0).
    n_clusters, enumerated
        Clusters; whether every sign pattern was enumerated instead of drawn.
    """

    estimate: float
    draws: np.ndarray
    n_clusters: int
    enumerated: bool

    def p_values(self, null: float = 0.0) -> tuple[float, float, float]:
        """``(p_lower, p_upper, p_two_sided)`` of ``estimate = null``, each tail counted.

        Each p is ``(1 + #{draws at least as extreme}) / (B + 1)``.
        """
        d = self.estimate - null
        b = self.draws.size
        lower = (1 + np.sum(self.draws <= d)) / (b + 1)
        upper = (1 + np.sum(self.draws >= d)) / (b + 1)
        two = (1 + np.sum(np.abs(self.draws) >= abs(d))) / (b + 1)
        return float(lower), float(upper), float(two)

    def interval(self, level: float) -> tuple[float, float]:
        """``estimate -/+ q``, ``q`` the ``level`` quantile of ``|draws|`` (symmetric interval)."""
        q = float(np.quantile(np.abs(self.draws), level))
        return self.estimate - q, self.estimate + q

    @property
    def se(self) -> float:
        """Standard deviation of the draws."""
        return float(np.std(self.draws))


def wild_cluster_bootstrap(
    estimate: float,
    influence: np.ndarray,
    *,
    n_boot: int = 9999,
    seed: int = 0,
) -> WildBootstrap:
    """Score wild cluster bootstrap of a linear combination of estimates.

    Parameters
    ----------
    estimate
        The estimate :math:`\\hat\\theta = a'\\hat\\beta`.
    influence
        Each cluster's influence on the estimate, :math:`c_g = a' H^{-1} s_g`
        (:math:`s_g` the cluster's score at the estimate, :math:`H` the
        negative Hessian), one value per cluster.
    n_boot
        Draws; when ``6**G <= n_boot`` every weight pattern is enumerated.
    seed
        Seed of the draws.

    Returns
    -------
    WildBootstrap

    Raises
    ------
    ValueError
        With fewer than :data:`MIN_CLUSTERS` clusters (no estimate of the
        between-cluster variation is possible).

    Notes
    -----
    The estimation error :math:`\\hat\\theta - \\theta \\approx \\sum_g c_g`
    is resampled as :math:`\\sum_g v_g c_g` with independent Webb weights
    :math:`v_g`. The p-values count each tail of these draws around
    :math:`\\hat\\theta - \\theta_0` (never ``1 - p``); the interval inverts
    the symmetric test.
    """
    c = np.asarray(influence, dtype=float).ravel()
    g = c.size
    if g < MIN_CLUSTERS:
        raise ValueError(
            f"{g} cluster(s): the wild cluster bootstrap needs at least {MIN_CLUSTERS}"
        )
    if 6**g <= n_boot:
        v = np.array(list(itertools.product(WEBB_WEIGHTS, repeat=g)))
        enumerated = True
    else:
        rng = np.random.default_rng(seed)
        v = WEBB_WEIGHTS[rng.integers(0, 6, size=(n_boot, g))]
        enumerated = False
    draws = v @ c
    draws.setflags(write=False)
    return WildBootstrap(float(estimate), draws, g, enumerated)
