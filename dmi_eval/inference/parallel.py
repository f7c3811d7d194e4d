"""The one parallel map every loop goes through (joblib, honours ``joblib.parallel_config``) and the progress bar."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

Alternative = Literal["lower", "greater", "two-sided"]


def _run_chunk(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [fn(item) for item in items]


def parallel_map(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    n_jobs: int = 2,
    min_items: int = 8,
    min_seconds: float = 1.0,
) -> list[Any]:
    """``[fn(x) for x in items]``, in order, over ``n_jobs`` joblib workers.

    The first item runs in this process and is timed: when the whole loop
    would take less than ``min_seconds`` in this process (or there are fewer
    than ``min_items`` items, or ``n_jobs == 1``) the rest runs here too, since
    starting workers would cost more than it saves. Otherwise the remaining
    items are split into contiguous chunks up front (about four per worker).
    Each item's result depends only on the item, so the output is identical
    whatever ``n_jobs`` is and whichever path is taken.
    """
    items = list(items)
    if n_jobs == 1 or len(items) < min_items:
        return _run_chunk(fn, items)
    start = time.perf_counter()
    first = fn(items[0])
    if (time.perf_counter() - start) * len(items) < min_seconds:
        return [first, *_run_chunk(fn, items[1:])]
    rest = items[1:]
    n_chunks = min(len(rest), 4 * max(n_jobs, 1))
    bounds = np.linspace(0, len(rest), n_chunks + 1).round().astype(int)
    chunks = [rest[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    parts = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_run_chunk)(fn, c) for c in chunks
    )
    out = []
    with progress_bar(len(rest), "placebo fits") as bar:
        for part in parts:
            out.extend(part)
            bar.update(len(part))
    return [first, *out]


PROGRESS_ENV = "DMI_EVAL_PROGRESS"
"""Set to 1 by ``dmi-eval evaluate`` on a terminal: analysis kernels then show progress."""


def progress_bar(total: int, desc: str) -> tqdm:
    """A progress bar on a terminal; silent in CI logs and pipes.

    Inside an analysis kernel stderr is not a terminal; the bar is shown there
    when the CLI asked for progress (:data:`PROGRESS_ENV`), and the kernel
    echoes its stderr to the terminal.
    """
    wanted = sys.stderr.isatty() or os.environ.get(PROGRESS_ENV) == "1"
    quiet = not wanted or bool(os.environ.get("CI"))
    return tqdm(total=total, desc=desc, disable=quiet, leave=False, file=sys.stderr, ncols=80)
