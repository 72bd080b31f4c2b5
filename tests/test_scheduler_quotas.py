"""Two users sharing a machine through the real loop and store: quotas hold jobs back with the reason,
fair share hands the next free GPU to the less used user, the users service counts what each uses.

SQLite and PostgreSQL; a spy executor (as in test_scheduler_loop) starts nothing.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_scheduler_loop import SpyExecutor

from modelyard.config import Settings
from modelyard.executors.capacity import Capacity, GpuInfo, Node
from modelyard.jobs import JobSpec, JobState, Resources, TerminationReason
from modelyard.scheduler.launch import LaunchContext
from modelyard.scheduler.loop import SchedulerLoop
from modelyard.services.queue import queue_view, waiting_reason
from modelyard.services.users import Users
from modelyard.db import Database
from modelyard.db import jobs as J
from modelyard.db import quotas as Q
from modelyard.db import users as U

NOW = 1_000_000.0
HOUR = 3600.0


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def world(db: Database, tmp_path: Path) -> SimpleNamespace:
    cap = Capacity((Node("n1", Resources(gpus=4, cpus=16, memory=0), tuple(GpuInfo(i, "t", None, 0) for i in range(4)),
                         {}),))
    settings = Settings.from_env({"MODELYARD_HOME": str(tmp_path)})
    clock = SimpleNamespace(now=NOW)
    loop = SchedulerLoop(db, SpyExecutor(), cap, LaunchContext(settings=settings, server_url=None),
                         heartbeat_timeout=1e9, clock=lambda: clock.now)
    admin = U.create_user(db, "root", admin=True)[0]
    return SimpleNamespace(db=db, loop=loop, clock=clock, settings=settings, admin=admin,
                           alice=U.create_user(db, "alice")[0], bob=U.create_user(db, "bob")[0])


def submit(db: Database, user: U.User, gpus: int = 1, **spec: Any) -> J.Job:
    return J.create_job(db, user=user, spec=JobSpec(command=["true"], resources={"gpus": gpus, "cpus": 1}, **spec),
                        snapshot_key=None)


def state(db: Database, job: J.Job) -> JobState:
    return J.get_job(db, job.id).state


def run_all(db: Database, now: float) -> None:
    """Every placed attempt's command starts (as its supervisor would report)."""
    for a in J.active_attempts(db):
        if a.state is JobState.STARTING:
            with db.write() as conn:
                J.mark_running(conn, a, now=now)


def test_a_user_at_their_gpu_quota_waits_with_the_reason_while_another_starts(world: SimpleNamespace) -> None:
    db, loop = world.db, world.loop
    Q.set_quota(db, "alice", {"gpus": 2})
    mine = [submit(db, world.alice) for _ in range(3)]
    theirs = submit(db, world.bob)
    loop.tick(NOW)
    assert [state(db, j) for j in mine] == [JobState.STARTING, JobState.STARTING, JobState.QUEUED]
    assert state(db, theirs) is JobState.STARTING
    p = SimpleNamespace(db=db, capacity=loop.capacity, settings=world.settings)
    view = queue_view(p, world.admin, now=NOW)  # type: ignore[arg-type]
    (waiting,) = view["waiting"]
    assert waiting["id"] == mine[2].id and waiting["waits_for"] == ["quota"]
    assert waiting["reason"] == "waits: alice uses 2 of their 2 GPUs (quota)"
    assert waiting_reason(p, world.alice, mine[2].id, now=NOW)["reason"] == waiting["reason"]  # type: ignore[arg-type]
    assert waiting_reason(p, world.alice, mine[0].id, now=NOW) is None  # type: ignore[arg-type]
    # alice sees her own name; bob sees neither the job nor whose it is
    assert "alice uses 2" in queue_view(p, world.alice, now=NOW)["waiting"][0]["reason"]  # type: ignore[arg-type]
    bobs = queue_view(p, world.bob, now=NOW)["waiting"][0]  # type: ignore[arg-type]
    assert bobs["id"] is None and "alice" not in bobs["reason"]

    # the users service counts it: 2 GPUs held of 2, one queued
    accounts = {a.name: a for a in Users(db, world.settings).accounts(world.admin, now=NOW)}
    assert (accounts["alice"].usage.gpus, accounts["alice"].usage.queued, accounts["alice"].quota.gpus) == (2, 1, 2)
    assert accounts["bob"].usage.gpus == 1

    # a raised quota lets the job start on the next pass
    Q.set_quota(db, "alice", {"gpus": 3})
    loop.tick(NOW + 1)
    assert state(db, mine[2]) is JobState.STARTING


def test_the_next_free_gpu_goes_to_the_less_used_user(world: SimpleNamespace) -> None:
    db, loop = world.db, world.loop
    loop.FAIRSHARE_EVERY = 0  # read usage on every pass here
    hogs = [submit(db, world.alice) for _ in range(4)]
    loop.tick(NOW)
    run_all(db, NOW)
    assert all(state(db, j) is JobState.STARTING or state(db, j) is JobState.RUNNING for j in hogs)
    backlog = [submit(db, world.alice) for _ in range(20)]  # queued before bob's
    late = submit(db, world.bob)
    world.clock.now = NOW + 2 * HOUR
    first = J.active_attempts(db)[0]
    J.end_attempt(db, first, TerminationReason.EXIT_NONZERO, exit_code=0, now=NOW + 2 * HOUR)
    loop.tick(NOW + 2 * HOUR)
    assert state(db, late) is JobState.STARTING, "bob used nothing: his job takes the free GPU"
    assert all(state(db, j) is JobState.QUEUED for j in backlog)
    usage = loop.fair_usage(NOW + 2 * HOUR)
    assert usage[str(world.alice.id)] == pytest.approx(8.0, rel=0.01)  # 4 GPUs x 2 h


def test_the_queue_view_says_a_job_waits_behind_a_less_used_users(world: SimpleNamespace) -> None:
    db, loop = world.db, world.loop
    for j in [submit(db, world.alice) for _ in range(4)]:
        assert j
    loop.tick(NOW)
    run_all(db, NOW)
    world.clock.now = NOW + 3 * HOUR
    mine = submit(db, world.alice)
    theirs = submit(db, world.bob)
    p = SimpleNamespace(db=db, capacity=loop.capacity, settings=world.settings)
    view = {w["id"]: w for w in queue_view(p, world.admin, now=NOW + 3 * HOUR)["waiting"]}  # type: ignore[arg-type]
    assert view[theirs.id]["position"] == 1 and view[mine.id]["position"] == 2
    assert view[mine.id]["reason"].startswith("waits for gpus: asks 1, 0 free; behind bob's jobs (fair share): "
                                              "alice used 11.9 GPU-h recently (half-life 7d), bob 0.0")
    assert view[theirs.id]["reason"] == "waits for gpus: asks 1, 0 free"


def test_set_admin_keeps_the_last_admin(world: SimpleNamespace) -> None:
    from modelyard.errors import ModelyardError

    with pytest.raises(ModelyardError, match="only admin"):
        Q.set_admin(world.db, "root", False)
    assert Q.set_admin(world.db, "alice", True).is_admin
    assert not Q.set_admin(world.db, "root", False).is_admin
