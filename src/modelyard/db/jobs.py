"""Jobs and attempts: creation, queries, and every state change as a compare-and-set.

All job state changes go through ``_transition``, which checks the transition table
(``jobs.states.TRANSITIONS``), applies ``UPDATE … WHERE id = :id AND state = :from``,
checks the row count, and records the event, in the caller's transaction; all
attempt state changes go through ``_attempt_transition``, the same against
``ATTEMPT_TRANSITIONS`` (the job's event records it). Nothing else in modelyard
writes ``jobs.state`` or ``attempts.state``.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from modelyard.db import auth_cache
from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.jobs import JobSpec, JobState, Resources, TerminationReason
from modelyard.jobs.notify import EVENT_OF_STATE
from modelyard.jobs.query import JobQuery
from modelyard.jobs.nodes import LOCAL_NODE, NodeSlice, format_labels, format_slices, parse_labels, parse_slices
from modelyard.jobs.states import attempt_can_transition, can_transition, ending_reason
from modelyard.db import job_query
from modelyard.db import runs as run_data
from modelyard.db.engine import Database
from modelyard.db.records import (
    Attempt, Event, Job, User, attempt_from_row, event_from_row, format_gpus, job_from_row, parse_gpus,
)
from modelyard.db.notices import record as record_notice
from modelyard.db.schema import attempt_ranks, attempts, events, jobs, removals, users
from modelyard.db.users import hash_token

_JOB_COLUMNS = [jobs, users.c.name.label("owner")]


def _job_query() -> sa.Select[Any]:
    return sa.select(*_JOB_COLUMNS).join(users, users.c.id == jobs.c.user_id)


def _transition(
    conn: sa.Connection, job_id: int, src: JobState, dst: JobState, *, now: float,
    attempt_no: int, reason: str | None = None, actor: str | None = None, tell: bool = True, **values: Any,
) -> bool:
    """Move a job from ``src`` to ``dst`` if it is still in ``src``; record the event
    (``actor``: the name of the user who asked for it) and, where ``dst`` is one of the
    events a user hears of, the owner's notice (``tell``: False for a failure retried at once)."""
    if not can_transition(src, dst):
        raise ModelyardError(ErrorCode.CONFLICT, f"a job cannot go from {src.value} to {dst.value}")
    res = conn.execute(
        jobs.update().where(jobs.c.id == job_id, jobs.c.state == src.value).values(state=dst.value, **values)
    )
    if res.rowcount != 1:
        return False
    conn.execute(events.insert().values(
        job_id=job_id, attempt=attempt_no, time=now, from_state=src.value, to_state=dst.value, reason=reason,
        actor=actor,
    ))
    event = EVENT_OF_STATE.get(dst)
    if tell and event is not None:
        record_notice(conn, job_id, event, reason=reason, now=now)
    return True


def _attempt_transition(conn: sa.Connection, attempt_id: int, src: JobState, dst: JobState, **values: Any) -> bool:
    """Move an attempt from ``src`` to ``dst`` if it is still in ``src`` (compare-and-set)."""
    if not attempt_can_transition(src, dst):
        raise ModelyardError(ErrorCode.CONFLICT, f"an attempt cannot go from {src.value} to {dst.value}")
    moved = conn.execute(
        attempts.update().where(attempts.c.id == attempt_id, attempts.c.state == src.value)
        .values(state=dst.value, **values)
    ).rowcount == 1
    if moved and dst.is_terminal():
        auth_cache.changed(conn)  # its run token dies with it, kept or not
    return moved


def _route(src: JobState, dst: JobState) -> list[JobState]:
    """The states from ``src`` to ``dst``: a stop of a running job or attempt goes through STOPPING."""
    if dst is JobState.STOPPED and src in (JobState.STARTING, JobState.RUNNING):
        return [JobState.STOPPING, dst]
    return [dst]


