"""The state machine: one transition table, terminal states, reasons mapping to one state each."""
from __future__ import annotations

import pytest

from modelyard.jobs import TRANSITIONS, JobState, TerminationReason
from modelyard.jobs.states import can_transition, sources_of


def test_every_state_has_a_row_and_json_values_are_lowercase() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert [s.value for s in JobState] == [
        "queued", "starting", "running", "stopping", "succeeded", "failed", "stopped", "timed_out", "lost"]


def test_terminal_states_only_lead_back_to_the_queue() -> None:
    for state in JobState:
        if state.is_terminal():
            assert TRANSITIONS[state] == {JobState.QUEUED}
    assert {s for s in JobState if s.is_terminal()} == {
        JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED, JobState.TIMED_OUT, JobState.LOST}


@pytest.mark.parametrize(("src", "dst", "ok"), [
    (JobState.QUEUED, JobState.STARTING, True),
    (JobState.QUEUED, JobState.RUNNING, False),
    (JobState.STARTING, JobState.RUNNING, True),
    (JobState.RUNNING, JobState.STOPPING, True),
    (JobState.STOPPING, JobState.STOPPED, True),
    (JobState.RUNNING, JobState.STOPPED, False),  # a running job stops through STOPPING
    (JobState.SUCCEEDED, JobState.RUNNING, False),
    (JobState.RUNNING, JobState.TIMED_OUT, True),
    (JobState.RUNNING, JobState.LOST, True),
])
def test_transitions(src: JobState, dst: JobState, ok: bool) -> None:
    assert can_transition(src, dst) is ok


def test_sources_of_is_the_inverse_of_the_table() -> None:
    for dst in JobState:
        for src in JobState:
            assert (src in sources_of(dst)) == (dst in TRANSITIONS[src])


def test_each_reason_maps_to_one_state_and_one_retry_decision() -> None:
    expected = {
        TerminationReason.EXIT_ZERO: (JobState.SUCCEEDED, False),
        TerminationReason.EXIT_NONZERO: (JobState.FAILED, True),
        TerminationReason.START_FAILED: (JobState.FAILED, False),
        TerminationReason.STOPPED_BY_USER: (JobState.STOPPED, False),
        TerminationReason.MAX_RUNTIME: (JobState.TIMED_OUT, False),
        TerminationReason.SUPERVISOR_LOST: (JobState.LOST, True),
        TerminationReason.DISK_FULL: (JobState.FAILED, False),
        TerminationReason.OUT_OF_MEMORY: (JobState.FAILED, False),  # the same limit would kill it again
    }
    assert set(expected) == set(TerminationReason)
    for reason, (state, retry) in expected.items():
        assert reason.to_state() is state
        assert reason.retryable() is retry
        assert reason.message(3)
    assert "code 3" in TerminationReason.EXIT_NONZERO.message(3)


def test_attempts_move_as_jobs_do_but_never_back_to_the_queue() -> None:
    from modelyard.jobs.states import ATTEMPT_TRANSITIONS, attempt_can_transition

    assert set(ATTEMPT_TRANSITIONS) == set(JobState) - {JobState.QUEUED}
    for state, targets in ATTEMPT_TRANSITIONS.items():
        assert JobState.QUEUED not in targets
        assert targets == (set() if state.is_terminal() else TRANSITIONS[state] - {JobState.QUEUED})
    assert attempt_can_transition(JobState.STARTING, JobState.RUNNING)
    assert attempt_can_transition(JobState.RUNNING, JobState.LOST)
    assert not attempt_can_transition(JobState.LOST, JobState.RUNNING)  # a lost attempt stays lost
    assert not attempt_can_transition(JobState.SUCCEEDED, JobState.QUEUED)


@pytest.mark.parametrize("dst", [JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT])
def test_a_job_asked_to_stop_cannot_end_any_other_way_than_stopped_or_lost(dst: JobState) -> None:
    assert not can_transition(JobState.STOPPING, dst)
    assert TRANSITIONS[JobState.STOPPING] == {JobState.STOPPED, JobState.LOST}


def test_ending_reason_makes_a_stopping_attempts_end_a_stop() -> None:
    from modelyard.jobs.states import ending_reason

    for reason in TerminationReason:
        expected = reason if reason is TerminationReason.SUPERVISOR_LOST else TerminationReason.STOPPED_BY_USER
        assert ending_reason(JobState.STOPPING, reason) is expected
        assert ending_reason(JobState.RUNNING, reason) is reason
