"""A big city: ``evaluate`` on 1,000 to 10,000 monthly areas with 25 sites.

A seeded city is simulated with the package's own calibration simulator
(:func:`dmi_eval.calibration.city.simulate_city`: negative-binomial counts from
a latent factor model, 25 hot-spot markets of 2 to 6 areas with their
catchment rings, staggered call-ins, area covariates), 8 years of months. The
simulator draws two outcomes (drug, violent); a second city with the same
spec and the next seed supplies two more (its counts become property and
disorder; its own markets are not sites), so every site has 4 outcomes.
The city is written as a wide counts file (``area_id, period`` and one column
per outcome, covariates on every row) with a ``study.toml`` listing the 25
sites by their treated and catchment areas, then evaluated by
``dmi-eval evaluate`` in a fresh process whose wall time and peak memory
(resident set of the process and every process it starts, sampled) are
measured. Grids: 1,000, 2,500, 5,000 and 10,000 areas.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dmi_eval.evaluation import MAX_DONORS

GRIDS: dict[int, tuple[int, int]] = {
    1_000: (25, 40),
    2_500: (50, 50),
    5_000: (50, 100),
    10_000: (100, 100),
}
N_SITES = 25
N_YEARS = 8
SEED = 20260601
TARGET_SECONDS = 600.0
TARGET_MB = 4096.0
COVARIATES = ("population", "pct_renter", "pct_vacant")


def write_city(n_areas: int, folder: Path) -> Path:
    """Simulate the city of ``n_areas`` areas and write its counts file and study.toml."""
    from dmi_eval.calibration.city import CitySpec, simulate_city

    n_rows, n_cols = GRIDS[n_areas]
    spec = CitySpec(
        n_rows=n_rows, n_cols=n_cols, n_years=N_YEARS, n_markets=N_SITES, covariates=True
    )
    city = simulate_city(spec, seed=SEED)
    other = simulate_city(spec, seed=SEED + 1)
    panel = city.panel
    n_periods = len(panel.periods)
    frame = pd.DataFrame(
        {
            "area_id": np.repeat(panel.areas.to_numpy(), n_periods),
            "period": np.tile(panel.periods.astype(str).to_numpy(), len(panel.areas)),
            "drug": panel.counts["drug"].ravel(),
            "violent": panel.counts["violent"].ravel(),
            "property": other.panel.counts["drug"].ravel(),
            "disorder": other.panel.counts["violent"].ravel(),
        }
    )
    cov = panel.covariates.loc[panel.areas, list(COVARIATES)].to_numpy()
    for j, name in enumerate(COVARIATES):
        frame[name] = np.repeat(cov[:, j], n_periods)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "counts.csv", index=False)
    outcomes = '["drug", "violent", "property", "disorder"]'
    lines = [
        "[study]",
        f'name = "Benchmark city, {n_areas:,} areas"',
        'frequency = "month"',
        f"seed = {SEED}",
        "",
        "[data]",
        'counts = "counts.csv"',
        'layout = "wide"',
        'outcome_columns = ["drug", "violent", "property", "disorder"]',
        f"covariate_columns = {json.dumps(list(COVARIATES))}",
    ]
    for m in city.markets:
        lines += [
            "",
            "[[sites]]",
            f'id = "{m.id}"',
            f'name = "Market {m.id}"',
            f'intervention = "{m.intervention.isoformat()}"',
            f"treated_areas = {json.dumps(list(m.areas))}",
            f"catchment_areas = {json.dumps(list(m.catchment))}",
            f"outcomes = {outcomes}",
            'primary_outcome = "drug"',
        ]
    path = folder / "study.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CHILD = """
import json, sys, time
t0 = time.perf_counter()
from dmi_eval.pipeline import evaluate_study_sites
t1 = time.perf_counter()
sites = json.loads(sys.argv[2])
fitted = evaluate_study_sites(sys.argv[1], sites=sites)
t2 = time.perf_counter()
labels = {k: s.verdict.label for k, s in fitted.sites.items()}
print(json.dumps({"imports": t1 - t0, "evaluate": t2 - t1, "verdicts": labels}))
"""


def _pss(process) -> int:
    """A process's proportional set size in bytes (its resident set without PSS)."""
    info = process.memory_full_info()
    return int(getattr(info, "pss", info.rss))


def measure(study: Path, sites: list[str]) -> dict[str, float]:
    """Wall time and peak memory of evaluating ``sites`` of ``study`` in a fresh process.

    Peak memory is the largest sum of the proportional set sizes (PSS: a page
    shared by ``k`` processes counts ``1/k`` in each; the resident set where
    the system has no PSS) of the process and every process it started (local
    workers, forked ones share the parent's pages), sampled every 0.2 s with
    psutil, and the peak resident set of the largest single process (``getrusage``).
    CPU time is user + system time of the process and the workers it waited for.
    """
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(study), json.dumps(sites)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(_pss(p) for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"evaluating {study} failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    single = after.ru_maxrss / 1024
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "evaluate_seconds": result["evaluate"],
        "peak_tree_mb": peak / 2**20,
        "peak_process_mb": single,
    }