def create_job(
    db: Database, *, user: User, spec: JobSpec, snapshot_key: str | None,
    resume_from: int | None = None, dataset: str | None = None, dataset_check: Callable[[], object] | None = None,
    now: float | None = None, sealed_secrets: str | None = None,
    environment: str | None = None, actor: str | None = None, reason: str = "submitted",
    queue_check: Callable[[sa.Connection], object] | None = None, trial_of: tuple[int, int] | None = None,
    experiment_id: int | None = None,
) -> Job:
    """Queue a job; ``trial_of``: (sweep id, trial number) of the sweep trial it runs, at most one
    job per trial (CONFLICT for a second); ``dataset`` is the pinned version ("name:version") it will read;
    ``sealed_secrets`` its inline secrets' values, sealed (the spec keeps only their names);
    ``actor`` and ``reason`` go into its first event; ``experiment_id`` is the MLflow experiment its run
    starts in (None: the owner's Default).

    ``dataset_check`` (raising if the version is gone) runs under that dataset's
    lock in the job's own transaction, so a removal cannot slip in between the
    check and the job's row: see ``lock_dataset``. ``queue_check`` (raising if the owner's
    queue is full: db/quotas.py) runs in that transaction too, so two submits at once
    cannot both take the last place."""
    now = time.time() if now is None else now
    try:
        job_id = _insert_job(db, user=user, spec=spec, snapshot_key=snapshot_key, resume_from=resume_from,
                             dataset=dataset, dataset_check=dataset_check, now=now, sealed_secrets=sealed_secrets,
                             environment=environment, actor=actor, reason=reason, queue_check=queue_check,
                             trial_of=trial_of, experiment_id=experiment_id)
    except sa.exc.IntegrityError:
        if trial_of is None:
            raise
        raise ModelyardError(ErrorCode.CONFLICT, f"trial {trial_of[1]} of sweep {trial_of[0]} already has a job",
                             field="trial") from None
    return get_job(db, job_id)


def _insert_job(
    db: Database, *, user: User, spec: JobSpec, snapshot_key: str | None, resume_from: int | None,
    dataset: str | None, dataset_check: Callable[[], object] | None, now: float, sealed_secrets: str | None,
    environment: str | None, actor: str | None, reason: str, queue_check: Callable[[sa.Connection], object] | None,
    trial_of: tuple[int, int] | None, experiment_id: int | None,
) -> int:
    r = spec.resources
    sweep_id, trial = trial_of or (None, None)
    with db.write() as conn:
        _hold_dataset(conn, dataset, dataset_check)
        if queue_check is not None:
            queue_check(conn)
        job_id = conn.execute(jobs.insert().values(
            **_fresh_id(conn), user_id=user.id, name=spec.name, state=JobState.QUEUED.value, priority=spec.priority,
            gpus=r.gpus, cpus=r.cpus, memory=r.memory, max_runtime=spec.max_runtime,
            spec=orjson.dumps(spec.model_dump(mode="json")).decode(), snapshot_key=snapshot_key,
            resume_from=resume_from, retries_left=spec.retries, attempt=0,
            created_at=now, queued_at=now, dataset=dataset, secrets=sealed_secrets,
            environment=environment, nodes=spec.nodes, node_labels=format_labels(spec.node_labels),
            sweep_id=sweep_id, trial=trial, experiment_id=experiment_id,
        ).returning(jobs.c.id)).scalar_one()
        job_query.write_params(conn, job_id, spec.params, spec.tags)
        conn.execute(events.insert().values(
            job_id=job_id, attempt=0, time=now, from_state=None, to_state=JobState.QUEUED.value, reason=reason,
            actor=actor,
        ))
    return job_id


def _fresh_id(conn: sa.Connection) -> dict[str, int]:
    """On SQLite, an id no job ever had: without AUTOINCREMENT SQLite gives the largest id in the table
    plus one, so a new job would take the id (and the artifact keys, and the removal records) of the
    newest job removed (``modelyard rm``). Safe in the writer's transaction: SQLite has one writer.
    PostgreSQL's sequence never hands an id out twice."""
    if conn.dialect.name != "sqlite":
        return {}
    newest = conn.execute(sa.select(sa.func.max(jobs.c.id))).scalar() or 0
    removed = conn.execute(sa.select(sa.func.max(removals.c.job_id))).scalar() or 0
    return {"id": max(newest, removed) + 1}


