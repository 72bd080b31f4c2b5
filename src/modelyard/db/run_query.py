"""MLflow's runs/search as SQL, and the run data (params, latest metrics, tags) of a page of runs.

Every clause of jobs/mlflow_search.py becomes a condition on ``jobs`` and its run tables, run
by the database on SQLite and PostgreSQL alike: a param on ``job_params`` (its text, or ``num``
for <, >), a metric on its latest value (the newest ``metric_chunks`` row of the series holds
it as ``last_value``), a tag on ``run_tags``. LIKE is case-sensitive on both (SQLite's own LIKE
is not, so there it is GLOB); ILIKE is not.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from modelyard.db.engine import Database
from modelyard.db.schema import job_params, jobs, metric_chunks, run_tags, users
from modelyard.jobs.mlflow_search import ATTRIBUTES, METRICS, MLFLOW_STATUS, PARAMS, TAGS, Clause, OrderKey
from modelyard.jobs.params import param_text


@dataclass(frozen=True)
class LatestMetric:
    value: float
    step: int | None
    t: float


@dataclass(frozen=True)
class RunData:
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, LatestMetric] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def search(
    db: Database, *, user_id: int, experiment_ids: Sequence[int], deleted: bool | None, clauses: list[Clause],
    order: list[OrderKey], limit: int, offset: int, only_job: int | None = None,
) -> list[int]:
    """Ids of the user's runs (every job is one) in ``experiment_ids`` (0: Default) matching every
    clause, in ``order``; ``deleted``: only deleted runs (True), only active (False), both (None).
    Raises ValueError naming a clause that cannot be compared."""
    sqlite = db.is_sqlite
    j = jobs.c
    where: list[Any] = [j.user_id == user_id, _in_experiments(experiment_ids)]
    if only_job is not None:
        where.append(j.id == only_job)
    if deleted is not None:
        where.append(j.run_deleted_at.is_not(None) if deleted else j.run_deleted_at.is_(None))
    where += [_condition(cl, sqlite) for cl in clauses]
    query = sa.select(j.id).select_from(jobs.join(users, users.c.id == j.user_id)).where(*where)
    for key in order or [OrderKey(ATTRIBUTES, "start_time", False)]:
        for expr in _order_exprs(key):
            query = query.order_by(expr.is_(None), expr.asc() if key.ascending else expr.desc())
    query = query.order_by(j.id.desc()).limit(limit).offset(offset)
    with db.read() as conn:
        return list(conn.execute(query).scalars())


def _in_experiments(ids: Sequence[int]) -> Any:
    stored = [i for i in ids if i]
    parts = [jobs.c.experiment_id.in_(stored)] if stored else []
    if 0 in ids:
        parts.append(jobs.c.experiment_id.is_(None))
    return sa.or_(*parts) if parts else sa.false()


def _status() -> Any:
    return sa.case(*((jobs.c.state == s.value, status) for s, status in MLFLOW_STATUS.items()), else_="FAILED")


def _attribute(key: str) -> Any:
    j = jobs.c
    return {
        "run_id": j.id, "run_name": j.name, "status": _status(), "user_id": users.c.name,
        "start_time": sa.func.coalesce(j.started_at, j.created_at) * 1000, "end_time": j.ended_at * 1000,
    }[key]


def _param_value(name: str) -> Any:
    c = job_params.c
    return sa.select(c.value).where(c.job_id == jobs.c.id, c.name == name).scalar_subquery()


def _param_text(value: Any) -> Any:
    """A param's JSON text as MLflow's text: a JSON string without its quotes, a number as written."""
    return sa.case((sa.func.substr(value, 1, 1) == '"', sa.func.substr(value, 2, sa.func.length(value) - 2)),
                   else_=value)


def _param_num(name: str) -> Any:
    c = job_params.c
    return sa.select(c.num).where(c.job_id == jobs.c.id, c.name == name).scalar_subquery()


def _metric(name: str) -> Any:
    c = metric_chunks.c
    return (sa.select(c.last_value).where(c.job_id == jobs.c.id, c.name == name)
            .order_by(c.id.desc()).limit(1).scalar_subquery())


def _tag(key: str) -> Any:
    c = run_tags.c
    return sa.select(c.value).where(c.job_id == jobs.c.id, c.key == key).scalar_subquery()


def _condition(cl: Clause, sqlite: bool) -> Any:
    if cl.entity == METRICS:
        return _compare(_metric(cl.key), cl.op, cl.value, sqlite)
    if cl.entity == TAGS:
        return _compare(_tag(cl.key), cl.op, cl.value, sqlite)
    if cl.entity == PARAMS:
        if cl.op in ("<", "<=", ">", ">="):
            return _compare(_param_num(cl.key), cl.op, _number(cl), sqlite)
        if cl.op in ("=", "!=") and isinstance(cl.value, float):
            return _compare(_param_num(cl.key), cl.op, cl.value, sqlite)
        if cl.op in ("=", "!="):
            # stored as JSON: a text param as a JSON string, a submitted number as its JSON text
            forms = [orjson.dumps(cl.value).decode(), str(cl.value)]
            value = _param_value(cl.key)
            return value.in_(forms) if cl.op == "=" else sa.and_(value.is_not(None), value.not_in(forms))
        return _compare(_param_text(_param_value(cl.key)), cl.op, cl.value, sqlite)
    if cl.key == "run_id":
        ids = [int(v) for v in (cl.value if isinstance(cl.value, tuple) else (cl.value,)) if str(v).isdigit()]
        if cl.op in ("IN", "="):
            return jobs.c.id.in_(ids)
        if cl.op in ("NOT IN", "!="):
            return jobs.c.id.not_in(ids)
        raise ValueError(f"run_id is compared with =, != or IN, not {cl.op}")
    return _compare(_attribute(cl.key), cl.op, cl.value, sqlite)


def _number(cl: Clause) -> float:
    try:
        return float(cl.value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"params.{cl.key} {cl.op} compares numbers; {cl.value!r} is not one") from None


def _compare(expr: Any, op: str, value: Any, sqlite: bool) -> Any:
    if op == "IN":
        return expr.in_(list(value))
    if op == "NOT IN":
        return sa.and_(expr.is_not(None), expr.not_in(list(value)))
    if op == "LIKE":
        return expr.op("GLOB")(_glob(value)) if sqlite else expr.like(value)
    if op == "ILIKE":
        return expr.ilike(value)
    return {"=": expr == value, "!=": expr != value, "<": expr < value, "<=": expr <= value,
            ">": expr > value, ">=": expr >= value}[op]


def _glob(pattern: str) -> str:
    """A LIKE pattern as SQLite's GLOB, which is case-sensitive: ``%`` is ``*``, ``_`` is ``?``."""
    out = []
    for ch in pattern:
        out.append("*" if ch == "%" else "?" if ch == "_" else f"[{ch}]" if ch in "*?[" else ch)
    return "".join(out)


