"""Listing jobs by parameters, tags and the rest, and editing a job's tags: what ``GET /jobs``,
``/jobs/{id}/tags`` and the jobs pages all call (README "Parameters and tags").

Bad input (a filter, sort, state or time) is a ModelyardError naming its query parameter.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from modelyard.db import jobs as store_jobs
from modelyard.db.records import User
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.query import JobQuery, QueryError, check_text, parse_filter, parse_search, parse_sort, \
    parse_state, parse_tag, parse_time
from modelyard.server.platform import Platform
from modelyard.server.serialize import job_to_dict


def build_query(
    *, params: Sequence[str] = (), tags: Sequence[str] = (), owner: str | None = None,
    states: Sequence[str] = (), dataset: str | None = None, environment: str | None = None,
    experiment: str | None = None, since: str | None = None, until: str | None = None, sort: str | None = None,
    text: str | None = None, search: str | None = None,
) -> JobQuery:
    """A query from the API's parameters (``text``: in the name), and the table's search box (``search``)."""
    try:
        q = JobQuery(
            params=tuple(parse_filter(f) for f in params), tags=tuple(parse_tag(t) for t in tags),
            owner=owner or None, states=tuple(parse_state(s) for s in states), dataset=dataset or None,
            environment=environment or None, experiment=experiment or None, text=text or None,
            since=parse_time(since, "since") if since else None, until=parse_time(until, "until") if until else None,
        )
        if sort:
            q = replace(q, sort=parse_sort(sort))
        return check_text(parse_search(search, q) if search else q)
    except QueryError as e:
        raise ModelyardError(ErrorCode.INVALID, str(e), field=e.field) from None


def list_jobs(p: Platform, user: User, query: JobQuery, *, limit: int, offset: int = 0,
              all_users: bool = False) -> dict[str, Any]:
    """A page of matching jobs; an admin naming an owner sees that owner's jobs without asking for all."""
    everyone = all_users or (user.is_admin and query.owner is not None)
    jobs, total = store_jobs.list_jobs(p.db, user=user, all_users=everyone, query=query, limit=limit, offset=offset)
    names = sorted({n for j in jobs for n in j.params})
    return {"jobs": [job_to_dict(j) for j in jobs], "total": total, "param_names": names}


def change_tags(p: Platform, user: User, job_id: int, *, add: Sequence[str] = (),
                remove: Sequence[str] = ()) -> dict[str, Any]:
    """Owner or admin only: another user's job is not found, as everywhere."""
    job = store_jobs.get_job(p.db, job_id, user=user)
    try:
        add = [parse_tag(t, "tags") for t in add]
        remove = [parse_tag(t, "tags") for t in remove]
    except QueryError as e:
        raise ModelyardError(ErrorCode.INVALID, str(e), field=e.field) from None
    job = store_jobs.change_tags(p.db, job, add=add, remove=remove)
    return {"job_id": job.id, "tags": list(job.tags)}
