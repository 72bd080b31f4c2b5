"""The report protocol's rules in the store, on SQLite and PostgreSQL: a batch is taken only
one past the last stored, an ended attempt takes none, and attempts end through the table."""
from __future__ import annotations

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
    yield database
    database.dispose()


@pytest.fixture
def alice(db: Database) -> U.User:
    return U.create_user(db, "alice")[0]


def running(db: Database, user: U.User, **spec: object) -> J.Attempt:
    job = J.create_job(db, user=user, spec=JobSpec(command=["true"], **spec), snapshot_key=None)
    placed = J.place(db, job.id, gpus=[], token=f"tok-{job.id}", executor="local")
    assert placed is not None
    R.apply_report(db, placed[1], {"seq": 1, "events": [{"type": "started", "t": 1.0}]})
    return placed[1]


def texts(db: Database, attempt: J.Attempt) -> list[str]:
    return [line["text"] for line in R.read_logs(db, attempt.id).lines]


def test_a_gap_is_refused_with_the_seq_expected_and_stores_nothing(db: Database, alice: U.User) -> None:
    attempt = running(db, alice)
    with pytest.raises(R.SeqGap) as info:
        R.apply_report(db, attempt, {"seq": 3, "logs": [[2.0, "stdout", "early"]]})
    assert info.value.http_status == 409 and info.value.expected == 2
    assert info.value.to_dict()["expected_seq"] == 2 and "expects batch 2" in info.value.message
    assert texts(db, attempt) == []
    assert R.apply_report(db, attempt, {"seq": 2, "logs": [[2.0, "stdout", "second"]]}).stored
    assert R.apply_report(db, attempt, {"seq": 3, "logs": [[3.0, "stdout", "third"]]}).stored
    assert texts(db, attempt) == ["second", "third"]


def test_a_forged_huge_seq_cannot_make_later_real_batches_look_like_repeats(db: Database, alice: U.User) -> None:
    attempt = running(db, alice)
    with pytest.raises(R.SeqGap):
        R.apply_report(db, attempt, {"seq": 1_000_000_000, "logs": [[2.0, "stdout", "forged"]],
                                     "events": [{"type": "exited", "reason": "exit_zero", "exit_code": 0}]})
    for seq in range(2, 17):
        assert R.apply_report(db, attempt, {"seq": seq, "logs": [[seq, "stdout", f"line {seq}"]]}).stored
    assert texts(db, attempt) == [f"line {n}" for n in range(2, 17)]
    assert J.get_job(db, attempt.job_id).state is JobState.RUNNING


def test_an_ended_attempt_takes_no_more_reports_but_a_repeat_is_still_acknowledged(db: Database, alice: U.User) -> None:
    attempt = running(db, alice)
    final = {"seq": 2, "events": [{"type": "exited", "reason": "exit_zero", "exit_code": 0}], "final": True}
    assert R.apply_report(db, attempt, final).final_state is JobState.SUCCEEDED
    assert not R.apply_report(db, attempt, final).stored  # the final batch again, its reply lost
    with pytest.raises(R.AttemptEnded) as info:
        R.apply_report(db, attempt, {"seq": 3, "logs": [[9.0, "stdout", "late"]]})
    assert info.value.http_status == 410 and "has ended" in info.value.message
    assert "late" not in texts(db, attempt)


def test_a_lost_attempts_late_lines_are_refused(db: Database, alice: U.User) -> None:
    attempt = running(db, alice, retries=1)
    assert J.end_attempt(db, attempt, TerminationReason.SUPERVISOR_LOST) is None  # retried
    with pytest.raises(R.AttemptEnded, match="attempt 1 .* has ended"):
        R.apply_report(db, attempt, {"seq": 2, "logs": [[5.0, "stdout", "from the stopped supervisor"]]})
    assert texts(db, attempt) == []
    assert J.get_job(db, attempt.job_id).state is JobState.QUEUED


@pytest.mark.parametrize("reason", [TerminationReason.EXIT_ZERO, TerminationReason.EXIT_NONZERO,
                                    TerminationReason.MAX_RUNTIME, TerminationReason.START_FAILED])
def test_a_stopped_job_is_stopped_whatever_its_exit(db: Database, alice: U.User, reason: TerminationReason) -> None:
    attempt = running(db, alice, retries=2)
    J.request_stop(db, J.get_job(db, attempt.job_id))
    assert J.end_attempt(db, attempt, reason, exit_code=0 if reason is TerminationReason.EXIT_ZERO else 1) \
        is JobState.STOPPED
    job, (ended,) = J.get_job(db, attempt.job_id), J.job_attempts(db, attempt.job_id)
    assert job.state is JobState.STOPPED and ended.state is JobState.STOPPED
    assert ended.reason == "stopped_by_user" and ended.message.startswith("stopped by a user (")
    assert ended.exit_code == (0 if reason is TerminationReason.EXIT_ZERO else 1)  # kept, for the record


def test_a_stopping_attempt_whose_supervisor_vanished_is_lost_and_not_retried(db: Database, alice: U.User) -> None:
    attempt = running(db, alice, retries=2)
    J.request_stop(db, J.get_job(db, attempt.job_id))
    assert J.end_attempt(db, attempt, TerminationReason.SUPERVISOR_LOST) is JobState.LOST


def test_a_stop_from_outside_goes_through_stopping(db: Database, alice: U.User) -> None:
    """SIGTERM sent to a supervisor directly: it reports stopped_by_user for a running attempt."""
    attempt = running(db, alice)
    assert J.end_attempt(db, attempt, TerminationReason.STOPPED_BY_USER) is JobState.STOPPED
    states = [(e.from_state, e.to_state) for e in J.job_events(db, attempt.job_id)][-2:]
    assert states == [(JobState.RUNNING, JobState.STOPPING), (JobState.STOPPING, JobState.STOPPED)]


def test_an_attempt_ends_once(db: Database, alice: U.User) -> None:
    attempt = running(db, alice)
    assert J.end_attempt(db, attempt, TerminationReason.EXIT_ZERO, exit_code=0) is JobState.SUCCEEDED
    assert J.end_attempt(db, attempt, TerminationReason.SUPERVISOR_LOST) is None
    (ended,) = J.job_attempts(db, attempt.job_id)
    assert ended.state is JobState.SUCCEEDED and ended.exit_code == 0


def test_attempt_writes_refuse_a_move_the_table_forbids(db: Database, alice: U.User) -> None:
    attempt = running(db, alice)
    with db.write() as conn, pytest.raises(ModelyardError, match="cannot go from running to queued"):
        J._attempt_transition(conn, attempt.id, JobState.RUNNING, JobState.QUEUED)
    with db.write() as conn:  # compare-and-set: from a state it is not in, nothing moves
        assert not J._attempt_transition(conn, attempt.id, JobState.STARTING, JobState.RUNNING)
