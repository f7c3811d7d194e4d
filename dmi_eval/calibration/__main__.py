"""``python -m dmi_eval.calibration --out reports``: the calibration study (``nox -s calibrate``)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from dmi_eval.calibration.report import write_outputs
from dmi_eval.calibration.runner import (
    DEFAULT_SEED,
    default_scenarios,
    run,
    sensitivity_scenarios,
)
from dmi_eval.calibration.summary import summarise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmi_eval.calibration", description=__doc__)
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the number of simulated cities"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the study")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--rows", default=None, help="also write the per-market, per-design rows to this CSV"
    )
    parser.add_argument(
        "--sensitivity",
        action=argparse.BooleanOptionalAction,
        default=False,
        help=(
            "also run the eleven sensitivity scenarios, reported without targets (default: no; "
            "they add about a third to the run time)"
        ),
    )
    parser.add_argument(
        "--microsynth",
        action="store_true",
        help=(
            "run only the check of micro-level synthetic control where it can be fitted "
            "(dmi_eval.calibration.microsynth_check; about 3 minutes on 2 cores): "
            "results/calibration_microsynth.csv and appendix/calibration_microsynth.md"
        ),
    )
    args = parser.parse_args(argv)
    if args.microsynth:
        return _microsynth(args)
    scenarios = default_scenarios(args.scale)
    if args.sensitivity:
        scenarios += sensitivity_scenarios(args.scale)
    start = time.perf_counter()
    rows = run(scenarios, seed=args.seed, n_jobs=args.jobs)
    table = summarise(rows, unjudged=[sc.id for sc in scenarios if not sc.judged])
    facts = _facts(start, args.jobs)
    minutes = facts["minutes"]
    csv, md = write_outputs(table, rows, scenarios, args.out, seed=args.seed, facts=facts)
    if args.rows:
        rows.to_csv(args.rows, index=False, lineterminator="\n")
    print(f"calibration: {len(rows)} rows in {minutes:.1f} min -> {csv}, {md}", file=sys.stderr)
    return 0


def _facts(start: float, jobs: int) -> dict[str, object]:
    return {
        "minutes": (time.perf_counter() - start) / 60,
        "jobs": jobs,
        "load": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cores": os.cpu_count() or 0,
    }


def _microsynth(args: argparse.Namespace) -> int:
    from dmi_eval.calibration.microsynth_check import (
        MICRO_CITIES,
        MICRO_SEED,
        run_microsynth_check,
        summarise_microsynth,
        write_microsynth_outputs,
    )

    n_cities = max(1, int(round(MICRO_CITIES * args.scale)))
    seed = MICRO_SEED if args.seed == DEFAULT_SEED else args.seed
    start = time.perf_counter()
    rows = run_microsynth_check(n_cities=n_cities, seed=seed, n_jobs=args.jobs)
    table = summarise_microsynth(rows)
    csv, md = write_microsynth_outputs(
        table, args.out, n_cities=n_cities, seed=seed, facts=_facts(start, args.jobs)
    )
    if args.rows:
        rows.to_csv(args.rows, index=False, lineterminator="\n")
    print(f"microsynth check: {len(rows)} rows -> {csv}, {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
