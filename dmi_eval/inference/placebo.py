"""Placebo draws and placebo-in-space rank tests."""

from __future__ import annotations

import hashlib
import itertools
import math
import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dmi_eval.inference.parallel import parallel_map
from dmi_eval.options import Sided, check_choice


def select_placebos(n: int, max_placebos: int | None, seed: int) -> np.ndarray:
    """Indices ``0..n-1`` of the placebo units to use (all, or a seeded sample, sorted)."""
    if max_placebos is None or max_placebos >= n:
        return np.arange(n)
    if max_placebos < 1:
        raise ValueError(f"max_placebos must be at least 1, got {max_placebos}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_placebos, replace=False))


def draw_placebo_sets(rng: np.random.Generator, n: int, treat: np.ndarray, b: int) -> np.ndarray:
    """All placebo treated sets, drawn up front (rows of unit indices).

    Random sets of ``n_treated`` units among all units (the actual set excluded);
    when there are no more than ``b`` possible sets, every one of them (an exact
    permutation test).
    """
    n_t = int(treat.sum())
    actual = np.flatnonzero(treat)
    if math.comb(n, n_t) - 1 <= b:
        every = [c for c in itertools.combinations(range(n), n_t) if not np.array_equal(c, actual)]
        return np.array(every, dtype=np.int64).reshape(len(every), n_t)
    sets = np.empty((b, n_t), dtype=np.int64)
    for j in range(b):
        while True:
            chosen = np.sort(rng.choice(n, size=n_t, replace=False))
            if not np.array_equal(chosen, actual):
                break
        sets[j] = chosen
    return sets


def draw_placebo_groups(
    rng: np.random.Generator, n_units: int, size: int, n_draws: int
) -> np.ndarray:
    """``n_draws`` random groups of ``size`` distinct units among ``n_units`` (rows of indices).

    Each row is the first ``size`` positions of a uniform random permutation (the
    DID's placebo-area groups: groups of control areas as large as the treated group).
    """
    return np.argsort(rng.random((n_draws, n_units)), axis=1)[:, :size]


@dataclass(frozen=True)
class PlaceboTest:
    """Placebo-in-space gaps of the treated unit and its placebos.

    Attributes
    ----------
    treated
        Label of the treated unit (first row of ``gaps``).
    gaps
        Units x periods gaps (observed minus synthetic), treated first, in a
        common scale (per area for DMI sites).
    pre, post
        Boolean masks of the fit (pre) and effect (post) periods.
    scale
        Optional per-unit divisor of the effect statistic (e.g. each unit's
        pre-period mean level, making the statistic a relative effect);
        ``None``: the pre-period RMSPE.

    Notes
    -----
    For unit ``j`` with gaps ``g_jt``: ``pre_mspe_j = mean_{t in pre} g_jt^2``,
    ``ratio_j = post_mspe_j / pre_mspe_j`` and, for a window ``W`` of post
    periods, the standardised effect ``z_j = mean_{t in W} g_jt / s_j`` with
    ``s_j = sqrt(pre_mspe_j)`` (or the given ``scale``).
    Rank p-values count the treated unit itself:
    ``p_ratio = #{j: ratio_j >= ratio_1} / n``;
    ``p_lower = #{j: z_j <= z_1} / n``; ``p_greater = #{j: z_j >= z_1} / n``;
    two-sided: ``#{j: |z_j| >= |z_1|} / n``. Placebos whose pre-period MSPE
    exceeds ``m`` times the treated unit's can be left out (Abadie et al. 2010).
    """

    treated: str
    gaps: pd.DataFrame
    pre: np.ndarray
    post: np.ndarray
    scale: np.ndarray | None = None

    def _scale(self) -> np.ndarray:
        if self.scale is not None:
            return np.asarray(self.scale, dtype=float)
        g = self.gaps.to_numpy()
        return np.sqrt((g[:, self.pre] ** 2).mean(axis=1))

    @property
    def n_placebos(self) -> int:
        return self.gaps.shape[0] - 1

    def pre_mspe(self) -> pd.Series:
        g = self.gaps.to_numpy()[:, self.pre]
        return pd.Series((g**2).mean(axis=1), index=self.gaps.index, name="pre_mspe")

    def post_mspe(self) -> pd.Series:
        g = self.gaps.to_numpy()[:, self.post]
        return pd.Series((g**2).mean(axis=1), index=self.gaps.index, name="post_mspe")

    def ratios(self) -> pd.Series:
        """Post/pre MSPE ratio of every unit (treated first)."""
        pre = self.pre_mspe().to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(pre > 0, self.post_mspe().to_numpy() / pre, np.inf)
        return pd.Series(r, index=self.gaps.index, name="mspe_ratio")

    def _keep(self, max_pre_mspe_multiple: float | None) -> np.ndarray:
        keep = np.ones(self.gaps.shape[0], dtype=bool)
        if max_pre_mspe_multiple is not None:
            pre = self.pre_mspe().to_numpy()
            keep = pre <= max_pre_mspe_multiple * pre[0] + 1e-300
            keep[0] = True
        return keep

    def standardised_effects(self, window: np.ndarray | None = None) -> pd.Series:
        """Mean gap over ``window`` (default: post) divided by the pre-period RMSPE or scale."""
        window = self.post if window is None else window
        g = self.gaps.to_numpy()
        rmspe = self._scale()
        with np.errstate(divide="ignore", invalid="ignore"):
            z = g[:, window].mean(axis=1) / np.where(rmspe > 0, rmspe, np.nan)
        return pd.Series(z, index=self.gaps.index, name="z")

    def p_ratio(self, *, max_pre_mspe_multiple: float | None = None) -> float:
        """Rank p-value of the treated unit's post/pre MSPE ratio (Abadie et al. 2010)."""
        keep = self._keep(max_pre_mspe_multiple)
        r = self.ratios().to_numpy()[keep]
        return float(np.mean(r >= r[0] * (1 - 1e-12)))

    def p_value(
        self,
        window: np.ndarray | None = None,
        *,
        sided: Sided = "lower",
        max_pre_mspe_multiple: float | None = None,
    ) -> float:
        """Rank p-value of the standardised mean gap over ``window``."""
        keep = self._keep(max_pre_mspe_multiple)
        z = self.standardised_effects(window).to_numpy()[keep]
        z = np.nan_to_num(z, nan=0.0)
        tol = 1e-12 * max(1.0, abs(z[0]))
        check_choice("sided", sided, Sided)
        if sided == "lower":
            return float(np.mean(z <= z[0] + tol))
        if sided == "greater":
            return float(np.mean(z >= z[0] - tol))
        return float(np.mean(np.abs(z) >= abs(z[0]) - tol))

    def interval(
        self,
        window: np.ndarray | None = None,
        *,
        level: float = 0.9,
        max_pre_mspe_multiple: float | None = None,
    ) -> tuple[float, float]:
        """Interval for the treated unit's mean gap over ``window`` (gap scale).

        ``mean gap - q * RMSPE_1`` for ``q`` the upper and lower ``(1 -
        level) / 2`` quantiles of the placebos' standardised effects: the
        placebo distribution, rescaled to the treated unit's pre-period noise,
        stands in for the estimation error. ``(nan, nan)`` without placebos.
        """
        window = self.post if window is None else window
        keep = self._keep(max_pre_mspe_multiple)
        z = self.standardised_effects(window).to_numpy()[keep][1:]
        z = z[np.isfinite(z)]
        if z.size == 0:
            return float("nan"), float("nan")
        g = self.gaps.to_numpy()[0]
        est = float(g[window].mean())
        rmspe = float(self._scale()[0])
        a = (1 - level) / 2
        q_lo, q_hi = np.quantile(z, [a, 1 - a])
        return est - q_hi * rmspe, est - q_lo * rmspe

    def summary(self) -> pd.DataFrame:
        """One row per unit: pre/post MSPE, ratio and standardised post effect."""
        return pd.concat(
            [self.pre_mspe(), self.post_mspe(), self.ratios(), self.standardised_effects()], axis=1
        )


def placebo_in_space(
    gap_fn: Callable[[int], np.ndarray],
    placebos: Sequence[int],
    *,
    treated_gap: np.ndarray,
    treated: str,
    labels: Sequence[str],
    periods: pd.Index,
    pre: np.ndarray,
    post: np.ndarray,
    n_jobs: int = 2,
    scale: np.ndarray | None = None,
) -> PlaceboTest:
    """Run ``gap_fn`` for every placebo unit and collect a :class:`PlaceboTest`.

    Parameters
    ----------
    gap_fn
        ``gap_fn(i)`` returns the gap path of placebo unit ``i`` treated as if
        treated, fitted on the other donors (the real treated unit excluded).
    placebos
        Indices passed to ``gap_fn``; ``labels[i]`` names placebo ``i``.
    treated_gap, treated
        The real treated unit's gap path and label.
    periods, pre, post
        Columns of the gap frame and the fit / effect masks.
    n_jobs
        joblib workers (results do not depend on it).
    scale
        Optional divisor of the effect statistic per unit (treated first).
    """
    gaps = _gaps(gap_fn, list(placebos), n_jobs)
    rows = [np.asarray(treated_gap, dtype=float)] + [np.asarray(g, dtype=float) for g in gaps]
    index = [treated] + [labels[i] for i in placebos]
    frame = pd.DataFrame(np.vstack(rows), index=pd.Index(index, name="unit"), columns=periods)
    return PlaceboTest(
        treated=treated, gaps=frame, pre=np.asarray(pre), post=np.asarray(post), scale=scale
    )


_SHARED: ContextVar[dict[bytes, list] | None] = ContextVar("shared_placebo_gaps", default=None)


@contextmanager
def shared_placebo_gaps() -> Iterator[None]:
    """Within the block, :func:`placebo_in_space` runs each placebo gap function once.

    A site's market and its catchment have the same donors, so their
    placebo-in-space tests refit the same donors on the same other donors:
    their gap functions are equal (same code, same data), and so are their
    gaps. Inside this block (this thread), gaps are kept under a digest of the
    pickled gap function and placebo list (equal bytes: equal inputs, and the
    functions are deterministic) and reused, not recomputed; a function whose
    bytes differ in any way (other donors, periods, settings) is computed
    afresh. Nothing is kept after the outermost block.
    """
    token = _SHARED.set({}) if _SHARED.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _SHARED.reset(token)


def _gaps(gap_fn: Callable[[int], np.ndarray], placebos: list[int], n_jobs: int) -> list:
    """``gap_fn`` of every placebo (once per equal function inside :func:`shared_placebo_gaps`)."""
    shared = _SHARED.get()
    if shared is None:
        return parallel_map(gap_fn, placebos, n_jobs=n_jobs)
    key = hashlib.blake2b(pickle.dumps((gap_fn, placebos), protocol=5), digest_size=32).digest()
    if key not in shared:
        shared[key] = parallel_map(gap_fn, placebos, n_jobs=n_jobs)
    return shared[key]
