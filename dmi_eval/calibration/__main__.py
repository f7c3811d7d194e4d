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
    summarise,
)


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
            "also run the nine sensitivity scenarios, reported without targets (default: no; "
            "they add about a third to the run time)"
        ),
    )
    args = parser.parse_args(argv)
    scenarios = default_scenarios(args.scale)
    if args.sensitivity:
        scenarios += sensitivity_scenarios(args.scale)
    start = time.perf_counter()
    rows = run(scenarios, seed=args.seed, n_jobs=args.jobs)
    table = summarise(rows, unjudged=[sc.id for sc in scenarios if not sc.judged])
    minutes = (time.perf_counter() - start) / 60
    facts = {
        "minutes": minutes,
        "jobs": args.jobs,
        "load": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cores": os.cpu_count() or 0,
    }
    csv, md = write_outputs(table, rows, scenarios, args.out, seed=args.seed, facts=facts)
    if args.rows:
        rows.to_csv(args.rows, index=False, lineterminator="\n")
    print(f"calibration: {len(rows)} rows in {minutes:.1f} min -> {csv}, {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