def get_job(db: Database, job_id: int, *, user: User | None = None) -> Job:
    """The job; ``user`` limits it to that user's own jobs (admins see all). Absent: not_found."""
    with db.read() as conn:
        row = conn.execute(_job_query().where(jobs.c.id == job_id)).first()
        tags = job_query.tags_of(conn, [job_id]) if row is not None else {}
        params = job_query.params_of(conn, [job_id]) if row is not None else {}
    if row is None or (user is not None and not user.is_admin and row.user_id != user.id):
        raise not_found(f"job {job_id}")
    return job_from_row(row, tags.get(job_id, ()), params.get(job_id, {}))


def owner_of(conn: sa.Connection, job_id: int) -> int | None:
    """The user id of the job's owner, read in ``conn``'s transaction; None when there is no such job.

    The SQL is written out: an MLflow loop asks this once per logged point, and building and
    looking up a Core statement took longer than the read itself."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return conn.exec_driver_sql(f"SELECT user_id FROM {jobs.name} WHERE id = {mark}", (int(job_id),)).scalar()


def jobs_by_id(db: Database, job_ids: Sequence[int]) -> dict[int, Job]:
    """The jobs of ``job_ids`` that exist (already checked to be the caller's), read a few hundred at a time."""
    out: dict[int, Job] = {}
    ids = list(job_ids)
    with db.read() as conn:
        for i in range(0, len(ids), 500):  # SQLite binds at most 32,766 values in one statement
            part = ids[i:i + 500]
            rows = conn.execute(_job_query().where(jobs.c.id.in_(part))).all()
            tags, params = job_query.tags_of(conn, part), job_query.params_of(conn, part)
            out.update({r.id: job_from_row(r, tags.get(r.id, ()), params.get(r.id, {})) for r in rows})
    return out


def list_jobs(
    db: Database, *, user: User, all_users: bool = False, state: JobState | None = None,
    q: str | None = None, limit: int = 50, offset: int = 0, query: JobQuery | None = None,
) -> tuple[list[Job], int]:
    """A page of the jobs ``user`` may see (``all_users``: everyone's, for an admin) that match ``query``
    (jobs/query.py; newest first unless it sorts otherwise), and how many match in all."""
    query = query or JobQuery()
    cond = job_query.conditions(query)
    if not (all_users and user.is_admin):
        cond.append(jobs.c.user_id == user.id)
    if state is not None:
        cond.append(jobs.c.state == state.value)
    if q:
        cond.append(jobs.c.name.contains(q, autoescape=True))
    with db.read() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(jobs).where(*cond)).scalar_one()
        page = job_query.order(_job_query().where(*cond), query.sort).limit(limit).offset(offset)
        rows = conn.execute(page).all()
        tags = job_query.tags_of(conn, [r.id for r in rows])
        params = job_query.params_of(conn, [r.id for r in rows])
    return [job_from_row(r, tags.get(r.id, ()), params.get(r.id, {})) for r in rows], total


def change_tags(db: Database, job: Job, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> Job:
    """Add, then remove, tags of ``job`` (already checked to be the caller's); the job as it is after."""
    with db.write() as conn:
        if add:
            try:
                job_query.add_tags(conn, job.id, add)
            except ValueError as e:
                raise ModelyardError(ErrorCode.INVALID, str(e), field="tags") from None
        if remove:
            job_query.remove_tags(conn, job.id, remove)
    return get_job(db, job.id)


def lock_dataset(conn: sa.Connection, name: str) -> None:
    """Serialise, until ``conn``'s transaction ends, the writes that must agree on whether a
    version of dataset ``name`` exists: queueing a job pinned to it and removing it. SQLite's
    ``BEGIN IMMEDIATE`` already serialises every writer; PostgreSQL takes an advisory lock."""
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"modelyard.dataset:{name}".encode()) - 2**31  # a signed 64-bit key
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _hold_dataset(conn: sa.Connection, dataset: str | None, check: Callable[[], object] | None) -> None:
    """For a job pinned to ``dataset`` ("name:version"): take its lock, then ``check`` it still exists."""
    if dataset is not None:
        lock_dataset(conn, dataset.split(":", 1)[0])
        if check is not None:
            check()


