"""A multi-node attempt's node ranks, without Ray: two report streams against the real store
(SQLite and PostgreSQL), the scheduler loop's silent-rank check, and the in-process API.

Rank 0 reports on the attempt row, rank 1 on its own (db/ranks.py); the whole job is one
attempt: a rank's failure or silence ends it for every rank, naming the rank and node."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelyard.config import Settings
from modelyard.executors.base import Launch
from modelyard.executors.capacity import Capacity
from modelyard.jobs import JobSpec, JobState, Resources
from modelyard.jobs.nodes import NodeSlice
from modelyard.scheduler.launch import LaunchContext, build_launch
from modelyard.scheduler.loop import SchedulerLoop
from modelyard.server.app import create_app, ensure_local_user
from modelyard.server.platform import Platform
from modelyard.db import Database
from modelyard.db import jobs as J
from modelyard.db import ranks as RK
from modelyard.db import reports as R
from modelyard.db import users as U
from modelyard.db.records import Attempt

NODES = (NodeSlice("node-a", (0,), (0, 1)), NodeSlice("node-b", (1,), (2, 3)))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def alice(db: Database) -> U.User:
    return U.create_user(db, "alice")[0]


def placed(db: Database, user: U.User, *, executor: str = "local", now: float | None = None,
           **spec: object) -> Attempt:
    """A two-node job placed on node-a and node-b; both ranks' commands started."""
    job = J.create_job(db, user=user, spec=JobSpec(command=["true"], nodes=2, **spec), snapshot_key=None)
    got = J.place(db, job.id, token=f"tok-{job.id}", executor=executor, slices=NODES, now=now)
    assert got is not None
    attempt = got[1]
    R.apply_report(db, attempt, {"seq": 1, "events": [{"type": "started", "t": 1.0}]}, now=now)
    R.apply_report(db, attempt, {"seq": 1, "rank": 1, "events": [{"type": "started", "t": 1.0}]}, now=now)
    return attempt


def exited(seq: int, code: int, *, rank: int = 0, reason: str | None = None) -> dict[str, object]:
    reason = reason or ("exit_zero" if code == 0 else "exit_nonzero")
    return {"seq": seq, "rank": rank, "final": True, "logs": [[5.0, "stderr", f"rank {rank} ends"]],
            "events": [{"type": "exited", "exit_code": code, "reason": reason,
                        **({"message": f"the command exited with code {code}"} if code else {})}]}


def test_each_rank_has_its_own_seq_stream(db: Database, alice: U.User) -> None:
    a = placed(db, alice)
    assert [(r.rank, r.node, r.state, r.last_seq) for r in RK.ranks_of(db, a.id)] == [(1, "node-b", "running", 1)]
    # rank 1's numbers do not move rank 0's, nor the other way round
    assert R.apply_report(db, a, {"seq": 2, "rank": 1, "logs": [[2.0, "stdout", "b2"]]}).stored
    assert R.apply_report(db, a, {"seq": 2, "logs": [[2.0, "stdout", "a2"]]}).stored
    assert not R.apply_report(db, a, {"seq": 2, "rank": 1, "logs": [[2.0, "stdout", "b2 again"]]}).stored
    with pytest.raises(R.SeqGap) as gap:
        R.apply_report(db, a, {"seq": 5, "rank": 1, "logs": [[3.0, "stdout", "early"]]})
    assert gap.value.expected == 3
    assert R.apply_report(db, a, {"seq": 3, "rank": 1, "logs": [[3.0, "stdout", "b3"]]}).stored
    lines = R.read_logs(db, a.id).lines
    assert [(line["n"], line["node"], line["text"]) for line in lines] == [(0, 1, "b2"), (1, 0, "a2"), (2, 1, "b3")]
    assert J.get_attempt(db, a.id).last_seq == 2 and RK.ranks_of(db, a.id)[0].last_seq == 3


