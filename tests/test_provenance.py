"""The reproducibility appendix names the commit of the code that ran, or none -- never another's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import dmi_eval
from dmi_eval.provenance import code_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git executable")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def commit_all(repo: Path) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "x")
    return git(repo, "rev-parse", "HEAD")


def checkout_of_running_package(repo: Path) -> None:
    """A repository laid out as dmi_eval's, holding the running package's own files."""
    running = Path(dmi_eval.__file__).resolve().parent
    for source in running.rglob("*"):
        if source.suffix not in (".py", ".csv") or "__pycache__" in source.parts:
            continue
        rel = source.relative_to(running)
        if rel.parts[0] == "analyses":
            target = repo / "analyses" / Path(*rel.parts[1:])
        else:
            target = repo / "dmi_eval" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    git(folder, "init", "-q")
    return folder


def test_a_users_own_repository_records_no_commit(repo: Path) -> None:
    (repo / "study.toml").write_text("x")
    commit_all(repo)
    # the folder is a git repository, but not of dmi_eval: its commit says nothing of the code
    assert code_commit(repo) is None


def test_a_checkout_with_the_running_code_records_its_commit(repo: Path) -> None:
    checkout_of_running_package(repo)
    head = commit_all(repo)
    assert code_commit(repo) == head
    (repo / "reports").mkdir()
    (repo / "reports" / "README.md").write_text("generated")
    commit_all(repo)
    (repo / "reports" / "README.md").write_text("regenerated")  # reports are not code
    assert code_commit(repo) == git(repo, "rev-parse", "HEAD")


def test_a_checkout_that_differs_from_the_running_code_records_none(repo: Path) -> None:
    checkout_of_running_package(repo)
    edited = repo / "dmi_eval" / "verdict.py"
    edited.write_text(edited.read_text() + "\n# changed after the package was installed\n")
    commit_all(repo)
    assert code_commit(repo) is None


def test_the_commit_follows_the_study_file_not_the_working_folder(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dmi_eval.report import study_commit

    checkout_of_running_package(repo)
    (repo / "data").mkdir()
    (repo / "data" / "study.toml").write_text("x")
    head = commit_all(repo)
    inside = type("S", (), {"path": repo / "data" / "study.toml"})()
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    outside = type("S", (), {"path": elsewhere / "study.toml"})()
    # the same study and code: the same line wherever the command runs
    for cwd in (repo, elsewhere, tmp_path):
        monkeypatch.chdir(cwd)
        assert study_commit(inside, repo / "reports") == head
        assert study_commit(outside, elsewhere / "out") == ""
