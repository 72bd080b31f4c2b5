"""Job routes: submit, list, show, stop, restart, clone, events, logs, metrics, outputs."""
from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.jobs import JobSpec, JobState
from modelyard.scheduler.launch import output_prefix
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.server.serialize import event_to_dict, job_to_dict
from modelyard.store import jobs as store_jobs
from modelyard.store import reports
from modelyard.store.records import Job, User

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: JobSpec
    snapshot: str | None = None


class CloneBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resume: bool = False
    command: list[str] | str | None = None
    name: str | None = Field(None, max_length=200)


def _full(p: Platform, job: Job) -> dict[str, Any]:
    return job_to_dict(job, store_jobs.job_attempts(p.db, job.id))


@router.post("/jobs", status_code=201)
def submit(body: SubmitBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return _full(p, p.submit(user, body.spec, snapshot=body.snapshot))


@router.get("/jobs")
def list_jobs(
    p: PlatformDep, user: UserDep, state: JobState | None = None, q: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50, offset: Annotated[int, Query(ge=0)] = 0,
    all: bool = False,
) -> dict[str, Any]:
    jobs, total = store_jobs.list_jobs(p.db, user=user, all_users=all, state=state, q=q, limit=limit, offset=offset)
    return {"jobs": [job_to_dict(j) for j in jobs], "total": total}


@router.get("/jobs/{job_id}")
def show(job_id: int, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return _full(p, store_jobs.get_job(p.db, job_id, user=user))


@router.post("/jobs/{job_id}/stop")
def stop(job_id: int, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return _full(p, p.stop(user, job_id))


@router.post("/jobs/{job_id}/restart")
def restart(job_id: int, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return _full(p, p.restart(user, job_id))


@router.post("/jobs/{job_id}/clone", status_code=201)
def clone(job_id: int, body: CloneBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return _full(p, p.clone(user, job_id, resume=body.resume, command=body.command, name=body.name))


@router.get("/jobs/{job_id}/events")
def job_events(job_id: int, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    store_jobs.get_job(p.db, job_id, user=user)
    return {"events": [event_to_dict(e) for e in store_jobs.job_events(p.db, job_id)]}


def attempt_of(p: Platform, job: Job, number: int | None):  # type: ignore[no-untyped-def]
    number = number or job.attempt
    attempt = store_jobs.attempt_by_number(p.db, job.id, number) if number else None
    if number and attempt is None:
        raise not_found(f"attempt {number} of job {job.id}")
    return attempt


@router.get("/jobs/{job_id}/logs")
def logs(
    job_id: int, p: PlatformDep, user: UserDep, attempt: int | None = None,
    offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> dict[str, Any]:
    job = store_jobs.get_job(p.db, job_id, user=user)
    a = attempt_of(p, job, attempt)
    if a is None:
        return {"attempt": 0, "lines": [], "next_offset": 0, "done": job.state.is_terminal()}
    page = reports.read_logs(p.db, a.id, offset=offset, limit=limit)
    done = a.state.is_terminal() and page.next_offset >= a.log_count
    return {"attempt": a.number, "lines": page.lines, "next_offset": page.next_offset, "done": done}


@router.get("/jobs/{job_id}/metrics")
def metrics(
    job_id: int, p: PlatformDep, user: UserDep, names: str | None = None,
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


@router.get("/jobs/{job_id}/system-metrics")
def system_metrics(job_id: int, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    store_jobs.get_job(p.db, job_id, user=user)
    return {"samples": reports.read_system_metrics(p.db, job_id)}


@router.get("/jobs/{job_id}/outputs")
def outputs(job_id: int, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    store_jobs.get_job(p.db, job_id, user=user)
    files = p.storage.list(output_prefix(job_id))
    return {"files": [{"path": e.path, "size": e.size, "mtime": e.mtime} for e in files]}


@router.get("/jobs/{job_id}/outputs/{path:path}")
async def output_file(job_id: int, path: str, p: PlatformDep, user: UserDep) -> StreamingResponse:
    await run_in_threadpool(store_jobs.get_job, p.db, job_id, user=user)
    if not path or ".." in path.split("/") or path.startswith("/"):
        raise ModelyardError(ErrorCode.INVALID, "not a path inside the job's outputs", field="path")
    key = f"{output_prefix(job_id)}/{path}"
    if not await run_in_threadpool(p.storage.exists, key):
        raise not_found(f"output {path!r} of job {job_id}")
    size = await run_in_threadpool(p.storage.size, key)

    def chunks():  # type: ignore[no-untyped-def]
        with p.storage.open(key) as f:
            while block := f.read(1 << 20):
                yield block

    return StreamingResponse(chunks(), media_type="application/octet-stream",
                             headers={"Content-Length": str(size)})