def test_rank_1_failing_fails_the_attempt_naming_it_and_rank_0_is_told_to_go(db: Database, alice: U.User) -> None:
    a = placed(db, alice)
    result = R.apply_report(db, a, exited(2, 3, rank=1))
    assert result.final_state is JobState.FAILED and "ended" in result.changed
    job = J.get_job(db, a.job_id)
    assert job.state is JobState.FAILED and job.exit_code == 3
    assert job.message == "node rank 1 (node node-b): the command exited with code 3"
    assert RK.ranks_of(db, a.id)[0].state == "failed"
    # rank 0's next report: the attempt is over (410), so its supervisor ends its command at once
    with pytest.raises(R.AttemptEnded):
        R.apply_report(db, a, {"seq": 2, "logs": [[6.0, "stdout", "rank 0 still training"]]})
    assert [line["text"] for line in R.read_logs(db, a.id).lines] == ["rank 1 ends"]


def test_rank_1_failing_retries_every_rank_together(db: Database, alice: U.User) -> None:
    a = placed(db, alice, retries=1)
    assert R.apply_report(db, a, exited(2, 1, rank=1)).final_state is None  # requeued
    job = J.get_job(db, a.job_id)
    assert job.state is JobState.QUEUED and job.retries_left == 0
    with pytest.raises(R.AttemptEnded):
        R.apply_report(db, a, {"seq": 2})
    with pytest.raises(R.AttemptEnded):  # rank 1's own next batch too: it was the failed attempt's
        R.apply_report(db, a, {"seq": 3, "rank": 1})
    again = J.place(db, a.job_id, token="tok-2", executor="local", slices=NODES)[1]
    assert again.number == 2 and [r.last_seq for r in RK.ranks_of(db, again.id)] == [0]


def test_rank_0_decides_a_success_and_a_rank_still_ending_keeps_its_last_lines(db: Database, alice: U.User) -> None:
    a = placed(db, alice)
    assert R.apply_report(db, a, exited(2, 0)).final_state is JobState.SUCCEEDED
    ended = J.attempt_by_number(db, a.job_id, a.number)
    assert ended is not None and ended.ended_at is not None
    # the log is not whole yet: rank 1 still has its last lines to send, until the heartbeat timeout
    assert not RK.settled(db, ended, now=ended.ended_at + 1, grace=10)
    assert RK.settled(db, ended, now=ended.ended_at + 11, grace=10)
    late = R.apply_report(db, a, exited(2, 0, rank=1))
    assert RK.settled(db, ended, now=ended.ended_at + 1, grace=10)
    assert late.stored and late.stop and late.final_state is None
    assert J.get_job(db, a.job_id).state is JobState.SUCCEEDED
    assert [line["text"] for line in R.read_logs(db, a.id, node=1).lines] == ["rank 1 ends"]
    assert RK.ranks_of(db, a.id)[0].state == "succeeded"


def test_rank_1_exiting_zero_first_decides_nothing(db: Database, alice: U.User) -> None:
    a = placed(db, alice)
    assert R.apply_report(db, a, exited(2, 0, rank=1)).final_state is None
    assert J.get_job(db, a.job_id).state is JobState.RUNNING
    assert R.apply_report(db, a, exited(2, 0)).final_state is JobState.SUCCEEDED


def test_a_stop_reaches_every_rank(db: Database, alice: U.User) -> None:
    a = placed(db, alice)
    J.request_stop(db, J.get_job(db, a.job_id))
    assert R.apply_report(db, a, {"seq": 2, "rank": 1}).stop
    assert R.apply_report(db, a, {"seq": 2}).stop
    # rank 1 ends first: the job ends with rank 0, whose final batch follows its outputs' last sync
    assert R.apply_report(db, a, exited(3, 143, rank=1, reason="stopped_by_user")).final_state is None
    assert J.get_job(db, a.job_id).state is JobState.STOPPING
    assert R.apply_report(db, a, exited(3, 143, reason="stopped_by_user")).final_state is JobState.STOPPED