def active_dataset_users(conn: sa.Connection, name: str, version: str) -> list[int]:
    """Ids of the jobs that may still read ``name:version`` (not ended), read in ``conn``'s transaction."""
    return list(conn.execute(sa.select(jobs.c.id).where(
        jobs.c.dataset == f"{name}:{version}",
        jobs.c.state.in_([s.value for s in JobState if not s.is_terminal()]),
    ).order_by(jobs.c.id)).scalars())


def jobs_using_dataset(
    db: Database, name: str, version: str, *, active_only: bool = False, user: User | None = None,
) -> list[Job]:
    """Jobs pinned to dataset version ``name:version``, oldest first; ``active_only``: those
    that may still read it (queued, starting, running, stopping); ``user``: only theirs
    unless admin."""
    cond = [jobs.c.dataset == f"{name}:{version}"]
    if active_only:
        cond.append(jobs.c.state.in_([s.value for s in JobState if not s.is_terminal()]))
    if user is not None and not user.is_admin:
        cond.append(jobs.c.user_id == user.id)
    with db.read() as conn:
        rows = conn.execute(_job_query().where(*cond).order_by(jobs.c.id)).all()
    return [job_from_row(r) for r in rows]


def job_attempts(db: Database, job_id: int) -> list[Attempt]:
    with db.read() as conn:
        rows = conn.execute(sa.select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.number)).all()
    return [attempt_from_row(r) for r in rows]


def get_attempt(db: Database, attempt_id: int) -> Attempt | None:
    with db.read() as conn:
        row = conn.execute(sa.select(attempts).where(attempts.c.id == attempt_id)).first()
    return attempt_from_row(row) if row else None


def attempt_by_number(db: Database, job_id: int, number: int) -> Attempt | None:
    with db.read() as conn:
        row = conn.execute(
            sa.select(attempts).where(attempts.c.job_id == job_id, attempts.c.number == number)
        ).first()
    return attempt_from_row(row) if row else None


def job_events(db: Database, job_id: int, *, after_id: int = 0) -> list[Event]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(events).where(events.c.job_id == job_id, events.c.id > after_id).order_by(events.c.id)
        ).all()
    return [event_from_row(r) for r in rows]


def events_since(db: Database, after_id: int, *, user: User | None = None, limit: int = 500) -> list[Event]:
    """State-change events of every job (of ``user``'s jobs unless admin) after ``after_id``."""
    query = sa.select(events).order_by(events.c.id).where(events.c.id > after_id).limit(limit)
    if user is not None and not user.is_admin:
        query = query.join(jobs, jobs.c.id == events.c.job_id).where(jobs.c.user_id == user.id)
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [event_from_row(r) for r in rows]


def last_event_id(db: Database) -> int:
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))).scalar_one()


@dataclass(frozen=True)
class QueuedJob:
    """What the scheduler needs of a queued job, read without parsing its spec."""

    id: int
    user_id: int
    priority: int
    queued_at: float
    resources: Resources  # per node
    max_runtime: float
    nodes: int = 1
    node_labels: dict[str, str] = field(default_factory=dict)


