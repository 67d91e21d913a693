"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SP500_DIR = REPO_ROOT.parent / "shared" / "data" / "sp500"


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test inside an empty working directory (so ./finetune_config.json is not picked up)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def sp500_dir() -> Path:
    """The public S&P 500 reference files beside the repository (skips the test when absent)."""
    if not (SP500_DIR / "constituents-financials.csv").is_file():
        pytest.skip(f"S&P 500 reference data not found at {SP500_DIR}")
    return SP500_DIR


# ---------------------------------------------------------------------------------------- Ollama stand-in

from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402


@pytest.fixture
def ollama_server() -> Iterator[Any]:
    """A stand-in Ollama HTTP API on a local port (``tests/ollama_stub.py``); yields its ``OllamaStub`` state,
    whose ``host`` is the base URL to pass to the code under test."""
    from ollama_stub import RunningStub

    running = RunningStub()
    try:
        yield running.stub
    finally:
        running.stop()
