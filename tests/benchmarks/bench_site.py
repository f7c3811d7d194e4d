"""A site in seconds: ``dmi-eval check`` on every site of the synthetic study.

Each site is checked in a fresh process, as a user runs it
(``dmi-eval check data/synthetic/study.toml --site ID``), and its wall and CPU
time are measured; the first check of the study runs with an empty data cache
(it reads and geocodes the extract), the others read the panel from the cache.
One more process splits the time of the first site into its steps (starting
Python, importing what ``check`` needs, reading the study and its data,
fitting the site's designs and the verdict; wall and CPU) and the CPU time of
each design. Target: every site within 5 s on 2 cores. The machine's load
average (``os.getloadavg``) before and after is recorded: other work on the
machine slows the wall clock; CPU time is what the check itself costs.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "data" / "synthetic" / "study.toml"
TARGET_SECONDS = 5.0
EVERY = "every outcome"

STEPS = """
import sys, time, json
t0, c0 = time.perf_counter(), time.process_time()
from dmi_eval.datacache import load_study_cached, load_study_data_cached
from dmi_eval.evaluation import DESIGNS
from dmi_eval.pipeline import _evaluate_timed
from dmi_eval.inference.parallel import compute
t1, c1 = time.perf_counter(), time.process_time()
study = load_study_cached(sys.argv[1])  # as check loads it
ingest = load_study_data_cached(study)
t2, c2 = time.perf_counter(), time.process_time()
designs = {}
def timed(name, fit):
    def run(*args, **kwargs):
        start = time.process_time()
        try:
            return fit(*args, **kwargs)
        finally:
            designs[name] = designs.get(name, 0.0) + time.process_time() - start
    return run
for name in list(DESIGNS):
    DESIGNS[name] = timed(name, DESIGNS[name])
with compute(n_jobs=1):
    _evaluate_timed(ingest.panel, study, "primary", sys.argv[2])
t3, c3 = time.perf_counter(), time.process_time()
print(json.dumps({"imports": t1 - t0, "read": t2 - t1, "fit": t3 - t2,
                  "cpu": {"imports": c1 - c0, "read": c2 - c1, "fit": c3 - c2},
                  "designs": designs}))
