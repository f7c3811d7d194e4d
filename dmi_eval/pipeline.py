"""Load a study once and evaluate its sites; hand the fitted results to the report.

:func:`evaluate_study_sites` reads the study file and its data once, fits every
site (:func:`dmi_eval.evaluation.evaluate_site`; sites in parallel through
:func:`dmi_eval.inference.parallel_map`, on local processes or a Dask cluster
per the study's ``[compute]`` section or the caller's
:func:`dmi_eval.inference.compute`) and returns a read-only
:class:`StudyEvaluation`. The analysis scripts receive it as a file written by
:func:`save` (a pickle: the scripts run in their own kernels) and read it with
:func:`load`; they never read the study's data again.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from threadpoolctl import threadpool_limits

from dmi_eval.config import Study, load_study
from dmi_eval.data import Ingest
from dmi_eval.datacache import MappingProxyPickler, load_study_data_cached
from dmi_eval.errors import DesignError
from dmi_eval.evaluation import Outcomes, SiteEvaluation, evaluate_site
from dmi_eval.inference.parallel import compute, configured, parallel_map
from dmi_eval.panel import Panel

if TYPE_CHECKING:  # geopandas and shapely load only for the maps
    from dmi_eval.geo import StudyGeo


@dataclass(frozen=True)
class StudyEvaluation:
    """A study, its data as read once, and every evaluated site (read-only).

    Attributes
    ----------
    study
        The validated study.
    ingest
        The data as read (panel, reject log, row counts).
    sites
        Site id -> :class:`~dmi_eval.evaluation.SiteEvaluation`, in study order.
    geo
        The study's area polygons and markets, read once for the maps (``None``
        when the study has no ``[geo]``).
    """

    study: Study
    ingest: Ingest
    sites: Mapping[str, SiteEvaluation]
    geo: StudyGeo | None = None

    def site(self, site_id: str) -> SiteEvaluation:
        try:
            return self.sites[site_id]
        except KeyError:
            raise KeyError(
                f"site {site_id!r} was not evaluated; evaluated: {', '.join(self.sites)}"
            ) from None


class Progress(Protocol):
    """What a long run tells about its progress (the CLI shows a bar or log lines).

    Nothing it receives reaches a report file (durations differ between runs).
    """

    def step(self, message: str) -> None: ...
    def start(self, total: int) -> None: ...
    def site_done(self, site_id: str, seconds: float) -> None: ...


class _Silent:
    def step(self, message: str) -> None:
        pass

    def start(self, total: int) -> None:
        pass

    def site_done(self, site_id: str, seconds: float) -> None:
        pass


SILENT: Progress = _Silent()
"""A :class:`Progress` that shows nothing."""


def _evaluate_timed(
    panel: Any, study: Study, outcomes: Outcomes, site_id: str
) -> tuple[SiteEvaluation, float]:
    """One site's evaluation and its wall time in seconds (shown as progress, never reported).

    BLAS runs single-threaded inside (in this process or a worker): a site's
    linear algebra is thousands of small products and solves (placebo fits,
    Newton steps), for which OpenBLAS's threads cost more than they do — on the
    1,000-area benchmark city one synthetic-control placebo fit took 15 times the CPU
    time with 2 BLAS threads on a shared 2-core machine — and parallelism comes
    from the placebo and site loops instead.
    """
    started = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        evaluation = evaluate_site(panel, study, site_id, outcomes=outcomes)
    return evaluation, time.perf_counter() - started


def evaluate_study_sites(
    study: Study | str | Path,
    *,
    sites: Sequence[str] | None = None,
    progress: Progress | None = None,
    geo: bool = True,
    outcomes: Outcomes = "all",
) -> StudyEvaluation:
    """Read the study and its data once and evaluate its sites.

    Parameters
    ----------
    study
        A validated :class:`~dmi_eval.config.Study` or the path of its ``study.toml``.
    sites
        Site ids to evaluate (default: every site, in study order).
    progress
        Told of each step and of each finished site with its duration.
    geo
        Read the study's area polygons for the maps (``False``: the result's
        ``geo`` is ``None``, for a caller that draws no map).
    outcomes
        ``"all"`` (default): every outcome of each site; ``"primary"``: only what
        the verdict reads (see :func:`~dmi_eval.evaluation.evaluate_site`).
    """
    progress = progress or SILENT
    if not isinstance(study, Study):
        study = load_study(study)
    progress.step("reading data")
    ingest = load_study_data_cached(study)
    wanted = [s.id for s in study.sites] if sites is None else [study.site(s).id for s in sites]
    check_site_periods(ingest.panel, study, wanted)
    progress.start(len(wanted))

    def site_done(i: int, result: tuple[SiteEvaluation, float]) -> None:
        progress.site_done(wanted[i], result[1])  # as each site finishes, in any order

    with _study_compute(study):
        fitted = parallel_map(
            partial(_evaluate_timed, ingest.panel, study, outcomes),
            wanted,
            min_items=2,
            desc=None,  # the caller's progress shows the sites
            loop="the sites",
            chunk_size=1,  # a site is long: one task each, so the bar moves as sites finish
            on_result=site_done,
        )
    evaluated = {
        site_id: evaluation for site_id, (evaluation, _) in zip(wanted, fitted, strict=True)
    }
    return StudyEvaluation(
        study=study,
        ingest=ingest,
        sites=MappingProxyType(evaluated),
        geo=_study_geo(study) if geo else None,
    )


def check_site_periods(panel: Panel, study: Study, site_ids: Sequence[str]) -> None:
    """Raise one :class:`~dmi_eval.errors.DesignError` naming every site whose call-in date
    the data cannot take (outside the data, too few pre periods, no post period, no donors).

    The same checks fail a site when it is fitted; made up front, they stop a study before
    the other sites' fits, not after them.
    """
    problems = []
    for site_id in site_ids:
        try:
            panel.site_data(study, site_id)
        except DesignError as exc:
            problems.append(str(exc))
    if problems:
        raise DesignError("; ".join(problems))


def _study_geo(study: Study) -> StudyGeo:
    """The study's polygons for the maps (geopandas and shapely load only here)."""
    from dmi_eval.geo import load_study_geo

    return load_study_geo(study)


def _study_compute(study: Study) -> AbstractContextManager[None]:
    """The study's ``[compute]`` settings, unless the caller already chose (``--jobs``, ``--scheduler``)."""
    if configured():
        return nullcontext()
    return compute(scheduler=study.compute.scheduler, n_jobs=study.compute.jobs)


def save(evaluation: StudyEvaluation, path: str | Path) -> Path:
    """Write the evaluation for the analysis scripts (a pickle; not a report output)."""
    path = Path(path)
    with path.open("wb") as fh:
        MappingProxyPickler(fh, protocol=pickle.HIGHEST_PROTOCOL).dump(evaluation)
    return path


def load(path: str | Path) -> StudyEvaluation:
    """Read an evaluation written by :func:`save` (trusted input: written by this package)."""
    with Path(path).open("rb") as fh:
        evaluation = pickle.load(fh)
    if not isinstance(evaluation, StudyEvaluation):
        raise TypeError(f"{path}: not a study evaluation written by dmi_eval.pipeline.save")
    return evaluation
