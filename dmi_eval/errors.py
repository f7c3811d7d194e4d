"""Errors a user can cause.

Every exception raised because of a user's input is a :class:`DmiEvalError`
subclass whose message names the file, row, key or site at fault and says how
to fix it. The CLI prints the message and exits non-zero without a traceback.
"""

from __future__ import annotations


class DmiEvalError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(DmiEvalError):
    """``study.toml`` is malformed, incomplete or inconsistent."""


class DataError(DmiEvalError):
    """An input data file is missing, empty, or lacks required columns."""


class RejectThresholdError(DataError):
    """Too many input rows were rejected for data-quality reasons.

    ``ingest`` (a :class:`dmi_eval.data.Ingest`, when known) holds the account
    of every row, so that ``evaluate`` can write the reject log the user needs.
    """

    def __init__(self, message: str, ingest=None):
        super().__init__(message)
        self.ingest = ingest


class DesignError(DmiEvalError):
    """A design cannot be fitted to a site as configured (e.g. too few pre periods)."""


class ReferenceDataMissing(DmiEvalError):
    """The reference datasets needed for validation are not available."""


class GeoError(DataError):
    """A geographic input (areas, market, boundary, coordinates) cannot be used as given."""


class NoUsableRowsError(DataError):
    """Every input row was rejected; ``rejects`` holds the reject log to write out."""

    def __init__(self, message: str, rejects):
        super().__init__(message)
        self.rejects = rejects
