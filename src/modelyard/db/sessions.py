"""Web UI sessions: created by signing in, ended by signing out or by expiry.

The browser holds a random id; the table holds its sha256, the user, the
token signed in with (revoking it ends the session), and two deadlines: an absolute one (``expires_at``, however active the session is)
and an idle one (``last_seen`` + idle time). ``last_seen`` is written at most
once a ``TOUCH_EVERY`` seconds, so a page polling every few seconds does not
turn every read into a database write.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from modelyard.db.engine import Database
from modelyard.db.records import Token, User
from modelyard.db.schema import sessions, users

TOUCH_EVERY = 60.0


@dataclass(frozen=True)
class SessionPolicy:
    idle: float = 12 * 3600.0  # signed out after this long without a request
    absolute: float = 7 * 86400.0  # and after this long in any case


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def create_session(db: Database, user_id: int, policy: SessionPolicy, *, token: Token | None = None,
                   now: float | None = None) -> str:
    """A new session for ``user_id``, signed in with ``token``; returns the id for the cookie.

    The session ends with the token: when it is revoked (its row's deletion cascades)
    and, at the latest, when it expires."""
    now = time.time() if now is None else now
    session_id = secrets.token_urlsafe(32)
    ends = now + policy.absolute
    if token is not None and token.expires_at is not None:
        ends = min(ends, token.expires_at)
    with db.write() as conn:
        conn.execute(sessions.delete().where(sessions.c.expires_at <= now))  # keep the table to live sessions
        conn.execute(sessions.insert().values(session_hash=_hash(session_id), user_id=user_id,
                                              token_id=token.id if token else None, created_at=now,
                                              expires_at=ends, last_seen=now))
    return session_id


def session_user(db: Database, session_id: str, policy: SessionPolicy, *, now: float | None = None) -> User | None:
    """The user of a live session; None for an unknown, ended or expired one."""
    now = time.time() if now is None else now
    with db.read() as conn:
        row = conn.execute(
            sa.select(sessions.c.id, sessions.c.expires_at, sessions.c.last_seen, users.c.id.label("uid"),
                      users.c.name, users.c.is_admin)
            .join(users, users.c.id == sessions.c.user_id).where(sessions.c.session_hash == _hash(session_id))
        ).first()
    if row is None:
        return None
    if row.expires_at <= now or row.last_seen + policy.idle <= now:
        end_session(db, session_id)
        return None
    if now - row.last_seen >= TOUCH_EVERY:
        with db.write() as conn:
            conn.execute(sessions.update().where(sessions.c.id == row.id).values(last_seen=now))
    return User(row.uid, row.name, bool(row.is_admin))


def end_session(db: Database, session_id: str) -> None:
    with db.write() as conn:
        conn.execute(sessions.delete().where(sessions.c.session_hash == _hash(session_id)))
