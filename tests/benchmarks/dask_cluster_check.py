"""Same bytes on a Dask cluster: check it as a user would.

Starts ``dask scheduler --port PORT`` and two ``dask worker tcp://127.0.0.1:PORT
--nworkers 1 --nthreads 1`` processes, runs ``dmi-eval evaluate STUDY --out
OUT/dask/reports --scheduler tcp://127.0.0.1:PORT`` and a plain ``dmi-eval
evaluate STUDY --out OUT/plain/reports``, and compares every file of the two folders byte for
byte. Exit status 0 when they are identical, 1 otherwise (the differing files
are listed). The scheduler and workers are stopped at the end.

Usage (needs ``pip install dmi_eval[dask]``)::

    python tests/benchmarks/dask_cluster_check.py [--study data/synthetic/study.toml]
        [--out /tmp/dmi-dask-check] [--port 8786]
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bin(name: str) -> str:
    """A console script of this Python's environment (dask, dmi-eval)."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"`{name}` not found: install dmi_eval[dask] into this environment")
    return found


def _wait_for_workers(address: str, n: int, timeout: float = 120.0) -> None:
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(n, timeout=timeout)


def _report(out: Path, run: str) -> Path:
    """The report folder of one run (same name in both: the command line is in the report)."""
    return out / run / "reports"


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def compare(a: Path, b: Path) -> list[str]:
    """Files that differ between two folders, or that only one has."""
    fa, fb = _files(a), _files(b)
    diff = sorted(fa ^ fb)
    for rel in sorted(fa & fb):
        if not filecmp.cmp(a / rel, b / rel, shallow=False):
            diff.append(rel)
    return diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="data/synthetic/study.toml")
    parser.add_argument("--out", type=Path, default=Path("/tmp/dmi-dask-check"))
    parser.add_argument("--port", type=int, default=8786)
    args = parser.parse_args(argv)
    address = f"tcp://127.0.0.1:{args.port}"
    for sub in ("dask", "plain"):
        shutil.rmtree(args.out / sub, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    dask = _bin("dask")
    logs = [open(args.out / f"{n}.log", "w") for n in ("scheduler", "worker1", "worker2")]
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--port", str(args.port), "--dashboard-address", ":0"],
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        time.sleep(2)
        for log in logs[1:]:
            procs.append(
                subprocess.Popen(
                    [dask, "worker", address, "--nworkers", "1", "--nthreads", "1"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_for_workers(address, 2)
        dmi = _bin("dmi-eval")
        timings = {}
        for sub, extra in (("dask", ["--scheduler", address]), ("plain", [])):
            start = time.perf_counter()
            subprocess.run(
                [dmi, "evaluate", args.study, "--out", str(_report(args.out, sub)), "--quiet"]
                + extra,
                check=True,
                cwd=ROOT,
            )
            timings[sub] = time.perf_counter() - start
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()
    diff = compare(_report(args.out, "dask"), _report(args.out, "plain"))
    n = len(_files(_report(args.out, "plain")))
    print(
        f"dask run {timings['dask']:.0f} s, plain run {timings['plain']:.0f} s; "
        f"{n} files compared, {len(diff)} differ"
    )
    for rel in diff:
        print(f"  differs: {rel}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
