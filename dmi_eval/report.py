"""Run the analysis scripts and write the evaluation report.

The scripts in ``analyses/`` are percent-format Python files (they also run as
plain scripts). Each is read with jupytext, given its parameters with
papermill's parameter injection, executed with nbclient and exported to
Markdown with nbconvert, code hidden. Figures are saved by the scripts as
deterministic PNGs; the Markdown links them relatively, so the report folder
can be moved or published as it is.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jupytext
import pandas as pd
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import MarkdownExporter
from papermill.parameterize import parameterize_notebook
from traitlets.config import Config

from dmi_eval import errors
from dmi_eval.config import Study, load_study
from dmi_eval.data import Ingest
from dmi_eval.errors import DmiEvalError
from dmi_eval.inference import PROGRESS_ENV
from dmi_eval.outputs import OutputFolder
from dmi_eval.panel import site_roles
from dmi_eval.pipeline import SILENT, Progress, evaluate_study_sites, save
from dmi_eval.provenance import code_commit
from dmi_eval.render import add_navigation, write_html
from dmi_eval.results import TABLE_COLUMNS
from dmi_eval.study_spec import with_companions

SITE_SCRIPT = "site_report.py"
SUMMARY_SCRIPT = "study_summary.py"
REPRODUCIBILITY_SCRIPT = "appendix_reproducibility.py"
METHODS_SCRIPT = "appendix_methods.py"
GLOSSARY_SCRIPT = "appendix_glossary.py"
FLOAT_FORMAT = "%.10g"
"""Every CSV we write uses this float format, so that re-runs give the same bytes."""


class AnalysisError(DmiEvalError):
    """An analysis script stopped on a user-fixable error (the message is the script's)."""


@dataclass(frozen=True)
class EvaluationSummary:
    """What :func:`evaluate_study` wrote."""

    out_dir: Path
    sites: tuple[str, ...]
    rows_read: int
    rows_rejected: int


def analyses_dir() -> Path:
    """The folder holding the analysis scripts shipped with the package."""
    return Path(str(resources.files("dmi_eval.analyses")))


def script_label(name: str) -> str:
    """How reports name an analysis script: its path in the repository."""
    return f"analyses/{name}"


def kernel_transport(sockets: str) -> Config:
    """Kernel sockets as Unix-domain files in the private folder ``sockets`` (TCP on Windows).

    With TCP, jupyter_client picks free ports by binding port 0 and closing it
    before the kernel binds them; meanwhile an outgoing connection can take the
    port as its source, and the kernel's heartbeat thread dies with "Address
    already in use" on the user's terminal (seen once in CI). Files in a folder
    of their own cannot collide; they vanish with it.
    """
    config = Config()
    if os.name != "nt":
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(Path(sockets) / "kernel")
    return config


def _execute(notebook: Any, script: Path, markdown_path: Path, timeout: int, sockets: str) -> None:
    """Run every cell of ``notebook`` in a fresh kernel (outputs are kept in the notebook)."""
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        config=kernel_transport(sockets),
        # Every output has arrived when execute() returns, so the kernel is killed rather
        # than asked to shut down: ipykernel 7 can race its own graceful shutdown (control
        # "idle" status sent on a closed socket) and log a traceback on our stderr.
        shutdown_kernel="immediate",
        # The kernel's own start-up log (transport notices) is not part of any report;
        # with progress on, the kernel also echoes its stderr (progress bars) to ours.
        extra_arguments=[
            "--IPKernelApp.log_level=ERROR",
            *(["--IPKernelApp.quiet=False"] if os.environ.get(PROGRESS_ENV) == "1" else []),
        ],
        resources={"metadata": {"path": str(markdown_path.parent)}},
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        if _is_user_error(exc.ename):
            raise AnalysisError(f"{script.name}: {exc.evalue}") from None
        raise


def run_analysis(
    script: Path,
    parameters: Mapping[str, Any],
    markdown_path: Path,
    *,
    timeout: int = 3600,
) -> Path:
    """Execute one analysis script with ``parameters`` and write its Markdown.

    Raises
    ------
    AnalysisError
        When the script raised a :class:`~dmi_eval.errors.DmiEvalError`; its
        message is passed on. Any other exception is a bug and propagates.
    """
    notebook = jupytext.read(script)
    # papermill's own loader adds these; jupytext's notebooks lack them.
    notebook.metadata.setdefault("papermill", {})
    for cell in notebook.cells:
        cell.metadata.setdefault("tags", [])
    notebook = parameterize_notebook(
        notebook, dict(parameters), kernel_name="python3", language="python"
    )
    for number, cell in enumerate(notebook.cells):
        cell.id = f"cell-{number}"  # nbformat draws random ids; reports must not change
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    # debugpy, loaded by every kernel, warns on the terminal about frozen modules.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    with tempfile.TemporaryDirectory(prefix="dmi-kernel-") as sockets:
        _execute(notebook, script, markdown_path, timeout, sockets)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if o.get("name") != "stderr"]
    exporter = MarkdownExporter()
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, res = exporter.from_notebook_node(notebook)
    if res.get("outputs"):
        names = ", ".join(sorted(res["outputs"]))
        raise RuntimeError(
            f"{script.name} displayed inline images ({names}); analyses must save figures with "
            "dmi_eval.plots.save_figure and link them"
        )
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(_tidy_markdown(body), encoding="utf-8")
    write_html(notebook, markdown_path.with_suffix(".html"))
    return markdown_path