def test_logs_by_node_keep_the_attempts_numbers_and_reach_the_end(db: Database, alice: U.User) -> None:
    a = placed(db, alice)
    R.apply_report(db, a, {"seq": 2, "logs": [[2.0, "stdout", f"a{i}"] for i in range(3)]})
    R.apply_report(db, a, {"seq": 2, "rank": 1, "logs": [[2.0, "stdout", "b0"], [2.1, "stderr", "b1"]]})
    R.apply_report(db, a, {"seq": 3, "logs": [[3.0, "stdout", "a3"]]})
    page = R.read_logs(db, a.id, node=1)
    assert [(x["n"], x["text"], x["stream"]) for x in page.lines] == [(3, "b0", "stdout"), (4, "b1", "stderr")]
    assert page.next_offset == 6  # past the attempt's last line, rank 0's: a follower sees the end
    assert [x["text"] for x in R.read_logs(db, a.id, node=0, offset=1, limit=2).lines] == ["a1", "a2"]
    assert R.read_logs(db, a.id, node=1, offset=6).lines == []
    assert R.read_logs(db, a.id, node=5).next_offset == 6


class SpyExecutor:
    """Counts kills; the attempts it 'runs' are only rows."""

    name = "spy"

    def __init__(self) -> None:
        self.killed: list[int] = []

    def start(self, launch: Launch) -> str:
        raise AssertionError("nothing is scheduled here")

    def cancel(self, attempt: Attempt) -> None:
        return None

    def kill(self, attempt: Attempt) -> bool:
        self.killed.append(attempt.id)
        return True

    def alive(self, attempt: Attempt) -> bool | None:
        return None


def loop(db: Database, tmp_path: Path, spy: SpyExecutor, *, clock: float) -> SchedulerLoop:
    ctx = LaunchContext(settings=Settings.from_env({"MODELYARD_HOME": str(tmp_path)}), server_url=None)
    return SchedulerLoop(db, spy, Capacity.one(Resources(gpus=0, cpus=4, memory=0)), ctx,  # type: ignore[arg-type]
                         heartbeat_timeout=10.0, clock=lambda: clock)


def test_a_silent_rank_makes_the_whole_attempt_lost_and_killed(db: Database, alice: U.User, tmp_path: Path) -> None:
    a = placed(db, alice, executor="spy", now=100.0)
    spy = SpyExecutor()
    sched = loop(db, tmp_path, spy, clock=100.0)
    R.apply_report(db, a, {"seq": 2}, now=108.0)  # rank 0 keeps reporting; rank 1 is silent since 100
    sched.reap_lost_ranks(109.0)
    assert J.get_job(db, a.job_id).state is JobState.RUNNING and spy.killed == []
    R.apply_report(db, a, {"seq": 3}, now=112.0)
    sched.reap_lost_ranks(112.0)
    job = J.get_job(db, a.job_id)
    assert job.state is JobState.LOST and spy.killed == [a.id]
    assert job.message == "node rank 1 (node node-b): its supervisor sent nothing for 12s"
    sched.reap_lost_ranks(130.0)  # ended: not reaped twice
    assert spy.killed == [a.id]


def test_a_rank_heartbeat_keeps_it_alive(db: Database, alice: U.User, tmp_path: Path) -> None:
    a = placed(db, alice, executor="spy", now=100.0, retries=1)
    spy = SpyExecutor()
    sched = loop(db, tmp_path, spy, clock=100.0)
    R.apply_report(db, a, {"seq": 2, "rank": 1}, now=108.0)
    R.apply_report(db, a, {"seq": 2, "rank": 1}, now=115.0)  # a repeat is a heartbeat too
    sched.reap_lost_ranks(120.0)
    assert J.get_job(db, a.job_id).state is JobState.RUNNING
    sched.reap_lost_ranks(126.0)
    assert J.get_job(db, a.job_id).state is JobState.QUEUED  # lost, then retried: every rank together
    assert spy.killed == [a.id]


