"""Dataset owners and history: the ``datasets`` and ``dataset_events`` tables.

A row says who owns a dataset name and whether it is public; the versions are the
manifests in the artifact store (``datasets/index.py``). A name in the store with
no row predates owners: ``ownership`` answers it as the first admin's, private.
Functions that take ``conn`` run in the caller's transaction, under the name's
lock (``store.jobs.lock_dataset``), so a claim, a removal and a submit agree.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from modelyard.datasets.access import PRIVATE, Ownership
from modelyard.db.engine import Database
from modelyard.db.records import User
from modelyard.db.schema import dataset_events, datasets, users


@dataclass(frozen=True)
class DatasetEvent:
    id: int
    name: str
    version: str | None
    action: str  # "created" | "removed" | "visibility"
    actor: str
    detail: str | None
    time: float


def _query() -> sa.Select[Any]:
    return sa.select(datasets, users.c.name.label("owner")).join(users, users.c.id == datasets.c.owner_id)


def _from_row(row: sa.Row[Any]) -> Ownership:
    return Ownership(row.name, row.owner_id, row.owner, row.visibility, row.created_at)


def first_admin(conn: sa.Connection) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.is_admin.is_(True)).order_by(users.c.id).limit(1)).first()
    return User(row.id, row.name, True) if row else None


def legacy(conn: sa.Connection, name: str) -> Ownership:
    """A name from before owners: the first admin's, private."""
    admin = first_admin(conn)
    return Ownership(name, admin.id if admin else None, admin.name if admin else None, PRIVATE, recorded=False)


def get(conn: sa.Connection, name: str) -> Ownership | None:
    row = conn.execute(_query().where(datasets.c.name == name)).first()
    return _from_row(row) if row else None


def ownership(db: Database, name: str) -> Ownership:
    with db.read() as conn:
        return get(conn, name) or legacy(conn, name)


def all_owners(db: Database) -> dict[str, Ownership]:
    """Every recorded name's ownership (listings filter the store's names with it)."""
    with db.read() as conn:
        return {o.name: o for o in map(_from_row, conn.execute(_query()).all())}


def default_owner(db: Database, name: str) -> Ownership:
    """What a name without a row is taken to be (see ``legacy``)."""
    with db.read() as conn:
        return legacy(conn, name)


def claim(conn: sa.Connection, name: str, owner: User, visibility: str, *, now: float | None = None) -> Ownership:
    """The name's row, inserted for ``owner`` if there is none."""
    found = get(conn, name)
    if found is not None:
        return found
    conn.execute(datasets.insert().values(name=name, owner_id=owner.id, visibility=visibility,
                                          created_at=time.time() if now is None else now))
    return get(conn, name)  # type: ignore[return-value]


def set_visibility(conn: sa.Connection, name: str, visibility: str) -> None:
    conn.execute(datasets.update().where(datasets.c.name == name).values(visibility=visibility))


def drop(conn: sa.Connection, name: str) -> None:
    """Forget a name (its last version is gone): its row and its history."""
    conn.execute(dataset_events.delete().where(dataset_events.c.name == name))
    conn.execute(datasets.delete().where(datasets.c.name == name))


def record(conn: sa.Connection, name: str, action: str, actor: User, *, version: str | None = None,
           detail: str | None = None, now: float | None = None) -> None:
    conn.execute(dataset_events.insert().values(name=name, version=version, action=action, actor_id=actor.id,
                                                detail=detail, time=time.time() if now is None else now))


def history(db: Database, name: str) -> list[DatasetEvent]:
    """What was done to ``name``, oldest first."""
    query = (sa.select(dataset_events, users.c.name.label("actor"))
             .join(users, users.c.id == dataset_events.c.actor_id)
             .where(dataset_events.c.name == name).order_by(dataset_events.c.id))
    with db.read() as conn:
        return [DatasetEvent(r.id, r.name, r.version, r.action, r.actor, r.detail, r.time)
                for r in conn.execute(query).all()]
