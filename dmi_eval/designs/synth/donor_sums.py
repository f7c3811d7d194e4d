"""Leave-one-donor-out sums of the joint factor model (:mod:`dmi_eval.designs.synth.joint`).

Each outcome's ratio-scaled donors (:class:`OutcomeDonors`) and every donor
area's outcomes pooled into the factors' matrix ``G`` (:class:`PooledDonors`),
kept as sums over the areas so that a placebo removes one area's terms exactly
instead of rebuilding ``G`` from the remaining donors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dmi_eval.designs.synth.factor import donor_precision


@dataclass(frozen=True)
class OutcomeDonors:
    """One outcome's donors: ratio-scaled series and the sums its common path needs."""

    rows: np.ndarray  # donor indices with a positive pre-period mean
    Z: np.ndarray  # (n, T) series over their pre-period means
    c: np.ndarray  # (n, T) the series less their means over all periods
    a: np.ndarray  # (n,) precisions
    s: np.ndarray  # (T,) sum_i a_i c_i
    az: np.ndarray  # (T,) sum_i a_i z_i

    @classmethod
    def of(cls, Y0: np.ndarray, pre: np.ndarray) -> OutcomeDonors:
        Y0 = np.asarray(Y0, dtype=float)
        m = Y0[:, pre].mean(axis=1)
        rows = np.flatnonzero(m > 0)
        Z = Y0[rows] / m[rows, None]
        a = donor_precision(Y0[rows], pre)
        c = Z - Z.mean(axis=1, keepdims=True)
        return cls(rows, Z, c, a, a @ c, a @ Z)

    def position(self, donor: int | None) -> int | None:
        """Row of donor ``donor`` (an index of ``Y0``) in the block, ``None`` if absent."""
        if donor is None:
            return None
        k = int(np.searchsorted(self.rows, donor))
        return k if k < self.rows.size and self.rows[k] == donor else None

    def sums_without(self, donor: int | None) -> tuple[np.ndarray, float, np.ndarray]:
        """``(s, A, az)`` of the block with donor ``donor`` removed (as kept if absent)."""
        k = self.position(donor)
        if k is None:
            return self.s, float(self.a.sum()), self.az
        ak = self.a[k]
        return self.s - ak * self.c[k], float(self.a.sum() - ak), self.az - ak * self.Z[k]


@dataclass(frozen=True)
class PooledDonors:
    """Every donor area's outcomes pooled: the sums of the factors' matrix ``G``.

    With ``W_i = sum_o a_{o,i}``, ``u_i = sum_o a_{o,i} c_{o,i}`` and
    ``alpha_i = (a_{1,i}, ..., a_{K,i})`` (zero where the outcome does not use
    the donor), ``G = S - P D - D' P' + D' Q D`` with ``S = sum_i u_i u_i' / W_i``,
    ``P = sum_i u_i alpha_i' / W_i``, ``Q = sum_i alpha_i alpha_i' / W_i`` and
    ``D`` the ``(K, T)`` centred common paths ``d_o``.
    """

    W: np.ndarray  # (J,) pooled precision of each donor (0: used by no outcome)
    U: np.ndarray  # (J, T) u_i
    alpha: np.ndarray  # (J, K) alpha_i
    S: np.ndarray
    P: np.ndarray
    Q: np.ndarray

    @classmethod
    def of(cls, blocks: Sequence[OutcomeDonors], n_donors: int, T: int) -> PooledDonors:
        W, U = np.zeros(n_donors), np.zeros((n_donors, T))
        alpha = np.zeros((n_donors, len(blocks)))
        for o, blk in enumerate(blocks):
            W[blk.rows] += blk.a
            U[blk.rows] += blk.a[:, None] * blk.c
            alpha[blk.rows, o] = blk.a
        inv = np.divide(1.0, W, out=np.zeros_like(W), where=W > 0)
        return cls(W, U, alpha, (U.T * inv) @ U, (U.T * inv) @ alpha, (alpha.T * inv) @ alpha)

    def matrix(self, D: np.ndarray, exclude: int | None) -> np.ndarray:
        """``G`` without donor ``exclude`` (an index of ``Y0``), as a new array.

        ``D``: the ``(K, T)`` centred common paths ``s / A`` of
        :meth:`OutcomeDonors.sums_without` ``(exclude)``, one row per outcome.
        """
        S, P, Q = self.S, self.P, self.Q
        if exclude is not None and self.W[exclude] > 0:
            u, al, w = self.U[exclude], self.alpha[exclude], self.W[exclude]
            S = S - np.multiply.outer(u, u) / w
            P = P - np.multiply.outer(u, al) / w
            Q = Q - np.multiply.outer(al, al) / w
        PD = P @ D
        G = S - PD
        G -= PD.T
        G += D.T @ (Q @ D)
        return G
