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


@pytest.fixture(scope="module")
def smoke_stages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder holding the smoke profile's download and records stages, once a module."""
    from mlimages import download, records
    from mlimages.params import load_params

    runs = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLIMAGES_RUNS", str(runs))
    params = load_params("smoke")
    download.run_download_stage(params)
    records.run_records_stage(params)
    yield runs
    mp.undo()
