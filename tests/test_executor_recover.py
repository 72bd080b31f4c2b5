"""Executors without a cluster: what ``recover`` finds after a restart, how the loop applies it, and
the Ray executor's pure parts (nodes from ``ray.nodes()``, a spec moved onto a node, bad addresses)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import psutil
import pytest

from modelyard.config import Settings
from modelyard.errors import ModelyardError
from modelyard.executors.base import Found
from modelyard.executors.local import LocalExecutor
from modelyard.executors.ray import RayExecutor, node_from_ray
from modelyard.executors.ray_actor import localise
from modelyard.jobs import JobSpec, JobState
from modelyard.jobs.launch import Environment, LaunchSpec
from modelyard.scheduler.launch import LaunchContext
from modelyard.scheduler.loop import SchedulerLoop
from modelyard.db import Database
from modelyard.db import jobs as J
from modelyard.db import users as U


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def placed(db: Database, user: U.User, **spec: object) -> J.Attempt:
    job = J.create_job(db, user=user, spec=JobSpec(command=["true"], **spec), snapshot_key=None)
    result = J.place(db, job.id, token=f"tok-{job.id}", executor="local")
    assert result is not None
    return result[1]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_local_recover_reattaches_requeues_and_loses(db: Database, tmp_path: Path) -> None:
    user = U.create_user(db, "alice")[0]
    unstarted = placed(db, user, retries=1)
    alive, dead = placed(db, user), placed(db, user, retries=1)
    me = psutil.Process()
    J.set_handle(db, alive.id, orjson.dumps({"pid": me.pid, "config": "x", "started": me.create_time()}).decode())
    J.set_handle(db, dead.id, orjson.dumps({"pid": dead_pid(), "config": str(tmp_path / "none")}).decode())
    executor = LocalExecutor(capacity="gpus=0,cpus=2,memory=1G")
    loop = SchedulerLoop(db, executor, None, LaunchContext(settings=Settings.from_env({"MODELYARD_HOME": str(tmp_path)}),
                                                           server_url=None), heartbeat_timeout=60)
    found = {r.attempt.id: r.found for r in executor.recover(J.active_attempts(db))}
    assert found == {unstarted.id: Found.REQUEUE, alive.id: Found.REATTACH, dead.id: Found.LOST}
    loop.recover()
    requeued = J.get_job(db, unstarted.job_id)
    assert requeued.state is JobState.QUEUED and requeued.retries_left == 1  # no retry spent on a launch never made
    assert J.get_attempt(db, unstarted.id).state is JobState.LOST  # type: ignore[union-attr]
    assert J.get_job(db, alive.job_id).state is JobState.STARTING  # found again: it reports on
    retried = J.get_job(db, dead.job_id)
    assert retried.state is JobState.QUEUED and retried.retries_left == 0  # lost: a retry spent
    assert "gone when the server started" in (J.get_attempt(db, dead.id).message or "")  # type: ignore[union-attr]
    assert loop.capacity.total.cpus == 2  # the executor's capacity, not one passed in


def test_ray_nodes_become_nodes_with_labels_from_custom_resources_and_ray_labels() -> None:
    node = node_from_ray({
        "NodeID": "ab" * 28, "Alive": True, "NodeManagerAddress": "10.0.0.7",
        "Resources": {"CPU": 8.0, "GPU": 2.0, "memory": 3e10, "object_store_memory": 1e9, "node:10.0.0.7": 1.0,
                      "accelerator_type:H100": 1.0, "gpu_h100": 1.0, "disk": 0.5},
        "Labels": {"ray.io/node-id": "ab" * 28, "zone": "b"},
    })
    assert node.id == "ab" * 28 and node.address == "10.0.0.7"
    assert (node.total.gpus, node.total.cpus, node.total.memory) == (2, 8.0, 30_000_000_000)
    assert node.labels == {"gpu_h100": "1", "disk": "0.5", "zone": "b"}
    assert [(g.index, g.name) for g in node.gpus] == [(0, "H100"), (1, "H100")]
    assert [g.name for g in node_from_ray({"NodeID": "n", "Resources": {"GPU": 1.0}}).gpus] == ["declared by Ray"]


def test_a_spec_moves_onto_the_nodes_own_disk(tmp_path: Path) -> None:
    server, node = tmp_path / "server", tmp_path / "node"
    spec = LaunchSpec(job_id="7", attempt=2, argv=["true"], run_dir=server / "runs" / "7-2-r1", gpus=[5],
                      dataset_cache=server / "cache" / "datasets", server_file=server / "server.json",
                      environment=Environment(venv_cache=Path("/shared/venvs")))
    moved = localise(spec, node, gpus=[1], parent_pid=os.getpid())
    assert moved.run_dir == node / "runs" / "7-2-r1"
    assert moved.dataset_cache == node / "cache" / "datasets"
    assert moved.environment.venv_cache == Path("/shared/venvs")  # the operator's own folder stays
    assert moved.gpus == [1] and moved.parent_pid == os.getpid() and moved.server_file is None


def test_an_unreachable_cluster_is_a_clear_error_naming_the_setting(tmp_path: Path) -> None:
    settings = Settings.from_env({"MODELYARD_HOME": str(tmp_path), "MODELYARD_EXECUTOR": "ray",
                                  "MODELYARD_RAY_ADDRESS": "127.0.0.1:1"})
    with pytest.raises(ModelyardError) as err:
        RayExecutor(settings)
    assert err.value.field == "MODELYARD_RAY_ADDRESS" and "127.0.0.1:1" in err.value.message


def test_the_server_url_for_nodes_must_be_http(tmp_path: Path) -> None:
    env = {"MODELYARD_HOME": str(tmp_path)}
    assert Settings.from_env({**env, "MODELYARD_SERVER_URL": "http://10.0.0.2:8765/"}).server_url == "http://10.0.0.2:8765"
    with pytest.raises(ModelyardError) as err:
        Settings.from_env({**env, "MODELYARD_SERVER_URL": "10.0.0.2:8765"})
    assert err.value.field == "MODELYARD_SERVER_URL"
