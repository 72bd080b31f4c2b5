"""The jobs domain as routes and pages read it: a job with its attempts, its events, an attempt by
number, the latest metric values of a table of jobs. Both the API (routes_jobs, routes_ui_api) and the
pages call these, so a page shows exactly what /api/v1 would.
"""
from __future__ import annotations

from typing import Any

from modelyard.errors import ModelyardError, not_found
from modelyard.server.platform import Platform
from modelyard.server.serialize import event_to_dict, job_to_dict
from modelyard.db import jobs as store_jobs
from modelyard.db import reports, runs
from modelyard.db.records import Attempt, Job, User


def full(p: Platform, job: Job) -> dict[str, Any]:
    return job_to_dict(job, store_jobs.job_attempts(p.db, job.id))


def show(p: Platform, user: User, job_id: int) -> dict[str, Any]:
    return full(p, store_jobs.get_job(p.db, job_id, user=user))


def run_tags(p: Platform, job_id: int) -> dict[str, str]:
    """The MLflow tags of a job already checked to be the caller's (README "MLflow")."""
    with p.db.read() as conn:
        return runs.tags_of(conn, job_id)


def events(p: Platform, user: User, job_id: int) -> dict[str, Any]:
    store_jobs.get_job(p.db, job_id, user=user)
    return {"events": [event_to_dict(e) for e in store_jobs.job_events(p.db, job_id)]}


def attempt_of(p: Platform, job: Job, number: int | None) -> Attempt | None:
    """Attempt ``number`` of the job (its latest when None); None when it has none yet."""
    number = number or job.attempt
    attempt = store_jobs.attempt_by_number(p.db, job.id, number) if number else None
    if number and attempt is None:
        raise not_found(f"attempt {number} of job {job.id}")
    return attempt


def latest_metrics(p: Platform, user: User, job_ids: list[int], name: str | None) -> dict[str, Any]:
    visible = []
    for job_id in job_ids[:200]:
        try:
            visible.append(store_jobs.get_job(p.db, job_id, user=user).id)
        except ModelyardError:
            continue
    if not visible:
        return {"names": [], "latest": {}}
    latest = reports.latest_points(p.db, visible, name) if name else {}
    return {"names": reports.names_of_jobs(p.db, visible), "latest": {str(j): pt for j, pt in latest.items()}}
