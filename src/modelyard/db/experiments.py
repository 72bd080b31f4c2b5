"""MLflow experiments: each user's own, unique by name per owner (README "MLflow").

Experiment "0" (MLflow's Default) is never stored: it is each user's jobs and runs with
``jobs.experiment_id`` NULL, so every user has one without a row. Ids here are the table's.
"""
from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.db.engine import Database
from modelyard.db.schema import experiments
from modelyard.jobs.mlflow_search import Clause, OrderKey

DEFAULT_ID = 0
DEFAULT_NAME = "Default"
ACTIVE, DELETED = "active", "deleted"


@dataclass(frozen=True)
class Experiment:
    id: int
    user_id: int
    name: str
    lifecycle_stage: str
    created_at: float
    updated_at: float
    tags: dict[str, str] = field(default_factory=dict)


def default_experiment(user_id: int) -> Experiment:
    return Experiment(DEFAULT_ID, user_id, DEFAULT_NAME, ACTIVE, 0.0, 0.0)


def _record(row: Any) -> Experiment:
    return Experiment(row.id, row.user_id, row.name, row.lifecycle_stage, row.created_at, row.updated_at,
                      orjson.loads(row.tags or "{}"))


class ExperimentExists(ModelyardError):
    """Another of the owner's experiments has the name (MLflow's RESOURCE_ALREADY_EXISTS)."""

    def __init__(self, name: str) -> None:
        super().__init__(ErrorCode.CONFLICT, f"an experiment named {name!r} already exists", field="name")


def create(db: Database, user_id: int, name: str, tags: Mapping[str, str], *, now: float | None = None) -> int:
    now = time.time() if now is None else now
    try:
        with db.write() as conn:
            if name == DEFAULT_NAME or _id_by_name(conn, user_id, name) is not None:
                raise ExperimentExists(name)
            return conn.execute(experiments.insert().values(
                user_id=user_id, name=name, lifecycle_stage=ACTIVE, tags=orjson.dumps(dict(tags)).decode(),
                created_at=now, updated_at=now).returning(experiments.c.id)).scalar_one()
    except sa.exc.IntegrityError:  # another create of the name committed in between (PostgreSQL)
        raise ExperimentExists(name) from None


def ensure(db: Database, user_id: int, name: str, *, now: float | None = None) -> Experiment:
    """The user's experiment ``name``, created (with no tags) if they have none: MLflow's
    ``set_experiment``, for a job submitted into it. Two at once make one; both get it."""
    for _ in range(2):
        found = by_name(db, user_id, name)
        if found is not None:
            return found
        try:
            create(db, user_id, name, {}, now=now)
        except ExperimentExists:
            pass  # the other one's: read it
    found = by_name(db, user_id, name)
    assert found is not None, name  # experiments are never removed, only marked deleted
    return found


def _id_by_name(conn: sa.Connection, user_id: int, name: str) -> int | None:
    c = experiments.c
    return conn.execute(sa.select(c.id).where(c.user_id == user_id, c.name == name)).scalar()


def get(db: Database, user_id: int, experiment_id: int) -> Experiment | None:
    """The user's experiment (or their Default for 0); None when they have no such one."""
    if experiment_id == DEFAULT_ID:
        return default_experiment(user_id)
    c = experiments.c
    with db.read() as conn:
        row = conn.execute(sa.select(experiments).where(c.id == experiment_id, c.user_id == user_id)).first()
    return _record(row) if row else None


def by_name(db: Database, user_id: int, name: str) -> Experiment | None:
    if name == DEFAULT_NAME:
        return default_experiment(user_id)
    c = experiments.c
    with db.read() as conn:
        row = conn.execute(sa.select(experiments).where(c.user_id == user_id, c.name == name)).first()
    return _record(row) if row else None


