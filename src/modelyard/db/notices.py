"""Notices (what the bell shows) and each user's email and notification choices.

A notice is written by ``record``, in the transaction of the state change it
tells of (``db/jobs._transition``), so it exists exactly when the change
does: a page that sees the change's event finds its notice. Everything else
here reads or changes one user's own rows; another user's notice is not found.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from modelyard.errors import not_found
from modelyard.jobs import notify
from modelyard.db.engine import Database
from modelyard.db.schema import jobs, notices, users

MAX_TITLE = 300
WORDS = {"started": "started", "succeeded": "succeeded", "failed": "failed", "stopped": "was stopped",
         "timed_out": "timed out", "lost": "was lost"}


@dataclass(frozen=True)
class Notice:
    id: int
    user_id: int
    job_id: int | None
    event: str
    title: str
    body: str
    link: str | None
    created_at: float
    read_at: float | None


@dataclass(frozen=True)
class Profile:
    user_id: int
    name: str
    email: str | None
    notify: str | None  # the stored JSON (``jobs.notify.parse``)


def job_link(job_id: int) -> str:
    """Where a job's page is, relative to the server's public URL."""
    return f"/ui/jobs/{job_id}"


def title(job_id: int, name: str, event: str) -> str:
    # on one line: it is an email's Subject too, where a line break would start a header of the job's choosing
    return " ".join(f"Job #{job_id} {name} {WORDS.get(event, event)}".split())[:MAX_TITLE]


def record(conn: sa.Connection, job_id: int, event: str, *, reason: str | None, now: float) -> None:
    """The owner's notice of ``event`` of job ``job_id``, if their choices say so."""
    row = conn.execute(sa.select(jobs.c.user_id, jobs.c.name, users.c.notify)
                       .join(users, users.c.id == jobs.c.user_id).where(jobs.c.id == job_id)).first()
    if row is None or "notice" not in notify.channels(row.notify, event):
        return
    conn.execute(notices.insert().values(
        user_id=row.user_id, job_id=job_id, event=event, title=title(job_id, row.name, event),
        body=reason or "", link=job_link(job_id), created_at=now,
    ))


def _notice(row: sa.Row[Any]) -> Notice:
    m = row._mapping
    return Notice(**{k: m[k] for k in Notice.__dataclass_fields__})


def list_notices(db: Database, user_id: int, *, unread: bool = False, limit: int = 50) -> list[Notice]:
    """Newest first."""
    c = notices.c
    query = sa.select(notices).where(c.user_id == user_id)
    if unread:
        query = query.where(c.read_at.is_(None))
    with db.read() as conn:
        return [_notice(r) for r in conn.execute(query.order_by(c.id.desc()).limit(limit))]


def unread_count(db: Database, user_id: int) -> int:
    c = notices.c
    with db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(notices)
                                .where(c.user_id == user_id, c.read_at.is_(None))).scalar_one())


def mark_read(db: Database, user_id: int, notice_id: int, *, now: float | None = None) -> Notice:
    """Mark one of the user's notices read (a read one stays as it was)."""
    c = notices.c
    with db.write() as conn:
        conn.execute(notices.update().where(c.id == notice_id, c.user_id == user_id, c.read_at.is_(None))
                     .values(read_at=time.time() if now is None else now))
        row = conn.execute(sa.select(notices).where(c.id == notice_id, c.user_id == user_id)).first()
    if row is None:
        raise not_found(f"notice {notice_id}")
    return _notice(row)


def mark_all_read(db: Database, user_id: int, *, now: float | None = None) -> int:
    """How many were unread."""
    c = notices.c
    with db.write() as conn:
        return conn.execute(notices.update().where(c.user_id == user_id, c.read_at.is_(None))
                            .values(read_at=time.time() if now is None else now)).rowcount


def get_profile(db: Database, user_id: int) -> Profile:
    with db.read() as conn:
        row = conn.execute(sa.select(users.c.id, users.c.name, users.c.email, users.c.notify)
                           .where(users.c.id == user_id)).first()
    if row is None:
        raise not_found(f"user {user_id}")
    return Profile(row.id, row.name, row.email, row.notify)


def update_profile(db: Database, user_id: int, **values: str | None) -> Profile:
    """Set ``email`` and/or ``notify`` (the JSON) of a user."""
    assert set(values) <= {"email", "notify"}
    if values:
        with db.write() as conn:
            conn.execute(users.update().where(users.c.id == user_id).values(**values))
    return get_profile(db, user_id)
