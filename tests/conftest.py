"""Shared fixtures: the authors' reference files and an isolated runs folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AUTHORS = ROOT / "tests" / "data" / "authors"
CHECKPOINT = "ckpt-resnet50-authors-random"


def reference_dir() -> Path:
    """Where the large fixtures live: `MLIMAGES_REFERENCE`, default `../shared/ml-images`
    (relative to the repository root), so they need not travel with a clone."""
    folder = Path(os.environ.get("MLIMAGES_REFERENCE", "../shared/ml-images"))
    return folder if folder.is_absolute() else (ROOT / folder).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The authors' small reference files, vendored unchanged in `tests/data/authors/`
    (see its NOTICE.md) so that a clone with nothing beside it passes its tests."""
    assert (AUTHORS / "dictionary_and_semantic_hierarchy.txt").is_file(), (
        f"the vendored reference files are missing from {AUTHORS}"
    )
    return AUTHORS


@pytest.fixture(scope="session")
def authors_checkpoint() -> Path:
    """The authors' ResNet-50 TF1 checkpoint (93 MB, not in the repository): skipped, saying
    where it was looked for, when absent; never skipped when present."""
    folder = reference_dir() / CHECKPOINT
    if not (folder / "model.ckpt.index").is_file():
        pytest.skip(
            f"checkpoint fixture {CHECKPOINT}/ not found at {folder} "
            "(set MLIMAGES_REFERENCE to the folder holding it; README, 'Two commands')"
        )
    return folder


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every run folder at a temporary directory."""
    monkeypatch.setenv("MLIMAGES_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture(scope="module")
def smoke_stages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder holding the smoke profile's download and records stages, once a module."""
    from mlimages.config.params import load_params
    from mlimages.fetch import download
    from mlimages.input import records

    runs = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLIMAGES_RUNS", str(runs))
    params = load_params("smoke")
    download.run_download_stage(params)
    records.run_records_stage(params)
    yield runs
    mp.undo()
