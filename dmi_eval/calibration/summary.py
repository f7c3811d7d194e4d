"""The calibration table: size, coverage, power and the verdict's rates, from the runner's rows.

:func:`summarise` turns the rows of :func:`dmi_eval.calibration.runner.run` (one per
market and design, with the truth) into ``calibration.csv``'s table
(``design, scenario, quantity, value, mc_se, target, met``):

* ``size``: share of no-effect markets with one-sided ``p_lower < 0.05``
  (target at most 0.06);
* ``coverage``: share of markets whose stated interval contains the true
  change over the post period (target: within 3 points of the stated level);
* ``power_25`` / ``power_45``: share of sustained -25% / -45% markets with
  ``p_lower < 0.05``;
* ``held_45`` / ``held_fading``: share of sustained -45% / fading -45% markets
  whose change over the persistence window is still a drop of at least
  ``lasting_share * min_reduction`` (the verdict's persistence test);
* ``detectable_null``: share of no-effect markets where the design could have
  detected a ``min_reduction`` drop (its MDE at most ``min_reduction`` and its
  smallest attainable p below ``alpha``), the condition for *not closed*;
* for the verdict: ``false_closed_displaced`` (share of no-effect markets
  called *closed* or *displaced*, target at most 0.05), ``detection`` (share of
  sustained -45% closures called *closed*), ``detection_target`` (the same
  where the market averages at least 10 drug incidents a month and has at
  least 24 post months: target at least 0.80), ``fading_closed`` (share of
  -45% drops that fade after six months called *closed*: they should not be),
  the share of no-effect markets by label and by the condition that
  decided it (``null_basis_*``, :data:`dmi_eval.verdict.BASES`), the same
  for sustained -45% closures (``closure_share_*``, ``closure_basis_*``: a
  closure called *not closed* is the verdict's wrong plain answer, *inconclusive*
  its honest one), and how often the
  pre-period spike check fires at no-effect markets (``spike_null``; against
  the market's own level instead of its comparison areas:
  ``spike_own_null``) and at sustained closures (``spike_closure``), and the
  catchment's test of a rise (:func:`add_catchment`: its size, its interval's
  coverage, and whether a displacement it missed stays inside its interval).
* numbers that are not shares of markets, without a target: ``median_mde``,
  ``error_rmse_45`` (the root mean square error of the log change at sustained -45%
  markets) and ``power_45_if_exact`` (the power a test of exact size would have with
  errors that large, with a delta-method Monte Carlo SE); for the verdict, at the markets
  of ``detection_target``, ``detection_error_rmse`` and ``detection_if_exact`` (the same
  two), and the share whose primary test rejected, ``detection_tested``
  (:mod:`dmi_eval.calibration.accuracy`).

Monte Carlo standard errors are binomial, ``sqrt(p (1 - p) / n)`` (:func:`binomial_se`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

import pandas as pd

from dmi_eval.calibration.accuracy import exact_size_power
from dmi_eval.calibration.runner import SPIKE_PLANTS

ALPHA = 0.05
SIZE_TARGET = 0.06
COVERAGE_TOLERANCE = 0.03
FALSE_CLOSED_TARGET = 0.05
DETECTION_TARGET = 0.80
MIN_JUDGED = 10
"""Fewest markets behind a number for its target to be judged (``met`` is left blank below)."""
TARGET_RATE = 10.0
TARGET_POST_MONTHS = 24
FADING = "-45% relapsing"
"""The effect whose drop fades after six months (:data:`~dmi_eval.calibration.city.EFFECTS`)."""
CALIBRATION_COLUMNS: tuple[str, ...] = (
    "design",
    "scenario",
    "quantity",
    "value",
    "mc_se",
    "target",
    "met",
)


def binomial_se(p: float, n: int) -> float:
    """Monte Carlo SE of a share ``p`` of ``n`` markets: ``sqrt(max(p (1 - p), 0.25 / n) / n)``,
    floored so that a share of 0 or 1 among few markets does not claim to be exact."""
    return math.sqrt(max(p * (1 - p), 0.25 / n) / n)


def binomial_share(hits: pd.Series) -> tuple[float, float, int]:
    """The share of ``True`` in ``hits``, its Monte Carlo SE (:func:`binomial_se`) and ``n``."""
    n = int(hits.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    p = float(hits.mean())
    return p, binomial_se(p, n), n


def covers_truth(rows: pd.DataFrame) -> pd.Series:
    """Whether each row's interval holds the true post-period change."""
    return (rows["ci_low"] <= rows["true_post"]) & (rows["true_post"] <= rows["ci_high"])