def rename(db: Database, experiment: Experiment, new_name: str, *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    try:
        with db.write() as conn:
            other = _id_by_name(conn, experiment.user_id, new_name)
            if new_name == DEFAULT_NAME or (other is not None and other != experiment.id):
                raise ExperimentExists(new_name)
            conn.execute(experiments.update().where(experiments.c.id == experiment.id)
                         .values(name=new_name, updated_at=now))
    except sa.exc.IntegrityError:
        raise ExperimentExists(new_name) from None


def set_stage(db: Database, experiment: Experiment, stage: str, *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    with db.write() as conn:
        conn.execute(experiments.update().where(experiments.c.id == experiment.id)
                     .values(lifecycle_stage=stage, updated_at=now))


def set_tag(db: Database, experiment: Experiment, key: str, value: str | None, *, now: float | None = None) -> None:
    """Set (``value`` None: delete) one tag, read and written in one transaction so two writers keep both."""
    now = time.time() if now is None else now
    with db.write() as conn:
        query = sa.select(experiments.c.tags).where(experiments.c.id == experiment.id)
        text = conn.execute(query if db.is_sqlite else query.with_for_update()).scalar()
        tags = orjson.loads(text or "{}")
        if value is None:
            tags.pop(key, None)
        else:
            tags[key] = value
        conn.execute(experiments.update().where(experiments.c.id == experiment.id)
                     .values(tags=orjson.dumps(tags).decode(), updated_at=now))


def search(db: Database, user_id: int, *, stages: tuple[str, ...], clauses: list[Clause],
           order: list[OrderKey], limit: int, offset: int) -> list[Experiment]:
    """The user's experiments (their Default first, as if stored with id 0) matching every clause.

    Filters on tags run here in Python, not SQL: tags are one JSON column, and a user's experiments
    are few."""
    c = experiments.c
    with db.read() as conn:
        rows = conn.execute(sa.select(experiments).where(c.user_id == user_id, c.lifecycle_stage.in_(stages))).all()
    found = [_record(r) for r in rows]
    if ACTIVE in stages:
        found.insert(0, default_experiment(user_id))
    found = [e for e in found if all(_matches(e, cl) for cl in clauses)]
    for key in reversed(order or [OrderKey("attributes", "creation_time", False)]):
        found.sort(key=lambda e, k=key: _sort_value(e, k), reverse=not key.ascending)
    return found[offset:offset + limit]


def _field(e: Experiment, clause_entity: str, key: str) -> Any:
    if clause_entity == "tags":
        return e.tags.get(key)
    return {"name": e.name, "creation_time": e.created_at * 1000, "last_update_time": e.updated_at * 1000,
            "experiment_id": str(e.id)}.get(key)


def _sort_value(e: Experiment, key: OrderKey) -> tuple[bool, Any]:
    value = _field(e, key.entity, key.key)
    return (value is None) != (not key.ascending), value if value is not None else 0


def _matches(e: Experiment, cl: Clause) -> bool:
    value = _field(e, cl.entity, cl.key)
    if cl.entity not in ("tags", "attributes"):
        raise ModelyardError(ErrorCode.INVALID, f"experiments are searched by name, tags, creation_time and "
                             f"last_update_time, not {cl.entity}", field="filter")
    if value is None:
        return False
    return compare(value, cl.op, cl.value)


def compare(value: Any, op: str, want: Any) -> bool:
    """One comparison of MLflow's grammar, in Python (LIKE's ``%`` and ``_`` as SQL's)."""
    if op in ("IN", "NOT IN"):
        return (str(value) in want) == (op == "IN")
    if op in ("LIKE", "ILIKE"):
        pattern = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in str(want))
        return re.fullmatch(pattern, str(value), re.S | (re.I if op == "ILIKE" else 0)) is not None
    if isinstance(want, float):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return False
    ops = {"=": value == want, "!=": value != want}
    if op in ops:
        return ops[op]
    try:
        return {"<": value < want, "<=": value <= want, ">": value > want, ">=": value >= want}[op]
    except TypeError:
        return False
