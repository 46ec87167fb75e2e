"""benchmarks/train_step.py's GPU mode, rehearsed on the CPU.

No GPU is lent to most sessions, so the settings the GPU measurement depends on (mixed
float16, loss scaling, XLA, the batch placed on the step's device) are run here at a tiny
size: a GPU session then spends its minutes measuring, not debugging.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"


@pytest.mark.slow  # two XLA compilations of a ResNet-101 training step: ~3 min on 2 cores
def test_gpu_mode_rehearsal_runs_both_models(tmp_path: Path) -> None:
    out = tmp_path / "train_step.json"
    args = ["--gpu", "--rehearse", "--batch", "2", "--image-size", "32", "--steps", "1"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--warmup", "1", "--out-json", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (result["mode"], result["dtype_policy"], result["xla"]) == ("gpu", "mixed_float16", True)
    assert result["goal_met"] is None
    ours = result["models"]["ours_resnet101"]
    reference = result["models"]["keras_applications_resnet101"]
    assert ours["params"] == 44_545_192  # ResNet-101, 1,000 classes
    for model in (ours, reference):
        assert model["step_flops"] > 1e9 and model["conv_matmul_share"] > 0.95
        assert model["images_per_s"] > 0


def test_rehearsal_needs_gpu_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rehearse"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2
    assert "--rehearse goes with --gpu" in done.stderr
