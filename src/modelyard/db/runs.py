"""The one way a run's data enters: parameters, tags and metric points, whoever wrote them.

DESIGN.md "runs / tracking": the supervisor's metric lines (and the text patterns and TensorBoard
files it reads, db/reports.py), the MLflow-compatible API (server/routes_mlflow.py) and a sweep's
trials all land here, keyed by the job (its run) and the attempt that wrote them, so charts,
comparison and the jobs table see them alike. Each function runs inside the caller's transaction.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.params import param_text
from modelyard.db.schema import job_params, metric_chunks, run_inputs, run_tags

# a point as stored: (name, value, step, epoch, t); step and epoch may be None (db/series.py)
Point = tuple[str, float, "int | None", "int | None", float]


@dataclass(frozen=True)
class RunData:
    """What one call adds to a run. ``params`` are text (MLflow's), kept once: a run's parameter
    never changes; ``tags`` replace the run's value for each key."""
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    points: Sequence[Point] = ()
    packed: Any = None  # a supervisor's packed series (db/series.py unpack_series), beside ``points``


def ingest(conn: sa.Connection, job_id: int, attempt_id: int, data: RunData) -> None:
    """Store ``data`` for the job's run, written by attempt ``attempt_id`` (0: by no attempt, e.g. an
    MLflow run with no process). Raises INVALID naming the first thing wrong; nothing is stored then
    (the caller's transaction rolls back)."""
    if data.params:
        log_params(conn, job_id, data.params)
    if data.tags:
        set_tags(conn, job_id, data.tags)
    if data.points or data.packed:
        insert_points(conn, job_id, attempt_id, list(data.points), data.packed)


def log_params(conn: sa.Connection, job_id: int, params: Mapping[str, str]) -> None:
    """New parameters are added; one logged again must have the same text (MLflow's rule), else INVALID."""
    c = job_params.c
    have = {name: orjson.loads(value) for name, value in conn.execute(
        sa.select(c.name, c.value).where(c.job_id == job_id, c.name.in_(list(params))))}
    fresh = []
    for name, text in params.items():
        if name in have:
            if param_text(have[name]) != text:
                raise ModelyardError(
                    ErrorCode.INVALID, f"parameter {name!r} of run {job_id} is {param_text(have[name])!r}; "
                    f"it cannot be changed to {text!r} (a run's parameters are logged once)", field="params")
            continue
        fresh.append({"job_id": job_id, "name": name, "value": orjson.dumps(text).decode(), "num": text_num(text)})
    if fresh:
        conn.execute(job_params.insert(), fresh)


def text_num(text: str) -> float | None:
    """The number a text parameter reads as (``"0.01"`` -> 0.01), so it sorts as one; else None."""
    try:
        num = float(text)
    except ValueError:
        return None
    return num if math.isfinite(num) else None


def set_tags(conn: sa.Connection, job_id: int, tags: Mapping[str, str]) -> None:
    c = run_tags.c
    conn.execute(run_tags.delete().where(c.job_id == job_id, c.key.in_(list(tags))))
    conn.execute(run_tags.insert(), [{"job_id": job_id, "key": k, "value": v} for k, v in tags.items()])


def delete_tag(conn: sa.Connection, job_id: int, key: str) -> bool:
    c = run_tags.c
    return bool(conn.execute(run_tags.delete().where(c.job_id == job_id, c.key == key)).rowcount)


def tags_of(conn: sa.Connection, job_id: int) -> dict[str, str]:
    c = run_tags.c
    return dict(conn.execute(sa.select(c.key, c.value).where(c.job_id == job_id).order_by(c.key)).all())


@dataclass(frozen=True)
class DatasetInput:
    """A dataset a run read (``mlflow.log_input``): MLflow's Dataset and InputTag messages as JSON text."""
    name: str
    digest: str
    dataset: str
    tags: str = "[]"


def log_inputs(conn: sa.Connection, job_id: int, inputs: Sequence[DatasetInput], *, now: float) -> None:
    """Each dataset once per run (by name and digest): logged again, it is no change."""
    c = run_inputs.c
    for d in inputs:
        have = conn.execute(sa.select(c.id).where(c.job_id == job_id, c.name == d.name, c.digest == d.digest)).first()
        if have is None:
            conn.execute(run_inputs.insert().values(job_id=job_id, name=d.name, digest=d.digest, dataset=d.dataset,
                                                    tags=d.tags, created_at=now))


def inputs_of(conn: sa.Connection, job_id: int) -> list[DatasetInput]:
    c = run_inputs.c
    rows = conn.execute(sa.select(c.name, c.digest, c.dataset, c.tags).where(c.job_id == job_id).order_by(c.id))
    return [DatasetInput(*r) for r in rows]


def insert_points(conn: sa.Connection, job_id: int, attempt_id: int, points: list[Any], packed: Any = None) -> None:
    """Points as one chunk row per series (db/series.py); ValueError or TypeError names a bad point."""
    from modelyard.db import series as S  # numpy: not at server start

    chunks = (S.group_rows(points) if points else []) + (S.unpack_series(packed) if packed else [])
    bulk_insert(conn, metric_chunks,
                ("job_id", "attempt_id", "name", "n", "points", "last_value", "last_step", "last_epoch", "last_t"),
                [(job_id, attempt_id, c.name, c.n, c.blob(), *c.last()) for c in chunks])


def bulk_insert(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Rows (tuples in ``columns`` order) into ``table`` inside the open transaction, the fastest way per dialect."""
    if not rows:
        return
    names = ", ".join(columns)  # our own column names: nothing from a request reaches the SQL text
    if conn.dialect.name == "postgresql":
        driver = conn.connection.driver_connection
        with driver.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns)) if conn.dialect.paramstyle == "qmark" else ", ".join(["%s"] * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
