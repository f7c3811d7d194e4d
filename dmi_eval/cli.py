"""The ``dmi-eval`` command.

Sub-commands: ``evaluate`` (a study -> a report folder), ``check`` (one site's
plain answer), ``validate-data`` (read and account for every input row,
nothing else), ``simulate`` (write a synthetic study). A user's mistake prints
one or two lines naming what to fix and exits with status 2; ``--debug`` shows
the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dmi_eval.errors import DmiEvalError


def _progress(enabled: bool):
    """Progress lines on stderr, shown on a terminal only (quiet in CI logs and pipes)."""
    enabled = enabled and sys.stderr.isatty() and not os.environ.get("CI")

    def show(message: str) -> None:
        if enabled:
            print(f"dmi-eval: {message}", file=sys.stderr, flush=True)

    return show


def _shown(path: str) -> str:
    """A path as it may appear in a report: relative as typed, or just its name."""
    return Path(path).name if Path(path).is_absolute() else Path(path).as_posix()


def _compute(args: argparse.Namespace):
    """``--scheduler`` / ``--jobs``: where the work runs (default: the study's ``[compute]``)."""
    from contextlib import nullcontext

    if args.scheduler is None and args.jobs is None:
        return nullcontext()
    from dmi_eval.inference.parallel import compute

    return compute(scheduler=args.scheduler, n_jobs=args.jobs)


def _add_compute_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run on this Dask scheduler (needs dmi_eval[dask]); same bytes as a local run",
    )
    p.add_argument(
        "--jobs", type=int, metavar="N", help="local worker processes (1: all in this process)"
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dmi_eval.report import evaluate_study

    command = f"dmi-eval evaluate {_shown(args.study)} --out {_shown(args.out)}"
    if not args.quiet and sys.stderr.isatty() and not os.environ.get("CI"):
        from dmi_eval.inference import PROGRESS_ENV

        os.environ[PROGRESS_ENV] = "1"  # the analysis kernels inherit it
    with _compute(args):
        summary = evaluate_study(
            args.study, args.out, command=command, on_progress=_progress(not args.quiet)
        )
    print(
        f"Evaluated {len(summary.sites)} site(s); {summary.rows_read:,} rows read, "
        f"{summary.rows_rejected:,} rejected (see results/rejects.csv). "
        f"Report: {Path(args.out) / 'README.md'}"
    )
    return 0


def cmd_validate_data(args: argparse.Namespace) -> int:
    from dmi_eval.config import load_study
    from dmi_eval.data import load_study_data

    study = load_study(args.study)
    ingest = load_study_data(study)
    print(
        f"{ingest.file}: {ingest.rows_read:,} rows read, {ingest.rows_counted:,} counted, "
        f"{ingest.rows_rejected:,} rejected"
    )
    for r in ingest.reject_summary().itertuples(index=False):
        print(f"  {r.rows:>8,}  {r.reason} ({r.kind}): {r.description}")
    panel = ingest.panel
    print(
        f"Panel: {len(panel.areas):,} areas x {len(panel.periods)} {study.frequency}s "
        f"({panel.periods[0]} to {panel.periods[-1]}), outcomes: {', '.join(panel.outcomes)}"
    )
    for site in study.sites:
        panel.site_data(study, site.id)
    print(f"All {len(study.sites)} site(s) match the data.")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from dmi_eval.config import load_study
    from dmi_eval.pipeline import evaluate_study_sites
    from dmi_eval.verdict import headline, rule_text

    study = load_study(args.study)
    site = study.site(args.site)
    with _compute(args):
        fitted = evaluate_study_sites(study, sites=[site.id])
    evaluation = fitted.site(site.id)
    verdict = evaluation.verdict
    text = headline(evaluation.evidence, verdict, site.name, study.frequency).replace("**", "")
    print(f"{site.name} (call-in {site.intervention}): {verdict.label.replace('_', ' ').upper()}")
    print(text)
    print("Why:")
    for reason in verdict.reasons:
        print(f"  - {reason}")
    print(f"Primary design: {evaluation.primary}. " + rule_text(study.verdict).replace("*", ""))
    if args.out:
        import tempfile

        from dmi_eval.pipeline import save
        from dmi_eval.report import SITE_SCRIPT, analyses_dir, run_analysis

        out = Path(args.out).resolve()
        with tempfile.TemporaryDirectory(prefix="dmi-eval-") as tmp:
            params = {
                "study_path": str(study.path),
                "out_dir": str(out),
                "site_id": site.id,
                "results_path": str(save(fitted, Path(tmp) / "evaluation.pickle")),
            }
            page = run_analysis(
                analyses_dir() / SITE_SCRIPT, params, out / "sites" / f"{site.id}.md"
            )
        print(f"One-page report with figures: {Path(args.out) / page.relative_to(out)}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from dmi_eval.synthetic import simulate_study, write_study

    path = write_study(simulate_study(args.seed), args.out)
    print(f"Wrote a synthetic study: {path}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from dmi_eval.validation.runner import run_validation, write_validation

    checks = run_validation(
        Path(args.reference), only=args.case or None, on_progress=_progress(not args.quiet)
    )
    write_validation(checks, Path(args.out), Path(args.reference).name)
    failed = [c for c in checks if c.passed is False]
    passed = sum(c.passed is True for c in checks)
    print(
        f"Validation: {passed} passed, {len(failed)} failed, "
        f"{sum(c.passed is None for c in checks)} for the record. "
        f"Written: {Path(args.out) / 'appendix' / 'validation.md'}"
    )
    for c in failed:
        print(f"  FAILED {c.case} {c.quantity}: {c.value:.6g} vs published {c.published:.6g}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmi-eval", description="Evaluate Drug Market Intervention sites."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("evaluate", help="evaluate every site of a study and write the report")
    p.add_argument("study", help="path to study.toml")
    p.add_argument("--out", default="reports", help="report folder (default: reports)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    _add_compute_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("check", help="one site's answer: did the market close?")
    p.add_argument("study", help="path to study.toml")
    p.add_argument("--site", required=True, help="site id")
    p.add_argument("--out", help="also write the site's report page (with figures) here")
    _add_compute_flags(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("validate-data", help="read the inputs and account for every row")
    p.add_argument("study", help="path to study.toml")
    p.set_defaults(func=cmd_validate_data)

    p = sub.add_parser("validate", help="reproduce published results on the reference datasets")
    p.add_argument("--reference", default="../shared/reference", help="reference folder")
    p.add_argument("--out", default="reports", help="report folder (default: reports)")
    p.add_argument("--case", action="append", help="run only this case (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("simulate", help="write a synthetic study with known truth")
    p.add_argument("out", help="folder to write study.toml, incidents.csv, areas.csv, truth.json")
    p.add_argument("--seed", type=int, default=20070501)
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dmi-eval`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DmiEvalError as exc:
        if args.debug:
            raise
        print(f"dmi-eval: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
