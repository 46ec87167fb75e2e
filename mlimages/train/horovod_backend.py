"""The Horovod backend: `horovodrun` (Gloo) launches the workers; `train.run` all-reduces with
`hvd.allreduce` instead of a `tf.distribute` strategy.

Horovod's last release (0.28.1) compiles only against TensorFlow <= 2.13 (Keras 2), so it lives
in its own environment, `.venv-horovod` (`make horovod-env`). This module imports
Horovod only inside the functions that run in a Horovod worker, so the launcher half works from
the main environment too.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlimages.config import layout
from mlimages.train.distributed import WorkerInfo

VENV = Path(__file__).resolve().parents[2] / ".venv-horovod"  # what `make horovod-env` builds
RANK_ENV = "HOROVOD_RANK"  # horovodrun sets it in every worker it starts


def launched_by_horovodrun() -> bool:
    """True in a worker process that horovodrun started (which must not launch again)."""
    return RANK_ENV in os.environ


def horovod_python() -> Path:
    """The interpreter with Horovod: this one if it has Horovod, else `.venv-horovod`'s."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("horovod")  # installed (a folder named horovod is not)
        return Path(sys.executable)
    python = VENV / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(
            f"{python}: no Horovod environment; run `make horovod-env` (Horovod needs "
            "TensorFlow 2.13, see README 'Distributed pretraining')"
        )
    return python


def horovodrun_command(argv: list[str], workers: int, python: Path, log_dir: Path) -> list[str]:
    """`horovodrun` starting `workers` local processes of `python -m mlimages ARGV` over Gloo.

    `-H localhost:N`: all slots on this machine (no ssh); `--output-filename`: each rank's
    stdout/stderr under log_dir/rank.<r>/.
    """
    return [
        str(python.parent / "horovodrun"),
        "-np", str(workers),
        "--gloo",  # no MPI in this build: Gloo does the rendezvous and the collectives
        "-H", f"localhost:{workers}",
        "--output-filename", str(log_dir),
        str(python), "-m", "mlimages", *argv,
    ]  # fmt: skip


def launch(argv: list[str], workers: int, out: Path) -> dict[str, Any]:
    """Run `mlimages ARGV` as `workers` Horovod processes; the chief's result (metrics.json).

    horovodrun stops every worker when one fails, so a failure ends the run rather than
    leaving the others waiting in an all-reduce.
    """
    log_dir = out / "workers"
    log_dir.mkdir(parents=True, exist_ok=True)
    result = out / layout.METRICS_FILE
    result.unlink(missing_ok=True)  # written afresh by rank 0 when it finishes
    command = horovodrun_command(argv, workers, horovod_python(), log_dir)
    with open(log_dir / "horovodrun.log", "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        tail = (log_dir / "horovodrun.log").read_text()[-3000:]
        raise RuntimeError(f"horovodrun with {workers} workers failed ({done.returncode}):\n{tail}")
    return json.loads(result.read_text())


def init():
    """Join the Horovod job (a lone worker when not under horovodrun); the `horovod.tensorflow`
    module, which `train.run` takes as its `hvd`."""
    import horovod.tensorflow as hvd

    hvd.init()
    return hvd


def worker(hvd) -> WorkerInfo:
    """This process's place in the job: Horovod's rank 0 is the chief."""
    return WorkerInfo(hvd.rank(), hvd.size())


def input_context(hvd):
    """The `tf.distribute.InputContext` of this rank: one input pipeline and replica a rank, so
    each worker reads its own shards and its share of the global batch."""
    import tensorflow as tf

    return tf.distribute.InputContext(
        num_input_pipelines=hvd.size(),
        input_pipeline_id=hvd.rank(),
        num_replicas_in_sync=hvd.size(),
    )
