"""Sessions: tests, lint, evaluate, data, validate, calibrate, benchmark.

Quick start on a fresh machine::

    python -m pip install nox && nox -s evaluate
    python -m pip install nox && nox -s tests
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "venv"

ROOT = Path(__file__).parent
PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")
SYNTHETIC = "data/synthetic/study.toml"


def install(session: nox.Session, *extra: str) -> None:
    """Install the package with the pinned versions of constraints.txt."""
    session.install(*CONSTRAINTS, *(extra or (".",)))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (reference-data tests skip when ../shared/reference is absent)."""
    install(session, ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def data(session: nox.Session) -> None:
    """Regenerate the synthetic study in data/synthetic/ (seeded, byte-identical)."""
    install(session)
    session.run("dmi-eval", "simulate", "data/synthetic")


@nox.session(python=PYTHON)
def evaluate(session: nox.Session) -> None:
    """Evaluate a study (default: the shipped synthetic study, into reports/).

    ``nox -s evaluate -- path/to/study.toml [--out DIR]`` evaluates another study,
    by default into ``reports/<study-id>/`` (e.g. ``analyses/seattle/study.toml``
    writes ``reports/seattle/``). Only files a previous run wrote are replaced.
    """
    install(session)
    args = list(session.posargs)
    study = args.pop(0) if args and not args[0].startswith("-") else SYNTHETIC
    if study == SYNTHETIC and not (ROOT / SYNTHETIC).exists():
        session.run("dmi-eval", "simulate", "data/synthetic")
    session.run("dmi-eval", "evaluate", study, *args)


@nox.session(python=PYTHON)
def validate(session: nox.Session) -> None:
    """Reproduce the published results (default reference: ../shared/reference).

    ``nox -s validate -- --reference DIR`` reads another folder. Writes
    reports/results/validation.csv and reports/appendix/validation.md.
    """
    install(session)
    session.run("dmi-eval", "validate", "--out", "reports", *session.posargs)


@nox.session(python=PYTHON)
def calibrate(session: nox.Session) -> None:
    """Size, coverage and power of every design as used at sites, on simulated cities.

    Writes reports/results/calibration.csv and reports/appendix/calibration.md (1440
    markets; the appendix states its run's time). ``nox -s calibrate -- --sensitivity``
    adds eleven sensitivity scenarios (470 markets), ``--scale 0.5`` simulates half as many
    cities, ``--out DIR`` writes elsewhere. ``nox -s calibrate -- --microsynth`` runs only
    the check of micro-level synthetic control where it can be fitted
    (reports/appendix/calibration_microsynth.md).
    """
    install(session)
    args = list(session.posargs)
    if "--out" not in args:
        args += ["--out", "reports"]
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    session.run("python", "-m", "dmi_eval.calibration", *args, env=env)


@nox.session(python=PYTHON)
def benchmark(session: nox.Session) -> None:
    """Speed, memory and statistical performance, side by side with peer packages.

    Writes reports/results/*benchmark*.csv and reports/appendix/benchmarks.md.
    ``nox -s benchmark -- --only ingest its`` runs a subset.
    """
    install(session, ".[test]")
    session.install(*CONSTRAINTS, "pysyncon")  # the peer package, in this session only
    session.run("python", "tests/benchmarks/run.py", "--out", "reports", *session.posargs)
