"""Named environments and who may see them: this module is the only place that decides visibility.

An admin's environments are visible to every user; a user's own only to that
user (and to admins). A name a user cannot see answers not_found, exactly as a
name that does not exist, so a private environment's existence does not leak.
A name resolves to the user's own environment first, then an admin's (the
oldest), then, for an admin, anyone's.
"""
from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.jobs.environments import EnvironmentSpec
from modelyard.db.engine import Database
from modelyard.db.records import NamedEnvironment, User, environment_from_row
from modelyard.db.schema import environments, users


def _query() -> sa.Select[Any]:
    return sa.select(environments, users.c.name.label("owner"), users.c.is_admin.label("owner_is_admin")).join(
        users, users.c.id == environments.c.user_id)


def _visible_to(user: User) -> sa.ColumnElement[bool]:
    if user.is_admin:
        return sa.true()
    return sa.or_(environments.c.user_id == user.id, users.c.is_admin.is_(True))


def create_environment(db: Database, user: User, spec: EnvironmentSpec) -> NamedEnvironment:
    taken = ModelyardError(ErrorCode.CONFLICT, f"you already have an environment {spec.name!r}", field="name")
    try:
        with db.write() as conn:
            if conn.execute(sa.select(environments.c.id).where(
                    environments.c.user_id == user.id, environments.c.name == spec.name)).first():
                raise taken
            conn.execute(environments.insert().values(
                name=spec.name, user_id=user.id, image=spec.image, requirements=spec.requirements,
                description=spec.description, created_at=time.time()))
    except sa.exc.IntegrityError:  # the same name created at the same moment by another request
        raise taken from None
    return get_environment(db, spec.name, user=user)


def list_environments(db: Database, user: User) -> list[NamedEnvironment]:
    with db.read() as conn:
        rows = conn.execute(_query().where(_visible_to(user))).all()
    # by name; of one name, the one the name resolves to (``get_environment``) first
    return [environment_from_row(r) for r in sorted(rows, key=lambda r: (r.name, *_preference(r, user)))]


def get_environment(db: Database, name: str, *, user: User) -> NamedEnvironment:
    """The environment ``name`` as ``user`` sees it; not_found when there is none they may see."""
    with db.read() as conn:
        rows = conn.execute(_query().where(environments.c.name == name, _visible_to(user))).all()
    if not rows:
        raise not_found(f"environment {name!r}")
    return environment_from_row(min(rows, key=lambda r: _preference(r, user)))


def _preference(row: sa.Row[Any], user: User) -> tuple[bool, bool, int]:
    """Own first, then an admin's, then (for an admin) anyone's; the oldest of each."""
    return row.user_id != user.id, not row.owner_is_admin, row.id


def remove_environment(db: Database, name: str, *, user: User) -> NamedEnvironment:
    """Remove it: its owner or an admin. Another user's visible (an admin's) one is forbidden.
    Jobs already submitted with it keep what they were pinned to."""
    env = get_environment(db, name, user=user)
    if env.user_id != user.id and not user.is_admin:
        raise ModelyardError(ErrorCode.FORBIDDEN, f"environment {name!r} belongs to {env.owner}; only its owner or "
                             "an admin may remove it")
    with db.write() as conn:
        conn.execute(environments.delete().where(environments.c.id == env.id))
    return env
