"""Shared fixtures. Real data comes from $OODML_DATA (default: ../shared/data beside the repo).

Tests that need the data fail, never skip, when it is missing: CI must prove they ran.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("OODML_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def oodml_data() -> Path:
    d = data_dir()
    if not (d / "omniglot" / "images_background_small1.zip").is_file():
        pytest.fail(f"test data missing: set OODML_DATA to the shared data folder (looked in {d})")
    return d


@pytest.fixture(scope="session")
def omniglot_zip(oodml_data: Path) -> Path:
    return oodml_data / "omniglot" / "images_background_small1.zip"