def queued_jobs(db: Database) -> list[QueuedJob]:
    c = jobs.c
    with db.read() as conn:
        rows = conn.execute(
            sa.select(c.id, c.user_id, c.priority, c.queued_at, c.gpus, c.cpus, c.memory, c.max_runtime,
                      c.nodes, c.node_labels)
            .where(c.state == JobState.QUEUED.value)
        ).all()
    return [
        QueuedJob(r.id, r.user_id, r.priority, r.queued_at,
                  Resources.model_construct(gpus=r.gpus, cpus=r.cpus, memory=r.memory), r.max_runtime,
                  r.nodes, parse_labels(r.node_labels) if r.node_labels else {})
        for r in rows
    ]


def active_attempts(db: Database) -> list[Attempt]:
    states = [s.value for s in (JobState.STARTING, JobState.RUNNING, JobState.STOPPING)]
    with db.read() as conn:
        rows = conn.execute(sa.select(attempts).where(attempts.c.state.in_(states))).all()
    return [attempt_from_row(r) for r in rows]


def place(
    db: Database, job_id: int, *, token: str, executor: str, now: float | None = None,
    gpus: Sequence[int] = (), cpuset: Sequence[int] = (), slices: Sequence[NodeSlice] = (),
) -> tuple[Job, Attempt] | None:
    """Claim a queued job for a new attempt on ``slices`` (one per node rank; or, on the local node,
    GPUs ``gpus`` and cores ``cpuset``); None if it is no longer queued."""
    slices = tuple(slices) or (NodeSlice(LOCAL_NODE, tuple(gpus), tuple(cpuset)),)
    gpus, cpuset = slices[0].gpus, slices[0].cores
    now = time.time() if now is None else now
    with db.write() as conn:
        row = conn.execute(sa.select(jobs.c.attempt, jobs.c.cpus, jobs.c.memory).where(jobs.c.id == job_id)).first()
        if row is None:
            return None
        number = row.attempt + 1
        if not _transition(conn, job_id, JobState.QUEUED, JobState.STARTING, now=now, attempt_no=number,
                           reason="placed", attempt=number, exit_code=None, message=None, ended_at=None):
            return None
        attempt_id = conn.execute(attempts.insert().values(
            job_id=job_id, number=number, state=JobState.STARTING.value, gpus=format_gpus(list(gpus)),
            cpuset=format_gpus(list(cpuset)), nodes=format_slices(slices),
            cpus=row.cpus, memory=row.memory, token_hash=hash_token(token), executor=executor,
            created_at=now, last_heartbeat=now, last_seq=0, log_count=0, stop_requested=False,
        ).returning(attempts.c.id)).scalar_one()
        if len(slices) > 1:  # each node rank past 0 reports on a stream of its own (db/ranks.py)
            conn.execute(attempt_ranks.insert(), [
                {"attempt_id": attempt_id, "rank": r, "node": s.node, "state": JobState.STARTING.value,
                 "last_seq": 0, "last_heartbeat": now} for r, s in enumerate(slices) if r])
    attempt = get_attempt(db, attempt_id)
    assert attempt is not None
    return get_job(db, job_id), attempt


def set_handle(db: Database, attempt_id: int, handle: str, *, now: float | None = None) -> None:
    """The supervisor was started (``handle`` finds it): its silence counts from now, not from the
    placement, since starting it can take seconds (a Ray actor's worker is a fresh interpreter)."""
    now = time.time() if now is None else now
    with db.write() as conn:
        conn.execute(attempts.update().where(attempts.c.id == attempt_id)
                     .values(handle=handle, last_heartbeat=sa.func.greatest(attempts.c.last_heartbeat, now)
                             if not db.is_sqlite else sa.func.max(attempts.c.last_heartbeat, now)))


def mark_running(conn: sa.Connection, attempt: Attempt, *, now: float) -> bool:
    """The supervisor reported that the command started."""
    moved = _attempt_transition(conn, attempt.id, JobState.STARTING, JobState.RUNNING, started_at=now)
    if moved:
        _transition(conn, attempt.job_id, JobState.STARTING, JobState.RUNNING, now=now, attempt_no=attempt.number,
                    reason="command started", started_at=now)
    return moved