def test_build_launch_gives_each_rank_its_spec(db: Database, alice: U.User, tmp_path: Path) -> None:
    job = J.create_job(db, user=alice, spec=JobSpec(command=["train"], nodes=2, nproc_per_node=3, max_runtime=60),
                       snapshot_key="snapshots/x.tar.gz")
    _, a = J.place(db, job.id, token="tok", executor="local", slices=NODES)
    ctx = LaunchContext(settings=Settings.from_env({"MODELYARD_HOME": str(tmp_path)}), server_url="http://s")
    launch = build_launch(ctx, job, a, "tok")
    r0, r1 = launch.specs
    assert launch.spec is r0
    assert [(s.distributed.node_rank, s.distributed.nnodes, s.distributed.nproc_per_node, s.distributed.node_id)
            for s in (r0, r1)] == [(0, 2, 3, "node-a"), (1, 2, 3, "node-b")]
    assert (r0.gpus, r0.sandbox.cpuset, r1.gpus, r1.sandbox.cpuset) == ([0], [0, 1], [1], [2, 3])
    assert r0.output_prefix == f"jobs/{job.id}/attempts/1/outputs" and r1.output_prefix is None
    assert r0.log_key.endswith("/attempts/1/log.txt") and r1.log_key.endswith("/attempts/1/log-node1.txt")
    assert (r0.run_dir.name, r1.run_dir.name) == (f"{job.id}-1", f"{job.id}-1-r1")
    assert r0.snapshot_key == r1.snapshot_key and r0.max_runtime == r1.max_runtime == 60
    assert r1.distributed.env(29500)["WORLD_SIZE"] == "6" and "RANK" not in r1.distributed.env(29500)
    one = J.create_job(db, user=alice, spec=JobSpec(command=["train"]), snapshot_key=None)
    single = build_launch(ctx, one, J.place(db, one.id, token="t1", executor="local")[1], "t1")
    assert single.ranks == () and single.spec.distributed.nnodes == 1


# -- the API ---------------------------------------------------------------------------------


class NoExecutor(SpyExecutor):
    name = "local"

    def capacity(self) -> Capacity:
        return Capacity.one(Resources(gpus=0, cpus=4, memory=8 * 2**30))

    def recover(self, attempts: object) -> list[object]:
        return []

    def close(self) -> None:
        return None


@pytest.fixture
def api(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, Platform, str]]:
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings.from_env({"MODELYARD_HOME": str(home), "MODELYARD_DATABASE_URL": database_url,
                                  "MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G"})
    platform = Platform(settings, server_url="http://127.0.0.1:1", executor=NoExecutor())  # type: ignore[arg-type]
    admin = ensure_local_user(platform, home)
    client = TestClient(create_app(platform), raise_server_exceptions=False)
    try:
        yield client, platform, admin
    finally:
        client.close()
        platform.close()


def test_a_ranks_contact_the_store_could_not_keep_still_counts(db: Database, alice: U.User, tmp_path: Path) -> None:
    a = placed(db, alice, executor="spy", now=100.0)
    spy = SpyExecutor()
    sched = loop(db, tmp_path, spy, clock=100.0)
    sched.contacts.touch((a.id, 1), 115.0)  # what the report route does before a write a full disk refuses
    sched.contacts.touch(a.id, 115.0)
    sched.reap_lost_ranks(120.0)
    assert J.get_job(db, a.job_id).state is JobState.RUNNING
    sched.contacts.keep_only([a.id])  # an active attempt's ranks are kept with it
    assert sched.contacts.last((a.id, 1), 0.0) == 115.0
    sched.contacts.keep_only([])
    assert sched.contacts.last((a.id, 1), 0.0) == 0.0
