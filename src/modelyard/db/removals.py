"""Removing a job's rows, moving ended attempts' logs out, and the record of what was removed.

Nomenclature: *purge* deletes rows of the db; *removal* is a row of ``removals``,
the record that outlives what it names (``modelyard admin removals``). Large
deletes go in batches of ``DELETE_BATCH`` rows, each its own short transaction, so a
57 MB log leaving the db never holds SQLite's one writer long enough to stall
the supervisors' reports.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from modelyard.db import auth_cache
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs import JobState
from modelyard.jobs.states import TERMINAL
from modelyard.db.engine import Database
from modelyard.db.schema import (
    attempt_ranks, attempts, datasets, events, job_params, job_tags, jobs, log_lines, metric_chunks, notices, removals,
    system_metrics, users,
)

BATCH = 20_000  # rows read a page at a time
# rows deleted a transaction: ~50 ms of SQLite's one writer here (bench/log_tail.py), so a report waits little
DELETE_BATCH = 2_000
_ENDED = [s.value for s in TERMINAL]


@dataclass(frozen=True)
class Removal:
    id: int
    job_id: int | None
    user_id: int | None
    owner: str | None
    what: str
    detail: str
    bytes: int
    reason: str
    actor: str | None
    time: float


def record(db: Database, rows: Sequence[dict[str, Any]], *, now: float | None = None) -> None:
    """Rows ``{job_id, user_id, what, detail, bytes, reason, actor}`` into ``removals``."""
    if not rows:
        return
    now = time.time() if now is None else now
    with db.write() as conn:
        conn.execute(removals.insert(), [{"time": now, **r} for r in rows])


def list_removals(db: Database, *, limit: int = 50, offset: int = 0, reason: str | None = None,
                  user_id: int | None = None) -> tuple[list[Removal], int]:
    """Newest first; ``user_id``: only that user's jobs' (a plain user's own listing)."""
    r = removals.c
    cond = []
    if reason:
        cond.append(r.reason == reason)
    if user_id is not None:
        cond.append(r.user_id == user_id)
    query = (sa.select(removals, users.c.name.label("owner")).outerjoin(users, users.c.id == r.user_id)
             .where(*cond).order_by(r.id.desc()).limit(limit).offset(offset))
    with db.read() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(removals).where(*cond)).scalar_one()
        rows = conn.execute(query).all()
    return [Removal(x.id, x.job_id, x.user_id, x.owner, x.what, x.detail, x.bytes, x.reason, x.actor, x.time)
            for x in rows], total


def mark_removed(db: Database, job_id: int, *, now: float) -> JobState | None:
    """Claim an ended job for removal (compare-and-set on its state, so a restart cannot slip in);
    None if it is gone or removed already. CONFLICT, naming the state, while it is not ended."""
    with db.write() as conn:
        res = conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state.in_(_ENDED),
                                               jobs.c.removed_at.is_(None)).values(removed_at=now))
        if res.rowcount == 1:
            return JobState(conn.execute(sa.select(jobs.c.state).where(jobs.c.id == job_id)).scalar_one())
        row = conn.execute(sa.select(jobs.c.state, jobs.c.removed_at).where(jobs.c.id == job_id)).first()
    if row is None or row.removed_at is not None:
        return None
    raise ModelyardError(ErrorCode.CONFLICT, f"job {job_id} is {row.state}: stop it first")


def snapshot_in_use(db: Database, key: str, *, besides: int) -> bool:
    """Whether a job other than ``besides`` still names the snapshot ``key`` (snapshots are shared by content)."""
    with db.read() as conn:
        return conn.execute(sa.select(jobs.c.id).where(jobs.c.snapshot_key == key, jobs.c.id != besides)
                            .limit(1)).first() is not None


def attempt_ids(db: Database, job_id: int) -> list[int]:
    with db.read() as conn:
        return list(conn.execute(sa.select(attempts.c.id).where(attempts.c.job_id == job_id)).scalars())


def purge_logs(db: Database, attempt_id: int, *, below: int | None = None) -> int:
    """Delete the attempt's log lines (those numbered below ``below`` only, if given); returns their bytes."""
    c = log_lines.c
    cond = [c.attempt_id == attempt_id] + ([c.n < below] if below is not None else [])
    with db.read() as conn:
        size = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(c.text)), 0)).where(*cond)).scalar_one()
        top = conn.execute(sa.select(sa.func.max(c.n)).where(*cond)).scalar()
    if top is None:
        return 0
    start = 0
    while start <= top:
        with db.write() as conn:
            conn.execute(log_lines.delete().where(*cond, c.n >= start, c.n < start + DELETE_BATCH))
        start += DELETE_BATCH
    return int(size)


def purge_metrics(db: Database, job_id: int) -> int:
    """Delete the job's metric chunks and system samples; returns their bytes (the points' blobs, roughly)."""
    m = metric_chunks.c
    with db.read() as conn:
        size = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(m.points)), 0))
                            .where(m.job_id == job_id)).scalar_one()
        samples = conn.execute(sa.select(sa.func.count()).select_from(system_metrics)
                               .where(system_metrics.c.job_id == job_id)).scalar_one()
    with db.write() as conn:
        conn.execute(metric_chunks.delete().where(m.job_id == job_id))
        conn.execute(system_metrics.delete().where(system_metrics.c.job_id == job_id))
    return int(size) + 64 * int(samples)


