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
import textwrap
from collections.abc import Sequence
from pathlib import Path

from dmi_eval import __version__
from dmi_eval.errors import DmiEvalError


def _progress(enabled: bool):
    """Step messages on stderr, shown on a terminal only (quiet in CI logs and pipes)."""
    enabled = enabled and sys.stderr.isatty() and not os.environ.get("CI")

    def show(message: str) -> None:
        if enabled:
            print(f"dmi-eval: {message}", file=sys.stderr, flush=True)

    return show


class SiteProgress:
    """Progress of ``evaluate`` on stderr (never in any report file).

    On a terminal: a bar over the sites with the time left (tqdm), step
    messages above it. Otherwise (a log, a pipe, CI): one line per finished
    site with its duration, flushed at once. ``quiet``: nothing.
    """

    def __init__(self, *, quiet: bool = False, terminal: bool | None = None) -> None:
        self.quiet = quiet
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.bar = None
        self.total = 0
        self.done = 0

    def step(self, message: str) -> None:
        """A step outside the site loop (reading data, the summary...)."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(f"dmi-eval: {message}", file=sys.stderr)
        elif self.terminal:
            print(f"dmi-eval: {message}", file=sys.stderr, flush=True)

    def start(self, total: int) -> None:
        """The site loop starts: ``total`` sites."""
        self.total, self.done = total, 0
        if self.quiet or not self.terminal:
            return
        import shutil

        from tqdm import tqdm

        width = shutil.get_terminal_size((0, 0)).columns  # 0: a terminal without a size
        self.bar = tqdm(
            total=total,
            desc="sites",
            unit="site",
            file=sys.stderr,
            leave=True,
            ncols=None if width else 80,
        )

    def site_done(self, site_id: str, seconds: float) -> None:
        """One site finished after ``seconds``."""
        self.done += 1
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"last: {site_id}")
            if self.done == self.total:
                self.bar.close()
                self.bar = None
        else:
            print(
                f"dmi-eval: site {site_id} done in {seconds:.0f} s ({self.done}/{self.total})",
                file=sys.stderr,
                flush=True,
            )


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
    from dmi_eval.outputs import default_out_dir
    from dmi_eval.report import evaluate_study

    out = args.out or default_out_dir(args.study).as_posix()
    # The command as run, without the options that do not change any result.
    command = f"dmi-eval evaluate {_shown(args.study)} --out {_shown(out)}"
    from dmi_eval.inference import PROGRESS_ENV

    if args.quiet:
        os.environ[PROGRESS_ENV] = "0"  # no placebo bars either
    elif sys.stderr.isatty() and not os.environ.get("CI"):
        os.environ[PROGRESS_ENV] = "1"  # the analysis kernels inherit it
    progress = SiteProgress(quiet=args.quiet)
    with _compute(args):
        summary = evaluate_study(
            args.study, out, command=command, force=args.force, progress=progress
        )
    if not args.quiet:
        print(
            f"Evaluated {len(summary.sites)} site(s); {summary.rows_read:,} rows read, "
            f"{summary.rows_rejected:,} rejected (see results/rejects.csv). "
            f"Report: {Path(out) / 'README.md'}"
        )
    return 0


def cmd_validate_data(args: argparse.Namespace) -> int:
    from dmi_eval.config import load_study
    from dmi_eval.data import edge_period_note, load_study_data

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
    outside = int((ingest.rejects["reason"] == "outside_areas").sum())
    if ingest.rows_read and outside / ingest.rows_read > OUTSIDE_NOTE_SHARE:
        print(
            f"Note: {outside:,} rows ({outside / ingest.rows_read:.0%}) fall in no area. That "
            "is right for an extract wider than the study's areas; otherwise check the "
            "coordinates (a lost minus sign, swapped columns) and [geo].crs."
        )
    edge = edge_period_note(ingest, study.start, study.end)
    if edge is not None:
        print(f"Note: {edge}")
    for site in study.sites:
        data = panel.site_data(study, site.id)
        print(
            f"  {site.id}: {len(data.treated_areas):,} market area(s), "
            f"{len(data.catchment_areas):,} nearby, {len(data.donor_areas):,} comparison"
        )
    print(f"All {len(study.sites)} site(s) match the data.")
    return 0


OUTSIDE_NOTE_SHARE = 0.10
"""``validate-data`` notes a share of rows in no area above this (a scope reject, but a
lost minus sign looks the same)."""


def cmd_check(args: argparse.Namespace) -> int:
    from dmi_eval.datacache import load_study_cached
    from dmi_eval.pipeline import evaluate_study_sites
    from dmi_eval.tables import design_label
    from dmi_eval.verdict import rule_text
    from dmi_eval.wording import (
        catchment_high,
        closure_summary,
        first_paragraph,
        plain_reason,
        verdict_words,
    )

    study = load_study_cached(args.study)
    site = study.site(args.site)
    if args.out:  # refuse a folder it may not write into before the fit, not after it
        from dmi_eval.outputs import OutputFolder

        OutputFolder(Path(args.out).resolve(), command="check", force=args.force).check()
    with _compute(args):
        # the one-page report shows every outcome and the maps; the answer needs
        # the primary outcome only (the same verdict, about 4x less work)
        fitted = evaluate_study_sites(
            study,
            sites=[site.id],
            geo=bool(args.out),
            outcomes="all" if args.out else "primary",
        )
    evaluation = fitted.site(site.id)
    verdict = evaluation.verdict
    # the primary design's own effects (not every design's: computed on demand)
    effects = evaluation.results[evaluation.primary].effects()
    row = effects[
        (effects["design"] == evaluation.primary)
        & (effects["outcome"] == site.primary_outcome)
        & (effects["window"] == "post")
    ].iloc[0]
    text = first_paragraph(
        label=verdict.label,
        reasons=verdict.reasons,
        row=row,
        outcome_label=study.report.outcome_label(site.primary_outcome),
        unit=study.frequency,
        n_post=evaluation.data.n_post,
        rule_summary=closure_summary(
            study.verdict,
            study.frequency,
            catchment=bool(evaluation.data.catchment_areas),
            catchment_high=catchment_high(evaluation.evidence),
        ),
        outcome=site.primary_outcome,
        suppress_below=study.report.suppress_below,
        min_p=evaluation.evidence.post.min_p,
    ).replace("**", "")
    print(f"{site.name} (call-in {site.intervention}): {verdict_words(verdict.label).upper()}")
    print(_wrapped(text))
    print("\nWhy:")
    label = study.report.outcome_label(site.primary_outcome)
    for reason in verdict.reasons:
        print(_wrapped(plain_reason(reason, outcome=site.primary_outcome, label=label), "  - "))
    for warning in verdict.warnings:
        print(_wrapped(warning, "  ! "))
    print(f"\nPrimary design: {design_label(evaluation.primary)}.")
    rule = rule_text(study.verdict, study.frequency).replace("*", "")
    print(_wrapped(rule.replace("Market-closure rule (", "The market-closure rule (", 1)))
    print(
        _wrapped(
            "The words are explained in the glossary (appendix/glossary.md of a report); "
            "--out DIR writes this site's page with its figures."
        )
    )
    if args.out:
        import tempfile

        from dmi_eval.outputs import OutputFolder, read_manifest
        from dmi_eval.pipeline import save
        from dmi_eval.render import add_navigation
        from dmi_eval.report import (
            GLOSSARY_SCRIPT,
            METHODS_SCRIPT,
            SITE_SCRIPT,
            analyses_dir,
            run_analysis,
        )

        out = Path(args.out).resolve()
        with (
            OutputFolder(out, command="check", force=args.force),
            tempfile.TemporaryDirectory(prefix="dmi-eval-") as tmp,
        ):
            params = {
                "study_path": str(study.path),
                "out_dir": str(out),
                "site_id": site.id,
                "results_path": str(save(fitted, Path(tmp) / "evaluation.pickle")),
                # link the cross-site summary only where evaluate wrote one
                "summary": "README.md" in (read_manifest(out) or {}).get("evaluate", []),
            }
            page = run_analysis(
                analyses_dir() / SITE_SCRIPT, params, out / "sites" / f"{site.id}.md"
            )
            # the pages the site page links to
            appendix = {"study_path": str(study.path), "out_dir": str(out)}
            for script, name in ((METHODS_SCRIPT, "methods"), (GLOSSARY_SCRIPT, "glossary")):
                run_analysis(analyses_dir() / script, appendix, out / "appendix" / f"{name}.md")
            add_navigation(out)
        print(f"One-page report with figures: {Path(args.out) / page.relative_to(out)}")
    return 0


CHECK_WIDTH = 100
"""Line width of ``dmi-eval check``'s answer (fixed, so the answer is the same on every terminal)."""