def target_of(quantity: str) -> tuple[str, Callable[[float], bool]] | None:
    """``(target text, met)`` of a quantity the issue's targets judge, else ``None``.

    ``size``, ``coverage_NN`` (within :data:`COVERAGE_TOLERANCE` of ``NN``%),
    ``false_closed_displaced`` and ``detection_target``; :func:`summarise` and the
    appendix's sensitivity table both read them here.
    """
    if quantity == "size":
        return f"<= {SIZE_TARGET}", lambda v: v <= SIZE_TARGET
    if quantity.startswith("coverage_"):
        level = int(quantity[len("coverage_") :]) / 100
        return (
            f"{level - COVERAGE_TOLERANCE:.2f}-{level + COVERAGE_TOLERANCE:.2f}",
            lambda v: abs(v - level) <= COVERAGE_TOLERANCE,
        )
    if quantity == "false_closed_displaced":
        return f"<= {FALSE_CLOSED_TARGET}", lambda v: v <= FALSE_CLOSED_TARGET
    if quantity == "detection_target":
        return f">= {DETECTION_TARGET}", lambda v: v >= DETECTION_TARGET
    return None


def add_catchment(v: pd.DataFrame, scenario: str, add: Callable[..., None]) -> None:
    """The displacement test's calibration, from the verdict rows of one scenario.

    ``catchment_size``: markets whose catchment had no effect with the catchment's
    one-sided ``p_upper < 0.05`` (a false rise; at a true closure it turns *closed*
    into *displaced*). ``catchment_coverage``: the catchment's interval holds its true
    change. ``displaced_not_ruled_out``: at displaced markets (+35% in the catchment)
    whose rise the test missed, the interval still reaches the true rise, so the
    verdict's sentence that a rise of up to its upper end is not ruled out is true.
    """
    v = v[v["catch_p_upper"].notna()]
    truth = v["true_catchment_post"]
    quiet = v[truth.abs() < 1e-9]
    add("verdict", scenario, "catchment_size", quiet["catch_p_upper"] < ALPHA)
    add(
        "verdict",
        scenario,
        "catchment_coverage",
        (v["catch_ci_low"] <= truth) & (truth <= v["catch_ci_high"]),
    )
    missed = v[(truth > 0) & ~(v["catch_p_upper"] < ALPHA)]
    add(
        "verdict",
        scenario,
        "displaced_not_ruled_out",
        missed["catch_ci_high"] >= missed["true_catchment_post"],
    )


