"""Users, their API tokens and their webhook secrets.

A token is ``my_`` and 43 url-safe characters. The table keeps its sha256 (a
leaked database leaks no usable token), a name, its first ``PREFIX_LEN``
characters in clear (so a listing can say which token is which, and
``token revoke`` can name one) and an expiry. An expired token is refused
exactly like an unknown one; a revoked one is deleted.
"""
from __future__ import annotations

import hashlib
import secrets
import time

import sqlalchemy as sa

from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.db import auth_cache
from modelyard.db.engine import Database
from modelyard.db.records import Token, User, token_from_row
from modelyard.db.schema import jobs, tokens, users, webhook_secrets
from modelyard.jobs import JobState

# "my_" and 5 random characters: enough to tell a user's tokens apart, far too few to help guess the rest
PREFIX_LEN = 8


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "my_" + secrets.token_urlsafe(32)


def _check_name(name: str) -> None:
    if not name or len(name) > 100 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ModelyardError(ErrorCode.INVALID, "use 1-100 letters, digits, '-', '_' or '.'", field="name")


def create_user(db: Database, name: str, *, admin: bool = False, expires_at: float | None = None,
                token_name: str = "first token") -> tuple[User, str]:
    """A new user and its first token (the only time the token is seen in clear)."""
    _check_name(name)
    token = new_token()
    with db.write() as conn:
        if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first():
            raise ModelyardError(ErrorCode.CONFLICT, f"user {name!r} already exists", field="name")
        uid = conn.execute(
            users.insert().values(name=name, is_admin=admin, created_at=time.time()).returning(users.c.id)
        ).scalar_one()
        conn.execute(tokens.insert().values(**_token_row(uid, token, token_name, expires_at)))
    return User(uid, name, admin), token


def _token_row(user_id: int, token: str, name: str, expires_at: float | None) -> dict[str, object]:
    return {"user_id": user_id, "token_hash": hash_token(token), "created_at": time.time(), "name": name,
            "prefix": token[:PREFIX_LEN], "expires_at": expires_at}


def get_user_by_name(db: Database, name: str) -> User | None:
    with db.read() as conn:
        row = conn.execute(sa.select(users).where(users.c.name == name)).first()
    return User(row.id, row.name, bool(row.is_admin)) if row else None


def add_token(db: Database, user_id: int, token: str | None = None, *, name: str = "",
              expires_at: float | None = None) -> str:
    """Store a token for ``user_id`` (a new random one unless given) and return it."""
    token = token or new_token()
    with db.write() as conn:
        conn.execute(tokens.insert().values(**_token_row(user_id, token, name, expires_at)))
    return token


def add_named_token(db: Database, user_id: int, *, name: str, expires_at: float | None) -> tuple[Token, str]:
    """``token create``: the new token's listing entry, and the token (shown this once)."""
    if len(name) > 100:
        raise ModelyardError(ErrorCode.INVALID, "at most 100 characters", field="name")
    token = new_token()
    with db.write() as conn:
        tid = conn.execute(tokens.insert().values(**_token_row(user_id, token, name, expires_at))
                           .returning(tokens.c.id)).scalar_one()
        row = conn.execute(_listing().where(tokens.c.id == tid)).one()
    return token_from_row(row), token


def user_for_token(db: Database, token: str, *, now: float | None = None) -> User | None:
    """The user a live token speaks for; None for an unknown, revoked or expired one."""
    found = live_token(db, token, now=now)
    return found[0] if found else None


def kept_token_user(db: Database, token: str) -> User | None:
    """The user a token was just found to speak for (db/auth_cache.py), else None: ask ``user_for_token``."""
    found = db.auth_cache.kept(("user", hash_token(token)))
    return found[0] if found else None


def kept_run_token(db: Database, token: str) -> tuple[User, int, int] | None:
    """``user_for_run_token``'s answer if it was just given (db/auth_cache.py), else None: ask it."""
    return db.auth_cache.kept(("run", hash_token(token)))  # type: ignore[no-any-return]


def live_token(db: Database, token: str, *, now: float | None = None) -> tuple[User, Token] | None:
    """A live token's user and listing entry (a sign-in ties its session to it); kept a moment in
    ``db.auth_cache`` (db/auth_cache.py says when it is dropped)."""
    now = time.time() if now is None else now
    token_hash = hash_token(token)

    def load() -> tuple[tuple[User, Token], float | None] | None:
        with db.read() as conn:
            row = conn.execute(
                _listing().add_columns(users.c.is_admin).where(tokens.c.token_hash == token_hash)
                .where(sa.or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now))
            ).first()
        return ((User(row.user_id, row.owner, bool(row.is_admin)), token_from_row(row)), row.expires_at) if row else None
    return db.auth_cache.lookup(("user", token_hash), load, now=now)


def _listing() -> sa.Select:
    return (sa.select(tokens.c.id, tokens.c.user_id, users.c.name.label("owner"), tokens.c.name, tokens.c.prefix,
                      tokens.c.created_at, tokens.c.expires_at)
            .join(users, users.c.id == tokens.c.user_id))


