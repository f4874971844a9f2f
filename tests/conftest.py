"""Shared fixtures: the real-data location and one model cache for the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backends import Backend, backend, module_backend, servers  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MODEL_DIR = Path(os.environ.get("VITRINE_TEST_MODEL_DIR", REPO / ".cache" / "models"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "fashion-small" / "styles.csv").is_file():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def model_dir() -> Path:
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    return MODEL_DIR
