"""MLflow 3's logged models as stored (``logged_models``, ``logged_model_outputs``), and their record.

Each model is kept with the run that logged it (``job_id``) and removed with it (the rows cascade).
Who may reach one is services/logged_models.py's; every function here takes what it is given.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from modelyard.db.engine import Database
from modelyard.db.schema import logged_model_outputs, logged_models

PENDING, READY, UPLOAD_FAILED = "PENDING", "READY", "UPLOAD_FAILED"
STATUSES = (PENDING, READY, UPLOAD_FAILED)


@dataclass(frozen=True)
class LoggedModel:
    id: str
    job_id: int
    user_id: int
    experiment_id: int  # 0: the owner's Default
    attempt: int | None  # the attempt whose MLflow artifacts hold its files; None: a run with no process
    name: str
    model_type: str | None
    status: str
    status_message: str | None
    created_at: float
    updated_at: float
    deleted_at: float | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def _record(row: Any) -> LoggedModel:
    return LoggedModel(row.id, row.job_id, row.user_id, row.experiment_id or 0, row.attempt, row.name,
                       row.model_type, row.status, row.status_message, row.created_at, row.updated_at,
                       row.deleted_at, orjson.loads(row.params or "{}"), orjson.loads(row.tags or "{}"))


def create(db: Database, model: LoggedModel) -> None:
    with db.write() as conn:
        conn.execute(logged_models.insert().values(
            id=model.id, job_id=model.job_id, user_id=model.user_id, experiment_id=model.experiment_id or None,
            attempt=model.attempt, name=model.name, model_type=model.model_type, status=model.status,
            status_message=model.status_message, params=orjson.dumps(model.params).decode(),
            tags=orjson.dumps(model.tags).decode(), created_at=model.created_at, updated_at=model.updated_at))


def get(db: Database, model_id: str) -> LoggedModel | None:
    with db.read() as conn:
        row = conn.execute(sa.select(logged_models).where(logged_models.c.id == model_id)).first()
    return _record(row) if row else None


def search(db: Database, *, user_id: int, experiment_ids: Sequence[int], only_job: int | None) -> list[LoggedModel]:
    """The user's live models in those experiments (``only_job``: of that run only), newest first.
    Filters run in Python over these: a user's models in a few experiments are few."""
    c = logged_models.c
    exps = [e for e in experiment_ids if e]
    where = sa.or_(c.experiment_id.in_(exps), c.experiment_id.is_(None) if 0 in experiment_ids else sa.false())
    query = sa.select(logged_models).where(c.user_id == user_id, c.deleted_at.is_(None), where)
    if only_job is not None:
        query = query.where(c.job_id == only_job)
    with db.read() as conn:
        rows = conn.execute(query.order_by(c.created_at.desc(), c.id)).all()
    return [_record(r) for r in rows]


def update(db: Database, model_id: str, *, now: float | None = None, **values: Any) -> None:
    with db.write() as conn:
        conn.execute(logged_models.update().where(logged_models.c.id == model_id)
                     .values(updated_at=time.time() if now is None else now, **values))


def change_json(db: Database, model_id: str, column: str, change: Mapping[str, str | None],
                *, keep_existing: bool = False) -> dict[str, str]:
    """Set (a value None: delete) keys of the JSON column ``params`` or ``tags``, read and written in
    one transaction so two writers keep both. ``keep_existing``: a key already there keeps its value
    (the caller compared it first). Returns the column as it is now."""
    col = logged_models.c[column]
    with db.write() as conn:
        query = sa.select(col).where(logged_models.c.id == model_id)
        have = orjson.loads(conn.execute(query if db.is_sqlite else query.with_for_update()).scalar() or "{}")
        for key, value in change.items():
            if value is None:
                have.pop(key, None)
            elif not (keep_existing and key in have):
                have[key] = value
        conn.execute(logged_models.update().where(logged_models.c.id == model_id)
                     .values({column: orjson.dumps(have).decode(), "updated_at": time.time()}))
    return have


def log_outputs(db: Database, job_id: int, outputs: Mapping[str, int]) -> None:
    """Models ``outputs`` (id -> step) are outputs of run ``job_id``; logged again, the step is the latest."""
    c = logged_model_outputs.c
    with db.write() as conn:
        conn.execute(logged_model_outputs.delete().where(c.job_id == job_id, c.model_id.in_(list(outputs))))
        conn.execute(logged_model_outputs.insert(),
                     [{"job_id": job_id, "model_id": m, "step": s} for m, s in outputs.items()])


def outputs_of(conn: sa.Connection, job_id: int) -> list[tuple[str, int]]:
    c = logged_model_outputs.c
    live = sa.select(logged_models.c.id).where(logged_models.c.deleted_at.is_(None))
    rows = conn.execute(sa.select(c.model_id, c.step).where(c.job_id == job_id, c.model_id.in_(live))
                        .order_by(c.model_id))
    return [(r.model_id, r.step) for r in rows]
