"""Choosing and starting the distributed engine: TensorFlow's own strategies.

One process per worker (`MultiWorkerMirroredStrategy`, cluster from `TF_CONFIG` or SLURM),
one process per multi-GPU node (`MirroredStrategy`), or the default single-device strategy.
`--workers N` on one machine starts N worker processes on loopback with their `TF_CONFIG`s:
the same code path as a multi-node cluster, testable on a laptop.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

StrategyKind = Literal["auto", "default", "mirrored", "multiworker"]
WORKER_ENV = "MLIMAGES_WORKER"  # set in local worker processes so they do not launch again


@dataclass(frozen=True)
class WorkerInfo:
    """Who this process is in the cluster; only the chief writes checkpoints and logs."""

    index: int
    count: int

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def cluster_from_environment() -> WorkerInfo:
    """TF_CONFIG's task, SLURM's task ids, or a lone worker."""
    if "TF_CONFIG" in os.environ:
        config = json.loads(os.environ["TF_CONFIG"])
        workers = config.get("cluster", {}).get("worker", [])
        task = config.get("task", {})
        if task.get("type") not in (None, "worker"):
            raise ValueError(f"TF_CONFIG task type {task.get('type')!r}; expected 'worker'")
        return WorkerInfo(int(task.get("index", 0)), max(1, len(workers)))
    if "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return WorkerInfo(int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"]))
    return WorkerInfo(0, 1)


def make_strategy(kind: StrategyKind = "auto"):
    """The strategy for this process. `auto`: multi-worker when a cluster is described,
    mirrored over all GPUs when there are several, else the default strategy."""
    import tensorflow as tf

    worker = cluster_from_environment()
    if kind == "auto":
        if worker.count > 1:
            kind = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multiworker":
        # Collective all-reduce across processes; SLURM's resolver when SLURM started us.
        resolver = None
        if "TF_CONFIG" not in os.environ and "SLURM_PROCID" in os.environ:
            resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()  # all local GPUs (or the CPU), one process
    return tf.distribute.get_strategy()


def free_ports(count: int) -> list[int]:
    """Ports the OS considers free now; bound together so they are distinct."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def local_tf_configs(count: int) -> list[str]:
    """TF_CONFIG for each of `count` workers on loopback."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(count)]
    return [
        json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
        for i in range(count)
    ]


def launch_local_workers(argv: list[str], count: int, log_dir: Path) -> subprocess.CompletedProcess:
    """Run `python -m mlimages ARGV` as `count` workers; return the chief's result.

    Non-chief output goes to log_dir/worker-<i>.log; if any worker fails, all are stopped
    (a collective all-reduce would otherwise wait for the dead worker forever).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []
    logs = []
    for index, tf_config in enumerate(local_tf_configs(count)):
        env = {**os.environ, "TF_CONFIG": tf_config, WORKER_ENV: str(index)}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if index == 0:
            out = tempfile.TemporaryFile(mode="w+")  # the chief's stdout is the result
            err = None
        else:
            out = err = open(log_dir / f"worker-{index}.log", "w")  # noqa: SIM115 (closed below)
        logs.append(out)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "mlimages", *argv],
                env=env,
                stdout=out,
                stderr=err,
                text=True,
            )
        )
    try:
        while any(p.poll() is None for p in processes):
            if any(p.returncode not in (None, 0) for p in processes):
                break
            time.sleep(0.2)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    logs[0].seek(0)
    stdout = logs[0].read()
    for log in logs:
        log.close()
    failed = [i for i, p in enumerate(processes) if p.returncode != 0]
    code = processes[failed[0]].returncode if failed else 0
    if failed and failed[0] != 0:
        stdout += f"\nworker {failed[0]} failed; see {log_dir / f'worker-{failed[0]}.log'}"
    return subprocess.CompletedProcess(argv, code, stdout, None)
