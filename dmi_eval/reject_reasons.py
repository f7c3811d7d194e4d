"""Why an input row was not counted, and the checks that stop a run on its rejects.

Reject reasons (:data:`REJECT_REASONS`) come in two kinds. *Quality* rejects
(:data:`QUALITY_REASONS`: a row of the wrong shape, an unparseable date, an
unknown area, a missing value, a duplicate id, a bad period or a duplicate
cell) point at a broken extract: when their share exceeds
``[data].max_reject_share`` the run stops (:func:`check_reject_share`), and
dates that read with day and month exchanged stop it whatever their share
(:func:`check_date_order`), because the rows that did match were counted in
the wrong month. *Scope* rejects are expected in a real extract.
"""

from __future__ import annotations

from typing import Protocol

import pandas as pd

from dmi_eval.errors import RejectThresholdError
from dmi_eval.extract import day_month_swapped, describe_format


class Ingest(Protocol):
    """What the checks read of :class:`dmi_eval.data.Ingest` (which reads this module)."""

    rejects: pd.DataFrame
    file: str
    rows_read: int
    date_format: str | None
    bad_date_sample: tuple[str, ...]


REJECT_REASONS: dict[str, str] = {
    "missing_value": "a required field is empty",
    "wrong_field_count": "the row has more or fewer fields than the header (value: its count)",
    "empty_row": "a blank line",
    "bad_date": "date does not match the expected format",
    "unknown_area": "area_id is not in the areas file",
    "duplicate_id": "incident_id already seen in an earlier row",
    "bad_period": "period cannot be read at the study frequency, or is a longer span",
    "duplicate_cell": "area_id, period and outcome repeat an earlier row",
    "outside_range": "date is outside the study range ([study].start to [study].end)",
    "partial_period": "date falls in a first or last period that [study].start or end cuts "
    "short (counted, it would look quieter than it was)",
    "unmapped_offense": "offense code is not in the offense map",
    "bad_coordinates": "x/y empty, not a number, (0, 0) or outside the CRS's valid range",
    "outside_areas": "the point lies in no area",
    "outside_boundary": "the point lies outside [geo].boundary (the study's limits)",
}
QUALITY_REASONS: frozenset[str] = frozenset(
    {
        "missing_value",
        "wrong_field_count",
        "bad_date",
        "unknown_area",
        "duplicate_id",
        "bad_period",
        "duplicate_cell",
        "bad_coordinates",
    }
)


def describe_reason(reason: str, date_format: str | None = None) -> str:
    """A reject reason in words; ``bad_date`` names the expected format."""
    text = REJECT_REASONS[reason]
    if reason == "bad_date":
        text += f" ({describe_format(date_format)})"
    return text


def first_date(sample: tuple[str, ...] | list[str]) -> str | None:
    """``"e.g. '13/01/2019'"``: the first rejected date at hand (the sample lives in memory
    only; the reject log never records dates)."""
    first = next((str(v).strip() for v in sample if str(v).strip()), None)
    return None if first is None else f"e.g. {first!r}"


def example_date(sample: tuple[str, ...] | list[str], reason: str) -> str:
    """``", e.g. '13/01/2019'"`` after a ``bad_date`` reason, when a rejected date is at hand."""
    example = first_date(sample)
    return "" if reason != "bad_date" or example is None else f", {example}"


def swap_hint(sample: tuple[str, ...] | list[str], n_bad: int, date_format: str | None) -> str:
    """A sentence naming the format with day and month exchanged, when it reads the dates."""
    swapped = day_month_swapped(pd.Series(list(sample), dtype=object), date_format, n_rows=n_bad)
    if swapped is None:
        return ""
    return (
        f" They read as {swapped!r}: day and month are the other way round; set "
        f"[data].date_format = {swapped!r} in study.toml."
    )


def check_date_order(ingest: Ingest) -> None:
    """Stop when the dates rejected as ``bad_date`` read with day and month exchanged."""
    n_bad = int((ingest.rejects["reason"] == "bad_date").sum())
    hint = swap_hint(ingest.bad_date_sample, n_bad, ingest.date_format)
    if hint:
        raise RejectThresholdError(
            f"{ingest.file}: {n_bad:,} dates ({first_date(ingest.bad_date_sample)}) "
            f"do not match date_format {ingest.date_format!r}.{hint} The rows that did match "
            "were counted in the wrong month, so the run stops.",
            ingest,
        )


def check_reject_share(ingest: Ingest, max_share: float) -> None:
    """Raise :class:`RejectThresholdError` when quality rejects exceed ``max_share``."""
    if ingest.rows_read == 0:
        return
    quality = ingest.rejects["reason"].isin(QUALITY_REASONS)
    share = quality.sum() / ingest.rows_read
    if share > max_share:
        top = ingest.rejects.loc[quality, "reason"].value_counts().head(3)
        reasons = "; ".join(
            f"{n} {describe_reason(r, ingest.date_format)}{example_date(ingest.bad_date_sample, r)}"
            for r, n in top.items()
        )
        raise RejectThresholdError(
            f"{ingest.file}: {share:.1%} of {ingest.rows_read} rows rejected for data quality "
            f"({reasons}), above the {max_share:.0%} limit. Fix the file, or raise "
            "[data].max_reject_share in study.toml if these rows are expected to be unusable "
            "(`dmi-eval evaluate` writes every rejected row and its reason to "
            "results/rejects.csv).",
            ingest,
        )
