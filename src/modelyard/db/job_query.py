"""A job's parameters and tags in the db (``job_params``, ``job_tags``), and a ``JobQuery``
(jobs/query.py) as SQL: every filter and the sort run in the database, on SQLite and PostgreSQL.

``job_params`` is written once, with the job's row; ``job_tags`` also changes after the fact
(``add_tags``, ``remove_tags``). The spec keeps the parameters and the tags given at submit.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from modelyard.db.experiments import DEFAULT_NAME
from modelyard.db.schema import experiments, job_params, job_tags, jobs, users
from modelyard.jobs.params import ParamValue, param_num
from modelyard.jobs.query import JobQuery, ParamFilter, Sort
from modelyard.jobs.spec import MAX_TAGS


def write_params(conn: sa.Connection, job_id: int, params: dict[str, ParamValue], tags: Sequence[str]) -> None:
    """At submit, in the job's own transaction: a half-recorded job is never listed."""
    if params:
        conn.execute(job_params.insert(), [
            {"job_id": job_id, "name": n, "value": orjson.dumps(v).decode(), "num": param_num(v)}
            for n, v in params.items()])
    if tags:
        conn.execute(job_tags.insert(), [{"job_id": job_id, "tag": t} for t in dict.fromkeys(tags)])


def tags_of(conn: sa.Connection, job_ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
    """Each job's tags, sorted; a job with none is absent."""
    ids = list(job_ids)
    if not ids:
        return {}
    out: dict[int, list[str]] = {}
    rows = conn.execute(sa.select(job_tags.c.job_id, job_tags.c.tag).where(job_tags.c.job_id.in_(ids))
                        .order_by(job_tags.c.job_id, job_tags.c.tag))
    for job_id, tag in rows:
        out.setdefault(job_id, []).append(tag)
    return {k: tuple(v) for k, v in out.items()}


def params_of(conn: sa.Connection, job_ids: Iterable[int]) -> dict[int, dict[str, ParamValue]]:
    """Each job's parameters as they are now: its spec's, and those its MLflow client logged (db/runs.py)."""
    ids = list(job_ids)
    out: dict[int, dict[str, ParamValue]] = {}
    if ids:
        c = job_params.c
        for job_id, name, value in conn.execute(sa.select(c.job_id, c.name, c.value).where(c.job_id.in_(ids))
                                                .order_by(c.job_id, c.name)):
            out.setdefault(job_id, {})[name] = orjson.loads(value)
    return out


def add_tags(conn: sa.Connection, job_id: int, tags: Sequence[str]) -> list[str]:
    """Adds the ones the job lacks (the rest are no change); the job's tags after. Over MAX_TAGS: ValueError."""
    have = set(tags_of(conn, [job_id]).get(job_id, ()))
    new = [t for t in dict.fromkeys(tags) if t not in have]
    if len(have) + len(new) > MAX_TAGS:
        raise ValueError(f"{len(have) + len(new)} tags; the limit is {MAX_TAGS} a job")
    if new:
        conn.execute(job_tags.insert(), [{"job_id": job_id, "tag": t} for t in new])
    return sorted(have | set(new))


def remove_tags(conn: sa.Connection, job_id: int, tags: Sequence[str]) -> list[str]:
    """Removes those it has (an absent one is no change); the job's tags after."""
    conn.execute(job_tags.delete().where(job_tags.c.job_id == job_id, job_tags.c.tag.in_(list(tags))))
    return list(tags_of(conn, [job_id]).get(job_id, ()))


def conditions(q: JobQuery) -> list[sa.ColumnElement[bool]]:
    """The WHERE terms of ``q`` over ``jobs`` (joined with ``users`` for the owner)."""
    cond: list[sa.ColumnElement[bool]] = [_param_condition(f) for f in q.params]
    cond += [sa.exists().where(job_tags.c.job_id == jobs.c.id, job_tags.c.tag == t) for t in dict.fromkeys(q.tags)]
    if q.owner:
        cond.append(jobs.c.user_id.in_(sa.select(users.c.id).where(users.c.name == q.owner).scalar_subquery()))
    if q.states:
        cond.append(jobs.c.state.in_([s.value for s in q.states]))
    if q.dataset:
        ref = q.dataset
        cond.append(jobs.c.dataset == ref if ":" in ref else jobs.c.dataset.startswith(f"{ref}:", autoescape=True))
    if q.environment:
        cond.append(jobs.c.environment == q.environment)
    if q.experiment == DEFAULT_NAME:
        cond.append(jobs.c.experiment_id.is_(None))
    elif q.experiment:  # each job's owner's experiment of that name (an admin lists many owners)
        e = experiments.c
        named = sa.select(e.id).where(e.name == q.experiment, e.user_id == jobs.c.user_id)
        cond.append(jobs.c.experiment_id.in_(named))
    if q.since is not None:
        cond.append(jobs.c.created_at >= q.since)
    if q.until is not None:
        cond.append(jobs.c.created_at < q.until)
    if q.text:
        cond.append(jobs.c.name.contains(q.text, autoescape=True))
    return cond


def _param_condition(f: ParamFilter) -> sa.ColumnElement[bool]:
    p = job_params.c
    num = f.num
    if num is not None:  # numbers compare as numbers: 0.010 = 0.01, 3 = 3.0
        test = {"=": p.num == num, "!=": p.num != num, "<": p.num < num, "<=": p.num <= num,
                ">": p.num > num, ">=": p.num >= num}[f.op]
    else:  # text and booleans: equality of the stored JSON
        value = orjson.dumps(f.value).decode()
        test = p.value == value if f.op == "=" else p.value != value
    # a job without the parameter matches no expression on it, != included (as MLflow's search does)
    return sa.exists().where(p.job_id == jobs.c.id, p.name == f.name, test)


def order(query: sa.Select[Any], sort: Sort) -> sa.Select[Any]:
    """``query`` in ``sort``'s order, then by id (newest first) so that pages never overlap."""
    if sort.column == "param":
        col = job_params.alias("sort_param")
        query = query.outerjoin(col, (col.c.job_id == jobs.c.id) & (col.c.name == sort.param))
        # numbers first, by value; then text values; jobs without the parameter last, either way
        keys: list[Any] = [col.c.num.desc() if sort.descending else col.c.num.asc(),
                           col.c.value.desc() if sort.descending else col.c.value.asc()]
        return query.order_by(*(k.nulls_last() for k in keys), jobs.c.id.desc())
    column = {"id": jobs.c.id, "created": jobs.c.created_at, "name": jobs.c.name, "state": jobs.c.state,
              "owner": users.c.name}[sort.column]
    return query.order_by(column.desc() if sort.descending else column.asc(), jobs.c.id.desc())
