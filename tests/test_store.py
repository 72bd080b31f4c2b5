"""The store's contract, run on SQLite and on PostgreSQL (the ``database_url`` fixture)."""
from __future__ import annotations

import threading

import pytest

from modelyard.errors import ModelyardError
from modelyard.jobs import JobSpec, JobState, TerminationReason
from modelyard.db import Database
from modelyard.db import jobs as J
from modelyard.db import reports as R
from modelyard.db import users as U


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    database.migrate()
    database.migrate()  # idempotent: every server start runs it
    yield database
    database.dispose()


@pytest.fixture
def alice(db: Database) -> U.User:
    return U.create_user(db, "alice")[0]


def submit(db: Database, user: U.User, **spec: object) -> J.Job:
    return J.create_job(db, user=user, spec=JobSpec(command=["true"], **spec), snapshot_key=None)


def start(db: Database, job: J.Job, gpus: list[int] | None = None) -> J.Attempt:
    placed = J.place(db, job.id, gpus=gpus or [], token=f"tok-{job.id}", executor="local")
    assert placed is not None
    return placed[1]


def test_tokens_are_stored_hashed_and_resolve_to_their_user(db: Database) -> None:
    user, token = U.create_user(db, "bob", admin=True)
    assert U.user_for_token(db, token) == user
    assert U.user_for_token(db, token + "x") is None
    from modelyard.db.schema import tokens
    with db.read() as conn:
        stored = [r.token_hash for r in conn.execute(tokens.select())]
    assert token not in stored and U.hash_token(token) in stored
    with pytest.raises(ModelyardError, match="already exists"):
        U.create_user(db, "bob")
    with pytest.raises(ModelyardError) as info:
        U.create_user(db, "a/b")
    assert info.value.field == "name"


def test_job_lifecycle_records_every_transition(db: Database, alice: U.User) -> None:
    job = submit(db, alice, name="j")
    assert job.state is JobState.QUEUED and job.attempt == 0
    attempt = start(db, job, [0])
    assert attempt.number == 1 and attempt.gpus == (0,)
    R.apply_report(db, attempt, {"seq": 1, "events": [{"type": "started", "t": 10.0, "pid": 1}]})
    assert J.get_job(db, job.id).state is JobState.RUNNING
    res = R.apply_report(db, attempt, {"seq": 2, "events": [
        {"type": "exited", "t": 11.0, "exit_code": 0, "reason": "exit_zero"}]})
    assert res.final_state is JobState.SUCCEEDED
    job = J.get_job(db, job.id)
    assert job.state is JobState.SUCCEEDED and job.exit_code == 0
    assert [(e.from_state, e.to_state) for e in J.job_events(db, job.id)] == [
        (None, JobState.QUEUED), (JobState.QUEUED, JobState.STARTING),
        (JobState.STARTING, JobState.RUNNING), (JobState.RUNNING, JobState.SUCCEEDED)]
    assert all(e.time > 0 for e in J.job_events(db, job.id))


