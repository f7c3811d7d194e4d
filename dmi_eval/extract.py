"""Read a CSV extract as the department wrote it: delimiter, column names, date formats.

Helpers of :mod:`dmi_eval.data` (and of the grid pre-pass in :mod:`dmi_eval.geo`):

- :func:`detect_delimiter` picks ``,``, ``;``, ``|`` or tab from the header line;
- :func:`header` checks that the required columns exist (with a did-you-mean hint
  and the ``[data.columns]`` key that maps them), and says when a file is empty
  or holds a header only;
- :func:`chunks` streams only the required columns, as strings;
- :class:`RowStream` / :class:`ChunkFilter` / :class:`Rejects` number the rows
  and move every unusable one to the reject log with its reason;
- :func:`parse_dates` turns date text into naive local timestamps per
  ``[data].date_format`` and ``[data].timezone``;
- :class:`CellTally` sums counted rows per (area, period, outcome) in vectorised
  groupbys, and :func:`seen_in` finds already-counted incident ids by binary search.
"""

from __future__ import annotations

import bz2
import csv
import difflib
import gzip
import lzma
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dmi_eval.errors import DataError

CHUNK_ROWS = 500_000
CANDIDATE_DELIMITERS: tuple[str, ...] = (",", ";", "|", "\t")
_OFFSET_GROUP = r"(Z|[+-]\d{2}:?\d{2})$"
_OFFSET_AT_END = r"\s?(?:Z|[+-]\d{2}:?\d{2})$"


def describe_format(date_format: str | None) -> str:
    """The expected date format in words (used in reject reasons and errors)."""
    if date_format is None:
        return "ISO 8601 (YYYY-MM-DD, optionally followed by a time)"
    if date_format == "epoch_ms":
        return "epoch milliseconds (epoch_ms)"
    return f"date_format {date_format!r}"


def day_month_swapped(
    sample: pd.Series,
    date_format: str | None,
    *,
    n_rows: int,
    min_rows: int = 20,
    share: float = 0.9,
) -> str | None:
    """The format with ``%d`` and ``%m`` exchanged, when it reads the dates ``date_format`` did not.

    ``sample`` holds some of the ``n_rows`` date texts rejected as
    ``bad_date``. When there are at least ``min_rows`` of them and ``share``
    of the sample reads under the exchanged format, the file's day and month
    are the other way round (and the rows that did match, days up to 12, were
    counted in the wrong month); ``None`` otherwise, or when the format has no
    ``%d`` and ``%m``.
    """
    if not date_format or "%d" not in date_format or "%m" not in date_format:
        return None
    if n_rows < min_rows or sample.empty:
        return None
    swapped = date_format.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
    read = parse_dates(sample.astype(str), date_format=swapped).notna().mean()
    return swapped if read >= share else None


_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


_OTHER_COMPRESSED = (".zip", ".zst", ".tar")
"""Suffixes pandas decompresses that :func:`open_text` does not (their rows are not pre-counted)."""


def open_text(path: Path):
    """The file as text, decompressed by its suffix as pandas does (gz, bz2, xz)."""
    opener = _COMPRESSED.get(path.suffix.lower())
    if opener is None:
        return path.open("r", encoding="utf-8", errors="replace", newline="")
    return opener(path, "rt", encoding="utf-8", errors="replace", newline="")


def detect_delimiter(path: Path) -> str:
    """The candidate delimiter that occurs most often in the header line (``,`` on a tie)."""
    with open_text(path) as fh:
        first = fh.readline()
    counts = {d: first.count(d) for d in CANDIDATE_DELIMITERS}
    best = max(CANDIDATE_DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] > 0 else ","