def finish_attempt(
    conn: sa.Connection, attempt: Attempt, reason: TerminationReason, *, exit_code: int | None,
    message: str | None, now: float,
) -> JobState | None:
    """End an attempt. Returns the job's final state, or None if the job was requeued (retry)
    or the attempt had already ended. An attempt asked to stop ends STOPPED whatever its
    command did (``jobs.states.ending_reason``)."""
    row = conn.execute(sa.select(attempts.c.state, attempts.c.stop_requested)
                       .where(attempts.c.id == attempt.id)).first()
    if row is None or not JobState(row.state).is_active():
        return None
    src = JobState(row.state)
    ending = ending_reason(src, reason)
    text = message or reason.message(exit_code)
    if ending is not reason:
        text = f"{ending.message()} ({text})"
    final = ending.to_state()
    ended = {"exit_code": exit_code, "reason": ending.value, "message": text, "ended_at": now}
    for step in _route(src, final):
        if not _attempt_transition(conn, attempt.id, src, step, **(ended if step is final else {})):
            return None
        src = step
    job = conn.execute(sa.select(jobs.c.state, jobs.c.attempt, jobs.c.retries_left).where(jobs.c.id == attempt.job_id)).first()
    if job is None or job.attempt != attempt.number or not JobState(job.state).is_active():
        return None
    src = JobState(job.state)
    retry = ending.retryable() and job.retries_left > 0 and not row.stop_requested
    for step in _route(src, final):
        values = {"exit_code": exit_code, "message": text, "ended_at": now} if step is final else {}
        if not _transition(conn, attempt.job_id, src, step, now=now, attempt_no=attempt.number,
                           reason=text if step is final else "stopped outside modelyard", tell=not retry, **values):
            return None
        src = step
    if retry:
        _transition(conn, attempt.job_id, final, JobState.QUEUED, now=now, attempt_no=attempt.number,
                    reason=f"retry ({job.retries_left - 1} left)", retries_left=job.retries_left - 1,
                    queued_at=now)
        return None
    return final


def end_attempt(
    db: Database, attempt: Attempt, reason: TerminationReason, *, exit_code: int | None = None,
    message: str | None = None, now: float | None = None,
) -> JobState | None:
    """``finish_attempt`` in its own transaction (for the scheduler and executors)."""
    now = time.time() if now is None else now
    with db.write() as conn:
        return finish_attempt(conn, attempt, reason, exit_code=exit_code, message=message, now=now)


def _locked_state(db: Database, conn: sa.Connection, job_id: int) -> tuple[JobState, int]:
    """The job's state and attempt number, read inside the write transaction (row-locked on
    PostgreSQL; SQLite's BEGIN IMMEDIATE already excludes other writers), so a decision made
    on it cannot race the supervisor's own report."""
    query = sa.select(jobs.c.state, jobs.c.attempt).where(jobs.c.id == job_id)
    row = conn.execute(query if db.is_sqlite else query.with_for_update()).first()
    if row is None:
        raise not_found(f"job {job_id}")
    return JobState(row.state), row.attempt


def request_stop(db: Database, job: Job, *, now: float | None = None, actor: str | None = None) -> Attempt | None:
    """Stop a job. A queued one stops at once; an active one goes STOPPING and its attempt,
    returned, is to be cancelled by its executor."""
    now = time.time() if now is None else now
    with db.write() as conn:
        state, number = _locked_state(db, conn, job.id)
        current = sa.select(attempts).where(attempts.c.job_id == job.id, attempts.c.number == number)
        if state is JobState.QUEUED:
            _transition(conn, job.id, state, JobState.STOPPED, now=now, attempt_no=number,
                        reason="stopped by user", actor=actor, ended_at=now, message="stopped by a user")
            return None
        if state is JobState.RUNNING and job.kind == "run":  # no process to wait for: it stops at once
            _end_run(conn, job.id, JobState.STOPPED, now=now, reason="stopped by user", actor=actor,
                     message="stopped by a user")
            return None
        if state in (JobState.STARTING, JobState.RUNNING):
            _transition(conn, job.id, state, JobState.STOPPING, now=now, attempt_no=number,
                        reason="stop requested by user", actor=actor)
            row = conn.execute(current).first()
            if row is not None and JobState(row.state) in (JobState.STARTING, JobState.RUNNING):
                _attempt_transition(conn, row.id, JobState(row.state), JobState.STOPPING, stop_requested=True)
        elif state is not JobState.STOPPING:
            raise ModelyardError(ErrorCode.CONFLICT, f"job {job.id} has already ended ({state.value})")
        row = conn.execute(current).first()
        return attempt_from_row(row) if row else None


