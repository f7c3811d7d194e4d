"""Settings of the Clarabel quadratic-program solver, shared by every design that uses it."""

from __future__ import annotations

from typing import Any


def clarabel_settings(**tolerances: float) -> Any:
    """``clarabel.DefaultSettings`` quiet and single-threaded, with ``tolerances`` set.

    One thread for two reasons. Clarabel's sparse factorisation (faer) runs on a
    rayon thread pool whose threads a worker forked from this process does not
    have: a forked worker's next parallel factorisation waits for them forever
    (``dmi_eval.inference.parallel`` forks its local workers on Linux). And a
    factorisation split over threads sums in an order that depends on the
    machine's core count, so the same study would not give the same bytes on
    every machine.

    Parameters
    ----------
    **tolerances
        Solver settings to override, e.g. ``tol_gap_abs=1e-12``.
    """
    import clarabel

    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.max_threads = 1
    for name, value in tolerances.items():
        setattr(settings, name, value)
    return settings
