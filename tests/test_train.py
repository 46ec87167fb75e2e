"""The training engine on the smoke profile: determinism, local workers, kill -9 and resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlimages.config.params import load_params

FAST = {
    "pretrain.global_batch": 16,
    "pretrain.image_size": 32,
    "pretrain.log_every": 2,
    "pretrain.eval_every": 0,
    "pretrain.checkpoint_every": 4,
}


@pytest.fixture(scope="module")
def smoke_runs(smoke_stages: Path) -> Path:
    return smoke_stages


def _cli(runs: Path, *args: str, **overrides) -> list[str]:
    sets = [f"--set={k}={json.dumps(v)}" for k, v in {**FAST, **overrides}.items()]
    return [
        sys.executable,
        "-m",
        "mlimages",
        "pretrain",
        "--params",
        "smoke",
        *sets,
        *args,
        "--json",
    ]


def _env(runs: Path) -> dict[str, str]:
    return {**os.environ, "MLIMAGES_RUNS": str(runs), "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_same_seed_same_run(smoke_runs: Path) -> None:
    from mlimages.train.pretrain import run_pretrain_stage

    params = load_params("smoke", {**FAST, "pretrain.steps": 6})
    first = run_pretrain_stage(params, smoke_runs / "det-a")
    second = run_pretrain_stage(params, smoke_runs / "det-b")
    assert first["steps"] == second["steps"] == 6 and first["resumed_from_step"] == 0
    assert first["final_loss"] == second["final_loss"]
    log = [
        json.loads(line) for line in (smoke_runs / "det-a" / "log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in log] == [2, 4, 6]
    assert {"loss", "learning_rate", "images_per_sec", "weight_decay"} <= set(log[0])
    assert (smoke_runs / "det-a" / "tensorboard").is_dir()
    metrics = json.loads((smoke_runs / "det-a" / "metrics.json").read_text())
    assert metrics["checkpoint"].endswith("ckpt-6")


def test_kill_then_resume_finishes_at_the_requested_step(smoke_runs: Path) -> None:
    out = smoke_runs / "killed"
    argv = _cli(smoke_runs, "--out", str(out), **{"pretrain.steps": 400})
    process = subprocess.Popen(
        argv, env=_env(smoke_runs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not list((out / "ckpt").glob("ckpt-*.index")):
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within two minutes"
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = max(int(p.stem.split("-")[1]) for p in (out / "ckpt").glob("ckpt-*.index"))
    assert 0 < saved < 400
    done = subprocess.run(
        _cli(smoke_runs, "--out", str(out), **{"pretrain.steps": saved + 4}),
        env=_env(smoke_runs), capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert result["resumed_from_step"] >= saved and result["steps"] == saved + 4
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == saved + 4  # no step logged twice


def test_two_local_workers_train_and_checkpoint(smoke_runs: Path) -> None:
    out = smoke_runs / "two-workers"
    done = subprocess.run(
        _cli(smoke_runs, "--out", str(out), "--workers", "2", **{"pretrain.steps": 4}),
        env=_env(smoke_runs), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["workers"] == 2 and result["replicas"] == 2 and result["steps"] == 4
    assert Path(result["checkpoint"] + ".index").is_file()
    assert (out / "workers" / "worker-1.log").is_file()
    assert not list(out.glob("ckpt-*")), "only the chief keeps checkpoints"


@pytest.mark.parametrize(
    "loss",
    [
        {"loss.kind": "sigmoid"},
        {"loss.kind": "weighted"},
        {"loss.kind": "asl"},
        {"loss.counters": "replica"},
    ],
    ids=["sigmoid", "weighted", "asl", "adaptive-replica-counters"],
)
def test_each_loss_kind_trains_to_a_finite_loss(smoke_runs: Path, loss: dict) -> None:
    """The ablation's variants run through the engine; only the adaptive loss logs streaks."""
    from mlimages.train.pretrain import run_pretrain_stage

    out = smoke_runs / ("loss-" + "-".join(str(v) for v in loss.values()))
    result = run_pretrain_stage(load_params("smoke", {**FAST, **loss, "pretrain.steps": 6}), out)
    assert result["steps"] == 6 and math.isfinite(result["final_loss"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in log)
    assert ("positive_classes" in log[-1]) == ("loss.counters" in loss)
    if "loss.kind" in loss:  # notebook 04's figure says there are no coefficients
        from mlimages.report.training import plot_coefficients

        assert "no adaptive coefficients" in plot_coefficients(out).axes[0].texts[0].get_text()