def requeue(db: Database, job: Job, *, reason: str = "restarted by user", now: float | None = None,
            dataset_check: Callable[[], object] | None = None, actor: str | None = None,
            queue_check: Callable[[sa.Connection], object] | None = None) -> Job:
    """Restart an ended job: back to QUEUED; its next placement adds an attempt.
    ``dataset_check`` and ``queue_check`` as in ``create_job``, for the version the job is
    pinned to and its owner's queue."""
    now = time.time() if now is None else now
    if job.kind == "run":
        raise no_process(job.id, "restarted")
    with db.write() as conn:
        _hold_dataset(conn, job.dataset, dataset_check)
        if queue_check is not None:
            queue_check(conn)
        state, number = _locked_state(db, conn, job.id)
        if not state.is_terminal():
            raise ModelyardError(ErrorCode.CONFLICT, f"job {job.id} is {state.value}; stop it before restarting")
        if conn.execute(sa.select(jobs.c.removed_at).where(jobs.c.id == job.id)).scalar() is not None:
            raise ModelyardError(ErrorCode.CONFLICT, f"job {job.id} was removed (only its final/ is kept); "
                                 "clone it to run it again")
        _transition(conn, job.id, state, JobState.QUEUED, now=now, attempt_no=number, reason=reason,
                    actor=actor, queued_at=now, retries_left=job.spec.retries, exit_code=None, message=None, ended_at=None)
    return get_job(db, job.id)


def no_process(job_id: int, what: str) -> ModelyardError:
    """What restart and clone answer for a run with no process: there is no command to run again."""
    return ModelyardError(ErrorCode.CONFLICT, f"job {job_id} is an MLflow run with no process (its script logs "
                          f"from outside modelyard); it cannot be {what}")


def create_run(db: Database, *, user: User, spec: JobSpec, experiment_id: int | None, now: float | None = None,
               started_at: float | None = None, actor: str | None = None, tags: Mapping[str, str] | None = None) -> int:
    """A run with no process (kind "run", README "MLflow"): RUNNING from the start, with no attempt;
    the script that made it logs to it and ends it (``end_run``). Its id. ``tags``: its first MLflow
    tags, in the same transaction, so no run is ever listed without them."""
    now = time.time() if now is None else now
    with db.write() as conn:
        job_id = conn.execute(jobs.insert().values(
            **_fresh_id(conn), user_id=user.id, name=spec.name or "run", state=JobState.RUNNING.value, priority=0,
            gpus=0, cpus=0, memory=0, max_runtime=spec.max_runtime, spec=orjson.dumps(spec.model_dump(mode="json")).decode(),
            retries_left=0, attempt=0, created_at=now, queued_at=now, started_at=started_at or now,
            kind="run", experiment_id=experiment_id,
        ).returning(jobs.c.id)).scalar_one()
        conn.execute(events.insert().values(
            job_id=job_id, attempt=0, time=now, from_state=None, to_state=JobState.RUNNING.value,
            reason="created by its MLflow client", actor=actor))
        if tags:
            run_data.set_tags(conn, job_id, tags)
    return job_id


def join_experiment(db: Database, job_id: int, experiment_id: int) -> bool:
    """Put a job's run, still in its owner's Default, into ``experiment_id`` (its script named it:
    README "MLflow"). Compare-and-set: a run already in an experiment stays there; False then."""
    with db.write() as conn:
        return bool(conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.experiment_id.is_(None))
                                 .values(experiment_id=experiment_id)).rowcount)


