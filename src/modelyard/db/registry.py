"""The MLflow model registry as stored (``registered_models``, ``model_versions``), and its records.

A registered model is its owner's (``user_id``), unique by name per owner; its versions are numbered
from its ``last_version`` counter, so a number is given once even after that version is deleted.
Who may reach what is services/registry.py's; every function here takes what it is given.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from modelyard.db.engine import Database
from modelyard.db.schema import model_versions, registered_models
from modelyard.errors import ErrorCode, ModelyardError

NONE_STAGE = "None"
STAGES = (NONE_STAGE, "Staging", "Production", "Archived")


class RegisteredModelExists(ModelyardError):
    """Another of the owner's registered models has the name (MLflow's RESOURCE_ALREADY_EXISTS)."""

    def __init__(self, name: str) -> None:
        super().__init__(ErrorCode.CONFLICT, f"a registered model named {name!r} already exists", field="name")


@dataclass(frozen=True)
class RegisteredModel:
    id: int
    user_id: int
    name: str
    description: str | None
    created_at: float
    updated_at: float
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> version


@dataclass(frozen=True)
class ModelVersion:
    registered_model_id: int
    version: int
    source: str
    job_id: int | None
    model_id: str | None
    description: str | None
    stage: str
    created_at: float
    updated_at: float
    tags: dict[str, str] = field(default_factory=dict)


def _model(row: Any) -> RegisteredModel:
    return RegisteredModel(row.id, row.user_id, row.name, row.description, row.created_at, row.updated_at,
                           orjson.loads(row.tags or "{}"), orjson.loads(row.aliases or "{}"))


def _version(row: Any) -> ModelVersion:
    return ModelVersion(row.registered_model_id, row.version, row.source, row.job_id, row.model_id,
                        row.description, row.stage, row.created_at, row.updated_at, orjson.loads(row.tags or "{}"))


def create_model(db: Database, user_id: int, name: str, *, description: str | None, tags: Mapping[str, str],
                 now: float | None = None) -> int:
    now = time.time() if now is None else now
    try:
        with db.write() as conn:
            return int(conn.execute(registered_models.insert().values(
                user_id=user_id, name=name, description=description, tags=orjson.dumps(dict(tags)).decode(),
                aliases="{}", last_version=0, created_at=now, updated_at=now)).inserted_primary_key[0])
    except sa.exc.IntegrityError:
        raise RegisteredModelExists(name) from None


def get_model(db: Database, user_id: int, name: str) -> RegisteredModel | None:
    c = registered_models.c
    with db.read() as conn:
        row = conn.execute(sa.select(registered_models).where(c.user_id == user_id, c.name == name)).first()
    return _model(row) if row else None


def get_model_by_id(db: Database, model_id: int) -> RegisteredModel | None:
    with db.read() as conn:
        row = conn.execute(sa.select(registered_models).where(registered_models.c.id == model_id)).first()
    return _model(row) if row else None


def models_of(db: Database, user_id: int) -> list[RegisteredModel]:
    """The user's registered models by name. Filters run in Python over these: a user's are few."""
    c = registered_models.c
    with db.read() as conn:
        rows = conn.execute(sa.select(registered_models).where(c.user_id == user_id).order_by(c.name)).all()
    return [_model(r) for r in rows]


def update_model(db: Database, model_id: int, **values: Any) -> None:
    """Change columns of a registered model (``name``: RegisteredModelExists if the owner has it)."""
    try:
        with db.write() as conn:
            conn.execute(registered_models.update().where(registered_models.c.id == model_id)
                         .values(updated_at=time.time(), **values))
    except sa.exc.IntegrityError:
        raise RegisteredModelExists(str(values.get("name"))) from None


def delete_model(db: Database, model_id: int) -> None:
    with db.write() as conn:  # its versions cascade
        conn.execute(model_versions.delete().where(model_versions.c.registered_model_id == model_id))
        conn.execute(registered_models.delete().where(registered_models.c.id == model_id))


def _change_json(conn: sa.Connection, db: Database, table: sa.Table, where: Any, column: str,
                 change: Mapping[str, Any]) -> dict[str, Any]:
    """Set (a value None: delete) keys of a JSON column, read and written in one transaction so two
    writers keep both."""
    query = sa.select(table.c[column]).where(where)
    have = orjson.loads(conn.execute(query if db.is_sqlite else query.with_for_update()).scalar() or "{}")
    for key, value in change.items():
        if value is None:
            have.pop(key, None)
        else:
            have[key] = value
    conn.execute(table.update().where(where).values({column: orjson.dumps(have).decode(), "updated_at": time.time()}))
    return have


def change_model_json(db: Database, model_id: int, column: str, change: Mapping[str, Any]) -> dict[str, Any]:
    """``tags`` or ``aliases`` of a registered model."""
    with db.write() as conn:
        return _change_json(conn, db, registered_models, registered_models.c.id == model_id, column, change)


def change_version_tags(db: Database, model_id: int, version: int, change: Mapping[str, str | None]) -> None:
    c = model_versions.c
    with db.write() as conn:
        _change_json(conn, db, model_versions, sa.and_(c.registered_model_id == model_id, c.version == version),
                     "tags", change)


def next_version(db: Database, model_id: int) -> int:
    """The number of the model's next version, taken now: given once, even if that version never lands."""
    c = registered_models.c
    with db.write() as conn:  # the row's update lock orders two registrations on PostgreSQL
        conn.execute(registered_models.update().where(c.id == model_id).values(last_version=c.last_version + 1))
        number = conn.execute(sa.select(c.last_version).where(c.id == model_id)).scalar()
    if number is None:
        raise ModelyardError(ErrorCode.NOT_FOUND, f"registered model {model_id} not found")
    return int(number)


