"""Stage fingerprints: a run folder is reused only for the values that made it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlimages.config import fingerprint


def _run(folder: Path) -> None:
    (folder / "ckpt").mkdir(parents=True)
    (folder / "model.keras").write_text("weights")
    (folder / "launch.log").write_text("log")


def test_same_values_keep_the_run_and_changed_ones_start_afresh(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "seed0"
    values = {"finetune": {"lr": 0.1, "decay_at": (0.5, 0.75)}, "seed": 0}
    assert fingerprint.prepare(folder, values, "run") is False
    assert json.loads((folder / fingerprint.FILE).read_text())["finetune.lr"] == 0.1
    _run(folder)
    assert fingerprint.prepare(folder, values, "run") is False
    assert (folder / "model.keras").is_file()  # same values: resumed or reused
    changed = {**values, "finetune": {"lr": 0.01, "decay_at": (0.5, 0.75)}}
    assert fingerprint.prepare(folder, changed, "ckpt 1 seed 0") is True
    err = capsys.readouterr().err
    assert "ckpt 1 seed 0: parameters or inputs changed (finetune.lr: 0.1 -> 0.01)" in err
    assert not (folder / "model.keras").exists() and not (folder / "ckpt").exists()
    assert (folder / "launch.log").is_file()  # the launcher's log is not the run's
    assert json.loads((folder / fingerprint.FILE).read_text())["finetune.lr"] == 0.01


def test_a_run_from_before_fingerprints_is_not_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "pretrain"
    _run(folder)
    assert fingerprint.prepare(folder, {"seed": 1}, "pretrain") is True
    assert "a run without a fingerprint" in capsys.readouterr().err
    assert not (folder / "model.keras").exists()


def test_an_upstream_run_is_named_by_its_fingerprint(tmp_path: Path) -> None:
    model = tmp_path / "pretrain" / "model.keras"
    fingerprint.prepare(model.parent, {"seed": 0}, "pretrain")
    model.write_text("weights")
    first = fingerprint.file_digest(model)
    fingerprint.prepare(model.parent, {"seed": 1}, "pretrain")
    assert fingerprint.file_digest(model) != first  # a new pretraining: downstream is stale
    assert fingerprint.file_digest(tmp_path / "absent.keras") == "missing"


def test_a_longer_upstream_run_makes_downstream_stale(tmp_path: Path) -> None:
    model = tmp_path / "pretrain" / "model.keras"
    fingerprint.prepare(model.parent, {"seed": 0}, "pretrain")
    (model.parent / "metrics.json").write_text(json.dumps({"steps": 100}))
    shorter = fingerprint.file_digest(model)
    (model.parent / "metrics.json").write_text(json.dumps({"steps": 200}))
    assert fingerprint.file_digest(model) != shorter
