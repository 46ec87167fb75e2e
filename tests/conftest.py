"""Shared fixtures: the authors' reference files and an isolated runs folder."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "ml-images"


@pytest.fixture(scope="session")
def shared() -> Path:
    """`../shared/ml-images/`: read from there, never copied into the repository."""
    assert SHARED.is_dir(), f"the authors' reference files are expected at {SHARED}"
    return SHARED


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every run folder at a temporary directory."""
    monkeypatch.setenv("MLIMAGES_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"