def add_version(db: Database, v: ModelVersion) -> None:
    try:
        with db.write() as conn:
            conn.execute(model_versions.insert().values(
                registered_model_id=v.registered_model_id, version=v.version, source=v.source, job_id=v.job_id,
                model_id=v.model_id, description=v.description, stage=v.stage, tags=orjson.dumps(v.tags).decode(),
                created_at=v.created_at, updated_at=v.updated_at))
            conn.execute(registered_models.update().where(registered_models.c.id == v.registered_model_id)
                         .values(updated_at=v.created_at))
    except sa.exc.IntegrityError:  # its registered model was deleted meanwhile
        raise ModelyardError(ErrorCode.NOT_FOUND, f"registered model {v.registered_model_id} not found") from None


def get_version(db: Database, model_id: int, version: int) -> ModelVersion | None:
    c = model_versions.c
    with db.read() as conn:
        row = conn.execute(sa.select(model_versions).where(c.registered_model_id == model_id,
                                                           c.version == version)).first()
    return _version(row) if row else None


def versions_of(db: Database, model_ids: list[int]) -> list[ModelVersion]:
    """The versions of those registered models, newest first."""
    c = model_versions.c
    with db.read() as conn:
        rows = conn.execute(sa.select(model_versions).where(c.registered_model_id.in_(model_ids))
                            .order_by(c.registered_model_id, c.version.desc())).all()
    return [_version(r) for r in rows]


def update_version(db: Database, model_id: int, version: int, **values: Any) -> None:
    c = model_versions.c
    with db.write() as conn:
        conn.execute(model_versions.update().where(c.registered_model_id == model_id, c.version == version)
                     .values(updated_at=time.time(), **values))


def archive_stage(db: Database, model_id: int, stage: str, *, besides: int) -> None:
    """``archive_existing_versions``: the model's other versions in ``stage`` move to Archived."""
    c = model_versions.c
    with db.write() as conn:
        conn.execute(model_versions.update().where(c.registered_model_id == model_id, c.stage == stage,
                                                   c.version != besides)
                     .values(stage="Archived", updated_at=time.time()))


def delete_version(db: Database, model_id: int, version: int) -> None:
    """The version goes, and the aliases that named it with it (MLflow's rule)."""
    c = model_versions.c
    with db.write() as conn:
        conn.execute(model_versions.delete().where(c.registered_model_id == model_id, c.version == version))
        aliases = orjson.loads(conn.execute(sa.select(registered_models.c.aliases)
                                            .where(registered_models.c.id == model_id)).scalar() or "{}")
        gone = {a: None for a, v in aliases.items() if v == version}
        _change_json(conn, db, registered_models, registered_models.c.id == model_id, "aliases", gone)


def versions_of_job(db: Database, job_id: int) -> list[tuple[RegisteredModel, ModelVersion]]:
    """The versions registered from job ``job_id``'s run, with their registered models, by name and number."""
    with db.read() as conn:
        rows = conn.execute(sa.select(model_versions).where(model_versions.c.job_id == job_id)).all()
        ids = sorted({r.registered_model_id for r in rows})
        models = {r.id: _model(r) for r in
                  conn.execute(sa.select(registered_models).where(registered_models.c.id.in_(ids))).all()}
    pairs = [(models[r.registered_model_id], _version(r)) for r in rows if r.registered_model_id in models]
    return sorted(pairs, key=lambda x: (x[0].name, x[1].version))
