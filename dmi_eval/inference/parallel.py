"""The one parallel map every loop goes through (joblib, honours ``joblib.parallel_config``) and the progress bar."""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from joblib import Parallel, delayed, parallel_config
from joblib.parallel import get_active_backend
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from dmi_eval.errors import DmiEvalError
from dmi_eval.options import scheduler_problem

Alternative = Literal["lower", "greater", "two-sided"]


class ComputeError(DmiEvalError):
    """The compute settings (``--jobs``, ``--scheduler``, ``[compute]``) cannot be used."""


class WorkerLostError(ComputeError):
    """A Dask worker died running the same task too often, or a forked local worker died;
    the run stopped (no partial results)."""


def _run_chunk(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [fn(item) for item in items]


def _run_chunk_in_worker(
    fn: Callable[[Any], Any], start: int, items: Sequence[Any]
) -> tuple[int, list[Any]]:
    """A chunk on a worker: loops nested inside it run in that worker (no tasks from tasks)."""
    with parallel_config(backend="sequential"):
        return start, [fn(item) for item in items]


FORK_MIN_SECONDS = 0.25
"""With no compute settings, a loop that would take longer than this in this process
goes to forked local workers (see :func:`parallel_map`): forking costs milliseconds."""
COLD_START_SECONDS = 6.0
"""What starting local worker processes costs before they do any work (each one
imports numpy, pandas, scipy, statsmodels and the designs: about 3 s on an idle
2-core machine, more under load): a loop hands its items to a local pool that
is not running yet only when it would otherwise take longer than this more."""
_LOCAL_POOL = {"started": False}


def _can_fork() -> bool:
    """Whether local workers can be forked: POSIX with ``fork``, not macOS (where
    forking a process that has used Accelerate or Objective-C is unsafe)."""
    return sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods()


_FORKED: dict[str, Any] = {}


def _fork_init(fn: Callable[[Any], Any], blas_threads: int) -> None:
    """Set up a forked worker: the loop's function (inherited, never pickled) and as many
    BLAS threads as joblib gives a local worker (cores over workers)."""
    _FORKED["fn"] = fn
    threadpool_limits(limits=blas_threads, user_api="blas")


def _run_forked_chunk(start: int, items: Sequence[Any]) -> tuple[int, bytes]:
    """A chunk in a forked worker; the results go back pickled with read-only mappings
    (``MappingProxyType``, which results hold and the standard pickler refuses)."""
    from dmi_eval.datacache import MappingProxyPickler

    start, results = _run_chunk_in_worker(_FORKED["fn"], start, items)
    buffer = io.BytesIO()
    MappingProxyPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(results)
    return start, buffer.getvalue()


def _on_fork(
    fn: Callable[[Any], Any], chunks: list[tuple[int, list[Any]]], jobs: int
) -> Iterator[tuple[int, list[Any]]]:
    """The chunks on ``jobs`` workers forked from this process, as they finish.

    Forked workers start in milliseconds with everything this process has
    imported (loky's fresh processes import numpy, pandas, scipy and the
    designs first, see :data:`COLD_START_SECONDS`), so loops of a fraction of
    a second gain from them. The function travels to the workers in the fork,
    the items and results by pickle. A worker that dies breaks the pool: the
    loop raises (``BrokenProcessPool``), never returns partial results.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    n_workers = min(jobs, len(chunks))
    blas = max((os.cpu_count() or 1) // n_workers, 1)
    with ProcessPoolExecutor(
        n_workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_fork_init,
        initargs=(fn, blas),
    ) as pool:
        with warnings.catch_warnings():
            # Python >= 3.12 warns on every fork of a process with threads (BLAS's
            # idle pool, here): the workers run only the loop's own code
            warnings.filterwarnings(
                "ignore", "This process .* is multi-threaded", DeprecationWarning
            )
            pending = {pool.submit(_run_forked_chunk, a, c) for a, c in chunks}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    start, results = future.result()
                    yield start, pickle.loads(results)
        finally:
            for future in pending:  # after an error, nothing more is started
                future.cancel()


def _workers(n_jobs: int | None) -> tuple[str, int]:
    """The active joblib backend's name and how many workers this loop may use.

    A ``joblib.parallel_config`` set by the caller (``--jobs``, ``--scheduler``)
    wins over the loop's own default ``n_jobs``. Inside a worker (a nested loop)
    and under the sequential backend the loop runs in this process.
    """
    backend, config_jobs = get_active_backend()
    name = type(backend).__name__
    if name == "SequentialBackend" or (getattr(backend, "nesting_level", 0) or 0) > 0:
        return name, 1
    if name == "DaskDistributedBackend":
        return name, max(int(n_jobs or 1), 2)
    jobs = config_jobs if config_jobs is not None else n_jobs
    if jobs is None:
        return name, 1
    jobs = int(jobs)
    return name, max(jobs, 1) if jobs > 0 else max(os.cpu_count() or 1, 1)


def parallel_map(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    n_jobs: int | None = 2,
    min_items: int = 8,
    min_seconds: float = 1.0,
    desc: str | None = "placebo fits",
    chunk_size: int | None = None,
    on_result: Callable[[int, Any], None] | None = None,
    probe: bool = True,
    loop: str | None = None,
) -> list[Any]:
    """``[fn(x) for x in items]``, in order, over the active joblib backend.

    The one entry point of every parallel loop. It honours
    ``joblib.parallel_config``: ``--jobs N`` sets local worker processes,
    ``--scheduler`` a Dask cluster (backend ``"dask"``); ``n_jobs`` is the
    loop's own default when no configuration is active.

    The first item runs in this process and is timed: when the whole loop
    would take less than ``min_seconds`` in this process (or there are fewer
    than ``min_items`` items, or one worker) the rest runs here too, since
    starting workers would cost more than it saves (the first loop that would
    start local workers also has to be longer than :data:`COLD_START_SECONDS`).
    With no compute settings (no ``--jobs``, ``--scheduler``, ``[compute]`` or
    ``joblib.parallel_config``) on Linux, the workers are instead forked from
    this process for the loop (``n_jobs`` of them), which costs milliseconds:
    then a loop longer than ``min(min_seconds, FORK_MIN_SECONDS)`` goes to them.
    With ``probe=False`` (items the caller knows to be long) nothing is
    timed: every item goes to the workers (on forked, configured or already
    running ones; without those, everything runs here).
    Otherwise the remaining
    items are split into contiguous chunks up front (``chunk_size`` items
    each; default about four chunks per worker) so that dispatch does not
    dominate. Each item's result depends only on the item (random draws come
    from the item, e.g. a per-task seed), so the output is identical whatever
    the backend, the number of workers and the path taken.
    A task that fails raises here (on Dask, after Dask's retries of lost
    workers): the loop never returns partial results.

    ``n_jobs=1`` (with no compute settings) runs the loop and every loop
    inside it in this process, as ``--jobs 1`` does.

    ``on_result(i, result)`` is called in this process as soon as item ``i``
    is done (chunks finish in any order); the returned list is in item order.
    ``desc`` labels the loop's own progress bar (``None``: no bar, the caller
    shows progress through ``on_result``); ``loop`` names the loop in errors
    (default ``desc``). On a Dask cluster nothing is probed: the first item
    would run on the submitting machine (a login node) before the others start.
    """
    items = list(items)
    notify = on_result or (lambda i, r: None)

    def inline(start: int) -> list[Any]:
        done = []
        for i in range(start, len(items)):
            done.append(fn(items[i]))
            notify(i, done[-1])
        return done

    backend, jobs = _workers(n_jobs)
    if jobs == 1 and not configured():
        # n_jobs=1 with no compute settings: this loop and the loops inside it here
        with parallel_config(backend="sequential"):
            return inline(0)
    if jobs == 1 or len(items) < min_items:
        return inline(0)
    probe = probe and backend != "DaskDistributedBackend"
    what = loop or desc or "a parallel loop"
    fork = backend == "LokyBackend" and not configured() and _can_fork()
    cold = backend == "LokyBackend" and not _LOCAL_POOL["started"] and not fork
    out: list[Any] = [None] * len(items)
    filled = np.zeros(len(items), dtype=bool)
    if probe:
        started = time.perf_counter()
        out[0] = fn(items[0])
        filled[0] = True
        notify(0, out[0])
        threshold = min(min_seconds, FORK_MIN_SECONDS) if fork else min_seconds
        if (time.perf_counter() - started) * len(items) < threshold + cold * COLD_START_SECONDS:
            return [out[0], *inline(1)]
    elif cold and not configured():
        return inline(0)  # no fork here: fresh worker processes would cost more than they save
    offset = int(probe)
    n_rest = len(items) - offset
    if chunk_size is None:
        n_chunks = min(n_rest, 4 * jobs)
    else:
        n_chunks = -(-n_rest // max(int(chunk_size), 1))
    bounds = offset + np.linspace(0, n_rest, n_chunks + 1).round().astype(int)
    chunks = [(int(a), items[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    if backend == "DaskDistributedBackend":
        parts = _on_dask(fn, chunks)
    elif fork:
        parts = _on_fork(fn, chunks, jobs)
    else:
        _LOCAL_POOL["started"] = True  # loky keeps its workers for later loops
        run = Parallel(n_jobs=jobs, return_as="generator_unordered")
        parts = run(delayed(_run_chunk_in_worker)(fn, a, c) for a, c in chunks)
    with progress_bar(n_rest, desc or "", disable=desc is None) as bar:
        try:
            for start, part in parts:
                out[start : start + len(part)] = part
                filled[start : start + len(part)] = True
                for i, result in enumerate(part, start=start):
                    notify(i, result)
                bar.update(len(part))
        except Exception as exc:
            if isinstance(exc, BrokenProcessPool):  # a forked worker died
                raise WorkerLostError(
                    f"a local worker process died while running {what} "
                    f"({exc}); the run stopped and returns no partial results. If the machine "
                    "ran out of memory, run in one process with --jobs 1"
                ) from exc
            if type(exc).__name__ == "KilledWorker":  # distributed.KilledWorker
                raise WorkerLostError(
                    f"a Dask worker died while running {what} ({exc}); "
                    "Dask retried the task on other workers and gave up, so the run stopped "
                    "and returns no partial results. Give the workers more memory (`dask worker "
                    "--memory-limit`), raise distributed.scheduler.allowed-failures, or run "
                    "locally with --jobs"
                ) from exc
            raise
    if not filled.all():
        raise RuntimeError(f"parallel loop returned {int(filled.sum())} of {len(items)} results")
    return out


def _identity(x: Any) -> Any:
    return x


def _on_dask(
    fn: Callable[[Any], Any], chunks: list[tuple[int, list[Any]]]
) -> Iterator[tuple[int, list[Any]]]:
    """The chunks on the Dask client of the active ``"dask"`` backend, as they finish.

    The client's futures are used directly (not through joblib): a task whose
    worker died more often than ``distributed.scheduler.allowed-failures``
    raises ``KilledWorker`` here, where joblib's Dask backend would wait for
    it forever.
    """
    from distributed import as_completed

    client = get_active_backend()[0].client
    # The loop's function and data travel once, as a task (not scattered data):
    # if the worker holding it dies, the scheduler recomputes it elsewhere.
    shared = client.submit(_identity, fn, pure=False)
    futures = [client.submit(_run_chunk_in_worker, shared, a, c, pure=False) for a, c in chunks]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.cancel([*futures, shared])  # after an error, nothing is left running


def task_seeds(seed: int, n: int) -> list[np.random.SeedSequence]:
    """``n`` independent per-task seeds from one seed (``SeedSequence(seed).spawn``).

    A task drawing from its own seed gives the same numbers whichever worker
    runs it and however the tasks are chunked.
    """
    return np.random.SeedSequence(seed).spawn(n)


@contextmanager
def compute(*, scheduler: str | None = None, n_jobs: int | None = None) -> Iterator[None]:
    """Run every :func:`parallel_map` inside on a Dask cluster or ``n_jobs`` local processes.

    Parameters
    ----------
    scheduler
        Address of a running Dask scheduler (``tcp://HOST:PORT``); needs the
        optional extra ``pip install dmi_eval[dask]``. A ``distributed.Client``
        is opened for the duration and joblib's ``"dask"`` backend is used.
    n_jobs
        Local worker processes (joblib's loky backend); ``1`` runs everything
        in this process. Ignored with ``scheduler``.
    """
    if scheduler is not None:
        problem = scheduler_problem(scheduler)
        if problem is not None:
            raise ComputeError(f"--scheduler / [compute] scheduler: {problem}")
        try:
            from distributed import Client
        except ImportError:
            raise ComputeError(
                f"scheduler {scheduler!r}: running on a Dask cluster needs the optional "
                "extra; install it with `pip install dmi_eval[dask]`"
            ) from None
        try:
            client = Client(scheduler)  # connect timeout: distributed.comm.timeouts.connect
        except (OSError, ValueError) as exc:
            raise ComputeError(
                f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start one "
                "with `dask scheduler` and workers with `dask worker ADDRESS`, or fix "
                "[compute] scheduler in study.toml / --scheduler"
            ) from exc
        with client, parallel_config(backend="dask"):
            _wait_for_workers(client, scheduler)
            yield
        return
    if n_jobs is not None and int(n_jobs) < 1:
        raise ComputeError(f"--jobs must be at least 1; got {n_jobs}")
    if n_jobs is None:
        yield
    elif int(n_jobs) == 1:
        with parallel_config(backend="sequential"):
            yield
    else:
        with parallel_config(backend="loky", n_jobs=int(n_jobs)):
            yield


def _wait_for_workers(client: Any, scheduler: str) -> None:
    """Say so on stderr, then wait, while the scheduler has no worker yet.

    The usual state while a cluster's worker jobs are still queued: without a
    word the run looked hung.
    """
    if client.scheduler_info().get("workers"):
        return
    print(
        f"dmi-eval: waiting for a Dask worker to join the scheduler at {scheduler} (none has "
        "yet; start workers with `dask worker ADDRESS`, or stop with Ctrl-C)",
        file=sys.stderr,
        flush=True,
    )
    client.wait_for_workers(1)
    n = len(client.scheduler_info().get("workers", {}))
    print(f"dmi-eval: {n} Dask worker{'s' if n != 1 else ''} connected", file=sys.stderr)


def configured() -> bool:
    """Whether the caller chose a backend or worker count (``joblib.parallel_config``)."""
    backend, n_jobs = get_active_backend()
    return n_jobs is not None or type(backend).__name__ != "LokyBackend"


PROGRESS_ENV = "DMI_EVAL_PROGRESS"
"""Set to 1 by ``dmi-eval evaluate`` on a terminal (analysis kernels then show progress too),
to 0 by ``--quiet`` (no bar at all)."""


def progress_bar(total: int, desc: str, *, disable: bool = False) -> tqdm:
    """A progress bar on a terminal; silent in CI logs and pipes.

    Inside an analysis kernel stderr is not a terminal; the bar is shown there
    when the CLI asked for progress (:data:`PROGRESS_ENV`), and the kernel
    echoes its stderr to the terminal.
    """
    wanted = sys.stderr.isatty() or os.environ.get(PROGRESS_ENV) == "1"
    quiet = not wanted or bool(os.environ.get("CI")) or os.environ.get(PROGRESS_ENV) == "0"
    return tqdm(
        total=total, desc=desc, disable=quiet or disable, leave=False, file=sys.stderr, ncols=80
    )
