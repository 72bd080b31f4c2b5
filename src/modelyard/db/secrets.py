"""A user's stored secrets: names, dates and sealed values (never a value in clear).

Every query here is limited to one user: another user's secret is not found,
whatever its name. Sealing and opening happen above (modelyard/secrets.py);
this module only keeps the tokens.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from modelyard.db.engine import Database
from modelyard.db.schema import secrets


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown of a stored secret: never its value."""

    name: str
    created_at: float
    updated_at: float


def put_secret(db: Database, user_id: int, name: str, ciphertext: str, *, now: float | None = None) -> SecretInfo:
    """Store or replace the user's secret ``name`` (one statement: two writers cannot both insert)."""
    now = time.time() if now is None else now
    with db.write() as conn:
        insert: Any = (sqlite.insert if db.is_sqlite else postgresql.insert)(secrets)
        conn.execute(insert.values(user_id=user_id, name=name, ciphertext=ciphertext, created_at=now, updated_at=now)
                     .on_conflict_do_update(index_elements=["user_id", "name"],
                                            set_={"ciphertext": ciphertext, "updated_at": now}))
        row = conn.execute(_of(user_id, name)).one()
    return _info(row)


def list_secrets(db: Database, user_id: int) -> list[SecretInfo]:
    with db.read() as conn:
        rows = conn.execute(sa.select(secrets).where(secrets.c.user_id == user_id).order_by(secrets.c.name)).all()
    return [_info(r) for r in rows]


def get_secret(db: Database, user_id: int, name: str) -> SecretInfo | None:
    with db.read() as conn:
        row = conn.execute(_of(user_id, name)).first()
    return _info(row) if row else None


def delete_secret(db: Database, user_id: int, name: str) -> bool:
    with db.write() as conn:
        return conn.execute(
            secrets.delete().where(secrets.c.user_id == user_id, secrets.c.name == name)).rowcount == 1


def ciphertexts(db: Database, user_id: int, names: Iterable[str]) -> dict[str, str]:
    """The sealed values of those of ``names`` the user has stored (a missing name is absent)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    with db.read() as conn:
        rows = conn.execute(sa.select(secrets.c.name, secrets.c.ciphertext)
                            .where(secrets.c.user_id == user_id, secrets.c.name.in_(wanted))).all()
    return {r.name: r.ciphertext for r in rows}


def _of(user_id: int, name: str) -> sa.Select[Any]:
    return sa.select(secrets).where(secrets.c.user_id == user_id, secrets.c.name == name)


def _info(row: sa.Row[Any]) -> SecretInfo:
    return SecretInfo(name=row.name, created_at=row.created_at, updated_at=row.updated_at)