def _sizes() -> list[int]:
    raw = os.environ.get("DMI_BENCH_CITY_AREAS")
    sizes = [int(x) for x in raw.split(",")] if raw else list(GRIDS)
    unknown = sorted(set(sizes) - set(GRIDS))
    if unknown:
        raise SystemExit(f"DMI_BENCH_CITY_AREAS: no grid for {unknown}; choose from {list(GRIDS)}")
    return sizes


def _site_counts(sizes: list[int]) -> dict[int, int]:
    """Sites to evaluate per city size: ``DMI_BENCH_CITY_SITES=N`` for every size, or
    ``AREAS:N,...`` per size (sizes not named get all 25)."""
    raw = os.environ.get("DMI_BENCH_CITY_SITES", "").strip()
    counts = dict.fromkeys(sizes, N_SITES)
    if not raw:
        return counts
    if ":" not in raw:
        return dict.fromkeys(sizes, min(int(raw), N_SITES))
    for part in raw.split(","):
        areas, n = part.split(":")
        if int(areas) in counts:
            counts[int(areas)] = min(int(n), N_SITES)
    return counts


def run(out: Path) -> str:
    """Measure, write ``out/results/city_benchmark.csv``, a log-log figure, and return Markdown.

    The Markdown is the section kept in ``appendix/benchmarks/city.md``: its
    figure link is relative to that file (``run.assemble`` rebases it for
    ``appendix/benchmarks.md``).

    ``DMI_BENCH_CITY_AREAS=1000,2500`` measures some sizes only and
    ``DMI_BENCH_CITY_SITES=N`` (or ``1000:25,10000:2``, per size) evaluates the
    first N of the 25 sites (every site's areas still leave the donor pool), to
    fit a run into the time at hand. ``DMI_BENCH_CITY_KEEP=1`` keeps the rows of
    other sizes already in ``city_benchmark.csv`` (sizes measured in separate
    runs); the CSV is rewritten after each size.
    """
    sizes = _sizes()
    n_sites = _site_counts(sizes)
    csv = out / "results" / "city_benchmark.csv"
    kept = pd.DataFrame()
    if os.environ.get("DMI_BENCH_CITY_KEEP") == "1" and csv.is_file():
        kept = pd.read_csv(csv)
        kept = kept[~kept["areas"].isin(sizes)]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dmi-bench-city-") as tmp:
        for n_areas in sizes:
            study = write_city(n_areas, Path(tmp) / f"city{n_areas}")
            from dmi_eval.config import load_study

            sites = [s.id for s in load_study(study).sites][: n_sites[n_areas]]
            load_before = os.getloadavg()[0]
            m = measure(study, sites)
            rows.append(
                {
                    "areas": n_areas,
                    "sites": len(sites),
                    "months": 12 * N_YEARS,
                    "outcomes": 4,
                    **{k: round(v, 2) for k, v in m.items()},
                    "load_before": round(load_before, 2),
                    "load_after": round(os.getloadavg()[0], 2),
                }
            )
            print(rows[-1], flush=True)
            table = pd.concat([kept, pd.DataFrame(rows)], ignore_index=True)
            table = table.sort_values("areas", kind="stable", ignore_index=True)
            csv.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(csv, index=False)  # after each size: a long run keeps what it measured
    from tests.benchmarks.run import section_path

    figure = _figure(table, out / "appendix" / "benchmarks" / "city_scaling.png")
    return _section(table, figure_link(figure, section_path(out, "city")))


def figure_link(figure: Path, page: Path) -> str:
    """The link to ``figure`` from the Markdown file ``page``: relative to the page's folder.

    Parameters
    ----------
    figure
        The figure file.
    page
        The Markdown file that shows it.

    Returns
    -------
    str
        A POSIX path from ``page``'s folder to ``figure``.
    """
    return Path(os.path.relpath(figure, page.parent)).as_posix()