def header(
    path: Path,
    required: Mapping[str, str],
    *,
    delimiter: str | None = None,
    mapping_key: str | None = "[data.columns]",
) -> str:
    """Check the file's header and return the delimiter to read it with.

    Parameters
    ----------
    path
        The CSV file.
    required
        Field -> the column name expected in the file (after ``[data.columns]``).
    delimiter
        ``None``: detected from the header line.
    mapping_key
        Where the user can map a column to another name (named in the error).
    """
    if not path.exists():
        raise DataError(f"{path.name}: file not found at {path}; fix the path in study.toml [data]")
    sep = delimiter or detect_delimiter(path)
    try:
        head = pd.read_csv(
            path, nrows=1, sep=sep, dtype=str, encoding="utf-8", encoding_errors="replace"
        )
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{path.name}: the file is empty; it needs a header line "
            f"'{','.join(required.values())}' and data rows"
        ) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path.name}: cannot read the header ({exc})") from None
    columns = [str(c).strip() for c in head.columns]
    missing = [(f, c) for f, c in required.items() if c not in columns]
    if missing:
        hints = []
        for _, col in missing:
            close = difflib.get_close_matches(col, columns, n=1)
            if not close:
                close = [c for c in columns if c.lower() == col.lower()]
            hint = f"{col} (did you mean {close[0]!r}?)" if close else col
            hints.append(hint)
        where = ""
        if mapping_key:
            field_name, col = missing[0]
            where = (
                f" Name your own columns in {mapping_key}, e.g. "
                f'{field_name} = "{_guess(col, columns)}".'
            )
        shown = ", ".join(columns)
        if len(columns) == 1 and delimiter is None:
            shown += " (one column: is the delimiter one of , ; | tab? set [data].delimiter)"
        raise DataError(
            f"{path.name}: missing column(s) {', '.join(hints)}; found: {shown}. "
            f"Required: {', '.join(required.values())}.{where}"
        )
    if head.empty:
        raise DataError(
            f"{path.name}: the file has a header but no data rows; export the incidents again"
        )
    return sep