def delete_job_row(db: Database, job_id: int) -> None:
    """The job's row and everything that hangs on it (its log lines are purged first, in batches)."""
    ids = attempt_ids(db, job_id)
    with db.write() as conn:
        if ids:
            conn.execute(attempt_ranks.delete().where(attempt_ranks.c.attempt_id.in_(ids)))
            conn.execute(log_lines.delete().where(log_lines.c.attempt_id.in_(ids)))
        conn.execute(attempts.delete().where(attempts.c.job_id == job_id))
        auth_cache.changed(conn)  # a kept run token of its attempts names them
        conn.execute(events.delete().where(events.c.job_id == job_id))
        conn.execute(job_params.delete().where(job_params.c.job_id == job_id))
        conn.execute(job_tags.delete().where(job_tags.c.job_id == job_id))
        conn.execute(notices.update().where(notices.c.job_id == job_id).values(job_id=None))
        conn.execute(jobs.update().where(jobs.c.resume_from == job_id).values(resume_from=None))
        conn.execute(jobs.delete().where(jobs.c.id == job_id))


def forget_snapshot(db: Database, job_id: int) -> None:
    with db.write() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(snapshot_key=None))


# -- an ended attempt's log leaves the db (artifacts/logarchive.py) ------------------------------


@dataclass(frozen=True)
class EndedLog:
    attempt_id: int
    job_id: int
    number: int
    log_count: int


def logs_to_archive(db: Database, *, limit: int, ended_after: float | None = None) -> list[EndedLog]:
    """Ended attempts whose lines are still in the db, oldest end first; ``ended_after``: only those
    that ended since then (a look for lines costs an index probe per ended attempt)."""
    a = attempts.c
    has_lines = sa.exists().where(log_lines.c.attempt_id == a.id)
    cond = [a.state.in_(_ENDED), jobs.c.removed_at.is_(None)]  # a job being removed: its archive would outlive it
    if ended_after is not None:
        cond.append(a.ended_at >= ended_after)
    with db.read() as conn:
        rows = conn.execute(sa.select(a.id, a.job_id, a.number, a.log_count).join(jobs, jobs.c.id == a.job_id)
                            .where(*cond, has_lines).order_by(a.ended_at).limit(limit)).all()
    return [EndedLog(*r) for r in rows]


def has_log_rows(db: Database, attempt_id: int) -> bool:
    with db.read() as conn:
        return conn.execute(sa.select(log_lines.c.n).where(log_lines.c.attempt_id == attempt_id).limit(1)).first() \
            is not None


def log_rows(db: Database, attempt_id: int) -> Iterator[tuple[int, float, int, int, str]]:
    """Every line of the attempt, ``(n, t, stream, node, text)`` by n, read a page at a time."""
    c = log_lines.c
    after = -1
    while True:
        with db.read() as conn:
            rows = conn.execute(sa.select(c.n, c.t, c.stream, c.node_rank, c.text)
                                .where(c.attempt_id == attempt_id, c.n > after).order_by(c.n).limit(BATCH)).all()
        if not rows:
            return
        for n, t, stream, node, text in rows:  # by position: Row.t is the row as a tuple, not the column
            yield n, t, stream, node, text
        after = rows[-1][0]


# -- retention (MODELYARD_RETENTION) -----------------------------------------------------------


@dataclass(frozen=True)
class Expired:
    job_id: int
    user_id: int
    attempts: int
    snapshot_key: str | None
    removed: bool


def expired_jobs(db: Database, what: str, *, cutoff: float, limit: int, include_removed: bool = False) -> list[Expired]:
    """Ended jobs that ended before ``cutoff`` and have no retention removal of ``what`` since they
    last ended (a job restarted and ended again is due anew), oldest end first."""
    j, r = jobs.c, removals.c
    done = sa.exists().where(r.job_id == j.id, r.what == what, r.reason == "retention", r.time >= j.ended_at)
    cond = [j.state.in_(_ENDED), j.ended_at < cutoff, ~done]
    if not include_removed:
        cond.append(j.removed_at.is_(None))
    with db.read() as conn:
        rows = conn.execute(sa.select(j.id, j.user_id, j.attempt, j.snapshot_key, j.removed_at).where(*cond)
                            .order_by(j.ended_at).limit(limit)).all()
    return [Expired(x.id, x.user_id, x.attempt, x.snapshot_key, x.removed_at is not None) for x in rows]


# -- disk ----------------------------------------------------------------------------------------


def owners(db: Database) -> dict[int, tuple[int, str]]:
    """job id -> (owner's id, owner's name), for every job."""
    with db.read() as conn:
        rows = conn.execute(sa.select(jobs.c.id, users.c.id, users.c.name).join(users, users.c.id == jobs.c.user_id)).all()
    return {job_id: (uid, name) for job_id, uid, name in rows}


def dataset_owners(db: Database) -> dict[str, str]:
    with db.read() as conn:
        rows = conn.execute(sa.select(datasets.c.name, users.c.name).join(users, users.c.id == datasets.c.owner_id)).all()
    return {name: owner for name, owner in rows}


def database_bytes(db: Database) -> int | None:
    """What the database takes on disk: SQLite's file and its WAL, or PostgreSQL's database size."""
    if db.is_sqlite:
        path = db.writer.url.database
        if not path or path == ":memory:":
            return None
        return sum(os.path.getsize(p) for p in (path, path + "-wal", path + "-shm") if os.path.exists(p))
    with db.read() as conn:
        return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one())
