"""Job routes: submit, list, show, stop, restart, clone, events, logs, metrics, outputs."""
from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from modelyard.errors import not_found
from modelyard.jobs import JobSpec, JobState
from modelyard.jobs.spec import MAX_NAME
from modelyard.server.api_models import EventList, JobList, JobOut, LogPage, OutputList
from modelyard.server.api_schema import AUTHED, MAX_ID, AttemptQuery, JobId, NodeQuery, OffsetQuery, errors
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.server.serialize import event_to_dict, job_to_dict
from modelyard.db import jobs as store_jobs
from modelyard.db import ranks as store_ranks
from modelyard.db import reports
from modelyard.db.records import Job, User

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: JobSpec
    snapshot: str | None = None
    # a next round of this job (one of the user's): it starts with that job's outputs in MODELYARD_RESUME_DIR,
    # with the code in ``snapshot`` (the web form's "clone with new code")
    resume_from: int | None = Field(None, ge=1, le=MAX_ID)


class CloneBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resume: StrictBool = False
    command: list[str] | str | None = None
    name: str | None = Field(None, max_length=MAX_NAME)
    # new code for the clone (an uploaded snapshot's key, POST /snapshots); none: the source job's
    snapshot: str | None = Field(None, max_length=200)


def _full(p: Platform, job: Job) -> dict[str, Any]:
    return job_to_dict(job, store_jobs.job_attempts(p.db, job.id))


