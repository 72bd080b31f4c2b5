"""Users and their bearer tokens (stored as sha256 hashes)."""
from __future__ import annotations

import hashlib
import secrets
import time

import sqlalchemy as sa

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.store.db import Database
from modelyard.store.records import User
from modelyard.store.schema import tokens, users


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "my_" + secrets.token_urlsafe(32)


def create_user(db: Database, name: str, *, admin: bool = False) -> tuple[User, str]:
    """A new user and its first token (the only time the token is seen in clear)."""
    if not name or len(name) > 100 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ModelyardError(ErrorCode.INVALID, "use 1-100 letters, digits, '-', '_' or '.'", field="name")
    with db.write() as conn:
        if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first():
            raise ModelyardError(ErrorCode.CONFLICT, f"user {name!r} already exists", field="name")
        uid = conn.execute(
            users.insert().values(name=name, is_admin=admin, created_at=time.time()).returning(users.c.id)
        ).scalar_one()
        token = new_token()
        conn.execute(tokens.insert().values(user_id=uid, token_hash=hash_token(token), created_at=time.time()))
    return User(uid, name, admin), token


def get_user_by_name(db: Database, name: str) -> User | None:
    with db.read() as conn:
        row = conn.execute(sa.select(users).where(users.c.name == name)).first()
    return User(row.id, row.name, bool(row.is_admin)) if row else None


def add_token(db: Database, user_id: int, token: str | None = None) -> str:
    token = token or new_token()
    with db.write() as conn:
        conn.execute(tokens.insert().values(user_id=user_id, token_hash=hash_token(token), created_at=time.time()))
    return token


def user_for_token(db: Database, token: str) -> User | None:
    with db.read() as conn:
        row = conn.execute(
            sa.select(users).join(tokens, tokens.c.user_id == users.c.id).where(tokens.c.token_hash == hash_token(token))
        ).first()
    return User(row.id, row.name, bool(row.is_admin)) if row else None
