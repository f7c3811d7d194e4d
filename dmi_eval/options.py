"""Checks of keyword options at a design's entry (one spelling each)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args


def check_choice(name: str, value: Any, allowed: Sequence[str] | Any) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``.

    ``allowed`` is a sequence of values or a ``Literal`` type.
    """
    choices = get_args(allowed) or tuple(allowed)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