@router.post("/jobs", status_code=201, response_model=JobOut, responses=errors(*AUTHED, 404, 409))
def submit(body: SubmitBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return _full(p, p.submit(user, body.spec, snapshot=body.snapshot, resume_from=body.resume_from))


@router.get("/jobs", response_model=JobList, responses=errors(*AUTHED))
def list_jobs(
    p: PlatformDep, user: UserDep, state: JobState | None = None,
    q: Annotated[str | None, Query(max_length=MAX_NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50, offset: OffsetQuery = 0,
    all: bool = False,
) -> dict[str, Any]:
    jobs, total = store_jobs.list_jobs(p.db, user=user, all_users=all, state=state, q=q, limit=limit, offset=offset)
    return {"jobs": [job_to_dict(j) for j in jobs], "total": total}


@router.get("/jobs/{job_id}", response_model=JobOut, responses=errors(*AUTHED, 404))
def show(job_id: JobId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return _full(p, store_jobs.get_job(p.db, job_id, user=user))


@router.post("/jobs/{job_id}/stop", response_model=JobOut, responses=errors(*AUTHED, 404, 409))
def stop(job_id: JobId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return _full(p, p.stop(user, job_id))


@router.post("/jobs/{job_id}/restart", response_model=JobOut, responses=errors(*AUTHED, 404, 409))
def restart(job_id: JobId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return _full(p, p.restart(user, job_id))


@router.post("/jobs/{job_id}/clone", status_code=201, response_model=JobOut, responses=errors(*AUTHED, 404, 409))
def clone(job_id: JobId, body: CloneBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return _full(p, p.clone(user, job_id, resume=body.resume, command=body.command, name=body.name,
                            snapshot=body.snapshot))


@router.get("/jobs/{job_id}/events", response_model=EventList, responses=errors(*AUTHED, 404))
def job_events(job_id: JobId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    store_jobs.get_job(p.db, job_id, user=user)
    return {"events": [event_to_dict(e) for e in store_jobs.job_events(p.db, job_id)]}


def attempt_of(p: Platform, job: Job, number: int | None):  # type: ignore[no-untyped-def]
    number = number or job.attempt
    attempt = store_jobs.attempt_by_number(p.db, job.id, number) if number else None
    if number and attempt is None:
        raise not_found(f"attempt {number} of job {job.id}")
    return attempt


@router.get("/jobs/{job_id}/logs", response_model=LogPage, responses=errors(*AUTHED, 404))
def logs(
    job_id: JobId, p: PlatformDep, user: UserDep, attempt: AttemptQuery = None,
    offset: OffsetQuery = 0, limit: Annotated[int, Query(ge=1, le=10000)] = 1000, node: NodeQuery = None,
) -> dict[str, Any]:
    job = store_jobs.get_job(p.db, job_id, user=user)
    a = attempt_of(p, job, attempt)
    if a is None:
        return {"attempt": 0, "lines": [], "next_offset": 0, "done": job.state.is_terminal(), "nodes": job.spec.nodes}
    page = reports.read_logs(p.db, a.id, offset=offset, limit=limit, node=node)
    done = a.state.is_terminal() and page.next_offset >= a.log_count
    if done and a.nnodes > 1:
        # an ended multi-node attempt is done once its other ranks' last lines are in too; read again
        # after: the lines that came with a rank's end count
        done = store_ranks.settled(p.db, a, now=p.scheduler.clock(), grace=p.settings.heartbeat_timeout) and \
            page.next_offset >= store_jobs.attempt_by_number(p.db, job.id, a.number).log_count  # type: ignore[union-attr]
    return {"attempt": a.number, "lines": page.lines, "next_offset": page.next_offset, "done": done,
            "nodes": a.nnodes}


@router.get("/jobs/{job_id}/metrics", responses={**errors(*AUTHED, 404), 200: {
    "description": "each series, as points or as columns",
    "content": {"application/json": {"schema": {"type": "object"}}}}})
def metrics(
    job_id: JobId, p: PlatformDep, user: UserDep, names: Annotated[str | None, Query(max_length=10000)] = None,
    max_points: Annotated[int | None, Query(ge=3, le=100000)] = None,
    layout: Literal["points", "columns"] = "points",
) -> Response:
    from modelyard.server.downsample import SERIES  # numpy: on first use, not at server start

    store_jobs.get_job(p.db, job_id, user=user)
    wanted = [n for n in names.split(",") if n] if names else reports.metric_names(p.db, job_id)
    series = {}
    for name in sorted(set(wanted)):
        # from the columns cache: a series is read whole once, then only its new chunks
        cols = SERIES.columns(p.db, job_id, name)
        if len(cols):
            series[name] = cols.columns(max_points) if layout == "columns" else cols.points(max_points)
    # orjson straight to bytes (numpy columns as they are): FastAPI's encoder walks every value, ~10 us a point
    return Response(orjson.dumps(series, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


@router.get("/jobs/{job_id}/system-metrics", responses=errors(*AUTHED, 404))
def system_metrics(job_id: JobId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    store_jobs.get_job(p.db, job_id, user=user)
    return {"samples": reports.read_system_metrics(p.db, job_id)}


FinalQuery = Annotated[bool, Query(description="only the job's model: the files under final/ (of the latest "
                                              "attempt that has one, unless attempt is given)")]


@router.get("/jobs/{job_id}/outputs", response_model=OutputList, responses=errors(*AUTHED, 404))
def outputs(job_id: JobId, p: PlatformDep, user: UserDep, attempt: AttemptQuery = None,
            final: FinalQuery = False) -> dict[str, Any]:
    return p.outputs.listing(user, job_id, attempt=attempt, final=final)


BINARY = {200: {"description": "the file's bytes",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


@router.get("/jobs/{job_id}/outputs/{path:path}", response_class=StreamingResponse,
            responses={**BINARY, **errors(*AUTHED, 404)})
async def output_file(job_id: JobId, path: str, p: PlatformDep, user: UserDep,
                      attempt: AttemptQuery = None) -> StreamingResponse:
    key, size = await run_in_threadpool(p.outputs.file_key, user, job_id, path, attempt=attempt)

    def chunks():  # type: ignore[no-untyped-def]
        with p.storage.open(key) as f:
            while block := f.read(1 << 20):
                yield block

    return StreamingResponse(chunks(), media_type="application/octet-stream",
                             headers={"Content-Length": str(size)})