"""


EVERY_OUTCOME = """
import sys
from dmi_eval.pipeline import evaluate_study_sites
evaluate_study_sites(sys.argv[1], sites=[sys.argv[2]], geo=False, outcomes="all")
"""


def _dmi_eval() -> list[str]:
    return [sys.executable, "-m", "dmi_eval.cli"]


def time_check(site: str, *, jobs: int | None = None) -> tuple[float, float]:
    """Wall and CPU time of ``dmi-eval check STUDY --site SITE`` in a fresh process.

    CPU time is user + system time of the process and every process it waited
    for (local workers); other work on the machine slows the wall clock much
    more than it changes the CPU time.
    """
    cmd = [*_dmi_eval(), "check", str(STUDY), "--site", site]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    return _time(cmd)


def time_every_outcome(site: str) -> tuple[float, float]:
    """Wall and CPU time of the site on every outcome (what ``evaluate`` fits for a site)."""
    return _time([sys.executable, "-c", EVERY_OUTCOME, str(STUDY), site])


def _time(cmd: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def steps(site: str) -> dict:
    """Interpreter start, imports, data, fit of one site (wall and CPU), per-design CPU."""
    import json

    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", STEPS, str(STUDY), site],
        check=True,
        capture_output=True,
        text=True,
    )
    total = time.perf_counter() - start
    parts = json.loads(out.stdout.strip().splitlines()[-1])
    parts["start"] = total - parts["imports"] - parts["read"] - parts["fit"]
    parts["total"] = total
    return parts


def run(out: Path) -> str:
    """Measure, write ``out/results/site_benchmark.csv`` and return the Markdown section."""
    from dmi_eval.config import load_study
    from dmi_eval.datacache import CACHE_DIR_ENV

    sites = [s.id for s in load_study(STUDY).sites]
    n_outcomes = len(load_study(STUDY).sites[0].outcomes)
    first = sites[0]
    previous = os.environ.get(CACHE_DIR_ENV)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dmi-bench-site-") as cache:
        os.environ[CACHE_DIR_ENV] = cache  # a fresh data cache: the first check reads the data
        try:
            wall, cpu = time_check(first)
            rows.append({"site": first, "settings": "first run", "seconds": wall, "cpu": cpu})
            for site in sites:
                wall, cpu = time_check(site)
                rows.append({"site": site, "settings": "default", "seconds": wall, "cpu": cpu})
            wall, cpu = time_check(first, jobs=1)
            rows.append({"site": first, "settings": "--jobs 1", "seconds": wall, "cpu": cpu})
            wall, cpu = time_every_outcome(first)
            rows.append({"site": first, "settings": EVERY, "seconds": wall, "cpu": cpu})
            split = steps(first)
        finally:
            if previous is None:
                os.environ.pop(CACHE_DIR_ENV, None)
            else:
                os.environ[CACHE_DIR_ENV] = previous
    load_after = os.getloadavg()
    table = pd.DataFrame(rows)
    table[["seconds", "cpu"]] = table[["seconds", "cpu"]].round(2)
    (out / "results").mkdir(parents=True, exist_ok=True)
    table.assign(load_before=round(load_before[0], 2), load_after=round(load_after[0], 2)).to_csv(
        out / "results" / "site_benchmark.csv", index=False
    )

    default = table[table["settings"] == "default"]
    worst = float(default["seconds"].max())
    met = worst <= TARGET_SECONDS
    loaded = max(load_before[0], load_after[0]) > 1.5
    lines = [
        "## A site in seconds: `dmi-eval check` per site",
        "",
        f"`dmi-eval check data/synthetic/study.toml --site ID` for each of the {len(sites)} "
        "sites of the synthetic study (15 x 20 monthly areas, 72 months), each in a fresh "
        "process as a user runs it, default settings (the site's designs and its catchment's "
        "fit run as concurrent tasks on 2 local worker processes forked from the check, "
        "`dmi_eval.evaluation._fit_site`; `--jobs 1`: all in one process). `check` fits "
        "the site's primary outcome only, all the verdict reads (the same evidence and "
        "verdict as a run on every outcome: "
        "`tests/test_evaluation.py::test_primary_outcome_only_gives_the_verdict_of_every_outcome`); "
        f"row *{EVERY}*: the same site fitted on its {n_outcomes} outcomes as `evaluate` fits "
        "it (designs only, no report), default settings. The first check "
        "of a study reads and "
        "geocodes the extract and keeps the panel in the data cache (`dmi_eval.datacache`); "
        "the checks after it read the panel from there (row *first run*: the same check "
        "with an empty cache). "
        f"Slowest site {worst:.1f} s, median {default['seconds'].median():.1f} s; target "
        f"{TARGET_SECONDS:.0f} s on 2 cores: **{'met' if met else 'not met'}**. "
        f"Load average of the machine (1 min) {load_before[0]:.1f} before and "
        f"{load_after[0]:.1f} after the runs on {os.cpu_count()} cores"
        + (
            " (other work was running: the wall times are slower than on an idle machine; "
            "the CPU times, user + system of the check and its workers, are what it costs)."
            if loaded
            else "."
        ),
        "",
        "| site | settings | wall (s) | CPU (s) |",
        "|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.site} | {r.settings} | {r.seconds:.1f} | {r.cpu:.1f} |")
    cpu = split["cpu"]
    designs = ", ".join(
        f"{name} {seconds:.1f} s"
        for name, seconds in sorted(split["designs"].items(), key=lambda kv: -kv[1])
    )
    lines += [
        "",
        f"Where the time of site {first} goes (its primary outcome as `check` fits it, one "
        "process, placebo loops in the process, "
        "data from the cache), wall clock (CPU): "
        f"Python start {split['start']:.1f} s, imports {split['imports']:.1f} s "
        f"({cpu['imports']:.1f} s), reading the study and its data {split['read']:.1f} s "
        f"({cpu['read']:.1f} s), fitting the designs and the verdict {split['fit']:.1f} s "
        f"({cpu['fit']:.1f} s); total {split['total']:.1f} s. CPU time of each design, "
        f"market and catchment fits together: {designs}; the rest of the fit time is the "
        "evidence for the verdict (diagnostics, detectable effects).",
    ]
    return "\n".join(lines) + "\n"
