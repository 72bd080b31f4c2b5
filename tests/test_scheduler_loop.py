"""The scheduler loop over nodes: what the policy places is what the store records and the executor gets.

Real store (SQLite and PostgreSQL), a real SchedulerLoop and its QueueView; the
executor is a spy that records each launch and starts nothing.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.config import Settings
from modelyard.executors.base import Launch
from modelyard.executors.capacity import Capacity, GpuInfo, Node
from modelyard.jobs import JobSpec, Resources
from modelyard.jobs.nodes import NodeSlice
from modelyard.scheduler.launch import LaunchContext
from modelyard.scheduler.loop import SchedulerLoop
from modelyard.db import Database
from modelyard.db import jobs as J
from modelyard.db import users as U

NOW = 1_000_000.0


class SpyExecutor:
    name = "local"

    def __init__(self) -> None:
        self.launches: list[Launch] = []

    def start(self, launch: Launch) -> str:
        self.launches.append(launch)
        return '{"pid": 0, "config": ""}'

    def cancel(self, attempt: Any) -> None:
        pass

    def kill(self, attempt: Any) -> bool:
        return True

    def alive(self, attempt: Any) -> bool | None:
        return None


def node(id: str, gpus: int, **labels: str) -> Node:
    return Node(id, Resources(gpus=gpus, cpus=16, memory=64 * 2**30),
                tuple(GpuInfo(i, "test", None, 0) for i in range(gpus)), labels, address=f"10.0.0.{id[-1]}")


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def loop(db: Database, tmp_path: Path) -> tuple[SchedulerLoop, SpyExecutor]:
    cap = Capacity((node("n1", 4, gpu="h100"), node("n2", 4, gpu="h100"), node("n3", 4, gpu="a100")))
    spy = SpyExecutor()
    ctx = LaunchContext(settings=Settings.from_env({"MODELYARD_HOME": str(tmp_path)}), server_url=None)
    return SchedulerLoop(db, spy, cap, ctx, heartbeat_timeout=1e9, clock=lambda: NOW), spy


def submit(db: Database, user: U.User, **spec: Any) -> J.Job:
    return J.create_job(db, user=user, spec=JobSpec(command=["true"], **spec), snapshot_key=None)


def slices_of(db: Database, job: J.Job) -> tuple[NodeSlice, ...]:
    attempt = J.get_job(db, job.id)
    (alloc,) = [a for a in J.running_allocations(db) if a.job_id == attempt.id]
    return alloc.slices


def test_the_loop_places_multi_node_and_labelled_jobs_on_the_nodes_the_policy_chose(
    db: Database, loop: tuple[SchedulerLoop, SpyExecutor],
) -> None:
    scheduler, spy = loop
    user = U.create_user(db, "ann")[0]
    wide = submit(db, user, nodes=2, resources={"gpus": 4}, node_labels={"gpu": "h100"})
    small = submit(db, user, resources={"gpus": 1}, node_labels=["gpu=a100"])
    scheduler.tick(NOW)  # the first pass reads the whole queue (store_jobs.queued_jobs)
    assert {s.node for s in slices_of(db, wide)} == {"n1", "n2"}
    assert all(s.gpus == (0, 1, 2, 3) for s in slices_of(db, wide))
    assert slices_of(db, small) == (NodeSlice("n3", (0,), (0,)),)
    assert {launch.spec.job_id for launch in spy.launches} == {str(wide.id), str(small.id)}

    # later jobs come through the events (QueueView's incremental path, from each job's spec)
    blocked = submit(db, user, resources={"gpus": 1}, node_labels={"gpu": "h100"})  # both h100 nodes are full
    fits = submit(db, user, resources={"gpus": 3}, node_labels={"gpu": "a100"})
    scheduler.tick(NOW + 1)
    assert J.get_job(db, blocked.id).state.value == "queued"
    assert slices_of(db, fits) == (NodeSlice("n3", (1, 2, 3), (1,)),)


def test_the_queue_view_says_per_node_why_jobs_wait_and_the_page_lists_the_nodes(
    db: Database, loop: tuple[SchedulerLoop, SpyExecutor],
) -> None:
    from types import SimpleNamespace

    from modelyard.services.queue import queue_view
    from modelyard.server.web.render import templates

    scheduler, _ = loop
    user = U.create_user(db, "ann", admin=True)[0]
    running = submit(db, user, resources={"gpus": 2})
    scheduler.tick(NOW)  # three empty nodes are equally full: the first
    assert [s.node for s in slices_of(db, running)] == ["n1"]
    big = submit(db, user, resources={"gpus": 4}, node_labels={"gpu": "a100"}, priority=5)
    pair = submit(db, user, nodes=2, resources={"gpus": 3}, node_labels={"gpu": "h100"})
    filler = submit(db, user, resources={"gpus": 1}, node_labels={"gpu": "a100"}, priority=9)  # 1 of n3's 4
    scheduler.tick(NOW + 1)
    assert [s.node for s in slices_of(db, filler)] == ["n3"]
    view = queue_view(SimpleNamespace(db=db, capacity=scheduler.capacity, settings=scheduler.ctx.settings), user,
                      now=NOW + 2)  # type: ignore[arg-type]
    why = {w["id"]: w for w in view["waiting"]}
    assert why[big.id]["reason"] == "waits for gpus: asks 4, 3 free on one node"
    assert why[pair.id]["reason"] == "waits for 2 nodes: 1 can hold a rank now"
    assert (why[pair.id]["nodes"], why[pair.id]["waits_for"]) == (2, ["nodes"])
    nodes = {n["id"]: n for n in view["capacity"]["nodes"]}
    assert nodes["n1"]["gpus_used"] == [0, 1] and nodes["n3"]["used"]["gpus"] == 1
    assert nodes["n2"]["labels"] == {"gpu": "h100"} and nodes["n2"]["jobs"] == 0
    page = templates().get_template("_queue.html").render(**view)
    assert 'id="nodes"' in page and "gpu=h100" in page and "2 nodes × 3 GPU" in page
