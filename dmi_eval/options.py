"""The options vocabulary of the designs, and its checks at a design's entry.

One spelling each, shared by every design constructor:

``level``
    Confidence level of the intervals (e.g. ``0.95``, or ``0.90`` for microsynth as in
    the Seattle evaluation); strictly between 0 and 1.
``sided``
    Alternative of a reported p-value: ``"lower"`` (a reduction), ``"greater"`` or
    ``"two-sided"`` (:data:`Sided`).
``last_k``
    Length of the ``last{k}`` window: a positive integer (capped by each design at the
    number of post periods).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

Sided = Literal["lower", "greater", "two-sided"]


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


def check_level(level: Any) -> float:
    """``level`` (confidence level of the intervals): a number strictly between 0 and 1."""
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ValueError(f"level must be a confidence level in (0, 1), e.g. 0.95; got {level!r}")
    return float(level)


def alpha_of(level: float) -> float:
    """Tail mass ``1 - level`` of a confidence level, rounded to 12 decimals.

    ``1 - 0.95`` is ``0.050000000000000044`` in binary floating point; rounding gives the
    constant ``0.05`` itself, so quantiles ``q_{1 - alpha/2}`` are those of the exact level.
    """
    return round(1.0 - check_level(level), 12)


def check_alpha(alpha: float) -> float:
    """``alpha`` (1 - the confidence level) of the numeric layer: strictly between 0 and 1."""
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


SCHEDULER_SCHEMES: tuple[str, ...] = ("tcp", "tls", "ucx", "ws", "wss")
"""Address schemes of a Dask scheduler (``distributed``'s comm protocols)."""


def scheduler_problem(address: str) -> str | None:
    """Why ``address`` is not a Dask scheduler address like ``tcp://HOST:PORT`` (``None``: it is).

    ``"http://HOST:PORT"`` (the dashboard's), ``"HOST"`` and ``"tcp://HOST"``
    are refused here, before a run, with the form to use.
    """
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        port = None
        parts = None
    if parts is None or parts.scheme not in SCHEDULER_SCHEMES or not parts.hostname or port is None:
        return (
            f"{address!r} is not a Dask scheduler address: write it as tcp://HOST:PORT (the "
            "address `dask scheduler` prints, e.g. tcp://10.0.0.5:8786; not the dashboard's "
            "http:// address)"
        )
    return None
