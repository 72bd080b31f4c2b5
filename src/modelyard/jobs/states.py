"""Job states, the transitions allowed between them, and why a job ended.

This module owns the state machine: every state change anywhere in modelyard
is checked against ``TRANSITIONS`` (jobs) or ``ATTEMPT_TRANSITIONS`` (attempts);
the store applies both as a compare-and-set.
Nomenclature: a *job* is what a user submitted (spec, priority, owner); an
*attempt* is one run of it. A restart or a retry adds an attempt.
"""
from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    QUEUED = "queued"  # waiting for resources
    STARTING = "starting"  # placed; the supervisor is being launched
    RUNNING = "running"  # the supervisor reported the command started
    STOPPING = "stopping"  # a stop was asked for; waiting for the supervisor to end it
    SUCCEEDED = "succeeded"  # the command exited 0
    FAILED = "failed"  # the command exited non-zero, or could not start
    STOPPED = "stopped"  # stopped by a user
    TIMED_OUT = "timed_out"  # ran past max_runtime and was killed
    LOST = "lost"  # the supervisor went silent past the heartbeat timeout

    def is_terminal(self) -> bool:
        return self in TERMINAL

    def is_active(self) -> bool:
        """Holds resources (placed on a machine)."""
        return self in ACTIVE


TERMINAL = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED, JobState.TIMED_OUT, JobState.LOST}
)
ACTIVE = frozenset({JobState.STARTING, JobState.RUNNING, JobState.STOPPING})
_ENDINGS = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.LOST})

# The one table of allowed transitions. A terminal state goes back to QUEUED only
# through a restart or a retry, which also adds an attempt.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.STARTING, JobState.STOPPED}),
    JobState.STARTING: frozenset({JobState.RUNNING, JobState.STOPPING, JobState.QUEUED} | _ENDINGS),
    JobState.RUNNING: frozenset({JobState.STOPPING} | _ENDINGS),
    # A job asked to stop ends stopped whatever its command did meanwhile (exit 0,
    # non-zero, or past max_runtime during the grace: see ``ending_reason``); only
    # LOST stays, since nobody could confirm that the command stopped.
    JobState.STOPPING: frozenset({JobState.STOPPED, JobState.LOST}),
    JobState.SUCCEEDED: frozenset({JobState.QUEUED}),
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.STOPPED: frozenset({JobState.QUEUED}),
    JobState.TIMED_OUT: frozenset({JobState.QUEUED}),
    JobState.LOST: frozenset({JobState.QUEUED}),
}


# An attempt moves as its job does while it is active, but never back to QUEUED
# (a retry or restart is a new attempt): an ended attempt stays ended.
ATTEMPT_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    state: (TRANSITIONS[state] - {JobState.QUEUED}) if state in ACTIVE else frozenset()
    for state in JobState if state is not JobState.QUEUED
}


def can_transition(src: JobState, dst: JobState) -> bool:
    return dst in TRANSITIONS[src]


def attempt_can_transition(src: JobState, dst: JobState) -> bool:
    return dst in ATTEMPT_TRANSITIONS.get(src, frozenset())


def sources_of(dst: JobState) -> frozenset[JobState]:
    """Every state from which ``dst`` may be entered (for compare-and-set updates)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if dst in targets)


class TerminationReason(str, enum.Enum):
    """Why an attempt ended; each maps to exactly one state and one retry decision."""

    EXIT_ZERO = "exit_zero"
    EXIT_NONZERO = "exit_nonzero"
    START_FAILED = "start_failed"  # the command or its code/data could not be set up
    STOPPED_BY_USER = "stopped_by_user"
    MAX_RUNTIME = "max_runtime"
    SUPERVISOR_LOST = "supervisor_lost"
    DISK_FULL = "disk_full"  # the job's outputs or log could not be kept: no space left on the run's disk
    OUT_OF_MEMORY = "out_of_memory"  # the kernel killed it at its memory limit (the cgroup's OOM counter says so)

    def to_state(self) -> JobState:
        return _REASON_STATE[self]

    def retryable(self) -> bool:
        """Whether a job with retries left gets another attempt after this."""
        return self in (TerminationReason.EXIT_NONZERO, TerminationReason.SUPERVISOR_LOST)

    def message(self, exit_code: int | None = None) -> str:
        if self is TerminationReason.EXIT_NONZERO:
            return f"the command exited with code {exit_code}"
        return _REASON_MESSAGE[self]


def ending_reason(current: JobState, reason: TerminationReason) -> TerminationReason:
    """What an attempt in ``current`` ends as when it ends for ``reason``: once a stop was
    asked for (STOPPING), anything but a lost supervisor is the user's stop."""
    if current is JobState.STOPPING and reason.to_state() not in TRANSITIONS[JobState.STOPPING]:
        return TerminationReason.STOPPED_BY_USER
    return reason


_REASON_STATE = {
    TerminationReason.EXIT_ZERO: JobState.SUCCEEDED,
    TerminationReason.EXIT_NONZERO: JobState.FAILED,
    TerminationReason.START_FAILED: JobState.FAILED,
    TerminationReason.STOPPED_BY_USER: JobState.STOPPED,
    TerminationReason.MAX_RUNTIME: JobState.TIMED_OUT,
    TerminationReason.SUPERVISOR_LOST: JobState.LOST,
    TerminationReason.DISK_FULL: JobState.FAILED,
    TerminationReason.OUT_OF_MEMORY: JobState.FAILED,
}
_REASON_MESSAGE = {
    TerminationReason.EXIT_ZERO: "the command exited with code 0",
    TerminationReason.START_FAILED: "the job could not be started",
    TerminationReason.STOPPED_BY_USER: "stopped by a user",
    TerminationReason.MAX_RUNTIME: "ran past its max_runtime and was killed",
    TerminationReason.SUPERVISOR_LOST: "its supervisor stopped reporting",
    TerminationReason.DISK_FULL: "no space left on device writing outputs",
    # the supervisor says the limit: "out of memory (limit 2G)" (supervisor/sandbox.py)
    TerminationReason.OUT_OF_MEMORY: "out of memory",
}