def _guess(col: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(col, columns, n=1, cutoff=0.3)
    return close[0] if close else "Your Column"


def chunks(
    path: Path, columns: Mapping[str, str], *, delimiter: str, skip: int = 0
) -> Iterator[pd.DataFrame]:
    """Stream the required columns as strings, renamed to their field names.

    ``columns`` maps field -> column name in the file. Other columns (addresses,
    narratives) are never parsed into memory.
    """
    wanted = {c: f for f, c in columns.items()}
    reader = pd.read_csv(
        path,
        sep=delimiter,
        skiprows=skip,  # the blank lines before the header (:func:`leading_blank_lines`)
        usecols=lambda c: str(c).strip() in wanted,
        dtype=str,
        keep_default_na=False,
        encoding="utf-8",
        encoding_errors="replace",
        chunksize=CHUNK_ROWS,
        skip_blank_lines=False,  # a blank line is a row too: counted as rejected, numbers kept
    )
    with reader:
        try:
            for chunk in reader:
                chunk.columns = [wanted[str(c).strip()] for c in chunk.columns]
                yield chunk.fillna("")
        except pd.errors.ParserError as exc:
            raise DataError(
                f"{path.name}: malformed CSV ({exc}); fix that row and re-run"
            ) from None


def parse_dates(
    values: pd.Series, *, date_format: str | None = None, timezone: str | None = None
) -> pd.Series:
    """Date text -> naive local ``datetime64``; text that does not match -> ``NaT``.

    Rules (Notes of the input contract):

    - ISO 8601 (default): ``YYYY-MM-DD`` optionally followed by ``T`` or a space and
      a time. Without ``timezone`` the date is taken as written (an offset or ``Z``
      is ignored); with it, a time carrying an offset or ``Z`` is converted to
      that zone first, a time without one is taken as local already.
    - strftime codes: the same rule, for values that carry an offset; the format
      must then end in ``%z`` unless ``timezone`` is given (``Z`` is accepted).
    - ``"epoch_ms"``: milliseconds since 1970-01-01 UTC, converted to ``timezone``
      (UTC when none is given).
    """
    text = values.astype(str).str.strip()
    if date_format == "epoch_ms":
        ms = pd.to_numeric(text, errors="coerce")
        ms = ms.where((ms % 1 == 0) & (ms.abs() < 1e14))
        stamps = pd.to_datetime(ms, unit="ms", utc=True)
        if timezone is not None:
            stamps = stamps.dt.tz_convert(timezone)
        return _as_ns(stamps.dt.tz_localize(None))
    if timezone is None and (date_format is None or "%z" not in date_format):
        # Offsets change nothing here: ISO dates are read up to the day, and a format
        # without %z does not match a value that carries one (bad_date).
        return _parse_local(text, date_format)
    offset = text.str.extract(_OFFSET_GROUP, expand=False)
    has_offset = offset.notna()
    if not has_offset.any():
        return _parse_local(text, date_format)
    stripped = text.str.replace(_OFFSET_AT_END, "", regex=True)
    local = _parse_local(stripped, _strip_z(date_format))
    if timezone is None:
        return local
    # The time of day matters here: parse the rows with an offset in full.
    full_format = "ISO8601" if date_format is None else _strip_z(date_format)
    timed = pd.to_datetime(stripped[has_offset], format=full_format, errors="coerce")
    sign = offset.str.slice(0, 1).map({"+": 1, "-": -1}).fillna(0)
    digits = offset.str.replace(":", "", regex=False).str.slice(1)
    minutes = sign * (
        pd.to_numeric(digits.str.slice(0, 2), errors="coerce").fillna(0) * 60
        + pd.to_numeric(digits.str.slice(2, 4), errors="coerce").fillna(0)
    )
    utc = _as_ns(timed) - pd.to_timedelta(minutes[has_offset], unit="min")
    converted = utc.dt.tz_localize("UTC").dt.tz_convert(timezone).dt.tz_localize(None)
    local[has_offset] = converted.astype("datetime64[ns]")
    return local


def _strip_z(date_format: str | None) -> str | None:
    if date_format is None:
        return None
    return re.sub(r"\s?%[zZ]", "", date_format)


def _parse_local(text: pd.Series, date_format: str | None) -> pd.Series:
    if date_format is None:
        head = text.str.slice(0, 10)
        tail = text.str.slice(10, 11)
        parsed = pd.to_datetime(head, format="%Y-%m-%d", errors="coerce")
        return _as_ns(parsed.where(tail.isin(["", "T", " "])))
    return _as_ns(pd.to_datetime(text, format=date_format, errors="coerce"))


def _as_ns(parsed: pd.Series) -> pd.Series:
    """Nanosecond datetimes; a date outside their range (years 1677-2262), such as a
    corrupted year ``-019``, becomes NaT and so a ``bad_date`` reject, not a traceback."""
    inside = (parsed >= pd.Timestamp.min) & (parsed <= pd.Timestamp.max)
    return parsed.where(inside).astype("datetime64[ns]")


# --- accounting for every row ---------------------------------------------------------

REJECT_COLUMNS: tuple[str, ...] = ("file", "row", "reason", "field", "value")


def leading_blank_lines(path: Path) -> int:
    """Blank lines before the header (the header is the first line with any text)."""
    with open_text(path) as f:
        for n, line in enumerate(f):
            if line.rstrip("\r\n"):
                return n
    return 0


def field_counts(path: Path, *, delimiter: str, skip: int = 0) -> tuple[int, np.ndarray] | None:
    """The header's number of fields and every data row's, as a CSV reader splits them.

    With only the needed columns parsed, pandas gives a row with an extra or a
    missing field (an unquoted delimiter in an address, a cut line) the
    header's shape silently, its values possibly shifted into the wrong
    columns; this count finds such rows. Values are split but not kept.
    ``None`` for a compression only pandas reads (zip, zst, tar).
    """
    if any(suffix in _OTHER_COMPRESSED for suffix in path.suffixes[-2:]):
        return None
    with open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        for _ in range(skip):  # blank lines before the header
            next(reader, None)
        n_header = len(next(reader, []))
        return n_header, np.fromiter((len(row) for row in reader), dtype=np.int64)


class RowStream:
    """A CSV's chunks, each with its 1-based row numbers and a :class:`ChunkFilter`
    in which rows with an empty required field are already rejected.

    ``columns`` maps field -> column name in the file; chunks come with field
    names; the reject log names the file's own column.
    """

    def __init__(
        self,
        path: Path,
        columns: Mapping[str, str],
        rejects: Rejects,
        *,
        delimiter: str = ",",
        nonempty: tuple[str, ...] | None = None,
    ):
        self.path = path
        self.columns = dict(columns)
        self.rejects = rejects
        self.delimiter = delimiter
        self.nonempty = tuple(columns) if nonempty is None else nonempty
        self.rows_read = 0

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, ChunkFilter]]:
        skip = leading_blank_lines(self.path)  # as the header check skips them
        counted = field_counts(self.path, delimiter=self.delimiter, skip=skip)
        for chunk in chunks(self.path, self.columns, delimiter=self.delimiter, skip=skip):
            rows = np.arange(self.rows_read + 1, self.rows_read + len(chunk) + 1)
            self.rows_read += len(chunk)
            chunk_filter = ChunkFilter(rows, self.rejects)
            if counted is not None and rows[-1] <= counted[1].size:
                n_header, fields = counted[0], counted[1][rows - 1]
                chunk_filter.reject(fields == 0, "empty_row", "")
                chunk_filter.reject(fields != n_header, "wrong_field_count", "", fields.astype(str))
            for col in self.nonempty:
                empty = (chunk[col].str.strip() == "").to_numpy()
                chunk_filter.reject(empty, "missing_value", self.columns[col])
            yield chunk, chunk_filter
        if counted is not None and self.rows_read != counted[1].size:
            raise DataError(
                f"{self.path.name}: the CSV reader found {counted[1].size:,} data rows but pandas "
                f"{self.rows_read:,}, so rows cannot be numbered reliably; check the file's "
                "quoting (a quote character inside an unquoted field) and re-export it"
            )


