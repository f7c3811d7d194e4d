"""Which code produced a report: the git commit of the dmi_eval that ran.

A report's reproducibility appendix names the commit of the code behind it.
The code that runs is the ``dmi_eval`` package imported by the command: the
checkout itself (``PYTHONPATH``, an editable install) or a copy installed from
it (``nox`` sessions install one). The commit is read from the git repository
of the current folder only when that repository is a dmi_eval checkout whose
package files are byte for byte the ones running (:func:`code_commit`); a
user's own project repository, or a checkout the installed copy no longer
matches, records no commit rather than a wrong one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dmi_eval

PACKAGED = ("dmi_eval/", "analyses/")
"""Top folders of a checkout whose files the installed package carries."""


def git_commit(where: str | Path = ".", *, exclude: str | Path | None = None) -> str | None:
    """The git commit of the repository at ``where`` (``None`` outside git or without git).

    ``"<hash> (with uncommitted changes)"`` when tracked files differ from the
    commit; files under ``exclude`` (the output folder being written) and under
    the repository's ``reports/`` (generated) do not count.
    """
    where = Path(where)
    head = _git(["rev-parse", "HEAD"], where)
    if head is None or head.returncode != 0:
        return None
    # Generated reports (the repository's reports/ and the output folder) are not code.
    paths = ["--", ".", ":(top,exclude)reports"]
    if exclude is not None:
        top = _git(["rev-parse", "--show-toplevel"], where).stdout.strip()
        ex = Path(exclude).resolve()
        if top and ex.is_relative_to(Path(top).resolve()):
            paths.append(f":(top,exclude){ex.relative_to(Path(top).resolve()).as_posix()}")
    dirty = _git(["diff", "--quiet", "HEAD", *paths], where).returncode != 0
    commit = head.stdout.strip()
    return f"{commit} (with uncommitted changes)" if dirty else commit


def _git(args: list[str], where: Path) -> subprocess.CompletedProcess[str] | None:
    """``git args`` run in ``where`` (``None`` without the git executable)."""
    git = shutil.which("git")
    if git is None:
        return None
    return subprocess.run([git, *args], cwd=where, capture_output=True, text=True, check=False)


def _installed_path(tracked: str, running: Path) -> Path | None:
    """Where the running package holds a checkout's tracked file (``None``: not packaged)."""
    if tracked.startswith("dmi_eval/"):
        return running / tracked.removeprefix("dmi_eval/")
    rest = tracked.removeprefix("analyses/")
    if tracked.startswith("analyses/") and "/" not in rest and rest.endswith(".py"):
        return running / "analyses" / rest  # setuptools maps analyses/ to dmi_eval.analyses
    return None


def code_commit(where: str | Path = ".", *, exclude: str | Path | None = None) -> str | None:
    """The git commit of the dmi_eval code that is running, or ``None``.

    The repository at ``where`` counts only if it is a dmi_eval checkout and
    the running package is either inside it or a copy of it: every tracked
    ``dmi_eval/`` file and top-level ``analyses/*.py`` script has the same
    bytes in the running package (``.py`` and package data; caches and files
    the checkout does not track are ignored). Uncommitted changes are flagged
    as :func:`git_commit` does (``exclude``: the output folder being written).
    """
    running = Path(dmi_eval.__file__).resolve().parent
    shown = _git(["rev-parse", "--show-toplevel"], Path(where))
    if shown is None or shown.returncode != 0:
        return None
    top = Path(shown.stdout.strip()).resolve()
    if running.is_relative_to(top):
        return git_commit(top, exclude=exclude)
    listed = _git(["ls-files", "-z", "--", *PACKAGED], top)
    tracked = [f for f in (listed.stdout.split("\0") if listed else []) if f]
    if not any(f.startswith("dmi_eval/") for f in tracked):
        return None  # not a dmi_eval checkout: a user's own repository
    for name in tracked:
        installed = _installed_path(name, running)
        if installed is None or installed.suffix not in (".py", ".csv"):
            continue
        source = top / name
        if not source.is_file():
            continue  # deleted in the work tree: git_commit reports the change
        if not installed.is_file() or installed.read_bytes() != source.read_bytes():
            return None  # the package that ran is not this checkout's code
    return git_commit(top, exclude=exclude)
