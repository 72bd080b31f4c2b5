"""Test helper: a real Ray cluster on this machine (``ray.cluster_utils.Cluster``), one per module.

A head and a "GPU node" (two raylets): the GPU node declares ``num_gpus=2`` (no
GPU is needed: Ray counts what is declared) and a custom resource ``gpu_h100: 1``
(a label ``gpu_h100=1`` to modelyard). The raylets take the environment as it is
when the cluster starts, so ``env`` (S3 credentials, MODELYARD_HOME of the
nodes) is set first and restored afterwards. Node death is fast to notice
(health checks every 0.5 s), as the node-death test needs.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psutil

from conftest import wait_for

HEAD_CPUS = 2
GPU_NODE = {"num_cpus": 2, "num_gpus": 2, "resources": {"gpu_h100": 1}}
# a node death is noticed after period x threshold: 1.5 s, not Ray's default 15 s
SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}


@dataclass
class RayCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    gpu_node: Any  # its ray._private.node.Node (None: a cluster of the head alone)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    @property
    def gpu_node_id(self) -> str:
        return str(self.gpu_node.node_id)

    def add_node(self, **kwargs: Any) -> Any:
        node = self.cluster.add_node(**kwargs)
        self.cluster.wait_for_nodes()
        return node

    def kill_node(self, node: Any) -> None:
        """The node's Ray dies: its raylet SIGKILLed. Its workers (the actors) notice and exit; what
        they started must end by itself (the supervisor watches its actor)."""
        self.cluster.remove_node(node, allow_graceful=False)


def _raylets(session_dir: str) -> set[int]:
    """This cluster's raylets (their sockets are in its session folder): not another cluster's on the machine."""
    return {p.pid for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "raylet" and any(session_dir in a for a in p.info["cmdline"] or ())}


@contextmanager
def ray_cluster(env: Mapping[str, str], *, gpu_node: bool = True) -> Iterator[RayCluster]:
    """The cluster; without ``gpu_node`` the head alone (a raylet fewer to start, for a test that needs no second node)."""
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": HEAD_CPUS, "_system_config": SYSTEM_CONFIG})
    session_dir = cluster.head_node.get_session_dir_path()
    try:
        gpu = cluster.add_node(**GPU_NODE) if gpu_node else None
        cluster.wait_for_nodes()
        yield RayCluster(cluster, gpu)
    finally:
        cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        wait_for(lambda: not _raylets(session_dir), 30, what="the cluster's raylets to be gone")