def summarise(
    rows: pd.DataFrame, *, unjudged: Collection[str] = (), min_judged: int = MIN_JUDGED
) -> pd.DataFrame:
    """The calibration table from :func:`run`'s rows.

    Scenarios named in ``unjudged`` (the sensitivity scenarios) get their numbers
    without a target (``target`` and ``met`` empty). A number from fewer than
    ``min_judged`` markets keeps its target but is not judged (``met`` empty).
    """
    out: list[dict[str, Any]] = []

    def add(design, scenario, quantity, hits):
        value, se, n = binomial_share(hits.astype(float))
        if n == 0:
            return
        target, ok = ("", None) if scenario in unjudged else target_of(quantity) or ("", None)
        out.append(
            {
                "design": design,
                "scenario": scenario,
                "quantity": quantity,
                "value": round(value, 4),
                "mc_se": round(se, 4),
                "n": n,
                "target": target,
                "met": "" if ok is None or n < min_judged else bool(ok(value)),
            }
        )

    def value(design, scenario, quantity, number, n, se=float("nan")):
        """A number that is not a share of markets: no target, a Monte Carlo SE if given."""
        if n and math.isfinite(number):
            out.append(
                {
                    "design": design,
                    "scenario": scenario,
                    "quantity": quantity,
                    "value": round(number, 4),
                    "mc_se": round(se, 4) if math.isfinite(se) else se,
                    "n": int(n),
                    "target": "",
                    "met": "",
                }
            )

    for scenario, by_s in rows.groupby("scenario", sort=False):
        designs = [d for d in pd.unique(by_s["design"]) if d != "verdict"]
        for design in designs:
            d = by_s[by_s["design"] == design]
            null = d[d["effect"] == "none"]
            add(design, scenario, "size", null["p_lower"] < ALPHA)
            level = float(d["level"].median()) if len(d) else 0.9
            cover = covers_truth(d)
            add(design, scenario, f"coverage_{round(100 * level)}", cover)
            for eff, q in (("-25% sustained", "power_25"), ("-45% sustained", "power_45")):
                e = d[d["effect"] == eff]
                add(design, scenario, q, e["p_lower"] < ALPHA)
            e = d[d["effect"] == "-45% sustained"]
            add(design, scenario, "power_45_last", e["p_lower_last"] < ALPHA)
            add(design, scenario, "held_45", e["held"].astype(bool))
            fading = d[d["effect"] == FADING]
            add(design, scenario, "held_fading", fading["held"].astype(bool))
            add(design, scenario, "detectable_null", null["detectable"].astype(bool))
            mde = d["mde"].dropna() if "mde" in d else pd.Series(dtype=float)
            if len(mde):
                value(design, scenario, "median_mde", float(mde.median()), int(mde.size))
            if len(e):
                rmse, power, se = exact_size_power(e, ALPHA)
                value(design, scenario, "error_rmse_45", rmse, len(e))
                value(design, scenario, "power_45_if_exact", power, len(e), se)
        v = by_s[by_s["design"] == "verdict"]
        null = v[v["effect"] == "none"]
        add(
            "verdict",
            scenario,
            "false_closed_displaced",
            null["verdict"].isin(["closed", "displaced"]),
        )
        closure = v[v["effect"] == "-45% sustained"]
        add("verdict", scenario, "detection", closure["verdict"] == "closed")
        big = closure[
            (closure["rate_per_month"] >= TARGET_RATE)
            & (closure["post_months"] >= TARGET_POST_MONTHS)
        ]
        add("verdict", scenario, "detection_target", big["verdict"] == "closed")
        keys = ["city", "site"]
        primary = by_s[by_s["design"] == "primary"].merge(big[keys], on=keys)
        if len(primary):
            rmse, power, se = exact_size_power(primary, ALPHA)
            value("verdict", scenario, "detection_error_rmse", rmse, len(primary))
            value("verdict", scenario, "detection_if_exact", power, len(primary), se)
            add("verdict", scenario, "detection_tested", primary["p_lower"] < ALPHA)
        fading = v[v["effect"] == FADING]
        add("verdict", scenario, "fading_closed", fading["verdict"] == "closed")
        disp = v[v["effect"] == "-45% displaced"]
        add("verdict", scenario, "displaced_detected", disp["verdict"] == "displaced")
        if "catch_p_upper" in v:
            add_catchment(v, scenario, add)
        for label in ("closed", "displaced", "not_closed", "inconclusive"):
            add("verdict", scenario, f"share_{label}_null", null["verdict"] == label)
            add("verdict", scenario, f"closure_share_{label}", closure["verdict"] == label)
        if "basis" in null:
            for basis in sorted(set(null["basis"].dropna()) - {""}):
                add("verdict", scenario, f"null_basis_{basis}", null["basis"] == basis)
        if "basis" in closure:
            for basis in sorted(set(closure["basis"].dropna()) - {""}):
                add("verdict", scenario, f"closure_basis_{basis}", closure["basis"] == basis)
        if "spike" in v:
            add("verdict", scenario, "spike_null", null["spike"].eq(True))
            add("verdict", scenario, "spike_own_null", null["spike_own"].eq(True))
            add("verdict", scenario, "spike_closure", closure["spike"].eq(True))
        for a in SPIKE_PLANTS:
            tag = f"{round(100 * a)}"
            for q in (f"plant_{tag}", f"shared_{tag}", f"shared_own_{tag}"):
                if q in null:
                    add("verdict", scenario, f"spike_{q}", null[q].eq(True))
    return pd.DataFrame(out)