def _order_exprs(key: OrderKey) -> list[Any]:
    if key.entity == METRICS:
        return [_metric(key.key)]
    if key.entity == TAGS:
        return [_tag(key.key)]
    if key.entity == PARAMS:  # numbers by value, then text
        return [_param_num(key.key), _param_text(_param_value(key.key))]
    return [_attribute(key.key)]


def run_data(db: Database, job_ids: Sequence[int]) -> dict[int, RunData]:
    """Each run's params (as text), latest metric values and tags, in one read of each table."""
    ids = list(job_ids)
    out = {i: RunData() for i in ids}
    if not ids:
        return out
    p, m, t = job_params.c, metric_chunks.c, run_tags.c
    with db.read() as conn:
        for i in range(0, len(ids), 500):  # SQLite binds at most 32,766 values in one statement
            part = ids[i:i + 500]
            last_ids = sa.select(sa.func.max(m.id)).where(m.job_id.in_(part)).group_by(m.job_id, m.name)
            for job_id, name, value in conn.execute(sa.select(p.job_id, p.name, p.value).where(p.job_id.in_(part))):
                out[job_id].params[name] = param_text(orjson.loads(value))
            for job_id, name, value, step, last_t in conn.execute(
                    sa.select(m.job_id, m.name, m.last_value, m.last_step, m.last_t).where(m.id.in_(last_ids))):
                out[job_id].metrics[name] = LatestMetric(value, step, last_t)
            for job_id, key, value in conn.execute(sa.select(t.job_id, t.key, t.value).where(t.job_id.in_(part))):
                out[job_id].tags[key] = value
    return out
