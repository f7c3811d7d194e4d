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


def check_last_k(last_k: Any) -> int:
    """``last_k`` (length of the ``last{k}`` window): a positive integer."""
    if not isinstance(last_k, int) or isinstance(last_k, bool) or last_k < 1:
        raise ValueError(f"last_k must be a positive integer; got {last_k!r}")
    return last_k


def check_alpha(alpha: float) -> float:
    """``alpha`` (1 - the confidence level): strictly between 0 and 1."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    return alpha


def check_outcomes(available: Sequence[str], outcomes: Sequence[str] | None) -> tuple[str, ...]:
    """The outcomes to fit: ``outcomes`` (default: all ``available``), each one available."""
    chosen = tuple(available if outcomes is None else outcomes)
    unknown = [o for o in chosen if o not in available]
    if unknown or not chosen:
        raise ValueError(
            f"outcomes {unknown or chosen!r} not among the site's outcomes ({', '.join(available)})"
        )
    return chosen
