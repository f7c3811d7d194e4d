"""Displacement and diffusion of benefits around a DMI market.

A crackdown can push dealing round the corner (displacement) or quieten the
neighbourhood too (diffusion of benefits). Three tools:

- :func:`catchment_view`: the site's data with the catchment areas in the
  treated role, so that any design (ITS, SC, microsynth, DiD) can be fitted to
  the catchment exactly as to the market itself;
- :func:`weighted_displacement_quotient` (Bowers & Johnson 2003) and
  :func:`wdd_test`, the weighted displacement difference test with its
  standard error (Wheeler & Ratcliffe 2018), for before/after counts;
- :func:`catchment_summary`: a sentence-ready reading of a catchment effect
  from any design's tidy effects frame.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from dmi_eval.errors import DesignError
from dmi_eval.inference.delta import normal_tails
from dmi_eval.options import alpha_of, check_level
from dmi_eval.panel import SiteData

__all__ = [
    "catchment_summary",
    "catchment_view",
    "wdd_test",
    "weighted_displacement_quotient",
]


def _pair(name: str, value: Sequence[float]) -> tuple[float, float]:
    vals = tuple(float(v) for v in value)
    if len(vals) != 2:
        raise ValueError(f"{name} must be (before, after); got {value!r}")
    if any((not math.isfinite(v)) or v < 0 for v in vals):
        raise ValueError(f"{name} counts must be finite and non-negative; got {value!r}")
    return vals  # type: ignore[return-value]


def catchment_view(site_data: SiteData) -> SiteData:
    """The site's data with the catchment areas as the treated areas.

    Donor areas and periods are unchanged (catchment and treated areas are never
    donors). Fit any design to the result to estimate the catchment effect.
    Raises :class:`DesignError` when the site has no catchment areas.
    """
    if not site_data.catchment_areas:
        raise DesignError(
            f"site {site_data.site_id!r} has no catchment_areas; add them to [[sites]] "
            "to assess displacement"
        )
    site = dataclasses.replace(
        site_data.site,
        treated_areas=tuple(site_data.catchment_areas),
        catchment_areas=(),
    )
    return SiteData(
        panel=site_data.panel,
        site=site,
        donor_areas=site_data.donor_areas,
        transition=site_data.transition,
    )


def weighted_displacement_quotient(
    treated: Sequence[float],
    control: Sequence[float],
    buffer: Sequence[float],
) -> dict[str, Any]:
    """Weighted displacement quotient (Bowers & Johnson 2003).

    Parameters
    ----------
    treated, control, buffer
        ``(before, after)`` counts of the treated area ``A``, the control area
        ``C`` and the buffer (catchment) area ``B``, over periods of equal length.

    Returns
    -------
    dict
        ``wdq``, ``success_measure`` (``A_a/C_a - A_b/C_b``; negative when the
        treated area improved relative to the control), ``buffer_measure``
        (``B_a/C_a - B_b/C_b``) and ``reading`` (plain-language reading).

    Notes
    -----
    ``WDQ = (B_a/C_a - B_b/C_b) / (A_a/C_a - A_b/C_b)``. Read only when the
    success measure is negative. WDQ > 1: diffusion of benefits larger than the
    direct effect; 0 < WDQ <= 1: some diffusion of benefits; WDQ = 0: neither;
    -1 <= WDQ < 0: some displacement, smaller than the direct benefit;
    WDQ < -1: displacement larger than the direct benefit. The WDQ has no
    standard error; use :func:`wdd_test` for a test.
    """
    a_b, a_a = _pair("treated", treated)
    c_b, c_a = _pair("control", control)
    b_b, b_a = _pair("buffer", buffer)
    if c_b == 0 or c_a == 0:
        raise ValueError("control counts must be positive before and after")
    success = a_a / c_a - a_b / c_b
    buffer_measure = b_a / c_a - b_b / c_b
    if success >= 0:
        return {
            "wdq": math.nan,
            "success_measure": success,
            "buffer_measure": buffer_measure,
            "reading": "the treated area did not improve relative to the control; "
            "the WDQ is not interpretable",
        }
    wdq = buffer_measure / success
    if wdq > 1:
        reading = "diffusion of benefits larger than the direct effect"
    elif wdq > 0:
        reading = "some diffusion of benefits to the buffer area"
    elif wdq == 0:
        reading = "neither displacement nor diffusion"
    elif wdq >= -1:
        reading = "some displacement to the buffer area, smaller than the direct benefit"
    else:
        reading = "displacement larger than the direct benefit"
    return {
        "wdq": wdq,
        "success_measure": success,
        "buffer_measure": buffer_measure,
        "reading": reading,
    }


def wdd_test(
    treated: Sequence[float],
    control: Sequence[float],
    displacement: Sequence[float] | None = None,
    displacement_control: Sequence[float] | None = None,
    *,
    level: float = 0.95,
) -> dict[str, float]:
    """Weighted displacement difference test (Wheeler & Ratcliffe 2018).

    Parameters
    ----------
    treated, control
        ``(before, after)`` counts of the treated area and its control area.
    displacement, displacement_control
        ``(before, after)`` counts of the displacement (catchment) area and its
        control; omit both for the local effect only.
    level
        Confidence level of the two-sided interval ``estimate +- z_{1-alpha/2} se``
        (``alpha = 1 - level``).

    Returns
    -------
    dict
        ``estimate`` (net change in crime counts; negative = fewer crimes),
        ``se``, ``z``, ``p_lower`` (one-sided test of a net reduction),
        ``p_two_sided``, ``ci_low``, ``ci_high``, and the components
        ``local_estimate``, ``local_se``, ``displacement_estimate``,
        ``displacement_se``.

    Notes
    -----
    With ``dX = X_after - X_before``:
    ``WDD = (dT - dCt) + (dD - dCd)`` and, treating the eight counts as
    independent Poisson, ``Var(WDD) = T_b + T_a + Ct_b + Ct_a + D_b + D_a +
    Cd_b + Cd_a``; ``z = WDD / sqrt(Var)``. A crime increase in the
    displacement area offsets the treated area's reduction.
    """
    alpha = alpha_of(check_level(level))
    t_b, t_a = _pair("treated", treated)
    c_b, c_a = _pair("control", control)
    if (displacement is None) != (displacement_control is None):
        raise ValueError("give both displacement and displacement_control, or neither")
    d_b, d_a = _pair("displacement", displacement) if displacement is not None else (0.0, 0.0)
    e_b, e_a = (
        _pair("displacement_control", displacement_control)
        if displacement_control is not None
        else (0.0, 0.0)
    )
    local = (t_a - t_b) - (c_a - c_b)
    local_var = t_b + t_a + c_b + c_a
    disp = (d_a - d_b) - (e_a - e_b)
    disp_var = d_b + d_a + e_b + e_a
    est = local + disp
    se = math.sqrt(local_var + disp_var)
    z = est / se if se > 0 else math.nan
    q = float(stats.norm.ppf(1 - alpha / 2))
    return {
        "estimate": est,
        "se": se,
        "z": z,
        "p_lower": normal_tails(z)[0],
        "p_two_sided": normal_tails(z)[2],
        "ci_low": est - q * se,
        "ci_high": est + q * se,
        "local_estimate": local,
        "local_se": math.sqrt(local_var),
        "displacement_estimate": disp,
        "displacement_se": math.sqrt(disp_var),
    }


def catchment_summary(
    catchment_effects: pd.DataFrame,
    outcome: str,
    *,
    design: str | None = None,
    window: str = "post",
    alpha: float = 0.05,
    target_effects: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Read a catchment-area effect: did crime move next door, or did benefits spread?

    Parameters
    ----------
    catchment_effects
        A tidy effects frame (``dmi_eval.results.EFFECT_COLUMNS``) of a design
        fitted to the catchment (e.g. on :func:`catchment_view`).
    outcome, design, window
        The row to read (``design`` may be omitted when the frame has one design).
    alpha
        Significance level.
    target_effects
        Optionally the same design's effects for the market itself, to report
        the catchment change relative to the market's.

    Returns
    -------
    dict
        ``label`` (``"displacement"``, ``"diffusion"`` or ``"no_change"``),
        ``significant`` (bool), the row's numbers (``observed``,
        ``counterfactual``, ``effect``, ``pct_change``, ``ci_low``, ``ci_high``,
        ``p_value``, ``method``), ``offset_share`` (catchment excess divided by
        the market's reduction, when ``target_effects`` is given and the market
        fell) and ``sentence``.

    Notes
    -----
    A rise is *significant* when the interval lies above zero, or when
    ``p_value < alpha`` for a test that is not one-sided lower and the change
    is positive; a fall likewise (interval below zero, or ``p_value < alpha``
    for a test that is not one-sided upper). Significant rise: displacement;
    significant fall: diffusion of benefits; otherwise no detectable change.
    """
    sel = catchment_effects[
        (catchment_effects["outcome"] == outcome) & (catchment_effects["window"] == window)
    ]
    if design is not None:
        sel = sel[sel["design"] == design]
    if len(sel) != 1:
        raise ValueError(
            f"expected one effects row for outcome={outcome!r}, window={window!r}, "
            f"design={design!r}; found {len(sel)}"
        )
    row = sel.iloc[0]
    pct = float(row["pct_change"])
    p = float(row["p_value"])
    method = str(row["method"])
    lo, hi = float(row["ci_low"]), float(row["ci_high"])
    p_ok = np.isfinite(p) and p < alpha
    rise = pct > 0 and ((np.isfinite(lo) and lo > 0) or (p_ok and "one-sided lower" not in method))
    fall = pct < 0 and ((np.isfinite(hi) and hi < 0) or (p_ok and "one-sided upper" not in method))
    label = "displacement" if rise else "diffusion" if fall else "no_change"
    offset = math.nan
    if target_effects is not None:
        tsel = target_effects[
            (target_effects["outcome"] == outcome)
            & (target_effects["window"] == window)
            & (target_effects["design"] == row["design"])
        ]
        if len(tsel) == 1 and float(tsel["effect"].iloc[0]) < 0:
            offset = float(row["effect"]) / -float(tsel["effect"].iloc[0])
    pct_txt = (
        f"{abs(pct) * 100:.0f}% {'higher' if pct > 0 else 'lower'}" if np.isfinite(pct) else "n/a"
    )
    ci_txt = (
        f"{lo * 100:+.0f}% to {hi * 100:+.0f}%" if np.isfinite(lo) and np.isfinite(hi) else "n/a"
    )
    p_txt = f"p = {p:.3f}" if np.isfinite(p) else "p n/a"
    base = (
        f"In the catchment area, {outcome} was {pct_txt} than expected "
        f"({row['design']}; interval {ci_txt}; {p_txt})"
    )
    if label == "displacement":
        tail = ": crime appears to have moved next door."
        if np.isfinite(offset):
            tail = (
                f": crime appears to have moved next door, offsetting about "
                f"{offset * 100:.0f}% of the market's reduction."
            )
    elif label == "diffusion":
        tail = ": the benefits appear to have spread to the surrounding blocks."
    else:
        tail = ": no detectable displacement or diffusion."
    return {
        "outcome": outcome,
        "design": str(row["design"]),
        "window": window,
        "label": label,
        "significant": bool(rise or fall),
        "observed": float(row["observed"]),
        "counterfactual": float(row["counterfactual"]),
        "effect": float(row["effect"]),
        "pct_change": pct,
        "ci_low": lo,
        "ci_high": hi,
        "p_value": p,
        "method": method,
        "offset_share": offset,
        "sentence": base + tail,
    }
