"""Plain-language sentences for the reports: verdicts, changes and "how sure".

A police chief reads the first paragraph of a site page in twenty seconds:
the verdict once, in words, with the change, how sure we are in plain
language, and the one reason that decided it. Every number comes from the
effects row printed in the table beside it (the caller passes that row).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dmi_eval.config import duration_text
from dmi_eval.tables import DESIGN_LABELS, fmt_count, fmt_p, fmt_size, interval_too_wide

VERDICT_WORDS: dict[str, str] = {
    "closed": "closed",
    "displaced": "displaced",
    "not_closed": "not closed",
    "inconclusive": "inconclusive",
}

VERDICT_SENTENCES: dict[str, str] = {
    "closed": "The market closed.",
    "displaced": "The market was displaced, not closed.",
    "not_closed": "The market did not close.",
    "inconclusive": "The data cannot tell whether the market closed.",
}


_DESIGN_CODE = re.compile(
    r"\b(" + "|".join(sorted(DESIGN_LABELS, key=len, reverse=True)) + r")\b"
    r"(?= (?:counterfactual|model|finds|design)\b)"  # "did", "its": also English words
)


_CATCHMENT_AREA = re.compile(r"\bcatchment area\b")


def plain_reason(reason: str, *, outcome: str | None = None, label: str | None = None) -> str:
    """A verdict reason in words: design codes spelled out (``the sc counterfactual`` ->
    ``the synthetic control counterfactual``), the outcome's code replaced by its
    ``label`` (``I_drugs offences`` -> ``Drug offences``) and the catchment area called the
    nearby (catchment) areas, as the plain answer's headline calls it."""
    text = _DESIGN_CODE.sub(lambda m: DESIGN_LABELS[m.group(1)], reason)
    # the plain answer calls the catchment what its headline does: the nearby areas
    text = _CATCHMENT_AREA.sub("nearby (catchment) areas", text)
    if outcome and label:
        for code in (outcome.capitalize(), outcome):
            for noun in ("offences", "incidents"):
                words = label if code == outcome else label[:1].upper() + label[1:]
                text = text.replace(f"{code} {noun}", words)
    return text


def verdict_words(label: str) -> str:
    """A verdict code in words: ``"not_closed"`` -> ``"not closed"``."""
    return VERDICT_WORDS.get(label, label.replace("_", " "))


def chance(p: float, direction: str, *, floor: float = 0.0) -> str:
    """How sure, in words: how often chance alone gives a change this large.

    ``chance(0.017, "fall")`` -> ``"a fall this large would show up by chance
    about 2 times in 100 if the DMI had done nothing (one-sided p = 0.017)"``.
    ``floor`` is the smallest p the test can give (``1/(n+1)`` for a rank test
    over ``n`` placebos, 0 for a continuous one): a p at it is said to be the
    floor, which no stronger evidence could go below.
    """
    if p is None or not math.isfinite(p):
        return f"the design gave no test of a {direction}"
    if p < 0.001:
        often = "less than once in 1,000 tries"
    elif p < 0.01:
        often = "less than once in 100 tries"
    else:
        n = round(p * 100)
        often = f"about {n} time{'s' if n != 1 else ''} in 100"
    at_floor = ""
    if floor > 0 and p <= floor * (1 + 1e-9):
        n = round(1 / floor) - 1
        at_floor = f", the smallest p its test over {n} placebos can give"
    return (
        f"a {direction} this large would show up by chance {often} if the DMI had done "
        f"nothing (one-sided p = {fmt_p(p)}{at_floor})"
    )


def change_sentence(
    row: Mapping[str, Any], *, label: str, unit: str, n_post: int, suppress_below: int = 0
) -> str:
    """``"Drug offences in the market were 52% below what was expected without the DMI:
    405 in the 18 months after the call-in, against 838 expected"``.

    Counts below ``suppress_below`` (``[report] suppress_below``) are written
    ``"<10"``, as in the tables."""
    pct = float(row["pct_change"])
    side = "below" if pct < 0 else "above"
    return (
        f"{label[:1].upper()}{label[1:]} in the market were {fmt_size(pct)} {side} what was "
        f"expected without the DMI: {fmt_count(row['observed'], suppress_below)} in the "
        f"{duration_text(n_post, unit)} after the call-in, against "
        f"{fmt_count(row['counterfactual'], suppress_below)} expected"
    )


