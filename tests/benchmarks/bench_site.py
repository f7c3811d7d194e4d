"""A site in seconds: ``dmi-eval check`` on every site of the synthetic study.

Each site is checked in a fresh process, as a user runs it
(``dmi-eval check data/synthetic/study.toml --site ID``), and its wall time is
measured. One more process splits the time of the first site into its steps:
starting Python and importing what ``check`` needs, reading the study's data,
fitting the site's designs and the verdict. Target: every site within 5 s on
2 cores. The machine's load average (``os.getloadavg``) before and after is
recorded: other work on the machine slows every step.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "data" / "synthetic" / "study.toml"
TARGET_SECONDS = 5.0

STEPS = """
import sys, time, json
t0 = time.perf_counter()
from dmi_eval.config import load_study
from dmi_eval.data import load_study_data
from dmi_eval.evaluation import evaluate_site
from dmi_eval.inference.parallel import compute
t1 = time.perf_counter()
study = load_study(sys.argv[1])
ingest = load_study_data(study)
t2 = time.perf_counter()
with compute(n_jobs=1):
    evaluate_site(ingest.panel, study, sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "read": t2 - t1, "fit": t3 - t2}))
"""


def _dmi_eval() -> list[str]:
    return [sys.executable, "-m", "dmi_eval.cli"]


def time_check(site: str, *, jobs: int | None = None) -> float:
    """Wall time of ``dmi-eval check STUDY --site SITE`` in a fresh process."""
    cmd = [*_dmi_eval(), "check", str(STUDY), "--site", site]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def steps(site: str) -> dict[str, float]:
    """Interpreter start, imports, data, fit of one site, in a fresh process (seconds)."""
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
    parts["start"] = total - sum(parts.values())
    parts["total"] = total
    return parts


def run(out: Path) -> str:
    """Measure, write ``out/results/site_benchmark.csv`` and return the Markdown section."""
    from dmi_eval.config import load_study

    sites = [s.id for s in load_study(STUDY).sites]
    load_before = os.getloadavg()
    rows = []
    for site in sites:
        rows.append({"site": site, "jobs": "default", "seconds": time_check(site)})
    first = sites[0]
    rows.append({"site": first, "jobs": "1", "seconds": time_check(first, jobs=1)})
    split = steps(first)
    load_after = os.getloadavg()
    table = pd.DataFrame(rows)
    table["seconds"] = table["seconds"].round(2)
    (out / "results").mkdir(parents=True, exist_ok=True)
    table.assign(load_before=round(load_before[0], 2), load_after=round(load_after[0], 2)).to_csv(
        out / "results" / "site_benchmark.csv", index=False
    )

    default = table[table["jobs"] == "default"]
    worst = float(default["seconds"].max())
    met = worst <= TARGET_SECONDS
    lines = [
        "## A site in seconds: `dmi-eval check` per site",
        "",
        f"`dmi-eval check data/synthetic/study.toml --site ID` for each of the {len(sites)} "
        "sites of the synthetic study (15 x 20 monthly areas, 72 months), each in a fresh "
        "process as a user runs it, default settings (placebo loops on 2 local processes "
        "when they are long enough to gain from it). "
        f"Slowest site {worst:.1f} s, median {default['seconds'].median():.1f} s; target "
        f"{TARGET_SECONDS:.0f} s on 2 cores: **{'met' if met else 'not met'}**. "
        f"Load average of the machine (1 min) {load_before[0]:.1f} before and "
        f"{load_after[0]:.1f} after the runs on {os.cpu_count()} cores"
        + (
            " (other work was running: these times are slower than on an idle machine)."
            if max(load_before[0], load_after[0]) > 1.5
            else "."
        ),
        "",
        "| site | settings | seconds |",
        "|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        settings = "default" if r.jobs == "default" else f"--jobs {r.jobs}"
        lines.append(f"| {r.site} | {settings} | {r.seconds:.1f} |")
    lines += [
        "",
        f"Where the time of site {first} goes (one process, placebo loops in the process): "
        f"Python start {split['start']:.1f} s, imports {split['imports']:.1f} s, reading and "
        f"counting the extract {split['read']:.1f} s, fitting the designs and the verdict "
        f"{split['fit']:.1f} s; total {split['total']:.1f} s.",
    ]
    return "\n".join(lines) + "\n"