def _wrapped(text: str, bullet: str = "") -> str:
    """``text`` wrapped at :data:`CHECK_WIDTH`, after ``bullet`` and indented under it."""
    return textwrap.fill(
        text,
        width=CHECK_WIDTH,
        initial_indent=bullet,
        subsequent_indent=" " * len(bullet),
        break_on_hyphens=False,
    )


def cmd_power(args: argparse.Namespace) -> int:
    from dmi_eval.calibration import power_like_site
    from dmi_eval.calibration.like_site import check_exposure, check_market_trend
    from dmi_eval.datacache import load_study_cached, load_study_data_cached
    from dmi_eval.errors import ConfigError

    if args.cities < 1:
        raise ConfigError(f"--cities: must be 1 or more; got {args.cities}")
    check_exposure(args.exposure, name="--exposure")
    check_market_trend(args.market_trend, name="--market-trend")
    if args.csv and not Path(args.csv).resolve().parent.is_dir():
        raise ConfigError(
            f"--csv {args.csv}: its folder does not exist; create it or choose another path"
        )
    study = load_study_cached(args.study)
    site = study.site(args.site)
    data = load_study_data_cached(study).panel.site_data(study, site.id)
    with _compute(args):
        found = power_like_site(
            data,
            study.verdict,
            n_cities=args.cities,
            n_jobs=args.jobs or 2,
            exposure=args.exposure,
            market_trend=args.market_trend,
            **({} if args.seed is None else {"seed": args.seed}),
        )
    label = study.report.outcome_label(site.primary_outcome)
    print(found.text(site_name=site.name, outcome_label=label))
    if args.csv:
        found.table().to_csv(args.csv, index=False, lineterminator="\n")
        print(f"Table: {args.csv}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from dmi_eval.errors import ConfigError
    from dmi_eval.synthetic import files_in_the_way, simulate_study, write_study

    in_the_way = files_in_the_way(args.out)
    if in_the_way and not args.force:
        raise ConfigError(
            f"{args.out}: holds {', '.join(in_the_way)}, not written by dmi-eval simulate; "
            "choose an empty folder, or pass --force to replace them (other files are kept)"
        )
    path = write_study(simulate_study(args.seed), args.out)
    print(f"Wrote a synthetic study: {path}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from dmi_eval.outputs import OutputFolder
    from dmi_eval.validation.runner import run_validation, write_validation

    checks = run_validation(
        Path(args.reference), only=args.case or None, on_progress=_progress(not args.quiet)
    )
    with OutputFolder(Path(args.out), command="validate", force=args.force):
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("evaluate", help="evaluate every site of a study and write the report")
    p.add_argument("study", help="path to study.toml")
    p.add_argument(
        "--out",
        help="report folder (default: reports/ for the shipped synthetic study, "
        "reports/<study-id>/ for any other, <study-id> being the study file's folder name)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress and no summary line")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty folder that dmi-eval did not write (nothing there is removed "
        "or written over: a file of yours where a page would go is refused)",
    )
    _add_compute_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("check", help="one site's answer: did the market close?")
    p.add_argument("study", help="path to study.toml")
    p.add_argument("--site", required=True, help="site id")
    p.add_argument(
        "--out",
        help="also write the site's report page (with figures) here; the answer alone fits "
        "the primary outcome only, the page every outcome",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty folder that dmi-eval did not write (nothing there is removed "
        "or written over: a file of yours where a page would go is refused)",
    )
    _add_compute_flags(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "power",
        help="how often the verdict would be right at sites like one of yours (simulated)",
        description="Simulate cities like one site (its market's level and size, the comparison "
        "areas' levels, overdispersion, pre and post lengths), plant no effect and lasting -25% "
        "and -45% drops, and report how often the study's verdict says closed, displaced, not "
        "closed or inconclusive. About 10 s of CPU a monthly city.",
    )
    p.add_argument("study", help="path to study.toml")
    p.add_argument("--site", required=True, help="site id")
    p.add_argument(
        "--cities", type=int, default=10, help="simulated cities, 6 markets each (default 10)"
    )
    p.add_argument("--seed", type=int, help="seed (default: the calibration study's)")
    p.add_argument("--csv", help="also write the table (with Monte Carlo SEs) to this CSV")
    p.add_argument(
        "--exposure",
        type=float,
        default=1.0,
        help="what if the market swings with the city more than an area does: its own factor "
        "exposure as a multiple of an area's (default 1; the calibration's monthly-exposed "
        "stress uses 2)",
    )
    p.add_argument(
        "--market-trend",
        type=float,
        default=0.0,
        metavar="SD",
        help="what if the market has a slow trend of its own that its comparison areas do not "
        "share: the SD of that trend, log per year (default 0; the calibration's market-trends "
        "scenario uses 0.05)",
    )
    _add_compute_flags(p)
    p.set_defaults(func=cmd_power)

    p = sub.add_parser("validate-data", help="read the inputs and account for every row")
    p.add_argument("study", help="path to study.toml")
    p.set_defaults(func=cmd_validate_data)

    p = sub.add_parser("validate", help="reproduce published results on the reference datasets")
    p.add_argument("--reference", default="../shared/reference", help="reference folder")
    p.add_argument("--out", default="reports", help="report folder (default: reports)")
    p.add_argument("--case", action="append", help="run only this case (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty folder that dmi-eval did not write (nothing there is removed "
        "or written over: a file of yours where a page would go is refused)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("simulate", help="write a synthetic study with known truth")
    p.add_argument(
        "out",
        help="folder to write study.toml, extract.csv.gz, areas.csv, blocks.geojson, "
        "markets/ and truth.json (a previous simulation there is replaced)",
    )
    p.add_argument("--seed", type=int, default=20070501)
    p.add_argument(
        "--force",
        action="store_true",
        help="replace those files in a folder that dmi-eval simulate did not write",
    )
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