def list_tokens(db: Database, *, user_id: int | None) -> list[Token]:
    """A user's tokens (``user_id``), or everyone's (None: admins), oldest first."""
    query = _listing().order_by(tokens.c.id)
    if user_id is not None:
        query = query.where(tokens.c.user_id == user_id)
    with db.read() as conn:
        return [token_from_row(r) for r in conn.execute(query)]


def revoke_token(db: Database, ref: str, *, user: User) -> Token:
    """Delete the token named by its id or prefix; another user's is not found, unless ``user`` is an admin."""
    ref = ref.strip().rstrip("….")
    query = _listing().where(tokens.c.id == int(ref)) if ref.isdigit() else _listing().where(tokens.c.prefix == ref)
    if not user.is_admin:
        query = query.where(tokens.c.user_id == user.id)
    with db.write() as conn:
        rows = conn.execute(query).all() if ref else []
        if not rows:
            raise not_found(f"token {ref!r}")
        if len(rows) > 1:
            raise ModelyardError(ErrorCode.CONFLICT, f"{len(rows)} tokens start with {ref!r}; name one by its id",
                                 field="token")
        conn.execute(tokens.delete().where(tokens.c.id == rows[0].id))
        auth_cache.changed(conn)
    return token_from_row(rows[0])


def remove_named_tokens(db: Database, user_id: int, name: str) -> int:
    """Delete ``user_id``'s tokens named ``name`` (a console's, when its job ends); how many."""
    with db.write() as conn:
        auth_cache.changed(conn)
        return conn.execute(tokens.delete().where(tokens.c.user_id == user_id, tokens.c.name == name)).rowcount


def webhook_secret(db: Database, user_id: int, *, rotate: bool = False) -> str:
    """The user's webhook signing secret, made on first use (or replaced, with ``rotate``)."""
    try:
        return _webhook_secret(db, user_id, rotate=rotate)
    except sa.exc.IntegrityError:  # two first uses at once (PostgreSQL): the other one's secret stands
        return _webhook_secret(db, user_id, rotate=False)


def _webhook_secret(db: Database, user_id: int, *, rotate: bool) -> str:
    with db.write() as conn:
        found = conn.execute(sa.select(webhook_secrets.c.secret).where(webhook_secrets.c.user_id == user_id)).first()
        if found and not rotate:
            return found.secret
        secret = "whsec_" + secrets.token_urlsafe(32)
        if found:
            conn.execute(webhook_secrets.update().where(webhook_secrets.c.user_id == user_id).values(secret=secret))
        else:
            conn.execute(webhook_secrets.insert().values(user_id=user_id, secret=secret, created_at=time.time()))
    return secret


def job_uid(db: Database, user_id: int, uids: tuple[int, int]) -> int:
    """The uid ``user_id``'s jobs run as, drawn from ``uids`` the first time and kept on the user row.

    Only the scheduler loop draws (one thread per server), so the next free uid is
    read and written in one write transaction; the unique column is the backstop."""
    lo, hi = uids
    with db.write() as conn:
        uid = conn.execute(sa.select(users.c.job_uid).where(users.c.id == user_id)).scalar_one()
        if uid is not None and lo <= uid <= hi:
            return int(uid)
        taken = conn.execute(sa.select(sa.func.max(users.c.job_uid)).where(users.c.job_uid.between(lo, hi))).scalar()
        uid = lo if taken is None else int(taken) + 1
        if uid > hi:
            raise ModelyardError(ErrorCode.UNSATISFIABLE, f"no uid left in MODELYARD_JOB_UIDS={lo}-{hi} for "
                                 "another user; widen the range", field="MODELYARD_JOB_UIDS")
        conn.execute(users.update().where(users.c.id == user_id).values(job_uid=uid))
    return uid


def user_for_run_token(db: Database, token: str) -> tuple[User, int, int] | None:
    """``(owner, job id, attempt id)`` for a live attempt's run token (jobs/run_token.py), else None.

    One answer for every refusal (no such attempt, a wrong token, an attempt that has ended), so a
    wrong token tells nothing of which attempts exist."""
    from modelyard.jobs.run_token import check_run_token, token_attempt
    from modelyard.db.schema import attempts

    attempt_id = token_attempt(token)
    if attempt_id is None:
        return None
    a = attempts.c

    def load() -> tuple[tuple[User, int, int], None] | None:
        with db.read() as conn:
            row = conn.execute(
                sa.select(a.job_id, a.state, a.token_hash, users.c.id, users.c.name, users.c.is_admin)
                .join(jobs, jobs.c.id == a.job_id).join(users, users.c.id == jobs.c.user_id)
                .where(a.id == attempt_id)).first()
        if row is None or not check_run_token(token, attempt_id, row.token_hash):
            return None
        if JobState(row.state).is_terminal():
            return None
        return (User(id=row.id, name=row.name, is_admin=False), row.job_id, attempt_id), None
    # kept a moment, as a user's token is; an attempt's end drops it (db/jobs.py _attempt_transition)
    return db.auth_cache.lookup(("run", hash_token(token)), load)