def _figure(table: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    x = table["areas"] * table["sites"]
    for ax, col, label in (
        (axes[0], "seconds", "wall / CPU time (s)"),
        (axes[1], "peak_tree_mb", "peak memory (MB)"),
    ):
        ax.loglog(x, table[col], "o-", label="wall time" if col == "seconds" else "measured")
        if col == "seconds":
            ax.loglog(x, table["cpu_seconds"], "s-", label="CPU time")
        ax.loglog(x, table[col].iloc[0] * x / x.iloc[0], "--", color="grey", label="linear")
        ax.set_xlabel("areas x sites evaluated")
        ax.set_ylabel(label)
        ax.legend(frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def _slope(x: pd.Series, y: pd.Series) -> float | None:
    if len(x) < 2:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _section(table: pd.DataFrame, figure: str) -> str:
    x = table["areas"] * table["sites"]
    t_slope, m_slope = _slope(x, table["seconds"]), _slope(x, table["peak_tree_mb"])
    full = table[(table["areas"] == max(GRIDS)) & (table["sites"] == N_SITES)]
    lines = [
        "## A big city: 1,000 to 10,000 areas, 25 sites",
        "",
        f"A seeded monthly city ({N_YEARS} years, 4 outcomes, {N_SITES} hot-spot markets "
        "with their catchment rings, area covariates) from the package's calibration "
        "simulator, written as a counts file and evaluated (data read once, every design "
        "of every site fitted, verdicts) by `evaluate_study_sites` in a fresh process with "
        "the default settings on this machine's "
        f"{os.cpu_count()} cores; the report pages are not rendered. Peak memory is the "
        "largest sum of the proportional set sizes (PSS: pages shared by forked workers "
        "counted once) of the process and its local workers (sampled), "
        "and of the largest single process. A site with more than "
        f"{MAX_DONORS:,} comparison areas is evaluated on the {MAX_DONORS:,} nearest to its "
        "market in pre-period level and trend, areas that can be placebos first "
        "(`dmi_eval.donor_pool`, every design and placebo on that pool), so above that size a site's fitting cost stops growing "
        "with the city; reading the data and the pool selection still grow with it.",
        "",
    ]
    if (table["sites"] < N_SITES).any() or len(table) < len(GRIDS):
        lines += [
            "**Partial run**: "
            + ", ".join(
                f"{r.sites} of {N_SITES} sites at {r.areas:,} areas" for r in table.itertuples()
            )
            + " (the other sites' areas still leave the donor pool). A full run is "
            "`nox -s benchmark -- --only city`.",
            "",
        ]
    lines += [
        "| areas | sites evaluated | wall time (s) | CPU time (s) | wall per site (s) | "
        "peak memory, all processes (MB) | peak, largest process (MB) | load average before / after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.areas:,} | {r.sites} | {r.seconds:.0f} | {r.cpu_seconds:.0f} | "
            f"{r.seconds / r.sites:.0f} | {r.peak_tree_mb:,.0f} | {r.peak_process_mb:,.0f} | "
            f"{r.load_before:.1f} / {r.load_after:.1f} |"
        )
    lines += ["", f"![Wall time and peak memory against areas x sites (log-log)]({figure})", ""]
    if t_slope is not None:
        c_slope = _slope(x, table["cpu_seconds"])
        lines.append(
            f"Growth with areas x sites (log-log slope): wall time {t_slope:.2f}, CPU time "
            f"{c_slope:.2f}, memory {m_slope:.2f}; linear is 1: CPU time grows "
            f"{'no faster than' if c_slope <= 1.05 else 'faster than'} linearly, memory "
            f"{'no faster than' if m_slope <= 1.05 else 'faster than'} linearly (the wall "
            "time's slope depends on how busy the machine was at each size)."
        )
    largest = table[table["areas"] == table["areas"].max()].iloc[-1]
    if largest["sites"] < N_SITES:
        per_site = largest["cpu_seconds"] / largest["sites"]
        n_cores = os.cpu_count() or 1
        lines.append(
            f"At {int(largest['areas']):,} areas a site costs {per_site:.0f} s of CPU time; "
            f"{N_SITES} sites would take about {N_SITES * per_site / n_cores / 60:.0f} min on "
            f"{n_cores} fully used cores (an extrapolation, not a measurement)."
        )
    if len(full):
        r = full.iloc[0]
        peak = max(r["peak_tree_mb"], r["peak_process_mb"])
        met = r["seconds"] <= TARGET_SECONDS and peak <= TARGET_MB
        n_cores = os.cpu_count() or 1
        lines.append(
            f"10,000 areas, 25 sites: {r['seconds'] / 60:.1f} min and "
            f"{peak:,.0f} MB; target 10 min and 4 GB: **{'met' if met else 'not met'}** "
            f"(at a load average of {max(r['load_before'], r['load_after']):.1f}). Its CPU "
            f"time, {r['cpu_seconds'] / 60:.1f} min, over {n_cores} otherwise idle cores is "
            f"{r['cpu_seconds'] / n_cores / 60:.1f} min (a lower bound for an idle machine, "
            "not a measurement)."
        )
    else:
        lines.append(
            "Target (10,000 areas, 25 sites in 10 minutes and 4 GB on 2 cores): not measured "
            "in this run."
        )
    if float(table[["load_before", "load_after"]].max().max()) > 1.5:
        lines.append(
            "The machine was shared with other work during this run (load averages above): "
            "the times are slower than on an idle machine."
        )
    return "\n".join(lines) + "\n"