def end_run(db: Database, job_id: int, state: JobState, *, now: float | None = None, ended_at: float | None = None,
            actor: str | None = None) -> bool:
    """End a running run with no process as its client says (update-run); False if it had ended."""
    now = time.time() if now is None else now
    with db.write() as conn:
        return _end_run(conn, job_id, state, now=now, ended_at=ended_at, actor=actor,
                        reason=f"ended by its MLflow client ({state.value})", message=None)


def _end_run(conn: sa.Connection, job_id: int, final: JobState, *, now: float, reason: str, actor: str | None,
             message: str | None, ended_at: float | None = None) -> bool:
    src = JobState.RUNNING
    for step in _route(src, final):
        values = {"ended_at": ended_at or now, "message": message} if step is final else {}
        if not _transition(conn, job_id, src, step, now=now, attempt_no=0, reason=reason, actor=actor, **values):
            return False
        src = step
    return True


def update_run(db: Database, job_id: int, **values: Any) -> None:
    """A run's name or MLflow lifecycle (``run_deleted_at``); never its state (``_transition`` does that)."""
    assert set(values) <= {"name", "run_deleted_at"}, values
    with db.write() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))


def requeue_unstarted(db: Database, attempt: Attempt, message: str, *, now: float | None = None) -> bool:
    """An attempt whose supervisor never came up (found so after a server restart): the attempt
    ends LOST, and its job, still STARTING, goes back to the queue without spending a retry.
    False if either had moved on meanwhile (the supervisor reported after all)."""
    now = time.time() if now is None else now
    with db.write() as conn:
        if not _attempt_transition(conn, attempt.id, JobState.STARTING, JobState.LOST,
                                   reason=TerminationReason.SUPERVISOR_LOST.value, message=message, ended_at=now):
            return False
        return _transition(conn, attempt.job_id, JobState.STARTING, JobState.QUEUED, now=now,
                           attempt_no=attempt.number, reason=f"requeued: {message}", queued_at=now)


def unplace(db: Database, attempt: Attempt, message: str, *, now: float | None = None) -> None:
    """The executor could not launch the supervisor: the attempt fails (start_failed)."""
    end_attempt(db, attempt, TerminationReason.START_FAILED, message=message, now=now)


@dataclass(frozen=True)
class Allocation:
    """What an active attempt holds, and when it is expected to end at the latest."""

    job_id: int
    user_id: int
    resources: Resources  # per node
    gpus: tuple[int, ...]  # rank 0's
    expected_end: float
    cores: tuple[int, ...] = ()  # rank 0's
    slices: tuple[NodeSlice, ...] = ()  # one per node rank


def running_allocations(db: Database) -> list[Allocation]:
    states = [s.value for s in (JobState.STARTING, JobState.RUNNING, JobState.STOPPING)]
    a, j = attempts.c, jobs.c
    with db.read() as conn:
        rows = conn.execute(
            sa.select(a.job_id, j.user_id, a.gpus, a.cpus, a.memory, a.created_at, a.started_at, j.max_runtime,
                      a.cpuset, a.nodes)
            .join(jobs, (jobs.c.id == a.job_id) & (jobs.c.attempt == a.number))
            .where(a.state.in_(states))
        ).all()
    out = []
    for r in rows:
        gpus = tuple(int(x) for x in r.gpus.split(",")) if r.gpus else ()
        out.append(Allocation(
            r.job_id, r.user_id, Resources.model_construct(gpus=len(gpus), cpus=r.cpus, memory=r.memory), gpus,
            (r.started_at or r.created_at) + r.max_runtime, parse_gpus(r.cpuset),
            parse_slices(r.nodes) or (NodeSlice(LOCAL_NODE, gpus, parse_gpus(r.cpuset)),),
        ))
    return out
