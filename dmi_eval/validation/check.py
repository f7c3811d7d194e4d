"""One validated quantity: our value against a published one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from dmi_eval.errors import ReferenceDataMissing


@dataclass(frozen=True)
class Check:
    """A row of ``validation.csv``.

    ``published`` and ``tolerance`` are ``None`` for quantities shown for the
    record only (``passed`` is then ``None`` too). Otherwise ``passed`` is
    ``abs(value - published) <= tolerance``.
    """

    case: str
    quantity: str
    value: float
    published: float | None = None
    tolerance: float | None = None
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.published is None or self.tolerance is None:
            return None
        if math.isnan(self.value):
            return False
        return abs(self.value - self.published) <= self.tolerance


def reference_file(reference: Path, name: str) -> Path:
    """Path of a reference dataset, or :class:`ReferenceDataMissing` naming it."""
    path = Path(reference) / name
    if not path.exists():
        raise ReferenceDataMissing(
            f"reference dataset {name} not found in {reference}; "
            "pass --reference DIR pointing at the shared reference folder"
        )
    return path