class ChunkFilter:
    """The rows of one chunk still in play; each check moves failures to the reject log."""

    def __init__(self, rows: np.ndarray, rejects: Rejects):
        self.rows = rows
        self.rejects = rejects
        self.keep = np.ones(len(rows), dtype=bool)

    def reject(self, mask: np.ndarray, reason: str, field_name: str, values=None) -> None:
        """Reject rows in ``mask`` that are still kept, with ``reason``."""
        mask = np.asarray(mask, dtype=bool) & self.keep
        shown = None if values is None else np.asarray(values)[mask]
        self.rejects.add(self.rows[mask], reason, field_name, shown)
        self.keep &= ~mask


class Rejects:
    """Collects rejected rows as small arrays (file, row, reason, field, value)."""

    def __init__(self, file: str):
        self.file = file
        self.parts: list[pd.DataFrame] = []

    def add(self, rows: np.ndarray, reason: str, field_name: str, values=None) -> None:
        if len(rows) == 0:
            return
        self.parts.append(
            pd.DataFrame(
                {
                    "file": self.file,
                    "row": rows.astype("int64"),
                    "reason": reason,
                    "field": field_name,
                    "value": "" if values is None else np.asarray(values, dtype=object),
                }
            )
        )

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(
                {c: pd.Series(dtype="int64" if c == "row" else object) for c in REJECT_COLUMNS}
            )
        out = pd.concat(self.parts, ignore_index=True)
        out = out.sort_values("row", kind="stable").reset_index(drop=True)
        out["value"] = out["value"].astype(object)
        return out[list(REJECT_COLUMNS)]


class CellTally:
    """Counts per (area, period ordinal, outcome), summed chunk by chunk in vectorised groupbys.

    Keys stay plain arrays (area ids, integer period ordinals, outcome names), never
    ``Period`` objects or per-cell Python tuples; cells with a zero total are kept,
    so an area or outcome that appears only with zero counts still enters the panel.
    """

    _COMPACT_ROWS = 2_000_000

    def __init__(self) -> None:
        self.parts: list[pd.DataFrame] = []
        self.rows = 0
        self.total = 0

    def __bool__(self) -> bool:
        return self.rows > 0

    def add(
        self,
        area: np.ndarray,
        ordinal: np.ndarray,
        outcome: np.ndarray,
        n: np.ndarray | None = None,
    ) -> None:
        """Add rows (``n`` incidents each; 1 when ``None``)."""
        if len(area) == 0:
            return
        weight = np.ones(len(area), dtype=np.int64) if n is None else np.asarray(n, np.int64)
        part = _sum_cells(
            pd.DataFrame(
                {
                    "area": np.asarray(area, dtype=object),
                    "period": np.asarray(ordinal, dtype=np.int64),
                    "outcome": np.asarray(outcome, dtype=object),
                    "n": weight,
                }
            )
        )
        self.parts.append(part)
        self.rows += len(part)
        self.total += int(weight.sum())
        if self.rows > self._COMPACT_ROWS and len(self.parts) > 1:
            self.parts = [self.frame()]
            self.rows = len(self.parts[0])

    def frame(self) -> pd.DataFrame:
        """One row per cell: ``area, period`` (ordinal), ``outcome, n``."""
        if len(self.parts) == 1:
            return self.parts[0]
        return _sum_cells(pd.concat(self.parts, ignore_index=True))


def _sum_cells(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.groupby(["area", "period", "outcome"], sort=False, as_index=False)["n"].sum()


def seen_in(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Which of ``ids`` are in ``sorted_ids`` (sorted ascending), by binary search."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[at] == ids


def check_conservation(file: str, read: int, counted: int, rejected: int) -> None:
    if read != counted + rejected:
        raise AssertionError(
            f"{file}: {read} rows read but {counted} counted + {rejected} rejected; "
            "this is a bug in dmi_eval, please report it"
        )
