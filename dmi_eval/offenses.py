"""Offense code -> outcome category maps.

The built-in ``"nibrs"`` map sends every NIBRS Group A offense code (and the
Group B codes that measure public disorder) to one of five outcomes:
``drug, violent, property, disorder, weapons``. The table ships as
``dmi_eval/resources/nibrs.csv`` and is documented in ``docs/offense_map.md``.
Codes not in the map (e.g. 09C justifiable homicide, 90D driving under the
influence, 90Z all other offenses) are *unmapped*: those rows are written to
the reject log, never silently dropped. A study may instead name its own CSV
with columns ``offense,outcome``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from dmi_eval.errors import DataError

NIBRS_OUTCOMES: tuple[str, ...] = ("drug", "violent", "property", "disorder", "weapons")


def normalise_code(codes: pd.Series) -> pd.Series:
    """Offense codes as stripped upper-case strings (so ``" 35a"`` matches ``35A``)."""
    return codes.astype("string").str.strip().str.upper()


def nibrs_map() -> pd.DataFrame:
    """The built-in NIBRS map: columns ``offense, outcome, description``."""
    with (
        resources.files("dmi_eval.resources")
        .joinpath("nibrs.csv")
        .open("r", encoding="utf-8") as fh
    ):
        return pd.read_csv(fh, dtype=str)


def load_offense_map(spec: str | Path) -> dict[str, str]:
    """Return ``{offense code: outcome}`` for the built-in map name or a CSV path.

    Raises
    ------
    DataError
        When the CSV is missing, lacks ``offense``/``outcome`` columns, or maps
        one code to two outcomes.
    """
    if isinstance(spec, str) and spec == "nibrs":
        table = nibrs_map()
        where = "built-in nibrs map"
    else:
        path = Path(spec)
        if not path.exists():
            raise DataError(f"{path}: offense map not found; fix [data].offense_map in study.toml")
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read the offense map ({exc})") from None
        where = str(path)
        missing = [c for c in ("offense", "outcome") if c not in table.columns]
        if missing:
            raise DataError(
                f"{where}: offense map lacks column(s) {', '.join(missing)}; "
                "it needs a header line 'offense,outcome'"
            )
    codes = normalise_code(table["offense"])
    outcomes = table["outcome"].astype("string").str.strip()
    bad = outcomes.isna() | (outcomes == "") | codes.isna() | (codes == "")
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0]) + 2
        raise DataError(f"{where}: line {row} has an empty offense or outcome")
    mapping: dict[str, str] = {}
    for code, outcome in zip(codes, outcomes, strict=True):
        if mapping.get(code, outcome) != outcome:
            raise DataError(
                f"{where}: offense {code} is mapped to both {mapping[code]!r} and {outcome!r}"
            )
        mapping[str(code)] = str(outcome)
    return mapping