def _is_user_error(ename: str) -> bool:
    return (
        any(
            isinstance(obj, type) and issubclass(obj, DmiEvalError) and obj.__name__ == ename
            for obj in vars(errors).values()
        )
        or ename == "AnalysisError"
    )


def _tidy_markdown(body: str) -> str:
    lines = [line.rstrip() for line in body.splitlines()]
    out: list[str] = []
    for line in lines:
        if line == "" and out and out[-1] == "":
            continue
        out.append(line)
    return "\n".join(out).strip() + "\n"


def sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def study_commit(study: Study, out: Path) -> str:
    """The code's git commit as the appendix records it ("" if none).

    Looked up from the study file's folder, not the working folder, so that
    the same study and code give the same bytes wherever the command runs: a
    study inside a dmi_eval checkout (the shipped ones) gets that checkout's
    commit when its code is the code that ran; any other study gets none.
    """
    return code_commit(Path(study.path).resolve().parent, exclude=out) or ""


def input_files(study: Study) -> list[Path]:
    """Every file the study reads: the study file, data files, a custom offense map, polygons.

    A shapefile comes with the companion files that change what it means (its
    ``.prj`` CRS, ``.dbf`` attributes, ...).
    """
    files = [study.path]
    for p in (study.data.incidents, study.data.counts, study.data.areas):
        if p is not None:
            files.append(p)
    if isinstance(study.data.offense_map, Path):
        files.append(study.data.offense_map)
    if study.geo is not None:
        files += [p for p in (study.geo.areas, study.geo.boundary) if p is not None]
    files += [s.market for s in study.sites if s.market is not None]
    return [part for f in files for part in with_companions(f)]


