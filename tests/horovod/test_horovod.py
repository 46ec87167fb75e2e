"""The Horovod backend on the smoke profile: two Gloo workers train and checkpoint; kill -9 and
resume. Horovod exists only in `.venv-horovod` (TensorFlow 2.13), so the main `pytest` run does
not collect this folder; `make test-horovod` runs it with that environment's Python."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil  # a dependency of Horovod's own launcher
import pytest

FAST = {
    "pretrain.global_batch": 16,
    "pretrain.image_size": 32,
    "pretrain.log_every": 2,
    "pretrain.eval_every": 0,
    "pretrain.checkpoint_every": 4,
}


def test_this_environment_has_horovod_with_gloo_and_tensorflow() -> None:
    import horovod.tensorflow as hvd  # fails unless Horovod's TensorFlow ops were built
    import tensorflow as tf

    assert hvd.gloo_built() and not hvd.mpi_built()
    assert tf.__version__.startswith("2.13.")  # what Horovod 0.28.1 compiles against


@pytest.fixture(scope="module")
def smoke_runs(smoke_stages: Path) -> Path:
    return smoke_stages


def _cli(out: Path, steps: int) -> list[str]:
    sets = [f"--set={k}={json.dumps(v)}" for k, v in {**FAST, "pretrain.steps": steps}.items()]
    return [
        sys.executable, "-m", "mlimages", "pretrain", "--params", "smoke", *sets,
        "--workers", "2", "--backend", "horovod", "--out", str(out), "--json",
    ]  # fmt: skip


def _env(runs: Path) -> dict[str, str]:
    return {**os.environ, "MLIMAGES_RUNS": str(runs), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _steps_logged(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_two_horovod_workers_train_and_checkpoint(smoke_runs: Path) -> None:
    out = smoke_runs / "hvd-two"
    done = subprocess.run(
        _cli(out, 4), env=_env(smoke_runs), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["workers"] == 2 and result["replicas"] == 2 and result["steps"] == 4
    assert result["resumed_from_step"] == 0 and result["final_loss"] > 0
    assert Path(result["checkpoint"] + ".index").is_file()
    assert Path(result["checkpoint"]).parent == out / "ckpt"
    assert (out / "model.keras").is_file()
    assert _steps_logged(out) == [2, 4]
    assert "backend: horovod" in (out / "params.yaml").read_text()
    # horovodrun wrote each rank's output; both ranks ran.
    assert {p.name for p in (out / "workers").glob("rank.*")} == {"rank.0", "rank.1"}


def _worker(launcher: psutil.Process, rank: int) -> psutil.Process | None:
    """The training process of `rank` under the launcher (horovodrun sets HOROVOD_RANK)."""
    for child in launcher.children(recursive=True):
        try:
            if child.environ().get("HOROVOD_RANK") == str(rank) and "mlimages" in child.cmdline():
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_kill_9_then_resume_finishes_at_the_requested_step(smoke_runs: Path) -> None:
    out = smoke_runs / "hvd-killed"
    launcher = subprocess.Popen(
        _cli(out, 400), env=_env(smoke_runs), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not list((out / "ckpt").glob("ckpt-*.index")):
        assert launcher.poll() is None, launcher.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint within five minutes"
        time.sleep(0.2)
    time.sleep(0.5)
    chief = _worker(psutil.Process(launcher.pid), 0)
    assert chief is not None, "no rank-0 worker under the launcher"
    chief.send_signal(signal.SIGKILL)  # the chief dies mid-run: horovodrun stops rank 1
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode != 0 and b"horovodrun with 2 workers failed" in stderr
    saved = max(int(p.stem.split("-")[1]) for p in (out / "ckpt").glob("ckpt-*.index"))
    assert 0 < saved < 400
    done = subprocess.run(
        _cli(out, saved + 4), env=_env(smoke_runs), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["resumed_from_step"] >= saved and result["steps"] == saved + 4
    assert result["workers"] == 2
    steps = _steps_logged(out)
    assert steps == sorted(set(steps)) and steps[-1] == saved + 4  # no step logged twice
