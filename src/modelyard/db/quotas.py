"""Who may hold what: users' quotas and admin flags, and the usage rows fair share and the users page read.

A quota column NULL means the user has none of their own (the server's
``MODELYARD_DEFAULT_QUOTA`` applies, if set). The domain's Quota lives in
scheduler/policy.py; this module hands back plain records.
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from modelyard.db import auth_cache
from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.db.engine import Database
from modelyard.db.schema import attempts, jobs, users
from modelyard.jobs import JobState

QUOTA_COLUMNS = {"gpus": "quota_gpus", "cpus": "quota_cpus", "queued": "quota_queued"}


@dataclass(frozen=True)
class UserRow:
    id: int
    name: str
    is_admin: bool
    created_at: float
    email: str | None
    quota: dict[str, float | None]  # {"gpus": 4, "cpus": None, "queued": 20}


def _row(r: sa.Row) -> UserRow:
    return UserRow(r.id, r.name, bool(r.is_admin), r.created_at, r.email,
                   {k: getattr(r, c) for k, c in QUOTA_COLUMNS.items()})


def list_users(db: Database) -> list[UserRow]:
    with db.read() as conn:
        return [_row(r) for r in conn.execute(sa.select(users).order_by(users.c.name))]


def get_user(db: Database, name: str) -> UserRow:
    with db.read() as conn:
        r = conn.execute(sa.select(users).where(users.c.name == name)).first()
    if r is None:
        raise not_found(f"user {name!r}")
    return _row(r)


def get_user_by_id(db: Database, user_id: int) -> UserRow:
    with db.read() as conn:
        r = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    if r is None:
        raise not_found(f"user {user_id}")
    return _row(r)


def set_quota(db: Database, name: str, changes: dict[str, float | None]) -> UserRow:
    """Set the quotas named in ``changes`` (None clears one); the others stay."""
    values = {QUOTA_COLUMNS[k]: v for k, v in changes.items()}
    with db.write() as conn:
        if values and conn.execute(users.update().where(users.c.name == name).values(**values)).rowcount == 0:
            raise not_found(f"user {name!r}")
    return get_user(db, name)


def set_admin(db: Database, name: str, admin: bool) -> UserRow:
    """Make ``name`` an admin or not; the last admin stays one (else nobody could manage the server)."""
    with db.write() as conn:
        row = conn.execute(sa.select(users.c.id, users.c.is_admin).where(users.c.name == name)).first()
        if row is None:
            raise not_found(f"user {name!r}")
        if not admin and row.is_admin:
            others = conn.execute(sa.select(sa.func.count()).select_from(users)
                                  .where(users.c.is_admin.is_(True), users.c.id != row.id)).scalar_one()
            if not others:
                raise ModelyardError(ErrorCode.CONFLICT, f"{name} is the only admin; make another user an admin "
                                     "first", field="admin")
        conn.execute(users.update().where(users.c.id == row.id).values(is_admin=admin))
        auth_cache.changed(conn)  # a kept token of theirs says what they were
    return get_user(db, name)


def quota_rows(db: Database) -> dict[int, dict[str, float | None]]:
    """The users that have a quota of their own, and it (read by the scheduler on every pass)."""
    c = users.c
    with db.read() as conn:
        rows = conn.execute(sa.select(c.id, c.quota_gpus, c.quota_cpus, c.quota_queued).where(
            sa.or_(c.quota_gpus.is_not(None), c.quota_cpus.is_not(None), c.quota_queued.is_not(None)))).all()
    return {r.id: {"gpus": r.quota_gpus, "cpus": r.quota_cpus, "queued": r.quota_queued} for r in rows}


def queued_count(db: Database, user_id: int) -> int:
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
            jobs.c.user_id == user_id, jobs.c.state == JobState.QUEUED.value)).scalar_one()


def queue_room(conn: sa.Connection, user_id: int, limit: int) -> int | None:
    """In a write transaction: None if ``user_id`` may queue one more job under ``limit``, else
    how many they have queued. The user's row is locked first on PostgreSQL (SQLite's
    ``BEGIN IMMEDIATE`` already serialises writers), so concurrent submits count in turn."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(users.c.id).where(users.c.id == user_id).with_for_update())
    waiting = conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
        jobs.c.user_id == user_id, jobs.c.state == JobState.QUEUED.value)).scalar_one()
    return None if waiting < limit else waiting


def queued_counts(db: Database) -> dict[int, int]:
    with db.read() as conn:
        rows = conn.execute(sa.select(jobs.c.user_id, sa.func.count()).where(jobs.c.state == JobState.QUEUED.value)
                            .group_by(jobs.c.user_id)).all()
    return {r[0]: r[1] for r in rows}


@dataclass(frozen=True)
class SpanRow:
    user_id: int
    gpus: int  # per node
    cpus: float  # per node
    nodes: int
    started_at: float
    ended_at: float | None


def attempt_spans(db: Database, *, since: float, user_id: int | None = None) -> list[SpanRow]:
    """Attempts that ran and were still running at ``since`` or later (what fair share counts)."""
    a, j = attempts.c, jobs.c
    query = (sa.select(j.user_id, a.gpus, a.cpus, j.gpus.label("job_gpus"), j.nodes, a.started_at, a.ended_at)
             .join(jobs, j.id == a.job_id)
             .where(a.started_at.is_not(None), sa.or_(a.ended_at.is_(None), a.ended_at >= since)))
    if user_id is not None:
        query = query.where(j.user_id == user_id)
    with db.read() as conn:
        rows = conn.execute(query).all()
    # an attempt's gpus column names rank 0's indices; the job's holds the per-node count asked
    return [SpanRow(r.user_id, r.job_gpus, r.cpus, r.nodes or 1, r.started_at, r.ended_at) for r in rows]
