"""The Horovod backend's launcher half, which needs no Horovod: the horovodrun command line and
what `mlimages pretrain --backend horovod --workers N` hands it. Training under Horovod is
tested in tests/horovod/ with `.venv-horovod` (`make test-horovod`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlimages import cli
from mlimages.config.params import ParamsError, load_params
from mlimages.train import horovod_backend


def test_horovodrun_command_starts_n_local_gloo_workers() -> None:
    python = Path("/env/bin/python")
    command = horovod_backend.horovodrun_command(
        ["pretrain", "--params", "smoke"], 3, python, Path("/run/workers")
    )
    assert command == [
        "/env/bin/horovodrun", "-np", "3", "--gloo", "-H", "localhost:3",
        "--output-filename", "/run/workers",
        "/env/bin/python", "-m", "mlimages", "pretrain", "--params", "smoke",
    ]  # fmt: skip


def test_pretrain_backend_horovod_launches_horovodrun(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(horovod_backend.RANK_ENV, raising=False)
    calls = []

    def fake_launch(argv: list[str], workers: int, out: Path) -> dict:
        calls.append((argv, workers, out))
        return {"steps": 4, "workers": workers}

    monkeypatch.setattr(horovod_backend, "launch", fake_launch)
    out = tmp_path / "run"
    code = cli.main(
        ["pretrain", "--params", "smoke", "--workers", "2", "--backend", "horovod",
         "--set", "pretrain.steps=4", "--out", str(out), "--json"]
    )  # fmt: skip
    assert code == 0
    [(argv, workers, launched_out)] = calls
    assert workers == 2 and launched_out == out
    # The workers get the same profile, overrides and backend, and know the worker count.
    assert argv[:2] == ["pretrain", "--params"] and "--workers" in argv
    assert 'pretrain.backend="horovod"' in argv and "pretrain.steps=4" in argv


def test_a_worker_started_by_horovodrun_trains_instead_of_launching(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlimages.train import pretrain

    monkeypatch.setenv(horovod_backend.RANK_ENV, "1")
    monkeypatch.setattr(horovod_backend, "launch", lambda *a: pytest.fail("launched again"))
    trained = []
    monkeypatch.setattr(
        pretrain, "run_pretrain_stage", lambda params, out: trained.append(params) or {"steps": 4}
    )
    code = cli.main(
        ["pretrain", "--params", "smoke", "--workers", "2", "--backend", "horovod",
         "--out", str(tmp_path / "run"), "--json"]
    )  # fmt: skip
    assert code == 0
    [params] = trained
    assert params.pretrain.backend == "horovod"


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ParamsError, match="backend"):
        load_params("smoke", {"pretrain.backend": "mpi"})
