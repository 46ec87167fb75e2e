"""Cluster descriptions: TF_CONFIG, SLURM, and local loopback workers."""

from __future__ import annotations

import json

import pytest

from mlimages.train.distributed import cluster_from_environment, free_ports, local_tf_configs


def test_lone_worker_without_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TF_CONFIG", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    info = cluster_from_environment()
    assert (info.index, info.count, info.is_chief) == (0, 1, True)


def test_tf_config_and_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    info = cluster_from_environment()
    assert (info.index, info.count, info.is_chief) == (2, 4, False)
    configs = local_tf_configs(3)
    monkeypatch.setenv("TF_CONFIG", configs[1])
    assert (cluster_from_environment().index, cluster_from_environment().count) == (1, 3)
    hosts = [json.loads(c)["cluster"]["worker"] for c in configs]
    assert all(h == hosts[0] for h in hosts) and len(set(hosts[0])) == 3
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {}, "task": {"type": "ps", "index": 0}}))
    with pytest.raises(ValueError, match="task type 'ps'; expected 'worker'"):
        cluster_from_environment()


def test_free_ports_are_distinct() -> None:
    ports = free_ports(4)
    assert len(set(ports)) == 4 and all(p > 0 for p in ports)
