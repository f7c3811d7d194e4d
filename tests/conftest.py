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
