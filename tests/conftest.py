"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = PROJECT_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The public reference datasets (../shared/reference), or skip with the reason."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference datasets not found at {REFERENCE_DIR} (../shared/reference)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session", autouse=True)
def _data_cache_in_a_temporary_folder(tmp_path_factory):
    """Runs of the pipeline cache their data in a fresh folder, never the user's ~/.cache."""
    import os

    from dmi_eval.datacache import CACHE_DIR_ENV

    previous = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(tmp_path_factory.mktemp("data-cache"))
    yield
    if previous is None:
        os.environ.pop(CACHE_DIR_ENV, None)
    else:
        os.environ[CACHE_DIR_ENV] = previous