def test_place_is_a_compare_and_set(db: Database, alice: U.User) -> None:
    job = submit(db, alice)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(
        J.place(db, job.id, gpus=[], token="t", executor="local"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert len(J.job_attempts(db, job.id)) == 1


def test_report_batches_are_stored_exactly_once(db: Database, alice: U.User) -> None:
    job = submit(db, alice)
    attempt = start(db, job)
    batch = {"seq": 1, "logs": [[1.0, "stdout", "a"], [1.1, "stderr", "b"]],
             "metrics": [["loss", 0.5, 1, None, 1.0], ["loss", 0.4, 2, None, 1.2]],
             "system": [{"t": 1.0, "cpu_percent": 50.0, "memory_rss": 1000, "gpus": []}]}
    assert R.apply_report(db, attempt, batch).stored
    assert not R.apply_report(db, attempt, batch).stored  # a retry after a lost reply
    R.apply_report(db, attempt, {"seq": 2, "logs": [[2.0, "stdout", "c"]]})
    assert not R.apply_report(db, attempt, {"seq": 1, "logs": [[9.0, "stdout", "dup"]]}).stored
    page = R.read_logs(db, attempt.id)
    assert [(l["n"], l["stream"], l["text"]) for l in page.lines] == [
        (0, "stdout", "a"), (1, "stderr", "b"), (2, "stdout", "c")]
    assert R.read_metrics(db, job.id) == {"loss": [
        {"value": 0.5, "step": 1, "epoch": None, "time": 1.0}, {"value": 0.4, "step": 2, "epoch": None, "time": 1.2}]}
    assert len(R.read_system_metrics(db, job.id)) == 1
    assert R.read_logs(db, attempt.id, offset=2).lines[0]["text"] == "c"


def test_odd_log_text_survives(db: Database, alice: U.User) -> None:
    attempt = start(db, submit(db, alice))
    long_line = "x" * 150_000
    odd = "caf\\xe9 \u00e9\u4e2d \U0001f600"
    R.apply_report(db, attempt, {"seq": 1, "logs": [[1.0, "stdout", long_line], [1.0, "stdout", odd]]})
    texts = [l["text"] for l in R.read_logs(db, attempt.id).lines]
    assert texts == [long_line, odd]


def test_retry_adds_an_attempt_and_stop_is_not_retried(db: Database, alice: U.User) -> None:
    job = submit(db, alice, retries=1)
    attempt = start(db, job)
    assert J.end_attempt(db, attempt, TerminationReason.EXIT_NONZERO, exit_code=3) is None  # requeued
    job = J.get_job(db, job.id)
    assert job.state is JobState.QUEUED and job.retries_left == 0
    second = start(db, job)
    assert second.number == 2
    assert J.end_attempt(db, second, TerminationReason.EXIT_NONZERO, exit_code=3) is JobState.FAILED
    assert [a.exit_code for a in J.job_attempts(db, job.id)] == [3, 3]


def test_stop_queued_and_running(db: Database, alice: U.User) -> None:
    queued = submit(db, alice)
    assert J.request_stop(db, queued) is None
    assert J.get_job(db, queued.id).state is JobState.STOPPED
    with pytest.raises(ModelyardError, match="already ended"):
        J.request_stop(db, J.get_job(db, queued.id))

    job = submit(db, alice, retries=3)
    attempt = start(db, job)
    to_cancel = J.request_stop(db, J.get_job(db, job.id))
    assert to_cancel is not None and to_cancel.id == attempt.id and to_cancel.stop_requested
    assert J.get_job(db, job.id).state is JobState.STOPPING
    final = J.end_attempt(db, to_cancel, TerminationReason.STOPPED_BY_USER)
    assert final is JobState.STOPPED  # not retried, although retries are left


def test_restart_requires_an_ended_job(db: Database, alice: U.User) -> None:
    job = submit(db, alice)
    with pytest.raises(ModelyardError, match="stop it before restarting"):
        J.requeue(db, job)
    J.end_attempt(db, start(db, job), TerminationReason.EXIT_ZERO, exit_code=0)
    again = J.requeue(db, J.get_job(db, job.id))
    assert again.state is JobState.QUEUED and again.exit_code is None
    assert start(db, again).number == 2


def test_other_users_jobs_are_not_found(db: Database, alice: U.User) -> None:
    bob = U.create_user(db, "bob")[0]
    admin = U.create_user(db, "root", admin=True)[0]
    job = submit(db, alice, name="secret")
    with pytest.raises(ModelyardError) as info:
        J.get_job(db, job.id, user=bob)
    assert info.value.http_status == 404
    assert J.get_job(db, job.id, user=admin).name == "secret"
    assert J.list_jobs(db, user=bob)[1] == 0
    assert J.list_jobs(db, user=admin, all_users=True)[1] == 1
    assert J.list_jobs(db, user=admin)[1] == 0


def test_list_filters_and_pages(db: Database, alice: U.User) -> None:
    for i in range(5):
        submit(db, alice, name=f"resnet-{i}" if i % 2 else f"bert_{i}")
    jobs, total = J.list_jobs(db, user=alice, q="resnet")
    assert total == 2 and [j.name for j in jobs] == ["resnet-3", "resnet-1"]
    jobs, total = J.list_jobs(db, user=alice, limit=2, offset=1)
    assert total == 5 and len(jobs) == 2 and jobs[0].id > jobs[1].id
    assert J.list_jobs(db, user=alice, q="%")[1] == 0  # a LIKE wildcard is matched literally
    assert J.list_jobs(db, user=alice, state=JobState.RUNNING)[1] == 0


def test_running_allocations_feed_the_scheduler(db: Database, alice: U.User) -> None:
    job = submit(db, alice, max_runtime=100, resources={"gpus": 0, "cpus": 2})
    attempt = start(db, job, [1, 3])
    (alloc,) = J.running_allocations(db)
    assert alloc.job_id == job.id and alloc.gpus == (1, 3) and alloc.resources.cpus == 2
    assert alloc.expected_end == pytest.approx(attempt.created_at + 100)
    assert J.queued_jobs(db) == []


def test_stop_acts_on_the_state_now_not_the_one_read_before(db: Database, alice: U.User) -> None:
    """A stop sent while the job was 'starting' still lands after the supervisor made it 'running'."""
    job = submit(db, alice)
    attempt = start(db, job)
    stale = J.get_job(db, job.id)
    assert stale.state is JobState.STARTING
    R.apply_report(db, attempt, {"seq": 1, "events": [{"type": "started", "t": 1.0}]})
    to_cancel = J.request_stop(db, stale)
    assert to_cancel is not None and to_cancel.stop_requested
    assert J.get_job(db, job.id).state is JobState.STOPPING
    J.end_attempt(db, to_cancel, TerminationReason.STOPPED_BY_USER)
    assert J.requeue(db, stale).state is JobState.QUEUED  # stale 'starting' view; the job has ended


def test_job_uids_are_drawn_once_per_user_distinct_and_bounded(db: Database) -> None:
    ann, ben, cal = (U.create_user(db, n)[0] for n in ("ann", "ben", "cal"))
    first = U.job_uid(db, ann.id, (61000, 61001))
    assert first == 61000 and U.job_uid(db, ann.id, (61000, 61001)) == 61000  # stable
    assert U.job_uid(db, ben.id, (61000, 61001)) == 61001
    with pytest.raises(ModelyardError) as e:
        U.job_uid(db, cal.id, (61000, 61001))
    assert e.value.field == "MODELYARD_JOB_UIDS"


def test_an_attempt_keeps_the_cores_it_was_placed_on(db: Database, alice: U.User) -> None:
    job = submit(db, alice, resources={"cpus": 2})
    placed = J.place(db, job.id, gpus=[], token="t", executor="local", cpuset=[2, 3])
    assert placed is not None and placed[1].cpuset == (2, 3)
    assert [a.cores for a in J.running_allocations(db)] == [(2, 3)]