def closure_summary(
    rules: Any, unit: str, *, catchment: bool = True, catchment_high: float | None = None
) -> str:
    """Why a *closed* verdict holds, in words, with the study's thresholds.

    ``catchment``: whether the site has a catchment area; without one nothing
    nearby was measured, and the sentence says so instead of claiming no rise.
    ``catchment_high``: the upper end of the catchment's interval, when known; a
    positive one is the largest rise the data cannot rule out, and is said.
    """
    held = duration_text(rules.persistence_in(unit), unit)
    nearby = (
        "nearby areas did not rise significantly"
        if catchment
        else "no catchment area was given, so whether it moved next door was not assessed"
    )
    if catchment and catchment_high is not None and catchment_high > 0:  # not NaN
        nearby += (
            " (though the data cannot rule out a rise there)"
            if math.isinf(catchment_high)
            else f" (though a rise of up to {fmt_size(catchment_high)} is not ruled out)"
        )
    return (
        "every condition of the closure rule holds: the fall is significant, at least "
        f"{rules.min_reduction:.0%}, it held over the last {held} (still a drop of at least "
        f"{rules.lasting_drop() * 100:.3g}% there), and {nearby}."
    )


def catchment_high(evidence: Any) -> float | None:
    """The upper end of the catchment's interval the verdict read (``None``: no catchment)."""
    return None if evidence.catchment is None else float(evidence.catchment.ci_high)


def deciding_reason(label: str, reasons: Sequence[str], *, rule_summary: str) -> str:
    """The one reason that decided the verdict.

    *Inconclusive*: the first problem found. *Displaced* and *not closed*: the
    condition that failed (the rule states it last). *Closed*: every condition
    held (``rule_summary``).
    """
    if not reasons:
        return rule_summary
    if label == "inconclusive":
        return reasons[0]
    if label == "closed":
        return rule_summary
    return reasons[-1]


def first_paragraph(
    *,
    label: str,
    reasons: Sequence[str],
    row: Mapping[str, Any],
    outcome_label: str,
    unit: str,
    n_post: int,
    rule_summary: str,
    outcome: str | None = None,
    suppress_below: int = 0,
    min_p: float = 0.0,
) -> str:
    """The opening paragraph of a site page (Markdown).

    ``row`` is the primary design's post-period effects row for the primary
    outcome (the same row as in the table below it); its ``p_lower`` (or
    ``p_value``) is the one-sided test of a fall, whose smallest possible value
    is ``min_p`` (:attr:`~dmi_eval.verdict.WindowEvidence.min_p`). Counts below
    ``suppress_below`` are suppressed as in the tables.
    """
    p = float(row["p_lower"]) if "p_lower" in row else float(row["p_value"])
    pct = float(row["pct_change"])
    change = change_sentence(
        row, label=outcome_label, unit=unit, n_post=n_post, suppress_below=suppress_below
    )
    reason = plain_reason(
        deciding_reason(label, reasons, rule_summary=rule_summary),
        outcome=outcome,
        label=outcome_label,
    )
    if reason[:1].isupper() and not reason[1:2].isupper():
        reason = reason[:1].lower() + reason[1:]  # "Decided by: no significant reduction"
    head = f"**{VERDICT_SENTENCES.get(label, verdict_words(label))}**"
    if label == "inconclusive":
        return (
            f"{head} Decided by: {reason} So the estimate is not a finding either way: "
            f"{change[:1].lower()}{change[1:]}, but this number should not be read as a "
            "success or a failure of the DMI."
        )
    if pct < 0:
        lead = "That is unlikely to be chance: " if p < 0.05 else "That could well be chance: "
        sure = lead + chance(p, "fall", floor=min_p)
    else:
        sure = f"There is no sign of a fall (one-sided p of a fall = {fmt_p(p)})"
    wide = ""
    if interval_too_wide(row["ci_low"], row["ci_high"]):
        wide = " The design's interval is too wide to tell how large the change was."
    return f"{head} {change}. {sure}.{wide} Decided by: {reason}" + (
        "" if reason.endswith(".") else "."
    )