def write_ingest_results(ingest: Ingest, results_dir: Path) -> None:
    """Write ``rejects.csv`` (one row per unused input row) and ``ingest.csv`` (totals)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    ingest.rejects.to_csv(results_dir / "rejects.csv", index=False, lineterminator="\n")
    summary = ingest.reject_summary()
    rows = [
        {"file": ingest.file, "quantity": "rows_read", "rows": ingest.rows_read},
        {"file": ingest.file, "quantity": "rows_counted", "rows": ingest.rows_counted},
        {"file": ingest.file, "quantity": "rows_rejected", "rows": ingest.rows_rejected},
    ] + [
        {"file": ingest.file, "quantity": f"rejected:{r}", "rows": int(n), "description": d}
        for r, n, d in zip(summary["reason"], summary["rows"], summary["description"], strict=True)
    ]
    frame = pd.DataFrame(rows, columns=["file", "quantity", "rows", "description"])
    frame.to_csv(results_dir / "ingest.csv", index=False, lineterminator="\n")


def write_site_roles(ingest: Ingest, study: Study, results_dir: Path) -> None:
    """Write ``sites.csv``: ``site, role, area_id`` of every treated, catchment and donor area."""
    results_dir.mkdir(parents=True, exist_ok=True)
    roles = site_roles(ingest.panel, study)
    roles.to_csv(results_dir / "sites.csv", index=False, lineterminator="\n")


def evaluate_study(
    study_path: str | Path,
    out_dir: str | Path,
    *,
    command: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> EvaluationSummary:
    """Evaluate every site of a study and write the report under ``out_dir``.

    Parameters
    ----------
    study_path
        The study's ``study.toml``.
    out_dir
        Report folder. Only files a previous ``evaluate`` wrote there (listed in
        its manifest, :mod:`dmi_eval.outputs`) are replaced or removed; a
        non-empty folder that is not a dmi_eval output is refused.
    command
        The command line to print in the reproducibility appendix (default:
        ``dmi-eval evaluate <study file name> --out <out folder name>``).
    force
        Write into a non-empty folder that is not a dmi_eval output (its files
        are still kept).
    progress
        Told of each step and each finished site (the CLI shows a bar or log
        lines); nothing it receives reaches a report file.
    """
    progress = progress or SILENT
    study = load_study(study_path)
    out = Path(out_dir).resolve()
    with OutputFolder(out, command="evaluate", force=force):  # refuses a user's folder first
        try:
            evaluation = evaluate_study_sites(study, progress=progress)
        except errors.NoUsableRowsError as exc:  # the user needs the log to fix the extract
            (out / "results").mkdir(parents=True, exist_ok=True)
            exc.rejects.to_csv(out / "results" / "rejects.csv", index=False, lineterminator="\n")
            raise
        except errors.RejectThresholdError as exc:
            if exc.ingest is not None:
                write_ingest_results(exc.ingest, out / "results")
            raise
        ingest = evaluation.ingest
        results_dir = out / "results"
        write_ingest_results(ingest, results_dir)
        write_site_roles(ingest, study, results_dir)
        with tempfile.TemporaryDirectory(prefix="dmi-eval-") as tmp:
            fitted = save(evaluation, Path(tmp) / "evaluation.pickle")
            _render_study(study, out, results_dir, str(fitted), command, progress)
        add_navigation(out)
    return EvaluationSummary(
        out_dir=out,
        sites=tuple(s.id for s in study.sites),
        rows_read=ingest.rows_read,
        rows_rejected=ingest.rows_rejected,
    )


def _render_study(
    study: Study,
    out: Path,
    results_dir: Path,
    results_path: str,
    command: str | None,
    progress: Progress,
) -> None:
    """Run every analysis script on the fitted results and collect the site results."""
    scripts = analyses_dir()
    params = {"study_path": str(study.path), "out_dir": str(out), "results_path": results_path}
    progress.step("writing the site pages")
    for site in study.sites:
        run_analysis(
            scripts / SITE_SCRIPT,
            {**params, "site_id": site.id},
            out / "sites" / f"{site.id}.md",
        )
    effects = collect_site_results(study, results_dir, "effects.csv")[list(TABLE_COLUMNS)]
    effects.to_csv(
        results_dir / "effects.csv", index=False, float_format=FLOAT_FORMAT, lineterminator="\n"
    )
    verdicts = collect_site_results(study, results_dir, "verdict.csv")
    verdicts.to_csv(results_dir / "verdicts.csv", index=False, lineterminator="\n")
    progress.step("appendices")
    methods = {k: v for k, v in params.items() if k != "results_path"}
    run_analysis(scripts / METHODS_SCRIPT, methods, out / "appendix" / "methods.md")
    run_analysis(scripts / GLOSSARY_SCRIPT, methods, out / "appendix" / "glossary.md")
    shown = command or f"dmi-eval evaluate {study.path.name} --out {out.name}"
    run_analysis(
        scripts / REPRODUCIBILITY_SCRIPT,
        {**methods, "command": shown, "commit": study_commit(study, out)},
        out / "appendix" / "reproducibility.md",
    )
    progress.step("cross-site summary")  # last: it links the pages that exist
    run_analysis(scripts / SUMMARY_SCRIPT, params, out / "README.md")


def collect_site_results(study: Study, results_dir: Path, name: str) -> pd.DataFrame:
    """Concatenate one per-site results file (``results/sites/<id>/<name>``), in study order."""
    frames = []
    for site in study.sites:
        path = results_dir / "sites" / site.id / name
        if not path.exists():
            raise RuntimeError(f"{SITE_SCRIPT} did not write {name} for site {site.id}")
        frames.append(pd.read_csv(path, keep_default_na=False, na_values=[""]))
    return pd.concat(frames, ignore_index=True)
